//! [`WafLayer`]: the WAF as a tower layer (feature `tower`) over requests with any body.
//!
//! Blocked requests get `403 Forbidden` with `{"error":"request_blocked"}` (which rule matched is not
//! told to the client; the [`Verdict`] is in the response's extensions for logging). Requests that pass
//! carry their [`Verdict`] in the request extensions, so log-only matches reach handlers and loggers.
//!
//! Bodies are inspected when they are forms, JSON, XML, `multipart/form-data` or text: up to
//! [`InspectLimits::max_body_len`](super::InspectLimits) bytes are read ahead, and the request goes on
//! with the same bytes, the rest still streaming. The service behind the layer therefore gets a
//! `Request<`[`edge_core::Body`]`>` whatever body came in (axum's router takes any body), and every
//! response comes back as a `Response<Body>`.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use edge_core::respond::Responder;
use edge_core::trace::{RequestSpan, attr};
use edge_core::{Body, BoxError, BoxFuture, Instant, MaybeSend};
use futures_util::StreamExt;
use http::{Request, Response, StatusCode};

#[cfg(feature = "crs")]
use super::crs::RuleSet;
use super::{BodyKind, Verdict, WafRules};
use crate::ratelimit::{Backend, KeyExtractor, RequestView, Unkeyed};
use crate::refusal::json_refusal;

/// Runs the WAF in front of a service: the built-in rules ([`WafLayer::new`]) or the OWASP Core Rule Set
/// ([`WafLayer::crs`], feature `crs`). See the [module docs](self).
#[derive(Clone)]
pub struct WafLayer {
    shared: Arc<Shared>,
}

#[derive(Clone)]
struct Shared {
    profile: Arc<Profile>,
    /// Charges offenders; once it refuses, their matching requests are blocked whatever the rule modes.
    penalty: Option<(Arc<dyn Backend>, KeyExtractor)>,
    /// What a penalized request without a client key is charged to.
    unkeyed: Unkeyed,
    /// Replaces the default answer.
    responder: Option<Responder<Verdict>>,
}

/// Which rules run.
#[derive(Debug)]
enum Profile {
    /// The built-in detectors: small, fast, wasm-friendly.
    Lite(WafRules),
    /// The OWASP Core Rule Set, and the largest body it reads.
    #[cfg(feature = "crs")]
    Crs(Arc<RuleSet>, usize),
}

impl Profile {
    fn max_body_len(&self) -> usize {
        match self {
            Self::Lite(rules) => rules.limits().max_body_len,
            #[cfg(feature = "crs")]
            Self::Crs(_, limit) => *limit,
        }
    }

    /// The verdict on a request whose body (the first bytes of it, when it is long) is `body`.
    fn inspect(
        &self,
        parts: &http::request::Parts,
        body: Option<&[u8]>,
        complete: bool,
    ) -> Verdict {
        match self {
            // The built-in rules see a prefix past their limit as such and apply their own policy.
            Self::Lite(rules) => {
                let _ = complete;
                rules.inspect(&parts.uri, &parts.headers, body)
            }
            #[cfg(feature = "crs")]
            Self::Crs(rule_set, limit) => {
                let body = body.unwrap_or_default();
                // As ModSecurity's `SecRequestBodyLimitAction Reject`: a body past the limit is refused,
                // not inspected in part (padding would otherwise carry an injection past the limit).
                let oversize = !complete || body.len() > *limit;
                let client = parts.extensions.get::<edge_core::ClientIp>().map(|ip| ip.0);
                Verdict {
                    matches: Vec::new(),
                    oversize,
                    crs: Some(rule_set.evaluate(parts, body, client)),
                }
            }
        }
    }
}

impl WafLayer {
    /// Applies the built-in `rules`.
    #[must_use]
    pub fn new(rules: WafRules) -> Self {
        Self::with_profile(Profile::Lite(rules))
    }

    /// Applies the OWASP Core Rule Set (feature `crs`): `rules` decide, by CRS's anomaly scoring, and the
    /// [`Verdict`]'s [`crs`](Verdict::crs) field carries the evaluation (matched rules, messages, score).
    /// Bodies of the kinds the built-in rules read are read up to 128 KiB (ModSecurity's recommended
    /// `SecRequestBodyNoFilesLimit`); a longer one is refused ([`Verdict::oversize`]).
    ///
    /// ```no_run
    /// # fn main() -> Result<(), edge_auth::waf::crs::LoadError> {
    /// use edge_auth::waf::{WafLayer, crs::RuleSet};
    ///
    /// let crs = RuleSet::builder().crs_dir("/etc/crs4")?.paranoia(2).build()?;
    /// let layer = WafLayer::crs(crs);
    /// # let _ = layer; Ok(()) }
    /// ```
    #[cfg(feature = "crs")]
    #[cfg_attr(docsrs, doc(cfg(feature = "crs")))]
    #[must_use]
    pub fn crs(rules: impl Into<Arc<RuleSet>>) -> Self {
        Self::with_profile(Profile::Crs(rules.into(), 128 * 1024))
    }

    fn with_profile(profile: Profile) -> Self {
        Self {
            shared: Arc::new(Shared {
                profile: Arc::new(profile),
                penalty: None,
                unkeyed: Unkeyed::Reject,
                responder: None,
            }),
        }
    }

    /// Charges every request with matches (log-only ones included) to `limiter` under the client's key
    /// (`waf|<key>`), one unit per match; when the limiter refuses, the request is blocked even if its
    /// rules only log. A quota of, say, 5 per 10 minutes turns a scanner away after its fifth probe.
    #[must_use]
    ///
    /// A layer is a value: called on a clone, this changes that clone, never silently nothing.
    pub fn penalize(mut self, limiter: impl Backend, key: KeyExtractor) -> Self {
        Arc::make_mut(&mut self.shared).penalty = Some((Arc::new(limiter), key));
        self
    }

    /// With [`penalize`](Self::penalize): what to do when a request with matches has no client key (the
    /// host supplied no [`ClientIp`](edge_core::ClientIp)). [`Unkeyed::Reject`], the default, blocks it
    /// and logs a warning; [`Unkeyed::SharedBucket`] charges every such request to one named bucket.
    #[must_use]
    pub fn unkeyed(mut self, unkeyed: Unkeyed) -> Self {
        Arc::make_mut(&mut self.shared).unkeyed = unkeyed;
        self
    }

    /// Answers blocked requests with `respond` instead of [`default_response`]; the [`Verdict`] says
    /// which rules matched (for logs: telling the client helps an attacker tune the payload). The
    /// verdict is also put in the response's extensions either way.
    ///
    /// ```
    /// use edge_auth::waf::{WafLayer, WafRules};
    ///
    /// let layer = WafLayer::new(WafRules::new()).respond_with(|_verdict| {
    ///     let mut response = http::Response::new(edge_core::Body::from("<h1>Request refused</h1>"));
    ///     *response.status_mut() = http::StatusCode::FORBIDDEN;
    ///     response
    /// });
    /// ```
    #[must_use]
    pub fn respond_with(
        mut self,
        respond: impl Fn(&Verdict) -> Response<Body> + Send + Sync + 'static,
    ) -> Self {
        Arc::make_mut(&mut self.shared).responder = Some(Responder::new(respond));
        self
    }
}

impl fmt::Debug for WafLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WafLayer")
            .field("profile", &self.shared.profile)
            .field("penalty", &self.shared.penalty.is_some())
            .finish()
    }
}

impl<S> tower::Layer<S> for WafLayer {
    type Service = Waf<S>;

    fn layer(&self, inner: S) -> Waf<S> {
        Waf {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The service [`WafLayer`] produces.
#[derive(Clone)]
pub struct Waf<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> fmt::Debug for Waf<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Waf").finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> tower::Service<Request<ReqBody>> for Waf<S>
where
    S: tower::Service<Request<Body>, Response = Response<ResBody>> + Clone + MaybeSend + 'static,
    S::Future: MaybeSend + 'static,
    S::Error: MaybeSend + 'static,
    ReqBody: http_body::Body<Data = Bytes> + MaybeSend + 'static,
    ReqBody::Error: Into<BoxError>,
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
        let (parts, body) = request.into_parts();
        let body = Body::from_http_body(body);
        let span = RequestSpan::from_extensions(&parts.extensions).cloned();
        let started = span.as_ref().map(RequestSpan::now);
        let inspect_body = inspectable(&parts.headers);
        // Without a body still to read, the verdict is reached here.
        let verdict = (!inspect_body || body.as_bytes().is_some()).then(|| {
            let prefix = body.as_bytes().filter(|_| inspect_body);
            self.shared
                .profile
                .inspect(&parts, prefix.map(|b| &b[..]), true)
        });
        match verdict {
            // The common case, nothing matched: the service behind is called here, nothing to clone.
            Some(verdict) if verdict.is_clean() && !verdict.is_blocked() => {
                record(span.as_ref(), started, "pass", None);
                let mut request = Request::from_parts(parts, body);
                request.extensions_mut().insert(verdict);
                let future = self.inner.call(request);
                Box::pin(async move { Ok(future.await?.map(Body::from_http_body)) })
            }
            // A body to read, or matches to charge: the service goes with the future (tower's swap).
            verdict => {
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                let shared = Arc::clone(&self.shared);
                Box::pin(async move {
                    let (verdict, body) = match verdict {
                        Some(verdict) => (verdict, body),
                        None => {
                            let limit = shared.profile.max_body_len();
                            let (prefix, complete, body) = read_ahead(body, limit).await;
                            let verdict =
                                shared.profile.inspect(&parts, prefix.as_deref(), complete);
                            (verdict, body)
                        }
                    };
                    let mut blocked = verdict.is_blocked();
                    if !verdict.is_clean() {
                        if let Some((limiter, key)) = &shared.penalty {
                            let view = RequestView {
                                method: &parts.method,
                                uri: &parts.uri,
                                headers: &parts.headers,
                                extensions: &parts.extensions,
                            };
                            let key = match (key.key(&view), &shared.unkeyed) {
                                (Some(client), _) => Some(format!("waf|{client}")),
                                (None, Unkeyed::SharedBucket(name)) => {
                                    Some(format!("waf|unkeyed:{name}"))
                                }
                                (None, _) => {
                                    tracing::warn!(
                                        "waf: a request with rule matches has no client key to charge \
                                         (no ClientIp from the host?); blocked. WafLayer::unkeyed chooses \
                                         otherwise"
                                    );
                                    blocked = true;
                                    None
                                }
                            };
                            if let Some(key) = key {
                                for _ in 0..verdict.penalty().min(8) {
                                    if !limiter.check(&key).await.is_allowed() {
                                        blocked = true;
                                        break;
                                    }
                                }
                            }
                        }
                    }
                    let outcome = if blocked {
                        "block"
                    } else if verdict.is_clean() {
                        "pass"
                    } else {
                        "log"
                    };
                    record(span.as_ref(), started, outcome, verdict.first_rule());
                    if blocked {
                        let mut response = match &shared.responder {
                            Some(responder) => responder.respond(&verdict),
                            None => default_response(&verdict),
                        };
                        response.extensions_mut().insert(verdict);
                        return Ok(response);
                    }
                    let mut request = Request::from_parts(parts, body);
                    request.extensions_mut().insert(verdict);
                    Ok(inner.call(request).await?.map(Body::from_http_body))
                })
            }
        }
    }
}

/// Records the verdict as a `tracing` event and on the request's span (attributes and `waf` stage).
fn record(
    span: Option<&RequestSpan>,
    started: Option<Instant>,
    outcome: &'static str,
    rule: Option<std::borrow::Cow<'static, str>>,
) {
    tracing::debug!(
        edge.waf.verdict = outcome,
        edge.waf.rule = rule.as_deref(),
        "waf"
    );
    if let (Some(span), Some(started)) = (span, started) {
        span.set(attr::EDGE_WAF_VERDICT, outcome);
        if let Some(rule) = rule {
            span.set(attr::EDGE_WAF_RULE, rule.into_owned());
        }
        span.stage_since("waf", started, Some(outcome));
    }
}

/// Forms, JSON and text are read; anything else (uploads, binary) streams through unread.
fn inspectable(headers: &http::HeaderMap) -> bool {
    BodyKind::of(headers) != BodyKind::Opaque
}

/// Reads up to `limit` bytes of `body`; returns them, whether that was the whole body, and a body that
/// yields the same bytes, then the rest.
async fn read_ahead(body: Body, limit: usize) -> (Option<Bytes>, bool, Body) {
    if let Some(bytes) = body.as_bytes() {
        return (Some(bytes.clone()), true, body);
    }
    let mut body = body;
    let mut seen = BytesMut::new();
    let mut chunks = Vec::new();
    let mut failed = None;
    while seen.len() <= limit {
        match body.next().await {
            Some(Ok(chunk)) => {
                seen.extend_from_slice(&chunk);
                chunks.push(Ok(chunk));
            }
            Some(Err(e)) => {
                failed = Some(e);
                break;
            }
            None => {
                let bytes = seen.freeze();
                return (Some(bytes.clone()), true, Body::from(bytes));
            }
        }
    }
    if let Some(e) = failed {
        // The application sees the same failure it would have seen without the WAF.
        chunks.push(Err(e));
        return (
            Some(seen.freeze()),
            false,
            Body::from_stream(futures_util::stream::iter(chunks)),
        );
    }
    let replay = futures_util::stream::iter(chunks).chain(body);
    (Some(seen.freeze()), false, Body::from_stream(replay))
}

/// The default answer to a blocked request: `403` with `{"error":"request_blocked"}` (which rule matched
/// is not told to the client).
#[must_use]
pub fn default_response(_verdict: &Verdict) -> Response<Body> {
    json_refusal(StatusCode::FORBIDDEN, "{\"error\":\"request_blocked\"}\n")
}
