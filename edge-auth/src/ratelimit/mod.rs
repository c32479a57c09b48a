//! Rate limiting, from one process to many servers.
//!
//! | limiter | state lives | exact? | use it for |
//! |---|---|---|---|
//! | [`Limiter`], [`KeyedLimiter`] | this process (GCRA, one atomic per key) | yes, per process | per-instance protection, the first line |
//! | [`KvTokenBucket`] | any [`KvStore`](edge_core::KvStore) (the seeds' token bucket) | no: bounded over-admission across PoPs | coarse abuse limits across an edge network |
//! | `RedisLimiter` (feature `redis`) | Redis, one atomic script per check (GCRA) | yes, across servers | per-account quotas shared by many app servers |
//!
//! Every limiter answers with a [`Decision`]: allowed or not, remaining quota, time to reset and
//! retry-after, ready to become `RateLimit`, `RateLimit-Policy` and `Retry-After` response fields. Quotas
//! that make no sense (zero limit, zero period) cannot be built: see [`Quota`].

mod decision;
pub mod gcra;
mod kv_bucket;
mod memory;
mod quota;

pub use decision::{Decision, RATELIMIT, RATELIMIT_POLICY};
pub use kv_bucket::{KvTokenBucket, KvTokenBucketBuilder, OnStoreError};
pub use memory::{KeyedLimiter, Limiter};
pub use quota::{Quota, QuotaError};
