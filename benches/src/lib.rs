//! Criterion benches of the edge SDK, each next to the peer crate users would otherwise pick.
//!
//! The convention every bench follows: one criterion group per question, the SDK's implementation and each
//! peer as functions of that group, on the same inputs, in the same run, so the ratio is read straight off
//! the report. Run them with `cargo bench -p edge-benches` (all) or `cargo bench -p edge-benches --bench kv`.
//!
//! | bench | our side | peers |
//! |---|---|---|
//! | `kv` | `edge_kv::MemoryKv` get / put | `quick_cache::sync::Cache`, `dashmap::DashMap` |
//! | `coalesce` | `edge_core::Coalescer` | `singleflight-async`, a bare `futures::future::Shared` |
//! | `redis` | `edge_kv::redis::RedisKv` get | a bare `GET` with the same client (redis-rs `ConnectionManager`), on a local `redis-server` |
//! | `flags` | `edge_kv::flags::FlagSet::evaluate` (rule, rollout, default paths) | — (ns/op) |
