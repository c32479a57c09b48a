//! Trace context: `traceparent` parse and format, `tracestate` parse, a context from request headers,
//! a span start → attributes → end on the host clock; and a latency histogram record.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use edge_core::SystemClock;
use edge_core::trace::{Sampler, Span, SpanKind, SplitMix, TraceContext, TraceParent, TraceState};
use http::{HeaderMap, HeaderValue};

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn trace(c: &mut Criterion) {
    let mut group = c.benchmark_group("trace");
    group.bench_function("traceparent parse", |b| {
        b.iter(|| black_box(TraceParent::parse(black_box(TRACEPARENT))))
    });
    let parent = TraceParent::parse(TRACEPARENT).unwrap();
    group.bench_function("traceparent format (encode)", |b| {
        b.iter(|| black_box(black_box(&parent).encode()))
    });
    group.bench_function("tracestate parse (2 members)", |b| {
        b.iter(|| {
            black_box(TraceState::parse([black_box(
                "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7",
            )]))
        })
    });
    let mut headers = HeaderMap::new();
    headers.insert("traceparent", HeaderValue::from_static(TRACEPARENT));
    let ids = SplitMix::new(42);
    let sampler = Sampler::ParentBased(Box::new(Sampler::Ratio(0.1)));
    group.bench_function("context from request headers", |b| {
        b.iter(|| {
            black_box(TraceContext::from_request(
                black_box(&headers),
                &ids,
                &sampler,
            ))
        })
    });
    let clock = SystemClock::new();
    let context = TraceContext::from_request(&headers, &ids, &sampler);
    group.bench_function("span start, 3 attributes, end", |b| {
        b.iter(|| {
            let mut span = Span::start(
                "GET /api/products",
                SpanKind::Server,
                context.clone(),
                &clock,
            );
            span.set("http.request.method", "GET");
            span.set("http.route", "/api/products");
            span.set("http.response.status_code", 200u16);
            span.end(&clock);
            black_box(span)
        })
    });
    let registry = edge_observe::Registry::new();
    let latency = registry.histogram(
        "edge_request_duration_seconds",
        "Latency.",
        &["route", "status_class"],
    );
    let series = latency.with(&["/api/products", "2xx"]);
    group.bench_function("histogram record (held series)", |b| {
        b.iter(|| series.observe(black_box(std::time::Duration::from_millis(42))))
    });
    group.bench_function("histogram record (series looked up by labels)", |b| {
        b.iter(|| {
            latency
                .with(black_box(&["/api/products", "2xx"]))
                .observe(std::time::Duration::from_millis(42))
        })
    });
    group.finish();
}

criterion_group!(benches, trace);
criterion_main!(benches);
