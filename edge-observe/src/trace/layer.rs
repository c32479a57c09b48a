//! [`TraceLayer`]: the request's server span, from its `traceparent` to the collector.

use std::borrow::Cow;
use std::sync::Arc;
use std::task::{Context, Poll};

use edge_core::trace::{
    FinishedRequest, IdSource, RequestSpan, Sampler, Span, SpanKind, Status, Value, attr,
};
use edge_core::wait_until::DynWaitUntil;
use edge_core::{BoxFuture, Clock, Fetcher, MaybeSend, MaybeSync, WaitUntil};
use http::{HeaderMap, Request, Response, StatusCode, header};
use tower::{Layer, Service};

use crate::labels::cache_status;
use crate::otlp::OtlpExporter;
use crate::routes::Routes;
use crate::server_timing::{SERVER_TIMING, ServerTiming};

/// Longest `url.path` and `user_agent.original` recorded, in bytes.
const MAX_RECORDED_LEN: usize = 256;

/// Where a [`TraceLayer`] sends the spans of sampled requests. [`OtlpExporter`] is one.
pub trait SpanSink: MaybeSend + MaybeSync + 'static {
    /// Takes ended spans (without waiting on anything).
    fn record_spans(&self, spans: Vec<Span>);

    /// The work that sends them, run after the response.
    fn flush_later(&self) -> BoxFuture<'static, ()>;
}

impl<F: Fetcher + 'static> SpanSink for OtlpExporter<F> {
    fn record_spans(&self, spans: Vec<Span>) {
        self.record_all(spans);
    }

    fn flush_later(&self) -> BoxFuture<'static, ()> {
        Box::pin(self.flush())
    }
}

/// Where a [`TraceLayer`] writes its one JSON line per request. Any `Fn(&str)` is one.
pub trait LogSink: MaybeSend + MaybeSync + 'static {
    /// Writes one line (without its newline).
    fn write_line(&self, line: &str);
}

impl<F: Fn(&str) + MaybeSend + MaybeSync + 'static> LogSink for F {
    fn write_line(&self, line: &str) {
        self(line);
    }
}

/// Starts each request's server span and finishes it when the response head is ready.
///
/// For each request it:
/// 1. reads `traceparent`/`tracestate` (a malformed or oversized one starts a new trace; the request
///    proceeds untouched) and decides sampling with its [`Sampler`] (parent-based by default);
/// 2. starts a [`RequestSpan`] named `{method}` or `{method} {route}` with OpenTelemetry's HTTP
///    attributes ([`attr`]), and puts it into the request's extensions, where the layers inside add
///    attributes, stages and child spans, handlers read its [`context`](RequestSpan::context), and
///    [`TracedFetcher`](crate::propagate::TracedFetcher) finds the trace to propagate;
/// 3. with feature `tracing`, runs the inner service inside a `tracing` span (`http.server`, carrying the
///    same attribute names, `trace_id` and `span_id`), so users' subscribers see every request;
/// 4. on the response: records the status (5xx sets the span's status to error), the cache's answer,
///    appends the inner layers' stages to `Server-Timing`, writes a JSON log line if a [`LogSink`] is set,
///    and hands the spans of a sampled trace to the [`SpanSink`], whose flush runs through
///    [`WaitUntil`] after the response.
///
/// The span ends when the response *head* is ready; a streamed body may take longer.
pub struct TraceLayer {
    // `Send + Sync` on every target: the request span they go into lives in `http::Extensions`.
    clock: Arc<dyn Clock + Send + Sync>,
    wait_until: Arc<dyn DynWaitUntil>,
    ids: Arc<dyn IdSource + Send + Sync>,
    sampler: Sampler,
    sink: Option<Arc<dyn SpanSink>>,
    log: Option<Arc<dyn LogSink>>,
    routes: Routes,
    server_timing: bool,
    /// The application's spans (`tracing`), gathered by [`TraceLayer::span_export_layer`]'s layer and
    /// sent with the next request's.
    #[cfg(feature = "tracing")]
    app_spans: Arc<crate::subscriber::SpanBuffer>,
}

impl Clone for TraceLayer {
    fn clone(&self) -> Self {
        Self {
            clock: Arc::clone(&self.clock),
            wait_until: Arc::clone(&self.wait_until),
            ids: Arc::clone(&self.ids),
            sampler: self.sampler.clone(),
            sink: self.sink.clone(),
            log: self.log.clone(),
            routes: self.routes.clone(),
            server_timing: self.server_timing,
            #[cfg(feature = "tracing")]
            app_spans: Arc::clone(&self.app_spans),
        }
    }
}

impl std::fmt::Debug for TraceLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceLayer")
            .field("sampler", &self.sampler)
            .field("exports", &self.sink.is_some())
            .field("logs", &self.log.is_some())
            .field("routes", &self.routes)
            .finish_non_exhaustive()
    }
}

impl TraceLayer {
    /// Times spans on `clock`, runs exports through `wait_until`, makes ids with `ids` (seed a
    /// [`SplitMix`](edge_core::trace::SplitMix) from the OS). Samples parent-based, every new trace
    /// recorded; exports nothing until [`export_to`](Self::export_to).
    pub fn new(
        clock: impl Clock + Send + Sync + 'static,
        wait_until: impl WaitUntil + 'static,
        ids: impl IdSource + Send + Sync + 'static,
    ) -> Self {
        Self {
            clock: Arc::new(clock),
            wait_until: Arc::new(wait_until),
            ids: Arc::new(ids),
            sampler: Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
            sink: None,
            log: None,
            routes: Routes::new(),
            server_timing: true,
            #[cfg(feature = "tracing")]
            app_spans: Arc::default(),
        }
    }

    /// The head sampler.
    #[must_use]
    pub fn sampler(mut self, sampler: Sampler) -> Self {
        self.sampler = sampler;
        self
    }

    /// Sends the spans of sampled requests to `sink` (an [`OtlpExporter`]).
    #[must_use]
    pub fn export_to(mut self, sink: impl SpanSink) -> Self {
        self.sink = Some(Arc::new(sink));
        self
    }

    /// (feature `tracing`) The `tracing-subscriber` layer that exports the application's own spans
    /// (`#[instrument]`) as children of each request's span, through this layer's
    /// [`export_to`](Self::export_to) sink. Add it to the app's subscriber; see
    /// [`subscriber`](crate::subscriber). Works on every target: the spans wait in a buffer (bounded)
    /// that the next finishing request hands to the sink, so the sink itself need not be `Send`.
    #[cfg(feature = "tracing")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tracing")))]
    #[must_use]
    pub fn span_export_layer(&self) -> crate::subscriber::SpanExportLayer {
        crate::subscriber::SpanExportLayer::buffered(
            Arc::clone(&self.app_spans),
            Arc::clone(&self.clock),
            Arc::clone(&self.ids),
        )
    }

    /// Writes one JSON line per request to `sink`.
    #[must_use]
    pub fn log_to(mut self, sink: impl LogSink) -> Self {
        self.log = Some(Arc::new(sink));
        self
    }

    /// Names spans and sets `http.route` by these routes.
    #[must_use]
    pub fn routes(mut self, routes: Routes) -> Self {
        self.routes = routes;
        self
    }

    /// Whether the inner layers' stages are appended to `Server-Timing` (on by default). Turn it off where
    /// clients must not see the edge's internals.
    #[must_use]
    pub fn server_timing(mut self, on: bool) -> Self {
        self.server_timing = on;
        self
    }
}

impl<S> Layer<S> for TraceLayer {
    type Service = Trace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Trace {
            inner,
            layer: Arc::new(self.clone()),
        }
    }
}

/// The service [`TraceLayer`] makes.
#[derive(Clone, Debug)]
pub struct Trace<S> {
    inner: S,
    // Shared, so a request costs one reference count, not a copy of the settings.
    layer: Arc<TraceLayer>,
}

fn bounded(text: &str) -> String {
    let mut end = text.len().min(MAX_RECORDED_LEN);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

impl TraceLayer {
    fn start<B>(&self, request: &Request<B>) -> RequestSpan {
        let context = edge_core::trace::TraceContext::from_request(
            request.headers(),
            &*self.ids,
            &self.sampler,
        );
        let method = attr::method_value(request.method());
        let route = crate::labels::matched_path(request).or_else(|| {
            (!self.routes.is_empty()).then(|| self.routes.classify(request.uri().path()))
        });
        let name: Cow<'static, str> = match route {
            Some(route) if route != Routes::OTHER => format!("{method} {route}").into(),
            _ => method.into(),
        };
        let span = RequestSpan::start(
            name,
            SpanKind::Server,
            context,
            Arc::clone(&self.ids),
            Arc::clone(&self.clock),
        );
        // The attributes serve export and the log line only: a span neither will read goes without
        // (the common case for unsampled requests, and for a host that exports nothing).
        if !self.records(span.is_sampled()) {
            return span;
        }
        span.with_span(|s| {
            s.attributes.reserve(12);
            s.set(attr::HTTP_REQUEST_METHOD, method);
            s.set(attr::URL_PATH, bounded(request.uri().path()));
            s.set(
                attr::URL_SCHEME,
                if request.uri().scheme_str() == Some("https") {
                    "https"
                } else {
                    "http"
                },
            );
            if let Some(route) = route {
                s.set(attr::HTTP_ROUTE, route.to_owned());
            }
            let host = request
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .or_else(|| request.uri().host());
            if let Some(host) = host {
                s.set(attr::SERVER_ADDRESS, bounded(host));
            }
            if let Some(agent) = request
                .headers()
                .get(header::USER_AGENT)
                .and_then(|h| h.to_str().ok())
            {
                s.set(attr::USER_AGENT_ORIGINAL, bounded(agent));
            }
            let colo = crate::labels::colo(request);
            if !colo.is_none() {
                s.set(attr::EDGE_COLO, colo.as_str().to_owned());
            }
        });
        span
    }

    /// Whether a request's span is read once it ends: written to the log, or exported (when sampled).
    fn records(&self, sampled: bool) -> bool {
        self.log.is_some() || (sampled && self.sink.is_some())
    }

    /// Ends `span` with the response's status and headers (Server-Timing is added to them).
    fn finish(&self, span: &RequestSpan, status: StatusCode, headers: &mut HeaderMap) {
        if self.records(span.is_sampled()) {
            let cache = cache_status(headers);
            span.with_span(|s| {
                s.set(attr::HTTP_RESPONSE_STATUS_CODE, status.as_u16());
                if cache != "NONE" {
                    s.set(attr::EDGE_CACHE_STATUS, cache);
                }
                // The tier is the cache layer's to record (it does, on this span); the status is read
                // here too, as a fixed label, for caches that are not the SDK's.
                if status.is_server_error() {
                    s.set(attr::ERROR_TYPE, status.as_str().to_owned());
                    s.set_status(Status::Error(Cow::Borrowed("server error")));
                }
            });
        }
        let Some(finished) = span.finish() else {
            return;
        };
        if self.server_timing {
            let stages = finished.stages.iter().map(|stage| {
                (
                    stage.name.as_ref(),
                    stage.duration,
                    stage.description.as_deref(),
                )
            });
            if let Some(value) = ServerTiming::header_value_of(stages) {
                headers.append(SERVER_TIMING, value);
            }
        }
        if let Some(log) = &self.log {
            log.write_line(&log_line(&finished, &*self.clock));
        }
        // The app's spans ended so far (any request's, from `span_export_layer`) leave with this one,
        // or are let go when nothing exports: the buffer never outgrows a request.
        #[cfg(feature = "tracing")]
        let app_spans = self.app_spans.take();
        if let Some(sink) = &self.sink {
            if span.is_sampled() {
                let mut spans = Vec::with_capacity(1 + finished.children.len());
                spans.push(finished.span);
                spans.extend(finished.children);
                #[cfg(feature = "tracing")]
                spans.extend(app_spans);
                sink.record_spans(spans);
                self.wait_until.wait_until_boxed(sink.flush_later());
            }
        }
    }
}

/// The request's JSON log line: time, ids, the HTTP attributes, duration, stages.
fn log_line(finished: &FinishedRequest, clock: &dyn Clock) -> String {
    let span = &finished.span;
    let mut line = serde_json::Map::new();
    let unix_ms = clock.unix_time().as_millis();
    line.insert(
        "time_unix_ms".into(),
        serde_json::json!(u64::try_from(unix_ms).unwrap_or(u64::MAX)),
    );
    line.insert("trace_id".into(), span.context.trace_id.to_string().into());
    line.insert("span_id".into(), span.context.span_id.to_string().into());
    line.insert("name".into(), span.name.as_ref().into());
    for (key, value) in &span.attributes {
        let value = match value {
            Value::Str(s) => serde_json::Value::from(s.as_ref()),
            Value::I64(n) => (*n).into(),
            Value::F64(x) => (*x).into(),
            Value::Bool(b) => (*b).into(),
            #[allow(unreachable_patterns)]
            other => format!("{other:?}").into(),
        };
        line.insert(key.to_string(), value);
    }
    line.insert(
        "duration_ms".into(),
        serde_json::json!(span.duration.as_secs_f64() * 1000.0),
    );
    if !finished.stages.is_empty() {
        let stages: serde_json::Map<String, serde_json::Value> = finished
            .stages
            .iter()
            .map(|s| {
                (
                    s.name.to_string(),
                    serde_json::json!(s.duration.as_secs_f64() * 1000.0),
                )
            })
            .collect();
        line.insert("stages_ms".into(), stages.into());
    }
    serde_json::Value::Object(line).to_string()
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Trace<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: MaybeSend + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<ResBody>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let span = self.layer.start(&request);
        #[cfg(feature = "tracing")]
        let tracing_span = tracing_span(&span, &request);
        request.extensions_mut().insert(span.clone());
        let future = self.inner.call(request);
        let layer = Arc::clone(&self.layer);
        #[cfg(feature = "tracing")]
        let future = tracing::Instrument::instrument(future, tracing_span.clone());
        Box::pin(async move {
            match future.await {
                Ok(mut response) => {
                    let status = response.status();
                    #[cfg(feature = "tracing")]
                    tracing_span.record(attr::HTTP_RESPONSE_STATUS_CODE, status.as_u16());
                    layer.finish(&span, status, response.headers_mut());
                    Ok(response)
                }
                Err(error) => {
                    // The service failed instead of answering: whoever turns the error into a
                    // response is outside this span, which ends as a server error.
                    layer.finish(
                        &span,
                        StatusCode::INTERNAL_SERVER_ERROR,
                        &mut HeaderMap::new(),
                    );
                    Err(error)
                }
            }
        })
    }
}

/// The `tracing` twin of the request span: same name, same attribute names, the W3C ids as fields.
#[cfg(feature = "tracing")]
fn tracing_span<B>(span: &RequestSpan, request: &Request<B>) -> tracing::Span {
    // Nothing listens (no subscriber, or one that filters out `info`): skip the name and ids too.
    if !tracing::span_enabled!(tracing::Level::INFO) {
        return tracing::Span::none();
    }
    let context = span.context();
    let name = span.with_span(|s| s.name.clone()).unwrap_or_default();
    tracing::info_span!(
        "http.server",
        otel.name = %name,
        otel.kind = "server",
        http.request.method = attr::method_value(request.method()),
        url.path = request.uri().path(),
        trace_id = %context.trace_id,
        span_id = %context.span_id,
        // The server span as the parent of the spans opened inside (see `subscriber::SpanExportLayer`).
        traceparent = %edge_core::trace::TraceParent::new(context.trace_id, context.span_id, context.flags),
        http.response.status_code = tracing::field::Empty,
    )
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::Mutex;
    use std::time::Duration;

    use edge_core::ManualClock;
    use edge_core::trace::SplitMix;
    use edge_core::wait_until::QueuedWaitUntil;
    use tower::ServiceExt;

    use super::*;
    use edge_core::Body;

    #[derive(Clone, Default)]
    struct Collected(Arc<Mutex<Vec<Span>>>, Arc<Mutex<usize>>);

    impl SpanSink for Collected {
        fn record_spans(&self, spans: Vec<Span>) {
            self.0.lock().unwrap().extend(spans);
        }
        fn flush_later(&self) -> BoxFuture<'static, ()> {
            let flushes = Arc::clone(&self.1);
            Box::pin(async move { *flushes.lock().unwrap() += 1 })
        }
    }

    fn service(
        clock: &ManualClock,
        background: &QueuedWaitUntil,
        sink: &Collected,
        lines: &Arc<Mutex<Vec<String>>>,
    ) -> Trace<
        impl Service<
            Request<Body>,
            Response = Response<Body>,
            Error = Infallible,
            Future = impl Future<Output = Result<Response<Body>, Infallible>> + Send + 'static,
        > + Clone,
    > {
        let lines = Arc::clone(lines);
        let inner_clock = clock.clone();
        TraceLayer::new(clock.clone(), background.clone(), SplitMix::new(5))
            .export_to(sink.clone())
            .log_to(move |line: &str| lines.lock().unwrap().push(line.to_owned()))
            .routes(Routes::new().prefix("/api/"))
            .layer(tower::service_fn(move |request: Request<Body>| {
                let clock = inner_clock.clone();
                async move {
                    let span = RequestSpan::from_extensions(request.extensions())
                        .unwrap()
                        .clone();
                    let started = span.now();
                    clock.advance(Duration::from_millis(3));
                    span.stage_since("auth", started, Some("verified"));
                    span.set(attr::EDGE_JWT_OUTCOME, "verified");
                    let child = span.child("GET", SpanKind::Client);
                    clock.advance(Duration::from_millis(20));
                    span.end_child(child);
                    let mut response = Response::new(Body::empty());
                    if request.uri().path() == "/api/fail" {
                        *response.status_mut() = http::StatusCode::BAD_GATEWAY;
                    }
                    response
                        .headers_mut()
                        .insert("x-cache-status", http::HeaderValue::from_static("MISS"));
                    Ok::<_, Infallible>(response)
                }
            }))
    }

    #[tokio::test]
    async fn continues_the_callers_trace_and_exports_after_the_response() {
        let clock = ManualClock::new();
        let background = QueuedWaitUntil::new();
        let sink = Collected::default();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let service = service(&clock, &background, &sink, &lines);
        let request = Request::get("/api/products?q=kettle")
            .header(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )
            .header("host", "shop.example")
            .body(Body::empty())
            .unwrap();
        let response = service.oneshot(request).await.unwrap();
        assert_eq!(
            response.headers()["server-timing"],
            r#"auth;dur=3;desc="verified""#
        );
        assert_eq!(background.pending(), 1, "the export waits for the response");
        background.run_all().await;
        assert_eq!(*sink.1.lock().unwrap(), 1);
        let spans = sink.0.lock().unwrap().clone();
        assert_eq!(spans.len(), 2, "the server span and its child");
        let server = &spans[0];
        assert_eq!(server.name, "GET /api/");
        assert_eq!(server.kind, SpanKind::Server);
        assert_eq!(
            server.context.trace_id.to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(
            server.context.parent_id.unwrap().to_string(),
            "00f067aa0ba902b7"
        );
        assert_eq!(spans[1].context.parent_id, Some(server.context.span_id));
        assert_eq!(server.duration, Duration::from_millis(23));
        let get = |key: &str| {
            server
                .attributes
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(get(attr::URL_PATH), Some(Value::from("/api/products")));
        assert_eq!(get(attr::HTTP_ROUTE), Some(Value::from("/api/")));
        assert_eq!(get(attr::SERVER_ADDRESS), Some(Value::from("shop.example")));
        assert_eq!(get(attr::HTTP_RESPONSE_STATUS_CODE), Some(Value::I64(200)));
        assert_eq!(get(attr::EDGE_CACHE_STATUS), Some(Value::from("MISS")));
        assert_eq!(get(attr::EDGE_JWT_OUTCOME), Some(Value::from("verified")));
        let line: serde_json::Value = serde_json::from_str(&lines.lock().unwrap()[0]).unwrap();
        assert_eq!(line["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(line["http.response.status_code"], 200);
        assert_eq!(line["stages_ms"]["auth"], 3.0);
        assert_eq!(line["duration_ms"], 23.0);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 128, ..Default::default() })]

        /// Whatever bytes the trace and geo headers carry, the request reaches the service with its
        /// headers untouched, is answered, and leaves a bounded span behind.
        #[test]
        fn any_header_bytes_pass_through(
            traceparent in proptest::collection::vec(0x20u8..0x7f, 0..200),
            tracestate in proptest::collection::vec(0x20u8..0x7f, 0..600),
            ray in proptest::collection::vec(0x20u8..0x7f, 0..40),
            agent in proptest::collection::vec(0x20u8..0xff, 0..5000),
        ) {
            let clock = ManualClock::new();
            let background = QueuedWaitUntil::new();
            let sink = Collected::default();
            let seen = Arc::new(Mutex::new(None));
            let saw = Arc::clone(&seen);
            let service = TraceLayer::new(clock, background.clone(), SplitMix::new(2))
                .export_to(sink.clone())
                .layer(tower::service_fn(move |request: Request<Body>| {
                    *saw.lock().unwrap() = Some(request.headers().clone());
                    async { Ok::<_, Infallible>(Response::new(Body::empty())) }
                }));
            let mut request = Request::new(Body::empty());
            let headers = request.headers_mut();
            for (name, bytes) in [("traceparent", &traceparent), ("tracestate", &tracestate), ("cf-ray", &ray), ("user-agent", &agent)] {
                if let Ok(value) = http::HeaderValue::from_bytes(bytes) {
                    headers.insert(name, value);
                }
            }
            let sent = request.headers().clone();
            let response = futures::executor::block_on(service.oneshot(request)).unwrap();
            proptest::prop_assert_eq!(response.status(), http::StatusCode::OK);
            let received = seen.lock().unwrap().take();
            proptest::prop_assert_eq!(received, Some(sent));
            futures::executor::block_on(background.run_all());
            let spans = sink.0.lock().unwrap();
            for span in spans.iter() {
                for (_, value) in &span.attributes {
                    if let Value::Str(s) = value {
                        proptest::prop_assert!(s.len() <= MAX_RECORDED_LEN);
                    }
                }
            }
        }
    }

    #[tokio::test]
    async fn unsampled_and_malformed_parents() {
        let clock = ManualClock::new();
        let background = QueuedWaitUntil::new();
        let sink = Collected::default();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let service = service(&clock, &background, &sink, &lines);
        // The caller said "not sampled": timed and logged, not exported.
        let unsampled = Request::get("/")
            .header(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
            )
            .body(Body::empty())
            .unwrap();
        let response = service.clone().oneshot(unsampled).await.unwrap();
        assert!(response.headers().contains_key("server-timing"));
        assert_eq!(background.pending(), 0);
        // Garbage, an oversized value, upper-case hex: a new trace, and the request goes through.
        for bad in [
            "garbage".to_owned(),
            "x".repeat(100_000),
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01".to_owned(),
        ] {
            let request = Request::get("/api/fail")
                .header("traceparent", bad.as_str())
                .header("tracestate", "BAD KEY=v, ,==,")
                .body(Body::empty())
                .unwrap();
            let response = service.clone().oneshot(request).await.unwrap();
            assert_eq!(response.status(), http::StatusCode::BAD_GATEWAY);
        }
        background.run_all().await;
        let spans = sink.0.lock().unwrap().clone();
        let servers: Vec<_> = spans
            .iter()
            .filter(|s| s.kind == SpanKind::Server)
            .collect();
        assert_eq!(servers.len(), 3);
        for server in servers {
            assert_eq!(server.context.parent_id, None, "a new trace");
            assert!(matches!(server.status, Status::Error(_)));
            assert!(
                server
                    .attributes
                    .iter()
                    .any(|(k, v)| k == attr::ERROR_TYPE && *v == Value::from("502"))
            );
        }
        assert_eq!(lines.lock().unwrap().len(), 4);
    }
}
