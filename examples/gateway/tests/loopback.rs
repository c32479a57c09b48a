//! The axum gateway over real loopback HTTP: started on an ephemeral port, with its embedded demo origin.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::start;

use std::time::Duration;

use bytes::Bytes;
use edge_core::KvStore;
use edge_core::kv::PutOptions;
use edge_example_pipeline::GatewayConfig;
use edge_example_pipeline::testkit::{exchange, exchange_with_headers, standard_conversation};
use edge_kv::redis::RedisKv;
use edge_kv::testing::RedisServer;
use http::{Method, StatusCode};
use tokio::net::TcpListener;

#[tokio::test]
async fn serves_the_demo_origin_through_the_pipeline() {
    let gateway = start(GatewayConfig::default()).await;
    let transcript = standard_conversation(&gateway.base).await.unwrap();

    let home = &transcript[0];
    assert_eq!(home.status, StatusCode::OK);
    assert_eq!(home.header("content-type"), "text/html; charset=utf-8");
    assert_eq!(home.header("cache-control"), "public, max-age=60");
    assert_eq!(home.header("via"), "1.1 edge");
    assert!(
        std::str::from_utf8(&home.body)
            .unwrap()
            .contains("came from the demo origin")
    );

    let products = transcript[2].json();
    assert_eq!(products["products"].as_array().map(Vec::len), Some(3));
    assert_eq!(transcript[3].json()["name"], "Pour-over kettle");
    assert_eq!(transcript[4].status, StatusCode::NOT_FOUND);
    assert_eq!(transcript[4].json()["error"], "no such product");
    assert_eq!(
        transcript[5].status,
        StatusCode::NOT_FOUND,
        "origin 404s pass through"
    );

    let head = &transcript[6];
    assert_eq!((head.status, head.body.len()), (StatusCode::OK, 0));

    assert_eq!(
        home.header("x-edge-variant"),
        "classic",
        "anonymous visitors get the default"
    );
    let german = &transcript[7];
    assert_eq!(german.header("x-edge-variant"), "bold", "the DE rule");
    assert!(
        std::str::from_utf8(&german.body)
            .unwrap()
            .contains("hero bold"),
        "the origin rendered the variant"
    );

    let echo = transcript[9].json();
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["query"], "q=1");
    assert_eq!(
        echo["body_bytes"], 100_000,
        "request bodies stream to the origin"
    );
    assert_eq!(echo["via"], "1.1 edge");
    assert_eq!(
        echo["x_forwarded_host"], "shop.example",
        "the client's host travels as x-forwarded-host"
    );
    assert_ne!(
        echo["host"], "shop.example",
        "the origin is addressed by its own authority"
    );

    let health = exchange(&gateway.base, Method::GET, "/_edge/health", Bytes::new())
        .await
        .unwrap();
    assert_eq!(
        (health.status, &health.body[..]),
        (StatusCode::OK, &b"ok\n"[..])
    );

    gateway.stop().await;
}

#[tokio::test]
async fn the_account_api_takes_only_verified_tokens() {
    let gateway = start(GatewayConfig::default()).await;
    let base = gateway.base.as_str();
    let denied = exchange(base, Method::GET, "/api/account", Bytes::new())
        .await
        .unwrap();
    assert_eq!(
        (denied.status, denied.header("www-authenticate")),
        (StatusCode::UNAUTHORIZED, r#"Bearer realm="edge""#)
    );
    let forged = exchange_with_headers(
        base,
        Method::GET,
        "/api/account",
        &[("x-edge-user", "mallory")],
        Bytes::new(),
    )
    .await
    .unwrap();
    assert_eq!(
        forged.status,
        StatusCode::UNAUTHORIZED,
        "a forged identity header is not a credential"
    );

    let issued = exchange(
        base,
        Method::GET,
        "/_edge/demo-token?sub=alice",
        Bytes::new(),
    )
    .await
    .unwrap();
    let token = issued.json()["token"].as_str().unwrap().to_owned();
    let bearer = format!("Bearer {token}");
    let account = exchange_with_headers(
        base,
        Method::GET,
        "/api/account",
        &[
            ("authorization", bearer.as_str()),
            ("x-edge-user", "mallory"),
        ],
        Bytes::new(),
    )
    .await
    .unwrap();
    assert_eq!(account.status, StatusCode::OK);
    assert_eq!(
        account.json()["user"],
        "alice",
        "the verified subject, not the forged header"
    );

    let mut tampered = token.clone();
    tampered.replace_range(token.len() - 3.., "AAA");
    let bearer = format!("Bearer {tampered}");
    let rejected = exchange_with_headers(
        base,
        Method::GET,
        "/api/account",
        &[("authorization", bearer.as_str())],
        Bytes::new(),
    )
    .await
    .unwrap();
    assert_eq!(rejected.status, StatusCode::UNAUTHORIZED);
    assert!(
        rejected
            .header("www-authenticate")
            .contains(r#"error="invalid_token""#)
    );

    let echo = exchange_with_headers(
        base,
        Method::GET,
        "/api/echo",
        &[("x-edge-user", "mallory")],
        Bytes::new(),
    )
    .await
    .unwrap();
    assert_eq!(
        echo.json()["x_edge_user"],
        serde_json::Value::Null,
        "client-sent identity headers never reach the origin"
    );
}

#[tokio::test]
async fn visitors_keep_their_variant_and_the_split_is_even() {
    let gateway = start(GatewayConfig::default()).await;
    let mut bold = 0;
    for i in 0..200 {
        let cookie = format!("uid=visitor-{i}");
        let headers = [("cookie", cookie.as_str())];
        let first = exchange_with_headers(&gateway.base, Method::GET, "/", &headers, Bytes::new())
            .await
            .unwrap();
        let again = exchange_with_headers(&gateway.base, Method::GET, "/", &headers, Bytes::new())
            .await
            .unwrap();
        assert_eq!(
            first.header("x-edge-variant"),
            again.header("x-edge-variant"),
            "sticky per visitor"
        );
        if first.header("x-edge-variant") == "bold" {
            bold += 1;
        }
    }
    assert!(
        (70..=130).contains(&bold),
        "about half of 200 visitors see bold: {bold}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_live_in_redis_when_redis_url_is_set() {
    let redis = RedisServer::start().unwrap();
    // An operator already turned the test off for everyone: the gateway must not overwrite it.
    let kv = RedisKv::connect(&redis.url())
        .await
        .unwrap()
        .with_namespace("edge-gateway");
    let all_classic = r#"{"flags":{"home-hero":{"variants":["classic","bold"],"default":"classic","enabled":false}}}"#;
    kv.put(
        "flags",
        Bytes::from_static(all_classic.as_bytes()),
        PutOptions::new(),
    )
    .await
    .unwrap();

    let gateway = start(GatewayConfig::default().with_redis(redis.url())).await;
    let german = exchange_with_headers(
        &gateway.base,
        Method::GET,
        "/",
        &[("cf-ipcountry", "DE")],
        Bytes::new(),
    )
    .await
    .unwrap();
    assert_eq!(
        german.header("x-edge-variant"),
        "classic",
        "the document in Redis decides"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_flag_document_falls_back_instead_of_failing() {
    let redis = RedisServer::start().unwrap();
    let kv = RedisKv::connect(&redis.url())
        .await
        .unwrap()
        .with_namespace("edge-gateway");
    kv.put(
        "flags",
        Bytes::from_static(b"{ this is not json"),
        PutOptions::new(),
    )
    .await
    .unwrap();
    let gateway = start(GatewayConfig::default().with_redis(redis.url())).await;
    let german = exchange_with_headers(
        &gateway.base,
        Method::GET,
        "/",
        &[("cf-ipcountry", "DE")],
        Bytes::new(),
    )
    .await
    .unwrap();
    assert_eq!(
        (german.status, german.header("x-edge-variant")),
        (StatusCode::OK, "classic")
    );
}

#[tokio::test]
async fn a_slow_origin_gets_a_gateway_timeout() {
    let config = GatewayConfig::default().with_origin_timeout(Duration::from_millis(200));
    let gateway = start(config).await;
    let slow = exchange(
        &gateway.base,
        Method::GET,
        "/api/slow?ms=3000",
        Bytes::new(),
    )
    .await
    .unwrap();
    assert_eq!(slow.status, StatusCode::GATEWAY_TIMEOUT);
    let quick = exchange(&gateway.base, Method::GET, "/api/slow?ms=10", Bytes::new())
        .await
        .unwrap();
    assert_eq!(quick.status, StatusCode::OK);
    assert_eq!(quick.json()["slept_ms"], 10);
}

#[tokio::test]
async fn an_unreachable_origin_gets_a_bad_gateway() {
    // Bind and drop a listener to find a loopback port nothing listens on.
    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let origin = format!("http://{closed}").parse().unwrap();
    let config = GatewayConfig::default().with_origin(origin);
    let gateway = start(config).await;
    let down = exchange(&gateway.base, Method::GET, "/", Bytes::new())
        .await
        .unwrap();
    assert_eq!(down.status, StatusCode::BAD_GATEWAY);
    assert_eq!(down.header("cache-control"), "no-store");
}

#[tokio::test]
async fn the_binary_starts_on_the_port_it_is_given_and_answers() {
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .env("EDGE_PORT", port.to_string())
        .kill_on_drop(true)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let mut answered = None;
    for _ in 0..100 {
        if let Ok(health) = exchange(&base, Method::GET, "/_edge/health", Bytes::new()).await {
            answered = Some(health.status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        answered,
        Some(StatusCode::OK),
        "the gateway binary answered on EDGE_PORT"
    );
    let home = exchange(&base, Method::GET, "/", Bytes::new())
        .await
        .unwrap();
    assert_eq!(home.status, StatusCode::OK);
    child.kill().await.unwrap();
}

/// The API allows bursts of 20 per client (then one every 500 ms): a quick run of requests is refused
/// once the burst is spent, with the IETF fields, and pages (their own quota) still load.
#[tokio::test]
async fn the_api_is_rate_limited_per_client_with_ietf_fields() {
    let gateway = start(GatewayConfig::default()).await;
    let mut statuses = Vec::new();
    // At most a few tokens come back while the loop runs, however slow the machine.
    while statuses.len() < 200 && !statuses.contains(&StatusCode::TOO_MANY_REQUESTS) {
        let response = exchange(&gateway.base, Method::GET, "/api/products", Bytes::new())
            .await
            .unwrap();
        statuses.push(response.status);
        if response.status == StatusCode::OK {
            // 120 a minute in bursts of 20: 20 every 10 s.
            assert_eq!(response.header("ratelimit-policy"), "\"default\";q=20;w=10");
            assert_eq!(response.header("ratelimit"), "\"default\";r=_;t=_");
        } else {
            assert_eq!(response.status, StatusCode::TOO_MANY_REQUESTS);
            assert_eq!(response.header("retry-after"), "1");
            assert_eq!(response.header("ratelimit"), "\"default\";r=_;t=_");
        }
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        20
    );
    assert_eq!(statuses[20], StatusCode::TOO_MANY_REQUESTS);
    let page = exchange(&gateway.base, Method::GET, "/", Bytes::new())
        .await
        .unwrap();
    assert_eq!(page.status, StatusCode::OK);
    gateway.stop().await;
}

/// The WAF refuses an injection in the query before anything else runs, and lets ordinary text with
/// quotes through.
#[tokio::test]
async fn the_waf_refuses_injections_and_passes_ordinary_text() {
    let gateway = start(GatewayConfig::default()).await;
    let attack = exchange(
        &gateway.base,
        Method::GET,
        "/api/products?q=%27%20OR%20%271%27%3D%271",
        Bytes::new(),
    )
    .await
    .unwrap();
    assert_eq!(attack.status, StatusCode::FORBIDDEN);
    assert_eq!(&attack.body[..], b"{\"error\":\"request_blocked\"}\n");
    let traversal = exchange(
        &gateway.base,
        Method::GET,
        "/static/..%252f..%252fetc/passwd",
        Bytes::new(),
    )
    .await
    .unwrap();
    assert_eq!(traversal.status, StatusCode::FORBIDDEN);
    let benign = exchange(
        &gateway.base,
        Method::GET,
        "/api/products?q=O%27Brien&size=select+your+size",
        Bytes::new(),
    )
    .await
    .unwrap();
    assert_eq!(benign.status, StatusCode::OK);
    gateway.stop().await;
}

/// With `--waf crs`, the OWASP Core Rule Set decides: an injection is refused by anomaly score, an
/// ordinary page with a browser's headers passes.
#[tokio::test]
async fn the_core_rule_set_runs_when_chosen() {
    let dir = std::env::var_os("EDGE_CRS_DIR").map_or_else(
        || std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/crs"),
        std::path::PathBuf::from,
    );
    let config = GatewayConfig::parse(
        |_| None,
        ["--waf", "crs", "--paranoia", "1", "--crs-dir"]
            .into_iter()
            .map(str::to_owned)
            .chain([dir.display().to_string()]),
    )
    .unwrap();
    let gateway = start(config).await;
    let browser = [
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        ),
        ("accept", "text/html,application/json"),
    ];
    let attack = exchange_with_headers(
        &gateway.base,
        Method::GET,
        "/api/products?q=1%27%20UNION%20SELECT%20password%20FROM%20users--%20-",
        &browser,
        Bytes::new(),
    )
    .await
    .unwrap();
    assert_eq!(attack.status, StatusCode::FORBIDDEN);
    let benign = exchange_with_headers(
        &gateway.base,
        Method::GET,
        "/api/products?q=O%27Brien&size=select+your+size",
        &browser,
        Bytes::new(),
    )
    .await
    .unwrap();
    assert_eq!(benign.status, StatusCode::OK);
    gateway.stop().await;
}

/// The exact counter object: concurrent increments over HTTP each get a distinct value, none is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_counter_object_is_exact_under_concurrency() {
    let gateway = start(GatewayConfig::default()).await;
    // 16 increments from one address stay inside the `/api/` burst of 20.
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let base = gateway.base.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                for _ in 0..4 {
                    let r = exchange(&base, Method::POST, "/api/counter/visits", Bytes::new())
                        .await
                        .unwrap();
                    assert_eq!(r.status, StatusCode::OK);
                    seen.push(r.json()["value"].as_u64().unwrap());
                }
                seen
            })
        })
        .collect();
    let mut values = Vec::new();
    for task in tasks {
        values.extend(task.await.unwrap());
    }
    values.sort_unstable();
    assert_eq!(values, (1..=16).collect::<Vec<u64>>());
    let read = exchange(
        &gateway.base,
        Method::GET,
        "/api/counter/visits",
        Bytes::new(),
    )
    .await
    .unwrap();
    assert_eq!(read.json()["value"], 16);
    let bad = exchange(
        &gateway.base,
        Method::GET,
        "/api/counter/no%20spaces",
        Bytes::new(),
    )
    .await
    .unwrap();
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let wrong = exchange(
        &gateway.base,
        Method::DELETE,
        "/api/counter/visits",
        Bytes::new(),
    )
    .await
    .unwrap();
    assert_eq!(wrong.status, StatusCode::METHOD_NOT_ALLOWED);
    gateway.stop().await;
}

mod rooms {
    use futures_util::SinkExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_tungstenite::tungstenite::Message;

    use super::*;
    use edge_example_pipeline::testkit::{RoomClient, next_frame, room_opening};

    async fn next(client: &mut RoomClient) -> serde_json::Value {
        next_frame(client).await.expect("a frame in time")
    }

    /// Joins with a hand-made handshake, returning the raw connection (to send broken frames on).
    async fn join_raw(base: &str, room: &str, user: &str) -> tokio::net::TcpStream {
        let mut tcp = tokio::net::TcpStream::connect(base.trim_start_matches("http://"))
            .await
            .unwrap();
        let handshake = format!(
            "GET /rooms/{room}?user={user} HTTP/1.1\r\nHost: edge\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        );
        tcp.write_all(handshake.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            head.push(tcp.read_u8().await.unwrap());
        }
        assert!(
            head.starts_with(b"HTTP/1.1 101"),
            "{}",
            String::from_utf8_lossy(&head)
        );
        tcp
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_room_broadcasts_announces_presence_and_survives_a_malformed_frame() {
        let gateway = start(GatewayConfig::default()).await;
        let base = gateway.base.as_str();

        let (mut ana, mut bo) = room_opening(base, "lobby").await.unwrap();

        // Mallory joins, then sends a frame with a reserved opcode: the server drops that connection
        // alone, and the room announces that she left.
        let mut mallory = join_raw(base, "lobby", "mallory").await;
        assert_eq!(next(&mut ana).await["user"], "mallory");
        assert_eq!(next(&mut bo).await["user"], "mallory");
        mallory.write_all(&[0x83, 0x80, 1, 2, 3, 4]).await.unwrap();
        assert_eq!(
            next(&mut ana).await,
            serde_json::json!({"type": "leave", "user": "mallory"})
        );
        assert_eq!(
            next(&mut bo).await,
            serde_json::json!({"type": "leave", "user": "mallory"})
        );

        bo.send(Message::Text("still here".into())).await.unwrap();
        assert_eq!(next(&mut ana).await["text"], "still here");

        let status = exchange(base, Method::GET, "/rooms/lobby", Bytes::new())
            .await
            .unwrap();
        assert_eq!(
            status.json(),
            serde_json::json!({"present": ["ana", "bo"], "messages": 2})
        );
        let bad = exchange(base, Method::GET, "/rooms/a%20b", Bytes::new())
            .await
            .unwrap();
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        let traversal = exchange(base, Method::GET, "/rooms/..%2F..", Bytes::new())
            .await
            .unwrap();
        assert_eq!(
            traversal.status,
            StatusCode::FORBIDDEN,
            "the WAF sees room routes too"
        );

        bo.close(None).await.unwrap();
        assert_eq!(
            next(&mut ana).await,
            serde_json::json!({"type": "leave", "user": "bo"})
        );
        drop(ana);
        gateway.stop().await;
    }
}

/// The HTTP cache in front of the demo origin: concurrent misses on the slow endpoint wait for one origin
/// request, a stale copy is served at once while one refresh runs, and a purge by tag empties it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_coalesces_serves_stale_while_revalidating_and_purges() {
    let gateway = start(GatewayConfig::default().with_purge_token("s3cret")).await;
    let base = gateway.base.clone();
    let slow = "/api/slow?ms=400&fresh=1";

    let started = std::time::Instant::now();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let base = base.clone();
            tokio::spawn(async move {
                exchange(&base, Method::GET, slow, Bytes::new())
                    .await
                    .unwrap()
            })
        })
        .collect();
    for task in tasks {
        let r = task.await.unwrap();
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header("x-cache-status"), "MISS");
    }
    let together = started.elapsed();
    assert!(
        together < Duration::from_millis(3 * 400),
        "8 misses waited for one origin request, not 8 in a row: {together:?}"
    );

    let hit = exchange(&base, Method::GET, slow, Bytes::new())
        .await
        .unwrap();
    assert_eq!(hit.header("x-cache-status"), "HIT");

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let stale = exchange(&base, Method::GET, slow, Bytes::new())
        .await
        .unwrap();
    assert_eq!(
        stale.header("x-cache-status"),
        "UPDATING",
        "served stale, refreshed behind it"
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    let refreshed = exchange(&base, Method::GET, slow, Bytes::new())
        .await
        .unwrap();
    assert_eq!(refreshed.header("x-cache-status"), "HIT");

    let products = exchange(&base, Method::GET, "/api/products", Bytes::new())
        .await
        .unwrap();
    assert_eq!(products.header("x-cache-status"), "MISS");
    assert!(
        products.headers.get("cache-tag").is_none(),
        "edge-only fields never leave"
    );
    assert_eq!(
        exchange(&base, Method::GET, "/api/products", Bytes::new())
            .await
            .unwrap()
            .header("x-cache-status"),
        "HIT"
    );
    let timing: Vec<&str> = products
        .headers
        .get_all("server-timing")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert!(
        timing[0].starts_with("waf;dur="),
        "the stages first: {timing:?}"
    );
    assert!(timing[0].contains(r#"cache;dur="#), "{timing:?}");
    assert!(
        timing[1].starts_with("edge;dur="),
        "then the whole: {timing:?}"
    );
    let metrics = exchange(&base, Method::GET, "/_edge/metrics", Bytes::new())
        .await
        .unwrap();
    let metrics = String::from_utf8(metrics.body.to_vec()).unwrap();
    assert!(
        metrics.contains(
            r#"edge_requests_total{method="GET",route="/api/products",status_class="2xx",cache="HIT",colo="NONE"}"#
        ),
        "{metrics}"
    );
    assert!(metrics.contains("edge_request_duration_seconds_bucket"));
    let refused = exchange(
        &base,
        Method::POST,
        "/_edge/purge",
        Bytes::from("tag products"),
    )
    .await
    .unwrap();
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    let purged = exchange_with_headers(
        &base,
        Method::POST,
        "/_edge/purge",
        &[("authorization", "Bearer s3cret")],
        Bytes::from("tag products\n"),
    )
    .await
    .unwrap();
    assert_eq!(purged.status, StatusCode::OK);
    assert_eq!(
        exchange(&base, Method::GET, "/api/products", Bytes::new())
            .await
            .unwrap()
            .header("x-cache-status"),
        "MISS"
    );
    gateway.stop().await;
}

/// Sends raw bytes to the gateway and reads until it closes the connection (or 10 s pass: `None`).
async fn raw(base: &str, bytes: &[u8]) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(base.trim_start_matches("http://"))
        .await
        .unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
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

/// The fault run's malformed requests, each answered for what it is and never left hanging.
#[tokio::test]
async fn malformed_requests_get_a_4xx_and_never_hang() {
    let mut config = GatewayConfig::default();
    config.server = config
        .server
        .with_header_read_timeout(Duration::from_millis(500));
    let gateway = start(config).await;
    let base = &gateway.base;
    let chunked = raw(
        base,
        b"POST /api/echo HTTP/1.1\r\nHost: a\r\nContent-Type: application/octet-stream\r\n\
          Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n",
    )
    .await
    .unwrap();
    assert_eq!(
        status_line(&chunked),
        "HTTP/1.1 400 Bad Request",
        "{chunked}"
    );
    for hosts in ["", "Host: a\r\nHost: b\r\n"] {
        let request = format!("GET / HTTP/1.1\r\n{hosts}Connection: close\r\n\r\n");
        let answer = raw(base, request.as_bytes()).await.unwrap();
        assert_eq!(
            status_line(&answer),
            "HTTP/1.1 400 Bad Request",
            "{hosts:?}"
        );
    }
    let huge = raw(
        base,
        b"POST /api/echo HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000000000\r\n\r\n",
    )
    .await
    .expect("answered and closed");
    assert_eq!(status_line(&huge), "HTTP/1.1 413 Payload Too Large");
    let bad_key = raw(
        base,
        b"GET /rooms/lobby HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: not-a-key\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(
        status_line(&bad_key),
        "HTTP/1.1 400 Bad Request",
        "{bad_key}"
    );
    // A bare CRLF is ignored (RFC 9112 §2.2), then the header-read timeout closes the connection.
    assert!(raw(base, b"\r\n").await.is_some());
    // Slowloris: a head that never ends is cut off.
    assert!(
        raw(base, b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: 1\r\n")
            .await
            .is_some()
    );
    gateway.stop().await;
}

/// `--rate-limits off` (or `EDGE_RATE_LIMITS=off`) lets a load test from one address through.
#[tokio::test]
async fn rate_limits_can_be_turned_off() {
    let config =
        GatewayConfig::parse(|_| None, ["--rate-limits".to_owned(), "off".to_owned()]).unwrap();
    let gateway = start(config).await;
    for _ in 0..40 {
        let answer = exchange(&gateway.base, Method::GET, "/api/products", Bytes::new())
            .await
            .unwrap();
        assert_eq!(answer.status, StatusCode::OK);
        assert!(answer.headers.get("ratelimit").is_none());
    }
    gateway.stop().await;
}

/// An origin that sends a head and then stalls its body: a cache fill gives up at the body deadline
/// with a 504, and an uncacheable answer streams its head through at once.
#[tokio::test]
async fn a_stalled_origin_body_does_not_hang_the_client() {
    let mut config = GatewayConfig::default();
    config.origin_body_timeout = Duration::from_millis(300);
    let gateway = start(config).await;
    let started = std::time::Instant::now();
    let cached = exchange(
        &gateway.base,
        Method::GET,
        "/api/stall?ms=5000",
        Bytes::new(),
    )
    .await
    .unwrap();
    assert_eq!(cached.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "not the origin's 5 s"
    );
    let started = std::time::Instant::now();
    let raw_answer = raw(
        &gateway.base,
        b"GET /api/stall?ms=5000&cache=0 HTTP/1.1\r\nHost: a\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(status_line(&raw_answer), "HTTP/1.1 200 OK");
    assert!(raw_answer.contains("{\"half\":"), "{raw_answer}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "cut off at the body deadline"
    );
    gateway.stop().await;
}
