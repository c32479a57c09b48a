//! The app with the SDK, over real HTTP on loopback: each capability as a client sees it, lengths
//! included (no response the cache or a layer produced goes out chunked when its length is known).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use edge_auth::ratelimit::Quota;
use edge_core::host::tokio::TokioHost;
use edge_example_axum_app::app::AppState;
use edge_example_axum_app::{EdgeConfig, demo_token, router};
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }

    fn length(&self) -> Option<usize> {
        self.headers
            .get(header::CONTENT_LENGTH)
            .map(|v| v.to_str().unwrap().parse().unwrap())
    }
}

struct App {
    addr: SocketAddr,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

impl App {
    async fn start(config: EdgeConfig) -> Self {
        let host = TokioHost::new().unwrap();
        let app = router(AppState::default(), config, &host, None);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
        });
        Self {
            addr,
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Reply {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap();
        let response = self.client.request(request).await.unwrap();
        let (parts, body) = response.into_parts();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await.unwrap().to_bytes(),
        }
    }

    async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, &[], "").await
    }
}

fn token(sub: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    format!("Bearer {}", demo_token(sub, now))
}

#[tokio::test]
async fn cache_hits_and_head_keep_their_length() {
    let app = App::start(EdgeConfig::demo()).await;
    let miss = app.get("/api/todos").await;
    assert_eq!(miss.status, StatusCode::OK);
    assert_eq!(miss.headers["x-cache-status"], "MISS");
    assert_eq!(miss.text(), "[]");
    let hit = app.get("/api/todos").await;
    assert_eq!(hit.headers["x-cache-status"], "HIT");
    assert_eq!(hit.length(), Some(2), "{:?}", hit.headers);
    assert!(hit.headers.get(header::TRANSFER_ENCODING).is_none());
    assert!(hit.headers.get(header::AGE).is_some());
    let head = app.send(Method::HEAD, "/api/todos", &[], "").await;
    assert_eq!(head.length(), Some(2), "HEAD says the GET's length");
    assert!(head.body.is_empty());
    // Through the SDK's layers, the page keeps its identity: metrics and trace timings ride along.
    let timing: Vec<_> = hit.headers.get_all("server-timing").iter().collect();
    assert!(
        timing
            .iter()
            .any(|v| v.to_str().unwrap().starts_with("edge;dur=")),
        "{timing:?}"
    );
}

#[tokio::test]
async fn the_page_is_assembled_from_the_apps_own_fragments_and_compressed() {
    let app = App::start(EdgeConfig::demo()).await;
    let page = app.get("/").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.text()
            .contains("<p class=\"greeting\">Hello from a fragment</p>"),
        "{}",
        page.text()
    );
    assert!(!page.text().contains("esi:include"));
    let gzipped = app
        .send(Method::GET, "/", &[("accept-encoding", "gzip")], "")
        .await;
    assert_eq!(gzipped.headers[header::CONTENT_ENCODING], "gzip");
    assert!(!gzipped.body.is_empty() && !gzipped.body.starts_with(b"<!doctype"));
}

#[tokio::test]
async fn private_routes_need_a_token_and_see_the_caller() {
    let app = App::start(EdgeConfig::demo()).await;
    let anonymous = app.get("/api/me").await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert!(
        anonymous.headers[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    assert_eq!(
        anonymous.length(),
        Some(anonymous.body.len()),
        "a rejection has a length"
    );
    let forged = app
        .send(
            Method::GET,
            "/api/me",
            &[("authorization", "Bearer a.b.c")],
            "",
        )
        .await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
    let alice = token("alice");
    let me = app
        .send(Method::GET, "/api/me", &[("authorization", &alice)], "")
        .await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.text());
    assert_eq!(me.text(), r#"{"sub":"alice"}"#);
    let added = app
        .send(
            Method::POST,
            "/api/todos",
            &[
                ("authorization", &alice),
                ("content-type", "application/json"),
            ],
            r#"{"title":"water the plants"}"#,
        )
        .await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.text());
    assert_eq!(
        added.text(),
        r#"{"id":1,"title":"water the plants","owner":"alice"}"#
    );
    // The public list is not behind the token; an unknown path is a 404, not a 401.
    assert_eq!(app.get("/api/todos").await.status, StatusCode::OK);
    assert_eq!(app.get("/api/nothing").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn attacks_are_blocked_before_the_app() {
    let app = App::start(EdgeConfig::demo()).await;
    let xss = app
        .get("/api/todos?q=%3Cscript%3Ealert(1)%3C/script%3E")
        .await;
    assert_eq!(xss.status, StatusCode::FORBIDDEN);
    let sqli = app
        .send(
            Method::POST,
            "/api/todos",
            &[
                ("authorization", &token("mallory")),
                ("content-type", "application/json"),
            ],
            r#"{"title":"x' OR '1'='1' UNION SELECT password FROM users --"}"#,
        )
        .await;
    assert_eq!(sqli.status, StatusCode::FORBIDDEN, "{}", sqli.text());
}

#[tokio::test]
async fn each_client_behind_the_trusted_proxy_has_its_own_quota() {
    let mut config = EdgeConfig::demo();
    config.quota = Quota::new(2, Duration::from_secs(60)).unwrap();
    let app = App::start(config).await;
    let from = |client: &'static str| [("x-forwarded-for", client)];
    for _ in 0..2 {
        let ok = app
            .send(Method::GET, "/api/todos", &from("203.0.113.1"), "")
            .await;
        assert_eq!(ok.status, StatusCode::OK);
        assert!(ok.headers.get("ratelimit").is_some(), "{:?}", ok.headers);
    }
    let limited = app
        .send(Method::GET, "/api/todos", &from("203.0.113.1"), "")
        .await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.headers.get(header::RETRY_AFTER).is_some());
    let other = app
        .send(Method::GET, "/api/todos", &from("203.0.113.2"), "")
        .await;
    assert_eq!(
        other.status,
        StatusCode::OK,
        "another client behind the same proxy"
    );
}

#[tokio::test]
async fn metrics_are_named_by_the_routes_axum_matched_and_cors_answers_preflight() {
    let app = App::start(EdgeConfig::demo()).await;
    app.get("/api/todos").await;
    app.get("/api/todos?page=2").await;
    let metrics = app.get("/metrics").await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(
        metrics
            .text()
            .contains(r#"edge_requests_total{method="GET",route="/api/todos",status_class="2xx""#),
        "{}",
        metrics.text()
    );
    let preflight = app
        .send(
            Method::OPTIONS,
            "/api/todos",
            &[
                ("origin", "https://app.example"),
                ("access-control-request-method", "POST"),
            ],
            "",
        )
        .await;
    assert!(preflight.status.is_success(), "{}", preflight.status);
    assert_eq!(preflight.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
}
