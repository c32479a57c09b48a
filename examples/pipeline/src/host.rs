//! The native host's pipeline: [`Edge::start`] makes the [`Parts`] of the [`stack`] out of tokio
//! (post-response work, timers), SQLite (durable objects), memory or Redis (KV) and hyper (the origin
//! fetcher), and serves it as one [`EdgeService`] for the axum gateway and the bare hyper server alike.

use std::convert::Infallible;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use edge_core::host::tokio::HyperFetcher;
use edge_core::host::tokio::ServerLimits;
use edge_core::host::tokio::TokioHost;
use edge_core::host::tokio::TokioTimer;
use edge_core::host::tokio::TokioWaitUntil;
use edge_core::kv::DynKvStore;
use edge_core::trace::SplitMix;
use edge_core::{Body, SystemClock};
use edge_kv::MemoryKv;
use edge_kv::redis::RedisKv;
use edge_observe::Registry;
use edge_observe::otlp::{Encoding, OtlpExporter};
use edge_observe::trace::TraceLayer;
use edge_render::hints::layer::HintsLayer;
use http::{Request, Response, Uri};
use tower::util::BoxCloneSyncService;

use crate::auth::DemoIssuer;
use crate::config::GatewayConfig;
use crate::config::WafChoice;
use crate::objects::Objects;
use crate::origin::DemoOrigin;
use crate::pipeline::{
    Parts, TelemetryLayers, WafProfile, cache_layer, keys_and_flags, routes, seed_kv, stack,
};

/// The pipeline as one cloneable, thread-safe service over any request body (hyper's `Incoming`, axum's
/// `Body`, ours). It never fails: every error is already an HTTP response.
#[derive(Clone)]
pub struct EdgeService(BoxCloneSyncService<Request<Body>, Response<Body>, Infallible>);

impl std::fmt::Debug for EdgeService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EdgeService")
    }
}

impl<B> tower::Service<Request<B>> for EdgeService
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<edge_core::BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future =
        <BoxCloneSyncService<Request<Body>, Response<Body>, Infallible> as tower::Service<
            Request<Body>,
        >>::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        self.0.call(request.map(Body::from_http_body))
    }
}

/// A started pipeline: the service, the demo origin if one was started, and the post-response work.
pub struct Edge {
    service: EdgeService,
    origin_url: Uri,
    server_limits: ServerLimits,
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

/// The WAF the configuration asks for: CRS is loaded (and compiled) here, once, from its directory.
fn waf_profile(choice: &WafChoice) -> io::Result<WafProfile> {
    match choice {
        WafChoice::Lite => Ok(WafProfile::Lite),
        WafChoice::Crs { dir, paranoia } => {
            let rules = edge_auth::waf::crs::RuleSet::builder()
                .crs_dir(dir)
                .and_then(|builder| builder.paranoia(*paranoia).build())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            Ok(WafProfile::Crs(Arc::new(rules)))
        }
    }
}

impl Edge {
    /// Builds the pipeline for `config`, starting the embedded demo origin unless an origin is configured.
    /// Must be called inside a tokio runtime.
    ///
    /// # Errors
    ///
    /// The demo origin's port could not be bound, there is no tokio runtime, the configured Redis cannot
    /// be reached, or the configured CRS does not load.
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
        let host = TokioHost::new().map_err(io::Error::other)?.with_fetcher(
            HyperFetcher::new()
                .with_timeout(config.origin_timeout)
                .with_body_timeout(config.origin_body_timeout),
        );
        let background = host.background();
        let kv: Arc<dyn DynKvStore> = match &config.redis_url {
            Some(url) => {
                let redis = RedisKv::connect(url).await.map_err(io::Error::other)?;
                Arc::new(redis.with_namespace("edge-gateway"))
            }
            None => Arc::new(MemoryKv::new()),
        };
        let issuer = Arc::new(DemoIssuer::new());
        seed_kv(kv.as_ref(), &issuer)
            .await
            .map_err(io::Error::other)?;
        let (keys, flags) = keys_and_flags(&kv, &background);
        let objects = Objects::open(config.objects_dir.as_deref(), &background)?;
        let cache = cache_layer(background.clone(), 64 << 20, config.purge_token.clone());
        let telemetry = Telemetry::new(config, background.clone())?;
        let parts = Parts {
            flags,
            keys,
            issuer,
            counters: objects.counters.clone(),
            rooms: objects.rooms.clone(),
            cache,
            hints: HintsLayer::new(
                crate::render::demo_manifest()
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?,
            ),
            timer: host.timer(),
            limits: config.limits,
            waf: waf_profile(&config.waf)?,
        };
        let layers = TelemetryLayers::new(telemetry.registry.clone(), telemetry.trace.clone());
        let service = stack(host.fetcher().clone(), origin_url.clone(), parts, layers);
        let service = EdgeService(BoxCloneSyncService::new(service));
        let housekeeping = objects.start_housekeeping();
        let metrics_export = telemetry.start_metrics_export();
        Ok(Self {
            service,
            origin_url,
            server_limits: config.server,
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

    /// The limits on client connections the host should serve with (`edge_core::host::tokio::serve`).
    #[must_use]
    pub fn server_limits(&self) -> ServerLimits {
        self.server_limits
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

impl std::fmt::Debug for Edge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Edge")
            .field("origin_url", &self.origin_url)
            .field("background", &self.background)
            .finish_non_exhaustive()
    }
}
