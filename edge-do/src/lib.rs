//! Durable objects: one live instance per id, requests to it handled one at a time, with transactional
//! storage of its own.
//!
//! Objects are written against [`edge_core::durable`]'s contracts ([`DurableObject`](edge_core::durable::DurableObject),
//! [`Storage`](edge_core::durable::Storage), [`SocketHub`](edge_core::durable::SocketHub),
//! [`ObjectNamespace`](edge_core::durable::ObjectNamespace)), so the same code runs here and, through the
//! workers bridge, on Cloudflare.
//!
//! | module | what it holds |
//! |---|---|
//! | [`runtime`] | [`Namespace`]: ids, one instance per id, turns (input gate, panics, time limit, callers that go away), eviction, alarms, placement |
//! | `orphans` | turns whose caller went away, carried to their end by the host's `WaitUntil` or the object's next caller |
//! | [`storage`] | [`ObjectStorage`]: per-turn write buffer, [`Transaction`]s within a turn, group commit and the output gate, over any `Storage` |
//! | [`sockets`] | [`Sockets`] (an object's `SocketHub`) and [`Session`] (the host's end of a WebSocket) |
//! | [`room`] | [`Room`]: a collaborative room — presence, broadcast, history |
//! | [`memory`] | [`MemoryStorage`]: storage in process memory, for tests |
//! | `sqlite` (feature `sqlite`) | `SqliteStore`: SQLite (bundled, WAL, `synchronous=FULL`), one database per namespace |
//! | `linearizability` (feature `testing`) | a checker for histories of concurrent calls to one object |
//! | `workers` (feature `workers`, wasm32) | the bridge that runs an object as a Cloudflare Durable Object: DO storage, alarms, hibernatable WebSockets, namespace bindings |
//!
//! Hot-key sharding is a contract-level helper ([`Shards`](edge_core::durable::Shards),
//! [`shard_of`](edge_core::durable::shard_of), N = 64 by default) so hosts and Workers agree on it;
//! edge-auth's sharded sliding-window limiter runs its objects on this runtime.
//!
//! # In an axum app
//!
//! A [`Namespace`] is cheap to clone: put it in the app's state and send each request to the object its
//! path names. Requests to one object run one at a time, so the count below is exact however many arrive
//! at once (with `SqliteStore` it also survives a restart).
//!
//! ```
//! # futures::executor::block_on(async {
//! use axum::extract::{Path, State};
//! use axum::{Router, routing::post};
//! use edge_core::durable::{DurableObject, ObjectNamespace, Storage};
//! use edge_core::{Body, Error};
//! use edge_do::{MemoryStorage, MemoryStorageProvider, Namespace, ObjectState};
//! use tower::ServiceExt;
//!
//! struct Counter(ObjectState<MemoryStorage>);
//!
//! impl DurableObject for Counter {
//!     async fn fetch(&self, _request: http::Request<Body>) -> Result<http::Response<Body>, Error> {
//!         let n = self.0.storage.get("n").await?
//!             .and_then(|b| String::from_utf8_lossy(&b).parse::<u64>().ok())
//!             .unwrap_or(0) + 1;
//!         self.0.storage.put("n", n.to_string().into()).await?;
//!         Ok(http::Response::new(Body::from(n.to_string())))
//!     }
//! }
//!
//! type Counters = Namespace<Counter, MemoryStorageProvider>;
//!
//! async fn hit(State(counters): State<Counters>, Path(name): Path<String>) -> Result<http::Response<Body>, http::StatusCode> {
//!     let id = counters.id_from_name(&name);
//!     counters.fetch(&id, http::Request::new(Body::empty())).await.map_err(|_| http::StatusCode::SERVICE_UNAVAILABLE)
//! }
//!
//! let counters = Namespace::new(MemoryStorageProvider::new(), Counter);
//! let app = Router::new().route("/counters/{name}", post(hit)).with_state(counters);
//! let post = || http::Request::post("/counters/home").body(axum::body::Body::empty()).unwrap();
//! app.clone().oneshot(post()).await?;
//! let second = app.oneshot(post()).await?;
//! assert_eq!(http_body_util::BodyExt::collect(second.into_body()).await?.to_bytes(), "2");
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod linearizability;
pub mod memory;
mod orphans;
pub mod room;
pub mod runtime;
pub mod sockets;
#[cfg(all(feature = "sqlite", not(target_arch = "wasm32")))]
pub mod sqlite;
pub mod storage;
#[cfg(all(feature = "workers", target_arch = "wasm32"))]
#[cfg_attr(docsrs, doc(cfg(feature = "workers")))]
pub mod workers;

pub use memory::{MemoryStorage, MemoryStorageProvider};
pub use room::Room;
pub use runtime::{
    AlarmRecord, AlarmRetry, AlarmRun, Namespace, ObjectState, Placement, StorageProvider,
};
pub use sockets::{Outgoing, Session, Sockets};
#[cfg(all(feature = "sqlite", not(target_arch = "wasm32")))]
pub use sqlite::{SqliteStorage, SqliteStore};
pub use storage::{ObjectStorage, Transaction};
