//! The edge pipeline as a Cloudflare Worker: the stack `examples/gateway` serves under axum, built by the
//! same `edge_example_pipeline::pipeline::stack` from the same library layers, with Cloudflare's parts.
//!
//! | part | on the axum gateway | here |
//! |---|---|---|
//! | KV (keys, flags) | `MemoryKv` or Redis | Workers KV (`EDGE_KV`) through `WorkersKv` |
//! | HTTP cache | 64 MiB in memory | 8 MiB of isolate memory, then the Cache API through `WorkersCache` |
//! | durable objects | in process, SQLite | Cloudflare Durable Objects (`COUNTERS`, `ROOMS`) through `edge_do::workers` |
//! | origin fetches | hyper | `fetch()` through `WorkersFetcher` |
//! | post-response work | tokio tasks | the request's `waitUntil` through `WorkersWaitUntil` |
//! | timers | tokio | `setTimeout` through `WorkersTimer` |
//! | trace export | OTLP over hyper | OTLP over `fetch()`, flushed in `waitUntil` |
//!
//! Room WebSockets (`GET /rooms/{name}?user=ana` with `Upgrade: websocket`) go straight to the room's
//! object, as the gateway's upgrades go straight to the room: a 101 carries a socket, not a body.
//!
//! Test routes under `/__conformance/` (built only with feature `conformance`, and on only when
//! `EDGE_CONFORMANCE` is `on`) run the SDK's conformance kits against the real bindings: see the
//! `conformance` module.
#![cfg(target_arch = "wasm32")]

#[cfg(feature = "conformance")]
mod conformance;
mod objects;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use edge_cache::workers::WorkersCache;
use edge_core::host::workers::{
    WorkersFetcher, WorkersTimer, WorkersWaitUntil, in_request, request_from_worker,
    response_to_worker,
};
use edge_core::kv::DynKvStore;
use edge_core::trace::SplitMix;
use edge_core::{Body, Error, ErrorKind, SystemClock, WaitUntil};
use edge_do::workers::{SOCKET_ATTACHMENT_HEADER, WorkersNamespace};
use edge_example_pipeline::auth::DemoIssuer;
use edge_example_pipeline::objects::{json_response, valid_name};
use edge_example_pipeline::pipeline::{
    Parts, RateLimits, TelemetryLayers, WafProfile, WithDemoDocuments, cache_layer, keys_and_flags,
    routes, stack,
};
use edge_example_pipeline::render::demo_manifest;
use edge_kv::workers::WorkersKv;
use edge_observe::Registry;
use edge_observe::otlp::OtlpExporter;
use edge_observe::trace::TraceLayer;
use edge_render::hints::layer::HintsLayer;
use http::{Request, Response, StatusCode, Uri};
use tower::ServiceExt;
use worker::{Context, Env, event};

type LocalFuture<T> = std::pin::Pin<Box<dyn Future<Output = T>>>;

/// The stack, type-erased for the isolate's one slot (it is not `Send`, so tower's boxed services do not fit).
type Handler = Rc<dyn Fn(Request<Body>) -> LocalFuture<Response<Body>>>;

/// What one isolate builds on its first request and keeps: the stack and its telemetry.
struct Edge {
    handler: Handler,
    registry: Registry,
    exporter: Option<OtlpExporter<WorkersFetcher>>,
    last_metrics_export: std::cell::Cell<f64>,
}

thread_local! {
    static EDGE: RefCell<Option<Rc<Edge>>> = const { RefCell::new(None) };
}

/// Metrics go to the collector at most this often (a Worker has no interval timer: a request that finds
/// the last export older than this schedules the next one in its `waitUntil`).
const METRICS_EXPORT_MS: f64 = 10_000.0;

#[event(fetch)]
async fn fetch(req: worker::Request, env: Env, ctx: Context) -> worker::Result<worker::Response> {
    if is_room_upgrade(&req) {
        return join_room(req, &env).await;
    }
    // The client's address comes with the request (`CF-Connecting-IP`, as `ClientIp`).
    let request = match request_from_worker(req) {
        Ok(request) => request,
        Err(error) => return response_to_worker(error_page(&error)).map_err(worker_error),
    };
    let response = in_request(ctx, handle(request, env)).await;
    response_to_worker(response).map_err(worker_error)
}

async fn handle(request: Request<Body>, env: Env) -> Response<Body> {
    #[cfg(feature = "conformance")]
    if request.uri().path().starts_with(conformance::PREFIX) {
        return conformance::route(request, &env).await;
    }
    let edge = match edge(&env).await {
        Ok(edge) => edge,
        Err(error) => return error_page(&error),
    };
    let response = (edge.handler)(request).await;
    edge.export_metrics_now_and_then();
    response
}

/// The isolate's stack, built on its first request.
async fn edge(env: &Env) -> Result<Rc<Edge>, Error> {
    if let Some(edge) = EDGE.with(|slot| slot.borrow().clone()) {
        return Ok(edge);
    }
    let built = Rc::new(build(env).await?);
    // Two first requests may race here; the first to finish wins and the other's copy is dropped.
    Ok(EDGE.with(|slot| Rc::clone(slot.borrow_mut().get_or_insert(built))))
}

fn var(env: &Env, name: &str) -> Option<String> {
    env.var(name)
        .ok()
        .map(|v| v.to_string())
        .filter(|v| !v.is_empty())
}

async fn build(env: &Env) -> Result<Edge, Error> {
    let issuer = Arc::new(DemoIssuer::new());
    // Nothing is read from KV on start-up: the keys and flags are read when a request needs them, and a
    // document nobody wrote yet reads as the demo's (where the native hosts seed KV before serving).
    let kv: Arc<dyn DynKvStore> = Arc::new(WithDemoDocuments::new(
        Arc::new(WorkersKv::from_env(env, "EDGE_KV")?),
        &issuer,
    ));
    let background = WorkersWaitUntil::new();
    let (keys, flags) = keys_and_flags(&kv, &background);
    let origin: Uri = var(env, "ORIGIN_URL")
        .ok_or_else(|| Error::new(ErrorKind::InvalidInput, "ORIGIN_URL is not set"))?
        .parse()
        .map_err(|_| Error::new(ErrorKind::InvalidInput, "ORIGIN_URL is not a URL"))?;
    // Isolates have 128 MB: a small memory tier, and the colo's Cache API behind it.
    let cache = cache_layer(background, 8 << 20, var(env, "PURGE_TOKEN"))
        .store(WorkersCache::default_cache()?);
    let parts = Parts {
        flags,
        keys,
        issuer,
        counters: WorkersNamespace::from_env(env, "COUNTERS")?,
        rooms: WorkersNamespace::from_env(env, "ROOMS")?,
        cache,
        // Read on the first page that needs hints, not on the isolate's first request (the JSON reader
        // would be compiled and run before any answer); the manifest is a constant the native hosts and
        // the tests read eagerly.
        hints: HintsLayer::lazy(|| demo_manifest().unwrap_or_default()),
        timer: WorkersTimer::new(),
        limits: RateLimits::default(),
        waf: WafProfile::Lite,
    };
    let mut seed = [0u8; 8];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed)
        .map_err(|_| Error::new(ErrorKind::Unavailable, "no randomness for trace ids"))?;
    let mut trace = TraceLayer::new(
        SystemClock::new(),
        background,
        SplitMix::new(u64::from_le_bytes(seed)),
    )
    .routes(routes());
    let exporter = match var(env, "OTLP_ENDPOINT") {
        Some(endpoint) => {
            let exporter =
                OtlpExporter::builder(WorkersFetcher::new(), &endpoint, WorkersTimer::new())?
                    .service_name("edge-worker")
                    .build();
            trace = trace.export_to(exporter.clone());
            Some(exporter)
        }
        None => None,
    };
    let registry = Registry::new();
    let service = stack(
        WorkersFetcher::new(),
        origin,
        parts,
        TelemetryLayers::new(registry.clone(), trace),
    );
    let handler: Handler = Rc::new(move |request| {
        let service = service.clone();
        Box::pin(async move {
            match service.oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            }
        })
    });
    Ok(Edge {
        handler,
        registry,
        exporter,
        last_metrics_export: std::cell::Cell::new(js_sys::Date::now()),
    })
}

impl Edge {
    /// Schedules a metrics export in the current request's `waitUntil` when the last one is old enough.
    fn export_metrics_now_and_then(&self) {
        let Some(exporter) = self.exporter.clone() else {
            return;
        };
        let now = js_sys::Date::now();
        if now - self.last_metrics_export.get() < METRICS_EXPORT_MS {
            return;
        }
        self.last_metrics_export.set(now);
        let registry = self.registry.clone();
        WorkersWaitUntil::new().wait_until(async move {
            // A failed export is retried by the next one: the numbers are cumulative.
            let _ = exporter.export_metrics(&registry).await;
        });
    }
}

fn is_room_upgrade(req: &worker::Request) -> bool {
    req.path().starts_with("/rooms/")
        && req
            .headers()
            .get("upgrade")
            .ok()
            .flatten()
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Hands a WebSocket upgrade to the room's object, as the user named by `?user=` (a guest without one).
async fn join_room(req: worker::Request, env: &Env) -> worker::Result<worker::Response> {
    // The path and query read straight from the request's URL string: parsing it as a `url::Url` would
    // link the url crate (and IDNA's Unicode tables) into the bundle for this one route.
    let name = req.path().trim_start_matches("/rooms/").to_owned();
    if !valid_name(&name) {
        return worker::Response::error("room names are 1 to 64 of A-Z a-z 0-9 - _ .\n", 400);
    }
    let url = req.inner().url();
    let query = url.split_once('?').map_or("", |(_, query)| query);
    let query = query.split_once('#').map_or(query, |(query, _)| query);
    let user = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("user="))
        .filter(|user| valid_name(user))
        .unwrap_or("guest")
        .to_owned();
    let headers = worker::Headers::new();
    headers.set("upgrade", "websocket")?;
    headers.set(SOCKET_ATTACHMENT_HEADER, &user)?;
    let mut init = worker::RequestInit::new();
    init.with_headers(headers);
    let forward =
        worker::Request::new_with_init(&format!("https://room.invalid/rooms/{name}"), &init)?;
    let rooms = env.durable_object("ROOMS")?;
    rooms
        .id_from_name(&name)?
        .get_stub()?
        .fetch_with_request(forward)
        .await
}

fn worker_error(error: Error) -> worker::Error {
    worker::Error::RustError(error.to_string())
}

/// A JSON error page for what fails before the stack can answer (a missing binding, a bad setting).
fn error_page(error: &Error) -> Response<Body> {
    let status = match error.kind() {
        ErrorKind::InvalidInput | ErrorKind::Protocol => StatusCode::BAD_REQUEST,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    json_response(
        status,
        &serde_json::json!({ "error": error.kind().as_str(), "detail": error.detail() }),
    )
}
