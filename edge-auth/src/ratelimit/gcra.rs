//! GCRA, the generic cell rate algorithm (ITU-T I.371), sans-IO: a pure function from the stored
//! *theoretical arrival time* (TAT) and the current time to a decision and the TAT to store.
//!
//! One number per key is the whole state, which is why it fits in an atomic (in memory), one Redis
//! string (in a script), or one durable-object field. Times are nanoseconds on one clock's timeline.
//!
//! For a quota with emission interval `T` and burst `B`, a request of cost `n` arriving at `now` is
//! admitted iff `max(tat, now) + n·T − now ≤ B·T`; the new TAT is then `max(tat, now) + n·T`.
//! A stored TAT at or before `now` means "full quota", exactly as an absent one does, so idle keys can be
//! dropped at any time without changing a single decision.

use super::{Decision, Quota};

/// What one GCRA step decided, and the TAT to store if anything changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// The decision to report.
    pub decision: Decision,
    /// The TAT to store: `Some` only when the request was admitted.
    pub new_tat: Option<u64>,
}

/// Decides a request of `cost` units at `now`, given the stored `tat` (0 when the key is new).
///
/// Arithmetic saturates and nothing overflows. A clock that jumps backwards makes the limiter stricter,
/// never looser (the client looks further ahead of its schedule). A cost above the burst can never be
/// admitted; it is denied every time.
///
/// ```
/// use edge_auth::ratelimit::{Quota, gcra};
///
/// let quota = Quota::per_second(std::num::NonZeroU32::new(2).unwrap()); // one every 500 ms, burst 2
/// let first = gcra::step(&quota, 0, 0, 1);
/// let second = gcra::step(&quota, first.new_tat.unwrap(), 0, 1);
/// let third = gcra::step(&quota, second.new_tat.unwrap(), 0, 1);
/// assert!(first.decision.is_allowed() && second.decision.is_allowed());
/// assert!(!third.decision.is_allowed());
/// assert_eq!(third.decision.retry_after().as_millis(), 500);
/// # Ok::<(), edge_auth::ratelimit::QuotaError>(())
/// ```
#[must_use]
#[inline]
pub fn step(quota: &Quota, tat: u64, now: u64, cost: u32) -> Step {
    let s = schedule(quota, tat, now, cost);
    Step {
        decision: s.decision(quota),
        new_tat: s.new_tat,
    }
}

/// [`step`] without building the [`Decision`]: plain integers, cheap to recompute in a CAS loop.
#[derive(Clone, Copy)]
pub(crate) struct Schedule {
    pub(crate) new_tat: Option<u64>,
    ahead: u64,
    retry: u64,
    /// The cost is above the burst: no wait admits it.
    impossible: bool,
}

impl Schedule {
    #[inline]
    pub(crate) fn decision(self, quota: &Quota) -> Decision {
        if self.impossible {
            return Decision::impossible(*quota, 0, std::time::Duration::from_nanos(self.ahead))
                .with_remaining_derived(self.ahead);
        }
        Decision::scheduled(self.new_tat.is_some(), *quota, self.ahead, self.retry)
    }
}

#[inline]
pub(crate) fn schedule(quota: &Quota, tat: u64, now: u64, cost: u32) -> Schedule {
    let capacity = quota.capacity_nanos();
    let ahead = tat.max(now) - now;
    let increment = quota.interval_nanos().saturating_mul(u64::from(cost));
    let new_ahead = ahead.saturating_add(increment);
    if new_ahead <= capacity {
        Schedule {
            new_tat: Some(now.saturating_add(new_ahead)),
            ahead: new_ahead,
            retry: 0,
            impossible: false,
        }
    } else {
        Schedule {
            new_tat: None,
            ahead,
            retry: new_ahead - capacity,
            impossible: cost > quota.burst(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;

    /// The reference model: a token bucket of `burst` tokens refilled continuously at one per interval,
    /// in exact rational arithmetic (tokens scaled by the interval).
    struct Bucket {
        /// Tokens × interval, so refill is one unit per nanosecond.
        scaled: u128,
        last: u64,
    }

    impl Bucket {
        fn admit(&mut self, quota: &Quota, now: u64, cost: u32) -> bool {
            let full = u128::from(quota.capacity_nanos());
            let elapsed = u128::from(now.saturating_sub(self.last));
            self.last = self.last.max(now);
            self.scaled = (self.scaled + elapsed).min(full);
            let need = u128::from(quota.interval_nanos()) * u128::from(cost);
            if need <= self.scaled {
                self.scaled -= need;
                true
            } else {
                false
            }
        }
    }

    fn quota() -> impl Strategy<Value = Quota> {
        (1u32..50, 1u64..5_000, 1u32..50).prop_filter_map("valid quota", |(limit, ms, burst)| {
            Quota::new(limit, Duration::from_millis(ms))
                .ok()?
                .with_burst(burst)
                .ok()
        })
    }

    proptest! {
        /// GCRA and the token bucket are the same algorithm: decisions agree on any schedule, including
        /// a clock that stands still.
        #[test]
        fn matches_a_token_bucket_model(
            quota in quota(),
            steps in prop::collection::vec((0u64..400_000_000, any::<bool>(), 1u32..4), 1..200),
        ) {
            let mut tat = 0;
            let mut now = 1_000_000_000u64;
            let mut model = Bucket { scaled: u128::from(quota.capacity_nanos()), last: now };
            for (delta, still, cost) in steps {
                if !still {
                    now += delta;
                }
                let step = step(&quota, tat, now, cost);
                prop_assert_eq!(step.decision.is_allowed(), model.admit(&quota, now, cost));
                if let Some(new) = step.new_tat {
                    tat = new;
                }
            }
        }

        /// Over any window, admissions never exceed what the quota allows: burst + window / interval.
        #[test]
        fn never_admits_more_than_the_quota(
            quota in quota(),
            gaps in prop::collection::vec(0u64..50_000_000, 1..300),
        ) {
            let mut tat = 0;
            let mut now = 0u64;
            let mut admitted = Vec::new();
            for gap in gaps {
                now += gap;
                let s = step(&quota, tat, now, 1);
                if let Some(new) = s.new_tat {
                    tat = new;
                    admitted.push(now);
                }
            }
            for (i, &start) in admitted.iter().enumerate() {
                for (j, &end) in admitted.iter().enumerate().skip(i) {
                    let window = end - start;
                    let allowed = u64::from(quota.burst()) + window / quota.interval_nanos();
                    prop_assert!((j - i + 1) as u64 <= allowed, "{} admitted in {window} ns", j - i + 1);
                }
            }
        }
    }

    #[test]
    fn a_clock_going_backwards_only_makes_it_stricter() {
        let quota = Quota::per_second(std::num::NonZeroU32::new(2).unwrap());
        let second = 1_000_000_000;
        let mut tat = 0;
        for _ in 0..2 {
            tat = step(&quota, tat, 10 * second, 1).new_tat.unwrap();
        }
        assert!(!step(&quota, tat, 10 * second, 1).decision.is_allowed());
        assert!(
            !step(&quota, tat, 5 * second, 1).decision.is_allowed(),
            "back in time: still denied"
        );
        assert!(
            step(&quota, tat, 10 * second + second / 2, 1)
                .decision
                .is_allowed()
        );
    }

    #[test]
    fn numeric_edges_do_not_overflow() {
        let quota = Quota::new(u32::MAX, Duration::from_secs(u64::MAX / 1_000_000_000)).unwrap();
        assert!(
            step(&quota, u64::MAX, u64::MAX, u32::MAX)
                .decision
                .is_allowed(),
            "cost = burst"
        );
        assert!(step(&quota, 0, u64::MAX, 1).decision.is_allowed());
        let small = Quota::per_second(std::num::NonZeroU32::new(10).unwrap());
        let s = step(&small, u64::MAX, 0, u32::MAX);
        assert!(
            !s.decision.is_allowed(),
            "cost above the burst, TAT at the end of time"
        );
        assert_eq!(s.new_tat, None);
        let tiny = Quota::new(1, Duration::from_nanos(1)).unwrap();
        assert!(step(&tiny, 0, 0, 1).decision.is_allowed());
        // A cost above the burst can never be admitted: said so, with no wait that would help.
        let impossible = step(&tiny, 0, 0, 2).decision;
        assert!(impossible.is_impossible() && !impossible.is_allowed());
        assert_eq!(impossible.retry_after(), Duration::ZERO);
        assert!(!step(&tiny, 0, 0, 1).decision.is_impossible());
    }
}
