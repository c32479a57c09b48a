//! The whole request path as an adopter builds it: an axum handler behind every layer of the gateway's stack
//! (metrics, trace, hints, WAF, JWT on the route, per-client rate limit, cache), answering a cache HIT, next
//! to the same handler bare, in one process and one run. Then the stack with one layer left out at a time:
//! the difference is that layer's CPU per request.
//!
//! The ratio `bare / full` is what issue 22 targets (≥ 0.6 without JWT, ≥ 0.5 with it).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::convert::Infallible;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use edge_auth::jwt::base64url::encode as b64;
use edge_auth::jwt::{JwksProvider, JwtAuthLayer, StaticKeySource, Validation, Verifier};
use edge_auth::ratelimit::{ClientIp, KeyExtractor, KeyedLimiter, Quota, RateLimitLayer};
use edge_auth::waf::{WafLayer, WafRules};
use edge_cache::MemoryCache;
use edge_cache::layer::CacheLayer;
use edge_core::trace::SplitMix;
use edge_core::wait_until::QueuedWaitUntil;
use edge_core::{Body, SystemClock};
use edge_observe::{Registry, metrics::MetricsLayer, trace::TraceLayer};
use edge_render::hints::BundleManifest;
use edge_render::hints::layer::HintsLayer;
use http::{Request, Response, header};
use tower::util::BoxCloneService;
use tower::{ServiceBuilder, ServiceExt};

const SECRET: &[u8] = b"a request-path bench secret, 32b";
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const MANIFEST: &str = r#"{"src/main.ts":{"file":"assets/main-4f2a.js","isEntry":true,"css":["assets/main-9c1e.css"]}}"#;

static PAGE: [u8; 2048] = [b'x'; 2048];

/// The layers of the gateway's stack, outermost first.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    Metrics,
    Trace,
    Hints,
    Waf,
    Jwt,
    RateLimit,
    Cache,
}

const PARTS: [(Part, &str); 7] = [
    (Part::Metrics, "metrics"),
    (Part::Trace, "trace"),
    (Part::Hints, "hints"),
    (Part::Waf, "WAF"),
    (Part::Jwt, "JWT (HS256)"),
    (Part::RateLimit, "rate limit"),
    (Part::Cache, "cache"),
];

type Service = BoxCloneService<Request<Body>, Response<Body>, Infallible>;

/// The handler: a small cacheable HTML page.
fn app() -> axum::Router {
    axum::Router::new().route(
        "/products",
        axum::routing::get(|| async {
            (
                [
                    (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                    (header::CACHE_CONTROL, "public, max-age=3600"),
                ],
                Bytes::from_static(&PAGE),
            )
        }),
    )
}

/// The stack with the parts in `with`, over the handler.
fn stack(with: &[Part]) -> Service {
    let has = |part| with.contains(&part);
    let background = QueuedWaitUntil::new();
    let jwks = format!(
        r#"{{"keys":[{{"kty":"oct","alg":"HS256","kid":"k1","k":"{}"}}]}}"#,
        b64(SECRET)
    );
    let keys = JwksProvider::new(
        StaticKeySource::new(jwks),
        SystemClock::new(),
        background.clone(),
    );
    let verifier = Verifier::new(
        Validation::new()
            .with_issuer("https://issuer.example")
            .with_audience("shop"),
    );
    let limit = Quota::per_second(NonZeroU32::new(1_000_000_000).unwrap());
    let manifest = BundleManifest::from_json(MANIFEST.as_bytes(), "/")
        .unwrap()
        .route("/products", "src/main.ts");
    let service = ServiceBuilder::new()
        .option_layer(
            has(Part::Metrics).then(|| MetricsLayer::new(Registry::new(), SystemClock::new())),
        )
        .option_layer(
            has(Part::Trace)
                .then(|| TraceLayer::new(SystemClock::new(), background.clone(), SplitMix::new(1))),
        )
        .option_layer(has(Part::Hints).then(|| HintsLayer::new(manifest)))
        .option_layer(has(Part::Waf).then(|| WafLayer::new(WafRules::new())))
        .option_layer(
            has(Part::Jwt).then(|| JwtAuthLayer::<serde_json::Value>::new(keys, verifier)),
        )
        .option_layer(has(Part::RateLimit).then(|| {
            RateLimitLayer::new(
                KeyedLimiter::<String>::new(limit),
                KeyExtractor::client_ip(),
            )
        }))
        .option_layer(has(Part::Cache).then(|| {
            CacheLayer::new(SystemClock::new(), background.clone())
                .memory(MemoryCache::new(64 << 20, SystemClock::new()))
        }))
        .map_response(|response: Response<axum::body::Body>| response.map(Body::from_http_body))
        .service(app());
    BoxCloneService::new(service)
}

fn token() -> String {
    let header = b64(br#"{"alg":"HS256","typ":"JWT","kid":"k1"}"#);
    let claims = b64(
        br#"{"iss":"https://issuer.example","aud":"shop","sub":"user-42","exp":4102444800,"iat":1767225600,"scope":"read"}"#,
    );
    let input = format!("{header}.{claims}");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET);
    let signature = b64(ring::hmac::sign(&key, input.as_bytes()).as_ref());
    format!("{input}.{signature}")
}

fn request_with(token: &str) -> Request<Body> {
    Request::builder()
        .uri("https://shop.example/products?page=2&sort=price")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::ACCEPT, "text/html")
        .header(header::USER_AGENT, "Mozilla/5.0 (bench)")
        .header("traceparent", TRACEPARENT)
        .header("cf-ray", "8f1c2d3e4f5a6b7c-FRA")
        .extension(ClientIp(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))))
        .body(Body::empty())
        .unwrap()
}

fn request_path(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let token = token();
    let request = || request_with(&token);
    let all: Vec<Part> = PARTS.iter().map(|(part, _)| *part).collect();

    // The full stack must answer a HIT, or the comparison means nothing.
    let full = stack(&all);
    let answer = |service: &Service| {
        runtime.block_on(async {
            let response = service.clone().oneshot(request()).await.unwrap();
            let status = response.status();
            let cache = response
                .headers()
                .get("cache-status")
                .map(|v| v.to_str().unwrap().to_owned());
            black_box(response.into_body());
            (status, cache)
        })
    };
    answer(&full);
    let (status, cache) = answer(&full);
    assert_eq!(status, 200);
    assert!(
        cache.as_deref().is_some_and(|c| c.contains("hit")),
        "{cache:?}"
    );

    let mut group = c.benchmark_group("request_path/cache_hit");
    let mut bare = app();
    support::bench_service(&mut group, "bare axum handler", &runtime, &mut bare, || {
        let request = request();
        let (parts, body) = request.into_parts();
        Request::from_parts(parts, axum::body::Body::new(body))
    });
    let mut everything = full.clone();
    support::bench_service(&mut group, "full stack", &runtime, &mut everything, request);
    for (left_out, name) in PARTS {
        let with: Vec<Part> = all.iter().copied().filter(|p| *p != left_out).collect();
        let mut service = stack(&with);
        answer(&service);
        support::bench_service(
            &mut group,
            &format!("full stack without {name}"),
            &runtime,
            &mut service,
            request,
        );
    }
    group.finish();
}

criterion_group!(benches, request_path);
criterion_main!(benches);
