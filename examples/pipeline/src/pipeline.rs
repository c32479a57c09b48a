//! The edge pipeline: the tower stack in front of the origin, built in one place for every host.
//!
//! Today the stack is: metrics (`/_edge/metrics`, `Server-Timing`) → trace (the request's span from its
//! `traceparent`, exported over OTLP after the response when a collector is configured; JSON request logs)
//! → Link preload hints → WAF → demo token issuer → flag evaluation (the home page's A/B variant, from a flag
//! document in KV) → JWT authentication (`/api/account`, keys by `kid` from KV) → rate limits → durable
//! objects (`/api/counter/{name}`, `/rooms/{name}`) → the edge-rendered `/shell` page → ESI assembly of
//! `/esi/` pages (fragments from the origin, cached and coalesced) → HTTP cache (memory tier, coalesced misses,
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
use edge_core::clock::TokioTimer;
use edge_core::fetch::hyper::HyperFetcher;
use edge_core::kv::{DynKvStore, PutOptions};
use edge_core::trace::SplitMix;
use edge_core::wait_until::TokioWaitUntil;
use edge_core::{Body, KvStore, SystemClock};
use edge_kv::MemoryKv;
use edge_kv::redis::RedisKv;
use edge_observe::layer::{MetricsLayer, TraceLayer};
use edge_observe::otlp::{Encoding, OtlpExporter};
use edge_observe::propagate::TracedFetcher;
use edge_observe::{Registry, Routes};
use edge_render::esi::layer::EsiLayer;
use edge_render::esi::{Assembler, EsiSettings};
use edge_render::hints::BundleManifest;
use edge_render::hints::layer::HintsLayer;
use http::{Request, Response, Uri};
use tower::util::BoxCloneSyncService;

use crate::auth::{AUDIENCE, DemoIssuer, DemoTokenEndpoint, ISSUER, JWKS_KEY, forward_identity};
use crate::config::GatewayConfig;
use crate::flags::{DEMO_FLAGS, FLAGS_KEY, FlagVariant, Flags};
use crate::objects::{ObjectRoutes, Objects};
use crate::origin::DemoOrigin;
use crate::proxy::OriginProxy;
use crate::render::ShellPage;

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
    telemetry: Telemetry,
    housekeeping: tokio::task::JoinHandle<()>,
    metrics_export: Option<tokio::task::JoinHandle<()>>,
    _demo_origin: Option<DemoOrigin>,
}

impl Drop for Edge {
    fn drop(&mut self) {
        self.housekeeping.abort();
        if let Some(task) = &self.metrics_export {
            task.abort();
        }
    }
}

/// How often the metrics are exported when a collector is configured.
const METRICS_EXPORT_INTERVAL: Duration = Duration::from_secs(10);

/// The pipeline's telemetry: one registry of metrics, the trace layer, and the OTLP exporter when a
/// collector is configured.
pub struct Telemetry {
    registry: Registry,
    trace: TraceLayer,
    exporter: Option<OtlpExporter<HyperFetcher>>,
}

impl Telemetry {
    /// Telemetry as `config` says: OTLP export to its collector (if any), JSON request logs to standard
    /// output (if asked); post-response work runs on `background`.
    ///
    /// # Errors
    ///
    /// The collector's URL is not an absolute http(s) URL, or the OS has no randomness for trace ids.
    pub fn new(config: &GatewayConfig, background: TokioWaitUntil) -> io::Result<Self> {
        let mut seed = [0u8; 8];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed)
            .map_err(|_| io::Error::other("no randomness for trace ids"))?;
        let mut trace = TraceLayer::new(
            SystemClock::new(),
            background,
            SplitMix::new(u64::from_le_bytes(seed)),
        )
        .routes(routes());
        let exporter = match &config.otlp_endpoint {
            Some(endpoint) => {
                let encoding = if config.otlp_json {
                    Encoding::Json
                } else {
                    Encoding::Protobuf
                };
                let fetcher = HyperFetcher::new().with_timeout(Duration::from_secs(10));
                let exporter = OtlpExporter::builder(fetcher, endpoint, TokioTimer::new())
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?
                    .service_name("edge-gateway")
                    .encoding(encoding)
                    .build();
                trace = trace.export_to(exporter.clone());
                Some(exporter)
            }
            None => None,
        };
        if config.request_log {
            trace = trace.log_to(|line: &str| println!("{line}"));
        }
        Ok(Self {
            registry: Registry::new(),
            trace,
            exporter,
        })
    }

    /// The metrics.
    #[must_use]
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The OTLP exporter, when a collector is configured.
    #[must_use]
    pub fn exporter(&self) -> Option<&OtlpExporter<HyperFetcher>> {
        self.exporter.as_ref()
    }

    /// Exports the metrics every [`METRICS_EXPORT_INTERVAL`] while the returned task runs.
    fn start_metrics_export(&self) -> Option<tokio::task::JoinHandle<()>> {
        let exporter = self.exporter.clone()?;
        let registry = self.registry.clone();
        Some(tokio::spawn(async move {
            let mut every = tokio::time::interval(METRICS_EXPORT_INTERVAL);
            every.tick().await;
            loop {
                every.tick().await;
                // A failed export is retried by the next one: the numbers are cumulative.
                let _ = exporter.export_metrics(&registry).await;
            }
        }))
    }
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("trace", &self.trace)
            .field("exporter", &self.exporter)
            .finish_non_exhaustive()
    }
}

/// The routes spans and metrics are named by: a fixed set, whatever paths clients send.
fn routes() -> Routes {
    Routes::new()
        .exact("/")
        .prefix("/api/account")
        .prefix("/api/counter/")
        .prefix("/api/products")
        .prefix("/api/slow")
        .prefix("/api/")
        .prefix("/rooms/")
        .prefix("/_edge/")
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
        let telemetry = Telemetry::new(config, background.clone())?;
        let parts = Parts {
            flags,
            keys,
            issuer,
            objects: objects.clone(),
            cache,
            manifest: crate::render::demo_manifest()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?,
        };
        let service = build(fetcher, origin_url.clone(), parts, &telemetry)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let housekeeping = objects.start_housekeeping();
        let metrics_export = telemetry.start_metrics_export();
        Ok(Self {
            service,
            origin_url,
            kv,
            background,
            objects,
            telemetry,
            housekeeping,
            metrics_export,
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

    /// The metrics and the OTLP exporter.
    #[must_use]
    pub fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }

    /// Waits for post-response work (span export, cache writes) to finish, then sends what telemetry is
    /// left; call before exiting.
    pub async fn drain(&self) {
        self.background.drain().await;
        if let Some(exporter) = &self.telemetry.exporter {
            exporter.flush().await;
            let _ = exporter.export_metrics(&self.telemetry.registry).await;
        }
    }
}

/// What the stack's stateful layers are built from.
pub struct Parts {
    /// The flag document that decides A/B variants.
    pub flags: Flags,
    /// The keys tokens are verified with.
    pub keys: Keys,
    /// The demo token issuer.
    pub issuer: Arc<DemoIssuer>,
    /// The durable objects' routes.
    pub objects: Objects,
    /// The HTTP cache.
    pub cache: CacheLayer<SystemClock>,
    /// The bundle manifest `Link` hints come from.
    pub manifest: BundleManifest,
}

impl std::fmt::Debug for Parts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parts").finish_non_exhaustive()
    }
}

/// Builds the tower stack over `fetcher`, forwarding to `origin`: metrics and the request's trace
/// (`telemetry`), the WAF, the demo issuer, the flags deciding A/B variants, JWT authentication of
/// `/api/account` with the keys, per-client rate limits, the verified identity forwarded, the durable
/// objects' routes, the HTTP cache, then the origin (through a fetcher that carries the trace).
///
/// # Errors
///
/// A rate-limit quota is invalid (they are constants here; the error is for the type's sake).
pub fn build<F>(
    fetcher: F,
    origin: Uri,
    parts: Parts,
    telemetry: &Telemetry,
) -> Result<EdgeService, QuotaError>
where
    F: edge_core::Fetcher + 'static,
{
    let Parts {
        flags,
        keys,
        issuer,
        objects,
        cache,
        manifest,
    } = parts;
    let verifier = Verifier::new(
        Validation::new()
            .with_issuer(ISSUER)
            .with_audience(AUDIENCE),
    );
    let auth = JwtAuthLayer::<_, _, _, serde_json::Value>::new(keys, verifier)
        .protect_prefix("/api/account");
    let rate_limit = rate_limit_layer()?;
    let waf = waf_layer()?;
    let metrics = MetricsLayer::new(telemetry.registry.clone(), SystemClock::new())
        .endpoint("/_edge/metrics")
        .routes(routes());
    let fetcher = Arc::new(TracedFetcher::new(fetcher).with_stage("origin"));
    let esi = esi_layer(Arc::clone(&fetcher), origin.clone());
    let hints = HintsLayer::new(manifest);
    let shell_origin = origin.clone();
    let shell_fetcher = Arc::clone(&fetcher);
    let stack = tower::ServiceBuilder::new()
        .layer(metrics)
        .layer(telemetry.trace.clone())
        .layer(hints)
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
        .layer(tower::layer::layer_fn(move |inner| {
            ShellPage::new(inner, Arc::clone(&shell_fetcher), shell_origin.clone())
        }))
        .layer(esi)
        .layer(cache)
        .map_request(forward_identity)
        .service(OriginProxy::new(fetcher, origin));
    Ok(BoxCloneSyncService::new(stack))
}

/// ESI for the pages under `/esi/`: fragments from the origin (through the same traced fetcher), cached
/// in 8 MiB of isolate memory for as long as their `Cache-Control` allows, coalesced.
fn esi_layer<F: edge_core::Fetcher + 'static>(
    fetcher: F,
    origin: Uri,
) -> EsiLayer<F, MemoryCache<SystemClock>> {
    let assembler = Assembler::new(
        fetcher,
        Some(MemoryCache::new(8 << 20, SystemClock::new())),
        SystemClock::new(),
        TokioTimer::new(),
        EsiSettings::default(),
    );
    EsiLayer::new(assembler, ["/esi/"]).with_base(origin)
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
