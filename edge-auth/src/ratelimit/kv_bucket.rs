//! The classic edge limiter: a token bucket whose state lives in eventually consistent KV.
//!
//! Each check reads the key's `{tokens, timestamp}` from the local KV replica, refills by the elapsed
//! time, deducts, and writes back. No lock, no cross-PoP round trip: KV reads are local. The price is
//! over-admission when several PoPs serve the same key, because a PoP cannot see consumption at the others
//! until replication brings it, and last-writer-wins replication can even replace a drained state with a
//! fuller one written elsewhere.
//!
//! # The over-admission bound
//!
//! This implementation adds one thing to the textbook algorithm: each PoP remembers its own last write per
//! key and never believes the KV replica when it shows *more* tokens than that (after refill). So whatever
//! replication delivers, in whatever order, a PoP's decisions for a key are at least as strict as an
//! isolated token bucket with the same quota, and so, for `M` PoPs, capacity `C` (the burst), refill rate
//! `r` and any window of length `w`:
//!
//! > admitted(w) ≤ M · (C + r·w)  — an over-admission of at most (M − 1)·(C + r·w) over an exact limiter,
//! > whatever the replication lag `L`.
//!
//! How close traffic gets to that bound does *not* depend much on the lag, and this is worth knowing
//! before relying on KV for limits: under sustained traffic every PoP writes the key on each admission,
//! so at each replica the PoP's own newest write outranks the older remote writes arriving behind it
//! (last writer wins by timestamp), and each PoP ends up acting on its own bucket alone. A client that
//! saturates `M` PoPs gets `M · (C + r·w)` through: the test `over_admission_across_pops_…` in
//! `edge-auth/tests/ratelimit/` measures 59 of an exact 60 per PoP for `M` = 1, 2, 4 and 8 at 50 ms and
//! 250 ms lag. Sharing helps only traffic that moves between PoPs slower than the lag (a user whose
//! requests land on one PoP, then another). For exact limits across servers use Redis or a durable
//! object; for a lag-dependent bound, counters that *add up* across PoPs instead of overwriting each
//! other are needed (last-writer-wins KV cannot sum).
//!
//! Without the local floor (the textbook algorithm), last-writer-wins also lets a drained PoP
//! adopt a fuller state written later at another PoP, so admissions can exceed even `M` isolated
//! buckets; `the_local_floor_stops_a_drained_pop_adopting_a_fuller_replica` shows that case.
//!
//! # Bad state
//!
//! A stored value that does not decode (wrong length or tag, tokens not finite, negative or above the
//! capacity) is treated as absent: the key starts again from a full bucket and the garbage is overwritten
//! by the next admitted request. Store errors go to the [`OnStoreError`] policy.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use edge_core::kv::PutOptions;
use edge_core::{Clock, KvStore, SystemClock};

use super::{Decision, Quota, storage_key};

/// What a limiter does when its store cannot be reached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnStoreError {
    /// Admit the request (availability first; the default: a limiter outage should not be a site outage).
    #[default]
    Allow,
    /// Deny the request (for limits that protect money or scarce capacity).
    Deny,
}

impl OnStoreError {
    /// The decision this policy gives when the store failed.
    pub(crate) fn decision(self, quota: Quota) -> Decision {
        match self {
            Self::Allow => {
                Decision::new(true, quota, quota.burst(), Duration::ZERO, Duration::ZERO)
            }
            Self::Deny => Decision::new(false, quota, 0, quota.period(), quota.emission_interval()),
        }
    }
}

const STATE_TAG: u8 = 1;
const STATE_LEN: usize = 17;

/// One bucket's state: tokens left, and when (Unix microseconds) they were counted.
#[derive(Clone, Copy, Debug, PartialEq)]
struct State {
    tokens: f64,
    at_micros: u64,
}

impl State {
    fn encode(self) -> Bytes {
        let mut out = Vec::with_capacity(STATE_LEN);
        out.push(STATE_TAG);
        out.extend_from_slice(&self.tokens.to_be_bytes());
        out.extend_from_slice(&self.at_micros.to_be_bytes());
        Bytes::from(out)
    }

    fn decode(bytes: &[u8], capacity: f64) -> Option<Self> {
        let (&tag, rest) = bytes.split_first()?;
        if tag != STATE_TAG || rest.len() != 16 {
            return None;
        }
        let (tokens, at) = rest.split_at(8);
        let tokens = f64::from_be_bytes(tokens.try_into().ok()?);
        let at_micros = u64::from_be_bytes(at.try_into().ok()?);
        (tokens.is_finite() && (0.0..=capacity).contains(&tokens))
            .then_some(Self { tokens, at_micros })
    }

    /// The state refilled to `now` (a timestamp in the future counts as no time passed).
    fn refilled(self, now_micros: u64, rate_per_micro: f64, capacity: f64) -> f64 {
        #[allow(clippy::cast_precision_loss)]
        let elapsed = now_micros.saturating_sub(self.at_micros) as f64;
        elapsed.mul_add(rate_per_micro, self.tokens).min(capacity)
    }
}

/// Builds a [`KvTokenBucket`].
#[derive(Debug)]
pub struct KvTokenBucketBuilder<S, C = SystemClock> {
    store: S,
    quota: Quota,
    clock: C,
    prefix: String,
    on_store_error: OnStoreError,
    local_floor: bool,
}

impl<S: KvStore> KvTokenBucketBuilder<S> {
    /// Reads time from `clock` (wall time: every PoP must agree on it).
    pub fn clock<C2: Clock>(self, clock: C2) -> KvTokenBucketBuilder<S, C2> {
        KvTokenBucketBuilder {
            store: self.store,
            quota: self.quota,
            clock,
            prefix: self.prefix,
            on_store_error: self.on_store_error,
            local_floor: self.local_floor,
        }
    }
}

impl<S: KvStore, C: Clock> KvTokenBucketBuilder<S, C> {
    /// The prefix of every KV key (default `"rl:"`).
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// What to do when the store fails (default [`OnStoreError::Allow`]).
    #[must_use]
    pub fn on_store_error(mut self, policy: OnStoreError) -> Self {
        self.on_store_error = policy;
        self
    }

    /// Whether this PoP keeps a floor of its own last writes (default `true`). Turning it off gives the
    /// textbook algorithm exactly, without the bound in the [module docs](self): for comparison
    /// only.
    #[must_use]
    pub fn local_floor(mut self, enabled: bool) -> Self {
        self.local_floor = enabled;
        self
    }

    /// The limiter.
    pub fn build(self) -> KvTokenBucket<S, C> {
        KvTokenBucket {
            store: self.store,
            quota: self.quota,
            clock: self.clock,
            prefix: self.prefix,
            on_store_error: self.on_store_error,
            local_floor: self.local_floor,
            floors: Mutex::new(Floors::default()),
        }
    }
}

/// This PoP's own last write per key: the floor under what the replica may claim.
#[derive(Default)]
struct Floors {
    map: HashMap<String, State>,
    sweep_at: usize,
}

/// A token bucket per key, kept in a [`KvStore`]. See the [module docs](self) for its over-admission
/// bound across PoPs.
///
/// ```
/// use edge_auth::ratelimit::{KvTokenBucket, Quota};
/// use edge_core::ManualClock;
/// use edge_kv::MemoryKv;
///
/// # futures::executor::block_on(async {
/// let limiter = KvTokenBucket::builder(MemoryKv::new(), Quota::per_minute(std::num::NonZeroU32::new(2).unwrap()))
///     .clock(ManualClock::new())
///     .build();
/// assert!(limiter.check("203.0.113.7").await.is_allowed());
/// assert!(limiter.check("203.0.113.7").await.is_allowed());
/// assert!(!limiter.check("203.0.113.7").await.is_allowed());
/// # Ok::<(), edge_auth::ratelimit::QuotaError>(()) }).unwrap();
/// ```
pub struct KvTokenBucket<S, C = SystemClock> {
    store: S,
    quota: Quota,
    clock: C,
    prefix: String,
    on_store_error: OnStoreError,
    local_floor: bool,
    floors: Mutex<Floors>,
}

impl<S: KvStore> KvTokenBucket<S> {
    /// Starts building a limiter over `store` with `quota` (capacity = the quota's burst, refill = its
    /// rate).
    pub fn builder(store: S, quota: Quota) -> KvTokenBucketBuilder<S> {
        KvTokenBucketBuilder {
            store,
            quota,
            clock: SystemClock::new(),
            prefix: "rl:".to_owned(),
            on_store_error: OnStoreError::default(),
            local_floor: true,
        }
    }
}

impl<S: KvStore, C: Clock> KvTokenBucket<S, C> {
    /// The quota.
    pub fn quota(&self) -> &Quota {
        &self.quota
    }

    /// Decides one request for `key`, applying the [`OnStoreError`] policy if the store fails.
    pub async fn check(&self, key: &str) -> Decision {
        self.check_n(key, 1).await
    }

    /// Decides a request costing `cost` tokens for `key`, applying the [`OnStoreError`] policy if the
    /// store fails. A cost above the burst is refused as [`Decision::is_impossible`] without touching
    /// the store.
    pub async fn check_n(&self, key: &str, cost: u32) -> Decision {
        match self.try_check_n(key, cost).await {
            Ok(decision) => decision,
            Err(_) => self.on_store_error.decision(self.quota),
        }
    }

    /// Decides one request for `key`.
    ///
    /// # Errors
    ///
    /// The store's error, if reading or writing the bucket failed. Nothing is admitted on this PoP's
    /// books in that case.
    pub async fn try_check(&self, key: &str) -> Result<Decision, edge_core::Error> {
        self.try_check_n(key, 1).await
    }

    /// Decides a request costing `cost` tokens for `key` (see [`KvTokenBucket::check_n`]).
    ///
    /// # Errors
    ///
    /// As [`KvTokenBucket::try_check`].
    pub async fn try_check_n(&self, key: &str, cost: u32) -> Result<Decision, edge_core::Error> {
        if cost > self.quota.burst() {
            return Ok(Decision::impossible(
                self.quota,
                self.quota.burst(),
                Duration::ZERO,
            ));
        }
        let cost = f64::from(cost);
        let capacity = f64::from(self.quota.burst());
        #[allow(clippy::cast_precision_loss)]
        let interval_micros = self.quota.interval_nanos() as f64 / 1000.0;
        let rate = 1.0 / interval_micros;
        let now = u64::try_from(self.clock.unix_time().as_micros()).unwrap_or(u64::MAX);
        let kv_key = self.kv_key(key);

        let stored = self.store.get(&kv_key).await?;
        let replica = stored
            .and_then(|bytes| State::decode(&bytes, capacity))
            .map_or(capacity, |s| s.refilled(now, rate, capacity));
        let floor = if self.local_floor {
            self.lock_floors()
                .map
                .get(&kv_key)
                .map_or(capacity, |s| s.refilled(now, rate, capacity))
        } else {
            capacity
        };
        let tokens = replica.min(floor);
        if tokens < cost {
            let retry = Duration::from_secs_f64((cost - tokens) * interval_micros / 1e6);
            return Ok(self.decision(false, tokens, retry));
        }
        let left = State {
            tokens: tokens - cost,
            at_micros: now,
        };
        let full_in = micros_to_duration((capacity - left.tokens) * interval_micros);
        let ttl = (full_in + Duration::from_secs(1)).max(self.store.limits().min_ttl);
        self.store
            .put(&kv_key, left.encode(), PutOptions::new().with_ttl(ttl))
            .await?;
        if self.local_floor {
            self.remember(kv_key, left, now, rate, capacity);
        }
        Ok(self.decision(true, left.tokens, Duration::ZERO))
    }

    fn decision(&self, allowed: bool, tokens: f64, retry_after: Duration) -> Decision {
        #[allow(clippy::cast_precision_loss)]
        let interval_micros = self.quota.interval_nanos() as f64 / 1000.0;
        let capacity = f64::from(self.quota.burst());
        let reset = micros_to_duration((capacity - tokens).max(0.0) * interval_micros);
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let remaining = tokens.floor().max(0.0) as u32;
        Decision::new(allowed, self.quota, remaining, reset, retry_after)
    }

    fn kv_key(&self, key: &str) -> String {
        storage_key(&self.prefix, key, self.store.limits().max_key_len)
    }

    fn lock_floors(&self) -> std::sync::MutexGuard<'_, Floors> {
        self.floors.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn remember(&self, kv_key: String, state: State, now: u64, rate: f64, capacity: f64) {
        let mut floors = self.lock_floors();
        if floors.map.len() >= floors.sweep_at {
            // A floor refilled to full constrains nothing: drop it.
            floors
                .map
                .retain(|_, s| s.refilled(now, rate, capacity) < capacity);
            floors.sweep_at = (floors.map.len() * 2).max(1024);
        }
        floors.map.insert(kv_key, state);
    }
}

fn micros_to_duration(micros: f64) -> Duration {
    Duration::try_from_secs_f64(micros / 1e6).unwrap_or(Duration::MAX)
}

impl<S, C> std::fmt::Debug for KvTokenBucket<S, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvTokenBucket")
            .field("quota", &self.quota)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_garbage_is_refused() {
        let s = State {
            tokens: 2.5,
            at_micros: 1_700_000_000_000_000,
        };
        assert_eq!(State::decode(&s.encode(), 10.0), Some(s));
        let mut bad = s.encode().to_vec();
        bad[0] = 9;
        assert_eq!(State::decode(&bad, 10.0), None);
        assert_eq!(State::decode(&s.encode()[..10], 10.0), None);
        for tokens in [f64::NAN, f64::INFINITY, -1.0, 11.0] {
            let s = State {
                tokens,
                at_micros: 0,
            };
            assert_eq!(State::decode(&s.encode(), 10.0), None, "{tokens}");
        }
    }
}
