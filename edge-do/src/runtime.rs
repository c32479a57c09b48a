//! The in-process runtime: a [`Namespace`] of objects of one kind, one live instance per id, each
//! request, alarm and WebSocket message a *turn* of that instance.
//!
//! Semantics, next to Cloudflare's:
//!
//! | | here | Cloudflare |
//! |---|---|---|
//! | instances | one per id, created on first use from the factory, state reloaded from storage | same |
//! | input gate | a turn runs to completion before the next one to the same object starts, even while it awaits something other than storage | another event may run while an object awaits a `fetch` elsewhere: code correct here is correct there, not always the reverse |
//! | output gate | a response is released once its writes, and every earlier write it could have read, are durable | same |
//! | write coalescing | all writes of one turn (a whole handler) commit as one batch; batches that pile up while a commit runs join the next one (group commit) | writes between two awaits coalesce; a turn is shorter there |
//! | a handler error | its writes are still committed; the object lives on | same |
//! | a panic, or the time limit passing | the turn's writes are discarded, earlier ones committed, the instance replaced (its WebSockets closed with 1011) | an exception that escapes resets the object |
//! | a failed commit | every response waiting on it fails, the instance is replaced | same ("broken" object) |
//! | alarms | at least once, retried with exponential backoff from 2 s, six retries, then dropped; the retry count lives in memory | same policy |
//! | idle eviction | [`Namespace::evict_idle`], called by the host | automatic |
//! | placement | a [`PlacementPolicy`] sees the [`LocationHint`] at creation; the default places everything here and records the hint | the hint chooses a region |
//!
//! Objects of different ids run concurrently.

use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use edge_core::durable::{
    DurableObject, LocationHint, ObjectId, ObjectNamespace, SocketMessage, Storage,
};
use edge_core::trace::{RequestSpan, SpanKind, Status, attr};
use edge_core::{Body, BoxFuture, Clock, Error, ErrorKind, MaybeSend, MaybeSync, SystemClock};
use futures_util::FutureExt;
use futures_util::lock::{Mutex as AsyncMutex, OwnedMutexGuard};
use http::{Request, Response};

use crate::sockets::{DEFAULT_QUEUE, Session, Sockets};
use crate::storage::ObjectStorage;

/// Where objects' storage comes from: one [`Storage`] per id, and the index of their alarms (so alarms
/// set before a restart fire after it).
pub trait StorageProvider: MaybeSend + MaybeSync + 'static {
    /// One object's storage.
    type Storage: Storage + 'static;

    /// The storage of `id` (the same data every time).
    fn storage(&self, id: &ObjectId) -> Self::Storage;

    /// The objects whose alarm is at or before `now`.
    ///
    /// # Errors
    ///
    /// The alarm index could not be read.
    fn due_alarms(&self, now: SystemTime) -> Result<Vec<ObjectId>, Error>;

    /// The earliest alarm set.
    ///
    /// # Errors
    ///
    /// The alarm index could not be read.
    fn next_alarm(&self) -> Result<Option<SystemTime>, Error>;
}

/// What an object is created with.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ObjectState<S> {
    /// The object's id.
    pub id: ObjectId,
    /// The object's storage: writes buffered per turn and committed behind the output gate.
    pub storage: ObjectStorage<S>,
    /// The object's WebSocket connections.
    pub sockets: Sockets,
    /// Where the placement policy put it.
    pub placement: Placement,
}

/// Where an object was placed, and the hint it was created with.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Placement {
    /// The location chosen (the in-process policy answers `"local"`).
    pub location: Cow<'static, str>,
    /// The hint given when the object was created.
    pub hint: Option<LocationHint>,
}

impl Placement {
    /// A placement at `location` for `hint`.
    #[must_use]
    pub fn new(location: impl Into<Cow<'static, str>>, hint: Option<LocationHint>) -> Self {
        Self {
            location: location.into(),
            hint,
        }
    }
}

/// Decides where a new object lives. Called once per instance creation with the hint of the request that
/// created it.
pub trait PlacementPolicy: Send + Sync + 'static {
    /// The placement of `id`.
    fn place(&self, id: &ObjectId, hint: Option<LocationHint>) -> Placement;
}

/// The in-process policy: every object lives in this process, whatever the hint; the hint is recorded in
/// [`Placement::hint`] (so tests and logs can see it) and otherwise a no-op.
#[derive(Clone, Copy, Debug, Default)]
pub struct LocalPlacement;

impl PlacementPolicy for LocalPlacement {
    fn place(&self, _id: &ObjectId, hint: Option<LocationHint>) -> Placement {
        Placement::new("local", hint)
    }
}

/// A timer, as the host provides one (`|d| Box::pin(tokio::time::sleep(d))` under tokio).
pub type Sleep = Arc<dyn Fn(Duration) -> BoxFuture<'static, ()> + Send + Sync>;

/// How alarms that fail are retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AlarmRetry {
    /// The delay before the first retry; doubled for each next one.
    pub first_delay: Duration,
    /// Retries after the first attempt; after that the alarm is dropped.
    pub max_retries: u32,
}

impl Default for AlarmRetry {
    /// Cloudflare's: 2 s, doubling, six retries.
    fn default() -> Self {
        Self {
            first_delay: Duration::from_secs(2),
            max_retries: 6,
        }
    }
}

impl AlarmRetry {
    /// The delay before retry number `attempt` (1-based).
    #[must_use]
    pub fn delay(&self, attempt: u32) -> Duration {
        self.first_delay
            .saturating_mul(1 << attempt.saturating_sub(1).min(20))
    }
}

/// What one [`Namespace::run_due_alarms`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AlarmRun {
    /// Alarms whose handler succeeded.
    pub fired: usize,
    /// Alarms whose handler failed and were set again for a retry.
    pub retried: usize,
    /// Alarms dropped after their last retry failed.
    pub abandoned: usize,
}

pub(crate) struct Live<O, S> {
    pub(crate) object: O,
    pub(crate) storage: ObjectStorage<S>,
    pub(crate) sockets: Sockets,
    placement: Placement,
    /// The input gate: held for the whole of each turn.
    gate: Arc<AsyncMutex<()>>,
    /// Set when the instance was replaced; a turn that finds it set goes to the new one.
    retired: AtomicBool,
    /// When the last turn began ([`Clock::now_nanos`]), for idle eviction.
    last_used: AtomicU64,
}

/// A held input gate.
type Gate = OwnedMutexGuard<()>;
type Factory<O, S> = dyn Fn(ObjectState<S>) -> O + Send + Sync;
type Instances<O, S> = HashMap<ObjectId, Arc<Live<O, S>>>;

struct Inner<O, P: StorageProvider> {
    provider: P,
    factory: Box<Factory<O, P::Storage>>,
    live: Mutex<Instances<O, P::Storage>>,
    clock: Arc<dyn Clock>,
    placement: Box<dyn PlacementPolicy>,
    time_limit: Option<(Duration, Sleep)>,
    alarm_retry: AlarmRetry,
    alarm_attempts: Mutex<HashMap<ObjectId, u32>>,
    socket_queue: usize,
    /// Keys for unique ids: SipHash under keys the OS drew for this process.
    id_keys: std::collections::hash_map::RandomState,
    ids_made: AtomicU64,
}

/// Objects of one kind, addressed by [`ObjectId`]. Cheap to clone; clones share the instances.
///
/// ```
/// use edge_core::durable::{DurableObject, ObjectNamespace, Storage};
/// use edge_core::{Body, Error};
/// use edge_do::{MemoryStorage, MemoryStorageProvider, Namespace, ObjectState, ObjectStorage};
/// use http::{Request, Response};
///
/// /// Counts the requests it has seen, in its storage.
/// struct Counter(ObjectState<MemoryStorage>);
///
/// impl DurableObject for Counter {
///     async fn fetch(&self, _request: Request<Body>) -> Result<Response<Body>, Error> {
///         let n = match self.0.storage.get("n").await? {
///             Some(bytes) => String::from_utf8_lossy(&bytes).parse::<u64>().unwrap_or(0),
///             None => 0,
///         } + 1;
///         self.0.storage.put("n", n.to_string().into()).await?;
///         Ok(Response::new(Body::from(n.to_string())))
///     }
/// }
///
/// # futures::executor::block_on(async {
/// let counters = Namespace::new(MemoryStorageProvider::new(), Counter);
/// let id = counters.id_from_name("page:/home");
/// for _ in 0..2 {
///     counters.fetch(&id, Request::new(Body::empty())).await?;
/// }
/// counters.evict(&id).await; // state survives in storage
/// let third = counters.fetch(&id, Request::new(Body::empty())).await?;
/// assert_eq!(third.into_body().collect(16).await?, "3");
/// # Ok::<(), Error>(()) }).unwrap();
/// ```
pub struct Namespace<O, P: StorageProvider> {
    inner: Arc<Inner<O, P>>,
}

impl<O, P: StorageProvider> Clone for Namespace<O, P> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<O, P: StorageProvider> Namespace<O, P> {
    fn lock(&self) -> MutexGuard<'_, Instances<O, P::Storage>> {
        self.inner
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl<O, P: StorageProvider> std::fmt::Debug for Namespace<O, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Namespace")
            .field("live", &self.lock().len())
            .finish_non_exhaustive()
    }
}

/// Why a turn did not finish normally.
enum Abort {
    Panicked,
    TimedOut(Duration),
}

impl Abort {
    fn into_error(self) -> Error {
        match self {
            Self::Panicked => Error::new(
                ErrorKind::Backend,
                "the durable object panicked; it was reset from storage",
            ),
            Self::TimedOut(limit) => Error::new(
                ErrorKind::Timeout,
                format!(
                    "the durable object did not answer within {limit:?}; it was reset from storage"
                ),
            ),
        }
    }
}

impl<O, P> Namespace<O, P>
where
    O: DurableObject,
    P: StorageProvider,
{
    /// A namespace whose objects get their storage from `provider` and are built by `factory`.
    pub fn new(
        provider: P,
        factory: impl Fn(ObjectState<P::Storage>) -> O + Send + Sync + 'static,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                provider,
                factory: Box::new(factory),
                live: Mutex::new(HashMap::new()),
                clock: Arc::new(SystemClock::new()),
                placement: Box::new(LocalPlacement),
                time_limit: None,
                alarm_retry: AlarmRetry::default(),
                alarm_attempts: Mutex::new(HashMap::new()),
                socket_queue: DEFAULT_QUEUE,
                id_keys: std::collections::hash_map::RandomState::new(),
                ids_made: AtomicU64::new(0),
            }),
        }
    }

    fn configure(mut self, change: impl FnOnce(&mut Inner<O, P>)) -> Self {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => change(inner),
            None => debug_assert!(false, "configure a namespace before cloning it"),
        }
        self
    }

    /// Uses `clock` for alarms and idle times (a `ManualClock` in tests). Call before cloning.
    #[must_use]
    pub fn with_clock(self, clock: impl Clock + 'static) -> Self {
        self.configure(|inner| inner.clock = Arc::new(clock))
    }

    /// Places new objects with `policy`. Call before cloning.
    #[must_use]
    pub fn with_placement(self, policy: impl PlacementPolicy) -> Self {
        self.configure(|inner| inner.placement = Box::new(policy))
    }

    /// Gives every turn at most `limit`, timed by `sleep`; one that overruns is abandoned and its object
    /// reset. Without it, a handler that never returns blocks its object (only). Call before cloning.
    #[must_use]
    pub fn with_time_limit(self, limit: Duration, sleep: Sleep) -> Self {
        self.configure(|inner| inner.time_limit = Some((limit, sleep)))
    }

    /// Retries failed alarms by `retry`. Call before cloning.
    #[must_use]
    pub fn with_alarm_retry(self, retry: AlarmRetry) -> Self {
        self.configure(|inner| inner.alarm_retry = retry)
    }

    /// Queues at most `messages` per WebSocket connection before dropping it as too slow. Call before
    /// cloning.
    #[must_use]
    pub fn with_socket_queue(self, messages: usize) -> Self {
        self.configure(|inner| inner.socket_queue = messages.max(1))
    }

    /// A new id no other call returns (Cloudflare's `newUniqueId`): 128 bits of SipHash, keyed by the
    /// OS's randomness for this process, over a counter and the time, so ids are unpredictable to clients
    /// as long as the process's keys are secret. (On wasm32 the host's own unique ids should be used.)
    #[must_use]
    pub fn new_unique_id(&self) -> ObjectId {
        use std::hash::{BuildHasher, Hasher};
        let n = self.inner.ids_made.fetch_add(1, Ordering::Relaxed);
        let nanos = self.inner.clock.now_nanos();
        let half = |lane: u8| {
            let mut hasher = self.inner.id_keys.build_hasher();
            hasher.write_u8(lane);
            hasher.write_u64(n);
            hasher.write_u64(nanos);
            hasher.finish()
        };
        ObjectId::unique((u128::from(half(0)) << 64) | u128::from(half(1)))
    }

    /// How many instances are live.
    #[must_use]
    pub fn live(&self) -> usize {
        self.lock().len()
    }

    /// Where `id` was placed, if it is live.
    #[must_use]
    pub fn placement(&self, id: &ObjectId) -> Option<Placement> {
        self.lock().get(id).map(|live| live.placement.clone())
    }

    /// Drops the live instance of `id`, if any, once the turn inside it (if one is) ends and its writes
    /// are committed. Its storage stays; its WebSockets are closed with 1001. The next request creates it
    /// again from storage.
    pub async fn evict(&self, id: &ObjectId) {
        let Some(live) = self.lock().get(id).cloned() else {
            return;
        };
        let _gate = live.gate.lock().await;
        self.retire(id, &live, 1001).await;
    }

    /// Evicts every instance with no open WebSocket whose last turn began more than `idle` ago; how many.
    pub async fn evict_idle(&self, idle: Duration) -> usize {
        let now = self.inner.clock.now_nanos();
        let idle = u64::try_from(idle.as_nanos()).unwrap_or(u64::MAX);
        let candidates: Vec<ObjectId> = self
            .lock()
            .iter()
            .filter(|(_, live)| {
                live.sockets.is_empty()
                    && now.saturating_sub(live.last_used.load(Ordering::Relaxed)) > idle
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in &candidates {
            self.evict(id).await;
        }
        candidates.len()
    }

    /// Sends `request` to `id`, creating the object with `hint` for the placement policy if it is not
    /// live (the hint is ignored for a live object, as on Cloudflare).
    ///
    /// # Errors
    ///
    /// The object's error; [`ErrorKind::Timeout`] or [`ErrorKind::Backend`] if it overran its time limit
    /// or panicked; the storage's error if its writes could not be committed.
    pub async fn fetch_with_hint(
        &self,
        id: &ObjectId,
        hint: Option<LocationHint>,
        request: Request<Body>,
    ) -> Result<Response<Body>, Error> {
        // The caller's request span, if it has one: the call becomes a child span and a `do` stage.
        let parent = RequestSpan::from_extensions(request.extensions()).cloned();
        let started = parent.as_ref().map(RequestSpan::now);
        let child = parent
            .as_ref()
            .map(|parent| parent.child("durable_object.fetch", SpanKind::Internal));
        let traced = tracing::debug_span!(
            "durable_object.fetch",
            edge.do.object = %id,
            edge.do.outcome = tracing::field::Empty,
        );
        let call = async {
            let (live, gate) = self.enter(id, hint).await;
            self.turn(id, live, gate, |live| async move {
                live.object.fetch(request).await
            })
            .await
        };
        let result = tracing::Instrument::instrument(call, traced.clone()).await;
        let outcome = result.as_ref().map_or_else(|e| e.kind().as_str(), |_| "ok");
        traced.record("edge.do.outcome", outcome);
        if let (Some(parent), Some(started), Some(mut child)) = (parent, started, child) {
            child.set(attr::EDGE_DO_OBJECT, id.to_string());
            child.set(attr::EDGE_DO_OUTCOME, outcome);
            if result.is_err() {
                child.set_status(Status::Error(Cow::Borrowed(outcome)));
            }
            parent.end_child(child);
            parent.stage_since("do", started, None::<&'static str>);
        }
        result
    }

    /// Accepts a WebSocket connection into `id` with `attachment` (readable by the object through its
    /// hub) and runs the object's `websocket_open`.
    ///
    /// # Errors
    ///
    /// The object refused the connection (its `websocket_open` failed), or its turn failed.
    pub async fn connect(&self, id: &ObjectId, attachment: Bytes) -> Result<Session<O, P>, Error> {
        let (live, gate) = self.enter(id, None).await;
        let (socket, outgoing) = live.sockets.add(attachment, self.inner.socket_queue);
        let session = Session {
            namespace: self.clone(),
            id: id.clone(),
            live: Arc::clone(&live),
            socket,
            outgoing,
            closed: false,
        };
        self.turn(id, live, gate, move |live| async move {
            live.object.websocket_open(socket).await
        })
        .await?;
        Ok(session)
    }

    /// Fires the alarms that are due by the namespace's clock: each runs `alarm()` as a turn of its
    /// object; a failure sets the alarm again after the retry delay, until the retries run out.
    ///
    /// # Errors
    ///
    /// The alarm index could not be read (the handlers' own errors are counted, not returned).
    pub async fn run_due_alarms(&self) -> Result<AlarmRun, Error> {
        let now = self.inner.clock.wall_time();
        let mut run = AlarmRun::default();
        for id in self.inner.provider.due_alarms(now)? {
            let (live, gate) = self.enter(&id, None).await;
            let outcome = self
                .turn(&id, live, gate, |live| async move {
                    match live.storage.get_alarm().await? {
                        Some(at) if at <= now => {}
                        _ => return Ok(None), // moved or cancelled since the index was read
                    }
                    // Cleared before it runs, so an alarm the handler sets survives its success.
                    live.storage.delete_alarm().await?;
                    Ok(Some(live.object.alarm().await))
                })
                .await;
            let failed = match outcome {
                Ok(None) => continue,
                Ok(Some(Ok(()))) => false,
                Ok(Some(Err(_))) | Err(_) => true,
            };
            let attempts = {
                let mut attempts = self.attempts();
                if failed {
                    let n = attempts.entry(id.clone()).or_insert(0);
                    *n += 1;
                    *n
                } else {
                    attempts.remove(&id);
                    0
                }
            };
            if !failed {
                run.fired += 1;
            } else if attempts > self.inner.alarm_retry.max_retries {
                self.attempts().remove(&id);
                run.abandoned += 1;
            } else {
                let retry_at = now + self.inner.alarm_retry.delay(attempts);
                let storage = self.inner.provider.storage(&id);
                // Only if the handler did not set a later alarm of its own.
                if storage.get_alarm().await?.is_none_or(|at| at > retry_at) {
                    storage.set_alarm(retry_at).await?;
                }
                run.retried += 1;
            }
        }
        Ok(run)
    }

    /// Runs [`Namespace::run_due_alarms`] forever, sleeping until the next alarm (at most `poll`
    /// between looks, so alarms set meanwhile are found). Spawn it on the host's executor.
    pub async fn drive_alarms(&self, sleep: Sleep, poll: Duration) {
        loop {
            let _ = self.run_due_alarms().await;
            let now = self.inner.clock.wall_time();
            let wait = match self.inner.provider.next_alarm() {
                Ok(Some(at)) => at.duration_since(now).unwrap_or_default().min(poll),
                _ => poll,
            };
            sleep(wait.max(Duration::from_millis(1))).await;
        }
    }

    fn attempts(&self) -> MutexGuard<'_, HashMap<ObjectId, u32>> {
        self.inner
            .alarm_attempts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn instance(&self, id: &ObjectId, hint: Option<LocationHint>) -> Arc<Live<O, P::Storage>> {
        let mut live = self.lock();
        let instance = live.entry(id.clone()).or_insert_with(|| {
            let placement = self.inner.placement.place(id, hint);
            let storage = ObjectStorage::new(self.inner.provider.storage(id));
            let sockets = Sockets::default();
            let state = ObjectState {
                id: id.clone(),
                storage: storage.clone(),
                sockets: sockets.clone(),
                placement: placement.clone(),
            };
            Arc::new(Live {
                object: (self.inner.factory)(state),
                storage,
                sockets,
                placement,
                gate: Arc::new(AsyncMutex::new(())),
                retired: AtomicBool::new(false),
                last_used: AtomicU64::new(0),
            })
        });
        Arc::clone(instance)
    }

    /// Passes the input gate of the live instance of `id` (a replaced instance is skipped).
    async fn enter(
        &self,
        id: &ObjectId,
        hint: Option<LocationHint>,
    ) -> (Arc<Live<O, P::Storage>>, Gate) {
        loop {
            let live = self.instance(id, hint);
            let guard = Arc::clone(&live.gate).lock_owned().await;
            if live.retired.load(Ordering::Acquire) || live.storage.is_broken() {
                self.remove_if_same(id, &live);
                continue;
            }
            live.last_used
                .store(self.inner.clock.now_nanos(), Ordering::Relaxed);
            return (live, guard);
        }
    }

    /// Runs one turn inside `live` (whose gate the caller holds): the handler made by `handler`, caught
    /// if it panics, bounded by the time limit; then its writes go to the commit and the gate opens, and
    /// the result is released once the commit is durable.
    async fn turn<T, F, Fut>(
        &self,
        id: &ObjectId,
        live: Arc<Live<O, P::Storage>>,
        gate: Gate,
        handler: F,
    ) -> Result<T, Error>
    where
        F: FnOnce(Arc<Live<O, P::Storage>>) -> Fut,
        Fut: Future<Output = Result<T, Error>> + MaybeSend,
    {
        let work = AssertUnwindSafe(handler(Arc::clone(&live))).catch_unwind();
        let finished = match &self.inner.time_limit {
            None => work.await.map_err(|_| Abort::Panicked),
            Some((limit, sleep)) => {
                let timer = sleep(*limit);
                futures_util::pin_mut!(work);
                match futures_util::future::select(work, timer).await {
                    futures_util::future::Either::Left((result, _)) => {
                        result.map_err(|_| Abort::Panicked)
                    }
                    futures_util::future::Either::Right(((), _)) => Err(Abort::TimedOut(*limit)),
                }
            }
        };
        match finished {
            Ok(result) => {
                let commit = live.storage.end_turn();
                let turn = live.sockets.end_turn();
                drop(gate);
                match commit.durable().await {
                    Ok(()) => {
                        live.sockets.release(turn);
                        result
                    }
                    Err(error) => {
                        self.remove_if_same(id, &live);
                        live.sockets.close_all(1011);
                        Err(error)
                    }
                }
            }
            Err(abort) => {
                live.storage.discard_turn();
                live.sockets.discard_turn();
                self.retire(id, &live, 1011).await;
                drop(gate);
                Err(abort.into_error())
            }
        }
    }

    /// Marks `live` replaced, commits what earlier turns wrote, and drops it from the map.
    async fn retire(&self, id: &ObjectId, live: &Arc<Live<O, P::Storage>>, close_code: u16) {
        live.retired.store(true, Ordering::Release);
        let _ = live.storage.end_turn().durable().await;
        self.remove_if_same(id, live);
        live.sockets.close_all(close_code);
    }

    fn remove_if_same(&self, id: &ObjectId, live: &Arc<Live<O, P::Storage>>) {
        let mut instances = self.lock();
        if instances.get(id).is_some_and(|l| Arc::ptr_eq(l, live)) {
            instances.remove(id);
        }
    }
}

impl<O, P> Session<O, P>
where
    O: DurableObject,
    P: StorageProvider,
{
    /// Hands a message from the client to the object, as a turn.
    ///
    /// # Errors
    ///
    /// The object was reset since the connection was made (the client should reconnect), or its
    /// handler failed.
    pub async fn deliver(&self, message: SocketMessage) -> Result<(), Error> {
        let socket = self.socket;
        let guard = Arc::clone(&self.live.gate).lock_owned().await;
        if self.live.retired.load(Ordering::Acquire) {
            return Err(gone());
        }
        self.namespace
            .turn(
                &self.id,
                Arc::clone(&self.live),
                guard,
                move |live| async move { live.object.websocket_message(socket, message).await },
            )
            .await
    }

    /// Ends the connection (the client closed it with `code`, or it died: 1006), removing it from the hub
    /// and running the object's `websocket_close`.
    ///
    /// # Errors
    ///
    /// The object's handler failed.
    pub async fn close(mut self, code: u16) -> Result<(), Error> {
        self.closed = true;
        let socket = self.socket;
        self.live.sockets.begin_close(socket);
        let guard = Arc::clone(&self.live.gate).lock_owned().await;
        if self.live.retired.load(Ordering::Acquire) {
            return Ok(());
        }
        let result = self
            .namespace
            .turn(
                &self.id,
                Arc::clone(&self.live),
                guard,
                move |live| async move { live.object.websocket_close(socket, code).await },
            )
            .await;
        self.live.sockets.forget(socket);
        result
    }
}

fn gone() -> Error {
    Error::new(
        ErrorKind::Unavailable,
        "the durable object was reset; reconnect",
    )
}

impl<O, P> ObjectNamespace for Namespace<O, P>
where
    O: DurableObject,
    P: StorageProvider,
    Live<O, P::Storage>: MaybeSend + MaybeSync,
{
    async fn fetch(&self, id: &ObjectId, request: Request<Body>) -> Result<Response<Body>, Error> {
        self.fetch_with_hint(id, None, request).await
    }
}
