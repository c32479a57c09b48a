//! Rate limiting through the public API: the KV token bucket across PoPs, the layer, and the Redis
//! limiters against a real `redis-server`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod kv_bucket;
#[cfg(feature = "tower")]
mod layer;
#[cfg(all(feature = "redis", not(target_arch = "wasm32")))]
mod redis;
