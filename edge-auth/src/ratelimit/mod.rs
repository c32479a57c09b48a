//! Rate limiting, from one process to many servers.
//!
//! | limiter | state lives | exact? | use it for |
//! |---|---|---|---|
//! | [`Limiter`], [`KeyedLimiter`] | this process (GCRA, one atomic per key) | yes, per process | per-instance protection, the first line |
//! | [`KvTokenBucket`] | any [`KvStore`](edge_core::KvStore) (the classic edge token bucket) | no: bounded over-admission across PoPs | coarse abuse limits across an edge network |
//! | `RedisLimiter` (feature `redis`) | Redis, one atomic script per check (GCRA) | yes, across servers | per-account quotas shared by many app servers |
//! | [`SlidingWindowLimiter`] over a [`WindowStore`] | memory, Redis (`RedisWindowStore`, feature `redis`) or a durable object per key ([`DurableWindowStore`]) | yes, in any window | an exact sliding window |
//! | [`ShardedLimiter`] | N window shards (default 64) | bounded: ≤ limit + N − 1 | one key too hot for one store instance |
//!
//! Every limiter answers with a [`Decision`]: allowed or not, remaining quota, time to reset and
//! retry-after, ready to become `RateLimit`, `RateLimit-Policy` and `Retry-After` response fields. Quotas
//! that make no sense (zero limit, zero period) cannot be built: see [`Quota`].

mod decision;
pub mod gcra;
pub mod kv_bucket;
#[cfg(feature = "tower")]
pub mod layer;
mod memory;
mod quota;
#[cfg(all(feature = "redis", not(target_arch = "wasm32")))]
mod redis;
pub mod window;

pub use decision::{Decision, RATELIMIT, RATELIMIT_POLICY};
pub use kv_bucket::{KvTokenBucket, KvTokenBucketBuilder, OnStoreError};
#[cfg(feature = "tower")]
pub use layer::{
    Backend, ClientIp, KeyExtractor, RateLimit, RateLimitLayer, RateLimitRejection, RequestView,
    Unkeyed,
};
pub use memory::{KeyedLimiter, Limiter};
pub use quota::{MAX_POLICY_NAMES, Quota, QuotaError};
#[cfg(all(feature = "redis", not(target_arch = "wasm32")))]
pub use redis::{RedisLimiter, RedisWindowStore};
pub use window::{
    DEFAULT_SHARDS, DurableWindowStore, MAX_OBJECT_LIMIT, MemoryWindowStore, ShardedLimiter,
    SlidingWindowLimiter, WindowHit, WindowObject, WindowStore, shard_of,
};

/// `prefix + key`, or, when that is longer than `max_len` (or `key` starts with `#`),
/// `prefix + '#' + SHA-256(key)` in hex: keys of any length work, and hashed ones cannot collide with
/// literal ones.
fn storage_key(prefix: &str, key: &str, max_len: usize) -> String {
    if prefix.len() + key.len() <= max_len && !key.starts_with('#') {
        return format!("{prefix}{key}");
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
    let mut out = String::with_capacity(prefix.len() + 65);
    out.push_str(prefix);
    out.push('#');
    for byte in digest.as_ref() {
        out.push(char::from(b"0123456789abcdef"[usize::from(byte >> 4)]));
        out.push(char::from(b"0123456789abcdef"[usize::from(byte & 15)]));
    }
    out
}
