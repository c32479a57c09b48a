//! With feature `tracing`, a `tracing` subscriber sees every request as an `http.server` span carrying the
//! W3C ids and the HTTP attributes, with the inner layers' events inside it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use edge_core::trace::SplitMix;
use edge_core::wait_until::QueuedWaitUntil;
use edge_core::{Body, ManualClock};
use edge_observe::trace::TraceLayer;
use http::{Request, Response};
use tower::{Layer, ServiceExt};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

#[derive(Default)]
struct Fields(HashMap<String, String>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

/// Records spans (name, fields) and events (fields, the span they happened in).
#[derive(Default)]
struct Recorder {
    next: AtomicU64,
    spans: Mutex<HashMap<u64, (&'static str, HashMap<String, String>)>>,
    events: Mutex<Vec<(Option<u64>, HashMap<String, String>)>>,
    current: Mutex<Vec<u64>>,
}

/// The subscriber handed to `tracing`; the test keeps another handle to read what it recorded.
#[derive(Clone)]
struct Shared(Arc<Recorder>);

impl std::ops::Deref for Shared {
    type Target = Recorder;
    fn deref(&self) -> &Recorder {
        &self.0
    }
}

impl Subscriber for Shared {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, attributes: &Attributes<'_>) -> Id {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let mut fields = Fields::default();
        attributes.record(&mut fields);
        self.spans
            .lock()
            .unwrap()
            .insert(id, (attributes.metadata().name(), fields.0));
        Id::from_u64(id)
    }
    fn record(&self, span: &Id, values: &Record<'_>) {
        let mut fields = Fields::default();
        values.record(&mut fields);
        if let Some((_, existing)) = self.spans.lock().unwrap().get_mut(&span.into_u64()) {
            existing.extend(fields.0);
        }
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let parent = self.current.lock().unwrap().last().copied();
        self.events.lock().unwrap().push((parent, fields.0));
    }
    fn enter(&self, span: &Id) {
        self.current.lock().unwrap().push(span.into_u64());
    }
    fn exit(&self, _: &Id) {
        self.current.lock().unwrap().pop();
    }
}

#[test]
fn subscribers_see_the_request_span_and_what_happens_inside() {
    let recorder = Shared(Arc::new(Recorder::default()));
    let clock = ManualClock::new();
    let service = TraceLayer::new(clock, QueuedWaitUntil::new(), SplitMix::new(1)).layer(
        tower::service_fn(|_request: Request<Body>| async {
            // What the SDK's layers do inside: an event under the attribute names of `edge_core::trace::attr`.
            tracing::debug!(edge.cache.status = "HIT", "cache");
            Ok::<_, Infallible>(Response::new(Body::empty()))
        }),
    );
    let request = Request::get("/api/products")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .body(Body::empty())
        .unwrap();
    tracing::subscriber::with_default(recorder.clone(), || {
        futures::executor::block_on(service.oneshot(request)).unwrap();
    });
    let spans = recorder.spans.lock().unwrap();
    let (&id, (_, fields)) = spans
        .iter()
        .find(|(_, (name, _))| *name == "http.server")
        .expect("an http.server span");
    assert_eq!(fields["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(fields["http.request.method"], "GET");
    assert_eq!(fields["url.path"], "/api/products");
    assert_eq!(fields["otel.kind"], "server");
    assert_eq!(fields["http.response.status_code"], "200");
    let events = recorder.events.lock().unwrap();
    let (parent, event) = events
        .iter()
        .find(|(_, fields)| fields.contains_key("edge.cache.status"))
        .expect("the inner event");
    assert_eq!(*parent, Some(id), "inside the request's span");
    assert_eq!(event["edge.cache.status"], "HIT");
}

/// Collects what is exported.
#[derive(Clone, Default)]
struct Collected(Arc<Mutex<Vec<edge_core::trace::Span>>>);

impl edge_observe::trace::SpanSink for Collected {
    fn record_spans(&self, spans: Vec<edge_core::trace::Span>) {
        self.0.lock().unwrap().extend(spans);
    }
    fn flush_later(&self) -> edge_core::BoxFuture<'static, ()> {
        Box::pin(async {})
    }
}

#[tracing::instrument(skip_all, fields(product = 42))]
async fn load_product() -> &'static str {
    tracing::info!(rows = 1, "query done");
    lookup_price().await
}

#[tracing::instrument]
async fn lookup_price() -> &'static str {
    "9.99"
}

/// The application's `#[instrument]`ed functions inside a request become spans of the request's trace:
/// children of its server span (grandchildren for nested calls), timed, with their fields and events.
#[test]
fn application_spans_are_exported_as_children_of_the_request_span() {
    use edge_observe::subscriber::SpanExportLayer;
    use tracing_subscriber::layer::SubscriberExt;

    let clock = ManualClock::new();
    let sink = Collected::default();
    let subscriber = tracing_subscriber::registry().with(SpanExportLayer::new(
        sink.clone(),
        clock.clone(),
        SplitMix::new(9),
    ));
    let service = TraceLayer::new(clock, QueuedWaitUntil::new(), SplitMix::new(1))
        .export_to(sink.clone())
        .layer(tower::service_fn(|_request: Request<Body>| async {
            let price = load_product().await;
            Ok::<_, Infallible>(Response::new(Body::from(price)))
        }));
    let request = |sampled: &str| {
        Request::get("/api/products/42")
            .header(
                "traceparent",
                format!("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-{sampled}"),
            )
            .body(Body::empty())
            .unwrap()
    };
    tracing::subscriber::with_default(subscriber, || {
        futures::executor::block_on(service.clone().oneshot(request("01"))).unwrap();
        // Outside any request nothing is exported; neither is a trace the caller did not sample.
        futures::executor::block_on(load_product());
        futures::executor::block_on(service.oneshot(request("00"))).unwrap();
    });
    let spans = sink.0.lock().unwrap().clone();
    let by_name = |name: &str| {
        spans
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("{name} in {spans:#?}"))
    };
    assert_eq!(spans.len(), 3, "{spans:#?}");
    let server = by_name("GET");
    let handler = by_name("load_product");
    let nested = by_name("lookup_price");
    for span in [handler, nested] {
        assert_eq!(span.context.trace_id, server.context.trace_id);
        assert!(span.end.is_some());
    }
    assert_eq!(handler.context.parent_id, Some(server.context.span_id));
    assert_eq!(nested.context.parent_id, Some(handler.context.span_id));
    assert!(
        handler
            .attributes
            .iter()
            .any(|(k, v)| k == "product" && *v == edge_core::trace::Value::I64(42)),
        "{:?}",
        handler.attributes
    );
    assert_eq!(handler.events.len(), 1);
    assert_eq!(handler.events[0].name, "query done");
}

/// A collector that is down is reported as a `tracing` warning, once a minute, not on every flush.
#[test]
fn failed_exports_are_warned_about_once_a_minute() {
    use edge_core::testing::{Reply, TestFetcher};
    use edge_core::trace::{Span, SpanKind, TraceContext};
    use edge_observe::otlp::OtlpExporter;

    let recorder = Shared(Arc::new(Recorder::default()));
    let clock = ManualClock::new();
    let collector = TestFetcher::new();
    collector.route("/v1/traces", Reply::fail(edge_core::ErrorKind::Unavailable));
    let exporter = OtlpExporter::builder(collector, "http://collector:4318", clock.clone())
        .unwrap()
        .clock(clock.clone())
        .max_attempts(1)
        .build();
    let span = || {
        let context = TraceContext::from_request(
            &http::HeaderMap::new(),
            &SplitMix::new(4),
            &edge_core::trace::Sampler::AlwaysOn,
        );
        let mut span = Span::start("job", SpanKind::Internal, context, &clock);
        span.end(&clock);
        span
    };
    let warnings = || {
        recorder
            .events
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, fields)| {
                fields
                    .get("message")
                    .is_some_and(|m| m.starts_with("OTLP export failed"))
            })
            .count()
    };
    tracing::subscriber::with_default(recorder.clone(), || {
        // Other tests' threads may have cached "never" for the warning's callsite; ask again.
        tracing::callsite::rebuild_interest_cache();
        for _ in 0..3 {
            exporter.record(span());
            futures::executor::block_on(exporter.flush());
        }
        assert_eq!(warnings(), 1);
        clock.advance(std::time::Duration::from_secs(61));
        exporter.record(span());
        futures::executor::block_on(exporter.flush());
        assert_eq!(warnings(), 2);
    });
    assert_eq!(exporter.stats().dropped_failed, 4);
}
