//! Admission at the edge: who may pass, and how often.
//!
//! | module | what it decides or does |
//! |---|---|
//! | [`jwt`] | compact JWS verification on `ring` (HS/RS/PS 256–512, ES256/384, EdDSA; ES512 on RustCrypto `p521` with feature `es512`), algorithms pinned by the key, strict base64url and JSON, claims with leeway from the injected `Clock`, JWK / JWK Set with RFC 7638 thumbprints; [`jwt::jwks`], a JWKS provider over any `KvStore` (or an origin's `jwks_uri`) with cached keys, background refresh and an unknown-`kid` cooldown; `JwtAuthLayer` (feature `tower`): `Authorization: Bearer` → verified claims in request extensions, or 401/400/503 with RFC 6750 challenges |
//! | [`ratelimit`] | one [`Decision`](ratelimit::Decision) for every limiter (→ `RateLimit`, `RateLimit-Policy`, `Retry-After`): in-memory GCRA, the KV token bucket, Redis GCRA and sliding windows (feature `redis`), sliding windows in durable objects, sharding; `RateLimitLayer` (feature `tower`) |
//! | [`waf`] | SQL injection, XSS and path traversal rules over path, query, headers and body, decoded once; block or log per rule; `waf::crs` (feature `crs`): the OWASP Core Rule Set on a SecLang engine with ModSecurity's semantics; `WafLayer` (feature `tower`) runs either, with a penalty limiter |
//!
//! ```
//! use std::time::Duration;
//! use edge_auth::jwt::{Algorithm, KeySet, Validation, Verifier, VerifyingKey};
//!
//! // RFC 7515 appendix A.1 (an HS256 token that expired in 2011: verified at a time before that).
//! let secret = [3, 35, 53, 75, 43, 15, 165, 188, 131, 126, 6, 101, 119, 123, 166, 143, 90, 179, 40, 230, 240,
//!     84, 201, 40, 169, 15, 132, 178, 210, 80, 46, 191, 211, 251, 90, 146, 210, 6, 71, 239, 150, 138, 180, 195,
//!     119, 98, 61, 34, 61, 46, 33, 114, 5, 46, 79, 8, 192, 205, 154, 245, 103, 208, 128, 163];
//! let token = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9\
//!     .eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ\
//!     .dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
//! let keys = KeySet::new().with(VerifyingKey::hmac(Algorithm::HS256, &secret).unwrap());
//! let verifier = Verifier::new(Validation::new().with_issuer("joe"));
//! let verified = verifier.verify::<serde_json::Value>(token, &keys, Duration::from_secs(1_300_819_300)).unwrap();
//! assert_eq!(verified.custom["http://example.com/is_root"], true);
//! ```
//!
//! # In an axum app
//!
//! The layers take axum's bodies and compose with `Router::layer` and `route_layer` (here: a WAF and
//! per-client limits on every route, a token on `/me` only); handlers read the claims as an `Extension`.
//!
//! ```
//! # #[cfg(feature = "tower")]
//! # futures::executor::block_on(async {
//! use axum::{Extension, Router, routing::get};
//! use edge_auth::jwt::{JwksProvider, JwtAuthLayer, StaticKeySource, Validation, Verifier};
//! use edge_auth::ratelimit::{ClientIp, KeyExtractor, KeyedLimiter, Quota, RateLimitLayer};
//! use edge_auth::waf::{WafRules, WafLayer};
//! use edge_core::{SystemClock, wait_until::QueuedWaitUntil};
//! use tower::ServiceExt;
//!
//! #[derive(Clone, serde::Deserialize)]
//! struct Claims { sub: String }
//!
//! let jwks = r#"{"keys":[{"kty":"oct","alg":"HS256","kid":"k1","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTEy"}]}"#;
//! let keys = JwksProvider::new(StaticKeySource::new(jwks), SystemClock::new(), QueuedWaitUntil::new());
//! let verifier = Verifier::new(Validation::new().with_issuer("https://issuer.example"));
//! let app = Router::new()
//!     .route("/me", get(|Extension(claims): Extension<Claims>| async move { claims.sub }))
//!     .route_layer(JwtAuthLayer::<Claims>::new(keys, verifier))
//!     .route("/", get(|| async { "hello" }))
//!     .layer(RateLimitLayer::new(KeyedLimiter::<String>::new(Quota::per_second(std::num::NonZeroU32::new(10).unwrap())), KeyExtractor::client_ip()))
//!     .layer(WafLayer::new(WafRules::new()));
//!
//! // The host puts the client's address in the request (edge_core::host::SetClientIpLayer, or host::tokio::serve).
//! let request = |uri: &str| {
//!     let request = http::Request::get(uri).extension(ClientIp([192, 0, 2, 1].into()));
//!     request.body(axum::body::Body::empty()).unwrap()
//! };
//! assert_eq!(app.clone().oneshot(request("/")).await?.status(), 200);
//! assert_eq!(app.clone().oneshot(request("/me")).await?.status(), 401);
//! assert_eq!(app.oneshot(request("/?q=%3Cscript%3Ealert(1)%3C/script%3E")).await?.status(), 403);
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! # MSRV
//!
//! Rust 1.85 (edition 2024).
#![cfg_attr(docsrs, feature(doc_cfg))]

mod intern;
pub mod jwt;
pub mod ratelimit;
#[cfg(feature = "tower")]
mod refusal;
pub mod waf;
