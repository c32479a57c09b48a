//! An ordinary axum 0.8 app with the edge SDK added, the way an adopter adds it.
//!
//! [`app`] is the app as it was: a to-do list with its own state, JSON routes and a static page. [`router`]
//! adds the SDK around it with axum's own `Router::layer` and `route_layer`, next to tower-http's layers,
//! with no body conversion anywhere: the SDK's layers take axum's bodies and answer with bodies that keep
//! their length.
//!
//! Outermost first, what a request meets:
//!
//! | layer | from | on |
//! |---|---|---|
//! | metrics (`/metrics`, `Server-Timing`), named by axum's matched route | `edge-observe` | every route |
//! | the request's span (W3C `traceparent`, `Server-Timing` stages) | `edge-observe` | every route |
//! | CORS | tower-http | every route |
//! | the client's address (`ConnectInfo`, through trusted proxies) | `edge-core` | every route |
//! | WAF | `edge-auth` | every route |
//! | per-client rate limit (`RateLimit` headers, 429) | `edge-auth` | every route |
//! | gzip | tower-http | every route |
//! | request timeout | tower-http | every route |
//! | ESI assembly of the page, fragments from the app's own router | `edge-render` | public routes |
//! | HTTP cache (memory tier, coalesced misses) | `edge-cache` | public routes |
//! | bearer-token authentication | `edge-auth` | private routes |

pub mod app;

use std::num::NonZeroU32;
use std::time::Duration;

use axum::Router;
use axum::http::{Method, StatusCode};
use edge_auth::jwt::JwtAuthLayer;
use edge_auth::jwt::{JwksProvider, StaticKeySource};
use edge_auth::jwt::{Validation, Verifier};
use edge_auth::ratelimit::{KeyExtractor, KeyedLimiter, Quota, RateLimitLayer};
use edge_auth::waf::{WafLayer, WafRules};
use edge_cache::layer::CacheLayer;
use edge_cache::memory::MemoryCache;
use edge_core::SystemClock;
use edge_core::host::tokio::HyperFetcher;
use edge_core::host::tokio::TokioHost;
use edge_core::host::{ServiceFetcher, SetClientIpLayer, TrustedProxies};
use edge_core::trace::SplitMix;
use edge_observe::Registry;
use edge_observe::otlp::OtlpExporter;
use edge_observe::subscriber::SpanExportLayer;
use edge_observe::{metrics::MetricsLayer, trace::TraceLayer};
use edge_render::esi::Assembler;
use edge_render::esi::layer::EsiLayer;
use tower_http::compression::CompressionLayer;
use tower_http::cors::{Any, CorsLayer};
use tower_http::timeout::TimeoutLayer;

use crate::app::{AppState, Caller};

/// What the SDK's layers are configured with.
#[derive(Clone, Debug)]
pub struct EdgeConfig {
    /// The JWK Set tokens are verified with.
    pub jwks: String,
    /// The `iss` tokens must carry.
    pub issuer: String,
    /// The `aud` tokens must carry.
    pub audience: String,
    /// Requests per client.
    pub quota: Quota,
    /// The proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: TrustedProxies,
    /// How long a request may take.
    pub request_timeout: Duration,
    /// The OTLP/HTTP collector traces go to (`http://127.0.0.1:4318`), if any.
    pub otlp_endpoint: Option<String>,
}

/// The demo's requests per client and minute (a `const`: a zero would not compile).
const PER_MINUTE: NonZeroU32 = NonZeroU32::new(120).unwrap();

/// The demo's HS256 secret: tokens signed with it are valid for [`EdgeConfig::demo`].
pub const DEMO_SECRET: &[u8] = b"a demo secret, never a real one!";

impl EdgeConfig {
    /// The demo's settings: one HS256 key ([`DEMO_SECRET`]), 120 requests a minute per client (bursts of
    /// 30), the local network's proxies trusted, 10 s per request.
    #[must_use]
    pub fn demo() -> Self {
        let key = base64_url(DEMO_SECRET);
        Self {
            jwks: format!(r#"{{"keys":[{{"kty":"oct","alg":"HS256","kid":"demo","k":"{key}"}}]}}"#),
            issuer: "https://issuer.example".to_owned(),
            audience: "todo-app".to_owned(),
            quota: Quota::per_minute(PER_MINUTE)
                .with_burst(30)
                .unwrap_or(Quota::per_minute(PER_MINUTE)),
            trusted_proxies: TrustedProxies::private_networks(),
            request_timeout: Duration::from_secs(10),
            otlp_endpoint: None,
        }
    }
}

/// The app's traces: the OTLP exporter, and the `tracing` layer that sends the app's own spans
/// (`#[instrument]`) through it as children of each request's span.
#[derive(Debug)]
pub struct Telemetry {
    exporter: OtlpExporter<HyperFetcher>,
}

impl Telemetry {
    /// Exports to the collector at `endpoint`.
    ///
    /// # Errors
    ///
    /// `endpoint` is not an absolute http(s) URL.
    pub fn new(endpoint: &str, host: &TokioHost) -> Result<Self, edge_core::Error> {
        let exporter = OtlpExporter::builder(host.fetcher().clone(), endpoint, host.timer())?
            .service_name("todo-app")
            .build();
        Ok(Self { exporter })
    }

    /// The layer to add to the app's `tracing` subscriber.
    #[must_use]
    pub fn tracing_layer(&self) -> SpanExportLayer {
        SpanExportLayer::new(
            self.exporter.clone(),
            SystemClock::new(),
            SplitMix::from_os(),
        )
    }

    /// Sends what is still queued; call before exiting.
    pub async fn flush(&self) {
        self.exporter.flush().await;
    }
}

/// The app with the SDK added (see the [crate docs](crate)). Serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()` so that clients are told apart.
pub fn router(
    state: AppState,
    config: EdgeConfig,
    host: &TokioHost,
    telemetry: Option<&Telemetry>,
) -> Router {
    let clock = host.clock();

    // Who may call the private routes: `route_layer`, so an unknown path is still a 404, not a 401.
    let keys = JwksProvider::new(StaticKeySource::new(config.jwks), clock, host.background());
    let verifier = Verifier::new(
        Validation::new()
            .with_issuer(config.issuer)
            .with_audience(config.audience),
    );
    let private = app::private_routes().route_layer(JwtAuthLayer::<Caller>::new(keys, verifier));

    // The public routes are cached, and the page's fragments assembled in front of the cache (the page
    // is stored with its `<esi:include>`s; fragments have their own lifetimes).
    let cache = CacheLayer::new(clock, host.background()).memory(MemoryCache::new(32 << 20, clock));
    let assembler = Assembler::builder(ServiceFetcher::new(app::fragments()), host.timer())
        .cache(MemoryCache::new(4 << 20, clock))
        .clock(clock)
        .build();
    let public = app::public_routes()
        .route_layer(cache)
        .route_layer(EsiLayer::new(assembler, ["/"]));

    // The request's span, exported after the response when there is a collector.
    let trace = TraceLayer::new(clock, host.background(), SplitMix::from_os());
    let trace = match telemetry {
        Some(telemetry) => trace.export_to(telemetry.exporter.clone()),
        None => trace,
    };

    // Around every route, outermost last.
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers(Any);
    Router::new()
        .merge(public)
        .merge(private)
        .with_state(state)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            config.request_timeout,
        ))
        .layer(CompressionLayer::new())
        .layer(RateLimitLayer::new(
            KeyedLimiter::<String>::new(config.quota),
            KeyExtractor::client_ip(),
        ))
        .layer(WafLayer::new(WafRules::new()))
        .layer(SetClientIpLayer::new().trust(config.trusted_proxies))
        .layer(cors)
        .layer(trace)
        .layer(MetricsLayer::new(Registry::new(), clock).endpoint("/metrics"))
}

/// A token for `sub` signed with [`DEMO_SECRET`], valid for an hour from `now_unix`: what the demo's
/// start-up prints, and what the tests send.
#[must_use]
pub fn demo_token(sub: &str, now_unix: u64) -> String {
    let config = EdgeConfig::demo();
    let header = base64_url(br#"{"alg":"HS256","typ":"JWT","kid":"demo"}"#);
    let claims = serde_json::json!({
        "sub": sub,
        "iss": config.issuer,
        "aud": config.audience,
        "iat": now_unix,
        "exp": now_unix + 3600,
    });
    let payload = base64_url(claims.to_string().as_bytes());
    let signing_input = format!("{header}.{payload}");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, DEMO_SECRET);
    let signature = base64_url(ring::hmac::sign(&key, signing_input.as_bytes()).as_ref());
    format!("{signing_input}.{signature}")
}

fn base64_url(bytes: &[u8]) -> String {
    edge_auth::jwt::base64url::encode(bytes)
}
