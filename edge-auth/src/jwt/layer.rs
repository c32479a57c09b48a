//! [`JwtAuthLayer`]: bearer-token authentication as a tower layer (feature `tower`), for axum and hyper.
//!
//! For each request it wants to protect, the layer reads `Authorization: Bearer <token>`, verifies the token
//! with a [`JwksProvider`], and either passes the request on with the [`Verified`] claims in its extensions
//! or answers itself:
//!
//! | situation | status | `WWW-Authenticate` (RFC 6750) |
//! |---|---|---|
//! | no `Authorization` header | 401 | `Bearer realm="…"` (no error code: the client just has not authenticated) |
//! | not a single bearer credential | 400 | `Bearer realm="…", error="invalid_request"` |
//! | the token fails verification | 401 | `Bearer realm="…", error="invalid_token", error_description="…"` |
//! | the keys cannot be loaded | 503 | none: the client is not at fault |
//!
//! Answers carry a small JSON body (`{"error": …, "error_description": …}`) and `Cache-Control: no-store`.
//! The description is the rejection's `Display`, which never contains the token or key material.
//! [`JwtAuthLayer::respond_with`] replaces these answers; the reason is an [`AuthRejection`].

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use edge_core::respond::Responder;
use edge_core::trace::{RequestSpan, attr};
use edge_core::{Body, BoxError, BoxFuture, Clock, Instant, MaybeSend, MaybeSync, WaitUntil};
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use serde::de::DeserializeOwned;

use crate::jwt::Error;
use crate::jwt::jwks::{JwksProvider, KeySource};
use crate::jwt::{Verified, Verifier};
use crate::refusal::json_refusal;

/// Protects a service with bearer tokens. See the [module docs](self).
///
/// `T` is the claims type handlers read back from the request extensions, as `T` itself (axum's
/// `Extension<T>`) or with the token's header as `Verified<T>`. The registered
/// claims are also inserted on their own, as [`RegisteredClaims`](crate::jwt::RegisteredClaims), so code
/// that does not know `T` (the rate limiter's [`KeyExtractor::jwt_sub`](crate::ratelimit::KeyExtractor::jwt_sub))
/// reads the same token.
///
/// The key provider's types are erased here (one boxed future per verification, next to a signature
/// check of tens of microseconds), so the layer and its service name only the claims type:
/// `JwtAuthLayer<Claims>`.
pub struct JwtAuthLayer<T = serde_json::Value> {
    shared: Arc<Shared<T>>,
}

/// Verifies one token with the layer's provider and verifier.
trait VerifyToken<T>: MaybeSend + MaybeSync {
    fn verify(&self, token: String) -> BoxFuture<'static, Result<Verified<T>, Error>>;
    /// The verdict without waiting, when the keys are at hand ([`JwksProvider::verify_now`]).
    fn verify_now(&self, token: &str) -> Option<Result<Verified<T>, Error>>;
}

struct ProviderVerify<K: KeySource, C: Clock, W> {
    provider: Arc<JwksProvider<K, C, W>>,
    verifier: Arc<Verifier>,
}

impl<K, C, W, T> VerifyToken<T> for ProviderVerify<K, C, W>
where
    K: KeySource + 'static,
    C: Clock + 'static,
    W: WaitUntil + 'static,
    T: DeserializeOwned + MaybeSend + 'static,
{
    fn verify(&self, token: String) -> BoxFuture<'static, Result<Verified<T>, Error>> {
        let (provider, verifier) = (Arc::clone(&self.provider), Arc::clone(&self.verifier));
        Box::pin(async move { provider.verify::<T>(&verifier, &token).await })
    }

    fn verify_now(&self, token: &str) -> Option<Result<Verified<T>, Error>> {
        self.provider.verify_now(&self.verifier, token)
    }
}

struct Shared<T> {
    verify: Arc<dyn VerifyToken<T>>,
    realm: String,
    /// Paths (prefixes) that need a token; empty means every path.
    protected: Vec<String>,
    /// Replaces the default answers.
    responder: Option<Responder<AuthRejection>>,
}

/// Why [`JwtAuthLayer`] refused a request.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthRejection {
    /// No `Authorization` header.
    MissingToken,
    /// An `Authorization` header that is not one bearer credential.
    MalformedCredentials,
    /// The token failed verification.
    InvalidToken(Error),
    /// The signing keys could not be loaded (the client is not at fault).
    KeysUnavailable(Error),
}

impl AuthRejection {
    /// The status the default answer has: 401, 400, 401, 503.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingToken | Self::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            Self::MalformedCredentials => StatusCode::BAD_REQUEST,
            Self::KeysUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The default answer (see the [module docs](self)), with `realm` in its challenge.
    #[must_use]
    pub fn default_response(&self, realm: &str) -> Response<Body> {
        let realm = sanitize(realm);
        match self {
            Self::MissingToken => reject(self.status(), &realm, None, "a bearer token is required"),
            Self::MalformedCredentials => reject(
                self.status(),
                &realm,
                Some("invalid_request"),
                "the Authorization header must be a single bearer token",
            ),
            Self::InvalidToken(error) => reject(
                self.status(),
                &realm,
                Some("invalid_token"),
                &error.to_string(),
            ),
            Self::KeysUnavailable(_) => reject(
                self.status(),
                &realm,
                Some("temporarily_unavailable"),
                "signing keys are unavailable",
            ),
        }
    }
}

impl<T: DeserializeOwned + MaybeSend + 'static> JwtAuthLayer<T> {
    /// Verifies tokens with `verifier` and keys from `provider`, on every path, in realm `"edge"`.
    pub fn new<K, C, W>(provider: JwksProvider<K, C, W>, verifier: Verifier) -> Self
    where
        K: KeySource + 'static,
        C: Clock + 'static,
        W: WaitUntil + 'static,
    {
        Self {
            shared: Arc::new(Shared {
                verify: Arc::new(ProviderVerify {
                    provider: Arc::new(provider),
                    verifier: Arc::new(verifier),
                }),
                realm: "edge".to_owned(),
                protected: Vec::new(),
                responder: None,
            }),
        }
    }
}

impl<T> JwtAuthLayer<T> {
    /// Only paths starting with `prefix` need a token (call again for more prefixes). Called on a clone,
    /// this changes that clone.
    #[must_use]
    pub fn protect_prefix(mut self, prefix: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.shared)
            .protected
            .push(prefix.into());
        self
    }

    /// Names the realm in challenges.
    #[must_use]
    pub fn with_realm(mut self, realm: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.shared).realm = sanitize(&realm.into());
        self
    }

    /// Answers refusals with `respond` instead of the default JSON. It can start from
    /// [`AuthRejection::default_response`] and adjust it, or answer in the app's own format:
    ///
    /// ```
    /// use edge_auth::jwt::{AuthRejection, JwtAuthLayer};
    /// # use edge_auth::jwt::{JwksProvider, StaticKeySource};
    /// # let keys = JwksProvider::new(StaticKeySource::new("{\"keys\":[]}"), edge_core::SystemClock::new(), edge_core::wait_until::QueuedWaitUntil::new());
    ///
    /// let layer = JwtAuthLayer::<serde_json::Value>::new(keys, edge_auth::jwt::Verifier::default())
    ///     .respond_with(|rejection: &AuthRejection| {
    ///         let mut response = rejection.default_response("shop");
    ///         response.headers_mut().insert("x-login", http::HeaderValue::from_static("/login"));
    ///         response
    ///     });
    /// ```
    #[must_use]
    pub fn respond_with(
        mut self,
        respond: impl Fn(&AuthRejection) -> Response<Body> + Send + Sync + 'static,
    ) -> Self {
        Arc::make_mut(&mut self.shared).responder = Some(Responder::new(respond));
        self
    }
}

/// Settings are values: changing a layer that was cloned changes that layer only (the key provider
/// stays shared), never silently nothing.
impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Self {
            verify: Arc::clone(&self.verify),
            realm: self.realm.clone(),
            protected: self.protected.clone(),
            responder: self.responder.clone(),
        }
    }
}

impl<T> Clone for JwtAuthLayer<T> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T> fmt::Debug for JwtAuthLayer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuthLayer")
            .field("realm", &self.shared.realm)
            .field("protected", &self.shared.protected)
            .finish_non_exhaustive()
    }
}

impl<S, T> tower::Layer<S> for JwtAuthLayer<T> {
    type Service = JwtAuth<S, T>;

    fn layer(&self, inner: S) -> Self::Service {
        JwtAuth {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The service made by [`JwtAuthLayer`].
pub struct JwtAuth<S, T> {
    inner: S,
    shared: Arc<Shared<T>>,
}

impl<S: Clone, T> Clone for JwtAuth<S, T> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S, T> fmt::Debug for JwtAuth<S, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuth")
            .field("realm", &self.shared.realm)
            .finish_non_exhaustive()
    }
}

/// What the `Authorization` header holds.
enum Credential<'a> {
    Missing,
    Invalid,
    Bearer(&'a str),
}

fn credential(headers: &http::HeaderMap) -> Credential<'_> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return if headers.contains_key(header::AUTHORIZATION) {
            Credential::Invalid
        } else {
            Credential::Missing
        };
    };
    let Ok(value) = value.to_str() else {
        return Credential::Invalid;
    };
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer")
                && !token.is_empty()
                && !token.contains(' ') =>
        {
            Credential::Bearer(token)
        }
        _ => Credential::Invalid,
    }
}

/// Keeps a header parameter inside its quoted string.
fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c == '"' || c == '\\' || c.is_control() {
                '\''
            } else {
                c
            }
        })
        .collect()
}

fn reject(
    status: StatusCode,
    realm: &str,
    code: Option<&str>,
    description: &str,
) -> Response<Body> {
    let challenge = match code {
        Some(code) => format!(
            r#"Bearer realm="{realm}", error="{code}", error_description="{}""#,
            sanitize(description)
        ),
        None => format!(r#"Bearer realm="{realm}""#),
    };
    let body = serde_json::json!({ "error": code.unwrap_or("unauthorized"), "error_description": description });
    let mut response = json_refusal(status, body.to_string());
    if status != StatusCode::SERVICE_UNAVAILABLE {
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
    }
    response
}

impl<S, T, ReqBody, ResBody> tower::Service<Request<ReqBody>> for JwtAuth<S, T>
where
    S: tower::Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + MaybeSend + 'static,
    S::Future: MaybeSend + 'static,
    T: Clone + Send + Sync + 'static,
    Verified<T>: Send + Sync,
    ReqBody: MaybeSend + 'static,
    ResBody: http_body::Body<Data = Bytes> + MaybeSend + 'static,
    ResBody::Error: Into<BoxError>,
    S::Error: MaybeSend + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let shared = &self.shared;
        let path = request.uri().path();
        if !shared.protected.is_empty()
            && !shared
                .protected
                .iter()
                .any(|p| path.starts_with(p.as_str()))
        {
            let future = self.inner.call(request);
            return Box::pin(async move { Ok(future.await?.map(Body::from_http_body)) });
        }
        let span = RequestSpan::from_extensions(request.extensions()).cloned();
        let started = span.as_ref().map(RequestSpan::now);
        let verdict = match credential(request.headers()) {
            Credential::Missing => {
                record_outcome(span.as_ref(), started, "missing");
                let response = shared.refuse(&AuthRejection::MissingToken);
                return Box::pin(async move { Ok(response) });
            }
            Credential::Invalid => {
                record_outcome(span.as_ref(), started, "malformed");
                let response = shared.refuse(&AuthRejection::MalformedCredentials);
                return Box::pin(async move { Ok(response) });
            }
            // With the keys in memory, the verdict is reached here and the service behind is called
            // here: nothing to clone. Otherwise the token goes into the future that waits for the keys.
            Credential::Bearer(token) => shared
                .verify
                .verify_now(token)
                .ok_or_else(|| token.to_owned()),
        };
        match verdict {
            Ok(Ok(verified)) => {
                record_outcome(span.as_ref(), started, "verified");
                admit(&mut request, verified);
                let future = self.inner.call(request);
                Box::pin(async move { Ok(future.await?.map(Body::from_http_body)) })
            }
            Ok(Err(e)) => {
                let response = shared.reject(e, span.as_ref(), started);
                Box::pin(async move { Ok(response) })
            }
            Err(token) => {
                // Tower's swap: keep the service that was polled ready, leave a clone for the next call.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                let shared = Arc::clone(shared);
                Box::pin(async move {
                    match shared.verify.verify(token).await {
                        Ok(verified) => {
                            record_outcome(span.as_ref(), started, "verified");
                            admit(&mut request, verified);
                            Ok(inner.call(request).await?.map(Body::from_http_body))
                        }
                        Err(e) => Ok(shared.reject(e, span.as_ref(), started)),
                    }
                })
            }
        }
    }
}

/// Puts what was verified where handlers read it: the registered claims, the caller's type, and both with
/// the header as [`Verified`].
fn admit<B, T: Clone + Send + Sync + 'static>(request: &mut Request<B>, verified: Verified<T>) {
    let extensions = request.extensions_mut();
    extensions.insert(verified.claims.clone());
    extensions.insert(verified.custom.clone());
    extensions.insert(verified);
}

/// Records the verification's outcome on the request's span (attribute and `auth` stage) and as a
/// `tracing` event, under the SDK's attribute name.
fn record_outcome(span: Option<&RequestSpan>, started: Option<Instant>, outcome: &'static str) {
    tracing::debug!(edge.jwt.outcome = outcome, "jwt verification");
    if let (Some(span), Some(started)) = (span, started) {
        span.set(attr::EDGE_JWT_OUTCOME, outcome);
        span.stage_since("auth", started, Some(outcome));
    }
}

impl<T> Shared<T> {
    /// The answer to a token that failed verification (503 when the keys, not the token, are at fault).
    fn reject(
        &self,
        e: Error,
        span: Option<&RequestSpan>,
        started: Option<Instant>,
    ) -> Response<Body> {
        record_outcome(span, started, e.code());
        let rejection = if e.is_server_side() {
            AuthRejection::KeysUnavailable(e)
        } else {
            AuthRejection::InvalidToken(e)
        };
        self.refuse(&rejection)
    }

    fn refuse(&self, rejection: &AuthRejection) -> Response<Body> {
        match &self.responder {
            Some(responder) => responder.respond(rejection),
            None => rejection.default_response(&self.realm),
        }
    }
}
