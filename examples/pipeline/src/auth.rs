//! The demo's authentication: a JWT-protected API, and a demo issuer to get a token from.
//!
//! `/api/account` needs `Authorization: Bearer <token>`. Tokens are verified by
//! [`JwtAuthLayer`](edge_auth::jwt::JwtAuthLayer) with keys read by `kid` from the edge's KV (key
//! [`JWKS_KEY`], seeded at start), exactly as a production gateway reads its issuer's JWK Set. The verified
//! `sub` reaches the origin as `x-edge-user`; a client-sent `x-edge-user` is always removed first.
//!
//! To try it, ask the gateway's **demo issuer** for a token and use it:
//!
//! ```text
//! TOKEN=$(curl -s 'http://127.0.0.1:8787/_edge/demo-token?sub=alice' | sed 's/.*"token":"\([^"]*\)".*/\1/')
//! curl -s http://127.0.0.1:8787/api/account -H "authorization: Bearer $TOKEN"
//! ```
//!
//! The demo issuer signs with an Ed25519 key derived from a fixed, published seed, so every gateway process
//! agrees on it. **It exists for the demo only**: a real deployment verifies tokens from its identity
//! provider and has no issuer at the edge.

use std::convert::Infallible;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Duration;

use edge_auth::jwt::base64url::encode as b64;
use edge_core::{Body, BoxFuture, Clock, SystemClock};
use http::{HeaderName, HeaderValue, Request, Response, StatusCode, header};
use ring::signature::Ed25519KeyPair;

/// Where the JWK Set lives in the edge's KV.
pub const JWKS_KEY: &str = "jwks";

/// The path of the demo issuer.
pub const DEMO_TOKEN_PATH: &str = "/_edge/demo-token";

/// The header carrying the verified subject to the origin.
pub const USER_HEADER: HeaderName = HeaderName::from_static("x-edge-user");

/// The token audience the gateway accepts.
pub const AUDIENCE: &str = "edge-demo";

/// The demo issuer's name (`iss`).
pub const ISSUER: &str = "https://demo-issuer.edge.invalid";

/// The published seed of the demo key. Anyone can mint demo tokens with it: that is the point of a demo.
const DEMO_SEED: &[u8; 32] = b"edge-demo-issuer-ed25519-seed-01";

const DEMO_KID: &str = "demo-ed25519-1";

/// The public key of [`DEMO_SEED`], base64url: the published key set needs no Ed25519 arithmetic (a
/// Worker's first request would pay for compiling it). A test checks it against the seed.
const DEMO_PUBLIC_KEY: &str = "Aj5mZPu-6tBTza-mVgYpuOWL8wtoNdStzUrENU8Flks";

/// The demo issuer: signs short-lived EdDSA tokens for any `sub`. The key pair is made on the first
/// token, not at start-up.
#[derive(Debug, Default)]
pub struct DemoIssuer {
    pair: OnceLock<Ed25519KeyPair>,
}

impl DemoIssuer {
    /// The demo issuer.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The JWK Set publishing the demo key.
    #[must_use]
    pub fn jwks(&self) -> String {
        format!(
            r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","alg":"EdDSA","use":"sig","kid":"{DEMO_KID}","x":"{DEMO_PUBLIC_KEY}"}}]}}"#
        )
    }

    /// The key pair, made once (`None` only if ring refused the seed, which it does not).
    fn pair(&self) -> Option<&Ed25519KeyPair> {
        if self.pair.get().is_none() {
            let pair = Ed25519KeyPair::from_seed_unchecked(DEMO_SEED).ok()?;
            let _ = self.pair.set(pair);
        }
        self.pair.get()
    }

    /// A token for `sub`, valid for `ttl` from `now` (seconds since the epoch).
    #[must_use]
    pub fn mint(&self, sub: &str, now: Duration, ttl: Duration) -> Option<String> {
        let header = serde_json::json!({ "alg": "EdDSA", "typ": "JWT", "kid": DEMO_KID });
        let claims = serde_json::json!({
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": sub,
            "iat": now.as_secs(),
            "exp": (now + ttl).as_secs(),
        });
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature = self.pair()?.sign(input.as_bytes());
        Some(format!("{input}.{}", b64(signature.as_ref())))
    }
}

/// Answers [`DEMO_TOKEN_PATH`] with a fresh token (`?sub=`, default `demo-user`), passes everything else on.
#[derive(Clone, Debug)]
pub struct DemoTokenEndpoint<S> {
    inner: S,
    issuer: std::sync::Arc<DemoIssuer>,
}

impl<S> DemoTokenEndpoint<S> {
    /// Serves tokens from `issuer` in front of `inner`.
    pub fn new(inner: S, issuer: std::sync::Arc<DemoIssuer>) -> Self {
        Self { inner, issuer }
    }
}

impl<S> tower::Service<Request<Body>> for DemoTokenEndpoint<S>
where
    S: tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
    S::Future: edge_core::MaybeSend + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        if request.uri().path() != DEMO_TOKEN_PATH {
            return Box::pin(self.inner.call(request));
        }
        let sub = request
            .uri()
            .query()
            .unwrap_or("")
            .split('&')
            .find_map(|pair| pair.strip_prefix("sub="))
            .filter(|sub| {
                !sub.is_empty()
                    && sub.len() <= 64
                    && sub.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
            .unwrap_or("demo-user")
            .to_owned();
        let ttl = Duration::from_secs(3600);
        let Some(token) = self.issuer.mint(&sub, SystemClock::new().unix_time(), ttl) else {
            let mut refused = Response::new(Body::from("the demo key is unavailable"));
            *refused.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            return Box::pin(async move { Ok(refused) });
        };
        let body = serde_json::json!({ "token": token, "token_type": "Bearer", "expires_in": ttl.as_secs(), "sub": sub });
        let mut response = Response::new(Body::from(body.to_string()));
        *response.status_mut() = StatusCode::OK;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        Box::pin(async move { Ok(response) })
    }
}

/// Replaces any client-sent `x-edge-user` with the verified subject (if the request carried a valid token).
pub fn forward_identity(mut request: Request<Body>) -> Request<Body> {
    request.headers_mut().remove(USER_HEADER);
    let subject = request
        .extensions()
        .get::<edge_auth::jwt::Verified<serde_json::Value>>()
        .and_then(|verified| verified.claims.sub.as_deref())
        .and_then(|sub| HeaderValue::from_str(sub).ok());
    if let Some(subject) = subject {
        request.headers_mut().insert(USER_HEADER, subject);
    }
    request
}

#[cfg(test)]
mod tests {
    use ring::signature::KeyPair as _;

    use super::*;

    #[test]
    fn the_published_key_is_the_seed_s() {
        let pair = Ed25519KeyPair::from_seed_unchecked(DEMO_SEED).unwrap();
        assert_eq!(b64(pair.public_key().as_ref()), DEMO_PUBLIC_KEY);
    }
}
