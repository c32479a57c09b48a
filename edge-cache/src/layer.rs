//! (feature `tower`) [`CacheLayer`]: the tiered cache in front of any tower service, for axum and hyper.
//!
//! The wrapped service is the origin: misses, revalidations and unsafe methods go to it through the
//! [`TieredCache`], and what it answers is cached by the rules of [`policy`](crate::policy). Every
//! response says what the cache did in `Cache-Status` (RFC 9211), and by default in the legacy
//! `x-cache-status`/`x-cache-tier` too; the [`CacheOutcome`] is in its extensions. A response
//! the service marks [`Unreachable`](edge_core::fetch::Unreachable) counts as the origin not being
//! there (a stale copy may then stand in), not as an answer. Every
//! response carries `x-cache-status` and `x-cache-tier`; cached ones carry `Age`.
//!
//! With [`CacheLayer::purge_endpoint`], `POST {path}` with `Authorization: Bearer {token}` purges: its
//! body is lines `url <absolute url>` or `tag <tag>`, and the answer says how many entries went.
//!
//! ```
//! use std::convert::Infallible;
//! use edge_cache::layer::CacheLayer;
//! use edge_cache::memory::MemoryCache;
//! use edge_core::wait_until::QueuedWaitUntil;
//! use edge_core::{Body, SystemClock};
//! use http::{Request, Response};
//! use tower::{Layer, ServiceExt};
//!
//! let origin = tower::service_fn(|_req: Request<Body>| async {
//!     let mut response = Response::new(Body::from("hello"));
//!     response.headers_mut().insert("cache-control", "public, max-age=60".parse().unwrap());
//!     Ok::<_, Infallible>(response)
//! });
//! let cached = CacheLayer::new(SystemClock::new(), QueuedWaitUntil::new())
//!     .memory(MemoryCache::new(16 << 20, SystemClock::new()))
//!     .layer(origin);
//! # futures::executor::block_on(async {
//! let request = || Request::builder().uri("https://shop.example/").body(Body::empty()).unwrap();
//! let first = cached.clone().oneshot(request()).await.unwrap();
//! let second = cached.clone().oneshot(request()).await.unwrap();
//! assert_eq!(first.headers()["x-cache-status"], "MISS");
//! assert_eq!(second.headers()["x-cache-status"], "HIT");
//! # });
//! ```

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use edge_core::cache::{CacheLimits, DynCacheStore};
use edge_core::host::ServiceFetcher;
use edge_core::kv::DynKvStore;
use edge_core::respond::Responder;
use edge_core::trace::{RequestSpan, attr};
use edge_core::wait_until::DynWaitUntil;
use edge_core::{
    Body, BoxError, BoxFuture, CacheStore, Clock, Error, ErrorKind, Fetcher, Instant, KvStore,
    MaybeSend, WaitUntil,
};
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use tower::{Layer, Service};

use crate::memory::MemoryCache;
use crate::policy::CachePolicy;
use crate::tiered::{CacheOutcome, Settings, TieredCache};

/// Builds [`Cache`]s. See the [module docs](self).
pub struct CacheLayer<C> {
    clock: C,
    background: Arc<dyn DynWaitUntil>,
    memory: Option<MemoryCache<C>>,
    store: Option<Arc<dyn DynCacheStore>>,
    kv: Option<Arc<dyn DynKvStore>>,
    policy: CachePolicy,
    settings: Settings,
    purge: Option<Arc<(String, String)>>,
    responder: Option<Responder<Error>>,
}

impl<C: Clone> Clone for CacheLayer<C> {
    fn clone(&self) -> Self {
        Self {
            clock: self.clock.clone(),
            background: Arc::clone(&self.background),
            memory: self.memory.clone(),
            store: self.store.clone(),
            kv: self.kv.clone(),
            policy: self.policy,
            settings: self.settings,
            purge: self.purge.clone(),
            responder: self.responder.clone(),
        }
    }
}

impl<C> std::fmt::Debug for CacheLayer<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheLayer")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl<C: Clock + Clone + 'static> CacheLayer<C> {
    /// A layer timed by `clock`, refreshing in the background through `background`. Add tiers with
    /// the other methods; without any, nothing is stored (but requests still coalesce).
    pub fn new(clock: C, background: impl WaitUntil + 'static) -> Self {
        Self {
            clock,
            background: Arc::new(background),
            memory: None,
            store: None,
            kv: None,
            policy: CachePolicy::new(),
            settings: Settings::default(),
            purge: None,
            responder: None,
        }
    }

    /// The isolate-memory tier (shared by every service this layer makes).
    #[must_use]
    pub fn memory(mut self, memory: MemoryCache<C>) -> Self {
        self.memory = Some(memory);
        self
    }

    /// The PoP cache tier.
    #[must_use]
    pub fn store(mut self, store: impl CacheStore + 'static) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// The KV tier.
    #[must_use]
    pub fn kv(mut self, kv: impl KvStore + 'static) -> Self {
        self.kv = Some(Arc::new(kv));
        self
    }

    /// The freshness model.
    #[must_use]
    pub fn policy(mut self, policy: CachePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The read path's settings.
    #[must_use]
    pub fn settings(mut self, settings: Settings) -> Self {
        self.settings = settings;
        self
    }

    /// Answers a request the origin failed (and no stale copy could stand in for) with `respond` instead
    /// of [`default_origin_failure`]. The answer always leaves with `Cache-Control: no-store` (unless the
    /// responder set its own) and the cache's `Cache-Status`.
    ///
    /// ```
    /// use edge_cache::layer::CacheLayer;
    /// use edge_core::SystemClock;
    /// use edge_core::wait_until::QueuedWaitUntil;
    ///
    /// let layer = CacheLayer::new(SystemClock::new(), QueuedWaitUntil::new()).respond_with(|error| {
    ///     let mut response = http::Response::new(edge_core::Body::from("<h1>Back soon</h1>"));
    ///     *response.status_mut() = if error.is_timeout() { http::StatusCode::GATEWAY_TIMEOUT } else { http::StatusCode::BAD_GATEWAY };
    ///     response
    /// });
    /// ```
    #[must_use]
    pub fn respond_with(
        mut self,
        respond: impl Fn(&Error) -> Response<Body> + Send + Sync + 'static,
    ) -> Self {
        self.responder = Some(Responder::new(respond));
        self
    }

    /// Answers `POST {path}` carrying `Authorization: Bearer {token}` as a purge request.
    #[must_use]
    pub fn purge_endpoint(mut self, path: impl Into<String>, token: impl Into<String>) -> Self {
        self.purge = Some(Arc::new((path.into(), token.into())));
        self
    }
}

/// Any service a [`ServiceFetcher`] can fetch through (one taking our `Body`, answering any body).
impl<S, C> Layer<S> for CacheLayer<C>
where
    ServiceFetcher<S>: Fetcher + 'static,
    C: Clock + Clone + 'static,
{
    type Service = Cache<C>;

    fn layer(&self, inner: S) -> Cache<C> {
        // The wrapped service is the origin; one that fails, or answers `Unreachable`, is an outage.
        let mut builder = TieredCache::builder(
            ServiceFetcher::new(inner),
            self.clock.clone(),
            Arc::clone(&self.background),
        )
        .policy(self.policy)
        .settings(self.settings);
        if let Some(memory) = &self.memory {
            builder = builder.memory(memory.clone());
        }
        if let Some(store) = &self.store {
            builder = builder.store(Arc::clone(store));
        }
        if let Some(kv) = &self.kv {
            builder = builder.kv(Arc::clone(kv));
        }
        Cache {
            cache: builder.build(),
            purge: self.purge.clone(),
            responder: self.responder.clone(),
        }
    }
}

/// The cache in front of a service. Cheap to clone.
pub struct Cache<C> {
    cache: TieredCache<C>,
    purge: Option<Arc<(String, String)>>,
    responder: Option<Responder<Error>>,
}

impl<C> Clone for Cache<C> {
    fn clone(&self) -> Self {
        Self {
            cache: self.cache.clone(),
            purge: self.purge.clone(),
            responder: self.responder.clone(),
        }
    }
}

impl<C> std::fmt::Debug for Cache<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache").finish_non_exhaustive()
    }
}

impl<C: Clock + Clone + 'static> Cache<C> {
    /// The cache itself (statistics, purges).
    #[must_use]
    pub fn cache(&self) -> &TieredCache<C> {
        &self.cache
    }
}

/// The default answer when the origin failed and nothing stale could stand in: `504` for a timeout,
/// else `502`, with `origin failed: <kind>` as text.
#[must_use]
pub fn default_origin_failure(error: &Error) -> Response<Body> {
    let status = if error.kind() == ErrorKind::Timeout {
        StatusCode::GATEWAY_TIMEOUT
    } else {
        StatusCode::BAD_GATEWAY
    };
    text(status, format!("origin failed: {}\n", error.kind()))
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

async fn purge<C: Clock + Clone + 'static>(
    cache: TieredCache<C>,
    token: &str,
    request: Request<Body>,
) -> Response<Body> {
    let expected = format!("Bearer {token}");
    let authorized = request
        .headers()
        .get(header::AUTHORIZATION)
        .is_some_and(|v| ring_free_eq(v.as_bytes(), expected.as_bytes()));
    if !authorized {
        return text(
            StatusCode::UNAUTHORIZED,
            "purging needs the purge token\n".to_owned(),
        );
    }
    let Ok(body) = request.into_body().collect(64 * 1024).await else {
        return text(
            StatusCode::PAYLOAD_TOO_LARGE,
            "purge requests are at most 64 KiB\n".to_owned(),
        );
    };
    let Ok(body) = std::str::from_utf8(&body) else {
        return text(
            StatusCode::BAD_REQUEST,
            "purge requests are text\n".to_owned(),
        );
    };
    // Every line is checked before anything is purged: a bad request purges nothing.
    let mut targets: Vec<(bool, &str)> = Vec::new();
    for line in body.lines().map(str::trim).filter(|l| !l.is_empty()) {
        match line.split_once(' ') {
            Some(("url", url)) => {
                let url = url.trim();
                let absolute = url
                    .parse::<http::Uri>()
                    .is_ok_and(|uri| uri.authority().is_some());
                if !absolute {
                    return text(
                        StatusCode::BAD_REQUEST,
                        format!("not an absolute url: {url}\n"),
                    );
                }
                targets.push((true, url));
            }
            Some(("tag", tag)) if CacheLimits::new(0).check_tag(tag.trim()).is_ok() => {
                targets.push((false, tag.trim()));
            }
            Some(("tag", tag)) => {
                return text(StatusCode::BAD_REQUEST, format!("bad tag: {tag}\n"));
            }
            _ => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("lines are `url <url>` or `tag <tag>`, not {line:?}\n"),
                );
            }
        }
    }
    let (mut urls, mut found, mut tagged) = (0, 0, 0);
    for (is_url, target) in targets {
        if is_url {
            urls += 1;
            found += usize::from(cache.purge_url(target).await.unwrap_or(false));
        } else {
            tagged += cache.purge_tag(target).await.unwrap_or(0);
        }
    }
    text(
        StatusCode::OK,
        format!(
            "purged {found} of {urls} urls (the others were not cached) and {tagged} tagged entries\n"
        ),
    )
}

/// Compares without stopping at the first difference (the token is a secret).
fn ring_free_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl<C, ReqBody> Service<Request<ReqBody>> for Cache<C>
where
    C: Clock + Clone + 'static,
    ReqBody: http_body::Body<Data = Bytes> + MaybeSend + 'static,
    ReqBody::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let request = request.map(Body::from_http_body);
        let cache = self.cache.clone();
        if let Some(purge_config) = &self.purge {
            if request.method() == Method::POST && request.uri().path() == purge_config.0 {
                let purge_config = Arc::clone(purge_config);
                return Box::pin(async move { Ok(purge(cache, &purge_config.1, request).await) });
            }
        }
        let span = RequestSpan::from_extensions(request.extensions()).cloned();
        let responder = self.responder.clone();
        Box::pin(async move {
            let started = span.as_ref().map(RequestSpan::now);
            let response = match cache.handle(request).await {
                Ok(response) => response,
                Err(error) => {
                    let mut response = match &responder {
                        Some(responder) => responder.respond(&error),
                        None => default_origin_failure(&error),
                    };
                    // Made up here: no cache may keep it.
                    response
                        .headers_mut()
                        .entry(header::CACHE_CONTROL)
                        .or_insert(HeaderValue::from_static("no-store"));
                    cache.finish_failure(response)
                }
            };
            record(span.as_ref(), started, &response);
            Ok(response)
        })
    }
}

/// Records the cache's answer on the request's span (attributes and a `cache` stage) and as a `tracing`
/// event, under the SDK's attribute names.
fn record(span: Option<&RequestSpan>, started: Option<Instant>, response: &Response<Body>) {
    let outcome = response.extensions().get::<CacheOutcome>();
    let status = outcome.map_or("", |o| o.status);
    let tier = outcome.and_then(|o| o.tier).map_or("", |t| t.name());
    tracing::debug!(edge.cache.status = status, edge.cache.tier = tier, "cache");
    if let (Some(span), Some(started)) = (span, started) {
        if !tier.is_empty() {
            span.set(attr::EDGE_CACHE_TIER, tier);
        }
        span.set(attr::EDGE_CACHE_STATUS, status);
        span.stage_since("cache", started, Some(status));
    }
}
