//! `host::tokio::serve` over loopback with raw sockets: every limit holds against a peer that breaks it, and
//! well-behaved requests are unaffected.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use edge_core::host::tokio::{ServerLimits, serve};
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// A server on a loopback port whose handler answers `ok`, or sleeps for `/sleep`, or names the client
/// address it was given for `/whoami`; stopped on drop of the sender.
async fn start(
    limits: ServerLimits,
) -> (SocketAddr, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let handler = tower::service_fn(|request: Request<Incoming>| async move {
        if request.uri().path() == "/sleep" {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        if request.uri().path() == "/slow" {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        if request.uri().path() == "/whoami" {
            let client = request.extensions().get::<edge_core::ClientIp>().copied();
            let text = client.map_or("none".to_owned(), |ip| ip.0.to_string());
            return Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(text))));
        }
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
    });
    let server = tokio::spawn(async move {
        serve(listener, limits, move |_peer| handler, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    (addr, stop, server)
}

/// Sends `bytes` and reads until the server closes the connection (or `within` passes: `None`).
async fn exchange(addr: SocketAddr, bytes: &[u8], within: Duration) -> Option<String> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    read_to_close(&mut stream, within).await
}

async fn read_to_close(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut answer = Vec::new();
    let read = tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok()
        .map(|()| String::from_utf8_lossy(&answer).into_owned())
}

fn status_line(answer: &str) -> &str {
    answer.lines().next().unwrap_or("")
}

fn quick() -> ServerLimits {
    ServerLimits::default()
        .with_header_read_timeout(Duration::from_millis(300))
        .with_request_timeout(Duration::from_millis(300))
}

#[tokio::test]
async fn a_slow_head_is_cut_off_at_the_header_read_timeout() {
    let (addr, _stop, _server) = start(quick()).await;
    let started = Instant::now();
    // Slowloris: a head that never ends.
    let answer = exchange(
        addr,
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: 1\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(answer.is_some(), "the connection was closed");
    assert!(started.elapsed() < Duration::from_secs(3));
    // A bare CRLF is ignored as RFC 9112 §2.2 allows, then the connection times out like any other.
    assert!(
        exchange(addr, b"\r\n", Duration::from_secs(5))
            .await
            .is_some()
    );
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed() {
    let (addr, _stop, _server) = start(quick()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = stream.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // Kept alive, then idle: closed once the wait for the next head passes the limit.
    let rest = read_to_close(&mut stream, Duration::from_secs(5)).await;
    assert_eq!(rest.as_deref(), Some(""), "closed without another answer");
}

#[tokio::test]
async fn a_handler_that_never_answers_gets_a_408() {
    let (addr, _stop, _server) = start(quick()).await;
    let answer = exchange(
        addr,
        b"GET /sleep HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(status_line(&answer), "HTTP/1.1 408 Request Timeout");
}

#[tokio::test]
async fn every_request_carries_the_peer_address_as_client_ip() {
    let (addr, _stop, _server) = start(ServerLimits::default()).await;
    let answer = exchange(
        addr,
        b"GET /whoami HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert!(answer.ends_with("\r\n\r\n127.0.0.1"), "{answer}");
}

#[tokio::test]
async fn requests_without_exactly_one_host_are_refused() {
    let (addr, _stop, _server) = start(ServerLimits::default()).await;
    let within = Duration::from_secs(5);
    let none = exchange(addr, b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", within)
        .await
        .unwrap();
    assert_eq!(status_line(&none), "HTTP/1.1 400 Bad Request");
    let two = exchange(
        addr,
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n",
        within,
    )
    .await
    .unwrap();
    assert_eq!(status_line(&two), "HTTP/1.1 400 Bad Request");
    let one = exchange(
        addr,
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        within,
    )
    .await
    .unwrap();
    assert_eq!(status_line(&one), "HTTP/1.1 200 OK");
    let old = exchange(addr, b"GET / HTTP/1.0\r\n\r\n", within)
        .await
        .unwrap();
    assert!(
        status_line(&old).ends_with("200 OK"),
        "HTTP/1.0 needs no Host: {old}"
    );
}

#[tokio::test]
async fn an_announced_body_past_the_limit_is_refused_at_once_and_the_connection_closed() {
    let (addr, _stop, _server) = start(ServerLimits::default().with_max_request_body(1024)).await;
    let within = Duration::from_secs(5);
    for (length, status) in [
        ("1000000000000", "HTTP/1.1 413 Payload Too Large"),
        ("2048", "HTTP/1.1 413 Payload Too Large"),
        // Past u64: hyper cannot read the head and answers 400 itself.
        ("99999999999999999999999999", "HTTP/1.1 400 Bad Request"),
    ] {
        let head = format!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {length}\r\n\r\npartial");
        let answer = exchange(addr, head.as_bytes(), within).await;
        let answer = answer.expect("answered and closed, not left waiting for the body");
        assert_eq!(status_line(&answer), status, "{length}");
    }
    let fits = exchange(
        addr,
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
        within,
    )
    .await
    .unwrap();
    assert_eq!(status_line(&fits), "HTTP/1.1 200 OK");
}

#[tokio::test]
async fn past_the_connection_cap_new_connections_wait_for_a_free_slot() {
    let limits = ServerLimits::default()
        .with_max_connections(2)
        .with_header_read_timeout(Duration::from_secs(30));
    let (addr, _stop, _server) = start(limits).await;
    let first = TcpStream::connect(addr).await.unwrap();
    let second = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let third = tokio::spawn(exchange(
        addr,
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        Duration::from_secs(10),
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!third.is_finished(), "two idle connections hold both slots");
    drop(first);
    let answer = third.await.unwrap().unwrap();
    assert_eq!(
        status_line(&answer),
        "HTTP/1.1 200 OK",
        "served once a slot freed"
    );
    drop(second);
}

#[tokio::test]
async fn shutdown_lets_the_request_in_flight_finish() {
    let (addr, stop, server) = start(ServerLimits::default()).await;
    let slow = tokio::spawn(exchange(
        addr,
        b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n",
        Duration::from_secs(10),
    ));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = stop.send(());
    let answer = slow.await.unwrap().unwrap();
    assert_eq!(status_line(&answer), "HTTP/1.1 200 OK");
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("serve returned once the last connection closed")
        .unwrap();
}
