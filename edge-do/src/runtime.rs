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
//! | a caller that goes away | the turn runs to its end anyway (see *Cancellation* below) | the object's event runs on |
//! | alarms | at least once: an alarm is deleted only after its handler's turn has committed; failures (errors, panics, overruns, a crash of the process) are retried with exponential backoff from 2 s, six retries, then dropped; the attempt count is durable and reaches the handler as [`AlarmInfo::retry_count`] | same policy |
//! | idle eviction | [`Namespace::evict_idle`], called by the host | automatic |
//! | placement | every object lives in this process; the [`LocationHint`] it was created with is recorded ([`Placement`]) | the hint chooses a region |
//!
//! Objects of different ids run concurrently.
//!
//! # Cancellation
//!
//! A request future can be dropped at any await point (a client disconnects). Dropping it before its
//! turn has passed the input gate leaves no trace: the turn never ran. Once past the gate, **a turn
//! runs to its end**: the caller's future only drives it, and when it is dropped the rest of the turn
//! is handed to the namespace's [`WaitUntil`] if the host gave one ([`Namespace::with_wait_until`]),
//! else to the next caller of the same object, which finishes it before its own turn starts. Its
//! writes commit whole, with the turns around it, and no other turn ever sees them half-made.
//! Commits are not owned by any caller either (see [`storage`](crate::storage)): one client's
//! disconnect never fails another's turn.

use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use edge_core::durable::{
    AlarmInfo, DurableObject, LocationHint, ObjectId, ObjectNamespace, SocketMessage, Storage,
};
use edge_core::trace::{RequestSpan, SpanKind, Status, attr};
use edge_core::wait_until::DynWaitUntil;
use edge_core::{
    Body, BoxFuture, Clock, Error, ErrorKind, MaybeSend, MaybeSync, SystemClock, Timer, WaitUntil,
};
use futures_channel::oneshot;
use futures_util::FutureExt;
use futures_util::future::Either;
use futures_util::lock::{Mutex as AsyncMutex, OwnedMutexGuard};
use http::{Request, Response};

use crate::orphans::Orphans;
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

    /// The alarm of `id` with the number of its attempts begun so far (0 after
    /// [`Storage::set_alarm`]).
    ///
    /// # Errors
    ///
    /// The alarm could not be read.
    fn alarm_record(
        &self,
        id: &ObjectId,
    ) -> impl Future<Output = Result<Option<AlarmRecord>, Error>> + MaybeSend;

    /// Sets the alarm of `id` to `record`, time and attempt count in one durable write.
    ///
    /// # Errors
    ///
    /// The write failed; the alarm is as it was.
    fn set_alarm_record(
        &self,
        id: &ObjectId,
        record: AlarmRecord,
    ) -> impl Future<Output = Result<(), Error>> + MaybeSend;
}

/// An object's alarm as the runtime keeps it: when it is due, and how many attempts of it have begun.
///
/// The count is written durably *before* each attempt runs and the alarm deleted only after a
/// successful attempt's turn has committed, so an attempt cut short by a crash is retried and counted,
/// and an alarm whose handler kills the process every time is dropped after the last retry instead of
/// crashing the host forever. [`Storage::set_alarm`] and [`Storage::delete_alarm`] reset the count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AlarmRecord {
    /// When the alarm is due.
    pub at: SystemTime,
    /// Attempts begun: finished unsuccessfully, or interrupted.
    pub attempts: u32,
}

impl AlarmRecord {
    /// An alarm due `at` after `attempts` attempts.
    #[must_use]
    pub const fn new(at: SystemTime, attempts: u32) -> Self {
        Self { at, attempts }
    }
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
    /// Where it lives, and the hint it was created with.
    pub placement: Placement,
}

/// Where an object was placed, and the hint it was created with.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Placement {
    /// The location (`"local"` in process; Cloudflare chooses its own).
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
    /// Turns whose caller went away before they ended.
    orphans: Orphans,
    /// When the last turn began ([`Clock::now_nanos`]), for idle eviction.
    last_used: AtomicU64,
}

/// A held input gate.
type Gate = OwnedMutexGuard<()>;

impl<O, S> Live<O, S> {
    /// Passes the input gate, carrying on first any turn whose caller abandoned it (such a turn may
    /// hold the gate, and nobody else would drive it). Cancel safe.
    pub(crate) async fn pass_gate(&self) -> Gate {
        loop {
            self.orphans.carry().await;
            let gate = Arc::clone(&self.gate).lock_owned();
            let parked = self.orphans.parked();
            futures_util::pin_mut!(parked);
            if let Either::Left((gate, _)) = futures_util::future::select(gate, parked).await {
                return gate;
            }
        }
    }
}

/// What one due alarm came to.
enum AlarmOutcome {
    NotDue,
    Fired,
    Retried,
    Abandoned,
}
type Factory<O, S> = dyn Fn(ObjectState<S>) -> O + Send + Sync;
type Instances<O, S> = HashMap<ObjectId, Arc<Live<O, S>>>;

struct Inner<O, P: StorageProvider> {
    provider: P,
    factory: Box<Factory<O, P::Storage>>,
    live: Mutex<Instances<O, P::Storage>>,
    clock: Arc<dyn Clock>,
    time_limit: Option<(Duration, Arc<dyn Timer>)>,
    alarm_retry: AlarmRetry,
    /// Where abandoned turns run, if the host gave a place ([`Namespace::with_wait_until`]).
    wait_until: Option<Arc<dyn DynWaitUntil>>,
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
                time_limit: None,
                alarm_retry: AlarmRetry::default(),
                wait_until: None,
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

    /// Gives every turn at most `limit`, timed by `timer` (the host's: `TokioTimer`, a `ManualClock` in
    /// tests); one that overruns is abandoned and its object reset. Without it, a handler that never
    /// returns blocks its object (only). Call before cloning.
    #[must_use]
    pub fn with_time_limit(self, limit: Duration, timer: impl Timer + 'static) -> Self {
        self.configure(|inner| inner.time_limit = Some((limit, Arc::new(timer))))
    }

    /// Runs turns whose caller went away (a client disconnected mid-request) on `wait_until`, at once
    /// and to their end (the tokio host passes its `TokioWaitUntil`). Without it, such a turn is finished
    /// by the next caller of its object. See [Cancellation](self#cancellation). Call before cloning.
    #[must_use]
    pub fn with_wait_until(self, wait_until: impl WaitUntil + 'static) -> Self {
        self.configure(|inner| inner.wait_until = Some(Arc::new(wait_until)))
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
        let _gate = live.pass_gate().await;
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
            parent.stage_since("do", started, None);
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
    /// Each alarm goes through three steps, each under the object's input gate: its attempt count is
    /// raised durably; the handler runs as a turn and its writes commit; then, if nothing set the alarm
    /// anew meanwhile, it is deleted (success) or moved to its retry time (failure). A crash anywhere
    /// before the last step leaves the alarm set, to fire again with the attempt counted.
    ///
    /// # Errors
    ///
    /// The alarm index or an alarm record could not be read or written (the handlers' own errors are
    /// counted, not returned).
    pub async fn run_due_alarms(&self) -> Result<AlarmRun, Error> {
        let now = self.inner.clock.wall_time();
        let mut run = AlarmRun::default();
        for id in self.inner.provider.due_alarms(now)? {
            match self.run_alarm(&id, now).await? {
                AlarmOutcome::NotDue => {}
                AlarmOutcome::Fired => run.fired += 1,
                AlarmOutcome::Retried => run.retried += 1,
                AlarmOutcome::Abandoned => run.abandoned += 1,
            }
        }
        Ok(run)
    }

    /// One due alarm of `id`: begin, run, settle (see [`Namespace::run_due_alarms`]).
    async fn run_alarm(&self, id: &ObjectId, now: SystemTime) -> Result<AlarmOutcome, Error> {
        let provider = &self.inner.provider;
        let retry = self.inner.alarm_retry;

        // Begin: count the attempt before it runs, so a crash during it counts too.
        let begun = {
            let (_live, _gate) = self.enter(id, None).await;
            match provider.alarm_record(id).await? {
                Some(record) if record.at <= now => {
                    if record.attempts > retry.max_retries {
                        // Every attempt so far was cut short (the process died in it): give up.
                        provider.storage(id).delete_alarm().await?;
                        return Ok(AlarmOutcome::Abandoned);
                    }
                    let begun = AlarmRecord::new(record.at, record.attempts + 1);
                    provider.set_alarm_record(id, begun).await?;
                    begun
                }
                _ => return Ok(AlarmOutcome::NotDue), // moved or cancelled since the index was read
            }
        };

        // Run: the handler is a turn; its writes are durable when this returns.
        let info = AlarmInfo::new(begun.attempts - 1);
        let (live, gate) = self.enter(id, None).await;
        let succeeded = self
            .turn(id, live, gate, move |live| async move {
                live.object.alarm(info).await
            })
            .await
            .is_ok();

        // Settle: unless the alarm was set anew (or deleted) meanwhile, delete it or schedule its retry.
        let (_live, _gate) = self.enter(id, None).await;
        let current = provider.alarm_record(id).await?;
        if succeeded {
            if current == Some(begun) {
                provider.storage(id).delete_alarm().await?;
            }
            return Ok(AlarmOutcome::Fired);
        }
        if current.is_some_and(|record| record != begun) {
            return Ok(AlarmOutcome::Retried); // the handler set its alarm anew: that one stands
        }
        if begun.attempts > retry.max_retries {
            provider.storage(id).delete_alarm().await?;
            return Ok(AlarmOutcome::Abandoned);
        }
        let retry_at = now + retry.delay(begun.attempts);
        provider
            .set_alarm_record(id, AlarmRecord::new(retry_at, begun.attempts))
            .await?;
        Ok(AlarmOutcome::Retried)
    }

    /// Runs [`Namespace::run_due_alarms`] forever, sleeping until the next alarm (at most `poll`
    /// between looks, so alarms set meanwhile are found). Spawn it on the host's executor.
    pub async fn drive_alarms(&self, timer: &impl Timer, poll: Duration) {
        loop {
            let _ = self.run_due_alarms().await;
            let now = self.inner.clock.wall_time();
            let wait = match self.inner.provider.next_alarm() {
                Ok(Some(at)) => at.duration_since(now).unwrap_or_default().min(poll),
                _ => poll,
            };
            timer.sleep(wait.max(Duration::from_millis(1))).await;
        }
    }

    fn instance(&self, id: &ObjectId, hint: Option<LocationHint>) -> Arc<Live<O, P::Storage>> {
        let mut live = self.lock();
        let instance = live.entry(id.clone()).or_insert_with(|| {
            let placement = Placement::new("local", hint);
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
                orphans: Orphans::new(self.inner.wait_until.clone()),
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
            let guard = live.pass_gate().await;
            if live.retired.load(Ordering::Acquire) || live.storage.is_broken() {
                self.remove_if_same(id, &live);
                continue;
            }
            live.last_used
                .store(self.inner.clock.now_nanos(), Ordering::Relaxed);
            return (live, guard);
        }
    }

    /// Runs one turn inside `live` (whose gate the caller holds) and answers its result. The turn is a
    /// task of its own that this future only drives: dropped, it hands the turn on to run to its end
    /// (see [Cancellation](self#cancellation)).
    async fn turn<T, F, Fut>(
        &self,
        id: &ObjectId,
        live: Arc<Live<O, P::Storage>>,
        gate: Gate,
        handler: F,
    ) -> Result<T, Error>
    where
        F: FnOnce(Arc<Live<O, P::Storage>>) -> Fut + MaybeSend + 'static,
        Fut: Future<Output = Result<T, Error>> + MaybeSend + 'static,
        T: MaybeSend + 'static,
    {
        let (answer, answered) = oneshot::channel();
        let namespace = self.clone();
        let id = id.clone();
        let home = Arc::clone(&live);
        let task: BoxFuture<'static, ()> = Box::pin(async move {
            let result = namespace.run_turn(&id, live, gate, handler).await;
            let _ = answer.send(result);
        });
        home.orphans.run_to_end(task).await;
        // The task answers before it ends, and it ended: the channel holds the answer.
        answered.await.unwrap_or_else(|_| {
            Err(Error::new(
                ErrorKind::Backend,
                "a durable-object turn ended without an answer",
            ))
        })
    }

    /// The turn itself: the handler made by `handler`, caught if it panics, bounded by the time limit;
    /// then its writes go to the commit and the gate opens, and the result is released once the commit
    /// is durable.
    async fn run_turn<T, F, Fut>(
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
            Some((limit, timer)) => {
                let timer = timer.sleep(*limit);
                futures_util::pin_mut!(work);
                match futures_util::future::select(work, timer).await {
                    Either::Left((result, _)) => result.map_err(|_| Abort::Panicked),
                    Either::Right(((), _)) => Err(Abort::TimedOut(*limit)),
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
        let guard = self.live.pass_gate().await;
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
        let guard = self.live.pass_gate().await;
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
