//! Exact sliding windows over a small store trait, and a sharded limiter for hot keys.
//!
//! [`WindowStore`] is the whole contract a backend must meet: one atomic step that forgets hits older
//! than the window and records a new one if fewer than the limit remain. Redis meets it with one script
//! (`RedisWindowStore`, feature `redis`), [`MemoryWindowStore`] in process, and a durable object meets it
//! by construction: one instance per key, requests handled one at a time (a `RateLimitDO`, as Cloudflare's examples call it).
//!
//! [`WindowObject`] is that durable object, written against `edge_core::durable`'s contracts, and
//! [`DurableWindowStore`] the [`WindowStore`] that sends each key's hits to its object through any
//! [`ObjectNamespace`]: `edge-do`'s in-process runtime, or Cloudflare's through the workers bridge.
//!
//! [`SlidingWindowLimiter`] turns a store into `Decision`s: at most `limit` requests in *any* window of
//! the configured length, exactly, across every server that shares the store.
//!
//! [`ShardedLimiter`] is the answer to a hot key that one store instance cannot keep up with:
//! spread the key over `N` shards (default 64), each allowed `⌈limit / N⌉`. A shard is picked per
//! *request* (from a caller-supplied spread value such as the client address, or round-robin), so a hot
//! key's load really is divided; hashing the key alone, as the common snippet does, sends every request
//! for it to the same shard. The price is the bound, which the tests check: in any window,
//!
//! > admitted ≤ N · ⌈limit / N⌉ ≤ limit + N − 1,
//!
//! and, since shards fill unevenly, a client can be refused before `limit` is reached (at worst after
//! `⌈limit / N⌉` requests when all of them land on one shard).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use edge_core::durable::{DurableObject, ObjectNamespace, Storage};
use edge_core::{Body, Clock, Error, ErrorKind, MaybeSend, MaybeSync, SystemClock};
use http::{Method, Request, Response, StatusCode};

use super::{Decision, OnStoreError, Quota};

/// What one [`WindowStore::hit`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowHit {
    /// Whether the hit was recorded (fewer than `limit` hits were in the window).
    pub admitted: bool,
    /// Hits in the window after this step.
    pub count: u32,
    /// How long until the oldest hit in the window leaves it (zero when the window is empty).
    pub oldest_expires_in: Duration,
}

/// Storage for exact sliding windows: one atomic step per request.
pub trait WindowStore: MaybeSend + MaybeSync {
    /// Atomically, for `key`: forget hits older than `window`; if fewer than `limit` remain, record one
    /// now. The store's own clock decides "now" (so every caller sharing the store agrees on it).
    fn hit(
        &self,
        key: &str,
        window: Duration,
        limit: u32,
    ) -> impl Future<Output = Result<WindowHit, Error>> + MaybeSend;
}

/// Most keys a [`MemoryWindowStore`] sweeps idle keys at (then whenever the map doubles).
const FIRST_SWEEP: usize = 1024;

/// An in-process [`WindowStore`]: a log of hit times per key. Memory is `O(limit)` per active key; keys
/// whose window has emptied are swept as the map grows.
pub struct MemoryWindowStore<C = SystemClock> {
    clock: C,
    state: Mutex<WindowState>,
}

#[derive(Default)]
struct WindowState {
    /// Each key's window (as its last hit gave it) and log.
    logs: HashMap<String, (u64, VecDeque<u64>)>,
    sweep_at: usize,
}

impl MemoryWindowStore {
    /// A store on the host clock.
    #[must_use]
    pub fn new() -> Self {
        Self::with_clock(SystemClock::new())
    }
}

impl Default for MemoryWindowStore {
    fn default() -> Self {
        Self::new()
    }
}

impl<C: Clock> MemoryWindowStore<C> {
    /// A store on `clock`.
    pub fn with_clock(clock: C) -> Self {
        Self {
            clock,
            state: Mutex::new(WindowState {
                logs: HashMap::new(),
                sweep_at: FIRST_SWEEP,
            }),
        }
    }

    fn hit_now(&self, key: &str, window: Duration, limit: u32) -> WindowHit {
        let now = self.clock.now_nanos();
        let window = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.logs.len() >= state.sweep_at {
            // Each log by its own key's window: one store may serve limits of different windows, and
            // judging an hour's log by this call's second would forget hits still in it.
            state.logs.retain(|_, (window, log)| {
                log.back()
                    .is_some_and(|&last| now.saturating_sub(last) < *window)
            });
            state.sweep_at = (state.logs.len() * 2).max(FIRST_SWEEP);
        }
        let (key_window, log) = state.logs.entry(key.to_owned()).or_default();
        *key_window = window;
        let s = slide(log, now, window, limit);
        WindowHit {
            admitted: s.admitted,
            count: s.count,
            oldest_expires_in: Duration::from_nanos(s.expires_in),
        }
    }
}

/// What [`slide`] decided, with the time until the oldest hit leaves in the caller's unit.
struct Slide {
    admitted: bool,
    count: u32,
    expires_in: u64,
}

/// The sliding-window step every store runs: forget hits at least `window` old, admit if fewer than
/// `limit` remain (recording `now`). Times are in one unit on one clock.
fn slide(log: &mut VecDeque<u64>, now: u64, window: u64, limit: u32) -> Slide {
    // A hit at `t` is in the window while `now - t < window` (written so, not as `t > now - window`, to
    // stay right near the clock's origin).
    while log
        .front()
        .is_some_and(|&t| now.saturating_sub(t) >= window)
    {
        log.pop_front();
    }
    let admitted = log.len() < usize::try_from(limit).unwrap_or(usize::MAX);
    if admitted {
        log.push_back(now);
    }
    Slide {
        admitted,
        count: u32::try_from(log.len()).unwrap_or(u32::MAX),
        expires_in: log
            .front()
            .map_or(0, |&t| t.saturating_add(window).saturating_sub(now)),
    }
}

impl<C: Clock> WindowStore for MemoryWindowStore<C> {
    fn hit(
        &self,
        key: &str,
        window: Duration,
        limit: u32,
    ) -> impl Future<Output = Result<WindowHit, Error>> + MaybeSend {
        std::future::ready(Ok(self.hit_now(key, window, limit)))
    }
}

impl<C> std::fmt::Debug for MemoryWindowStore<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryWindowStore").finish_non_exhaustive()
    }
}

/// At most `quota.limit()` requests in any window of `quota.period()`, exactly, per key.
///
/// ```
/// use edge_auth::ratelimit::{MemoryWindowStore, Quota, SlidingWindowLimiter};
/// use edge_core::ManualClock;
///
/// # futures::executor::block_on(async {
/// let store = MemoryWindowStore::with_clock(ManualClock::new());
/// let limiter = SlidingWindowLimiter::new(store, Quota::per_minute(std::num::NonZeroU32::new(2).unwrap()));
/// assert!(limiter.check("k").await.is_allowed());
/// assert!(limiter.check("k").await.is_allowed());
/// assert!(!limiter.check("k").await.is_allowed());
/// # Ok::<(), edge_auth::ratelimit::QuotaError>(()) }).unwrap();
/// ```
#[derive(Debug)]
pub struct SlidingWindowLimiter<S> {
    store: S,
    quota: Quota,
    on_store_error: OnStoreError,
}

impl<S: WindowStore> SlidingWindowLimiter<S> {
    /// A limiter allowing `quota.limit()` requests per `quota.period()` (the burst plays no part: a
    /// window is its own burst).
    pub fn new(store: S, quota: Quota) -> Self {
        Self {
            store,
            quota,
            on_store_error: OnStoreError::default(),
        }
    }

    /// What [`SlidingWindowLimiter::check`] does when the store fails (default: allow).
    #[must_use]
    pub fn on_store_error(mut self, policy: OnStoreError) -> Self {
        self.on_store_error = policy;
        self
    }

    /// The quota.
    pub fn quota(&self) -> &Quota {
        &self.quota
    }

    /// Decides one request for `key`, applying the store-error policy.
    pub async fn check(&self, key: &str) -> Decision {
        match self.try_check(key).await {
            Ok(decision) => decision,
            Err(_) => self.on_store_error.decision(self.window_quota()),
        }
    }

    /// Decides one request for `key`.
    ///
    /// # Errors
    ///
    /// The store's error; nothing is recorded then.
    pub async fn try_check(&self, key: &str) -> Result<Decision, Error> {
        let hit = self
            .store
            .hit(key, self.quota.period(), self.quota.limit())
            .await?;
        Ok(window_decision(
            self.window_quota(),
            self.quota.limit(),
            hit,
        ))
    }

    /// The quota as announced: the whole limit may arrive at once.
    fn window_quota(&self) -> Quota {
        self.quota
            .with_burst(self.quota.limit())
            .unwrap_or(self.quota)
    }
}

fn window_decision(quota: Quota, limit: u32, hit: WindowHit) -> Decision {
    Decision::new(
        hit.admitted,
        quota,
        limit.saturating_sub(hit.count),
        hit.oldest_expires_in,
        hit.oldest_expires_in,
    )
}

/// The default shard count for [`ShardedLimiter`] (edge-core's [`DEFAULT_SHARDS`]).
pub use edge_core::durable::{DEFAULT_SHARDS, shard_of};

/// A hot key's limit spread over `N` sliding-window shards. See the [module docs](self) for the bound.
#[derive(Debug)]
pub struct ShardedLimiter<S> {
    inner: SlidingWindowLimiter<S>,
    shards: u32,
    per_shard: Quota,
    next: AtomicU64,
}

impl<S: WindowStore> ShardedLimiter<S> {
    /// `quota.limit()` per `quota.period()` spread over [`DEFAULT_SHARDS`] shards.
    ///
    /// # Errors
    ///
    /// As [`ShardedLimiter::with_shards`].
    pub fn new(store: S, quota: Quota) -> Result<Self, super::QuotaError> {
        Self::with_shards(store, quota, DEFAULT_SHARDS)
    }

    /// `quota` spread over `shards` shards, each allowing `⌈limit / shards⌉`.
    ///
    /// # Errors
    ///
    /// [`QuotaError::ZeroLimit`](super::QuotaError::ZeroLimit) for zero shards.
    pub fn with_shards(store: S, quota: Quota, shards: u32) -> Result<Self, super::QuotaError> {
        if shards == 0 {
            return Err(super::QuotaError::ZeroLimit);
        }
        let per_shard = Quota::new(quota.limit().div_ceil(shards), quota.period())?;
        Ok(Self {
            inner: SlidingWindowLimiter::new(store, per_shard),
            shards,
            per_shard,
            next: AtomicU64::new(0),
        })
    }

    /// Each shard's quota.
    pub fn per_shard(&self) -> &Quota {
        &self.per_shard
    }

    /// Decides one request for `key`. `spread` picks the shard (the client address, say, so one client
    /// stays on one shard); `None` takes the shards in turn.
    ///
    /// The decision reports the shard's numbers scaled by the shard count, against the whole quota.
    pub async fn check(&self, key: &str, spread: Option<&str>) -> Decision {
        let shard = match spread {
            Some(value) => shard_of(value, self.shards),
            None => {
                let n = self.next.fetch_add(1, Ordering::Relaxed);
                u32::try_from(n % u64::from(self.shards)).unwrap_or(0)
            }
        };
        let decision = self.inner.check(&format!("{key}:shard:{shard}")).await;
        let scaled = decision.remaining().saturating_mul(self.shards);
        let whole = Quota::new(
            self.per_shard.limit().saturating_mul(self.shards),
            self.per_shard.period(),
        )
        .unwrap_or(self.per_shard);
        Decision::new(
            decision.is_allowed(),
            whole,
            scaled,
            decision.reset(),
            decision.retry_after(),
        )
    }
}

/// The storage key of a [`WindowObject`]'s hit log.
const LOG_KEY: &str = "hits";
/// Most hits one [`WindowObject`] keeps: its log must fit one storage value (8 bytes a hit).
pub const MAX_OBJECT_LIMIT: u32 = (edge_core::durable::MAX_VALUE_LEN / 8) as u32;

/// The sliding window as a durable object, one per key (a `RateLimitDO`). Its storage holds the
/// hit log (wall-clock microseconds, so it survives eviction and restarts); each request is one
/// [`WindowStore::hit`]. Requests are `POST` with the body `"<window µs> <limit>"`; answers are
/// `"<admitted 0|1> <count> <µs until the oldest hit leaves>"`, or `400` for anything else.
pub struct WindowObject<S, C = SystemClock> {
    storage: S,
    clock: C,
}

impl<S: Storage, C: Clock> WindowObject<S, C> {
    /// An object over its `storage`, reading wall time from `clock`.
    pub fn new(storage: S, clock: C) -> Self {
        Self { storage, clock }
    }

    async fn hit(&self, window_micros: u64, limit: u32) -> Result<WindowHit, Error> {
        let mut log: VecDeque<u64> = match self.storage.get(LOG_KEY).await? {
            // A log that is not whole 8-byte stamps is corrupt: start again rather than guess.
            Some(bytes) if bytes.len() % 8 == 0 => bytes
                .chunks_exact(8)
                .filter_map(|c| c.try_into().ok().map(u64::from_be_bytes))
                .collect(),
            _ => VecDeque::new(),
        };
        let now = u64::try_from(self.clock.unix_time().as_micros()).unwrap_or(u64::MAX);
        let hit = slide(&mut log, now, window_micros, limit);
        if hit.admitted {
            let mut bytes = Vec::with_capacity(log.len() * 8);
            for t in &log {
                bytes.extend_from_slice(&t.to_be_bytes());
            }
            self.storage.put(LOG_KEY, Bytes::from(bytes)).await?;
        }
        Ok(WindowHit {
            admitted: hit.admitted,
            count: hit.count,
            oldest_expires_in: Duration::from_micros(hit.expires_in),
        })
    }
}

impl<S, C> std::fmt::Debug for WindowObject<S, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowObject").finish_non_exhaustive()
    }
}

fn bad_request(why: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::from(why));
    *response.status_mut() = StatusCode::BAD_REQUEST;
    response
}

impl<S: Storage + 'static, C: Clock + 'static> DurableObject for WindowObject<S, C> {
    async fn fetch(&self, request: Request<Body>) -> Result<Response<Body>, Error> {
        if request.method() != Method::POST {
            return Ok(bad_request("POST \"<window µs> <limit>\""));
        }
        let body = request.into_body().collect(64).await?;
        let text = std::str::from_utf8(&body).unwrap_or("");
        let mut parts = text.split(' ');
        let parsed = (
            parts.next().and_then(|w| w.parse::<u64>().ok()),
            parts.next().and_then(|l| l.parse::<u32>().ok()),
            parts.next(),
        );
        let (Some(window), Some(limit), None) = parsed else {
            return Ok(bad_request("expected \"<window µs> <limit>\""));
        };
        if window == 0 || limit == 0 || limit > MAX_OBJECT_LIMIT {
            return Ok(bad_request(
                "window and limit must be positive, limit at most 16384",
            ));
        }
        let hit = self.hit(window, limit).await?;
        let answer = format!(
            "{} {} {}",
            u8::from(hit.admitted),
            hit.count,
            hit.oldest_expires_in.as_micros()
        );
        Ok(Response::new(Body::from(answer)))
    }
}

/// A [`WindowStore`] whose windows are [`WindowObject`]s: one object per key, reached through `N`.
#[derive(Clone, Debug)]
pub struct DurableWindowStore<N> {
    namespace: N,
}

impl<N: ObjectNamespace> DurableWindowStore<N> {
    /// Windows in the objects of `namespace` (a namespace of [`WindowObject`]s).
    pub fn new(namespace: N) -> Self {
        Self { namespace }
    }
}

impl<N: ObjectNamespace> WindowStore for DurableWindowStore<N> {
    async fn hit(&self, key: &str, window: Duration, limit: u32) -> Result<WindowHit, Error> {
        let id = self.namespace.id_from_name(key);
        let window_micros = u64::try_from(window.as_micros()).unwrap_or(u64::MAX).max(1);
        let mut request = Request::new(Body::from(format!("{window_micros} {limit}")));
        *request.method_mut() = Method::POST;
        let response = self.namespace.fetch(&id, request).await?;
        let status = response.status();
        let body = response.into_body().collect(128).await?;
        let malformed = || Error::new(ErrorKind::Corrupt, "window object answered something else");
        if !status.is_success() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("window object refused the request ({status})"),
            ));
        }
        let text = std::str::from_utf8(&body).map_err(|_| malformed())?;
        let mut parts = text.split(' ').map(str::parse::<u64>);
        let (Some(Ok(admitted)), Some(Ok(count)), Some(Ok(expires)), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed());
        };
        Ok(WindowHit {
            admitted: admitted == 1,
            count: u32::try_from(count).unwrap_or(u32::MAX),
            oldest_expires_in: Duration::from_micros(expires),
        })
    }
}
