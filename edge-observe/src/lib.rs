//! Observability at the edge, over `edge-core`'s trace contract.
//!
//! | module | what it holds |
//! |---|---|
//! | [`metrics`] | counters, gauges and latency histograms (the seeds' buckets, 10 ms … 10 s) with bounded label sets, and the Prometheus text exposition |
//! | [`server_timing`] | the `Server-Timing` header of a request's stages |
//! | `layer` (feature `tower`) | `MetricsLayer`: request counts and latency by status class and cache status, `Server-Timing`, a `/metrics` endpoint |
//!
//! Still to come with the observability issue: OTLP export (JSON and protobuf) through the `Fetcher`,
//! integration with the `tracing` crate, and spans in the layer.

#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub mod layer;
pub mod metrics;
pub mod otlp;
pub mod propagate;
pub mod routes;
pub mod server_timing;

pub use metrics::{Counter, Gauge, Histogram, Registry};
pub use routes::Routes;
pub use server_timing::ServerTiming;
