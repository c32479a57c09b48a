//! The observability layers' cost on a request: a bare axum handler, then the same answer behind
//! `MetricsLayer` + `TraceLayer` (a span per request from its `traceparent`, the metrics, `Server-Timing`)
//! with the spans exported over OTLP (protobuf) to a collector that answers at once.
//!
//! Two export schedules: in batches (the flush after each response finds a batch under load; here every
//! 256th flush runs and sends what queued up), and one export per request (the worst case: a quiet edge).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::convert::Infallible;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use edge_core::trace::SplitMix;
use edge_core::{Body, Error, Fetcher, ManualClock, MaybeSend, SystemClock, WaitUntil};
use edge_observe::otlp::OtlpExporter;
use edge_observe::{Registry, Routes};
use edge_observe::{metrics::MetricsLayer, trace::TraceLayer};
use futures::FutureExt;
use http::{Request, Response};
use tower::{Layer, Service};

/// A collector that accepts everything at once.
#[derive(Clone)]
struct NullCollector;

impl Fetcher for NullCollector {
    async fn fetch(&self, request: Request<Body>) -> Result<Response<Body>, Error> {
        black_box(request.body().as_bytes().map(Bytes::len));
        Ok(Response::new(Body::empty()))
    }
}

/// Runs one post-response flush in `every` inline (the others would find the queue taken by it).
#[derive(Clone)]
struct EveryNth {
    every: u64,
    seen: std::sync::Arc<AtomicU64>,
}

impl WaitUntil for EveryNth {
    fn wait_until<F>(&self, work: F)
    where
        F: Future<Output = ()> + MaybeSend + 'static,
    {
        if self
            .seen
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(self.every)
        {
            work.now_or_never();
        }
    }
}

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn request() -> Request<Body> {
    Request::builder()
        .uri("https://shop.example/api/products")
        .header("traceparent", TRACEPARENT)
        .header("user-agent", "Mozilla/5.0 (bench)")
        .header("cf-ray", "8f1c2d3e4f5a6b7c-FRA")
        .body(Body::empty())
        .unwrap()
}

fn layered(
    every: u64,
) -> impl Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone {
    let exporter =
        OtlpExporter::builder(NullCollector, "http://collector:4318", ManualClock::new())
            .unwrap()
            .max_queue(4096)
            .build();
    let routes = Routes::new().prefix("/api/products").exact("/");
    let trace = TraceLayer::new(
        SystemClock::new(),
        EveryNth {
            every,
            seen: std::sync::Arc::default(),
        },
        SplitMix::new(1),
    )
    .routes(routes.clone())
    .export_to(exporter);
    let metrics = MetricsLayer::new(Registry::new(), SystemClock::new()).routes(routes);
    metrics.layer(trace.layer(tower::service_fn(page)))
}

static PAGE: [u8; 2048] = [b'x'; 2048];

/// The page every variant answers.
async fn page(_request: Request<Body>) -> Result<Response<Body>, Infallible> {
    Ok(Response::new(Body::from(Bytes::from_static(&PAGE))))
}

fn overhead(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut bare = axum::Router::new().route(
        "/api/products",
        axum::routing::get(|| async { Bytes::from_static(&PAGE) }),
    );
    let axum_request = || {
        Request::builder()
            .uri("https://shop.example/api/products")
            .header("traceparent", TRACEPARENT)
            .header("user-agent", "Mozilla/5.0 (bench)")
            .header("cf-ray", "8f1c2d3e4f5a6b7c-FRA")
            .body(axum::body::Body::empty())
            .unwrap()
    };
    let mut batched = layered(256);
    let mut per_request = layered(1);
    let mut metrics_only = MetricsLayer::new(Registry::new(), SystemClock::new())
        .routes(Routes::new().prefix("/api/products"))
        .layer(tower::service_fn(page));
    let mut trace_only = TraceLayer::new(
        SystemClock::new(),
        EveryNth {
            every: 1,
            seen: std::sync::Arc::default(),
        },
        SplitMix::new(1),
    )
    .routes(Routes::new().prefix("/api/products"))
    .layer(tower::service_fn(page));

    let mut group = c.benchmark_group("observe/request");
    support::bench_service(
        &mut group,
        "bare axum handler",
        &runtime,
        &mut bare,
        axum_request,
    );
    support::bench_service(
        &mut group,
        "trace + metrics layers, OTLP export batched",
        &runtime,
        &mut batched,
        request,
    );
    support::bench_service(
        &mut group,
        "trace + metrics layers, OTLP export per request",
        &runtime,
        &mut per_request,
        request,
    );
    let mut alone = tower::service_fn(page);
    support::bench_service(
        &mut group,
        "the handler alone, as a tower service",
        &runtime,
        &mut alone,
        request,
    );
    support::bench_service(
        &mut group,
        "metrics layer alone",
        &runtime,
        &mut metrics_only,
        request,
    );
    support::bench_service(
        &mut group,
        "trace layer alone, no export",
        &runtime,
        &mut trace_only,
        request,
    );
    group.finish();
}

criterion_group!(benches, overhead);
criterion_main!(benches);
