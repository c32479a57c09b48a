//! (feature `tower`) The request's server span: [`TraceLayer`] starts it from the request's `traceparent`,
//! hands it to the layers inside ([`RequestSpan`](edge_core::trace::RequestSpan)), adds their stages to
//! `Server-Timing`, exports it after the response, writes a JSON log line, and (feature `tracing`) enters a
//! `tracing` span so users' subscribers see it.
//!
//! Put [`MetricsLayer`](crate::metrics::MetricsLayer) outside [`TraceLayer`]: the metrics then time
//! everything, the trace included.

pub mod layer;

pub use layer::{LogSink, SpanSink, Trace, TraceLayer};
