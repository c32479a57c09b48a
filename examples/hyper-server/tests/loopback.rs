//! The bare-hyper host over real loopback HTTP, and the same answers as the axum gateway.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bytes::Bytes;
use edge_example_pipeline::Edge;
use edge_example_pipeline::GatewayConfig;
use edge_example_pipeline::testkit::{exchange, standard_conversation};
use http::{Method, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

type Serve = fn(TcpListener, &Edge, oneshot::Receiver<()>) -> tokio::task::JoinHandle<()>;

fn hyper_host(
    listener: TcpListener,
    edge: &Edge,
    stop: oneshot::Receiver<()>,
) -> tokio::task::JoinHandle<()> {
    let serving = edge_example_hyper_server::serve(listener, edge, async {
        let _ = stop.await;
    });
    tokio::spawn(async move { serving.await.unwrap() })
}

fn axum_host(
    listener: TcpListener,
    edge: &Edge,
    stop: oneshot::Receiver<()>,
) -> tokio::task::JoinHandle<()> {
    let serving = edge_example_gateway::serve(listener, edge, async {
        let _ = stop.await;
    });
    tokio::spawn(async move { serving.await.unwrap() })
}

/// Runs `host` in front of a shared origin; returns its base URL, its stop switch and its task.
async fn start(
    host: Serve,
    edge: &Edge,
) -> (String, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel();
    (base, stop, host(listener, edge, stopped))
}

#[tokio::test]
async fn answers_exactly_as_the_axum_gateway_does() {
    let edge = Edge::start(&GatewayConfig::default()).await.unwrap();
    let (hyper_base, hyper_stop, hyper_task) = start(hyper_host, &edge).await;
    let (axum_base, axum_stop, axum_task) = start(axum_host, &edge).await;

    let from_hyper = standard_conversation(&hyper_base).await.unwrap();
    let from_axum = standard_conversation(&axum_base).await.unwrap();
    assert_eq!(from_hyper.len(), 10);
    for (h, a) in from_hyper.iter().zip(&from_axum) {
        assert_eq!(
            h.without_cache_state(),
            a.without_cache_state(),
            "bare hyper and axum disagree on {}",
            h.request
        );
    }
    assert_eq!(from_hyper[0].status, StatusCode::OK);
    assert_eq!(from_hyper[0].header("via"), "1.1 edge");
    assert_eq!(from_hyper[9].json()["body_bytes"], 100_000);

    hyper_stop.send(()).unwrap();
    axum_stop.send(()).unwrap();
    hyper_task.await.unwrap();
    axum_task.await.unwrap();
}

#[tokio::test]
async fn a_slow_origin_gets_a_gateway_timeout() {
    let edge =
        Edge::start(&GatewayConfig::default().with_origin_timeout(Duration::from_millis(200)))
            .await
            .unwrap();
    let (base, stop, task) = start(hyper_host, &edge).await;
    let slow = exchange(&base, Method::GET, "/api/slow?ms=3000", Bytes::new())
        .await
        .unwrap();
    assert_eq!(slow.status, StatusCode::GATEWAY_TIMEOUT);
    stop.send(()).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn shutdown_waits_for_the_request_in_flight() {
    let edge = Edge::start(&GatewayConfig::default()).await.unwrap();
    let (base, stop, task) = start(hyper_host, &edge).await;
    let in_flight = tokio::spawn({
        let base = base.clone();
        async move { exchange(&base, Method::GET, "/api/slow?ms=300", Bytes::new()).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.send(()).unwrap();
    let answered = in_flight.await.unwrap().unwrap();
    assert_eq!(
        answered.status,
        StatusCode::OK,
        "the request in flight finished"
    );
    task.await.unwrap();
    assert!(
        exchange(&base, Method::GET, "/", Bytes::new())
            .await
            .is_err(),
        "no longer accepting"
    );
}

#[tokio::test]
async fn the_binary_answers_on_the_port_it_is_given() {
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_hyper-server"))
        .args(["--port", &port.to_string()])
        .kill_on_drop(true)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let mut answered = None;
    for _ in 0..100 {
        if let Ok(home) = exchange(&base, Method::GET, "/about", Bytes::new()).await {
            answered = Some(home.status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(answered, Some(StatusCode::OK));
    child.kill().await.unwrap();
}
