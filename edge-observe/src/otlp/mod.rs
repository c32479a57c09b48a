//! OTLP/HTTP export of spans and metrics through any [`Fetcher`](edge_core::Fetcher): the same code on
//! tokio and in a Worker.
//!
//! [`OtlpExporter`] keeps a bounded queue of ended spans. The request path only [`record`](OtlpExporter::record)s
//! (a lock and a push; a full queue drops the span and counts it); [`flush`](OtlpExporter::flush) is meant
//! to run after the response, handed to [`WaitUntil`](edge_core::WaitUntil), and sends the queue in
//! batches to `{endpoint}/v1/traces`. Metrics go to `{endpoint}/v1/metrics` with
//! [`export_metrics`](OtlpExporter::export_metrics) (cumulative, so a lost export loses nothing).
//!
//! Both OTLP encodings are written: protobuf (`application/x-protobuf`, the default) and JSON
//! (`application/json`). Neither needs a generated-code dependency, so the exporter builds for
//! `wasm32-unknown-unknown`; the tests decode both with `opentelemetry-proto`'s types.
//!
//! Failures follow the OTLP/HTTP specification: a refused or failed connection, a timeout, and
//! `429`/`502`/`503`/`504` are retried with exponential backoff (honouring `Retry-After` in seconds), up to
//! [`max_attempts`](OtlpExporterBuilder::max_attempts); any other status drops the batch. Nothing the
//! collector does reaches a request: a collector that is down or slow costs dropped spans, counted in
//! [`ExportStats`], and a queue that never grows past its bound.
//!
//! ```
//! use std::time::Duration;
//! use edge_core::testing::{Reply, TestFetcher};
//! use edge_core::trace::{Sampler, Span, SpanKind, SplitMix, TraceContext};
//! use edge_core::ManualClock;
//! use edge_observe::otlp::{Encoding, OtlpExporter};
//!
//! # futures::executor::block_on(async {
//! let collector = TestFetcher::new();
//! collector.route("/v1/traces", Reply::ok(""));
//! let clock = ManualClock::new();
//! let exporter = OtlpExporter::builder(collector.clone(), "http://collector.internal:4318", clock.clone())
//!     .unwrap()
//!     .service_name("edge-gateway")
//!     .encoding(Encoding::Json)
//!     .build();
//!
//! let context = TraceContext::from_request(&http::HeaderMap::new(), &SplitMix::new(1), &Sampler::AlwaysOn);
//! let mut span = Span::start("GET /", SpanKind::Server, context, &clock);
//! span.end(&clock);
//! exporter.record(span);
//! exporter.flush().await; // in a host: wait_until.wait_until(exporter.flush())
//! assert_eq!(exporter.stats().exported, 1);
//! assert_eq!(collector.hits("/v1/traces"), 1);
//! # });
//! ```

mod exporter;
mod json;
mod proto;

use std::borrow::Cow;

use edge_core::trace::Value;

pub use self::exporter::{ExportStats, OtlpExporter, OtlpExporterBuilder};

/// The instrumentation scope spans and metrics are reported under.
pub const SCOPE_NAME: &str = "edge";
/// The scope's version: this crate's.
pub const SCOPE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// How requests to the collector are encoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Encoding {
    /// `application/x-protobuf` (every collector takes it; the smaller one).
    #[default]
    Protobuf,
    /// `application/json` (OTLP's JSON mapping).
    Json,
}

impl Encoding {
    /// The `Content-Type` of this encoding.
    #[must_use]
    pub const fn content_type(self) -> &'static str {
        match self {
            Self::Protobuf => "application/x-protobuf",
            Self::Json => "application/json",
        }
    }
}

/// The entity that produces the telemetry: `service.name` and any other resource attributes.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Resource {
    /// Its attributes, `service.name` first.
    pub attributes: Vec<(Cow<'static, str>, Value)>,
}

impl Resource {
    /// A resource named `service_name`.
    pub fn new(service_name: impl Into<Cow<'static, str>>) -> Self {
        Self {
            attributes: vec![("service.name".into(), Value::Str(service_name.into()))],
        }
    }

    /// Sets an attribute (replacing one of the same key).
    #[must_use]
    pub fn with(mut self, key: impl Into<Cow<'static, str>>, value: impl Into<Value>) -> Self {
        let key = key.into();
        let value = value.into();
        match self.attributes.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.attributes.push((key, value)),
        }
        self
    }
}

impl Default for Resource {
    /// `service.name = "edge"`.
    fn default() -> Self {
        Self::new("edge")
    }
}

/// The encoded body of an `ExportTraceServiceRequest` for `spans` (for hosts that send it themselves).
#[must_use]
pub fn encode_spans(
    encoding: Encoding,
    resource: &Resource,
    spans: &[edge_core::trace::Span],
) -> Vec<u8> {
    match encoding {
        Encoding::Protobuf => proto::encode_spans(resource, spans),
        Encoding::Json => json::encode_spans(resource, spans),
    }
}

/// The encoded body of an `ExportMetricsServiceRequest` for `families`, cumulative from `start` to `now`.
#[must_use]
pub fn encode_metrics(
    encoding: Encoding,
    resource: &Resource,
    families: &[crate::metrics::FamilySnapshot],
    start: std::time::SystemTime,
    now: std::time::SystemTime,
) -> Vec<u8> {
    match encoding {
        Encoding::Protobuf => proto::encode_metrics(resource, families, start, now),
        Encoding::Json => json::encode_metrics(resource, families, start, now),
    }
}
