//! HTTP caching at the edge, over `edge-core`'s [`CacheStore`](edge_core::CacheStore) and
//! [`Coalescer`](edge_core::Coalescer).
//!
//! This crate will own, as sans-IO cores with thin async edges:
//!
//! | module (planned) | what it decides or does |
//! |---|---|
//! | `policy` | RFC 9111 storability and freshness for a shared cache, RFC 5861 `stale-while-revalidate` / `stale-if-error`, `Surrogate-Control` and `CDN-Cache-Control` (RFC 9213), validation and `Age` |
//! | `presets` | the named cache policies (static-immutable, static-versioned, api-public, api-personalized, html-dynamic) as data |
//! | `memory` | the bounded in-memory `CacheStore` (the isolate-memory tier), built for wasm32 too |
//! | `tiered` | the read path L1 → L2 → KV → shield → origin, with coalesced misses and jittered TTLs |
//!
//! Nothing is implemented yet: the HTTP cache lands with its own issue. The crate exists so the workspace
//! has the shape users were promised, and it already builds on native targets and on wasm32.
