//! Observability at the edge, over `edge-core`'s trace contract.
//!
//! | module | what it holds |
//! |---|---|
//! | [`metrics`] | counters, gauges and latency histograms (the seeds' buckets, 10 ms … 10 s) with bounded label sets, and the Prometheus text exposition |
//! | [`server_timing`] | the `Server-Timing` header of a request's stages |
//!
//! Still to come with the observability issue: OTLP export (JSON and protobuf) through the `Fetcher`,
//! integration with the `tracing` crate, and the tower layer that ties them to requests.

pub mod metrics;
pub mod server_timing;

pub use metrics::{Counter, Gauge, Histogram, Registry};
pub use server_timing::ServerTiming;
