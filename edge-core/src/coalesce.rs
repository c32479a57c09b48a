//! The request coalescer (singleflight): for one key, one load at a time, shared by every caller.
//!
//! When a popular cache entry expires, every request for it misses at once; without coalescing, each one goes
//! to the origin (the "thundering herd"). A [`Coalescer`] lets the first caller start the load and
//! makes every concurrent caller for the same key wait for that same load and receive a clone of its result,
//! errors included. KV read-through, the HTTP cache, ESI fragment fetches and JWKS refreshes all use it.
//!
//! # Semantics
//!
//! - The load is started lazily, when any caller's future is first polled, and is never polled under a lock,
//!   so a load may itself use the coalescer.
//! - One waiter drives the load: the first to poll it, until that waiter is dropped; the others only wait
//!   and are woken with the result. If the driver is dropped, the others carry the load on (whichever polls
//!   first drives it from then). Only when *every* caller has been dropped is the load dropped (cancelled),
//!   and the next caller starts a fresh one. Keeping one driver matters on hosts where I/O belongs to the
//!   request that started it (a Cloudflare Worker: a promise made while serving one request cannot be
//!   awaited from another), and spares the waiters useless polls everywhere.
//! - Once a load completes, its key is free: a caller arriving after completion starts a new load (results
//!   are shared, not cached; put a cache in front for that).
//! - No `Send` bound on wasm32; on native targets the load future and its result must be `Send`, as for any
//!   future shared across a multi-threaded runtime.
//! - If the load panics, the caller polling it panics with it and every other caller's future panics when
//!   polled (as with `futures::future::Shared`) instead of waiting forever.
//!
//! # Cancel safety
//!
//! [`Coalesced`] is cancel-safe in the sense above: dropping one waiter never loses the result for the rest.
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use edge_core::Coalescer;
//! use futures_util::future::join_all;
//!
//! # futures_util::FutureExt::now_or_never(async {
//! let loads = Arc::new(AtomicUsize::new(0));
//! let coalescer: Coalescer<String, Result<u64, String>> = Coalescer::new();
//! let waiters = (0..100).map(|_| {
//!     let loads = Arc::clone(&loads);
//!     coalescer.run("/hot".to_owned(), move || async move {
//!         loads.fetch_add(1, Ordering::SeqCst);
//!         Ok(42)
//!     })
//! });
//! let results = join_all(waiters).await;
//! assert!(results.iter().all(|r| *r == Ok(42)));
//! assert_eq!(loads.load(Ordering::SeqCst), 1);
//! # }).unwrap();
//! ```

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};

use crate::sync::{BoxFuture, MaybeSend, MaybeSync, lock};

type Flights<K, V> = Mutex<HashMap<K, Weak<Flight<K, V>>, foldhash::fast::RandomState>>;

/// Deduplicates concurrent loads by key. See the [module docs](self).
///
/// Cheap to clone; clones share the flights in progress.
pub struct Coalescer<K: Hash + Eq, V> {
    flights: Arc<Flights<K, V>>,
}

/// One load in progress and everyone waiting for it. The map holds it weakly: when every waiter is gone, it
/// is dropped, and the load with it.
struct Flight<K: Hash + Eq, V> {
    key: K,
    flights: Arc<Flights<K, V>>,
    /// Set once this flight's entry has been removed from the map, so it is not looked up twice.
    released: AtomicBool,
    state: Mutex<State<V>>,
}

struct State<V> {
    /// The load, when no one is polling it. `None` while a waiter drives it, and once it has finished.
    load: Option<BoxFuture<'static, V>>,
    result: Option<V>,
    /// Set if the load panicked: the waiters cannot get a result and say so.
    poisoned: bool,
    /// One slot per waiter that has been pending; a slot keeps its index for the waiter's lifetime.
    wakers: Vec<Option<Waker>>,
    /// The slot of the waiter that last polled the load: the load's own wake-ups go to that waiter only.
    driver: Option<usize>,
}

impl<K: Hash + Eq, V> Coalescer<K, V> {
    /// A coalescer with no loads in flight.
    #[must_use]
    pub fn new() -> Self {
        Self {
            flights: Arc::new(Mutex::new(HashMap::with_hasher(
                foldhash::fast::RandomState::default(),
            ))),
        }
    }

    /// How many keys have a load in flight.
    #[must_use]
    pub fn in_flight(&self) -> usize {
        lock(&self.flights)
            .values()
            .filter(|flight| flight.strong_count() > 0)
            .count()
    }
}

impl<K, V> Coalescer<K, V>
where
    K: Hash + Eq + Clone + MaybeSend + MaybeSync + 'static,
    V: Clone + MaybeSend + 'static,
{
    /// Joins the load in flight for `key`, or starts one with `load` if there is none.
    ///
    /// `load` is used only if this call started the flight ([`Coalesced::is_leader`]), and then called once,
    /// when any waiter of the flight is first polled; otherwise it is dropped unused.
    pub fn run<F, Fut>(&self, key: K, load: F) -> Coalesced<K, V>
    where
        F: FnOnce() -> Fut + MaybeSend + 'static,
        Fut: Future<Output = V> + MaybeSend + 'static,
    {
        let mut flights = lock(&self.flights);
        let entry = flights.entry(key);
        if let Entry::Occupied(live) = &entry {
            if let Some(flight) = live.get().upgrade() {
                return Coalesced {
                    flight,
                    slot: None,
                    leader: false,
                };
            }
        }
        let flight = Arc::new(Flight {
            key: entry.key().clone(),
            flights: Arc::clone(&self.flights),
            released: AtomicBool::new(false),
            state: Mutex::new(State {
                load: Some(Box::pin(async move { load().await })),
                result: None,
                poisoned: false,
                wakers: Vec::new(),
                driver: None,
            }),
        });
        // Replaces a dead entry (every waiter of an earlier flight gone) if there was one; dropping a `Weak`
        // runs no user code, so doing it under the lock is safe.
        entry.insert_entry(Arc::downgrade(&flight));
        Coalesced {
            flight,
            slot: None,
            leader: true,
        }
    }
}

impl<K: Hash + Eq, V> Clone for Coalescer<K, V> {
    fn clone(&self) -> Self {
        Self {
            flights: Arc::clone(&self.flights),
        }
    }
}

impl<K: Hash + Eq, V> Default for Coalescer<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Hash + Eq, V> fmt::Debug for Coalescer<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Coalescer")
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

impl<K: Hash + Eq, V> Flight<K, V> {
    /// Frees the key so the next caller starts a new load, unless a newer flight already owns it.
    fn release_key(&self) {
        if self.released.swap(true, Ordering::AcqRel) {
            return;
        }
        let mut flights = lock(&self.flights);
        if let Some((key, entry)) = flights.remove_entry(&self.key) {
            if !std::ptr::eq(entry.as_ptr(), self) {
                // A newer flight owns the key (this one was abandoned and replaced): put it back. Rare, and
                // cheaper than looking the key up twice on the common path.
                flights.insert(key, entry);
            }
        }
    }
}

impl<K: Hash + Eq, V> Drop for Flight<K, V> {
    fn drop(&mut self) {
        // Every waiter is gone. If the load had not finished, its entry is now a dead `Weak`: remove it so
        // abandoned keys do not pile up. The load itself is dropped (cancelled) with the state, after this
        // body has released the lock.
        if !*self.released.get_mut() {
            self.release_key();
        }
    }
}

/// A caller's share of a coalesced load; resolves to a clone of the load's result.
///
/// # Panics
///
/// Polling panics if the load itself panicked (in whichever waiter was driving it), as
/// `futures::future::Shared` does: there is no result to hand out.
#[must_use = "futures do nothing unless polled"]
pub struct Coalesced<K: Hash + Eq, V> {
    flight: Arc<Flight<K, V>>,
    slot: Option<usize>,
    leader: bool,
}

impl<K: Hash + Eq, V> Coalesced<K, V> {
    /// `true` if this call started the load rather than joining one in flight.
    #[must_use]
    pub fn is_leader(&self) -> bool {
        self.leader
    }
}

/// Marks the flight poisoned if the load panics while this waiter polls it.
struct PoisonOnUnwind<'a, V> {
    state: &'a Mutex<State<V>>,
    armed: bool,
}

impl<V> Drop for PoisonOnUnwind<'_, V> {
    fn drop(&mut self) {
        if self.armed {
            let wakers = {
                let mut state = lock(self.state);
                state.poisoned = true;
                std::mem::take(&mut state.wakers)
            };
            wakers.into_iter().flatten().for_each(Waker::wake);
        }
    }
}

impl<K: Hash + Eq, V: Clone> Future for Coalesced<K, V> {
    type Output = V;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<V> {
        let this = &mut *self;
        let flight = &*this.flight;
        let mut load = {
            let mut state = lock(&flight.state);
            if let Some(result) = &state.result {
                return Poll::Ready(result.clone());
            }
            assert!(!state.poisoned, "the coalesced load panicked");
            if state.driver.is_some() && state.driver != this.slot {
                // The load has a driver, which its own wake-ups reach; we are woken with the result.
                register(&mut state, &mut this.slot, cx.waker());
                return Poll::Pending;
            }
            match state.load.take() {
                Some(load) => load,
                None => {
                    // Another waiter is polling the load right now; it will wake us when it finishes.
                    register(&mut state, &mut this.slot, cx.waker());
                    return Poll::Pending;
                }
            }
        };

        // Poll the load with no lock held: it may take any time and may use this coalescer.
        let mut poison = PoisonOnUnwind {
            state: &flight.state,
            armed: true,
        };
        let polled = load.as_mut().poll(cx);
        poison.armed = false;
        match polled {
            Poll::Pending => {
                let mut state = lock(&flight.state);
                state.load = Some(load);
                let slot = register(&mut state, &mut this.slot, cx.waker());
                state.driver = Some(slot);
                Poll::Pending
            }
            Poll::Ready(value) => {
                drop(load);
                // Free the key first: from here on nobody new can join, so if we are the only waiter the
                // value needs no clone and no one needs waking.
                flight.release_key();
                if Arc::strong_count(&this.flight) == 1 {
                    return Poll::Ready(value);
                }
                let wakers = {
                    let mut state = lock(&flight.state);
                    state.result = Some(value.clone());
                    std::mem::take(&mut state.wakers)
                };
                wakers.into_iter().flatten().for_each(Waker::wake);
                Poll::Ready(value)
            }
        }
    }
}

/// Records `waker` in this waiter's slot (allocating one on first use) and returns the slot.
fn register<V>(state: &mut State<V>, slot: &mut Option<usize>, waker: &Waker) -> usize {
    match *slot {
        Some(index) => {
            if let Some(entry) = state.wakers.get_mut(index) {
                match entry {
                    Some(existing) if existing.will_wake(waker) => {}
                    _ => *entry = Some(waker.clone()),
                }
            }
            index
        }
        None => {
            state.wakers.push(Some(waker.clone()));
            let index = state.wakers.len() - 1;
            *slot = Some(index);
            index
        }
    }
}

impl<K: Hash + Eq, V> Drop for Coalesced<K, V> {
    fn drop(&mut self) {
        let Some(slot) = self.slot else { return };
        let orphaned = {
            let mut state = lock(&self.flight.state);
            if let Some(entry) = state.wakers.get_mut(slot) {
                *entry = None;
            }
            // If the load's wake-ups were going to this waiter, hand the load to the others: wake them all,
            // and whichever polls first drives it from now on.
            if state.driver == Some(slot) && state.result.is_none() {
                state.driver = None;
                state.wakers.iter_mut().filter_map(Option::take).collect()
            } else {
                Vec::new()
            }
        };
        orphaned.into_iter().for_each(Waker::wake);
    }
}

impl<K: Hash + Eq, V> fmt::Debug for Coalesced<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Coalesced")
            .field("leader", &self.leader)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use futures_util::FutureExt;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    fn counting_load(
        loads: &Arc<AtomicUsize>,
        clock: &ManualClock,
        value: Result<u32, String>,
    ) -> impl FnOnce() -> BoxFuture<'static, Result<u32, String>> + Send + 'static {
        let loads = Arc::clone(loads);
        let sleep = clock.sleep(Duration::from_secs(1));
        move || {
            Box::pin(async move {
                loads.fetch_add(1, Ordering::SeqCst);
                sleep.await;
                value
            })
        }
    }

    #[test]
    fn concurrent_callers_share_one_load_including_errors() {
        let clock = ManualClock::new();
        let loads = Arc::new(AtomicUsize::new(0));
        let coalescer: Coalescer<&'static str, Result<u32, String>> = Coalescer::new();
        let mut waiters: Vec<_> = (0..10)
            .map(|_| {
                coalescer.run(
                    "k",
                    counting_load(&loads, &clock, Err("origin down".into())),
                )
            })
            .collect();
        assert!(waiters[0].is_leader());
        assert!(waiters[1..].iter().all(|w| !w.is_leader()));
        for w in &mut waiters {
            assert!(w.now_or_never().is_none());
        }
        assert_eq!(coalescer.in_flight(), 1);
        clock.advance(Duration::from_secs(1));
        for w in waiters {
            assert_eq!(w.now_or_never(), Some(Err("origin down".to_owned())));
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        assert_eq!(
            coalescer.in_flight(),
            0,
            "the key is free once the load is done"
        );
    }

    #[test]
    fn dropping_the_leader_does_not_lose_the_load() {
        let clock = ManualClock::new();
        let loads = Arc::new(AtomicUsize::new(0));
        let coalescer: Coalescer<u8, Result<u32, String>> = Coalescer::new();
        let mut leader = coalescer.run(1, counting_load(&loads, &clock, Ok(7)));
        let mut follower = coalescer.run(1, counting_load(&loads, &clock, Ok(8)));
        assert!((&mut leader).now_or_never().is_none());
        drop(leader);
        clock.advance(Duration::from_secs(1));
        assert_eq!((&mut follower).now_or_never(), Some(Ok(7)));
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn abandoned_loads_are_cancelled_and_the_key_freed() {
        let clock = ManualClock::new();
        let loads = Arc::new(AtomicUsize::new(0));
        let coalescer: Coalescer<u8, Result<u32, String>> = Coalescer::new();
        let mut only = coalescer.run(1, counting_load(&loads, &clock, Ok(1)));
        assert!((&mut only).now_or_never().is_none());
        assert_eq!(clock.sleepers(), 1);
        drop(only);
        assert_eq!(clock.sleepers(), 0, "the load was dropped");
        assert_eq!(coalescer.in_flight(), 0, "its key was freed");
        let fresh = coalescer.run(1, counting_load(&loads, &clock, Ok(2)));
        assert!(fresh.is_leader());
        clock.advance(Duration::from_secs(1));
        assert_eq!(fresh.now_or_never(), Some(Ok(2)));
    }

    #[test]
    fn orphaned_waiters_are_woken_to_take_over_the_load() {
        use std::sync::atomic::AtomicBool;
        struct Flag(AtomicBool);
        impl futures_util::task::ArcWake for Flag {
            fn wake_by_ref(arc_self: &Arc<Self>) {
                arc_self.0.store(true, Ordering::SeqCst);
            }
        }
        let clock = ManualClock::new();
        let loads = Arc::new(AtomicUsize::new(0));
        let coalescer: Coalescer<u8, Result<u32, String>> = Coalescer::new();
        let mut leader = coalescer.run(1, counting_load(&loads, &clock, Ok(5)));
        let mut follower = coalescer.run(1, counting_load(&loads, &clock, Ok(6)));
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let waker = futures_util::task::waker(Arc::clone(&flag));
        // The first to poll drives the load; the follower's poll only waits.
        assert!((&mut leader).now_or_never().is_none());
        assert!(
            Pin::new(&mut follower)
                .poll(&mut Context::from_waker(&waker))
                .is_pending()
        );
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        assert!(!flag.0.load(Ordering::SeqCst));
        drop(leader);
        assert!(
            flag.0.load(Ordering::SeqCst),
            "the follower was woken to take the load over"
        );
        assert!((&mut follower).now_or_never().is_none(), "it drives it now");
        clock.advance(Duration::from_secs(1));
        assert_eq!(follower.now_or_never(), Some(Ok(5)));
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn only_the_driver_polls_the_load() {
        let polls = Arc::new(AtomicUsize::new(0));
        let coalescer: Coalescer<u8, u8> = Coalescer::new();
        let counted = Arc::clone(&polls);
        let mut leader = coalescer.run(1, move || {
            futures_util::future::poll_fn(move |cx| {
                counted.fetch_add(1, Ordering::SeqCst);
                cx.waker().wake_by_ref();
                Poll::<u8>::Pending
            })
        });
        let mut followers: Vec<_> = (0..3).map(|_| coalescer.run(1, || async { 0 })).collect();
        assert!((&mut leader).now_or_never().is_none());
        for follower in &mut followers {
            assert!(follower.now_or_never().is_none());
        }
        assert_eq!(
            polls.load(Ordering::SeqCst),
            1,
            "followers never poll a load that has a driver"
        );
    }

    #[test]
    fn a_panicking_load_fails_every_waiter_instead_of_hanging() {
        let coalescer: Coalescer<u8, u8> = Coalescer::new();
        let leader = coalescer.run(1, || async { panic!("origin client bug") });
        let follower = coalescer.run(1, || async { 0 });
        let leader_result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| leader.now_or_never()));
        assert!(leader_result.is_err());
        let follower_result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| follower.now_or_never()));
        assert!(follower_result.is_err());
        assert_eq!(coalescer.in_flight(), 0);
        assert_eq!(
            coalescer.run(1, || async { 3 }).now_or_never(),
            Some(3),
            "the key is usable again"
        );
    }

    #[test]
    fn abandoned_before_first_poll_frees_the_key() {
        let coalescer: Coalescer<u8, u8> = Coalescer::new();
        drop(coalescer.run(1, || async { 1 }));
        // The load never started; the dead entry is replaced by the next caller.
        let next = coalescer.run(1, || async { 2 });
        assert!(next.is_leader());
        assert_eq!(next.now_or_never(), Some(2));
        assert_eq!(coalescer.in_flight(), 0);
    }

    #[test]
    fn distinct_keys_load_independently_and_loads_may_nest() {
        let coalescer: Coalescer<u8, u8> = Coalescer::new();
        let inner = coalescer.clone();
        let outer = coalescer.run(
            1,
            move || async move { inner.run(2, || async { 20 }).await + 1 },
        );
        assert_eq!(outer.now_or_never(), Some(21));
        assert_eq!(coalescer.in_flight(), 0);
    }

    #[test]
    fn later_callers_start_a_new_load() {
        let coalescer: Coalescer<u8, u8> = Coalescer::new();
        assert_eq!(coalescer.run(1, || async { 1 }).now_or_never(), Some(1));
        assert_eq!(coalescer.run(1, || async { 2 }).now_or_never(), Some(2));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_tasks_on_many_threads_share_one_load() {
        let loads = Arc::new(AtomicUsize::new(0));
        let coalescer: Coalescer<String, Arc<str>> = Coalescer::new();
        let gate = Arc::new(tokio::sync::Notify::new());
        let mut tasks = Vec::new();
        for _ in 0..1000 {
            let (coalescer, loads, gate) =
                (coalescer.clone(), Arc::clone(&loads), Arc::clone(&gate));
            tasks.push(tokio::spawn(async move {
                coalescer
                    .run("hot".to_owned(), move || async move {
                        loads.fetch_add(1, Ordering::SeqCst);
                        gate.notified().await;
                        Arc::from("value")
                    })
                    .await
            }));
        }
        while loads.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        // Every task has joined once all 1000 flights resolve to one key; release the load.
        while Arc::strong_count(&gate) > 2 {
            tokio::task::yield_now().await;
        }
        gate.notify_one();
        for task in tasks {
            assert_eq!(&*task.await.unwrap(), "value");
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    }

    /// A load the property below controls: it finishes when told, records that it was polled, and
    /// records being dropped (cancelled).
    #[derive(Default)]
    struct Controlled {
        started: bool,
        finished: bool,
        returned: bool,
        dropped: bool,
        waker: Option<Waker>,
    }

    struct ControlledLoad {
        id: usize,
        loads: Arc<Mutex<Vec<Controlled>>>,
    }

    impl Future for ControlledLoad {
        type Output = usize;

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<usize> {
            let mut loads = lock(&self.loads);
            let load = &mut loads[self.id];
            load.started = true;
            if load.finished {
                load.returned = true;
                Poll::Ready(self.id)
            } else {
                load.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    impl Drop for ControlledLoad {
        fn drop(&mut self) {
            lock(&self.loads)[self.id].dropped = true;
        }
    }

    /// A waker that records being woken.
    struct Flag(AtomicBool);

    impl std::task::Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[derive(Clone, Debug)]
    enum Step {
        Join(u8),
        Poll(usize),
        Drop(usize),
        Finish(usize),
    }

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        prop_oneof![
            3 => (0u8..2).prop_map(Step::Join),
            4 => any::<usize>().prop_map(Step::Poll),
            1 => any::<usize>().prop_map(Step::Drop),
            2 => any::<usize>().prop_map(Step::Finish),
        ]
    }

    struct Waiter {
        key: u8,
        /// The newest load of the key when this waiter joined: it may not get an older one's result.
        not_before: Option<usize>,
        future: Pin<Box<Coalesced<u8, usize>>>,
        flag: Arc<Flag>,
        polled: bool,
    }

    proptest::proptest! {
        /// Any interleaving of callers joining, being polled, being dropped and loads finishing: one
        /// live load per key at a time; a waiter gets the result of its key's load, never an older one;
        /// a waiter left pending is woken when there is something to do (an executor that polls only
        /// woken tasks finishes every one); a load whose waiters are all gone is dropped.
        #[test]
        fn interleavings_keep_the_coalescer_s_promises(steps in proptest::collection::vec(step(), 1..80)) {
            let coalescer: Coalescer<u8, usize> = Coalescer::new();
            let loads: Arc<Mutex<Vec<Controlled>>> = Arc::default();
            let key_of: Arc<Mutex<Vec<u8>>> = Arc::default();
            let mut waiters: Vec<Waiter> = Vec::new();
            let poll = |w: &mut Waiter| -> Option<usize> {
                w.polled = true;
                w.flag.0.store(false, Ordering::SeqCst);
                let waker = Waker::from(Arc::clone(&w.flag));
                match w.future.as_mut().poll(&mut Context::from_waker(&waker)) {
                    Poll::Ready(id) => Some(id),
                    Poll::Pending => None,
                }
            };
            let check = |w: &Waiter, id: usize, key_of: &Vec<u8>| -> Result<(), proptest::test_runner::TestCaseError> {
                proptest::prop_assert_eq!(key_of[id], w.key, "a result of another key's load");
                proptest::prop_assert!(w.not_before.is_none_or(|n| id >= n), "an older load's result");
                Ok(())
            };
            for step in steps {
                match step {
                    Step::Join(key) => {
                        let not_before = lock(&key_of).iter().rposition(|k| *k == key);
                        let (loads, key_of) = (Arc::clone(&loads), Arc::clone(&key_of));
                        let future = coalescer.run(key, move || {
                            let id = {
                                let mut all = lock(&loads);
                                all.push(Controlled::default());
                                all.len() - 1
                            };
                            lock(&key_of).push(key);
                            ControlledLoad { id, loads }
                        });
                        waiters.push(Waiter {
                            key,
                            not_before,
                            future: Box::pin(future),
                            flag: Arc::new(Flag(AtomicBool::new(false))),
                            polled: false,
                        });
                    }
                    Step::Poll(i) if !waiters.is_empty() => {
                        let i = i % waiters.len();
                        if let Some(id) = poll(&mut waiters[i]) {
                            check(&waiters[i], id, &lock(&key_of))?;
                            waiters.remove(i);
                        }
                    }
                    Step::Drop(i) if !waiters.is_empty() => {
                        waiters.remove(i % waiters.len());
                    }
                    Step::Finish(i) => {
                        let waker = {
                            let mut all = lock(&loads);
                            let count = all.len();
                            all.get_mut(i % count.max(1))
                                .filter(|l| l.started && !l.finished)
                                .and_then(|l| {
                                    l.finished = true;
                                    l.waker.take()
                                })
                        };
                        if let Some(waker) = waker {
                            waker.wake();
                        }
                    }
                    _ => {}
                }
                // One live load per key: started (or created) and neither returned nor dropped.
                let all = lock(&loads);
                let keys = lock(&key_of);
                for key in 0..2u8 {
                    let live = all
                        .iter()
                        .zip(keys.iter())
                        .filter(|(l, k)| **k == key && !l.returned && !l.dropped)
                        .count();
                    proptest::prop_assert!(live <= 1, "{} loads of key {} at once", live, key);
                }
            }
            // Drain as an executor would: poll only what was woken (or never polled), finish every
            // started load, until nothing moves. Every waiter must then be done.
            for _ in 0..1_000 {
                if waiters.is_empty() {
                    break;
                }
                let wakers: Vec<Waker> = lock(&loads)
                    .iter_mut()
                    .filter(|l| l.started && !l.finished)
                    .filter_map(|l| {
                        l.finished = true;
                        l.waker.take()
                    })
                    .collect();
                wakers.into_iter().for_each(Waker::wake);
                let mut i = 0;
                while i < waiters.len() {
                    let due = !waiters[i].polled || waiters[i].flag.0.load(Ordering::SeqCst);
                    match due.then(|| poll(&mut waiters[i])).flatten() {
                        Some(id) => {
                            check(&waiters[i], id, &lock(&key_of))?;
                            waiters.remove(i);
                        }
                        None => i += 1,
                    }
                }
            }
            proptest::prop_assert!(waiters.is_empty(), "{} waiters never woken", waiters.len());
            // Nothing left running: every load returned its result or was dropped.
            for (id, load) in lock(&loads).iter().enumerate() {
                proptest::prop_assert!(load.returned || load.dropped, "load {} leaked", id);
            }
        }
    }
}
