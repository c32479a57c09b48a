//! The Worker inside workerd, the Cloudflare runtime, through Miniflare on 127.0.0.1.
//!
//! Builds the Worker for wasm32 with worker-build (`scripts/worker-build.sh`, which installs its tools when
//! missing), starts the demo origin and an OTLP collector on loopback, runs the bundle in workerd with KV,
//! the Cache API and the Durable Object classes bound, and then checks, over real HTTP:
//!
//! - the SDK's conformance kits for KV, cache and durable-object storage pass against the real bindings;
//! - bad input at a binding gets a typed error, never a trap;
//! - the Worker holds the same conversation as the native pipeline (the axum gateway's), byte for byte
//!   except what a shared cache and the platform's geo decide;
//! - JWT with keys from KV, rate limits, cache coalescing, ESI streaming, durable objects (an exact counter,
//!   a room over WebSockets, an alarm), and trace export in `waitUntil`.
//!
//! Run with `cargo test -p edge-example-worker --features workerd` (`.ci/run` runs it with every feature).
//! Its own harness (one Worker for every check): each check prints `test … ok` as libtest does.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use edge_core::host::tokio::HyperFetcher;
use edge_core::{Body, Fetcher};
use edge_example_pipeline::testkit::{
    Exchange, RoomClient, exchange_with_headers, next_frame, room_opening, standard_conversation,
};
use edge_example_pipeline::{Edge, GatewayConfig};
use futures_util::StreamExt;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::net::TcpListener;

/// One request a [`Recorder`] received.
#[derive(Clone, Debug)]
struct Recorded {
    path_and_query: String,
    headers: http::HeaderMap,
    body: Bytes,
}

/// A loopback HTTP server that records every request, and forwards it to `upstream` if there is one (the
/// demo origin: then it counts what reaches the origin), or answers `200` (an OTLP collector).
#[derive(Clone)]
struct Recorder {
    url: String,
    seen: Arc<Mutex<Vec<Recorded>>>,
}

impl Recorder {
    async fn start(upstream: Option<String>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let store = Arc::clone(&seen);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (store, upstream) = (Arc::clone(&store), upstream.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                        let (store, upstream) = (Arc::clone(&store), upstream.clone());
                        async move {
                            Ok::<_, std::convert::Infallible>(
                                record(store, upstream, request).await,
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { url, seen }
    }

    fn count(&self, path_and_query: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path_and_query == path_and_query)
            .count()
    }

    fn all(&self) -> Vec<Recorded> {
        self.seen.lock().unwrap().clone()
    }
}

async fn record(
    store: Arc<Mutex<Vec<Recorded>>>,
    upstream: Option<String>,
    request: Request<Incoming>,
) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    store.lock().unwrap().push(Recorded {
        path_and_query: path_and_query.clone(),
        headers: parts.headers.clone(),
        body: body.clone(),
    });
    let Some(upstream) = upstream else {
        return Response::new(Body::empty());
    };
    let mut forward = Request::new(Body::from(body));
    *forward.method_mut() = parts.method;
    *forward.uri_mut() = format!("{upstream}{path_and_query}").parse().unwrap();
    *forward.headers_mut() = parts.headers;
    forward.headers_mut().remove(http::header::HOST);
    match HyperFetcher::new().fetch(forward).await {
        Ok(response) => response,
        Err(_) => {
            let mut response = Response::new(Body::empty());
            *response.status_mut() = StatusCode::BAD_GATEWAY;
            response
        }
    }
}

/// workerd running the bundle, stopped when dropped.
struct Workerd {
    child: Child,
    url: String,
}

impl Drop for Workerd {
    fn drop(&mut self) {
        // Closing its standard input tells the launcher to dispose of workerd.
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
    }
}

/// Builds the bundle (or takes `EDGE_WORKER_BUNDLE`) and starts it in workerd with `bindings`.
fn start_workerd(bindings: &serde_json::Value) -> Workerd {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let (bundle, miniflare) = match (
        std::env::var("EDGE_WORKER_BUNDLE"),
        std::env::var("MINIFLARE_NODE_PATH"),
    ) {
        (Ok(bundle), Ok(miniflare)) => (bundle, miniflare),
        _ => {
            let out = Command::new("bash")
                .arg(format!("{root}/scripts/worker-build.sh"))
                // The test build: the /__conformance/ routes and the probe objects.
                .env("EDGE_WORKER_FEATURES", "conformance")
                .stderr(Stdio::inherit())
                .output()
                .expect("bash runs");
            assert!(out.status.success(), "scripts/worker-build.sh failed");
            let out = String::from_utf8(out.stdout).unwrap();
            let value = |key: &str| {
                out.lines()
                    .find_map(|l| l.strip_prefix(key))
                    .unwrap_or_else(|| panic!("worker-build.sh printed no {key}"))
                    .to_owned()
            };
            (value("bundle="), value("miniflare="))
        }
    };
    let mut child = Command::new("node")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/miniflare.mjs"))
        .arg(&bundle)
        .arg(bindings.to_string())
        .env("MINIFLARE_NODE_PATH", &miniflare)
        .env("CLOUDFLARE_CF_FETCH_ENABLED", "false")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node runs");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let url = loop {
        let line = lines.next().expect("workerd started").unwrap();
        if let Some(url) = line.strip_prefix("EDGE_WORKER_URL=") {
            break url.to_owned();
        }
        eprintln!("{line}");
    };
    // Keep forwarding workerd's log (the Worker's console) so a failing check shows it.
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            eprintln!("  workerd | {line}");
        }
    });
    Workerd { child, url }
}

struct World {
    worker: String,
    native: String,
    origin: Recorder,
    collector: Recorder,
}

async fn get(base: &str, path: &str) -> Exchange {
    send(base, Method::GET, path, &[]).await
}

/// One request with `headers` and no body; a request that gets no response fails the check.
async fn send(base: &str, method: Method, path: &str, headers: &[(&str, &str)]) -> Exchange {
    exchange_with_headers(base, method, path, headers, Bytes::new())
        .await
        .unwrap()
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{nanos}")
}

type Check = for<'a> fn(&'a World) -> Pin<Box<dyn Future<Output = ()> + 'a>>;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let checks: Vec<(&str, Check)> = vec![
        ("the_kv_kit_passes_on_workers_kv", |w| Box::pin(kv_kit(w))),
        ("the_cache_kit_passes_on_the_cache_api", |w| {
            Box::pin(cache_kit(w))
        }),
        ("the_storage_kit_passes_on_durable_object_storage", |w| {
            Box::pin(storage_kit(w))
        }),
        ("bad_input_at_a_binding_is_a_typed_error", |w| {
            Box::pin(bad_input(w))
        }),
        ("the_core_rule_set_runs_inside_workerd", |w| {
            Box::pin(core_rule_set(w))
        }),
        ("the_worker_holds_the_native_pipelines_conversation", |w| {
            Box::pin(same_conversation(w))
        }),
        ("jwt_keys_come_from_kv", |w| Box::pin(jwt(w))),
        ("rate_limits_answer_with_ratelimit_headers", |w| {
            Box::pin(rate_limits(w))
        }),
        ("cache_misses_coalesce_into_one_origin_fetch", |w| {
            Box::pin(coalescing(w))
        }),
        ("esi_pages_stream_out_of_the_worker", |w| Box::pin(esi(w))),
        ("a_counter_object_is_exact_under_concurrency", |w| {
            Box::pin(counter(w))
        }),
        ("a_room_object_talks_over_websockets", |w| Box::pin(room(w))),
        ("alarms_reach_the_object", |w| Box::pin(alarm(w))),
        ("spans_are_exported_in_wait_until", |w| {
            Box::pin(trace_export(w))
        }),
    ];
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let selected: Vec<_> = checks
        .into_iter()
        .filter(|(name, _)| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str())))
        .collect();
    println!("\nrunning {} tests", selected.len());
    let started = Instant::now();
    runtime.block_on(async {
        let origin = edge_example_pipeline::origin::DemoOrigin::start()
            .await
            .unwrap();
        let counted = Recorder::start(Some(origin.url())).await;
        let collector = Recorder::start(None).await;
        let workerd = start_workerd(&serde_json::json!({
            "ORIGIN_URL": counted.url,
            "OTLP_ENDPOINT": collector.url,
            "EDGE_CONFORMANCE": "on",
        }));
        // The native pipeline on the same origin, for the byte-for-byte comparison.
        let edge =
            Edge::start(&GatewayConfig::default().with_origin(origin.url().parse().unwrap()))
                .await
                .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let native = format!("http://{}", listener.local_addr().unwrap());
        let serving =
            edge_example_hyper_server::serve(listener, &edge, std::future::pending::<()>());
        tokio::spawn(serving);
        let world = World {
            worker: workerd.url.clone(),
            native,
            origin: counted,
            collector,
        };
        for (name, check) in &selected {
            check(&world).await;
            println!("test {name} ... ok");
        }
        drop(workerd);
        drop(edge);
    });
    println!(
        "\ntest result: ok. {} passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in {:.2}s\n",
        selected.len(),
        started.elapsed().as_secs_f64()
    );
}

async fn suite(world: &World, name: &str) -> serde_json::Value {
    let r = get(&world.worker, &format!("/__conformance/{name}")).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "the {name} kit failed: {}",
        String::from_utf8_lossy(&r.body)
    );
    r.json()
}

async fn kv_kit(world: &World) {
    assert_eq!(suite(world, "kv").await["passed"], 8);
}

async fn cache_kit(world: &World) {
    assert_eq!(suite(world, "cache").await["passed"], 5);
}

async fn storage_kit(world: &World) {
    assert_eq!(suite(world, "durable").await["passed"], 8);
}

async fn bad_input(world: &World) {
    let report = suite(world, "bad-input").await;
    let expected = serde_json::json!({
        "missing_kv_binding": "not found",
        "missing_object_binding": "not found",
        "kv_value_over_limit": "too large",
        "kv_key_over_limit": "invalid key",
        "kv_foreign_cursor": "invalid cursor",
        "cache_entry_over_limit": "too large",
        "cache_put_refused": "backend error",
        "fetch_refused": "backend unavailable",
    });
    for (case, kind) in expected.as_object().unwrap() {
        assert_eq!(&report[case], kind, "{case}: {report}");
    }
    // A cursor in our wrapping the platform never handed out: refused or read as the start, never a trap.
    let forged = report["kv_forged_cursor"].as_str().unwrap();
    assert!(
        ["accepted", "invalid cursor", "backend error"].contains(&forged),
        "{forged}"
    );
}

/// CRS, embedded in the bundle, decides in workerd as it does natively: an injection is refused, an
/// ordinary request passes.
async fn core_rule_set(world: &World) {
    let browser = [
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        ),
        ("accept", "text/html"),
    ];
    let attack = exchange_with_headers(
        &world.worker,
        Method::GET,
        "/__conformance/crs?q=1%27%20UNION%20SELECT%20password%20FROM%20users--%20-",
        &browser,
        Bytes::new(),
    )
    .await
    .unwrap();
    assert_eq!(
        attack.status,
        StatusCode::FORBIDDEN,
        "{}",
        String::from_utf8_lossy(&attack.body)
    );
    let benign = exchange_with_headers(
        &world.worker,
        Method::GET,
        "/__conformance/crs?q=O%27Brien&size=select+your+size",
        &browser,
        Bytes::new(),
    )
    .await
    .unwrap();
    assert_eq!(
        benign.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&benign.body)
    );
}

async fn same_conversation(world: &World) {
    let worker = standard_conversation(&world.worker).await.unwrap();
    let native = standard_conversation(&world.native).await.unwrap();
    assert_eq!(worker.len(), native.len());
    for (w, n) in worker.iter().zip(&native) {
        let (mut w, mut n) = (w.without_cache_state(), n.without_cache_state());
        // On Workers the visitor's country comes from the platform (`request.cf`), which clients cannot
        // forge; a native host reads the CDN's header. Miniflare's `cf` says US.
        // The home page is the only one that depends on it (its hero is the A/B variant).
        if w.request == "GET /" || w.request == "HEAD /" {
            for e in [&mut w, &mut n] {
                e.headers.remove("x-edge-variant");
                e.headers.remove("content-length");
                e.body = Bytes::new();
            }
        }
        assert_eq!(
            (w.status, fields(&w.headers), &w.body),
            (n.status, fields(&n.headers), &n.body),
            "{} differs between the Worker and the native pipeline",
            n.request
        );
    }
}

/// Header fields as HTTP defines them: by name, repeated lines joined with `, ` (RFC 9110 §5.3). A JS
/// `Headers` object joins them itself and iterates in name order, so this is what both hosts must agree on.
fn fields(headers: &http::HeaderMap) -> BTreeMap<String, String> {
    let mut fields: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        fields
            .entry(name.as_str().to_owned())
            .and_modify(|joined| {
                joined.push_str(", ");
                joined.push_str(&value);
            })
            .or_insert(value);
    }
    fields
}

async fn jwt(world: &World) {
    let base = &world.worker;
    let issued = get(base, "/_edge/demo-token?sub=alice").await;
    assert_eq!(issued.status, StatusCode::OK);
    let token = issued.json()["token"].as_str().unwrap().to_owned();
    let bearer = format!("Bearer {token}");
    let account = send(
        base,
        Method::GET,
        "/api/account",
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(account.status, StatusCode::OK, "{:?}", account.body);
    assert_eq!(account.json()["user"], "alice");
    let anonymous = get(base, "/api/account").await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert!(anonymous.header("www-authenticate").starts_with("Bearer"));
    let tampered = format!("{bearer}x");
    let bad = send(
        base,
        Method::GET,
        "/api/account",
        &[("authorization", &tampered)],
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    assert!(
        bad.header("www-authenticate").contains("invalid_token"),
        "{}",
        bad.header("www-authenticate")
    );
}

async fn rate_limits(world: &World) {
    let r = get(&world.worker, "/api/products").await;
    assert!(!r.header("ratelimit-policy").is_empty(), "{:?}", r.headers);
    assert!(!r.header("ratelimit").is_empty(), "{:?}", r.headers);
}

async fn coalescing(world: &World) {
    let path = format!("/api/slow?ms=400&fresh=30&n={}", unique("c"));
    let client = [("cf-connecting-ip", "203.0.113.30")];
    let all = futures_util::future::join_all((0..8).map(|_| {
        let path = path.clone();
        async move { send(&world.worker, Method::GET, &path, &client).await }
    }))
    .await;
    for r in &all {
        assert_eq!(
            r.status,
            StatusCode::OK,
            "{:?}",
            String::from_utf8_lossy(&r.body)
        );
    }
    assert_eq!(
        world.origin.count(&path),
        1,
        "8 concurrent misses, one origin fetch"
    );
    let hit = send(&world.worker, Method::GET, &path, &client).await;
    assert_eq!(hit.header("x-cache-status"), "HIT");
    assert_eq!(world.origin.count(&path), 1);
}

async fn esi(world: &World) {
    // The page's first bytes leave the Worker before the slow fragment (800 ms) has arrived.
    let request = Request::builder()
        .uri(format!("{}/esi/page?name=Ada", world.worker))
        .body(Body::empty())
        .unwrap();
    let sent = Instant::now();
    let response = HyperFetcher::new().fetch(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let mut first_at = None;
    let mut page = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.unwrap();
        first_at.get_or_insert_with(|| sent.elapsed());
        page.extend_from_slice(&chunk);
    }
    let page = String::from_utf8(page).unwrap();
    let total = sent.elapsed();
    assert!(
        page.contains("Ada"),
        "the greeting from the variable: {page}"
    );
    assert!(!page.contains("<esi:"), "assembled: {page}");
    let first = first_at.unwrap();
    assert!(
        total.saturating_sub(first) > Duration::from_millis(300),
        "streamed: first bytes at {first:?}, the end at {total:?}"
    );
}

async fn counter(world: &World) {
    let name = unique("hits");
    let path = format!("/api/counter/{name}");
    // A client of its own (Cloudflare reports the client's address in `CF-Connecting-IP`), so the
    // other checks' requests do not count against this one's `/api/` burst of 20.
    let client = [("cf-connecting-ip", "203.0.113.20")];
    let posts = futures_util::future::join_all((0..19).map(|_| {
        let path = path.clone();
        async move { send(&world.worker, Method::POST, &path, &client).await }
    }))
    .await;
    let mut values: Vec<u64> = posts
        .iter()
        .map(|r| {
            r.json()["value"]
                .as_u64()
                .unwrap_or_else(|| panic!("{} {}", r.status, String::from_utf8_lossy(&r.body)))
        })
        .collect();
    values.sort_unstable();
    assert_eq!(
        values,
        (1..=19).collect::<Vec<_>>(),
        "every increment seen once"
    );
    let read = send(&world.worker, Method::GET, &path, &client).await;
    assert_eq!(read.json()["value"], 19);
}

async fn next(client: &mut RoomClient) -> serde_json::Value {
    next_frame(client).await.expect("a frame in time")
}

async fn room(world: &World) {
    let base = &world.worker;
    let room = unique("lobby");
    let (mut ana, mut bo) = room_opening(base, &room).await.unwrap();
    let status = get(base, &format!("/rooms/{room}")).await;
    assert_eq!(
        status.json(),
        serde_json::json!({"present": ["ana", "bo"], "messages": 1})
    );
    bo.close(None).await.unwrap();
    assert_eq!(
        next(&mut ana).await,
        serde_json::json!({"type": "leave", "user": "bo"})
    );
}

async fn alarm(world: &World) {
    let path = format!("/__conformance/alarm/{}", unique("probe"));
    let set = send(&world.worker, Method::POST, &path, &[]).await;
    assert_eq!(set.json()["alarm_set"], true);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let state = get(&world.worker, &path).await.json();
        if state["fired"] == 1 {
            assert_eq!(state["alarm_set"], false, "a fired alarm is cleared");
            return;
        }
        assert!(Instant::now() < deadline, "the alarm never fired: {state}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn trace_export(world: &World) {
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    let r = send(
        &world.worker,
        Method::GET,
        "/about",
        &[("traceparent", &traceparent)],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let wanted: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&trace_id[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let exported: BTreeMap<String, usize> =
            world
                .collector
                .all()
                .iter()
                .fold(BTreeMap::new(), |mut m, r| {
                    *m.entry(r.path_and_query.clone()).or_default() += 1;
                    m
                });
        let found = world.collector.all().into_iter().find(|r| {
            r.path_and_query == "/v1/traces" && r.body.windows(16).any(|w| w == wanted.as_slice())
        });
        if let Some(export) = found {
            assert_eq!(export.headers["content-type"], "application/x-protobuf");
            let body = export.body.as_ref();
            assert!(
                body.windows(11).any(|w| w == b"edge-worker"),
                "the service name"
            );
            assert!(
                body.windows(3).any(|w| w == b"DFW"),
                "the colo, from request.cf"
            );
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no span of the request's trace exported: {exported:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
