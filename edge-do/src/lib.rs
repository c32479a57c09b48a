//! Durable objects: one live instance per id, requests to it handled one at a time, with transactional
//! storage of its own.
//!
//! Objects are written against [`edge_core::durable`]'s contracts ([`DurableObject`](edge_core::durable::DurableObject),
//! [`Storage`](edge_core::durable::Storage), [`ObjectNamespace`](edge_core::durable::ObjectNamespace)), so
//! the same code runs here and, through the workers bridge, on Cloudflare.
//!
//! | module | what it holds | state |
//! |---|---|---|
//! | [`runtime`] | [`Namespace`]: ids, one instance per id, the input gate, eviction | first cut |
//! | [`memory`] | [`MemoryStorage`]: storage in process memory, for tests | built |
//! | `sqlite` (feature `sqlite`) | `SqliteStore`: SQLite (bundled, WAL, `synchronous=FULL`), one database per namespace | built; per-request commit batching with the durable-objects issue |
//! | `alarms` | persisted alarms, at-least-once with backoff | with the durable-objects issue |
//! | `rooms` | WebSocket rooms with broadcast | with the durable-objects issue |
//!
//! Hot-key sharding (`shard_of`, N = 64) lives with its first user, rate limiting, in `edge-auth`.

pub mod memory;
pub mod runtime;
#[cfg(all(feature = "sqlite", not(target_arch = "wasm32")))]
pub mod sqlite;

pub use memory::{MemoryStorage, MemoryStorageProvider};
pub use runtime::{Namespace, ObjectState};
#[cfg(all(feature = "sqlite", not(target_arch = "wasm32")))]
pub use sqlite::{SqliteStorage, SqliteStore};
