//! Test support (feature `testing`): the conformance kits every store implementation must pass, a
//! scriptable [`TestFetcher`], and (with `tower`) `CountClones`, the inner service that proves a layer's
//! fast path clones nothing.
//!
//! A backend is done when its own tests run the whole kit for its contract:
//!
//! ```
//! # #[cfg(any())] mod hidden {
//! #[tokio::test]
//! async fn memory_kv_conforms() {
//!     edge_core::testing::kv::run_all(|clock| edge_kv::MemoryKv::builder().clock(clock).build()).await;
//! }
//! # }
//! ```
//!
//! Each kit function builds a fresh store per case from the factory, handing it a fresh
//! [`ManualClock`](crate::ManualClock), so expiry is tested by moving time forward rather than by sleeping.
//! The kits are runtime-agnostic (no spawning), panic with a description on the first failure, like
//! `assert!`, and are meant for test code only.

pub mod cache;
#[cfg(feature = "tower")]
mod clones;
pub mod durable;
mod fetcher;
pub mod kv;

#[cfg(feature = "tower")]
pub use clones::CountClones;
pub use fetcher::{RecordedRequest, Reply, TestFetcher};
