//! Callers that go away: a request future dropped at any point must never break a turn's atomicity,
//! and one client's disconnect must never fail another's request.
//!
//! The contract (edge-do's runtime docs, *Cancellation*): a turn dropped before it passed the input gate
//! never ran; a turn past the gate runs to its end, carried on by the host's `WaitUntil` or by the
//! object's next caller. These tests drop turn futures at every poll, check on every commit that the
//! backing storage never holds half a turn, and count that every turn that started committed whole.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use edge_core::durable::{
    DurableObject, ListRange, ObjectId, ObjectNamespace, Storage, WriteBatch,
};
use edge_core::wait_until::QueuedWaitUntil;
use edge_core::{Body, Error, ErrorKind};
use edge_do::{
    AlarmRecord, MemoryStorage, MemoryStorageProvider, Namespace, ObjectState, ObjectStorage,
    StorageProvider,
};
use http::{Request, Response};
use proptest::prelude::*;

/// Pending once (waking itself), then ready: an await point that any executor, or a hand-polling test,
/// gets past.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

async fn yields(n: usize) {
    for _ in 0..n {
        YieldOnce(false).await;
    }
}

fn number(value: Option<Bytes>) -> i64 {
    value.map_or(0, |v| String::from_utf8_lossy(&v).parse().unwrap())
}

/// Storage whose commits take a few await points, and which checks, after every batch it applies,
/// that the two accounts still balance: a committed half-transfer is caught the moment it lands.
#[derive(Clone, Default)]
struct Ledger {
    data: MemoryStorage,
    unbalanced: Arc<AtomicBool>,
}

impl Ledger {
    async fn balance(&self) -> (i64, i64) {
        (
            number(self.data.get("a").await.unwrap()),
            number(self.data.get("b").await.unwrap()),
        )
    }
}

impl Storage for Ledger {
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
        let existed = self.data.get(key).await?.is_some();
        self.write(WriteBatch::new().delete(key)).await?;
        Ok(existed)
    }
    async fn write(&self, batch: WriteBatch) -> Result<(), Error> {
        yields(3).await;
        self.data.write(batch).await?;
        let (a, b) = self.balance().await;
        if a + b != 0 {
            self.unbalanced.store(true, Ordering::SeqCst);
        }
        yields(2).await;
        Ok(())
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

/// One object's [`Ledger`] for every id; the alarm bookkeeping is its memory storage's.
#[derive(Clone, Default)]
struct LedgerProvider {
    ledger: Ledger,
    alarms: MemoryStorageProvider,
}

impl StorageProvider for LedgerProvider {
    type Storage = Ledger;
    fn storage(&self, _id: &ObjectId) -> Ledger {
        self.ledger.clone()
    }
    fn due_alarms(&self, now: SystemTime) -> Result<Vec<ObjectId>, Error> {
        self.alarms.due_alarms(now)
    }
    fn next_alarm(&self) -> Result<Option<SystemTime>, Error> {
        self.alarms.next_alarm()
    }
    async fn alarm_record(&self, id: &ObjectId) -> Result<Option<AlarmRecord>, Error> {
        self.alarms.alarm_record(id).await
    }
    async fn set_alarm_record(&self, id: &ObjectId, record: AlarmRecord) -> Result<(), Error> {
        self.alarms.set_alarm_record(id, record).await
    }
}

/// Moves 1 from account `a` to account `b`, with await points between the debit and the credit: the
/// turn a cancelled caller must not leave half-done.
struct Transfer<S> {
    storage: ObjectStorage<S>,
    started: Arc<AtomicUsize>,
}

impl<S: Storage + 'static> DurableObject for Transfer<S> {
    async fn fetch(&self, _request: Request<Body>) -> Result<Response<Body>, Error> {
        self.started.fetch_add(1, Ordering::SeqCst);
        let a = number(self.storage.get("a").await?);
        yields(2).await;
        self.storage
            .put("a", Bytes::from((a - 1).to_string()))
            .await?;
        yields(3).await;
        let b = number(self.storage.get("b").await?);
        self.storage
            .put("b", Bytes::from((b + 1).to_string()))
            .await?;
        yields(2).await;
        Ok(Response::new(Body::from((b + 1).to_string())))
    }
}

fn transfers<P>(provider: P) -> (Namespace<Transfer<P::Storage>, P>, Arc<AtomicUsize>)
where
    P: StorageProvider,
{
    let started = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&started);
    let namespace = Namespace::new(provider, move |state: ObjectState<P::Storage>| Transfer {
        storage: state.storage,
        started: Arc::clone(&counter),
    });
    (namespace, started)
}

/// Polls `future` up to `polls` times by hand; its output if it finished.
fn poll_times<F: Future>(future: Pin<&mut F>, polls: usize) -> Option<F::Output> {
    let mut future = future;
    let mut cx = Context::from_waker(futures::task::noop_waker_ref());
    for _ in 0..polls {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return Some(output);
        }
    }
    None
}

fn transfer_request() -> Request<Body> {
    Request::new(Body::empty())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    /// Clients whose request futures are dropped after `drops[i]` polls, one after another, then one
    /// that waits for its answer: no commit ever holds half a transfer, every transfer that started
    /// committed whole, and the patient client gets its answer.
    #[test]
    fn a_turn_dropped_at_any_await_point_commits_whole_or_never_ran(
        drops in proptest::collection::vec(0usize..48, 1..4),
        background in any::<bool>(),
    ) {
        let provider = LedgerProvider::default();
        let ledger = provider.ledger.clone();
        let queued = QueuedWaitUntil::new();
        let (namespace, started) = transfers(provider);
        let namespace = if background {
            namespace.with_wait_until(queued.clone())
        } else {
            namespace
        };
        let id = namespace.id_from_name("accounts");
        let mut acknowledged = 0;
        for polls in &drops {
            let call = namespace.fetch_with_hint(&id, None, transfer_request());
            futures::pin_mut!(call);
            if let Some(answer) = poll_times(call, *polls) {
                answer.unwrap();
                acknowledged += 1;
            }
            // The call is dropped here, wherever it was.
        }
        futures::executor::block_on(async {
            if background {
                queued.run_all().await;
            }
            namespace.fetch_with_hint(&id, None, transfer_request()).await.unwrap();
            acknowledged += 1;
            let (a, b) = ledger.balance().await;
            prop_assert!(!ledger.unbalanced.load(Ordering::SeqCst), "a half transfer was committed");
            let started = i64::try_from(started.load(Ordering::SeqCst)).unwrap();
            prop_assert_eq!((a, b), (-started, started), "every started transfer committed whole");
            prop_assert!(started >= acknowledged, "every acknowledged transfer is counted");
            Ok(())
        })?;
    }
}

/// The fault run's case: one client's turn debits and is dropped before it credits; another client's
/// turn follows. Before, the second turn committed the first one's debit with its own write.
#[test]
fn another_clients_turn_never_commits_a_dropped_turns_half() {
    let provider = LedgerProvider::default();
    let ledger = provider.ledger.clone();
    let (namespace, started) = transfers(provider);
    let id = namespace.id_from_name("accounts");
    {
        let call = namespace.fetch_with_hint(&id, None, transfer_request());
        futures::pin_mut!(call);
        // Far enough to have debited (the overlay holds `a = -1`), not far enough to have credited.
        assert!(poll_times(call, 4).is_none());
    }
    assert_eq!(
        started.load(Ordering::SeqCst),
        1,
        "the dropped turn started"
    );
    futures::executor::block_on(async {
        assert_eq!(ledger.balance().await, (0, 0), "nothing committed yet");
        let answer = namespace
            .fetch_with_hint(&id, None, transfer_request())
            .await
            .unwrap();
        let credited = answer.into_body().collect(64).await.unwrap();
        assert_eq!(
            credited, "2",
            "the second transfer ran after the first one ended"
        );
        assert_eq!(ledger.balance().await, (-2, 2));
        assert!(!ledger.unbalanced.load(Ordering::SeqCst));
    });
}

/// With the host's background work given, an abandoned turn runs on at once, without waiting for
/// another caller.
#[test]
fn with_a_wait_until_an_abandoned_turn_finishes_in_the_background() {
    let provider = LedgerProvider::default();
    let ledger = provider.ledger.clone();
    let queued = QueuedWaitUntil::new();
    let (namespace, _) = transfers(provider);
    let namespace = namespace.with_wait_until(queued.clone());
    let id = namespace.id_from_name("accounts");
    {
        let call = namespace.fetch_with_hint(&id, None, transfer_request());
        futures::pin_mut!(call);
        assert!(poll_times(call, 4).is_none());
    }
    assert_eq!(queued.pending(), 1, "the rest of the turn went to the host");
    futures::executor::block_on(async {
        queued.run_all().await;
        assert_eq!(ledger.balance().await, (-1, 1));
    });
}

/// A counter on SQLite whose increments take await points; `started` counts the turns that began.
struct Counter {
    storage: ObjectStorage<edge_do::SqliteStorage>,
    started: Arc<AtomicUsize>,
}

impl DurableObject for Counter {
    async fn fetch(&self, _request: Request<Body>) -> Result<Response<Body>, Error> {
        self.started.fetch_add(1, Ordering::SeqCst);
        let n = number(self.storage.get("n").await?) + 1;
        tokio::task::yield_now().await;
        self.storage.put("n", Bytes::from(n.to_string())).await?;
        Ok(Response::new(Body::from(n.to_string())))
    }
}

/// 64 healthy clients and 4 that keep dropping their requests at random moments (mid-turn, mid-commit),
/// on a real SQLite file with fsync: no healthy request fails, and every turn that started counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_disconnect_storm_fails_no_healthy_client() {
    const HEALTHY: usize = 64;
    const REQUESTS: usize = 20;
    const RUDE: usize = 4;
    let dir = std::env::temp_dir().join(format!("edge-do-storm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("objects.db");
    let _ = std::fs::remove_file(&path);
    let store = edge_do::SqliteStore::open(&path).unwrap();
    let started = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&started);
    let namespace = Namespace::new(store.clone(), move |state: ObjectState<_>| Counter {
        storage: state.storage,
        started: Arc::clone(&counter),
    })
    .with_wait_until(edge_core::host::tokio::TokioWaitUntil::current().unwrap());
    let id = namespace.id_from_name("storm");
    let healthy_done = Arc::new(AtomicBool::new(false));

    let rude: Vec<_> = (0..RUDE)
        .map(|client| {
            let (namespace, id, done) = (namespace.clone(), id.clone(), Arc::clone(&healthy_done));
            tokio::spawn(async move {
                let mut dropped = 0usize;
                let mut wait = 50 + client as u64 * 37;
                while !done.load(Ordering::SeqCst) {
                    let call = namespace.fetch_with_hint(&id, None, transfer_request());
                    if tokio::time::timeout(Duration::from_micros(wait), call)
                        .await
                        .is_err()
                    {
                        dropped += 1;
                    }
                    wait = (wait * 7 + 13) % 3_000; // wander over 0–3 ms
                }
                dropped
            })
        })
        .collect();
    let healthy: Vec<_> = (0..HEALTHY)
        .map(|_| {
            let (namespace, id) = (namespace.clone(), id.clone());
            tokio::spawn(async move {
                let mut errors = Vec::new();
                for _ in 0..REQUESTS {
                    if let Err(error) = namespace
                        .fetch_with_hint(&id, None, transfer_request())
                        .await
                    {
                        errors.push(error.kind());
                    }
                }
                errors
            })
        })
        .collect();
    let mut errors: Vec<ErrorKind> = Vec::new();
    for client in healthy {
        errors.extend(client.await.unwrap());
    }
    healthy_done.store(true, Ordering::SeqCst);
    let mut dropped = 0;
    for client in rude {
        dropped += client.await.unwrap();
    }
    assert_eq!(errors, Vec::new(), "healthy clients saw errors");
    assert!(dropped > 0, "the rude clients dropped requests");

    // Abandoned turns finish in the background; wait for the last of them.
    let storage = store.storage(&id);
    let mut committed = 0;
    for _ in 0..500 {
        committed = number(storage.get("n").await.unwrap());
        if committed == i64::try_from(started.load(Ordering::SeqCst)).unwrap() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        committed,
        i64::try_from(started.load(Ordering::SeqCst)).unwrap(),
        "every turn that started committed"
    );
    assert!(committed >= i64::try_from(HEALTHY * REQUESTS).unwrap());
    drop(namespace);
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!(
        "storm: {} healthy requests, {dropped} dropped by rude clients, 0 errors, {committed} committed",
        HEALTHY * REQUESTS
    );
}
