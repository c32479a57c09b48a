//! A value kept fresh: loaded on first use, served from memory for a time to live, refreshed in the
//! background once stale.
//!
//! The pattern behind a JWK Set, a feature-flag document, a configuration read from KV: the request path
//! must never wait for the source once a value exists, and a flaky source must never take a good value
//! away. [`Refresh`] does it once, for any [`Load`]:
//!
//! - **first use**: concurrent callers share one load (a [`Coalescer`]); a failure goes to every one of them
//!   and nothing is kept, so the next caller tries again;
//! - **fresh** (younger than the TTL): served from memory, no I/O;
//! - **stale**: the last value is served at once, and one refresh runs in the background (through the
//!   host's [`WaitUntil`]), however many callers see it stale;
//! - **a failed refresh** keeps the last value and tries again after a quarter of the TTL;
//! - **forced**: [`Refresh::reload`] loads now (joining any load in flight), for a caller that knows the
//!   value is out of date (a token naming a key the set does not have).
//!
//! Time comes from the injected [`Clock`], so all of this is tested on a `ManualClock`.
//!
//! ```
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::time::Duration;
//! use edge_core::refresh::{Load, Refresh};
//! use edge_core::{ManualClock, wait_until::QueuedWaitUntil};
//!
//! struct Config(AtomicU32);
//!
//! impl Load for Config {
//!     type Value = u32;
//!     type Error = String;
//!     async fn load(&self) -> Result<u32, String> {
//!         Ok(self.0.fetch_add(1, Ordering::Relaxed)) // a read from KV, an origin, …
//!     }
//! }
//!
//! # futures_util::FutureExt::now_or_never(async {
//! let (clock, background) = (ManualClock::new(), QueuedWaitUntil::new());
//! let config = Refresh::new(Config(AtomicU32::new(1)), Duration::from_secs(60), clock.clone(), background.clone());
//! assert_eq!(*config.get().await?, 1); // loaded on first use
//! clock.advance(Duration::from_secs(61));
//! assert_eq!(*config.get().await?, 1); // stale: served, refreshed in the background
//! background.run_all().await;
//! assert_eq!(*config.get().await?, 2);
//! # Ok::<_, String>(()) }).unwrap().unwrap();
//! ```

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock::{Clock, Instant};
use crate::coalesce::Coalescer;
use crate::sync::{MaybeSend, MaybeSync, lock};
use crate::wait_until::WaitUntil;

/// One load of the value a [`Refresh`] keeps.
pub trait Load: MaybeSend + MaybeSync {
    /// What is loaded.
    type Value: MaybeSend + MaybeSync + 'static;
    /// Why a load failed; cloned to every caller that waited on the load.
    type Error: Clone + MaybeSend + 'static;

    /// Loads the value once.
    fn load(&self) -> impl Future<Output = Result<Self::Value, Self::Error>> + MaybeSend;
}

/// A value loaded on first use and kept fresh. See the [module docs](self). Cheap to clone; clones share
/// the value.
pub struct Refresh<L: Load, C, W> {
    inner: Arc<Inner<L, C, W>>,
}

struct Inner<L: Load, C, W> {
    loader: L,
    clock: C,
    background: W,
    state: Mutex<State<L::Value>>,
    loads: Coalescer<(), Result<Arc<L::Value>, L::Error>>,
    refreshing: AtomicBool,
}

struct State<V> {
    value: Option<Arc<V>>,
    fresh_until: Instant,
    ttl: Duration,
}

impl<L: Load + 'static, C: Clock + 'static, W: WaitUntil + 'static> Refresh<L, C, W> {
    /// Values from `loader`, fresh for `ttl` on `clock`, refreshed through `background`.
    pub fn new(loader: L, ttl: Duration, clock: C, background: W) -> Self {
        Self {
            inner: Arc::new(Inner {
                loader,
                clock,
                background,
                state: Mutex::new(State {
                    value: None,
                    fresh_until: Instant::ORIGIN,
                    ttl,
                }),
                loads: Coalescer::new(),
                refreshing: AtomicBool::new(false),
            }),
        }
    }

    /// The value: from memory if there is one (refreshing it in the background once stale), else loaded
    /// now.
    ///
    /// # Errors
    ///
    /// Only while no value has ever been loaded: the load's error.
    pub async fn get(&self) -> Result<Arc<L::Value>, L::Error> {
        match self.get_now() {
            Some(value) => Ok(value),
            None => self.reload().await,
        }
    }

    /// [`get`](Self::get) without waiting: the value kept (refreshing it in the background once stale),
    /// or `None` while none has ever been loaded. For callers on a synchronous fast path that fall back to
    /// `get` when this says `None`.
    pub fn get_now(&self) -> Option<Arc<L::Value>> {
        let now = self.inner.clock.now();
        let (value, fresh) = {
            let state = lock(&self.inner.state);
            let value = Arc::clone(state.value.as_ref()?);
            (value, state.fresh_until > now)
        };
        if !fresh {
            self.refresh_in_background();
        }
        Some(value)
    }

    /// Loads the value now (joining a load already in flight) and keeps it.
    ///
    /// # Errors
    ///
    /// The load's error; the value kept before, if any, stays.
    pub async fn reload(&self) -> Result<Arc<L::Value>, L::Error> {
        self.inner.coalesced_load().await
    }

    /// One background refresh at a time, however many callers find the value stale.
    fn refresh_in_background(&self) {
        if self.inner.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let inner = Arc::clone(&self.inner);
        self.inner.background.wait_until(async move {
            if inner.coalesced_load().await.is_err() {
                // Keep serving the last good value; try again after a quarter of the TTL.
                let now = inner.clock.now();
                let mut state = lock(&inner.state);
                state.fresh_until = now + state.ttl / 4;
            }
            inner.refreshing.store(false, Ordering::Release);
        });
    }
}

impl<L: Load, C, W> Refresh<L, C, W> {
    /// The value kept now, fresh or stale, without loading.
    #[must_use]
    pub fn current(&self) -> Option<Arc<L::Value>> {
        lock(&self.inner.state).value.clone()
    }

    /// Forgets the value: the next [`get`](Self::get) loads (a load in flight still keeps its result).
    pub fn invalidate(&self) {
        lock(&self.inner.state).value = None;
    }

    /// How long a value is served before it is refreshed.
    #[must_use]
    pub fn ttl(&self) -> Duration {
        lock(&self.inner.state).ttl
    }

    /// Sets the TTL, for every clone, from the next load on.
    pub fn set_ttl(&self, ttl: Duration) {
        lock(&self.inner.state).ttl = ttl;
    }

    /// The loader.
    #[must_use]
    pub fn loader(&self) -> &L {
        &self.inner.loader
    }
}

impl<L: Load + 'static, C: Clock + 'static, W: WaitUntil + 'static> Inner<L, C, W> {
    /// One load for every concurrent caller (first use, forced reloads and the background refresh alike).
    async fn coalesced_load(self: &Arc<Self>) -> Result<Arc<L::Value>, L::Error> {
        let inner = Arc::clone(self);
        self.loads
            .run((), move || async move { inner.load().await })
            .await
    }

    async fn load(&self) -> Result<Arc<L::Value>, L::Error> {
        let value = Arc::new(self.loader.load().await?);
        let now = self.clock.now();
        let mut state = lock(&self.state);
        state.value = Some(Arc::clone(&value));
        state.fresh_until = now + state.ttl;
        Ok(value)
    }
}

impl<L: Load, C, W> Clone for Refresh<L, C, W> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<L: Load, C, W> fmt::Debug for Refresh<L, C, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = lock(&self.inner.state);
        f.debug_struct("Refresh")
            .field("ttl", &state.ttl)
            .field("loaded", &state.value.is_some())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;

    use futures_util::FutureExt as _;
    use futures_util::future::join_all;

    use super::*;
    use crate::ManualClock;
    use crate::wait_until::QueuedWaitUntil;

    /// Counts its loads; fails while `failing` is set.
    #[derive(Default)]
    struct Source {
        loads: AtomicU32,
        failing: AtomicBool,
    }

    impl Load for Source {
        type Value = u32;
        type Error = String;

        async fn load(&self) -> Result<u32, String> {
            let n = self.loads.fetch_add(1, Ordering::SeqCst) + 1;
            if self.failing.load(Ordering::SeqCst) {
                Err(format!("load {n} failed"))
            } else {
                Ok(n)
            }
        }
    }

    fn setup() -> (
        Refresh<Source, ManualClock, QueuedWaitUntil>,
        ManualClock,
        QueuedWaitUntil,
    ) {
        let (clock, background) = (ManualClock::new(), QueuedWaitUntil::new());
        let refresh = Refresh::new(
            Source::default(),
            Duration::from_secs(60),
            clock.clone(),
            background.clone(),
        );
        (refresh, clock, background)
    }

    fn loads(refresh: &Refresh<Source, ManualClock, QueuedWaitUntil>) -> u32 {
        refresh.loader().loads.load(Ordering::SeqCst)
    }

    #[test]
    fn concurrent_first_uses_share_one_load_and_fresh_values_cost_nothing() {
        let (refresh, clock, _) = setup();
        let values = join_all((0..50).map(|_| refresh.get()))
            .now_or_never()
            .unwrap();
        assert!(values.iter().all(|v| v.as_deref() == Ok(&1)));
        assert_eq!(loads(&refresh), 1);
        clock.advance(Duration::from_secs(59));
        assert_eq!(*refresh.get().now_or_never().unwrap().unwrap(), 1);
        assert_eq!(loads(&refresh), 1);
    }

    #[test]
    fn a_stale_value_is_served_while_one_background_refresh_runs() {
        let (refresh, clock, background) = setup();
        refresh.get().now_or_never().unwrap().unwrap();
        clock.advance(Duration::from_secs(60));
        for _ in 0..10 {
            assert_eq!(*refresh.get().now_or_never().unwrap().unwrap(), 1);
        }
        assert_eq!(background.pending(), 1, "one refresh for ten stale reads");
        background.run_all().now_or_never().unwrap();
        assert_eq!(*refresh.get().now_or_never().unwrap().unwrap(), 2);
        assert_eq!(loads(&refresh), 2);
    }

    #[test]
    fn a_failed_refresh_keeps_the_value_and_retries_after_a_quarter_of_the_ttl() {
        let (refresh, clock, background) = setup();
        refresh.get().now_or_never().unwrap().unwrap();
        refresh.loader().failing.store(true, Ordering::SeqCst);
        clock.advance(Duration::from_secs(61));
        assert_eq!(*refresh.get().now_or_never().unwrap().unwrap(), 1);
        background.run_all().now_or_never().unwrap();
        assert_eq!(loads(&refresh), 2);
        // Within the retry delay the old value is fresh again: no new load.
        clock.advance(Duration::from_secs(14));
        assert_eq!(*refresh.get().now_or_never().unwrap().unwrap(), 1);
        assert_eq!(background.pending(), 0);
        refresh.loader().failing.store(false, Ordering::SeqCst);
        clock.advance(Duration::from_secs(1));
        assert_eq!(*refresh.get().now_or_never().unwrap().unwrap(), 1);
        background.run_all().now_or_never().unwrap();
        assert_eq!(*refresh.get().now_or_never().unwrap().unwrap(), 3);
    }

    #[test]
    fn first_load_errors_reach_the_caller_and_nothing_is_kept() {
        let (refresh, _, _) = setup();
        refresh.loader().failing.store(true, Ordering::SeqCst);
        let error = refresh.get().now_or_never().unwrap().unwrap_err();
        assert_eq!(error, "load 1 failed");
        assert!(refresh.current().is_none());
        refresh.loader().failing.store(false, Ordering::SeqCst);
        assert_eq!(*refresh.get().now_or_never().unwrap().unwrap(), 2);
    }

    #[test]
    fn reload_loads_now_and_invalidate_forgets() {
        let (refresh, _, _) = setup();
        refresh.get().now_or_never().unwrap().unwrap();
        assert_eq!(*refresh.reload().now_or_never().unwrap().unwrap(), 2);
        assert_eq!(refresh.current().as_deref(), Some(&2));
        refresh.invalidate();
        assert!(refresh.current().is_none());
        assert_eq!(*refresh.get().now_or_never().unwrap().unwrap(), 3);
        refresh.set_ttl(Duration::from_secs(5));
        assert_eq!(refresh.ttl(), Duration::from_secs(5));
    }
}
