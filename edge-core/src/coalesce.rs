//! The request coalescer (singleflight): for one key, one load at a time, shared by every caller.
//!
//! When a popular cache entry expires, every request for it misses at once; without coalescing, each one goes
//! to the origin (the seeds' "thundering herd"). A [`Coalescer`] lets the first caller start the load and
//! makes every concurrent caller for the same key wait for that same load and receive a clone of its result,
//! errors included. KV read-through, the HTTP cache, ESI fragment fetches and JWKS refreshes all use it.
//!
//! # Semantics
//!
//! - The load is started lazily by the first poll of the first caller's future, never under a lock, so a load
//!   may itself use the coalescer.
//! - Whoever is polling drives the load: if the caller that started it is dropped, the others carry it on.
//!   Only when *every* caller has been dropped is the load dropped (cancelled), and the next caller starts a
//!   fresh one.
//! - Once a load completes, its key is free: a caller arriving after completion starts a new load (results
//!   are shared, not cached; put a cache in front for that).
//! - No `Send` bound on wasm32; on native targets the load future must be `Send` and the result
//!   `Send + Sync`, as for any future shared across a multi-threaded runtime.
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
use std::fmt;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};

use futures_util::FutureExt;
use futures_util::future::{Shared, WeakShared};

use crate::sync::{BoxFuture, MaybeSend, MaybeSync, lock};

type Flights<K, V> = Mutex<HashMap<K, Flight<V>>>;

struct Flight<V> {
    id: u64,
    load: WeakShared<BoxFuture<'static, V>>,
}

/// Deduplicates concurrent loads by key. See the [module docs](self).
///
/// Cheap to clone; clones share the flights in progress.
pub struct Coalescer<K, V> {
    flights: Arc<Flights<K, V>>,
    next_id: Arc<AtomicU64>,
}

impl<K, V> Coalescer<K, V> {
    /// A coalescer with no loads in flight.
    #[must_use]
    pub fn new() -> Self {
        Self { flights: Arc::default(), next_id: Arc::default() }
    }

    /// How many keys have a load in flight.
    #[must_use]
    pub fn in_flight(&self) -> usize {
        lock(&self.flights).len()
    }
}

impl<K, V> Coalescer<K, V>
where
    K: Hash + Eq + Clone + MaybeSend + 'static,
    V: Clone + MaybeSend + MaybeSync + 'static,
{
    /// Joins the load in flight for `key`, or starts one with `load` if there is none.
    ///
    /// `load` is called at most once, on the first poll of the returned future, and only if this call started
    /// the flight ([`Coalesced::is_leader`]).
    pub fn run<F, Fut>(&self, key: K, load: F) -> Coalesced<V>
    where
        F: FnOnce() -> Fut + MaybeSend + 'static,
        Fut: Future<Output = V> + MaybeSend + 'static,
    {
        let mut flights = lock(&self.flights);
        if let Some(shared) = flights.get(&key).and_then(|flight| flight.load.upgrade()) {
            return Coalesced { shared, leader: false };
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let release = Release { flights: Arc::downgrade(&self.flights), key: Some(key.clone()), id };
        let future: BoxFuture<'static, V> = Box::pin(async move {
            // Dropped when the load finishes or is abandoned by every waiter: either way the key is free.
            let _release = release;
            load().await
        });
        let shared = future.shared();
        if let Some(weak) = shared.downgrade() {
            // Replaces a dead flight (all its waiters gone) if there was one; dropping a weak handle runs no
            // user code, so doing it under the lock is safe.
            flights.insert(key, Flight { id, load: weak });
        }
        Coalesced { shared, leader: true }
    }
}

impl<K, V> Clone for Coalescer<K, V> {
    fn clone(&self) -> Self {
        Self { flights: Arc::clone(&self.flights), next_id: Arc::clone(&self.next_id) }
    }
}

impl<K, V> Default for Coalescer<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V> fmt::Debug for Coalescer<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Coalescer").field("in_flight", &self.in_flight()).finish()
    }
}

/// Frees the key of a flight once its load is over.
struct Release<K: Hash + Eq, V> {
    flights: Weak<Flights<K, V>>,
    key: Option<K>,
    id: u64,
}

impl<K: Hash + Eq, V> Drop for Release<K, V> {
    fn drop(&mut self) {
        let (Some(flights), Some(key)) = (self.flights.upgrade(), self.key.take()) else { return };
        let removed = {
            let mut flights = lock(&flights);
            // A later flight may own the key by now (this one was abandoned and replaced): leave it alone.
            if flights.get(&key).is_some_and(|flight| flight.id == self.id) { flights.remove(&key) } else { None }
        };
        drop(removed);
    }
}

/// A caller's share of a coalesced load; resolves to a clone of the load's result.
#[must_use = "futures do nothing unless polled"]
pub struct Coalesced<V> {
    shared: Shared<BoxFuture<'static, V>>,
    leader: bool,
}

impl<V> Coalesced<V> {
    /// `true` if this call started the load rather than joining one in flight.
    #[must_use]
    pub fn is_leader(&self) -> bool {
        self.leader
    }
}

impl<V: Clone> Future for Coalesced<V> {
    type Output = V;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<V> {
        Pin::new(&mut self.shared).poll(cx)
    }
}

impl<V> fmt::Debug for Coalesced<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Coalesced").field("leader", &self.leader).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
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
        let mut waiters: Vec<_> =
            (0..10).map(|_| coalescer.run("k", counting_load(&loads, &clock, Err("origin down".into())))).collect();
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
        assert_eq!(coalescer.in_flight(), 0, "the key is free once the load is done");
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
        let outer = coalescer.run(1, move || async move { inner.run(2, || async { 20 }).await + 1 });
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
            let (coalescer, loads, gate) = (coalescer.clone(), Arc::clone(&loads), Arc::clone(&gate));
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
}
