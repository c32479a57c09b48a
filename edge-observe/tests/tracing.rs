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
use edge_observe::layer::TraceLayer;
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
