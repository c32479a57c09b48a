//! The OTLP encoders against the reference types (`opentelemetry-proto`, generated from the .proto files),
//! and the exporter's queue, batches, retries and timeouts on a manual clock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use edge_core::testing::{Reply, TestFetcher};
use edge_core::trace::{Sampler, Span, SpanKind, SplitMix, Status, TraceContext, TraceState};
use edge_core::{Clock, ErrorKind, ManualClock};
use edge_observe::Registry;
use edge_observe::otlp::{Encoding, OtlpExporter, Resource, encode_metrics, encode_spans};
use http::{HeaderMap, HeaderValue, StatusCode};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value as Number;
use proptest::prelude::*;
use prost::Message;

fn sample_span(clock: &ManualClock) -> Span {
    let mut headers = HeaderMap::new();
    headers.insert(
        "traceparent",
        HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    );
    headers.insert(
        "tracestate",
        HeaderValue::from_static("rojo=00f067aa0ba902b7"),
    );
    let context = TraceContext::from_request(&headers, &SplitMix::new(3), &Sampler::AlwaysOn);
    let mut span = Span::start("GET /api/products", SpanKind::Server, context, clock);
    span.set("http.request.method", "GET");
    span.set("http.response.status_code", 503_i64);
    span.set("edge.cache.hit", false);
    span.set("edge.ratio", 0.25);
    span.set("empty", "");
    span.event("origin.first_byte", clock);
    clock.advance(Duration::from_millis(42));
    span.set_status(Status::Error("origin failed".into()));
    span.end(clock);
    span
}

fn decode_traces(encoding: Encoding, body: &[u8]) -> ExportTraceServiceRequest {
    match encoding {
        Encoding::Protobuf => ExportTraceServiceRequest::decode(body).unwrap(),
        _ => serde_json::from_slice(body).unwrap(),
    }
}

#[test]
fn spans_decode_with_the_reference_types_in_both_encodings() {
    let clock = ManualClock::new();
    clock.set_wall_time(std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    let span = sample_span(&clock);
    let resource = Resource::new("edge-gateway").with("deployment.environment", "test");
    let proto = decode_traces(
        Encoding::Protobuf,
        &encode_spans(Encoding::Protobuf, &resource, std::slice::from_ref(&span)),
    );
    let json = decode_traces(
        Encoding::Json,
        &encode_spans(Encoding::Json, &resource, std::slice::from_ref(&span)),
    );
    assert_eq!(proto, json, "the two encodings carry the same request");

    let rs = &proto.resource_spans[0];
    let attrs = &rs.resource.as_ref().unwrap().attributes;
    assert_eq!(attrs[0].key, "service.name");
    assert_eq!(
        attrs[0].value.as_ref().unwrap().value,
        Some(AnyValue::StringValue("edge-gateway".into()))
    );
    let scope = &rs.scope_spans[0];
    assert_eq!(scope.scope.as_ref().unwrap().name, "edge");
    let s = &scope.spans[0];
    assert_eq!(hex(&s.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(hex(&s.parent_span_id), "00f067aa0ba902b7");
    assert_eq!(s.span_id, span.context.span_id.to_bytes());
    assert_eq!(s.trace_state, "rojo=00f067aa0ba902b7");
    assert_eq!(s.name, "GET /api/products");
    assert_eq!(s.kind, 2, "server");
    assert_eq!(s.flags, 1, "sampled");
    assert_eq!(s.start_time_unix_nano, 1_700_000_000_000_000_000);
    assert_eq!(s.end_time_unix_nano - s.start_time_unix_nano, 42_000_000);
    let value = |key: &str| {
        s.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.clone())
            .and_then(|v| v.value)
    };
    assert_eq!(
        value("http.request.method"),
        Some(AnyValue::StringValue("GET".into()))
    );
    assert_eq!(
        value("http.response.status_code"),
        Some(AnyValue::IntValue(503))
    );
    assert_eq!(value("edge.cache.hit"), Some(AnyValue::BoolValue(false)));
    assert_eq!(value("edge.ratio"), Some(AnyValue::DoubleValue(0.25)));
    assert_eq!(value("empty"), Some(AnyValue::StringValue(String::new())));
    assert_eq!(s.events[0].name, "origin.first_byte");
    let status = s.status.as_ref().unwrap();
    assert_eq!((status.code, status.message.as_str()), (2, "origin failed"));
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn metrics_decode_with_the_reference_types_in_both_encodings() {
    let registry = Registry::new();
    registry
        .counter(
            "edge_requests_total",
            "Requests.",
            &["status_class", "cache"],
        )
        .with(&["2xx", "HIT"])
        .add(7);
    registry
        .gauge("edge_in_flight", "In flight.", &[])
        .with(&[])
        .set(-2);
    let latency = registry.histogram("edge_request_duration_seconds", "Latency.", &["colo"]);
    for ms in [5, 30, 30, 20_000] {
        latency.with(&["FRA"]).observe(Duration::from_millis(ms));
    }
    let start = std::time::UNIX_EPOCH + Duration::from_secs(100);
    let now = start + Duration::from_secs(60);
    let resource = Resource::default();
    let snapshot = registry.snapshot();
    let proto = ExportMetricsServiceRequest::decode(&*encode_metrics(
        Encoding::Protobuf,
        &resource,
        &snapshot,
        start,
        now,
    ))
    .unwrap();
    let json: ExportMetricsServiceRequest = serde_json::from_slice(&encode_metrics(
        Encoding::Json,
        &resource,
        &snapshot,
        start,
        now,
    ))
    .unwrap();
    assert_eq!(proto, json, "the two encodings carry the same request");

    let metrics = &proto.resource_metrics[0].scope_metrics[0].metrics;
    assert_eq!(metrics.len(), 3);
    let Some(Data::Sum(sum)) = &metrics[0].data else {
        panic!("{:?}", metrics[0])
    };
    assert!(sum.is_monotonic);
    assert_eq!(sum.aggregation_temporality, 2, "cumulative");
    let point = &sum.data_points[0];
    assert_eq!(point.value, Some(Number::AsInt(7)));
    assert_eq!(point.attributes.len(), 2);
    assert_eq!(point.start_time_unix_nano, 100_000_000_000);
    assert_eq!(point.time_unix_nano, 160_000_000_000);
    let Some(Data::Gauge(gauge)) = &metrics[1].data else {
        panic!()
    };
    assert_eq!(gauge.data_points[0].value, Some(Number::AsInt(-2)));
    let Some(Data::Histogram(histogram)) = &metrics[2].data else {
        panic!()
    };
    assert_eq!(metrics[2].unit, "s");
    let point = &histogram.data_points[0];
    assert_eq!(point.count, 4);
    assert_eq!(point.explicit_bounds.len(), 10);
    assert_eq!(point.explicit_bounds[0], 0.01);
    assert_eq!(point.bucket_counts.len(), 11);
    assert_eq!(point.bucket_counts[0], 1, "5 ms");
    assert_eq!(point.bucket_counts[2], 2, "30 ms, under 50 ms");
    assert_eq!(point.bucket_counts[10], 1, "20 s, past the last bound");
    assert!((point.sum.unwrap() - 20.065).abs() < 1e-9);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Any attribute text and numbers encode to what the reference decoder reads back, the same in both
    /// encodings (escaping, UTF-8, negative and extreme integers, signed zero).
    #[test]
    fn any_attributes_round_trip(
        name in ".{0,40}",
        key in "[a-z.]{1,20}",
        text in any::<String>(),
        n in any::<i64>(),
        x in -1e300f64..1e300,
    ) {
        let clock = ManualClock::new();
        let context = TraceContext::from_request(&HeaderMap::new(), &SplitMix::new(9), &Sampler::AlwaysOn);
        let mut span = Span::start(name.clone(), SpanKind::Client, context, &clock);
        span.set(format!("{key}.s"), text.clone());
        span.set(format!("{key}.i"), n);
        span.set(format!("{key}.f"), x);
        span.end(&clock);
        let resource = Resource::default();
        let proto = decode_traces(Encoding::Protobuf, &encode_spans(Encoding::Protobuf, &resource, std::slice::from_ref(&span)));
        let json = decode_traces(Encoding::Json, &encode_spans(Encoding::Json, &resource, std::slice::from_ref(&span)));
        prop_assert_eq!(&proto, &json);
        let s = &proto.resource_spans[0].scope_spans[0].spans[0];
        prop_assert_eq!(&s.name, &name);
        prop_assert_eq!(s.kind, 3);
        let values: Vec<_> = s.attributes.iter().map(|kv| kv.value.clone().unwrap().value.unwrap()).collect();
        let cut = edge_core::trace::MAX_VALUE_LEN;
        let mut end = text.len().min(cut);
        while !text.is_char_boundary(end) { end -= 1; }
        prop_assert_eq!(&values[0], &AnyValue::StringValue(text[..end].to_owned()));
        prop_assert_eq!(&values[1], &AnyValue::IntValue(n));
        prop_assert_eq!(&values[2], &AnyValue::DoubleValue(x));
    }
}

/// A state that cannot be encoded changes nothing: an empty `tracestate` is left out.
#[test]
fn an_empty_trace_state_is_left_out() {
    let clock = ManualClock::new();
    let mut context =
        TraceContext::from_request(&HeaderMap::new(), &SplitMix::new(1), &Sampler::AlwaysOn);
    context.state = TraceState::default();
    let mut span = Span::start("x", SpanKind::Internal, context, &clock);
    span.end(&clock);
    let decoded = decode_traces(
        Encoding::Protobuf,
        &encode_spans(Encoding::Protobuf, &Resource::default(), &[span]),
    );
    assert_eq!(
        decoded.resource_spans[0].scope_spans[0].spans[0].trace_state,
        ""
    );
}

// ---- the exporter -------------------------------------------------------------------------------------

fn ended(clock: &ManualClock, seed: u64) -> Span {
    let context =
        TraceContext::from_request(&HeaderMap::new(), &SplitMix::new(seed), &Sampler::AlwaysOn);
    let mut span = Span::start("op", SpanKind::Internal, context, clock);
    span.end(clock);
    span
}

fn exporter(collector: &TestFetcher, clock: &ManualClock) -> OtlpExporter<TestFetcher> {
    OtlpExporter::builder(
        collector.clone(),
        "http://collector.test:4318/",
        clock.clone(),
    )
    .unwrap()
    .backoff(Duration::from_millis(100), Duration::from_secs(1))
    .timeout(Duration::from_secs(2))
    .max_attempts(3)
    .build()
}

/// Drives `flush` on a manual clock: yields to it, then moves time forward, until it is done.
async fn drive(clock: &ManualClock, flush: impl Future<Output = ()> + Send + 'static) -> Duration {
    let start = clock.now();
    let task = tokio::spawn(flush);
    while !task.is_finished() {
        for _ in 0..8 {
            tokio::task::yield_now().await;
        }
        if !task.is_finished() {
            clock.advance(Duration::from_millis(50));
        }
    }
    task.await.unwrap();
    clock.now().duration_since(start)
}

#[tokio::test]
async fn batches_go_to_v1_traces_with_the_content_type() {
    let clock = ManualClock::new();
    let collector = TestFetcher::new().with_clock(clock.clone());
    collector.route("/otlp/v1/traces", Reply::ok(""));
    let exporter = OtlpExporter::builder(
        collector.clone(),
        "https://collector.test/otlp",
        clock.clone(),
    )
    .unwrap()
    .max_batch(2)
    .header(
        http::header::AUTHORIZATION,
        HeaderValue::from_static("Bearer k"),
    )
    .build();
    exporter.record_all((0..5).map(|i| ended(&clock, i)));
    exporter.flush().await;
    assert_eq!(exporter.stats().exported, 5);
    assert_eq!(exporter.queued(), 0);
    let requests = collector.requests();
    assert_eq!(requests.len(), 3, "batches of 2, 2 and 1");
    assert_eq!(requests[0].uri, "https://collector.test/otlp/v1/traces");
    assert_eq!(requests[0].method, http::Method::POST);
    assert_eq!(
        requests[0].headers["content-type"],
        "application/x-protobuf"
    );
    assert_eq!(requests[0].headers["authorization"], "Bearer k");
}

#[tokio::test]
async fn retryable_answers_are_retried_with_backoff() {
    let clock = ManualClock::new();
    let collector = TestFetcher::new().with_clock(clock.clone());
    collector.enqueue("/v1/traces", Reply::status(StatusCode::SERVICE_UNAVAILABLE));
    collector.enqueue("/v1/traces", Reply::fail(ErrorKind::Unavailable));
    collector.route("/v1/traces", Reply::ok(""));
    let exporter = exporter(&collector, &clock);
    exporter.record(ended(&clock, 1));
    let waited = drive(&clock, exporter.flush()).await;
    assert_eq!(collector.hits("/v1/traces"), 3);
    assert_eq!(exporter.stats().exported, 1);
    assert_eq!(exporter.stats().retries, 2);
    assert!(
        waited >= Duration::from_millis(300),
        "100 ms, then 200 ms: {waited:?}"
    );
}

#[tokio::test]
async fn retry_after_is_honoured_up_to_the_cap() {
    let clock = ManualClock::new();
    let collector = TestFetcher::new().with_clock(clock.clone());
    collector.enqueue(
        "/v1/traces",
        Reply::status(StatusCode::TOO_MANY_REQUESTS).with_header(http::header::RETRY_AFTER, "30"),
    );
    collector.route("/v1/traces", Reply::ok(""));
    let exporter = exporter(&collector, &clock);
    exporter.record(ended(&clock, 1));
    let waited = drive(&clock, exporter.flush()).await;
    assert_eq!(exporter.stats().exported, 1);
    assert!(
        waited >= Duration::from_secs(1),
        "capped at the max backoff: {waited:?}"
    );
    assert!(waited < Duration::from_secs(2), "{waited:?}");
}

#[tokio::test]
async fn a_refusal_drops_the_batch_without_retrying() {
    let clock = ManualClock::new();
    let collector = TestFetcher::new().with_clock(clock.clone());
    collector.route("/v1/traces", Reply::status(StatusCode::BAD_REQUEST));
    let exporter = exporter(&collector, &clock);
    exporter.record_all([ended(&clock, 1), ended(&clock, 2)]);
    exporter.flush().await;
    assert_eq!(collector.hits("/v1/traces"), 1);
    assert_eq!(exporter.stats().dropped_failed, 2);
    assert_eq!(exporter.stats().exported, 0);
}

#[tokio::test]
async fn a_collector_that_is_down_costs_the_batch_after_the_attempts() {
    let clock = ManualClock::new();
    let collector = TestFetcher::new().with_clock(clock.clone());
    collector.route("/v1/traces", Reply::fail(ErrorKind::Unavailable));
    let exporter = exporter(&collector, &clock);
    exporter.record(ended(&clock, 1));
    drive(&clock, exporter.flush()).await;
    assert_eq!(collector.hits("/v1/traces"), 3, "max_attempts");
    assert_eq!(exporter.stats().dropped_failed, 1);
}

#[tokio::test]
async fn a_slow_collector_times_out_and_flushes_do_not_pile_up() {
    let clock = ManualClock::new();
    let collector = TestFetcher::new().with_clock(clock.clone());
    collector.route(
        "/v1/traces",
        Reply::ok("").with_latency(Duration::from_secs(60)),
    );
    let exporter = exporter(&collector, &clock);
    exporter.record(ended(&clock, 1));
    let first = tokio::spawn(exporter.flush());
    tokio::task::yield_now().await;
    // While one flush waits on the collector, the next request's flush returns at once.
    exporter.record(ended(&clock, 2));
    exporter.flush().await;
    assert_eq!(collector.hits("/v1/traces"), 1);
    let waited = drive(&clock, async move { first.await.unwrap() }).await;
    // Three attempts of 2 s each, with 100 + 200 ms between them; the second span was sent by the
    // running flush (it failed the same way).
    assert!(waited >= Duration::from_millis(6300), "{waited:?}");
    assert_eq!(exporter.stats().dropped_failed, 2);
    assert_eq!(exporter.queued(), 0);
}

#[tokio::test]
async fn a_full_queue_drops_and_counts() {
    let clock = ManualClock::new();
    let collector = TestFetcher::new().with_clock(clock.clone());
    collector.route("/v1/traces", Reply::ok(""));
    let exporter = OtlpExporter::builder(collector.clone(), "http://c:4318", clock.clone())
        .unwrap()
        .max_queue(3)
        .build();
    exporter.record_all((0..10).map(|i| ended(&clock, i)));
    assert_eq!(exporter.queued(), 3);
    assert_eq!(exporter.stats().dropped_queue_full, 7);
    exporter.flush().await;
    assert_eq!(exporter.stats().exported, 3);
}

#[tokio::test]
async fn a_cancelled_flush_does_not_stop_later_ones() {
    let clock = ManualClock::new();
    let collector = TestFetcher::new().with_clock(clock.clone());
    collector.enqueue(
        "/v1/traces",
        Reply::ok("").with_latency(Duration::from_secs(60)),
    );
    collector.route("/v1/traces", Reply::ok(""));
    let exporter = exporter(&collector, &clock);
    exporter.record(ended(&clock, 1));
    let stuck = tokio::spawn(exporter.flush());
    tokio::task::yield_now().await;
    stuck.abort();
    let _ = stuck.await;
    exporter.record(ended(&clock, 2));
    exporter.flush().await;
    assert_eq!(exporter.stats().exported, 1);
}

#[tokio::test]
async fn metrics_go_to_v1_metrics() {
    let clock = ManualClock::new();
    let collector = TestFetcher::new().with_clock(clock.clone());
    collector.route("/v1/metrics", Reply::ok(""));
    let exporter = OtlpExporter::builder(collector.clone(), "http://c:4318", clock.clone())
        .unwrap()
        .encoding(Encoding::Json)
        .build();
    let registry = Registry::new();
    registry.counter("c", "C.", &[]).with(&[]).inc();
    exporter.export_metrics(&registry).await.unwrap();
    assert_eq!(exporter.stats().metric_exports, 1);
    assert_eq!(
        collector.requests()[0].headers["content-type"],
        "application/json"
    );
}

#[test]
fn endpoints_that_are_not_absolute_http_urls_are_refused() {
    let clock = ManualClock::new();
    for bad in [
        "collector:4318",
        "/v1/traces",
        "ftp://c/",
        "http://c/?x=1",
        "not a url",
        "",
    ] {
        let error = OtlpExporter::builder(TestFetcher::new(), bad, clock.clone()).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidInput, "{bad}");
    }
}
