//! Key-value stores implementing [`edge_core::KvStore`].
//!
//! | store | module | consistency | feature |
//! |---|---|---|---|
//! | [`MemoryKv`] | [`memory`] | strong (linearizable per key), one process | default |
//! | [`SimulatedKv`] | [`simulated`] | eventual: many PoPs, replication lag, partitions, on a `ManualClock` | default |
//! | `RedisKv` | `redis` | strong, shared by many app servers | `redis` |
//! | `WorkersKv` | `workers` | eventual (Cloudflare Workers KV; wasm32 only) | `workers` |
//!
//! A user who outgrows one process swaps the constructor, not the code: everything is written against
//! `KvStore`, and every store passes the same conformance kit (`edge_core::testing::kv`).
//!
//! ```
//! use bytes::Bytes;
//! use edge_core::{KvStore, kv::PutOptions};
//! use edge_kv::MemoryKv;
//!
//! # futures::executor::block_on(async {
//! let kv = MemoryKv::new();
//! kv.put("flag:new-checkout", Bytes::from_static(b"on"), PutOptions::new()).await?;
//! assert_eq!(kv.get("flag:new-checkout").await?, Some(Bytes::from_static(b"on")));
//! # Ok::<_, edge_core::Error>(()) }).unwrap();
//! ```
//!
//! # In an axum app
//!
//! A store is cheap to clone: put it in the app's state, and swap `MemoryKv` for `RedisKv` when the app
//! runs on more than one server.
//!
//! ```
//! # futures::executor::block_on(async {
//! use axum::extract::{Path, State};
//! use axum::{Router, routing::get};
//! use bytes::Bytes;
//! use edge_core::{KvStore, kv::PutOptions};
//! use edge_kv::MemoryKv;
//! use tower::ServiceExt;
//!
//! async fn flag(State(kv): State<MemoryKv>, Path(name): Path<String>) -> String {
//!     match kv.get(&format!("flag:{name}")).await {
//!         Ok(Some(value)) => String::from_utf8_lossy(&value).into_owned(),
//!         _ => "off".to_owned(),
//!     }
//! }
//!
//! let kv = MemoryKv::new();
//! kv.put("flag:new-checkout", Bytes::from_static(b"on"), PutOptions::new()).await?;
//! let app = Router::new().route("/flags/{name}", get(flag)).with_state(kv);
//! let response = app.oneshot(http::Request::get("/flags/new-checkout").body(axum::body::Body::empty())?).await?;
//! assert_eq!(http_body_util::BodyExt::collect(response.into_body()).await?.to_bytes(), "on");
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! # MSRV
//!
//! Rust 1.85 (edition 2024).
#![cfg_attr(docsrs, feature(doc_cfg))]

mod cursor;
pub mod flags;
pub mod memory;
pub mod patterns;
#[cfg(all(feature = "redis", not(target_arch = "wasm32")))]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;
pub mod simulated;
#[cfg(all(feature = "testing", not(target_arch = "wasm32")))]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
#[cfg(all(feature = "workers", target_arch = "wasm32"))]
#[cfg_attr(docsrs, doc(cfg(feature = "workers")))]
pub mod workers;

pub use memory::{MemoryKv, MemoryKvBuilder};
pub use simulated::{LinkLatency, PartitionMode, SimPop, SimulatedKv, SimulatedKvBuilder};

/// The examples in the repository's README, run as doc tests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
