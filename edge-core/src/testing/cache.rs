//! The conformance kit for [`CacheStore`] implementations.
//!
//! [`run_all`] runs every case; the cases are public too.

use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;
use http::{HeaderMap, HeaderValue, StatusCode, header};

use crate::cache::{CacheStore, CachedResponse};
use crate::clock::{Clock, ManualClock};
use crate::error::ErrorKind;

/// Runs every case against fresh stores made by `make`.
///
/// # Panics
///
/// On the first case the store fails, naming it.
pub async fn run_all<S, F>(make: F)
where
    S: CacheStore,
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
    case!(expiry);
    case!(purge_by_tag);
    case!(bad_input_is_refused_without_side_effects);
    case!(concurrent_writers);
}

async fn must<T>(what: &str, fut: impl Future<Output = Result<T, crate::Error>>) -> T {
    match fut.await {
        Ok(v) => v,
        Err(e) => panic!("cache conformance: {what} failed: {e}"),
    }
}

fn response(clock: &ManualClock, body: &'static str) -> CachedResponse {
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    headers.append(header::VARY, HeaderValue::from_static("accept-encoding"));
    headers.append(header::VARY, HeaderValue::from_static("accept-language"));
    CachedResponse::new(
        StatusCode::OK,
        headers,
        Bytes::from_static(body.as_bytes()),
        clock.wall_time(),
    )
}

/// Put, get (status, every header value, body, stored-at), overwrite, delete.
pub async fn crud<S: CacheStore>(store: &S, clock: &ManualClock) {
    let key = "https://example.com/page?x=1";
    assert!(
        must("get absent", store.get(key)).await.is_none(),
        "absent key must miss"
    );
    let stored = response(clock, "<p>one</p>");
    must("put", store.put(key, stored.clone())).await;
    let hit = must("get", store.get(key)).await;
    let hit = hit.unwrap_or_else(|| panic!("cache conformance: stored response missing"));
    assert_eq!(hit.status, StatusCode::OK);
    assert_eq!(hit.body, stored.body);
    assert_eq!(hit.stored_at, stored.stored_at, "stored_at round-trips");
    assert_eq!(
        hit.headers, stored.headers,
        "headers round-trip, repeated ones included"
    );

    let mut not_found = response(clock, "gone");
    not_found.status = StatusCode::NOT_FOUND;
    must("overwrite", store.put(key, not_found)).await;
    let hit = must("get after overwrite", store.get(key)).await;
    assert_eq!(
        hit.map(|h| (h.status, h.body)),
        Some((StatusCode::NOT_FOUND, Bytes::from_static(b"gone")))
    );

    assert!(
        must("delete", store.delete(key)).await,
        "delete reports a live entry"
    );
    assert!(must("get after delete", store.get(key)).await.is_none());
    assert!(
        !must("delete absent", store.delete(key)).await,
        "delete of an absent key reports false"
    );
}

/// An entry is served until its `expires_at`, never after.
pub async fn expiry<S: CacheStore>(store: &S, clock: &ManualClock) {
    let expires = clock.wall_time() + Duration::from_secs(30);
    must(
        "put expiring",
        store.put("/a", response(clock, "a").with_expires_at(expires)),
    )
    .await;
    must("put lasting", store.put("/b", response(clock, "b"))).await;
    clock.advance(Duration::from_millis(29_999));
    assert!(must("get before expiry", store.get("/a")).await.is_some());
    clock.advance(Duration::from_millis(1));
    assert!(
        must("get at expiry", store.get("/a")).await.is_none(),
        "expired entries must miss"
    );
    assert!(
        !must("delete expired", store.delete("/a")).await,
        "an expired entry is not live"
    );
    assert!(must("get lasting", store.get("/b")).await.is_some());
}

/// `purge_tag` removes exactly the entries carrying the tag and counts them.
pub async fn purge_by_tag<S: CacheStore>(store: &S, clock: &ManualClock) {
    must(
        "put",
        store.put(
            "/p/1",
            response(clock, "1").with_tags(["product", "product:1"]),
        ),
    )
    .await;
    must(
        "put",
        store.put(
            "/p/2",
            response(clock, "2").with_tags(["product", "product:2"]),
        ),
    )
    .await;
    must(
        "put",
        store.put("/home", response(clock, "h").with_tags(["home"])),
    )
    .await;
    must("put", store.put("/plain", response(clock, "x"))).await;
    assert_eq!(
        must("purge product:1", store.purge_tag("product:1")).await,
        1
    );
    assert!(must("get", store.get("/p/1")).await.is_none());
    assert!(must("get", store.get("/p/2")).await.is_some());
    assert_eq!(
        must("purge product", store.purge_tag("product")).await,
        1,
        "only live entries count"
    );
    assert!(must("get", store.get("/p/2")).await.is_none());
    assert_eq!(must("purge unknown", store.purge_tag("nothing")).await, 0);
    assert!(must("get", store.get("/home")).await.is_some());
    assert!(must("get", store.get("/plain")).await.is_some());

    // Overwriting an entry replaces its tags.
    must(
        "put",
        store.put("/home", response(clock, "h2").with_tags(["v2"])),
    )
    .await;
    assert_eq!(
        must("purge old tag", store.purge_tag("home")).await,
        0,
        "old tags no longer apply"
    );
    assert_eq!(must("purge new tag", store.purge_tag("v2")).await, 1);

    // Overwriting an entry with one that has the same tag: the purge still reaches it.
    for body in ["v1", "v2"] {
        must(
            "put",
            store.put("/same", response(clock, body).with_tags(["same"])),
        )
        .await;
    }
    assert_eq!(
        must("purge a tag kept on overwrite", store.purge_tag("same")).await,
        1
    );
    assert!(must("get", store.get("/same")).await.is_none());
}

/// Bad keys, tags and oversized entries get typed errors and leave the previous entry untouched.
pub async fn bad_input_is_refused_without_side_effects<S: CacheStore>(
    store: &S,
    clock: &ManualClock,
) {
    let limits = store.limits();
    must("seed", store.put("/keep", response(clock, "original"))).await;
    let long_key = "k".repeat(limits.max_key_len + 1);
    for key in ["", long_key.as_str()] {
        let err = store.put(key, response(clock, "x")).await.err();
        assert_eq!(
            err.map(|e| e.kind()),
            Some(ErrorKind::InvalidKey),
            "put with key {key:.20?}"
        );
        let err = store.get(key).await.err();
        assert_eq!(
            err.map(|e| e.kind()),
            Some(ErrorKind::InvalidKey),
            "get with key {key:.20?}"
        );
    }
    let mut huge = response(clock, "");
    huge.body = Bytes::from(vec![0; limits.max_entry_weight + 1]);
    let err = store.put("/keep", huge).await.err();
    assert_eq!(
        err.map(|e| e.kind()),
        Some(ErrorKind::TooLarge),
        "oversized entry"
    );
    let too_many_tags =
        response(clock, "x").with_tags((0..=limits.max_tags).map(|i| format!("t{i}")));
    let err = store.put("/keep", too_many_tags).await.err();
    assert_eq!(
        err.map(|e| e.kind()),
        Some(ErrorKind::InvalidInput),
        "too many tags"
    );
    let err = store.purge_tag("").await.err();
    assert_eq!(
        err.map(|e| e.kind()),
        Some(ErrorKind::InvalidInput),
        "empty tag"
    );
    let hit = must("get after refused writes", store.get("/keep")).await;
    assert_eq!(
        hit.map(|h| h.body),
        Some(Bytes::from_static(b"original")),
        "refused writes changed the entry"
    );
}

/// Concurrent writers on distinct keys all land.
pub async fn concurrent_writers<S: CacheStore>(store: &S, clock: &ManualClock) {
    let writes = (0..32).map(|i| async move {
        let mut r = response(clock, "");
        r.body = Bytes::from(format!("body {i}"));
        must("concurrent put", store.put(&format!("/c/{i}"), r)).await;
    });
    join_all(writes).await;
    for i in 0..32 {
        let hit = must("get", store.get(&format!("/c/{i}"))).await;
        assert_eq!(
            hit.map(|h| h.body),
            Some(Bytes::from(format!("body {i}"))),
            "/c/{i} lost"
        );
    }
}
