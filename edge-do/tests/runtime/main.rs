//! The in-process runtime's semantics: input and output gates, group commit, resets after panics,
//! time limits and failed commits, eviction, alarms on a manual clock, placement, and bad input.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use edge_core::durable::{
    AlarmInfo, DurableObject, ListRange, LocationHint, ObjectId, ObjectNamespace, Storage,
    WriteBatch,
};
use edge_core::testing::durable::FullDisk;
use edge_core::{Body, Clock, Error, ErrorKind, ManualClock};
use edge_do::{
    AlarmRecord, AlarmRun, MemoryStorage, MemoryStorageProvider, Namespace, ObjectState,
    ObjectStorage, StorageProvider,
};
use futures::FutureExt;
use http::{Method, Request, Response};

fn request(method: Method, body: &str) -> Request<Body> {
    let mut request = Request::new(Body::from(body.to_owned()));
    *request.method_mut() = method;
    request
}

async fn text(response: Response<Body>) -> String {
    let bytes = response.into_body().collect(1 << 20).await.unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// A test object: `GET` reads `k`, `PUT v` writes `k`, `POST panic` panics after writing, `POST hang`
/// never returns, `POST alarm <ms>` sets its alarm; counts its alarms in storage, failing the first
/// `fail_alarms` of them.
struct Probe<S> {
    storage: ObjectStorage<S>,
    inside: AtomicUsize,
    most_inside: Arc<AtomicUsize>,
    alarms_failing: Arc<AtomicUsize>,
    clock: ManualClock,
}

impl<S: Storage + 'static> DurableObject for Probe<S> {
    async fn fetch(&self, request: Request<Body>) -> Result<Response<Body>, Error> {
        let now = self.inside.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_inside.fetch_max(now, Ordering::SeqCst);
        for _ in 0..5 {
            tokio::task::yield_now().await;
        }
        let method = request.method().clone();
        let body = request.into_body().collect(1 << 20).await?;
        let body = String::from_utf8_lossy(&body).into_owned();
        let answer = match (method, body.as_str()) {
            (Method::GET, _) => self
                .storage
                .get("k")
                .await?
                .map_or_else(String::new, |v| String::from_utf8_lossy(&v).into_owned()),
            (Method::PUT, value) => {
                self.storage.put("k", Bytes::from(value.to_owned())).await?;
                value.to_owned()
            }
            (Method::POST, "panic") => {
                self.storage
                    .put("k", Bytes::from_static(b"from a panic"))
                    .await?;
                panic!("the probe was asked to panic");
            }
            (Method::POST, "hang") => {
                self.storage
                    .put("k", Bytes::from_static(b"from a hang"))
                    .await?;
                std::future::pending::<()>().await;
                unreachable!()
            }
            (Method::POST, at) => {
                let ms: u64 = at.trim_start_matches("alarm ").parse().unwrap();
                let at = self.clock.wall_time() + Duration::from_millis(ms);
                self.storage.set_alarm(at).await?;
                "set".to_owned()
            }
            (other, _) => format!("unexpected {other}"),
        };
        self.inside.fetch_sub(1, Ordering::SeqCst);
        Ok(Response::new(Body::from(answer)))
    }

    async fn alarm(&self, info: AlarmInfo) -> Result<(), Error> {
        let fired = match self.storage.get("alarms").await? {
            Some(v) => String::from_utf8_lossy(&v).parse::<u64>().unwrap_or(0),
            None => 0,
        } + 1;
        self.storage
            .put("alarms", Bytes::from(fired.to_string()))
            .await?;
        // The retry counts the handler was told, in order.
        let mut seen = self
            .storage
            .get("retry_counts")
            .await?
            .map_or_else(String::new, |v| String::from_utf8_lossy(&v).into_owned());
        seen.push_str(&info.retry_count.to_string());
        self.storage.put("retry_counts", Bytes::from(seen)).await?;
        if self
            .alarms_failing
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(Error::new(
                ErrorKind::Unavailable,
                "the alarm's work failed",
            ));
        }
        Ok(())
    }
}

struct Harness<P: StorageProvider> {
    namespace: Namespace<Probe<P::Storage>, P>,
    most_inside: Arc<AtomicUsize>,
    alarms_failing: Arc<AtomicUsize>,
}

fn harness<P: StorageProvider + Clone>(provider: P, clock: ManualClock) -> Harness<P> {
    let most_inside = Arc::new(AtomicUsize::new(0));
    let alarms_failing = Arc::new(AtomicUsize::new(0));
    let (most, failing, object_clock) = (
        Arc::clone(&most_inside),
        Arc::clone(&alarms_failing),
        clock.clone(),
    );
    let namespace = Namespace::new(provider, move |state: ObjectState<P::Storage>| Probe {
        storage: state.storage,
        inside: AtomicUsize::new(0),
        most_inside: Arc::clone(&most),
        alarms_failing: Arc::clone(&failing),
        clock: object_clock.clone(),
    })
    .with_clock(clock.clone())
    .with_time_limit(
        Duration::from_millis(200),
        edge_core::host::tokio::TokioTimer::new(),
    );
    Harness {
        namespace,
        most_inside,
        alarms_failing,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_turn_at_a_time_per_object_and_objects_in_parallel() {
    let h = harness(MemoryStorageProvider::new(), ManualClock::new());
    let id = h.namespace.id_from_name("one");
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let (ns, id) = (h.namespace.clone(), id.clone());
            tokio::spawn(async move { ns.fetch(&id, request(Method::PUT, &i.to_string())).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(
        h.most_inside.load(Ordering::SeqCst),
        1,
        "never two turns inside one object"
    );
    for i in 0..10 {
        let id = h.namespace.id_from_name(&format!("o{i}"));
        h.namespace
            .fetch(&id, request(Method::GET, ""))
            .await
            .unwrap();
    }
    assert_eq!(h.namespace.live(), 11);
}

/// A backing storage whose commits wait until the test lets them through, counting them.
#[derive(Clone)]
struct Held {
    data: MemoryStorage,
    commits: Arc<AtomicUsize>,
    batches: Arc<Mutex<Vec<usize>>>,
    open: Arc<tokio::sync::Semaphore>,
}

impl Default for Held {
    fn default() -> Self {
        Self {
            data: MemoryStorage::new(),
            commits: Arc::default(),
            batches: Arc::default(),
            open: Arc::new(tokio::sync::Semaphore::new(0)),
        }
    }
}

impl Storage for Held {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, Error> {
        self.data.get(key).await
    }
    async fn get_many(&self, keys: &[String]) -> Result<Vec<(String, Bytes)>, Error> {
        self.data.get_many(keys).await
    }
    async fn put(&self, key: &str, value: Bytes) -> Result<(), Error> {
        self.write(WriteBatch::new().put(key, value)).await
    }
    async fn delete(&self, key: &str) -> Result<bool, Error> {
        self.data.delete(key).await
    }
    async fn write(&self, batch: WriteBatch) -> Result<(), Error> {
        self.open.acquire().await.unwrap().forget();
        self.commits.fetch_add(1, Ordering::SeqCst);
        self.batches.lock().unwrap().push(batch.ops.len());
        self.data.write(batch).await
    }
    async fn list(&self, range: ListRange) -> Result<Vec<(String, Bytes)>, Error> {
        self.data.list(range).await
    }
    async fn delete_all(&self) -> Result<(), Error> {
        self.data.delete_all().await
    }
    async fn get_alarm(&self) -> Result<Option<SystemTime>, Error> {
        self.data.get_alarm().await
    }
    async fn set_alarm(&self, at: SystemTime) -> Result<(), Error> {
        self.data.set_alarm(at).await
    }
    async fn delete_alarm(&self) -> Result<(), Error> {
        self.data.delete_alarm().await
    }
}

#[derive(Clone, Default)]
struct HeldProvider(Held);

impl StorageProvider for HeldProvider {
    type Storage = Held;
    fn storage(&self, _id: &ObjectId) -> Held {
        self.0.clone()
    }
    fn due_alarms(&self, _now: SystemTime) -> Result<Vec<ObjectId>, Error> {
        Ok(Vec::new())
    }
    fn next_alarm(&self) -> Result<Option<SystemTime>, Error> {
        Ok(None)
    }
    // These providers serve the gate and commit tests only: their objects never have an alarm.
    async fn alarm_record(&self, _id: &ObjectId) -> Result<Option<AlarmRecord>, Error> {
        Ok(None)
    }
    async fn set_alarm_record(&self, _id: &ObjectId, _record: AlarmRecord) -> Result<(), Error> {
        Err(Error::new(ErrorKind::Backend, "no alarms here"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_output_gate_holds_responses_until_their_writes_are_durable_and_commits_group() {
    let provider = HeldProvider::default();
    let held = provider.0.clone();
    let h = harness(provider, ManualClock::new());
    let id = h.namespace.id_from_name("gated");

    let first = tokio::spawn({
        let (ns, id) = (h.namespace.clone(), id.clone());
        async move { ns.fetch(&id, request(Method::PUT, "one")).await }
    });
    // The first turn's handler has returned and its commit waits on the storage; the input gate is
    // open again, so later turns run — and see its write — while its response is held.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!first.is_finished(), "the response waits for its commit");
    let later: Vec<_> = ["two", "three", "four"]
        .into_iter()
        .map(|v| {
            let (ns, id) = (h.namespace.clone(), id.clone());
            tokio::spawn(async move { ns.fetch(&id, request(Method::PUT, v)).await })
        })
        .collect();
    let reader = tokio::spawn({
        let (ns, id) = (h.namespace.clone(), id.clone());
        async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            text(ns.fetch(&id, request(Method::GET, "")).await.unwrap()).await
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!first.is_finished() && later.iter().all(|t| !t.is_finished()));
    assert!(
        !reader.is_finished(),
        "a read of an undurable write is held too"
    );
    assert_eq!(held.commits.load(Ordering::SeqCst), 0);

    held.open.add_permits(2);
    assert_eq!(text(first.await.unwrap().unwrap()).await, "one");
    for t in later {
        t.await.unwrap().unwrap();
    }
    let read = reader.await.unwrap();
    assert!(["two", "three", "four"].contains(&read.as_str()), "{read}");
    assert_eq!(
        *held.batches.lock().unwrap(),
        [1, 3],
        "the three turns that ran during the first commit were committed together"
    );
    let last = held.data.get("k").await.unwrap().unwrap();
    assert!(["two", "three", "four"].iter().any(|v| last == *v));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_or_a_hang_resets_the_object_and_discards_only_its_own_turn() {
    let stores = MemoryStorageProvider::new();
    let h = harness(stores.clone(), ManualClock::new());
    let (id, other) = (
        h.namespace.id_from_name("flaky"),
        h.namespace.id_from_name("other"),
    );
    h.namespace
        .fetch(&id, request(Method::PUT, "kept"))
        .await
        .unwrap();
    h.namespace
        .fetch(&other, request(Method::PUT, "fine"))
        .await
        .unwrap();

    let panicked = h.namespace.fetch(&id, request(Method::POST, "panic")).await;
    assert_eq!(panicked.unwrap_err().kind(), ErrorKind::Backend);
    let hung = h.namespace.fetch(&id, request(Method::POST, "hang")).await;
    assert_eq!(hung.unwrap_err().kind(), ErrorKind::Timeout);

    // A fresh instance, reloaded from storage: the aborted turns' writes are gone, earlier ones stay.
    let read = h
        .namespace
        .fetch(&id, request(Method::GET, ""))
        .await
        .unwrap();
    assert_eq!(text(read).await, "kept");
    assert_eq!(stores.storage(&id).get("k").await.unwrap().unwrap(), "kept");
    let read = h
        .namespace
        .fetch(&other, request(Method::GET, ""))
        .await
        .unwrap();
    assert_eq!(text(read).await, "fine", "other objects are unaffected");
}

#[derive(Clone, Default)]
struct FullDiskProvider;

impl StorageProvider for FullDiskProvider {
    type Storage = FullDisk<MemoryStorage>;
    fn storage(&self, _id: &ObjectId) -> FullDisk<MemoryStorage> {
        FullDisk(MemoryStorage::new())
    }
    fn due_alarms(&self, _now: SystemTime) -> Result<Vec<ObjectId>, Error> {
        Ok(Vec::new())
    }
    fn next_alarm(&self) -> Result<Option<SystemTime>, Error> {
        Ok(None)
    }
    // These providers serve the gate and commit tests only: their objects never have an alarm.
    async fn alarm_record(&self, _id: &ObjectId) -> Result<Option<AlarmRecord>, Error> {
        Ok(None)
    }
    async fn set_alarm_record(&self, _id: &ObjectId, _record: AlarmRecord) -> Result<(), Error> {
        Err(Error::new(ErrorKind::Backend, "no alarms here"))
    }
}

#[tokio::test]
async fn a_failed_commit_fails_the_response_and_replaces_the_instance() {
    let h = harness(FullDiskProvider, ManualClock::new());
    let id = h.namespace.id_from_name("doomed");
    let err = h
        .namespace
        .fetch(&id, request(Method::PUT, "lost"))
        .await
        .unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::CapacityExceeded,
        "never acknowledged"
    );
    assert_eq!(h.namespace.live(), 0, "the broken instance is gone");
    let read = h
        .namespace
        .fetch(&id, request(Method::GET, ""))
        .await
        .unwrap();
    assert_eq!(
        text(read).await,
        "",
        "the new instance does not see the lost write"
    );
}

#[tokio::test]
async fn an_oversized_value_is_refused_and_changes_nothing() {
    let stores = MemoryStorageProvider::new();
    let h = harness(stores.clone(), ManualClock::new());
    let id = h.namespace.id_from_name("limits");
    h.namespace
        .fetch(&id, request(Method::PUT, "small"))
        .await
        .unwrap();
    let huge = "x".repeat(edge_core::durable::MAX_VALUE_LEN + 1);
    let err = h
        .namespace
        .fetch(&id, request(Method::PUT, &huge))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooLarge);
    let read = h
        .namespace
        .fetch(&id, request(Method::GET, ""))
        .await
        .unwrap();
    assert_eq!(text(read).await, "small");
    assert_eq!(
        stores.storage(&id).get("k").await.unwrap().unwrap(),
        "small"
    );
}

#[tokio::test]
async fn eviction_reloads_from_storage_and_idle_objects_are_evicted() {
    let clock = ManualClock::new();
    let h = harness(MemoryStorageProvider::new(), clock.clone());
    let a = h.namespace.id_from_name("a");
    let b = h.namespace.id_from_name("b");
    h.namespace
        .fetch(&a, request(Method::PUT, "x"))
        .await
        .unwrap();
    h.namespace.evict(&a).await;
    assert_eq!(h.namespace.live(), 0);
    let read = h
        .namespace
        .fetch(&a, request(Method::GET, ""))
        .await
        .unwrap();
    assert_eq!(text(read).await, "x");

    clock.advance(Duration::from_secs(30));
    h.namespace
        .fetch(&b, request(Method::GET, ""))
        .await
        .unwrap();
    assert_eq!(h.namespace.evict_idle(Duration::from_secs(10)).await, 1);
    assert!(h.namespace.placement(&a).is_none() && h.namespace.placement(&b).is_some());
}

#[tokio::test]
async fn alarms_fire_at_least_once_and_retry_with_backoff() {
    let clock = ManualClock::new();
    let stores = MemoryStorageProvider::new();
    let h = harness(stores.clone(), clock.clone());
    let id = h.namespace.id_from_name("alarmed");
    h.namespace
        .fetch(&id, request(Method::POST, "alarm 10000"))
        .await
        .unwrap();
    assert_eq!(
        h.namespace.run_due_alarms().await.unwrap(),
        AlarmRun::default()
    );
    clock.advance(Duration::from_secs(10));
    let run = h.namespace.run_due_alarms().await.unwrap();
    assert_eq!(run.fired, 1);
    assert_eq!(
        stores.storage(&id).get_alarm().await.unwrap(),
        None,
        "cleared after success"
    );

    // Fails twice: retried after 2 s, then 4 s, then succeeds.
    h.alarms_failing.store(2, Ordering::SeqCst);
    h.namespace
        .fetch(&id, request(Method::POST, "alarm 0"))
        .await
        .unwrap();
    assert_eq!(h.namespace.run_due_alarms().await.unwrap().retried, 1);
    let retry_at = stores.storage(&id).get_alarm().await.unwrap().unwrap();
    assert_eq!(retry_at, clock.wall_time() + Duration::from_secs(2));
    clock.advance(Duration::from_millis(1999));
    assert_eq!(
        h.namespace.run_due_alarms().await.unwrap(),
        AlarmRun::default()
    );
    clock.advance(Duration::from_millis(1));
    assert_eq!(h.namespace.run_due_alarms().await.unwrap().retried, 1);
    clock.advance(Duration::from_secs(4));
    assert_eq!(h.namespace.run_due_alarms().await.unwrap().fired, 1);
    let fired = stores.storage(&id).get("alarms").await.unwrap().unwrap();
    assert_eq!(
        fired, "4",
        "1 + 3 attempts, each attempt's writes committed"
    );
    let told = stores
        .storage(&id)
        .get("retry_counts")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        told, "0012",
        "the handler is told each attempt's retry count"
    );

    // Always failing: dropped after the sixth retry.
    h.alarms_failing.store(usize::MAX, Ordering::SeqCst);
    h.namespace
        .fetch(&id, request(Method::POST, "alarm 0"))
        .await
        .unwrap();
    let mut abandoned = 0;
    for _ in 0..20 {
        abandoned += h.namespace.run_due_alarms().await.unwrap().abandoned;
        clock.advance(Duration::from_secs(600));
    }
    assert_eq!(abandoned, 1);
    assert_eq!(stores.storage(&id).get_alarm().await.unwrap(), None);
}

#[tokio::test]
async fn alarms_persist_across_a_restart_on_sqlite() {
    let dir = std::env::temp_dir().join(format!("edge-do-alarms-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("objects.db");
    let _ = std::fs::remove_file(&path);
    let clock = ManualClock::new();
    let id = ObjectId::from_name("sleeper");
    {
        let h = harness(edge_do::SqliteStore::open(&path).unwrap(), clock.clone());
        h.namespace
            .fetch(&id, request(Method::POST, "alarm 60000"))
            .await
            .unwrap();
    } // the process "restarts": nothing of the namespace is left but the file
    clock.advance(Duration::from_secs(61));
    let store = edge_do::SqliteStore::open(&path).unwrap();
    let h = harness(store.clone(), clock.clone());
    assert_eq!(h.namespace.run_due_alarms().await.unwrap().fired, 1);
    assert_eq!(
        store.storage(&id).get("alarms").await.unwrap().unwrap(),
        "1"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn location_hints_are_recorded_once() {
    let h = harness(MemoryStorageProvider::new(), ManualClock::new());
    let id = h.namespace.id_from_name("eu");
    h.namespace
        .fetch_with_hint(
            &id,
            Some(LocationHint::WesternEurope),
            request(Method::GET, ""),
        )
        .await
        .unwrap();
    let placement = h.namespace.placement(&id).unwrap();
    assert_eq!(
        placement.location, "local",
        "the in-process policy places everything here"
    );
    assert_eq!(
        placement.hint,
        Some(LocationHint::WesternEurope),
        "and records the hint"
    );

    // A live object keeps its first hint.
    h.namespace
        .fetch_with_hint(&id, Some(LocationHint::Africa), request(Method::GET, ""))
        .await
        .unwrap();
    assert_eq!(
        h.namespace.placement(&id).unwrap().hint,
        Some(LocationHint::WesternEurope),
        "a live object keeps its place"
    );
}

#[test]
fn a_turn_future_is_send_on_native_hosts() {
    fn assert_send<T: Send>(_: T) {}
    let h = harness(MemoryStorageProvider::new(), ManualClock::new());
    let id = h.namespace.id_from_name("send");
    assert_send(h.namespace.fetch(&id, request(Method::GET, "")).boxed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alarm_driver_fires_alarms_on_the_real_clock() {
    let stores = MemoryStorageProvider::new();
    let namespace = Namespace::new(stores.clone(), |state: ObjectState<MemoryStorage>| Probe {
        storage: state.storage,
        inside: AtomicUsize::new(0),
        most_inside: Arc::default(),
        alarms_failing: Arc::default(),
        clock: ManualClock::new(),
    });
    let id = namespace.id_from_name("woken");
    let at = edge_core::SystemClock::new().wall_time() + Duration::from_millis(50);
    stores.storage(&id).set_alarm(at).await.unwrap();
    let driver = tokio::spawn({
        let namespace = namespace.clone();
        async move {
            namespace
                .drive_alarms(
                    &edge_core::host::tokio::TokioTimer::new(),
                    Duration::from_millis(20),
                )
                .await;
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while stores.storage(&id).get("alarms").await.unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the alarm never fired"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    driver.abort();
    assert_eq!(stores.storage(&id).get_alarm().await.unwrap(), None);
}

#[test]
fn unique_ids_do_not_repeat_and_are_not_names() {
    let h = harness(MemoryStorageProvider::new(), ManualClock::new());
    let ids: std::collections::HashSet<ObjectId> =
        (0..10_000).map(|_| h.namespace.new_unique_id()).collect();
    assert_eq!(ids.len(), 10_000);
    assert!(
        ids.iter()
            .all(|id| id.name().is_none() && ObjectId::parse(id.as_str()).as_ref() == Some(id))
    );
}
