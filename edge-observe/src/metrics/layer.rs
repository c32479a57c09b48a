//! [`MetricsLayer`]: request metrics and `Server-Timing` for any tower service.
//!
//! Every response is counted in `edge_requests_total{method, route, status_class, cache, colo}` and timed
//! in `edge_request_duration_seconds{route, status_class, cache, colo}` (10 ms … 10 s), where `route`
//! is the request's [`Routes`] name, `cache` the response's `x-cache-status` (or `NONE`) and `colo` the PoP
//! (so a bad PoP does not hide in a global average). Every label comes from a bounded set. The response
//! gets a `Server-Timing: edge;dur=…` entry (appended to any the inner service set). With
//! [`MetricsLayer::endpoint`], `GET {path}` answers the Prometheus exposition of the registry.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use edge_core::{Body, BoxError, BoxFuture, Clock, MaybeSend};
use http::{HeaderValue, Method, Request, Response, header};
use tower::{Layer, Service};

use crate::labels::{cache_status, colo};
use crate::metrics::{Counter, Histogram, Registry};
use crate::routes::Routes;
use crate::server_timing::{SERVER_TIMING, ServerTiming};

/// Builds [`Metrics`]s over one registry.
#[derive(Clone, Debug)]
pub struct MetricsLayer<C> {
    registry: Registry,
    requests: Counter,
    latency: Histogram,
    clock: C,
    endpoint: Option<String>,
    routes: Routes,
}

impl<C: Clock + Clone> MetricsLayer<C> {
    /// Records into `registry`, timing with `clock`.
    pub fn new(registry: Registry, clock: C) -> Self {
        let requests = registry.counter(
            "edge_requests_total",
            "Requests answered by the edge.",
            &["method", "route", "status_class", "cache", "colo"],
        );
        let latency = registry.histogram(
            "edge_request_duration_seconds",
            "Time from request to response head at the edge.",
            &["route", "status_class", "cache", "colo"],
        );
        Self {
            registry,
            requests,
            latency,
            clock,
            endpoint: None,
            routes: Routes::new(),
        }
    }

    /// Labels requests by these routes (without any, every request's route is `other`).
    #[must_use]
    pub fn routes(mut self, routes: Routes) -> Self {
        self.routes = routes;
        self
    }

    /// Answers `GET {path}` with the registry's Prometheus exposition.
    #[must_use]
    pub fn endpoint(mut self, path: impl Into<String>) -> Self {
        self.endpoint = Some(path.into());
        self
    }
}

impl<S, C: Clock + Clone> Layer<S> for MetricsLayer<C> {
    type Service = Metrics<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        Metrics {
            inner,
            layer: Arc::new(self.clone()),
        }
    }
}

/// The service [`MetricsLayer`] makes.
#[derive(Clone, Debug)]
pub struct Metrics<S, C> {
    inner: S,
    /// Shared: the service is cloned per request (by axum's router, by layers that await), the
    /// configuration need not be.
    layer: Arc<MetricsLayer<C>>,
}

fn status_class(status: http::StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

fn method_label(method: &Method) -> &'static str {
    // A fixed set: a client inventing methods cannot grow the label set.
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

impl<S, C, ReqBody, ResBody> Service<Request<ReqBody>> for Metrics<S, C>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: MaybeSend + 'static,
    C: Clock + Clone + 'static,
    ResBody: http_body::Body<Data = Bytes> + MaybeSend + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        if request.method() == Method::GET
            && self.layer.endpoint.as_deref() == Some(request.uri().path())
        {
            let mut response = Response::new(Body::from(self.layer.registry.render_prometheus()));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            return Box::pin(async move { Ok(response) });
        }
        let method = method_label(request.method());
        // A listed route is an index into the table; axum's template is a shared string (a clone
        // allocates nothing), from a bounded set.
        #[cfg(feature = "axum")]
        let matched = request
            .extensions()
            .get::<axum::extract::MatchedPath>()
            .cloned();
        let route = self.layer.routes.position(request.uri().path());
        let colo = colo(&request);
        let layer = Arc::clone(&self.layer);
        let started = layer.clock.now();
        let future = self.inner.call(request);
        Box::pin(async move {
            let result = future.await;
            let elapsed = layer.clock.now().duration_since(started);
            #[cfg(feature = "axum")]
            let route = matched
                .as_ref()
                .map_or_else(|| layer.routes.name(route), |m| m.as_str());
            #[cfg(not(feature = "axum"))]
            let route = layer.routes.name(route);
            let colo = colo.as_str();
            let mut response = match result {
                Ok(response) => response.map(Body::from_http_body),
                Err(error) => {
                    // The service failed instead of answering: counted as the 500 it will become.
                    layer.requests.add(&[method, route, "5xx", "NONE", colo], 1);
                    layer
                        .latency
                        .observe(&[route, "5xx", "NONE", colo], elapsed);
                    return Err(error);
                }
            };
            let class = status_class(response.status());
            let cache = cache_status(response.headers());
            layer.requests.add(&[method, route, class, cache, colo], 1);
            layer.latency.observe(&[route, class, cache, colo], elapsed);
            if let Some(value) = ServerTiming::single("edge", elapsed) {
                response.headers_mut().append(SERVER_TIMING, value);
            }
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use edge_core::ManualClock;
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn counts_times_and_exposes() {
        let clock = ManualClock::new();
        let registry = Registry::new();
        let inner_clock = clock.clone();
        let service = MetricsLayer::new(registry.clone(), clock.clone())
            .endpoint("/metrics")
            .routes(Routes::new().prefix("/cached"))
            .layer(tower::service_fn(move |request: Request<Body>| {
                let clock = inner_clock.clone();
                async move {
                    clock.advance(std::time::Duration::from_millis(30));
                    let mut response = Response::new(Body::empty());
                    if request.uri().path() == "/cached" {
                        response
                            .headers_mut()
                            .insert("x-cache-status", HeaderValue::from_static("HIT"));
                    }
                    Ok::<_, Infallible>(response)
                }
            }));
        let response = service
            .clone()
            .oneshot(
                Request::builder()
                    .uri("/cached")
                    .header("cf-ray", "8f1c2d3e4f5a6b7c-FRA")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.headers()["server-timing"], "edge;dur=30");
        let weird = Request::builder()
            .method(Method::from_bytes(b"BREW").unwrap())
            .uri("/x")
            .body(Body::empty())
            .unwrap();
        service.clone().oneshot(weird).await.unwrap();
        let metrics = service
            .oneshot(
                Request::builder()
                    .uri("/metrics")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let text = metrics.into_body().collect(1 << 20).await.unwrap();
        let text = std::str::from_utf8(&text).unwrap();
        assert!(
            text.contains(r#"edge_requests_total{method="GET",route="/cached",status_class="2xx",cache="HIT",colo="FRA"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"edge_requests_total{method="OTHER",route="other",status_class="2xx",cache="NONE",colo="NONE"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"edge_request_duration_seconds_bucket{route="/cached",status_class="2xx",cache="HIT",colo="FRA",le="0.05"} 1"#), "{text}");
    }
}
