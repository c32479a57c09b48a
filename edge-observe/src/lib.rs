//! Observability at the edge, over `edge-core`'s trace contract: every request's span from its W3C
//! `traceparent` to an OTLP collector, metrics with a Prometheus endpoint, `Server-Timing`, JSON request
//! logs. The same code on tokio and in a Worker: time comes from the `Clock`, sleeps from the `Timer`,
//! export goes through the `Fetcher` after the response, through `WaitUntil`.
//!
//! | module | what it holds |
//! |---|---|
//! | `trace` (feature `tower`) | `TraceLayer`: the request's server span, stages into `Server-Timing`, export and log lines after the response |
//! | [`otlp`] | [`OtlpExporter`](otlp::OtlpExporter): spans and metrics over OTLP/HTTP, protobuf or JSON, batched, retried, bounded |
//! | [`propagate`] | [`TracedFetcher`](propagate::TracedFetcher): the trace carried into outgoing requests, a client span per fetch |
//! | [`metrics`] | counters, gauges and latency histograms (edge latency buckets, 10 ms … 10 s) with bounded label sets, and the Prometheus text exposition; `MetricsLayer` (feature `tower`): counts and latency by route, status class, cache status and colo, a `/metrics` endpoint |
//! | [`routes`] | [`Routes`]: paths reduced to a fixed set of route names |
//! | [`server_timing`] | the `Server-Timing` header |
//!
//! The layers of the other crates (WAF, JWT, rate limits, cache) and durable-object calls record what
//! they decided into the request's [`RequestSpan`](edge_core::trace::RequestSpan), under the attribute
//! names of [`edge_core::trace::attr`] (OpenTelemetry's HTTP conventions, `edge.*` for the SDK's own), and
//! emit the same as `tracing` events.
//!
//! ```
//! # #[cfg(feature = "tower")]
//! # futures::executor::block_on(async {
//! use edge_core::testing::{Reply, TestFetcher};
//! use edge_core::trace::SplitMix;
//! use edge_core::wait_until::QueuedWaitUntil;
//! use edge_core::{Body, ManualClock};
//! use edge_observe::{metrics::MetricsLayer, trace::TraceLayer};
//! use edge_observe::otlp::OtlpExporter;
//! use edge_observe::{Registry, Routes};
//! use tower::{Layer, ServiceExt};
//!
//! let clock = ManualClock::new();
//! let background = QueuedWaitUntil::new(); // a host's: TokioWaitUntil, or the Worker's ctx.waitUntil
//! let collector = TestFetcher::new();      // a host's: HyperFetcher, or the Worker's fetch
//! collector.route("/v1/traces", Reply::ok(""));
//! let exporter = OtlpExporter::builder(collector.clone(), "http://otel-collector:4318", clock.clone())?
//!     .service_name("shop-edge")
//!     .build();
//! let routes = Routes::new().prefix("/api/").exact("/");
//! let handler = tower::service_fn(|_request: http::Request<Body>| async {
//!     Ok::<_, std::convert::Infallible>(http::Response::new(Body::from("hello")))
//! });
//! let service = MetricsLayer::new(Registry::new(), clock.clone()).routes(routes.clone()).layer(
//!     TraceLayer::new(clock.clone(), background.clone(), SplitMix::new(42))
//!         .routes(routes)
//!         .export_to(exporter.clone())
//!         .layer(handler),
//! );
//!
//! let request = http::Request::get("/api/products")
//!     .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
//!     .body(Body::empty())?;
//! let response = service.oneshot(request).await.unwrap();
//! assert!(response.headers().contains_key("server-timing"));
//! background.run_all().await; // after the response: the span goes to the collector
//! assert_eq!(exporter.stats().exported, 1);
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! # In an axum app
//!
//! Added with `Router::layer`, the layers name spans and metrics by the route axum matched (feature
//! `axum`), so `/users/7` and `/users/8` are one `/users/{id}`.
//!
//! ```
//! # #[cfg(all(feature = "tower", feature = "axum"))]
//! # futures::executor::block_on(async {
//! use axum::{Router, routing::get};
//! use edge_core::{SystemClock, trace::SplitMix, wait_until::QueuedWaitUntil};
//! use edge_observe::Registry;
//! use edge_observe::{metrics::MetricsLayer, trace::TraceLayer};
//! use tower::ServiceExt;
//!
//! let registry = Registry::new();
//! let app = Router::new()
//!     .route("/users/{id}", get(|| async { "ana" }))
//!     .layer(TraceLayer::new(SystemClock::new(), QueuedWaitUntil::new(), SplitMix::new(7)))
//!     .layer(MetricsLayer::new(registry.clone(), SystemClock::new()).endpoint("/metrics"));
//!
//! let get = |uri: &str| http::Request::get(uri).body(axum::body::Body::empty()).unwrap();
//! app.clone().oneshot(get("/users/7")).await?;
//! app.clone().oneshot(get("/users/8")).await?;
//! assert!(registry.render_prometheus().contains(r#"route="/users/{id}",status_class="2xx""#));
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! # Features
//!
//! | feature | adds |
//! |---|---|
//! | `tower` | `trace::TraceLayer`, `metrics::MetricsLayer` |
//! | `tracing` | `TraceLayer` runs each request inside a `tracing` span (`http.server`, with `trace_id`, `span_id` and the HTTP attributes), so `tracing` subscribers see it |
//!
//! Without features the crate has no runtime dependency and builds for `wasm32-unknown-unknown`.
//!
//! # MSRV
//!
//! Rust 1.85 (edition 2024).
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "tower")]
mod labels;
pub mod metrics;
pub mod otlp;
pub mod propagate;
pub mod routes;
pub mod server_timing;
#[cfg(feature = "tracing")]
#[cfg_attr(docsrs, doc(cfg(feature = "tracing")))]
pub mod subscriber;
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub mod trace;

pub use metrics::{Counter, Gauge, Histogram, Registry};
pub use routes::Routes;
pub use server_timing::ServerTiming;
