//! [`OriginProxy`]: the innermost service of the pipeline, forwarding to the origin through a [`Fetcher`].

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use edge_core::fetch::Unreachable;
use edge_core::{Body, BoxFuture, ErrorKind, Fetcher};
use futures_util::StreamExt;
use http::header::{self, HeaderName, HeaderValue};
use http::uri::{PathAndQuery, Uri};
use http::{Request, Response, StatusCode};

/// The `Via` pseudonym this edge adds to forwarded messages (RFC 9110 §7.6.3).
const VIA: HeaderValue = HeaderValue::from_static("1.1 edge");

/// Forwards each request to `origin` through the fetcher and passes the response back.
///
/// Hop-by-hop headers (RFC 9110 §7.6.1, including those named in `Connection`) are removed in both
/// directions, `Via` is added, and the client's `Host` travels as `X-Forwarded-Host`. A failure to get a
/// response becomes `400 Bad Request` if it was the client's body that broke (a malformed chunked body,
/// a connection cut mid-upload), else `504 Gateway Timeout` (deadline passed) or `502 Bad Gateway`
/// (anything else): the service itself never fails.
#[derive(Debug)]
pub struct OriginProxy<F> {
    fetcher: Arc<F>,
    origin: Uri,
}

impl<F> Clone for OriginProxy<F> {
    fn clone(&self) -> Self {
        Self {
            fetcher: Arc::clone(&self.fetcher),
            origin: self.origin.clone(),
        }
    }
}

impl<F: Fetcher + 'static> OriginProxy<F> {
    /// A proxy to `origin` (scheme and authority are used; its path is ignored).
    pub fn new(fetcher: F, origin: Uri) -> Self {
        Self {
            fetcher: Arc::new(fetcher),
            origin,
        }
    }

    fn upstream_request(&self, request: Request<Body>) -> Result<Request<Body>, http::Error> {
        let (mut parts, body) = request.into_parts();
        let path = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let mut uri = Uri::builder().path_and_query(path);
        if let Some(scheme) = self.origin.scheme() {
            uri = uri.scheme(scheme.clone());
        }
        if let Some(authority) = self.origin.authority() {
            uri = uri.authority(authority.clone());
        }
        parts.uri = uri.build()?;
        edge_core::hop::remove_hop_by_hop(&mut parts.headers);
        if let Some(host) = parts.headers.remove(header::HOST) {
            parts
                .headers
                .insert(HeaderName::from_static("x-forwarded-host"), host);
        }
        parts.headers.append(header::VIA, VIA);
        Ok(Request::from_parts(parts, body))
    }
}

impl<F: Fetcher + 'static> tower::Service<Request<Body>> for OriginProxy<F> {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        // Whether the client's body failed while it was being forwarded: then the client, not the
        // origin, is to blame.
        let client_body_failed = Arc::new(AtomicBool::new(false));
        let request = request.map(|body| {
            if !body.is_stream() {
                return body;
            }
            let failed = Arc::clone(&client_body_failed);
            Body::from_stream(body.inspect(move |chunk| {
                if chunk.is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
            }))
        });
        let upstream = self.upstream_request(request);
        let fetcher = Arc::clone(&self.fetcher);
        Box::pin(async move {
            let Ok(upstream) = upstream else {
                return Ok(error_response(
                    StatusCode::BAD_REQUEST,
                    "request target cannot be forwarded",
                ));
            };
            match fetcher.fetch(upstream).await {
                Ok(mut response) => {
                    edge_core::hop::remove_hop_by_hop(response.headers_mut());
                    response.headers_mut().append(header::VIA, VIA);
                    Ok(response)
                }
                Err(_) if client_body_failed.load(Ordering::Relaxed) => Ok(error_response(
                    StatusCode::BAD_REQUEST,
                    "the request body could not be read",
                )),
                Err(e) => {
                    let mut response = if e.kind() == ErrorKind::Timeout {
                        error_response(
                            StatusCode::GATEWAY_TIMEOUT,
                            "the origin did not answer in time",
                        )
                    } else {
                        error_response(StatusCode::BAD_GATEWAY, "the origin could not be reached")
                    };
                    // The cache in front can tell this from an answer of the origin's.
                    response.extensions_mut().insert(Unreachable(e));
                    Ok(response)
                }
            }
        })
    }
}

fn error_response(status: StatusCode, message: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::from(message));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_core::testing::{Reply, TestFetcher};
    use tower::ServiceExt;

    fn proxy(fetcher: TestFetcher) -> OriginProxy<TestFetcher> {
        OriginProxy::new(fetcher, Uri::from_static("http://origin.internal:8080"))
    }

    #[tokio::test]
    async fn forwards_path_and_query_and_strips_hop_by_hop_headers() {
        let origin = TestFetcher::new();
        origin.route(
            "/a",
            Reply::ok("hi")
                .with_header(header::CONNECTION, "x-secret")
                .with_header(HeaderName::from_static("x-secret"), "1"),
        );
        let request = Request::get("/a?b=1")
            .header(header::HOST, "shop.example")
            .header(header::CONNECTION, "keep-alive, x-hop")
            .header("x-hop", "1")
            .header("x-keep", "1")
            .body(Body::empty())
            .unwrap();
        let response = proxy(origin.clone()).oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers().get("x-secret").is_none());
        assert_eq!(response.headers()[header::VIA], "1.1 edge");
        let seen = &origin.requests()[0];
        assert_eq!(seen.uri.to_string(), "http://origin.internal:8080/a?b=1");
        assert_eq!(seen.headers["x-forwarded-host"], "shop.example");
        assert_eq!(seen.headers["x-keep"], "1");
        assert!(
            seen.headers.get("x-hop").is_none() && seen.headers.get(header::CONNECTION).is_none()
        );
        assert!(seen.headers.get(header::HOST).is_none());
    }

    #[tokio::test]
    async fn origin_failures_become_gateway_errors() {
        let origin = TestFetcher::new();
        origin.route("/down", Reply::fail(ErrorKind::Unavailable));
        origin.route("/late", Reply::fail(ErrorKind::Timeout));
        let get = |p: &str| Request::get(p).body(Body::empty()).unwrap();
        let response = proxy(origin.clone()).oneshot(get("/down")).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
        let response = proxy(origin).oneshot(get("/late")).await.unwrap();
        assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    }

    #[tokio::test]
    async fn a_broken_client_body_is_the_clients_fault() {
        /// Reads the whole request body, as a real client connection to the origin does.
        #[derive(Clone)]
        struct Reading;
        impl Fetcher for Reading {
            async fn fetch(
                &self,
                request: Request<Body>,
            ) -> Result<Response<Body>, edge_core::Error> {
                request.into_body().collect(1 << 20).await?;
                Ok(Response::new(Body::empty()))
            }
        }
        let broken = futures_util::stream::iter([
            Ok(bytes::Bytes::from_static(b"5\r\nhello")),
            Err(std::io::Error::other("invalid chunk size line")),
        ]);
        let request = Request::post("/upload")
            .body(Body::from_stream(broken))
            .unwrap();
        let proxy = OriginProxy::new(Reading, Uri::from_static("http://origin.internal"));
        let response = proxy.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let fine = Request::post("/upload").body(Body::from("ok")).unwrap();
        assert_eq!(proxy.oneshot(fine).await.unwrap().status(), StatusCode::OK);
    }
}
