//! (feature `tower`) [`EsiLayer`]: ESI assembly of the HTML responses under some paths, for axum, hyper
//! and any tower stack.
//!
//! For a request whose path starts with one of the layer's prefixes and whose response is `text/html`,
//! the response body is replaced by the assembled page, streaming: the status and headers go out at
//! once, the body in document order as fragments resolve. `Content-Length` is removed (the length
//! changes). Variables come from the request ([`Variables::from_request`]); fragments are recorded on
//! the request's [`RequestSpan`] when one is there.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use edge_core::trace::RequestSpan;
use edge_core::{Body, BoxError, BoxFuture, CacheStore, Fetcher, MaybeSend};
use http::{Request, Response, Uri, header};
use tower::{Layer, Service};

use super::{Assembler, Variables};

/// Builds [`Esi`]s. See the [module docs](self).
pub struct EsiLayer<F, S> {
    assembler: Assembler<F, S>,
    prefixes: Arc<Vec<String>>,
    base: Option<Uri>,
}

impl<F, S> Clone for EsiLayer<F, S> {
    fn clone(&self) -> Self {
        Self {
            assembler: self.assembler.clone(),
            prefixes: Arc::clone(&self.prefixes),
            base: self.base.clone(),
        }
    }
}

impl<F, S> std::fmt::Debug for EsiLayer<F, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EsiLayer")
            .field("prefixes", &self.prefixes)
            .finish_non_exhaustive()
    }
}

impl<F, S> EsiLayer<F, S> {
    /// Assembles with `assembler` the HTML under each of `prefixes`.
    pub fn new(
        assembler: Assembler<F, S>,
        prefixes: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            assembler,
            prefixes: Arc::new(prefixes.into_iter().map(Into::into).collect()),
            base: None,
        }
    }

    /// Resolves pages (and so their relative includes) against `origin`'s scheme and authority instead of
    /// the request's `Host`: an edge in front of an origin fetches fragments from the origin.
    #[must_use]
    pub fn with_base(mut self, origin: Uri) -> Self {
        self.base = Some(origin);
        self
    }
}

impl<I, F, S> Layer<I> for EsiLayer<F, S> {
    type Service = Esi<I, F, S>;

    fn layer(&self, inner: I) -> Self::Service {
        Esi {
            inner,
            layer: Arc::new(self.clone()),
        }
    }
}

/// The service [`EsiLayer`] makes.
pub struct Esi<I, F, S> {
    inner: I,
    /// Shared: the service is cloned per request, its configuration need not be.
    layer: Arc<EsiLayer<F, S>>,
}

impl<I: Clone, F, S> Clone for Esi<I, F, S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            layer: Arc::clone(&self.layer),
        }
    }
}

impl<I: std::fmt::Debug, F, S> std::fmt::Debug for Esi<I, F, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Esi")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}

fn is_html<B>(response: &Response<B>) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.trim_start().to_ascii_lowercase().starts_with("text/html"))
}

/// The page's own URL: the request's path on `base`, or on the request's authority (from `Host` when the
/// request line is a path).
fn page_url<B>(request: &Request<B>, base: Option<&Uri>) -> Uri {
    let uri = request.uri();
    if let Some(base) = base {
        let mut parts = http::uri::Parts::default();
        parts.scheme = base.scheme().cloned();
        parts.authority = base.authority().cloned();
        parts.path_and_query = uri.path_and_query().cloned();
        if let Ok(url) = Uri::from_parts(parts) {
            return url;
        }
    }
    if uri.authority().is_some() {
        return uri.clone();
    }
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    format!("http://{host}{path}")
        .parse()
        .unwrap_or_else(|_| Uri::from_static("http://localhost/"))
}

impl<I, F, S, ReqBody, ResBody> Service<Request<ReqBody>> for Esi<I, F, S>
where
    I: Service<Request<ReqBody>, Response = Response<ResBody>>,
    I::Future: MaybeSend + 'static,
    F: Fetcher + 'static,
    S: CacheStore + 'static,
    ResBody: http_body::Body<Data = Bytes> + MaybeSend + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = I::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, I::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), I::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let path = request.uri().path();
        if !self
            .layer
            .prefixes
            .iter()
            .any(|p| path.starts_with(p.as_str()))
        {
            let future = self.inner.call(request);
            return Box::pin(async move { Ok(future.await?.map(Body::from_http_body)) });
        }
        let vars = Variables::from_request(request.headers(), request.uri().query(), None);
        let url = page_url(&request, self.layer.base.as_ref());
        let span = RequestSpan::from_extensions(request.extensions()).cloned();
        let assembler = self.layer.assembler.clone();
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await?.map(Body::from_http_body);
            if !is_html(&response) {
                return Ok(response);
            }
            let (mut parts, body) = response.into_parts();
            parts.headers.remove(header::CONTENT_LENGTH);
            let assembled = assembler.assemble(url, vars, span, Box::pin(body));
            Ok(Response::from_parts(parts, Body::from_stream(assembled)))
        })
    }
}
