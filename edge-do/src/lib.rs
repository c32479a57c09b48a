//! Durable objects: one live instance per id, requests to it handled one at a time, with transactional
//! storage of its own.
//!
//! This crate will own:
//!
//! | module (planned) | what it holds |
//! |---|---|
//! | `runtime` | the in-process runtime: namespaces, ids from names, stubs, input and output gates, eviction |
//! | `storage` | SQLite (bundled) as the durable default and an in-memory store for tests |
//! | `alarms` | persisted alarms, at-least-once with backoff |
//! | `rooms` | WebSocket rooms with broadcast |
//! | `shard` | hot-key sharding over many objects |
//!
//! The `DurableObject` and `Storage` contracts will live in `edge-core`, so the Workers bridge can run the same
//! object code on Cloudflare. Nothing is implemented yet: it lands with its own issue. The crate builds on
//! native targets and on wasm32.
