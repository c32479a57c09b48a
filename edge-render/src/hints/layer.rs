//! (feature `tower`) `HintsLayer`: `Link` hints from a [`BundleManifest`] on every HTML response,
//! chosen for the client's connection.

use std::sync::Arc;
use std::task::{Context, Poll};

use edge_core::{BoxFuture, MaybeSend};
use http::{Request, Response, header};
use tower::{Layer, Service};

use super::{BundleManifest, Ect, save_data};

/// Adds the manifest's hints for the request's path to HTML responses.
#[derive(Clone, Debug)]
pub struct HintsLayer {
    manifest: Arc<BundleManifest>,
}

impl HintsLayer {
    /// Hints from `manifest`.
    #[must_use]
    pub fn new(manifest: BundleManifest) -> Self {
        Self {
            manifest: Arc::new(manifest),
        }
    }
}

impl<S> Layer<S> for HintsLayer {
    type Service = Hints<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Hints {
            inner,
            manifest: Arc::clone(&self.manifest),
        }
    }
}

/// The service [`HintsLayer`] makes.
#[derive(Clone, Debug)]
pub struct Hints<S> {
    inner: S,
    manifest: Arc<BundleManifest>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Hints<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: MaybeSend + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<ResBody>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let hints = self
            .manifest
            .hints_for(request.uri().path())
            .for_connection(
                Ect::from_headers(request.headers()),
                save_data(request.headers()),
            );
        let future = self.inner.call(request);
        Box::pin(async move {
            let mut response = future.await?;
            let html = response
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|t| t.starts_with("text/html"));
            if html {
                hints.apply(&mut response);
            }
            Ok(response)
        })
    }
}
