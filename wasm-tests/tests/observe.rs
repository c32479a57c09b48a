//! The observability path on both targets: this file runs natively (`cargo test`) and on wasm32 in Node
//! (wasm-bindgen-test). The encoders must write the very same bytes on both (golden values below), and the
//! trace layer, the exporter's retries on a manual clock and the JSON log must behave the same.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::convert::Infallible;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, UNIX_EPOCH};

use edge_core::testing::{Reply, TestFetcher};
use edge_core::trace::{RequestSpan, Sampler, Span, SpanKind, SplitMix, Status, TraceContext};
use edge_core::wait_until::QueuedWaitUntil;
use edge_core::{Body, ManualClock};
use edge_observe::otlp::{Encoding, OtlpExporter, Resource, encode_spans};
use edge_observe::trace::TraceLayer;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use tower::{Layer, ServiceExt};
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// Polls `future` to the end, moving `clock` on whenever it waits (everything here waits only on it).
fn drive<F: Future>(clock: &ManualClock, future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
    for _ in 0..10_000 {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        clock.advance(Duration::from_millis(50));
    }
    panic!("the future did not finish");
}

fn golden_span() -> Span {
    let clock = ManualClock::new();
    clock.set_wall_time(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
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
    let mut span = Span::start("GET /api/products", SpanKind::Server, context, &clock);
    span.set("http.request.method", "GET");
    span.set("http.response.status_code", 502_i64);
    span.set("edge.ratio", 0.5);
    span.set("edge.cache.hit", false);
    clock.advance(Duration::from_millis(2));
    span.event("origin.first_byte", &clock);
    clock.advance(Duration::from_millis(40));
    span.set_status(Status::Error("server error".into()));
    span.end(&clock);
    span
}

const GOLDEN_PROTOBUF: &str = "0ac0020a200a1e0a0c736572766963652e6e616d65120e0a0c656467652d67617465776179129b020a0d0a04656467651205302e312e301289020a104bf92f3577b34da6a3ce929d0e0e473612081d0b14e4db018fed1a15726f6a6f3d30306630363761613062613930326237220800f067aa0ba902b72a11474554202f6170692f70726f647563747330023900002a36fe9c97174180deaa38fe9c97174a1c0a13687474702e726571756573742e6d6574686f6412050a034745544a200a19687474702e726573706f6e73652e7374617475735f636f6465120318f6034a170a0a656467652e726174696f120921000000000000e03f4a140a0e656467652e63616368652e686974120210005a1c0980844836fe9c971712116f726967696e2e66697273745f627974657a10120c736572766572206572726f721802850101000000";
const GOLDEN_JSON: &str = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"edge-gateway"}}]},"scopeSpans":[{"scope":{"name":"edge","version":"0.1.0"},"spans":[{"attributes":[{"key":"http.request.method","value":{"stringValue":"GET"}},{"key":"http.response.status_code","value":{"intValue":"502"}},{"key":"edge.ratio","value":{"doubleValue":0.5}},{"key":"edge.cache.hit","value":{"boolValue":false}}],"endTimeUnixNano":"1700000000042000000","events":[{"attributes":[],"name":"origin.first_byte","timeUnixNano":"1700000000002000000"}],"flags":1,"kind":2,"name":"GET /api/products","parentSpanId":"00f067aa0ba902b7","spanId":"1d0b14e4db018fed","startTimeUnixNano":"1700000000000000000","status":{"code":2,"message":"server error"},"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","traceState":"rojo=00f067aa0ba902b7"}]}]}]}"#;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn both_encodings_write_the_same_bytes_on_every_target() {
    let span = golden_span();
    let resource = Resource::new("edge-gateway");
    let protobuf = hex(&encode_spans(
        Encoding::Protobuf,
        &resource,
        std::slice::from_ref(&span),
    ));
    let json = String::from_utf8(encode_spans(Encoding::Json, &resource, &[span])).unwrap();
    assert_eq!(protobuf, GOLDEN_PROTOBUF);
    assert_eq!(json, GOLDEN_JSON);
}

#[test]
fn a_request_is_traced_exported_and_logged() {
    let clock = ManualClock::new();
    let collector = TestFetcher::new().with_clock(clock.clone());
    // The first export is refused; the retry waits on the manual clock.
    collector.enqueue("/v1/traces", Reply::status(StatusCode::SERVICE_UNAVAILABLE));
    collector.route("/v1/traces", Reply::ok(""));
    let exporter = OtlpExporter::builder(collector.clone(), "http://collector:4318", clock.clone())
        .unwrap()
        .build();
    let background = QueuedWaitUntil::new();
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let log = Arc::clone(&lines);
    let service = TraceLayer::new(clock.clone(), background.clone(), SplitMix::new(1))
        .export_to(exporter.clone())
        .log_to(move |line: &str| log.lock().unwrap().push(line.to_owned()))
        .layer(tower::service_fn(|request: Request<Body>| async move {
            let span = RequestSpan::from_extensions(request.extensions()).unwrap();
            let started = span.now();
            span.stage_since("cache", started, Some("MISS"));
            Ok::<_, Infallible>(Response::new(Body::empty()))
        }));
    let request = Request::get("/api/products")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .body(Body::empty())
        .unwrap();
    let response = drive(&clock, service.oneshot(request)).unwrap();
    assert_eq!(
        response.headers()["server-timing"],
        r#"cache;dur=0;desc="MISS""#
    );
    assert_eq!(background.pending(), 1);
    drive(&clock, background.run_all());
    assert_eq!(collector.hits("/v1/traces"), 2);
    let stats = exporter.stats();
    assert_eq!((stats.exported, stats.retries), (1, 1));
    let line: serde_json::Value = serde_json::from_str(&lines.lock().unwrap()[0]).unwrap();
    assert_eq!(line["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
}

/// Keeps the bodies it is sent and answers `200`.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<bytes::Bytes>>>);

impl edge_core::Fetcher for Capture {
    async fn fetch(&self, request: Request<Body>) -> Result<Response<Body>, edge_core::Error> {
        let body = request.into_body().collect(1 << 20).await?;
        self.0.lock().unwrap().push(body);
        Ok(Response::new(Body::empty()))
    }
}

#[tracing::instrument(skip_all, fields(sku = "kettle"))]
async fn instrumented_handler() -> &'static str {
    tracing::info!("priced");
    "ok"
}

/// The app's `#[instrument]`ed handler is exported through the OTLP exporter as a child of the request's
/// server span, on wasm32 as natively.
#[test]
fn instrumented_spans_are_exported_as_children_of_the_request_span() {
    use tracing_subscriber::layer::SubscriberExt;

    let clock = ManualClock::new();
    let collector = Capture::default();
    let exporter = OtlpExporter::builder(collector.clone(), "http://collector:4318", clock.clone())
        .unwrap()
        .encoding(Encoding::Json)
        .build();
    let background = QueuedWaitUntil::new();
    // The exporter is not `Send` on wasm32 (nor is a Worker's fetcher): the trace layer's own
    // `tracing` layer buffers the app's spans and the trace layer sends them.
    let trace =
        TraceLayer::new(clock.clone(), background.clone(), SplitMix::new(1)).export_to(exporter);
    let subscriber = tracing_subscriber::registry().with(trace.span_export_layer());
    let service = trace.layer(tower::service_fn(|_request: Request<Body>| async {
        Ok::<_, Infallible>(Response::new(Body::from(instrumented_handler().await)))
    }));
    let request = Request::get("/api/products")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .body(Body::empty())
        .unwrap();
    tracing::subscriber::with_default(subscriber, || {
        drive(&clock, service.oneshot(request)).unwrap();
    });
    drive(&clock, background.run_all());
    let bodies = collector.0.lock().unwrap().clone();
    let spans: Vec<serde_json::Value> = bodies
        .iter()
        .flat_map(|body| {
            let export: serde_json::Value = serde_json::from_slice(body).unwrap();
            export["resourceSpans"][0]["scopeSpans"][0]["spans"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    let find = |name: &str| {
        spans
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {spans:#?}"))
            .clone()
    };
    let (server, handler) = (find("GET"), find("instrumented_handler"));
    assert_eq!(server["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(handler["traceId"], server["traceId"]);
    assert_eq!(handler["parentSpanId"], server["spanId"]);
    assert_eq!(handler["events"][0]["name"], "priced");
}
