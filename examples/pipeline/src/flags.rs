//! The demo's A/B test: the edge decides which hero the home page shows, the origin renders it.
//!
//! The flag document lives in the edge's KV under [`FLAGS_KEY`] (seeded with [`DEMO_FLAGS`] when absent),
//! so it can be changed without a deploy. For `/`, the [`FlagVariant`] service evaluates `home-hero` from the
//! visitor's `uid` cookie (or `x-user-id` header) and location headers, tells the origin through the
//! `x-edge-variant` request header, and reports the decision in the response's `x-edge-variant` header. On
//! any trouble (KV down, a bad document) it falls back to `classic`.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use edge_core::kv::DynKvStore;
use edge_core::{Body, BoxFuture, MaybeSend, RequestGeo, SystemClock, WaitUntil};
use edge_kv::flags::{FlagClient, FlagContext};
use http::{HeaderName, HeaderValue, Request, Response, header};

/// Where the flag document is kept.
pub const FLAGS_KEY: &str = "flags";

/// The flag deciding the home page's hero.
pub const HOME_HERO: &str = "home-hero";

/// The variant served when flags cannot be evaluated.
pub const FALLBACK: &str = "classic";

/// The request and response header carrying the decision.
pub const VARIANT_HEADER: HeaderName = HeaderName::from_static("x-edge-variant");

/// The demo's flag document: visitors from Germany see `bold`; others are split 50/50 by their `uid`.
pub const DEMO_FLAGS: &str = r#"{
  "flags": {
    "home-hero": {
      "variants": ["classic", "bold"],
      "default": "classic",
      "rules": [ { "countries": ["DE"], "serve": "bold" } ],
      "rollout": [ { "variant": "classic", "weight": 5000 }, { "variant": "bold", "weight": 5000 } ]
    }
  }
}"#;

/// The flag client the pipeline uses: over whichever KV the host chose, refreshing through the host's
/// post-response work `W`.
pub type Flags<W> = FlagClient<Arc<dyn DynKvStore>, SystemClock, W>;

/// Decides the home page variant in front of `inner`. See the [module docs](self).
#[derive(Clone, Debug)]
pub struct FlagVariant<S, W> {
    inner: S,
    flags: Flags<W>,
}

impl<S, W> FlagVariant<S, W> {
    /// Wraps `inner`.
    pub fn new(inner: S, flags: Flags<W>) -> Self {
        Self { inner, flags }
    }
}

/// The visitor's bucketing id: the `uid` cookie, else the `x-user-id` header.
fn visitor_id(request: &Request<Body>) -> Option<String> {
    let from_cookie = request
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix("uid="))
        .map(str::to_owned);
    from_cookie.or_else(|| {
        request
            .headers()
            .get("x-user-id")?
            .to_str()
            .ok()
            .map(str::to_owned)
    })
}

impl<S, W> tower::Service<Request<Body>> for FlagVariant<S, W>
where
    S: tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + MaybeSend
        + 'static,
    S::Future: MaybeSend + 'static,
    W: WaitUntil + Clone + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        if request.uri().path() != "/" {
            return Box::pin(self.inner.call(request));
        }
        // The flag is read in the future, and the service called after it: the service goes with the
        // future, the clone stays for the next call (tower's swap; the clone was not polled ready).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let flags = self.flags.clone();
        Box::pin(async move {
            // The host's geo (a Worker's `cf` object) when it put one in the request, else the CDN's headers.
            let geo = request
                .extensions()
                .get::<RequestGeo>()
                .cloned()
                .unwrap_or_else(|| RequestGeo::from_headers(request.headers()));
            let mut context = FlagContext::new().with_geo(geo);
            if let Some(id) = visitor_id(&request) {
                context = context.with_user(id);
            }
            let variant = flags.variant(HOME_HERO, &context, FALLBACK).await;
            let value =
                HeaderValue::from_str(&variant).unwrap_or(HeaderValue::from_static(FALLBACK));
            request.headers_mut().insert(VARIANT_HEADER, value.clone());
            let mut response = inner.call(request).await?;
            response.headers_mut().insert(VARIANT_HEADER, value);
            // The page differs by visitor: shared caches must not mix variants.
            response
                .headers_mut()
                .append(header::VARY, HeaderValue::from_static("cookie"));
            Ok(response)
        })
    }
}
