//! The conformance kit for durable-object [`Storage`] implementations.
//!
//! [`run_all`] runs every case against fresh storage; the cases are public too.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::durable::{ListRange, MAX_KEY_LEN, MAX_VALUE_LEN, Storage, WriteBatch};
use crate::error::ErrorKind;

/// Runs every case against fresh storage made by `make`.
///
/// # Panics
///
/// On the first case the storage fails, naming it.
pub async fn run_all<S, F>(make: F)
where
    S: Storage,
    F: Fn() -> S,
{
    crud(&make()).await;
    get_many_in_key_order(&make()).await;
    list_prefix_range_limit_reverse(&make()).await;
    batches_are_all_or_nothing(&make()).await;
    limits_are_refused_without_side_effects(&make()).await;
    the_empty_key_is_a_key(&make()).await;
    delete_all_clears_entries_and_alarm(&make()).await;
    alarm_round_trip(&make()).await;
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

async fn must<T>(what: &str, fut: impl Future<Output = Result<T, crate::Error>>) -> T {
    match fut.await {
        Ok(v) => v,
        Err(e) => panic!("durable storage conformance: {what} failed: {e}"),
    }
}

fn keys(entries: &[(String, Bytes)]) -> Vec<&str> {
    entries.iter().map(|(k, _)| k.as_str()).collect()
}

/// Get, put, overwrite, delete (reporting whether the key existed).
pub async fn crud<S: Storage>(storage: &S) {
    assert_eq!(must("get absent", storage.get("k")).await, None);
    must("put", storage.put("k", b("v1"))).await;
    must("overwrite", storage.put("k", b("v2"))).await;
    assert_eq!(must("get", storage.get("k")).await, Some(b("v2")));
    assert!(must("delete present", storage.delete("k")).await);
    assert!(!must("delete absent", storage.delete("k")).await);
    assert_eq!(must("get deleted", storage.get("k")).await, None);
    must("empty value", storage.put("empty", Bytes::new())).await;
    assert_eq!(
        must("get empty", storage.get("empty")).await,
        Some(Bytes::new())
    );
}

/// `get_many` returns the keys that exist, each once, in key order.
pub async fn get_many_in_key_order<S: Storage>(storage: &S) {
    for k in ["b", "a", "c"] {
        must("put", storage.put(k, b(k))).await;
    }
    let wanted = [
        "c".to_owned(),
        "zz".to_owned(),
        "a".to_owned(),
        "c".to_owned(),
    ];
    let found = must("get_many", storage.get_many(&wanted)).await;
    assert_eq!(keys(&found), ["a", "c"]);
    assert_eq!(found[0].1, b("a"));
}

/// Prefixes, `[start, end)` ranges, limits and reverse order, alone and together.
pub async fn list_prefix_range_limit_reverse<S: Storage>(storage: &S) {
    for k in ["user:1", "user:2", "user:3", "users", "room:1"] {
        must("put", storage.put(k, b(k))).await;
    }
    let list = |range: ListRange| storage.list(range);
    assert_eq!(
        keys(&must("all", list(ListRange::all())).await),
        ["room:1", "user:1", "user:2", "user:3", "users"]
    );
    assert_eq!(
        keys(&must("prefix", list(ListRange::prefix("user:"))).await),
        ["user:1", "user:2", "user:3"]
    );
    assert_eq!(
        keys(
            &must(
                "range",
                list(ListRange::all().with_start("user:2").with_end("users"))
            )
            .await
        ),
        ["user:2", "user:3"]
    );
    assert_eq!(
        keys(
            &must(
                "reverse limit",
                list(ListRange::prefix("user:").reversed().with_limit(2))
            )
            .await
        ),
        ["user:3", "user:2"]
    );
    assert_eq!(
        keys(&must("limit", list(ListRange::all().with_limit(1))).await),
        ["room:1"]
    );
    assert!(
        must("empty", list(ListRange::prefix("nobody")))
            .await
            .is_empty()
    );
}

/// A batch is applied whole; a batch with one bad write applies nothing.
pub async fn batches_are_all_or_nothing<S: Storage>(storage: &S) {
    must("seed", storage.put("a", b("1"))).await;
    let good = WriteBatch::new()
        .put("b", b("2"))
        .delete("a")
        .put("c", b("3"));
    must("good batch", storage.write(good)).await;
    assert_eq!(
        keys(&must("after good", storage.list(ListRange::all())).await),
        ["b", "c"]
    );
    let bad = WriteBatch::new()
        .put("b", b("changed"))
        .delete("c")
        .put("k".repeat(MAX_KEY_LEN + 1), b("key too long"));
    let err = storage.write(bad).await.err();
    assert_eq!(
        err.map(|e| e.kind()),
        Some(ErrorKind::InvalidKey),
        "bad batch refused"
    );
    assert_eq!(must("b untouched", storage.get("b")).await, Some(b("2")));
    assert_eq!(must("c untouched", storage.get("c")).await, Some(b("3")));
}

/// Keys and values over the limits are refused and change nothing.
pub async fn limits_are_refused_without_side_effects<S: Storage>(storage: &S) {
    must("seed", storage.put("k", b("kept"))).await;
    let long_key = "k".repeat(MAX_KEY_LEN + 1);
    let big = Bytes::from(vec![0u8; MAX_VALUE_LEN + 1]);
    assert_eq!(
        storage.put(&long_key, b("v")).await.err().map(|e| e.kind()),
        Some(ErrorKind::InvalidKey)
    );
    assert_eq!(
        storage.put("k", big).await.err().map(|e| e.kind()),
        Some(ErrorKind::TooLarge)
    );
    assert_eq!(must("kept", storage.get("k")).await, Some(b("kept")));
    must(
        "largest value",
        storage.put("max", Bytes::from(vec![1u8; MAX_VALUE_LEN])),
    )
    .await;
}

/// The empty key is a key like any other (Cloudflare allows it): stored, read, listed first, deleted.
pub async fn the_empty_key_is_a_key<S: Storage>(storage: &S) {
    must("put empty key", storage.put("", b("root"))).await;
    must("put a", storage.put("a", b("1"))).await;
    assert_eq!(
        must("get empty key", storage.get("")).await,
        Some(b("root"))
    );
    assert_eq!(
        keys(&must("list with empty key", storage.list(ListRange::all())).await),
        ["", "a"]
    );
    must(
        "batch with empty key",
        storage.write(WriteBatch::new().put("", b("again")).delete("a")),
    )
    .await;
    assert_eq!(
        must("get empty key", storage.get("")).await,
        Some(b("again"))
    );
    assert!(must("delete empty key", storage.delete("")).await);
    assert_eq!(must("gone", storage.get("")).await, None);
}

/// `delete_all` leaves nothing behind, alarm included.
pub async fn delete_all_clears_entries_and_alarm<S: Storage>(storage: &S) {
    must("put", storage.put("a", b("1"))).await;
    must(
        "alarm",
        storage.set_alarm(UNIX_EPOCH + Duration::from_secs(1_800_000_000)),
    )
    .await;
    must("delete_all", storage.delete_all()).await;
    assert!(
        must("list", storage.list(ListRange::all()))
            .await
            .is_empty()
    );
    assert_eq!(must("alarm gone", storage.get_alarm()).await, None);
}

/// Set, replace, read and cancel the alarm.
pub async fn alarm_round_trip<S: Storage>(storage: &S) {
    assert_eq!(must("no alarm", storage.get_alarm()).await, None);
    let at = UNIX_EPOCH + Duration::from_millis(1_800_000_000_123);
    must("set", storage.set_alarm(at)).await;
    assert_eq!(must("get", storage.get_alarm()).await, Some(at));
    let later: SystemTime = at + Duration::from_secs(60);
    must("replace", storage.set_alarm(later)).await;
    assert_eq!(must("replaced", storage.get_alarm()).await, Some(later));
    must("cancel", storage.delete_alarm()).await;
    assert_eq!(must("cancelled", storage.get_alarm()).await, None);
}

/// A [`Storage`] whose writes all fail with [`ErrorKind::CapacityExceeded`], as on a full disk, while
/// reads go to the storage it wraps: for testing what a host does when commits fail.
#[derive(Clone, Debug, Default)]
pub struct FullDisk<S>(pub S);

fn disk_full() -> crate::Error {
    crate::Error::new(ErrorKind::CapacityExceeded, "disk full")
}

impl<S: Storage> Storage for FullDisk<S> {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, crate::Error> {
        self.0.get(key).await
    }
    async fn get_many(&self, keys: &[String]) -> Result<Vec<(String, Bytes)>, crate::Error> {
        self.0.get_many(keys).await
    }
    async fn put(&self, _: &str, _: Bytes) -> Result<(), crate::Error> {
        Err(disk_full())
    }
    async fn delete(&self, _: &str) -> Result<bool, crate::Error> {
        Err(disk_full())
    }
    async fn write(&self, _: WriteBatch) -> Result<(), crate::Error> {
        Err(disk_full())
    }
    async fn list(&self, range: ListRange) -> Result<Vec<(String, Bytes)>, crate::Error> {
        self.0.list(range).await
    }
    async fn delete_all(&self) -> Result<(), crate::Error> {
        Err(disk_full())
    }
    async fn get_alarm(&self) -> Result<Option<SystemTime>, crate::Error> {
        self.0.get_alarm().await
    }
    async fn set_alarm(&self, _: SystemTime) -> Result<(), crate::Error> {
        Err(disk_full())
    }
    async fn delete_alarm(&self) -> Result<(), crate::Error> {
        Err(disk_full())
    }
}
