//! [`RateLimitLayer`]: rate limiting as a tower layer (feature `tower`), for axum and hyper.
//!
//! For each request the layer picks the quota of the longest matching route prefix (or the default),
//! derives the client's key with a [`KeyExtractor`], asks the route's [`Backend`], and then either passes
//! the request on, adding `RateLimit` and `RateLimit-Policy` to the response, or answers itself with
//! `429 Too Many Requests`, those fields, `Retry-After` and a small JSON body.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use edge_core::respond::Responder;
use edge_core::trace::{RequestSpan, attr};
use edge_core::{Body, BoxError, BoxFuture, Clock, Instant, KvStore, MaybeSend, MaybeSync};
use http::header::HeaderName;
use http::{Extensions, HeaderMap, Method, Request, Response, StatusCode, Uri};

use super::{Decision, KeyedLimiter, KvTokenBucket};
use crate::refusal::json_refusal;

/// A limiter the layer can ask: anything that decides per string key.
pub trait Backend: MaybeSend + MaybeSync + 'static {
    /// Decides one request for `key` (store failures are the backend's policy to resolve).
    fn check<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Decision>;

    /// Decides one request for `key` without waiting, for a backend that decides in memory; `None` (the
    /// default) when the decision needs I/O. With `Some`, the layer calls the service behind it at once
    /// rather than from a future: no per-request clone of the services behind it.
    fn check_now(&self, key: &str) -> Option<Decision> {
        let _ = key;
        None
    }
}

impl<C: Clock + 'static> Backend for KeyedLimiter<String, C> {
    fn check<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Decision> {
        Box::pin(std::future::ready(self.check(key)))
    }

    fn check_now(&self, key: &str) -> Option<Decision> {
        Some(self.check(key))
    }
}

impl<S: KvStore + 'static, C: Clock + 'static> Backend for KvTokenBucket<S, C> {
    fn check<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Decision> {
        Box::pin(KvTokenBucket::check(self, key))
    }
}

impl<S: super::WindowStore + 'static> Backend for super::SlidingWindowLimiter<S> {
    fn check<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Decision> {
        Box::pin(super::SlidingWindowLimiter::check(self, key))
    }
}

#[cfg(all(feature = "redis", not(target_arch = "wasm32")))]
impl Backend for super::RedisLimiter {
    fn check<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Decision> {
        Box::pin(super::RedisLimiter::check(self, key))
    }
}

pub use edge_core::ClientIp;

/// The parts of a request a key is derived from.
#[derive(Debug)]
#[non_exhaustive]
pub struct RequestView<'a> {
    /// The method.
    pub method: &'a Method,
    /// The URI.
    pub uri: &'a Uri,
    /// The headers.
    pub headers: &'a HeaderMap,
    /// The extensions (where [`ClientIp`] and verified JWT claims live).
    pub extensions: &'a Extensions,
}

type KeyFn = dyn Fn(&RequestView<'_>) -> Option<String> + Send + Sync;

/// How the layer names the client a request counts against.
///
/// ```
/// use edge_auth::ratelimit::KeyExtractor;
///
/// // The verified token's subject when there is one, else the client address behind one trusted proxy.
/// let key = KeyExtractor::jwt_sub()
///     .or(KeyExtractor::client_ip_behind(http::HeaderName::from_static("x-forwarded-for"), 1));
/// ```
#[derive(Clone)]
pub struct KeyExtractor(Arc<KeyFn>);

impl KeyExtractor {
    /// A key from a closure (`None`: the request has no key; see [`RateLimitLayer`]).
    pub fn from_fn(f: impl Fn(&RequestView<'_>) -> Option<String> + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    /// The connection's address ([`ClientIp`] in the extensions). IPv6 clients are keyed by their /64, the
    /// smallest block a subscriber is usually given: keying by full address lets one host rotate through
    /// 2^64 keys.
    #[must_use]
    pub fn client_ip() -> Self {
        Self::from_fn(|req| req.extensions.get::<ClientIp>().map(|ip| ip_key(ip.0)))
    }

    /// The client address as reported by `trusted_hops` proxies in front of this server, each appending
    /// the address it saw to `header` (`X-Forwarded-For` style: the `trusted_hops`-th entry from the
    /// right). Entries further left were written by the client and are ignored: trusting them would let
    /// anyone pick their own key. Falls back to [`ClientIp`] when the header is missing or too short.
    /// With `trusted_hops == 0` the header is never read.
    #[must_use]
    pub fn client_ip_behind(header: HeaderName, trusted_hops: usize) -> Self {
        Self::from_fn(move |req| {
            let from_header = (trusted_hops > 0)
                .then(|| {
                    let entries: Vec<&str> = req
                        .headers
                        .get_all(&header)
                        .iter()
                        .filter_map(|v| v.to_str().ok())
                        .flat_map(|v| v.split(','))
                        .map(str::trim)
                        .collect();
                    let index = entries.len().checked_sub(trusted_hops)?;
                    entries.get(index)?.parse::<IpAddr>().ok()
                })
                .flatten();
            from_header
                .or_else(|| req.extensions.get::<ClientIp>().map(|ip| ip.0))
                .map(ip_key)
        })
    }

    /// A request header's value (for an API key header, say), at most 256 bytes; the key is
    /// `header:<value>`, so no header value can name another kind of key.
    #[must_use]
    pub fn header(name: HeaderName) -> Self {
        Self::from_fn(move |req| {
            let value = req.headers.get(&name)?.to_str().ok()?;
            (!value.is_empty() && value.len() <= 256).then(|| format!("header:{value}"))
        })
    }

    /// The `sub` of the token [`JwtAuthLayer`](crate::jwt::layer::JwtAuthLayer) verified, when the request
    /// carries one (the layer must run after authentication). It reads the
    /// [`RegisteredClaims`](crate::jwt::RegisteredClaims) the layer inserts whatever its claims type, so
    /// no type parameter can silently miss the token.
    #[must_use]
    pub fn jwt_sub() -> Self {
        Self::from_fn(|req| {
            let claims = req.extensions.get::<crate::jwt::RegisteredClaims>()?;
            claims.sub.as_deref().map(|sub| format!("sub:{sub}"))
        })
    }

    /// This key, or `other` when this one finds none.
    #[must_use]
    pub fn or(self, other: Self) -> Self {
        Self::from_fn(move |req| (self.0)(req).or_else(|| (other.0)(req)))
    }

    pub(crate) fn key(&self, view: &RequestView<'_>) -> Option<String> {
        (self.0)(view)
    }
}

impl fmt::Debug for KeyExtractor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyExtractor")
    }
}

fn ip_key(ip: IpAddr) -> String {
    use std::fmt::Write as _;
    // Sized for the longest key, `ip:` and a /64 prefix: written once, never grown.
    let mut key = String::with_capacity(32);
    let _ = match ip {
        IpAddr::V4(v4) => write!(key, "ip:{v4}"),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => write!(key, "ip:{v4}"),
            None => {
                let s = v6.segments();
                write!(key, "ip:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    };
    key
}

/// What the layer does with a request its [`KeyExtractor`] finds no key for (a host that did not insert
/// [`ClientIp`], a missing API-key header). A missing key must never mean "unlimited", and putting every
/// such client in one bucket silently lets one of them starve the rest, so the choice is the user's.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unkeyed {
    /// Refuse the request with `500 Internal Server Error` and `{"error":"rate_limit_key_missing"}`,
    /// logged as a `tracing` warning (the host is misconfigured, not the client). The default, as
    /// tower-governor's `UnableToExtractKey`.
    Reject,
    /// Count every unkeyed request in one bucket of this name (kept apart from real keys).
    SharedBucket(std::borrow::Cow<'static, str>),
}

impl Unkeyed {
    /// [`Unkeyed::SharedBucket`] named `name`.
    pub fn shared_bucket(name: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        Self::SharedBucket(name.into())
    }
}

/// Rate limits a service. See the [module docs](self).
///
/// Requests for which the [`KeyExtractor`] finds no key are refused unless [`RateLimitLayer::unkeyed`]
/// says otherwise (see [`Unkeyed`]).
#[derive(Clone)]
pub struct RateLimitLayer {
    shared: Arc<Shared>,
}

#[derive(Clone)]
struct Shared {
    /// Route prefixes, longest first, each with its limiter.
    routes: Vec<(String, Arc<dyn Backend>)>,
    default: Option<Arc<dyn Backend>>,
    key: KeyExtractor,
    unkeyed: Unkeyed,
    /// Replaces the default answers.
    responder: Option<Responder<RateLimitRejection>>,
}

/// Why [`RateLimitLayer`] refused a request.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum RateLimitRejection {
    /// Over the quota: the decision says by how much, when to retry, and which policy.
    Limited(Decision),
    /// The key extractor found no key and [`Unkeyed::Reject`] is in force.
    KeyMissing,
}

impl RateLimitRejection {
    /// The default answer: `429` with `Retry-After`, the `RateLimit` fields and
    /// `{"error":"rate_limited","retry_after_seconds":…}` (or `request_exceeds_quota` when no wait can
    /// help), or `500` with `{"error":"rate_limit_key_missing"}`.
    #[must_use]
    pub fn default_response(&self) -> Response<Body> {
        match self {
            Self::Limited(decision) => too_many_requests(decision),
            Self::KeyMissing => key_missing(),
        }
    }
}

impl RateLimitLayer {
    /// Limits every request with `backend`, keyed by `key`.
    pub fn new(backend: impl Backend, key: KeyExtractor) -> Self {
        Self {
            shared: Arc::new(Shared {
                routes: Vec::new(),
                default: Some(Arc::new(backend)),
                key,
                unkeyed: Unkeyed::Reject,
                responder: None,
            }),
        }
    }

    /// Limits only the routes added with [`RateLimitLayer::route`]; other requests pass untouched.
    #[must_use]
    pub fn routes_only(key: KeyExtractor) -> Self {
        Self {
            shared: Arc::new(Shared {
                routes: Vec::new(),
                default: None,
                key,
                unkeyed: Unkeyed::Reject,
                responder: None,
            }),
        }
    }

    /// Paths starting with `prefix` use `backend` (its own quota and its own counters) instead of the
    /// default. The longest matching prefix wins. A layer is a value: called on a clone, this changes
    /// that clone (and the services it makes from then on), never silently nothing.
    #[must_use]
    pub fn route(mut self, prefix: impl Into<String>, backend: impl Backend) -> Self {
        let shared = Arc::make_mut(&mut self.shared);
        shared.routes.push((prefix.into(), Arc::new(backend)));
        shared
            .routes
            .sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        self
    }
}

impl RateLimitLayer {
    /// What to do with requests that have no key ([`Unkeyed::Reject`] unless set).
    ///
    /// ```
    /// use edge_auth::ratelimit::{KeyExtractor, KeyedLimiter, Quota, RateLimitLayer, Unkeyed};
    /// use edge_core::SystemClock;
    ///
    /// let limiter = KeyedLimiter::<String, _>::with_clock(Quota::per_minute(std::num::NonZeroU32::new(120).unwrap()), SystemClock::new());
    /// let api_key = KeyExtractor::header(http::HeaderName::from_static("x-api-key"));
    /// // Clients without an API key share one allowance instead of being refused.
    /// let layer = RateLimitLayer::new(limiter, api_key).unkeyed(Unkeyed::shared_bucket("no-api-key"));
    /// # Ok::<(), edge_auth::ratelimit::QuotaError>(())
    /// ```
    #[must_use]
    pub fn unkeyed(mut self, unkeyed: Unkeyed) -> Self {
        Arc::make_mut(&mut self.shared).unkeyed = unkeyed;
        self
    }

    /// Answers refusals with `respond` instead of the default JSON (see
    /// [`RateLimitRejection::default_response`]). Keep the `RateLimit` fields on a `429`
    /// ([`Decision::write_headers`]): clients pace themselves by them.
    ///
    /// ```
    /// use edge_auth::ratelimit::{KeyExtractor, KeyedLimiter, Quota, RateLimitLayer, RateLimitRejection};
    ///
    /// let layer = RateLimitLayer::new(KeyedLimiter::<String>::new(Quota::per_second(std::num::NonZeroU32::new(10).unwrap())), KeyExtractor::client_ip())
    ///     .respond_with(|rejection: &RateLimitRejection| match rejection {
    ///         RateLimitRejection::Limited(decision) => {
    ///             let mut response = http::Response::new(edge_core::Body::from("slow down\n"));
    ///             *response.status_mut() = http::StatusCode::TOO_MANY_REQUESTS;
    ///             decision.write_headers(response.headers_mut());
    ///             response
    ///         }
    ///         other => other.default_response(),
    ///     });
    /// # Ok::<(), edge_auth::ratelimit::QuotaError>(())
    /// ```
    #[must_use]
    pub fn respond_with(
        mut self,
        respond: impl Fn(&RateLimitRejection) -> Response<Body> + Send + Sync + 'static,
    ) -> Self {
        Arc::make_mut(&mut self.shared).responder = Some(Responder::new(respond));
        self
    }
}

impl fmt::Debug for RateLimitLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field(
                "routes",
                &self
                    .shared
                    .routes
                    .iter()
                    .map(|(p, _)| p)
                    .collect::<Vec<_>>(),
            )
            .field("default", &self.shared.default.is_some())
            .field("unkeyed", &self.shared.unkeyed)
            .finish_non_exhaustive()
    }
}

impl<S> tower::Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> RateLimit<S> {
        RateLimit {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The service [`RateLimitLayer`] produces.
#[derive(Clone)]
pub struct RateLimit<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> fmt::Debug for RateLimit<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit").finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> tower::Service<Request<ReqBody>> for RateLimit<S>
where
    S: tower::Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + MaybeSend + 'static,
    S::Future: MaybeSend + 'static,
    S::Error: MaybeSend + 'static,
    ReqBody: MaybeSend + 'static,
    ResBody: http_body::Body<Data = Bytes> + MaybeSend + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let shared = &self.shared;
        let path = request.uri().path();
        let route = shared
            .routes
            .iter()
            .find(|(prefix, _)| path.starts_with(prefix.as_str()))
            .map(|(prefix, backend)| (prefix.as_str(), backend))
            .or_else(|| shared.default.as_ref().map(|b| ("*", b)));
        let Some((route, backend)) = route else {
            let future = self.inner.call(request);
            return Box::pin(async move { Ok(future.await?.map(Body::from_http_body)) });
        };
        let view = RequestView {
            method: request.method(),
            uri: request.uri(),
            headers: request.headers(),
            extensions: request.extensions(),
        };
        // Routes sharing one backend still count separately. The built-in keys all carry a kind prefix
        // (`ip:`, `sub:`, `header:`), so the shared bucket's `unkeyed:` cannot be claimed by a client.
        let key = match (shared.key.key(&view), &shared.unkeyed) {
            (Some(client), _) => format!("{route}|{client}"),
            (None, Unkeyed::SharedBucket(name)) => format!("{route}|unkeyed:{name}"),
            (None, Unkeyed::Reject) => {
                tracing::warn!(
                    edge.ratelimit.route = route,
                    "rate limit: the key extractor found no key for this request (no ClientIp from the \
                     host?); refused. RateLimitLayer::unkeyed chooses otherwise"
                );
                let response = shared.refuse(&RateLimitRejection::KeyMissing);
                return Box::pin(std::future::ready(Ok(response)));
            }
        };
        let span = RequestSpan::from_extensions(request.extensions());
        let started = span.map(RequestSpan::now);
        // An in-memory backend decides here, and the service behind is called here: nothing to clone.
        if let Some(decision) = backend.check_now(&key) {
            record(span, started, &decision);
            if !decision.is_allowed() {
                let response = shared.refuse(&RateLimitRejection::Limited(decision));
                return Box::pin(std::future::ready(Ok(response)));
            }
            let future = self.inner.call(request);
            return Box::pin(async move {
                let mut response = future.await?.map(Body::from_http_body);
                decision.write_headers(response.headers_mut());
                Ok(response)
            });
        }
        // The decision needs I/O: the service is called from the future, so it goes with it (tower's swap:
        // keep the one that was polled ready, leave a clone for the next call).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = Arc::clone(shared);
        let backend = Arc::clone(backend);
        let span = span.cloned();
        Box::pin(async move {
            let decision = backend.check(&key).await;
            record(span.as_ref(), started, &decision);
            if !decision.is_allowed() {
                return Ok(shared.refuse(&RateLimitRejection::Limited(decision)));
            }
            let mut response = inner.call(request).await?.map(Body::from_http_body);
            decision.write_headers(response.headers_mut());
            Ok(response)
        })
    }
}

/// Records a decision as a `tracing` event and on the request's span (attributes and `ratelimit` stage).
fn record(span: Option<&RequestSpan>, started: Option<Instant>, decision: &Decision) {
    let outcome = if decision.is_allowed() {
        "allowed"
    } else {
        "limited"
    };
    tracing::debug!(
        edge.ratelimit.decision = outcome,
        edge.ratelimit.remaining = decision.remaining(),
        "rate limit"
    );
    if let (Some(span), Some(started)) = (span, started) {
        span.set(attr::EDGE_RATELIMIT_DECISION, outcome);
        span.set(
            attr::EDGE_RATELIMIT_REMAINING,
            i64::from(decision.remaining()),
        );
        span.stage_since("ratelimit", started, Some(outcome));
    }
}

impl Shared {
    fn refuse(&self, rejection: &RateLimitRejection) -> Response<Body> {
        match &self.responder {
            Some(responder) => responder.respond(rejection),
            None => rejection.default_response(),
        }
    }
}

fn key_missing() -> Response<Body> {
    json_refusal(
        StatusCode::INTERNAL_SERVER_ERROR,
        "{\"error\":\"rate_limit_key_missing\"}\n",
    )
}

fn too_many_requests(decision: &Decision) -> Response<Body> {
    let seconds = super::decision::ceil_secs(decision.retry_after());
    let body = if decision.is_impossible() {
        // No wait helps: said so, and no Retry-After.
        "{\"error\":\"request_exceeds_quota\"}\n".to_owned()
    } else {
        format!(
            "{{\"error\":\"rate_limited\",\"retry_after_seconds\":{}}}\n",
            seconds.max(1)
        )
    };
    let mut response = json_refusal(StatusCode::TOO_MANY_REQUESTS, body);
    decision.write_headers(response.headers_mut());
    response
}
