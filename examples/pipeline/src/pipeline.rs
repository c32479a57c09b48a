//! The edge pipeline: the tower stack in front of the origin, built in one place for every host.
//!
//! Today the stack is: metrics (`/_edge/metrics`, `Server-Timing`) → WAF → demo token issuer → flag evaluation (the home page's A/B variant, from a flag
//! document in KV) → JWT authentication (`/api/account`, keys by `kid` from KV) → rate limits → durable
//! objects (`/api/counter/{name}`, `/rooms/{name}`) → HTTP cache (memory tier, coalesced misses,
//! stale-while-revalidate) → identity forwarding → origin proxy.
//! The SDK's request path grows here, outermost first: trace context → WAF → JWT → rate limit → cache →
//! edge-side render → origin proxy, each a tower layer added in [`build`], so axum and bare hyper both get it.
//!
//! The edge's KV is a [`MemoryKv`] by default and a [`RedisKv`] when a Redis URL is configured (`REDIS_URL`):
//! the same code over either, through `Arc<dyn DynKvStore>`.

use std::convert::Infallible;
use std::io;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use edge_auth::jwks::{JwksProvider, KvKeySource};
use edge_auth::jwt::{Validation, Verifier};
use edge_auth::layer::JwtAuthLayer;
use edge_auth::ratelimit::{KeyExtractor, KeyedLimiter, Quota, QuotaError, RateLimitLayer};
use edge_auth::waf::{Waf, WafLayer};
use edge_cache::layer::CacheLayer;
use edge_cache::memory::MemoryCache;
use edge_core::fetch::hyper::HyperFetcher;
use edge_core::kv::{DynKvStore, PutOptions};
use edge_core::wait_until::TokioWaitUntil;
use edge_core::{Body, KvStore, SystemClock};
use edge_kv::MemoryKv;
use edge_kv::redis::RedisKv;
use edge_observe::Registry;
use edge_observe::layer::MetricsLayer;
use http::{Request, Response, Uri};
use tower::util::BoxCloneSyncService;

use crate::auth::{AUDIENCE, DemoIssuer, DemoTokenEndpoint, ISSUER, JWKS_KEY, forward_identity};
use crate::config::GatewayConfig;
use crate::flags::{DEMO_FLAGS, FLAGS_KEY, FlagVariant, Flags};
use crate::objects::{ObjectRoutes, Objects};
use crate::origin::DemoOrigin;
use crate::proxy::OriginProxy;

/// The pipeline as one cloneable, thread-safe service over [`edge_core::Body`]. It never fails: every error
/// is already an HTTP response.
pub type EdgeService = BoxCloneSyncService<Request<Body>, Response<Body>, Infallible>;

/// A started pipeline: the service, the demo origin if one was started, and the post-response work.
pub struct Edge {
    service: EdgeService,
    origin_url: Uri,
    kv: Arc<dyn DynKvStore>,
    background: TokioWaitUntil,
    objects: Objects,
    housekeeping: tokio::task::JoinHandle<()>,
    _demo_origin: Option<DemoOrigin>,
}

impl Drop for Edge {
    fn drop(&mut self) {
        self.housekeeping.abort();
    }
}

impl Edge {
    /// Builds the pipeline for `config`, starting the embedded demo origin unless an origin is configured.
    /// Must be called inside a tokio runtime.
    ///
    /// # Errors
    ///
    /// The demo origin's port could not be bound, there is no tokio runtime, or the configured Redis cannot
    /// be reached.
    pub async fn start(config: &GatewayConfig) -> io::Result<Self> {
        let (origin_url, demo_origin) = match &config.origin {
            Some(origin) => (origin.clone(), None),
            None => {
                let demo = DemoOrigin::start().await?;
                let url = demo
                    .url()
                    .parse()
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                (url, Some(demo))
            }
        };
        let background = TokioWaitUntil::current().map_err(io::Error::other)?;
        let kv: Arc<dyn DynKvStore> = match &config.redis_url {
            Some(url) => {
                let redis = RedisKv::connect(url).await.map_err(io::Error::other)?;
                Arc::new(redis.with_namespace("edge-gateway"))
            }
            None => Arc::new(MemoryKv::new()),
        };
        // First start on this KV: give it the demo flags. An existing document (edited by an operator) wins.
        if kv.get(FLAGS_KEY).await.map_err(io::Error::other)?.is_none() {
            kv.put(
                FLAGS_KEY,
                Bytes::from_static(DEMO_FLAGS.as_bytes()),
                PutOptions::new(),
            )
            .await
            .map_err(io::Error::other)?;
        }
        let flags = Flags::new(
            Arc::clone(&kv),
            FLAGS_KEY,
            SystemClock::new(),
            background.clone(),
        );
        let issuer = Arc::new(DemoIssuer::new().map_err(|e| io::Error::other(e.to_string()))?);
        // The demo issuer's key set is published where a real issuer's rotation job would put it.
        if kv.get(JWKS_KEY).await.map_err(io::Error::other)?.is_none() {
            kv.put(JWKS_KEY, Bytes::from(issuer.jwks()), PutOptions::new())
                .await
                .map_err(io::Error::other)?;
        }
        let keys = Keys::new(
            KvKeySource::new(Arc::clone(&kv), JWKS_KEY),
            SystemClock::new(),
            background.clone(),
        );
        let fetcher = HyperFetcher::new().with_timeout(config.origin_timeout);
        let objects = Objects::open(config.objects_dir.as_deref())?;
        let cache = cache_layer(background.clone(), config.purge_token.clone());
        let service = build(
            fetcher,
            origin_url.clone(),
            flags,
            keys,
            issuer,
            objects.clone(),
            cache,
        )
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let housekeeping = objects.start_housekeeping();
        Ok(Self {
            service,
            origin_url,
            kv,
            background,
            objects,
            housekeeping,
            _demo_origin: demo_origin,
        })
    }

    /// The pipeline, ready to be served. Clones are cheap and share everything.
    #[must_use]
    pub fn service(&self) -> EdgeService {
        self.service.clone()
    }

    /// The durable objects (rooms, counters), for hosts that accept WebSockets into rooms.
    #[must_use]
    pub fn objects(&self) -> &Objects {
        &self.objects
    }

    /// The edge's KV (memory or Redis).
    #[must_use]
    pub fn kv(&self) -> &Arc<dyn DynKvStore> {
        &self.kv
    }

    /// The origin requests are forwarded to.
    #[must_use]
    pub fn origin_url(&self) -> &Uri {
        &self.origin_url
    }

    /// Waits for post-response work (span export, cache writes) to finish; call before exiting.
    pub async fn drain(&self) {
        self.background.drain().await;
    }
}

/// Builds the tower stack over `fetcher`, forwarding to `origin`: the WAF, the demo issuer, `flags`
/// deciding A/B variants, JWT authentication of `/api/account` with `keys`, per-client rate limits, the
/// verified identity forwarded, the durable objects' routes (`objects`), the HTTP cache (`cache`), then
/// the origin.
///
/// # Errors
///
/// A rate-limit quota is invalid (they are constants here; the error is for the type's sake).
pub fn build<F>(
    fetcher: F,
    origin: Uri,
    flags: Flags,
    keys: Keys,
    issuer: Arc<DemoIssuer>,
    objects: Objects,
    cache: CacheLayer<SystemClock>,
) -> Result<EdgeService, QuotaError>
where
    F: edge_core::Fetcher + 'static,
{
    let verifier = Verifier::new(
        Validation::new()
            .with_issuer(ISSUER)
            .with_audience(AUDIENCE),
    );
    let auth = JwtAuthLayer::<_, _, _, serde_json::Value>::new(keys, verifier)
        .protect_prefix("/api/account");
    let rate_limit = rate_limit_layer()?;
    let waf = waf_layer()?;
    let metrics = MetricsLayer::new(Registry::new(), SystemClock::new()).endpoint("/_edge/metrics");
    let stack = tower::ServiceBuilder::new()
        .layer(metrics)
        .layer(waf)
        .layer(tower::layer::layer_fn(move |inner| {
            DemoTokenEndpoint::new(inner, Arc::clone(&issuer))
        }))
        .layer(tower::layer::layer_fn(move |inner| {
            FlagVariant::new(inner, flags.clone())
        }))
        .layer(auth)
        .layer(rate_limit)
        .layer(tower::layer::layer_fn(move |inner| {
            ObjectRoutes::new(inner, objects.clone())
        }))
        .layer(cache)
        .map_request(forward_identity)
        .service(OriginProxy::new(fetcher, origin));
    Ok(BoxCloneSyncService::new(stack))
}

/// The HTTP cache in front of the origin: 64 MiB of isolate memory, refreshes after the response, and a
/// purge endpoint at `/_edge/purge` when a token is configured.
fn cache_layer(background: TokioWaitUntil, purge_token: Option<String>) -> CacheLayer<SystemClock> {
    let layer = CacheLayer::new(SystemClock::new(), background)
        .memory(MemoryCache::new(64 << 20, SystemClock::new()));
    match purge_token {
        Some(token) => layer.purge_endpoint("/_edge/purge", token),
        None => layer,
    }
}

/// Per-client limits, in memory: the token's subject when the request carries a verified one, else the
/// connection's address. Pages: 600 a minute, bursts of 120. The API: 120 a minute, bursts of 20.
fn rate_limit_layer() -> Result<RateLimitLayer, QuotaError> {
    let limiter = |per_minute: u32, burst: u32| {
        Ok::<_, QuotaError>(KeyedLimiter::<String>::new(
            Quota::per_minute(per_minute)?.with_burst(burst)?,
        ))
    };
    let key = KeyExtractor::jwt_sub::<serde_json::Value>().or(KeyExtractor::client_ip());
    Ok(RateLimitLayer::new(limiter(600, 120)?, key).route("/api/", limiter(120, 20)?))
}

/// The WAF's recommended rules, every one blocking; a client whose requests trip rules five times in ten
/// minutes is refused outright after that, even by rules that only log.
fn waf_layer() -> Result<WafLayer, QuotaError> {
    let offenders = KeyedLimiter::<String>::new(Quota::new(5, Duration::from_secs(600))?);
    Ok(WafLayer::new(Waf::new()).penalize(offenders, KeyExtractor::client_ip()))
}

/// The signing keys the pipeline verifies tokens with: the JWK Set in the edge's KV.
pub type Keys = JwksProvider<KvKeySource<Arc<dyn DynKvStore>>, SystemClock, TokioWaitUntil>;

impl std::fmt::Debug for Edge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Edge")
            .field("origin_url", &self.origin_url)
            .field("background", &self.background)
            .finish_non_exhaustive()
    }
}
