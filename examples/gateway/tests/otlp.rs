//! The gateway exports its traces and metrics over OTLP/HTTP to a collector on loopback: a small receiver
//! here decodes what arrives with the OTLP reference types and checks it, in both encodings.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::start;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use edge_example_pipeline::GatewayConfig;
use edge_example_pipeline::testkit::exchange_with_headers;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use tokio::net::TcpListener;

/// What the receiver was sent: path, content type, body.
type Received = Arc<Mutex<Vec<(String, String, Bytes)>>>;

/// An OTLP/HTTP receiver on a loopback port. Its first traces request is answered 503, so the exporter's
/// retry runs for real.
async fn receiver() -> (String, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let received: Received = Arc::default();
    let store = Arc::clone(&received);
    tokio::spawn(async move {
        let refused_once = Arc::new(Mutex::new(false));
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (store, refused_once) = (Arc::clone(&store), Arc::clone(&refused_once));
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let (store, refused_once) = (Arc::clone(&store), Arc::clone(&refused_once));
                    async move {
                        let path = request.uri().path().to_owned();
                        let content_type = request
                            .headers()
                            .get("content-type")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned();
                        let body = request.into_body().collect().await.unwrap().to_bytes();
                        let mut status = StatusCode::OK;
                        if path == "/v1/traces" {
                            let mut refused = refused_once.lock().unwrap();
                            if !*refused {
                                *refused = true;
                                status = StatusCode::SERVICE_UNAVAILABLE;
                            }
                        }
                        if status == StatusCode::OK {
                            store.lock().unwrap().push((path, content_type, body));
                        }
                        let mut response = Response::new(Full::new(Bytes::new()));
                        *response.status_mut() = status;
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (url, received)
}

fn attribute(span: &Span, key: &str) -> Option<AnyValue> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.clone())
        .and_then(|v| v.value)
}

fn text(span: &Span, key: &str) -> String {
    match attribute(span, key) {
        Some(AnyValue::StringValue(s)) => s,
        other => panic!("{key} is {other:?} on {}", span.name),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn exports_what_it_served(json: bool) {
    let (collector, received) = receiver().await;
    let gateway = start(GatewayConfig::default().with_otlp(collector, json)).await;
    let caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let headers = [("traceparent", caller), ("cf-ray", "8f1c2d3e4f5a6b7c-FRA")];

    let products = exchange_with_headers(
        &gateway.base,
        Method::GET,
        "/api/products",
        &headers,
        Bytes::new(),
    )
    .await
    .unwrap();
    assert_eq!(products.status, StatusCode::OK);
    let timing: Vec<&str> = products
        .headers
        .get_all("server-timing")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    let timing = timing.join(", ");
    for stage in ["waf;", "ratelimit;", "cache;", "origin;", "edge;"] {
        assert!(timing.contains(stage), "{stage} in {timing}");
    }
    // The origin receives the edge's client span as its parent, in the caller's trace.
    let trace = exchange_with_headers(
        &gateway.base,
        Method::GET,
        "/api/trace",
        &headers,
        Bytes::new(),
    )
    .await
    .unwrap();
    let upstream = trace.json()["traceparent"].as_str().unwrap().to_owned();
    assert!(
        upstream.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{upstream}"
    );
    assert!(
        !upstream.contains("00f067aa0ba902b7"),
        "a new span id, not the caller's"
    );

    // Spans go out after the response; the first export is refused once and retried.
    let mut spans: Vec<Span> = Vec::new();
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        spans = received
            .lock()
            .unwrap()
            .iter()
            .filter(|(path, _, _)| path == "/v1/traces")
            .flat_map(|(_, content_type, body)| {
                let request: ExportTraceServiceRequest = if json {
                    assert_eq!(content_type, "application/json");
                    serde_json::from_slice(body).unwrap()
                } else {
                    assert_eq!(content_type, "application/x-protobuf");
                    ExportTraceServiceRequest::decode(&body[..]).unwrap()
                };
                request
                    .resource_spans
                    .into_iter()
                    .flat_map(|rs| rs.scope_spans)
                    .flat_map(|ss| ss.spans)
                    .collect::<Vec<_>>()
            })
            .collect();
        if spans.iter().filter(|s| s.kind == 2).count() >= 2 {
            break;
        }
    }
    let server = spans
        .iter()
        .find(|s| s.kind == 2 && s.name == "GET /api/products")
        .unwrap_or_else(|| panic!("no server span in {spans:#?}"));
    assert_eq!(hex(&server.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(hex(&server.parent_span_id), "00f067aa0ba902b7");
    assert_eq!(text(server, "http.request.method"), "GET");
    assert_eq!(text(server, "http.route"), "/api/products");
    assert_eq!(text(server, "url.path"), "/api/products");
    assert_eq!(text(server, "edge.colo"), "FRA");
    assert_eq!(text(server, "edge.waf.verdict"), "pass");
    assert_eq!(text(server, "edge.ratelimit.decision"), "allowed");
    assert_eq!(text(server, "edge.cache.status"), "MISS");
    assert_eq!(
        attribute(server, "http.response.status_code"),
        Some(AnyValue::IntValue(200))
    );
    assert!(server.end_time_unix_nano >= server.start_time_unix_nano);
    let client = spans
        .iter()
        .find(|s| s.kind == 3 && s.parent_span_id == server.span_id)
        .expect("the origin fetch as a child span");
    assert_eq!(client.trace_id, server.trace_id);
    assert!(text(client, "url.full").ends_with("/api/products"));
    assert_eq!(
        attribute(client, "http.response.status_code"),
        Some(AnyValue::IntValue(200))
    );
    let traced = spans
        .iter()
        .find(|s| s.kind == 3 && upstream.contains(&hex(&s.span_id)))
        .expect("the span the origin was told about");
    assert_eq!(hex(&traced.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");

    // Metrics go out when the edge drains (and every 10 s while it runs).
    gateway.edge.drain().await;
    let metrics: Vec<ExportMetricsServiceRequest> = received
        .lock()
        .unwrap()
        .iter()
        .filter(|(path, _, _)| path == "/v1/metrics")
        .map(|(_, _, body)| {
            if json {
                serde_json::from_slice(body).unwrap()
            } else {
                ExportMetricsServiceRequest::decode(&body[..]).unwrap()
            }
        })
        .collect();
    let names: Vec<String> = metrics
        .iter()
        .flat_map(|m| &m.resource_metrics)
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|sm| &sm.metrics)
        .map(|m| m.name.clone())
        .collect();
    assert!(
        names.contains(&"edge_requests_total".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"edge_request_duration_seconds".to_owned()),
        "{names:?}"
    );
    let stats = gateway.edge.telemetry().exporter().unwrap().stats();
    assert!(stats.retries >= 1, "{stats:?}");
    assert_eq!(stats.dropped_failed, 0, "{stats:?}");

    gateway.stop().await;
}

#[tokio::test]
async fn traces_and_metrics_reach_a_collector_as_protobuf() {
    exports_what_it_served(false).await;
}

#[tokio::test]
async fn traces_and_metrics_reach_a_collector_as_json() {
    exports_what_it_served(true).await;
}

/// A collector that is not there costs nothing but dropped spans: every request is answered.
#[tokio::test]
async fn a_collector_that_is_down_does_not_touch_requests() {
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let gateway = start(GatewayConfig::default().with_otlp(url, false)).await;
    for _ in 0..5 {
        let response = exchange_with_headers(
            &gateway.base,
            Method::GET,
            "/api/products",
            &[],
            Bytes::new(),
        )
        .await
        .unwrap();
        assert_eq!(response.status, StatusCode::OK);
    }
    gateway.stop().await;
}
