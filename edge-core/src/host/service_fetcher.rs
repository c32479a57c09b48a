//! [`ServiceFetcher`]: a tower service (an axum `Router`, a hyper service, a whole edge stack) as a
//! [`Fetcher`].

use bytes::Bytes;
use http::{Request, Response};

use crate::fetch::Unreachable;
use crate::{Body, BoxError, Error, ErrorKind, Fetcher, MaybeSend, MaybeSync};

/// Answers fetches with a tower service in the same process instead of the network: ESI fragments served
/// by the app that serves the page, a shield tier that is another stack, or an origin in tests.
///
/// The service is cloned per fetch (tower's usual rule: clones share state and are cheap) and driven
/// to readiness first. Its error becomes [`ErrorKind::Unavailable`] with the original as the source; a
/// response carrying [`Unreachable`] (as [`OriginProxy`](super::OriginProxy)'s failures do) becomes that
/// error again, so a cache in front of it can tell an answer from an outage.
///
/// ```
/// use std::convert::Infallible;
/// use edge_core::host::ServiceFetcher;
/// use edge_core::{Body, Fetcher};
///
/// let app = tower::service_fn(|request: http::Request<Body>| async move {
///     Ok::<_, Infallible>(http::Response::new(Body::from(format!("fragment {}", request.uri().path()))))
/// });
/// let fetcher = ServiceFetcher::new(app);
/// # futures::executor::block_on(async {
/// let response = fetcher.fetch(http::Request::get("/nav").body(Body::empty()).unwrap()).await.unwrap();
/// assert_eq!(response.into_body().collect(1024).await.unwrap(), "fragment /nav");
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct ServiceFetcher<S> {
    service: S,
}

impl<S> ServiceFetcher<S> {
    /// Fetches through `service`.
    pub fn new(service: S) -> Self {
        Self { service }
    }

    /// The service.
    pub fn into_inner(self) -> S {
        self.service
    }
}

impl<S, B> Fetcher for ServiceFetcher<S>
where
    S: tower_service::Service<Request<Body>, Response = Response<B>>
        + Clone
        + MaybeSend
        + MaybeSync
        + 'static,
    S::Future: MaybeSend,
    S::Error: Into<BoxError>,
    B: http_body::Body<Data = Bytes> + MaybeSend + 'static,
    B::Error: Into<BoxError>,
{
    async fn fetch(&self, request: Request<Body>) -> Result<Response<Body>, Error> {
        let mut service = self.service.clone();
        let unavailable = |e: S::Error| {
            Error::with_source(ErrorKind::Unavailable, "the service failed", e.into())
        };
        std::future::poll_fn(|cx| service.poll_ready(cx))
            .await
            .map_err(unavailable)?;
        let response = service.call(request).await.map_err(unavailable)?;
        match response.extensions().get::<Unreachable>() {
            Some(Unreachable(error)) => Err(error.clone()),
            None => Ok(response.map(Body::from_http_body)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn errors_and_unreachable_answers_are_failures_and_lengths_survive() {
        let app = tower::service_fn(|request: Request<Body>| async move {
            match request.uri().path() {
                "/broken" => Err(std::io::Error::other("boom")),
                "/down" => {
                    let mut response = Response::new(http_body_util::Full::new(Bytes::new()));
                    response
                        .extensions_mut()
                        .insert(Unreachable(Error::new(ErrorKind::Timeout, "origin")));
                    Ok(response)
                }
                _ => Ok(Response::new(http_body_util::Full::new(Bytes::from(
                    "12345",
                )))),
            }
        });
        let fetcher = ServiceFetcher::new(app);
        let get = |path: &str| Request::get(path).body(Body::empty()).unwrap();
        let ok = fetcher.fetch(get("/")).await.unwrap();
        assert_eq!(http_body::Body::size_hint(ok.body()).exact(), Some(5));
        let err = fetcher.fetch(get("/broken")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable);
        assert!(fetcher.fetch(get("/down")).await.unwrap_err().is_timeout());
    }
}
