//! In-memory GCRA: one limiter ([`Limiter`]) or one per key ([`KeyedLimiter`]).
//!
//! Each key's state is one `AtomicU64` (its TAT, in its own allocation), updated with a compare-and-swap
//! loop: no lock is held while deciding. Keys live in 64 shards of `hashbrown` tables behind reader-writer locks; a known key
//! takes only its shard's read lock. Idle keys (TAT in the past, so indistinguishable from absent) are
//! swept by the inserting thread whenever a shard doubles in size: no background task to run, amortised
//! O(1) per insert, and memory bounded by the keys seen in the last second plus twice the active ones. A
//! sweep drops only keys idle for at least a second, so a key that comes back (a client making a
//! request every few milliseconds under a generous quota is idle between its requests) stays, and its
//! next check is a lookup, not an insert.

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use edge_core::{Clock, SystemClock};
use hashbrown::HashTable;

use super::gcra::schedule;
use super::{Decision, Quota};

fn nanos(clock: &impl Clock) -> u64 {
    clock.now_nanos()
}

/// Runs one GCRA step against an atomic TAT.
#[inline]
fn check_cell(quota: &Quota, cell: &AtomicU64, now: u64, cost: u32) -> Decision {
    let mut tat = cell.load(Ordering::Acquire);
    loop {
        let s = schedule(quota, tat, now, cost);
        let Some(new_tat) = s.new_tat else {
            return s.decision(quota);
        };
        match cell.compare_exchange_weak(tat, new_tat, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return s.decision(quota),
            Err(current) => tat = current,
        }
    }
}

/// One rate limit shared by every caller (a "direct" limiter).
///
/// ```
/// use edge_auth::ratelimit::{Limiter, Quota};
/// use edge_core::ManualClock;
///
/// let limiter = Limiter::with_clock(Quota::per_second(std::num::NonZeroU32::new(1).unwrap()), ManualClock::new());
/// assert!(limiter.check().is_allowed());
/// assert!(!limiter.check().is_allowed());
/// # Ok::<(), edge_auth::ratelimit::QuotaError>(())
/// ```
#[derive(Debug)]
pub struct Limiter<C = SystemClock> {
    quota: Quota,
    tat: AtomicU64,
    clock: C,
}

impl Limiter {
    /// A limiter on the host clock.
    #[must_use]
    pub fn new(quota: Quota) -> Self {
        Self::with_clock(quota, SystemClock::new())
    }
}

impl<C: Clock> Limiter<C> {
    /// A limiter reading time from `clock`.
    #[must_use]
    pub fn with_clock(quota: Quota, clock: C) -> Self {
        Self {
            quota,
            tat: AtomicU64::new(0),
            clock,
        }
    }

    /// The quota.
    #[must_use]
    pub fn quota(&self) -> &Quota {
        &self.quota
    }

    /// Decides one request now.
    #[must_use]
    pub fn check(&self) -> Decision {
        self.check_n(1)
    }

    /// Decides a request costing `cost` units now.
    #[must_use]
    pub fn check_n(&self, cost: u32) -> Decision {
        check_cell(&self.quota, &self.tat, nanos(&self.clock), cost)
    }
}

const SHARDS: usize = 64;
/// A shard is swept for idle keys when it reaches this size, then whenever it doubles.
const FIRST_SWEEP: usize = 64;
/// How long a key stays idle before a sweep as the map grows may drop it. Dropping a key idle for less
/// saves little memory and turns the next check of a client that comes back into an insert (measured in
/// `benches/benches/ratelimit.rs`: with a quota that leaves keys idle between requests, 10 000 clients
/// took 110–128 ns a check when every sweep dropped them, 67–85 ns with this).
const KEEP_IDLE: std::time::Duration = std::time::Duration::from_secs(1);

struct Shard<K> {
    /// Each key's TAT sits in its own allocation, not inline next to the key: under contention on one
    /// key, only the atomic's cache line bounces between cores, while the key every lookup compares
    /// stays shared (inline, a hot key made every core miss on its own comparison; measured in
    /// `benches/benches/ratelimit.rs`, 1 key × 2 threads).
    table: HashTable<(K, Arc<AtomicU64>)>,
    sweep_at: usize,
}

impl<K> Shard<K> {
    /// Drops the keys whose TAT is at or before `horizon` (idle since then: `horizon` ≤ now).
    fn sweep(&mut self, horizon: u64) {
        self.table
            .retain(|(_, cell)| cell.load(Ordering::Acquire) > horizon);
        self.sweep_at = (self.table.len() * 2).max(FIRST_SWEEP);
    }
}

/// One rate limit per key (client IP, API key, user id …).
///
/// ```
/// use edge_auth::ratelimit::{KeyedLimiter, Quota};
/// use edge_core::ManualClock;
///
/// let limiter = KeyedLimiter::with_clock(Quota::per_minute(std::num::NonZeroU32::new(2).unwrap()), ManualClock::new());
/// assert!(limiter.check(&"203.0.113.7").is_allowed());
/// assert!(limiter.check(&"203.0.113.7").is_allowed());
/// assert!(!limiter.check(&"203.0.113.7").is_allowed());
/// assert!(limiter.check(&"198.51.100.1").is_allowed(), "keys are independent");
/// # Ok::<(), edge_auth::ratelimit::QuotaError>(())
/// ```
pub struct KeyedLimiter<K, C = SystemClock> {
    quota: Quota,
    shards: Box<[RwLock<Shard<K>>]>,
    hasher: foldhash::fast::RandomState,
    clock: C,
}

impl<K: Hash + Eq + Clone> KeyedLimiter<K> {
    /// A keyed limiter on the host clock.
    #[must_use]
    pub fn new(quota: Quota) -> Self {
        Self::with_clock(quota, SystemClock::new())
    }
}

impl<K: Hash + Eq + Clone, C: Clock> KeyedLimiter<K, C> {
    /// A keyed limiter reading time from `clock`.
    #[must_use]
    pub fn with_clock(quota: Quota, clock: C) -> Self {
        let shards = (0..SHARDS)
            .map(|_| {
                RwLock::new(Shard {
                    table: HashTable::new(),
                    sweep_at: FIRST_SWEEP,
                })
            })
            .collect();
        Self {
            quota,
            shards,
            hasher: foldhash::fast::RandomState::default(),
            clock,
        }
    }

    /// The quota every key gets.
    #[must_use]
    pub fn quota(&self) -> &Quota {
        &self.quota
    }

    /// Decides one request for `key` now (a `&str` for `String` keys: no key is allocated unless it is
    /// new).
    pub fn check<Q>(&self, key: &Q) -> Decision
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        self.check_n(key, 1)
    }

    /// Decides a request costing `cost` units for `key` now.
    pub fn check_n<Q>(&self, key: &Q, cost: u32) -> Decision
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let now = nanos(&self.clock);
        let hash = self.hasher.hash_one(key);
        // Bits 40–45 pick the shard: hashbrown uses the low bits (bucket) and the top seven (tag) itself.
        let shard = &self.shards[(hash >> 40) as usize % SHARDS];
        {
            let read = shard.read().unwrap_or_else(PoisonError::into_inner);
            if let Some((_, cell)) = read.table.find(hash, |(k, _)| k.borrow() == key) {
                return check_cell(&self.quota, cell, now, cost);
            }
        }
        let mut write = shard.write().unwrap_or_else(PoisonError::into_inner);
        let shard = &mut *write;
        if let Some((_, cell)) = shard.table.find(hash, |(k, _)| k.borrow() == key) {
            return check_cell(&self.quota, cell, now, cost);
        }
        let s = schedule(&self.quota, 0, now, cost);
        // A denied first request leaves nothing behind: an absent key already means "full quota".
        if let Some(tat) = s.new_tat {
            if shard.table.len() >= shard.sweep_at {
                let keep = u64::try_from(KEEP_IDLE.as_nanos()).unwrap_or(u64::MAX);
                shard.sweep(now.saturating_sub(keep));
            }
            let hasher = &self.hasher;
            shard.table.insert_unique(
                hash,
                (key.to_owned(), Arc::new(AtomicU64::new(tat))),
                |(k, _)| hasher.hash_one(k),
            );
        }
        s.decision(&self.quota)
    }

    /// How many keys are held (active ones, plus idle ones not yet swept).
    #[must_use]
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(PoisonError::into_inner).table.len())
            .sum()
    }

    /// Whether no key is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every idle key now, however briefly idle (they are also dropped as the map grows, once idle
    /// for a second; this is for callers that want memory back at a moment of their choosing).
    pub fn sweep(&self) {
        let now = nanos(&self.clock);
        for shard in &*self.shards {
            shard
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .sweep(now);
        }
    }
}

impl<K, C> std::fmt::Debug for KeyedLimiter<K, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedLimiter")
            .field("quota", &self.quota)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use edge_core::ManualClock;

    use super::*;

    #[test]
    fn idle_keys_are_swept_as_the_map_grows_and_decisions_do_not_change() {
        let clock = ManualClock::new();
        let limiter = KeyedLimiter::with_clock(
            Quota::per_second(std::num::NonZeroU32::new(1).unwrap()),
            clock.clone(),
        );
        for i in 0..10_000u32 {
            assert!(limiter.check(&i).is_allowed());
        }
        assert_eq!(limiter.len(), 10_000);
        clock.advance(Duration::from_secs(2));
        for i in 10_000..20_000u32 {
            assert!(limiter.check(&i).is_allowed());
        }
        assert!(
            limiter.len() < 16_000,
            "idle keys swept on growth: {}",
            limiter.len()
        );
        assert!(!limiter.check(&19_999).is_allowed(), "active keys kept");
        assert!(
            limiter.check(&5).is_allowed(),
            "a swept key starts with a full quota, as it would have"
        );
        clock.advance(Duration::from_secs(2));
        limiter.sweep();
        assert!(limiter.is_empty());
    }

    #[test]
    fn keys_that_come_back_are_not_swept_between_their_requests() {
        // A generous quota: every key is idle again a nanosecond after each request. 10 000 clients
        // each come back every 10 ms (one check a microsecond).
        let clock = ManualClock::new();
        let limiter = KeyedLimiter::with_clock(
            Quota::per_second(std::num::NonZeroU32::new(1_000_000_000).unwrap()),
            clock.clone(),
        );
        let round = |check_len: bool| {
            for i in 0..10_000u32 {
                clock.advance(Duration::from_micros(1));
                assert!(limiter.check(&i).is_allowed());
                if check_len && i % 500 == 0 {
                    assert_eq!(
                        limiter.len(),
                        10_000,
                        "no client swept between its requests"
                    );
                }
            }
        };
        for _ in 0..4 {
            round(false);
        }
        round(true);
        // Gone quiet for a while: a sweep takes them all.
        clock.advance(Duration::from_secs(1));
        limiter.sweep();
        assert!(limiter.is_empty());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
        /// Sweeping is invisible: over long runs of enough keys that shards grow and are swept, each key
        /// coming back several times, every decision is the one a map that keeps every key's TAT
        /// forever makes.
        #[test]
        fn sweeps_never_change_a_decision(
            seed in proptest::prelude::any::<u64>(),
            per_second in 1u32..100,
            burst in 1u32..20,
            keys in 4_096u32..8_192,
            max_step_micros in 1u64..4_000,
        ) {
            let quota = Quota::per_second(std::num::NonZeroU32::new(per_second).unwrap())
                .with_burst(burst)
                .unwrap();
            let clock = ManualClock::new();
            let limiter = KeyedLimiter::with_clock(quota, clock.clone());
            let mut model: std::collections::HashMap<u32, u64> = std::collections::HashMap::new();
            // A reproducible stream from the seed (the trace ids' generator).
            let ids = edge_core::trace::SplitMix::new(seed);
            let next = || edge_core::trace::IdSource::next_u64(&ids);
            for _ in 0..40_000 {
                clock.advance(Duration::from_micros(next() % max_step_micros));
                let key = u32::try_from(next() % u64::from(keys)).unwrap();
                let cost = u32::try_from(next() % 3).unwrap() + 1;
                let now = clock.now_nanos();
                let expected = crate::ratelimit::gcra::step(&quota, model.get(&key).copied().unwrap_or(0), now, cost);
                if let Some(tat) = expected.new_tat {
                    model.insert(key, tat);
                }
                let got = limiter.check_n(&key, cost);
                proptest::prop_assert_eq!(got, expected.decision, "key {} cost {} at {}", key, cost, now);
            }
        }
    }

    #[test]
    fn threads_never_share_out_more_than_the_burst() {
        let clock = ManualClock::new();
        let limiter = KeyedLimiter::with_clock(
            Quota::per_hour(std::num::NonZeroU32::new(1000).unwrap()),
            clock,
        );
        let admitted = AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..1000 {
                        if limiter.check(&"hot").is_allowed() {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(admitted.load(Ordering::Relaxed), 1000);
    }
}
