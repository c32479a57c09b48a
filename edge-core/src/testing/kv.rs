//! The conformance kit for [`KvStore`] implementations.
//!
//! [`run_all`] runs every case; the cases are public too, so a backend can run them one test at a time.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;
use serde_json::json;

use crate::clock::{Clock, ManualClock};
use crate::error::ErrorKind;
use crate::kv::{KvStore, ListKey, ListOptions, PutOptions};

/// Runs every case against fresh stores made by `make`.
///
/// # Panics
///
/// On the first case the store fails, naming it.
pub async fn run_all<S, F>(make: F)
where
    S: KvStore,
    F: Fn(ManualClock) -> S,
{
    macro_rules! case {
        ($name:ident) => {{
            let clock = ManualClock::new();
            let store = make(clock.clone());
            $name(&store, &clock).await;
        }};
    }
    case!(crud);
    case!(metadata_round_trip);
    case!(ttl_expiry);
    case!(absolute_expiry);
    case!(list_order_prefix_and_pages);
    case!(list_cursor_survives_changes);
    case!(bad_input_is_refused_without_side_effects);
    case!(concurrent_writers);
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

async fn must<T>(what: &str, fut: impl Future<Output = Result<T, crate::Error>>) -> T {
    match fut.await {
        Ok(v) => v,
        Err(e) => panic!("kv conformance: {what} failed: {e}"),
    }
}

/// Get, put, overwrite, delete, delete of an absent key.
pub async fn crud<S: KvStore>(store: &S, _clock: &ManualClock) {
    assert_eq!(
        must("get absent", store.get("user:1")).await,
        None,
        "absent key must read as None"
    );
    must("put", store.put("user:1", b("ada"), PutOptions::new())).await;
    assert_eq!(must("get", store.get("user:1")).await, Some(b("ada")));
    must(
        "overwrite",
        store.put("user:1", b("grace"), PutOptions::new()),
    )
    .await;
    assert_eq!(
        must("get after overwrite", store.get("user:1")).await,
        Some(b("grace"))
    );
    let entry = must("get_with_metadata", store.get_with_metadata("user:1")).await;
    let entry = entry.unwrap_or_else(|| panic!("kv conformance: get_with_metadata lost the value"));
    assert_eq!(entry.value, b("grace"));
    assert_eq!(entry.metadata, None);
    assert_eq!(entry.expires_at, None);
    must(
        "put empty value",
        store.put("empty", Bytes::new(), PutOptions::new()),
    )
    .await;
    assert_eq!(
        must("get empty value", store.get("empty")).await,
        Some(Bytes::new()),
        "empty values are values"
    );
    must("delete", store.delete("user:1")).await;
    assert_eq!(must("get after delete", store.get("user:1")).await, None);
    must("delete absent", store.delete("user:1")).await;
    let binary = Bytes::from_static(&[0, 159, 146, 150, 255]);
    must(
        "put binary",
        store.put("bin", binary.clone(), PutOptions::new()),
    )
    .await;
    assert_eq!(
        must("get binary", store.get("bin")).await,
        Some(binary),
        "values are bytes, not text"
    );
}

/// Metadata is stored with the value, returned by `get_with_metadata` and `list`, and replaced on overwrite.
pub async fn metadata_round_trip<S: KvStore>(store: &S, _clock: &ManualClock) {
    let meta = json!({ "etag": "\"v1\"", "tags": ["a", "b"], "n": 3, "nested": { "ok": true } });
    must(
        "put with metadata",
        store.put(
            "doc",
            b("body"),
            PutOptions::new().with_metadata(meta.clone()),
        ),
    )
    .await;
    let entry = must("get_with_metadata", store.get_with_metadata("doc")).await;
    let entry = entry.unwrap_or_else(|| panic!("kv conformance: entry with metadata missing"));
    assert_eq!(entry.value, b("body"));
    assert_eq!(entry.metadata, Some(meta.clone()));
    let page = must("list", store.list(ListOptions::new())).await;
    assert_eq!(
        page.keys,
        vec![ListKey::new("doc").with_metadata(Some(meta))],
        "list returns metadata"
    );
    must(
        "overwrite without metadata",
        store.put("doc", b("body2"), PutOptions::new()),
    )
    .await;
    let entry = must("get_with_metadata", store.get_with_metadata("doc")).await;
    assert_eq!(
        entry.and_then(|e| e.metadata),
        None,
        "an overwrite replaces metadata too"
    );
}

/// An entry written with a TTL is readable until the TTL has passed on the store's clock, then gone from
/// `get`, `get_with_metadata` and `list`.
pub async fn ttl_expiry<S: KvStore>(store: &S, clock: &ManualClock) {
    let ttl = store.limits().min_ttl.max(Duration::from_secs(60));
    let expected = clock.wall_time() + ttl;
    must(
        "put with ttl",
        store.put("ephemeral", b("x"), PutOptions::new().with_ttl(ttl)),
    )
    .await;
    must(
        "put durable",
        store.put("durable", b("y"), PutOptions::new()),
    )
    .await;
    let entry = must("get_with_metadata", store.get_with_metadata("ephemeral")).await;
    assert_eq!(
        entry.and_then(|e| e.expires_at),
        Some(expected),
        "expires_at reports the expiry"
    );
    clock.advance(ttl - Duration::from_millis(1));
    assert_eq!(
        must("get before expiry", store.get("ephemeral")).await,
        Some(b("x"))
    );
    clock.advance(Duration::from_millis(1));
    assert_eq!(
        must("get at expiry", store.get("ephemeral")).await,
        None,
        "expired at ttl"
    );
    assert_eq!(
        must(
            "get_with_metadata at expiry",
            store.get_with_metadata("ephemeral")
        )
        .await,
        None
    );
    let page = must("list after expiry", store.list(ListOptions::new())).await;
    let names: Vec<&str> = page.keys.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(names, ["durable"], "expired keys are not listed");
    must(
        "rewrite expired key",
        store.put("ephemeral", b("z"), PutOptions::new()),
    )
    .await;
    assert_eq!(
        must("get rewritten", store.get("ephemeral")).await,
        Some(b("z"))
    );
}

/// An entry written with an absolute expiration disappears at that wall time.
pub async fn absolute_expiry<S: KvStore>(store: &S, clock: &ManualClock) {
    let at = clock.wall_time() + store.limits().min_ttl + Duration::from_secs(30);
    must(
        "put with expiration",
        store.put("until", b("v"), PutOptions::new().with_expiration(at)),
    )
    .await;
    let page = must("list", store.list(ListOptions::new())).await;
    assert_eq!(
        page.keys.first().and_then(|k| k.expires_at),
        Some(at),
        "list reports the expiry"
    );
    clock.advance(store.limits().min_ttl + Duration::from_secs(29));
    assert!(must("get before", store.get("until")).await.is_some());
    clock.advance(Duration::from_secs(1));
    assert_eq!(must("get after", store.get("until")).await, None);
}

/// `list` returns keys in byte order, filtered by prefix, in pages of at most `limit`, with a cursor until
/// the last page.
pub async fn list_order_prefix_and_pages<S: KvStore>(store: &S, _clock: &ManualClock) {
    let keys = [
        "b", "a/2", "a/10", "a", "Z", "a/1", "é", "a0", "aa", "a/1/x", "~",
    ];
    for key in keys {
        must("put", store.put(key, b(key), PutOptions::new())).await;
    }
    let mut sorted: Vec<&str> = keys.to_vec();
    sorted.sort_unstable();
    let page = must("list all", store.list(ListOptions::new())).await;
    let names: Vec<&str> = page.keys.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(names, sorted, "keys in lexicographic byte order");
    assert!(page.is_complete(), "one page holds everything");

    let page = must(
        "list prefix",
        store.list(ListOptions::new().with_prefix("a/")),
    )
    .await;
    let names: Vec<&str> = page.keys.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(names, ["a/1", "a/1/x", "a/10", "a/2"], "prefix filter");

    let page = must(
        "list prefix none",
        store.list(ListOptions::new().with_prefix("nothing")),
    )
    .await;
    assert!(page.keys.is_empty() && page.is_complete());

    for limit in [1, 2, 3, 10, 11] {
        let mut seen = Vec::new();
        let mut options = ListOptions::new().with_limit(limit);
        let mut pages = 0;
        loop {
            let page = must("list page", store.list(options.clone())).await;
            pages += 1;
            assert!(
                page.keys.len() <= limit,
                "a page holds at most `limit` keys"
            );
            seen.extend(page.keys.into_iter().map(|k| k.name));
            match page.cursor {
                Some(cursor) => options = ListOptions::new().with_limit(limit).with_cursor(cursor),
                None => break,
            }
            assert!(pages <= keys.len() + 1, "listing must terminate");
        }
        assert_eq!(
            seen, sorted,
            "pages of {limit} cover every key once, in order"
        );
    }

    let mut seen = Vec::new();
    let mut options = ListOptions::new().with_prefix("a").with_limit(3);
    loop {
        let page = must("list prefix page", store.list(options.clone())).await;
        seen.extend(page.keys.into_iter().map(|k| k.name));
        match page.cursor {
            Some(cursor) => {
                options = ListOptions::new()
                    .with_prefix("a")
                    .with_limit(3)
                    .with_cursor(cursor)
            }
            None => break,
        }
    }
    let expected: Vec<&str> = sorted
        .iter()
        .copied()
        .filter(|k| k.starts_with('a'))
        .collect();
    assert_eq!(seen, expected, "prefix and cursor combine");
}

/// A cursor stays valid when keys are added or removed between pages: keys present throughout are seen
/// exactly once.
pub async fn list_cursor_survives_changes<S: KvStore>(store: &S, _clock: &ManualClock) {
    for i in 0..10 {
        must(
            "put",
            store.put(&format!("k{i}"), b("v"), PutOptions::new()),
        )
        .await;
    }
    let first = must("first page", store.list(ListOptions::new().with_limit(4))).await;
    let cursor = first
        .cursor
        .clone()
        .unwrap_or_else(|| panic!("kv conformance: 10 keys in pages of 4 need a cursor"));
    must("delete a listed key", store.delete("k1")).await;
    must("delete an unlisted key", store.delete("k7")).await;
    must(
        "add a key ahead",
        store.put("k55", b("v"), PutOptions::new()),
    )
    .await;
    let mut seen: Vec<String> = first.keys.into_iter().map(|k| k.name).collect();
    let mut options = ListOptions::new().with_limit(4).with_cursor(cursor);
    loop {
        let page = must("next page", store.list(options)).await;
        seen.extend(page.keys.into_iter().map(|k| k.name));
        match page.cursor {
            Some(cursor) => options = ListOptions::new().with_limit(4).with_cursor(cursor),
            None => break,
        }
    }
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no key listed twice: {seen:?}");
    for stable in ["k0", "k2", "k3", "k4", "k5", "k6", "k8", "k9"] {
        assert!(
            seen.iter().any(|k| k == stable),
            "{stable} present throughout was skipped: {seen:?}"
        );
    }
    assert!(
        !seen.iter().any(|k| k == "k7"),
        "a key deleted before its page was listed"
    );
}

/// Bad keys, values, metadata, TTLs, cursors and limits get typed errors and change nothing.
pub async fn bad_input_is_refused_without_side_effects<S: KvStore>(
    store: &S,
    _clock: &ManualClock,
) {
    let limits = store.limits();
    must("seed", store.put("keep", b("original"), PutOptions::new())).await;

    let long_key = "k".repeat(limits.max_key_len + 1);
    for key in ["", ".", "..", long_key.as_str()] {
        let err = store.put(key, b("v"), PutOptions::new()).await.err();
        assert_eq!(
            err.map(|e| e.kind()),
            Some(ErrorKind::InvalidKey),
            "put with key {key:.20?} must be refused"
        );
        let err = store.get(key).await.err();
        assert_eq!(
            err.map(|e| e.kind()),
            Some(ErrorKind::InvalidKey),
            "get with key {key:.20?} must be refused"
        );
        let err = store.delete(key).await.err();
        assert_eq!(
            err.map(|e| e.kind()),
            Some(ErrorKind::InvalidKey),
            "delete with key {key:.20?} must be refused"
        );
    }
    let max_key = "k".repeat(limits.max_key_len);
    must(
        "put longest key",
        store.put(&max_key, b("v"), PutOptions::new()),
    )
    .await;
    must("delete longest key", store.delete(&max_key)).await;

    let big = Bytes::from(vec![b'x'; limits.max_value_len + 1]);
    let err = store.put("keep", big, PutOptions::new()).await.err();
    assert_eq!(
        err.map(|e| e.kind()),
        Some(ErrorKind::TooLarge),
        "oversized value"
    );

    let big_meta = json!({ "pad": "m".repeat(limits.max_metadata_len) });
    let err = store
        .put("keep", b("new"), PutOptions::new().with_metadata(big_meta))
        .await
        .err();
    assert_eq!(
        err.map(|e| e.kind()),
        Some(ErrorKind::TooLarge),
        "oversized metadata"
    );

    if let Some(short) = limits.min_ttl.checked_sub(Duration::from_millis(1)) {
        let err = store
            .put("keep", b("new"), PutOptions::new().with_ttl(short))
            .await
            .err();
        assert_eq!(
            err.map(|e| e.kind()),
            Some(ErrorKind::InvalidInput),
            "ttl below the minimum"
        );
    }
    let err = store
        .put("keep", b("new"), PutOptions::new().with_ttl(Duration::MAX))
        .await
        .err();
    assert_eq!(
        err.map(|e| e.kind()),
        Some(ErrorKind::InvalidInput),
        "ttl that overflows the clock"
    );

    let entry = must("get after refused writes", store.get_with_metadata("keep")).await;
    let entry =
        entry.unwrap_or_else(|| panic!("kv conformance: a refused write removed the entry"));
    assert_eq!(
        entry.value,
        b("original"),
        "a refused write changed the value"
    );
    assert_eq!(entry.metadata, None, "a refused write changed the metadata");
    assert_eq!(entry.expires_at, None, "a refused write changed the expiry");

    for cursor in ["", "not a cursor", "\u{0}\u{1}", "%%%%"] {
        let err = store
            .list(ListOptions::new().with_cursor(cursor))
            .await
            .err();
        assert_eq!(
            err.map(|e| e.kind()),
            Some(ErrorKind::InvalidCursor),
            "cursor {cursor:?} must be refused"
        );
    }
    let err = store.list(ListOptions::new().with_limit(0)).await.err();
    assert_eq!(
        err.map(|e| e.kind()),
        Some(ErrorKind::InvalidInput),
        "limit 0"
    );
    let err = store
        .list(ListOptions::new().with_limit(limits.max_list_limit + 1))
        .await
        .err();
    assert_eq!(
        err.map(|e| e.kind()),
        Some(ErrorKind::InvalidInput),
        "limit above the maximum"
    );

    let page = must("list after refused writes", store.list(ListOptions::new())).await;
    let names: Vec<&str> = page.keys.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(names, ["keep"], "refused writes left keys behind");
}

/// Many writers at once: distinct keys all land; one key ends with one of the written values, with that
/// write's metadata (value and metadata land together).
pub async fn concurrent_writers<S: KvStore>(store: &S, _clock: &ManualClock) {
    let writes = (0..64).map(|i| async move {
        let key = format!("writer:{i:02}");
        must(
            "concurrent put",
            store.put(&key, Bytes::from(key.clone()), PutOptions::new()),
        )
        .await;
    });
    join_all(writes).await;
    for i in 0..64 {
        let key = format!("writer:{i:02}");
        assert_eq!(
            must("get", store.get(&key)).await,
            Some(Bytes::from(key.clone())),
            "{key} lost"
        );
    }

    let same = (0..32).map(|i| async move {
        let options = PutOptions::new().with_metadata(json!({ "writer": i }));
        must(
            "contended put",
            store.put("contended", Bytes::from(format!("{i}")), options),
        )
        .await;
    });
    join_all(same).await;
    let entry = must("get contended", store.get_with_metadata("contended")).await;
    let entry = entry.unwrap_or_else(|| panic!("kv conformance: contended key lost"));
    let value: u64 = std::str::from_utf8(&entry.value)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(u64::MAX);
    assert!(value < 32, "the contended value is one of the writes");
    assert_eq!(
        entry.metadata,
        Some(json!({ "writer": value })),
        "value and metadata from the same write"
    );
}
