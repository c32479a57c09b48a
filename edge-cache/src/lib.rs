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
//!
//! # In an axum app
//!
//! `CacheLayer` goes on the routes whose answers may be shared (`route_layer`), behind authentication;
//! hits answer with their stored length.
//!
//! ```
//! # #[cfg(feature = "tower")]
//! # futures::executor::block_on(async {
//! use axum::{Router, routing::get};
//! use edge_cache::MemoryCache;
//! use edge_cache::layer::CacheLayer;
//! use edge_core::{SystemClock, wait_until::QueuedWaitUntil};
//! use tower::ServiceExt;
//!
//! let clock = SystemClock::new();
//! let cache = CacheLayer::new(clock, QueuedWaitUntil::new()).memory(MemoryCache::new(32 << 20, clock));
//! let app = Router::new()
//!     .route("/products", get(|| async { ([("cache-control", "public, max-age=60")], "[\"kettle\"]") }))
//!     .route_layer(cache);
//!
//! let get = || http::Request::get("http://shop.example/products").body(axum::body::Body::empty()).unwrap();
//! assert_eq!(app.clone().oneshot(get()).await?.headers()["x-cache-status"], "MISS");
//! let hit = app.oneshot(get()).await?;
//! assert_eq!(hit.headers()["x-cache-status"], "HIT");
//! assert_eq!(hit.headers()["content-length"], "10");
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
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
pub use tiered::{TieredCache, TieredCacheBuilder};
