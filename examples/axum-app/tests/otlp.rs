//! The app's own `#[instrument]`ed handler reaches a collector on loopback as a child of the request's
//! server span: one trace, the right parent, decoded with the OTLP reference types.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use edge_core::host::tokio::TokioHost;
use edge_example_axum_app::app::AppState;
use edge_example_axum_app::{EdgeConfig, Telemetry, router};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use tokio::net::TcpListener;
use tracing_subscriber::layer::SubscriberExt;

/// A collector on a loopback port that keeps every span it is sent.
async fn collector() -> (String, Arc<Mutex<Vec<Span>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let spans: Arc<Mutex<Vec<Span>>> = Arc::default();
    let store = Arc::clone(&spans);
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let store = Arc::clone(&store);
                    async move {
                        assert_eq!(request.uri().path(), "/v1/traces");
                        let body = request.into_body().collect().await.unwrap().to_bytes();
                        let export = ExportTraceServiceRequest::decode(body).unwrap();
                        for resource in export.resource_spans {
                            for scope in resource.scope_spans {
                                store.lock().unwrap().extend(scope.spans);
                            }
                        }
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (url, spans)
}

/// One thread, so that the test's `tracing` subscriber (set for this thread) sees the handler's spans.
#[tokio::test(flavor = "current_thread")]
async fn instrumented_handlers_are_children_of_the_request_span() {
    let (endpoint, received) = collector().await;
    let host = TokioHost::new().unwrap();
    let telemetry = Telemetry::new(&endpoint, &host).unwrap();
    let _subscriber = tracing::subscriber::set_default(
        tracing_subscriber::registry().with(telemetry.tracing_layer()),
    );
    let mut config = EdgeConfig::demo();
    config.otlp_endpoint = Some(endpoint);
    let app = router(AppState::default(), config, &host, Some(&telemetry));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let request = Request::get(format!("http://{addr}/api/todos"))
        .header(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.into_body().collect().await.unwrap();
    // The export runs after the response; wait for both spans to arrive.
    let mut spans = Vec::new();
    for _ in 0..200 {
        host.drain().await;
        telemetry.flush().await;
        spans = received.lock().unwrap().clone();
        if spans.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let server = spans
        .iter()
        .find(|s| s.name == "GET /api/todos")
        .unwrap_or_else(|| panic!("the server span, named by axum's route, in {spans:#?}"));
    let handler = spans
        .iter()
        .find(|s| s.name == "list")
        .unwrap_or_else(|| panic!("the handler's span in {spans:#?}"));
    let trace_id = hex("0af7651916cd43dd8448eb211c80319c");
    assert_eq!(server.trace_id, trace_id);
    assert_eq!(
        server.parent_span_id,
        hex("b7ad6b7169203331"),
        "the caller's span"
    );
    assert_eq!(handler.trace_id, trace_id, "one trace");
    assert_eq!(
        handler.parent_span_id, server.span_id,
        "the handler is the server span's child"
    );
    assert!(
        handler.events.iter().any(|e| e.name == "listed"),
        "{:?}",
        handler.events
    );
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}
