//! Admission at the edge: who may pass, and how often.
//!
//! This crate will own, as sans-IO cores with thin async edges:
//!
//! | module (planned) | what it decides or does |
//! |---|---|
//! | `jwt` | compact JWS verification on `ring`, algorithms pinned by the key, strict base64url and JSON, claims with leeway from the injected `Clock` |
//! | `jwk` | JWK / JWK Set parsing, `kid` lookup, RFC 7638 thumbprints, a JWKS provider over any `KvStore` with refresh coalesced through `edge_core::Coalescer` |
//! | `ratelimit` | one decision type for every limiter; GCRA in memory, the seeds' token bucket over `KvStore`, sliding windows and sharded counters in durable objects, IETF `RateLimit` headers |
//! | `waf` | request rules evaluated before anything else |
//!
//! Nothing is implemented yet: each part lands with its own issue. The crate builds on native targets and
//! on wasm32.
