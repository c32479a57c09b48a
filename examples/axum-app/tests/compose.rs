//! Every SDK layer composes with axum and tower-http without glue: outside and inside tower-http's
//! compression, timeout and CORS in one `ServiceBuilder`, and as an axum `route_layer`, over axum's own
//! request body. Each answer keeps its body and, where the length is known, its exact size hint (what
//! becomes `Content-Length`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::num::NonZeroU32;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::response::Html;
use axum::routing::get;
use edge_auth::jwt::JwtAuthLayer;
use edge_auth::jwt::{JwksProvider, StaticKeySource};
use edge_auth::jwt::{Validation, Verifier};
use edge_auth::ratelimit::{KeyExtractor, KeyedLimiter, Quota, RateLimitLayer};
use edge_auth::waf::{WafLayer, WafRules};
use edge_cache::layer::CacheLayer;
use edge_cache::memory::MemoryCache;
use edge_core::host::{ServiceFetcher, SetClientIpLayer};
use edge_core::trace::SplitMix;
use edge_core::wait_until::QueuedWaitUntil;
use edge_core::{ClientIp, ManualClock, SystemClock};
use edge_example_axum_app::{EdgeConfig, demo_token};
use edge_observe::Registry;
use edge_observe::{metrics::MetricsLayer, trace::TraceLayer};
use edge_render::esi::Assembler;
use edge_render::esi::layer::EsiLayer;
use edge_render::hints::BundleManifest;
use edge_render::hints::layer::HintsLayer;
use http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use tower::ServiceBuilder;
use tower::ServiceExt;
use tower_http::compression::CompressionLayer;
use tower_http::cors::CorsLayer;
use tower_http::timeout::TimeoutLayer;

const PAGE: &str = "<!doctype html><html><body><esi:include src=\"/fragment\"/></body></html>";

fn app() -> Router {
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/fragment", get(|| async { Html("<p>fragment</p>") }))
}

fn request() -> Request<Body> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut request = Request::get("http://shop.example/")
        .header(
            header::AUTHORIZATION,
            format!("Bearer {}", demo_token("alice", now)),
        )
        .body(Body::empty())
        .unwrap();
    request
        .extensions_mut()
        .insert(ClientIp([192, 0, 2, 1].into()));
    request
}

/// The three ways of adding `layer` to [`app`], each answering [`request`] with `expected`.
macro_rules! assert_composes {
    ($layer:expr, $expected:expr) => {{
        let timeout =
            || TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, Duration::from_secs(5));
        let outside = app().layer(
            ServiceBuilder::new()
                .layer($layer)
                .layer(CompressionLayer::new())
                .layer(timeout())
                .layer(CorsLayer::permissive()),
        );
        let inside = app().layer(
            ServiceBuilder::new()
                .layer(CompressionLayer::new())
                .layer(timeout())
                .layer(CorsLayer::permissive())
                .layer($layer),
        );
        let routed = app().route_layer($layer);
        for (how, app) in [
            ("outside", outside),
            ("inside", inside),
            ("route_layer", routed),
        ] {
            let response = app.oneshot(request()).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{how}");
            let hint = http_body::Body::size_hint(response.body()).exact();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            let expected: &str = $expected;
            assert_eq!(body, expected, "{how}");
            if expected == PAGE {
                assert_eq!(hint, Some(PAGE.len() as u64), "{how}: the length is known");
            }
        }
    }};
}

#[tokio::test]
async fn jwt_auth() {
    let config = EdgeConfig::demo();
    let keys = || {
        JwksProvider::new(
            StaticKeySource::new(config.jwks.clone()),
            SystemClock::new(),
            QueuedWaitUntil::new(),
        )
    };
    let verifier = || {
        Verifier::new(
            Validation::new()
                .with_issuer(config.issuer.clone())
                .with_audience(config.audience.clone()),
        )
    };
    assert_composes!(
        JwtAuthLayer::<serde_json::Value>::new(keys(), verifier()),
        PAGE
    );
}

#[tokio::test]
async fn rate_limit() {
    let quota = Quota::per_second(NonZeroU32::new(100).unwrap());
    assert_composes!(
        RateLimitLayer::new(
            KeyedLimiter::<String>::new(quota),
            KeyExtractor::client_ip()
        ),
        PAGE
    );
}

#[tokio::test]
async fn waf() {
    assert_composes!(WafLayer::new(WafRules::new()), PAGE);
}

#[tokio::test]
async fn cache() {
    let clock = ManualClock::new();
    assert_composes!(
        CacheLayer::new(clock.clone(), QueuedWaitUntil::new())
            .memory(MemoryCache::new(1 << 20, clock.clone())),
        PAGE
    );
}

#[tokio::test]
async fn esi() {
    let assembler = Assembler::builder(
        ServiceFetcher::new(app()),
        edge_core::host::tokio::TokioTimer::new(),
    )
    .build();
    assert_composes!(
        EsiLayer::new(assembler.clone(), ["/"]),
        "<!doctype html><html><body><p>fragment</p></body></html>"
    );
}

#[tokio::test]
async fn hints() {
    let manifest = BundleManifest::from_json(
        br#"{"src/main.ts":{"file":"assets/main.js","isEntry":true}}"#,
        "/",
    )
    .unwrap();
    assert_composes!(HintsLayer::new(manifest.clone()), PAGE);
}

#[tokio::test]
async fn trace() {
    assert_composes!(
        TraceLayer::new(SystemClock::new(), QueuedWaitUntil::new(), SplitMix::new(7)),
        PAGE
    );
}

#[tokio::test]
async fn metrics() {
    assert_composes!(MetricsLayer::new(Registry::new(), SystemClock::new()), PAGE);
}

#[tokio::test]
async fn client_ip() {
    assert_composes!(SetClientIpLayer::new(), PAGE);
}
