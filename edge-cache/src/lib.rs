//! HTTP caching at the edge, over `edge-core`'s [`CacheStore`](edge_core::CacheStore) and
//! [`Coalescer`](edge_core::Coalescer).
//!
//! | module | what it decides or does |
//! |---|---|
//! | [`directives`] | `Cache-Control`, `CDN-Cache-Control`, `Surrogate-Control` parsed without allocating |
//! | [`memory`] | [`MemoryCache`]: the bounded in-memory store (quick_cache, purge by tag), wasm32 too |
//! | [`tiered`] | [`TieredCache`]: memory → store → KV → shield → origin, coalesced fills, jitter, SWR in the background, stale-if-error, negative caching |
//! | `layer` (feature `tower`) | `CacheLayer`: the tiered cache in front of any tower service, with a purge endpoint |
//! | [`codec`] | a stored response as bytes (for KV), decoded strictly |
//! | `workers` (feature `workers`, wasm32) | `WorkersCache`: the Workers Cache API as a `CacheStore` |
//! | [`presets`] | the named policies (static-immutable … html-dynamic) as data, and their headers |
//! | [`policy`] | RFC 9111 storability and freshness for a shared cache, RFC 5861 `stale-while-revalidate` / `stale-if-error`, targeted fields (RFC 9213), validation, `Age`, invalidation |
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod codec;
pub mod directives;
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub mod layer;
pub mod memory;
pub mod policy;
pub mod presets;
pub mod tiered;
#[cfg(all(feature = "workers", target_arch = "wasm32"))]
#[cfg_attr(docsrs, doc(cfg(feature = "workers")))]
pub mod workers;

pub use directives::Directives;
pub use memory::MemoryCache;
pub use policy::{CachePolicy, Lookup, NotStored, Revalidation, Stored};
pub use tiered::TieredCache;
