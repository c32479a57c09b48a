//! The edge pipeline: the tower stack in front of the origin, built in one place for every host.
//!
//! The stack, outermost first: metrics (`/_edge/metrics`, `Server-Timing`) → trace (the request's span from
//! its `traceparent`, exported over OTLP after the response when a collector is configured; JSON request
//! logs) → Link preload hints → WAF → demo token issuer → flag evaluation (the home page's A/B variant, from
//! a flag document in KV) → JWT authentication (`/api/account`, keys by `kid` from KV) → rate limits →
//! durable objects (`/api/counter/{name}`, `/rooms/{name}`) → the edge-rendered `/shell` page → ESI assembly
//! of `/esi/` pages (fragments from the origin, cached and coalesced) → HTTP cache (memory tier, coalesced
//! misses, stale-while-revalidate) → identity forwarding → origin proxy.
//!
//! [`stack`] builds it from [`Parts`] on any host: the axum gateway and the bare hyper server through
//! [`host::Edge`](crate::host) (tokio, SQLite objects, memory or Redis KV), the Worker in `examples/worker`
//! (Workers KV, Cloudflare Durable Objects, `waitUntil`). What differs between hosts is only what the
//! parts are made of.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use edge_auth::jwt::JwtAuthLayer;
use edge_auth::jwt::{JwksProvider, KvKeySource};
use edge_auth::jwt::{Validation, Verifier};
use edge_auth::ratelimit::{KeyExtractor, KeyedLimiter, Quota, RateLimitLayer, Unkeyed};
use edge_auth::waf::{WafLayer, WafRules};
use edge_cache::layer::CacheLayer;
use edge_cache::memory::MemoryCache;
use edge_core::durable::ObjectNamespace;
use edge_core::kv::{DynKvStore, KvEntry, ListOptions, ListPage, PutOptions};
use edge_core::{Body, Error, KvStore, MaybeSend, MaybeSync, SystemClock, Timer, WaitUntil};
use edge_observe::propagate::TracedFetcher;
use edge_observe::{Registry, Routes};
use edge_observe::{metrics::MetricsLayer, trace::TraceLayer};
use edge_render::esi::Assembler;
use edge_render::esi::layer::EsiLayer;
use edge_render::hints::layer::HintsLayer;
use http::{Request, Response, Uri};

use crate::auth::{AUDIENCE, DemoIssuer, DemoTokenEndpoint, ISSUER, JWKS_KEY, forward_identity};
use crate::flags::{DEMO_FLAGS, FLAGS_KEY, FlagVariant, Flags};
use crate::objects::ObjectRoutes;
use crate::render::ShellPage;
use edge_core::host::OriginProxy;

/// Gives a KV the demo's documents on first start: the flag document and the demo issuer's key set (where
/// a real issuer's rotation job would publish it). Documents already there (edited by an operator) win.
///
/// # Errors
///
/// The KV could not be read or written.
pub async fn seed_kv(kv: &dyn DynKvStore, issuer: &DemoIssuer) -> Result<(), Error> {
    if kv.get(FLAGS_KEY).await?.is_none() {
        kv.put(
            FLAGS_KEY,
            Bytes::from_static(DEMO_FLAGS.as_bytes()),
            PutOptions::new(),
        )
        .await?;
    }
    if kv.get(JWKS_KEY).await?.is_none() {
        kv.put(JWKS_KEY, Bytes::from(issuer.jwks()), PutOptions::new())
            .await?;
    }
    Ok(())
}

/// A KV in which the demo's documents (the flag document, the demo issuer's key set) exist before anyone
/// writes them: a read of either that finds nothing gets the demo's, as if [`seed_kv`] had run. An
/// operator's own document, once written, wins. The Worker reads through this instead of seeding on
/// start-up, so an isolate's first request waits on no KV at all (keys and flags are read when a request
/// needs them).
#[derive(Clone)]
pub struct WithDemoDocuments {
    inner: Arc<dyn DynKvStore>,
    jwks: Bytes,
}

impl WithDemoDocuments {
    /// `inner`, with `issuer`'s key set and [`DEMO_FLAGS`] as the defaults.
    #[must_use]
    pub fn new(inner: Arc<dyn DynKvStore>, issuer: &DemoIssuer) -> Self {
        Self {
            inner,
            jwks: Bytes::from(issuer.jwks()),
        }
    }

    fn default_for(&self, key: &str) -> Option<Bytes> {
        match key {
            FLAGS_KEY => Some(Bytes::from_static(DEMO_FLAGS.as_bytes())),
            JWKS_KEY => Some(self.jwks.clone()),
            _ => None,
        }
    }
}

impl std::fmt::Debug for WithDemoDocuments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WithDemoDocuments").finish_non_exhaustive()
    }
}

impl KvStore for WithDemoDocuments {
    fn limits(&self) -> edge_core::kv::KvLimits {
        self.inner.limits()
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, Error> {
        Ok(self.inner.get(key).await?.or_else(|| self.default_for(key)))
    }

    async fn get_with_metadata(&self, key: &str) -> Result<Option<KvEntry>, Error> {
        Ok(self
            .inner
            .get_with_metadata(key)
            .await?
            .or_else(|| self.default_for(key).map(KvEntry::new)))
    }

    async fn put(&self, key: &str, value: Bytes, options: PutOptions) -> Result<(), Error> {
        self.inner.put(key, value, options).await
    }

    async fn delete(&self, key: &str) -> Result<(), Error> {
        self.inner.delete(key).await
    }

    async fn list(&self, options: ListOptions) -> Result<ListPage, Error> {
        self.inner.list(options).await
    }
}

/// The keys and flags over `kv`, refreshed through `background`.
pub fn keys_and_flags<W: WaitUntil + Clone + 'static>(
    kv: &Arc<dyn DynKvStore>,
    background: &W,
) -> (Keys<W>, Flags<W>) {
    let keys = Keys::new(
        KvKeySource::new(Arc::clone(kv), JWKS_KEY),
        SystemClock::new(),
        background.clone(),
    );
    let flags = Flags::new(
        Arc::clone(kv),
        FLAGS_KEY,
        SystemClock::new(),
        background.clone(),
    );
    (keys, flags)
}

/// The routes spans and metrics are named by: a fixed set, whatever paths clients send.
#[must_use]
pub fn routes() -> Routes {
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

/// What the stack's stateful layers are built from: the same on every host, with the host's post-response
/// work `W`, timer `T` and object namespaces `C` (counters) and `R` (rooms).
pub struct Parts<W, T, C, R> {
    /// The flag document that decides A/B variants.
    pub flags: Flags<W>,
    /// The keys tokens are verified with.
    pub keys: Keys<W>,
    /// The demo token issuer.
    pub issuer: Arc<DemoIssuer>,
    /// The counter objects.
    pub counters: C,
    /// The room objects.
    pub rooms: R,
    /// The HTTP cache.
    pub cache: CacheLayer<SystemClock>,
    /// `Link` hints from the bundle manifest (read at start-up, or lazily where start-up time counts).
    pub hints: HintsLayer,
    /// What ESI's fragment time limits sleep on.
    pub timer: T,
    /// The per-client quotas (each can be off).
    pub limits: RateLimits,
    /// Which WAF rules run.
    pub waf: WafProfile,
}

/// Which rules the pipeline's WAF runs.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub enum WafProfile {
    /// The built-in detectors (the default).
    #[default]
    Lite,
    /// The OWASP Core Rule Set, as loaded by the host (natively: the Worker's bundle does without it).
    #[cfg(not(target_arch = "wasm32"))]
    Crs(Arc<edge_auth::waf::crs::RuleSet>),
}

/// The pipeline's quotas, each per client: the verified token's subject when the request carries one,
/// else the connection's address. `None` turns a limit off (the WAF still blocks without its penalty).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimits {
    /// Every request outside `/api/` (default 600 a minute, bursts of 120).
    pub pages: Option<Quota>,
    /// Requests under `/api/` (default 120 a minute, bursts of 20).
    pub api: Option<Quota>,
    /// WAF offences before a client is refused outright, even by rules that only log (default 5 in ten
    /// minutes).
    pub waf_penalty: Option<Quota>,
}

impl RateLimits {
    /// No limits at all: for load tests from one address, or a host that limits elsewhere.
    #[must_use]
    pub const fn off() -> Self {
        Self {
            pages: None,
            api: None,
            waf_penalty: None,
        }
    }
}

impl Default for RateLimits {
    /// The demo's quotas (see the fields).
    fn default() -> Self {
        let quota = |limit, period, burst| {
            Quota::new(limit, Duration::from_secs(period)).and_then(|q| q.with_burst(burst))
        };
        Self {
            pages: quota(600, 60, 120).ok(),
            api: quota(120, 60, 20).ok(),
            waf_penalty: quota(5, 600, 5).ok(),
        }
    }
}

impl<W, T, C, R> std::fmt::Debug for Parts<W, T, C, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parts").finish_non_exhaustive()
    }
}

/// The request's telemetry layers: metrics (with `/_edge/metrics`) outermost, then the trace.
#[derive(Clone, Debug)]
pub struct TelemetryLayers {
    /// Counts and times every request.
    pub metrics: MetricsLayer<SystemClock>,
    /// Starts the request's span and exports it after the response.
    pub trace: TraceLayer,
}

impl TelemetryLayers {
    /// The metrics layer over `registry` (served at `/_edge/metrics`) and `trace`.
    #[must_use]
    pub fn new(registry: Registry, trace: TraceLayer) -> Self {
        let metrics = MetricsLayer::new(registry, SystemClock::new())
            .endpoint("/_edge/metrics")
            .routes(routes());
        Self { metrics, trace }
    }
}

/// Builds the tower stack over `fetcher`, forwarding to `origin`, on any host: metrics and the request's
/// trace (`telemetry`), Link hints, the WAF, the demo issuer, the flags deciding A/B variants, JWT
/// authentication of `/api/account` with the keys, per-client rate limits (as `parts.limits` says), the
/// durable objects' routes, the shell-first page, ESI, the HTTP cache, the verified identity forwarded,
/// then the origin (through a fetcher that carries the trace).
pub fn stack<F, W, T, C, R>(
    fetcher: F,
    origin: Uri,
    parts: Parts<W, T, C, R>,
    telemetry: TelemetryLayers,
) -> impl tower::Service<
    Request<Body>,
    Response = Response<Body>,
    Error = Infallible,
    Future: MaybeSend + 'static,
> + Clone
+ MaybeSend
+ MaybeSync
+ 'static
where
    F: edge_core::Fetcher + 'static,
    W: WaitUntil + Clone + 'static,
    T: Timer + 'static,
    C: ObjectNamespace + Clone + 'static,
    R: ObjectNamespace + Clone + 'static,
{
    let Parts {
        flags,
        keys,
        issuer,
        counters,
        rooms,
        cache,
        hints,
        timer,
        limits,
        waf,
    } = parts;
    let verifier = Verifier::new(
        Validation::new()
            .with_issuer(ISSUER)
            .with_audience(AUDIENCE),
    );
    let auth =
        JwtAuthLayer::<serde_json::Value>::new(keys, verifier).protect_prefix("/api/account");
    let rate_limit = rate_limit_layer(limits);
    let waf = waf_layer(waf, limits.waf_penalty);
    let fetcher = Arc::new(TracedFetcher::new(fetcher).with_stage("origin"));
    let esi = esi_layer(Arc::clone(&fetcher), origin.clone(), timer);
    let shell_origin = origin.clone();
    let shell_fetcher = Arc::clone(&fetcher);
    tower::ServiceBuilder::new()
        .layer(telemetry.metrics)
        .layer(telemetry.trace)
        .layer(hints)
        .layer(waf)
        .layer(tower::layer::layer_fn(move |inner| {
            DemoTokenEndpoint::new(inner, Arc::clone(&issuer))
        }))
        .layer(tower::layer::layer_fn(move |inner| {
            FlagVariant::new(inner, flags.clone())
        }))
        .layer(auth)
        .option_layer(rate_limit)
        .layer(tower::layer::layer_fn(move |inner| {
            ObjectRoutes::new(inner, counters.clone(), rooms.clone())
        }))
        .layer(tower::layer::layer_fn(move |inner| {
            ShellPage::new(inner, Arc::clone(&shell_fetcher), shell_origin.clone())
        }))
        .layer(esi)
        .layer(cache)
        .map_request(forward_identity)
        .service(OriginProxy::new(fetcher, origin))
}

/// ESI for the pages under `/esi/`: fragments from the origin (through the same traced fetcher), cached
/// in 8 MiB of isolate memory for as long as their `Cache-Control` allows, coalesced.
fn esi_layer<F: edge_core::Fetcher + 'static>(
    fetcher: F,
    origin: Uri,
    timer: impl Timer + 'static,
) -> EsiLayer<F, MemoryCache<SystemClock>> {
    let assembler = Assembler::builder(fetcher, timer)
        .cache(MemoryCache::new(8 << 20, SystemClock::new()))
        .build();
    EsiLayer::new(assembler, ["/esi/"]).with_base(origin)
}

/// The HTTP cache in front of the origin: `memory` bytes of process (or isolate) memory as its first tier,
/// refreshes after the response, and a purge endpoint at `/_edge/purge` when a token is configured. A host
/// adds its shared tier with [`CacheLayer::store`].
pub fn cache_layer(
    background: impl WaitUntil + 'static,
    memory: u64,
    purge_token: Option<String>,
) -> CacheLayer<SystemClock> {
    let layer = CacheLayer::new(SystemClock::new(), background)
        .memory(MemoryCache::new(memory, SystemClock::new()));
    match purge_token {
        Some(token) => layer.purge_endpoint("/_edge/purge", token),
        None => layer,
    }
}

/// Per-client limits, in memory, keyed by the token's subject when the request carries a verified one,
/// else the connection's address; `None` when both quotas are off. Every host here supplies the address
/// except a Worker run locally (workerd sets no `CF-Connecting-IP`): such requests share one bucket rather
/// than being refused.
fn rate_limit_layer(limits: RateLimits) -> Option<RateLimitLayer> {
    let key = KeyExtractor::jwt_sub().or(KeyExtractor::client_ip());
    let layer = match limits.pages {
        Some(pages) => RateLimitLayer::new(KeyedLimiter::<String>::new(pages), key),
        None if limits.api.is_some() => RateLimitLayer::routes_only(key),
        None => return None,
    };
    let layer = layer.unkeyed(Unkeyed::shared_bucket("no-client-address"));
    Some(match limits.api {
        Some(api) => layer.route("/api/", KeyedLimiter::<String>::new(api)),
        None => layer,
    })
}

/// The WAF: the built-in rules (every one blocking) or CRS; with a `penalty`, a client whose requests
/// trip rules that often is refused outright after that, even by rules that only log. Requests without an
/// address (a Worker run locally) share one penalty bucket, as they share one rate-limit bucket.
fn waf_layer(profile: WafProfile, penalty: Option<Quota>) -> WafLayer {
    let waf = match profile {
        WafProfile::Lite => WafLayer::new(WafRules::new()),
        #[cfg(not(target_arch = "wasm32"))]
        WafProfile::Crs(rules) => WafLayer::crs(rules),
    };
    match penalty {
        Some(quota) => waf
            .penalize(
                KeyedLimiter::<String>::new(quota),
                KeyExtractor::client_ip(),
            )
            .unkeyed(Unkeyed::shared_bucket("no-client-address")),
        None => waf,
    }
}

/// The signing keys the pipeline verifies tokens with: the JWK Set in the edge's KV, refreshed through the
/// host's post-response work `W`.
pub type Keys<W> = JwksProvider<KvKeySource<Arc<dyn DynKvStore>>, SystemClock, W>;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn demo_documents_are_there_until_an_operator_writes_their_own() {
        let issuer = DemoIssuer::new();
        let kv = WithDemoDocuments::new(Arc::new(edge_kv::MemoryKv::new()), &issuer);
        assert_eq!(
            kv.get(FLAGS_KEY).await.unwrap().unwrap(),
            DEMO_FLAGS.as_bytes()
        );
        assert_eq!(
            kv.get(JWKS_KEY).await.unwrap().unwrap(),
            issuer.jwks().as_bytes()
        );
        assert!(kv.get("other").await.unwrap().is_none());
        kv.put(FLAGS_KEY, Bytes::from_static(b"{}"), PutOptions::new())
            .await
            .unwrap();
        assert_eq!(kv.get(FLAGS_KEY).await.unwrap().unwrap(), "{}");
        assert_eq!(
            kv.get_with_metadata(FLAGS_KEY)
                .await
                .unwrap()
                .unwrap()
                .value,
            "{}"
        );
    }
}
