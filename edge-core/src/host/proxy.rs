//! [`OriginProxy`]: the innermost service of an edge in front of an origin.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::StreamExt;
use http::header::{self, HeaderName, HeaderValue};
use http::uri::{PathAndQuery, Uri};
use http::{Request, Response, StatusCode};

use crate::fetch::Unreachable;
use crate::respond::Responder;
use crate::{Body, BoxError, BoxFuture, ClientIp, Error, ErrorKind, Fetcher, MaybeSend};

/// The `Via` pseudonym this edge adds to forwarded messages (RFC 9110 §7.6.3).
const VIA: HeaderValue = HeaderValue::from_static("1.1 edge");

/// Forwards each request to `origin` through the fetcher and passes the response back.
///
/// Hop-by-hop headers (RFC 9110 §7.6.1, including those named in `Connection`) are removed in both
/// directions and `Via` is added. The client's `Host` travels as `X-Forwarded-Host`, and when the request
/// carries a [`ClientIp`] (see [`SetClientIpLayer`](super::SetClientIpLayer)) the client is named in `Forwarded`
/// (RFC 7239: `for`, `host`, `proto`) and `X-Forwarded-For`, after what earlier proxies wrote there. A
/// failure to get a response becomes `400 Bad Request` if it was the client's body that broke (a
/// malformed chunked body, a connection cut mid-upload), else `504 Gateway Timeout` (deadline passed) or
/// `502 Bad Gateway` (anything else), marked [`Unreachable`] so that a cache in front can serve a stale
/// copy instead: the service itself never fails.
///
/// ```
/// use edge_core::host::OriginProxy;
/// use edge_core::testing::{Reply, TestFetcher};
/// use tower::ServiceExt;
///
/// # futures::executor::block_on(async {
/// let origin = TestFetcher::new();
/// origin.route("/hello", Reply::ok("hi"));
/// let proxy = OriginProxy::new(origin.clone(), "http://origin.internal:8080".parse().unwrap());
/// let request = http::Request::get("/hello").header("host", "shop.example").body(String::new()).unwrap();
/// let response = proxy.oneshot(request).await.unwrap();
/// assert_eq!(response.headers()["via"], "1.1 edge");
/// assert_eq!(origin.requests()[0].uri, "http://origin.internal:8080/hello");
/// # });
/// ```
#[derive(Debug)]
pub struct OriginProxy<F> {
    fetcher: Arc<F>,
    origin: Uri,
    responder: Option<Responder<ProxyFailure>>,
}

/// Why [`OriginProxy`] answered by itself.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum ProxyFailure {
    /// The request target cannot be put on the origin's URL.
    UnforwardableTarget,
    /// The client's body broke while it was being forwarded.
    ClientBody,
    /// The origin could not be reached or did not answer in time.
    Origin(Error),
}

impl ProxyFailure {
    /// The default answer: `400`, `400`, or `504` (timeout) / `502`, as short text with
    /// `Cache-Control: no-store`.
    #[must_use]
    pub fn default_response(&self) -> Response<Body> {
        match self {
            Self::UnforwardableTarget => error_response(
                StatusCode::BAD_REQUEST,
                "request target cannot be forwarded",
            ),
            Self::ClientBody => error_response(
                StatusCode::BAD_REQUEST,
                "the request body could not be read",
            ),
            Self::Origin(e) if e.kind() == ErrorKind::Timeout => error_response(
                StatusCode::GATEWAY_TIMEOUT,
                "the origin did not answer in time",
            ),
            Self::Origin(_) => {
                error_response(StatusCode::BAD_GATEWAY, "the origin could not be reached")
            }
        }
    }
}

impl<F> Clone for OriginProxy<F> {
    fn clone(&self) -> Self {
        Self {
            fetcher: Arc::clone(&self.fetcher),
            origin: self.origin.clone(),
            responder: self.responder.clone(),
        }
    }
}

impl<F: Fetcher + 'static> OriginProxy<F> {
    /// A proxy to `origin` (scheme and authority are used; its path is ignored).
    pub fn new(fetcher: F, origin: Uri) -> Self {
        Self {
            fetcher: Arc::new(fetcher),
            origin,
            responder: None,
        }
    }

    /// Answers failures with `respond` instead of [`ProxyFailure::default_response`]. An origin failure's
    /// answer still carries [`Unreachable`], so a cache in front can serve a stale copy instead.
    #[must_use]
    pub fn respond_with(
        mut self,
        respond: impl Fn(&ProxyFailure) -> Response<Body> + Send + Sync + 'static,
    ) -> Self {
        self.responder = Some(Responder::new(respond));
        self
    }

    fn upstream_request(&self, request: Request<Body>) -> Result<Request<Body>, http::Error> {
        let client = request.extensions().get::<ClientIp>().map(|ip| ip.0);
        let proto = if request.uri().scheme_str() == Some("https") {
            "https"
        } else {
            "http"
        };
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
        crate::hop::remove_hop_by_hop(&mut parts.headers);
        let host = parts.headers.remove(header::HOST);
        if let Some(client) = client {
            if let Some(value) = forwarded(client, host.as_ref(), proto) {
                parts.headers.append(header::FORWARDED, value);
            }
            if let Ok(value) = HeaderValue::from_str(&client.to_string()) {
                parts.headers.append(X_FORWARDED_FOR, value);
            }
        }
        if let Some(host) = host {
            parts.headers.insert(X_FORWARDED_HOST, host);
        }
        parts.headers.append(header::VIA, VIA);
        Ok(Request::from_parts(parts, body))
    }
}

const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// `for=…;host=…;proto=…` (RFC 7239 §4), IPv6 quoted in brackets; `None` if the host is not a token.
fn forwarded(client: IpAddr, host: Option<&HeaderValue>, proto: &str) -> Option<HeaderValue> {
    let mut value = match client {
        IpAddr::V4(v4) => format!("for={v4}"),
        IpAddr::V6(v6) => format!("for=\"[{v6}]\""),
    };
    if let Some(host) = host.and_then(|h| h.to_str().ok()) {
        // A quoted-string would need escaping; a host is a token (RFC 7239 §4) or it is left out.
        if host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b))
        {
            value.push_str(";host=");
            value.push_str(host);
        }
    }
    value.push_str(";proto=");
    value.push_str(proto);
    HeaderValue::from_str(&value).ok()
}

impl<F, B> tower_service::Service<Request<B>> for OriginProxy<F>
where
    F: Fetcher + 'static,
    B: http_body::Body<Data = Bytes> + MaybeSend + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // Whether the client's body failed while it was being forwarded: then the client, not the
        // origin, is to blame.
        let client_body_failed = Arc::new(AtomicBool::new(false));
        let request = request.map(|body| {
            let body = Body::from_http_body(body);
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
        let responder = self.responder.clone();
        let refuse = move |failure: &ProxyFailure| match &responder {
            Some(responder) => responder.respond(failure),
            None => failure.default_response(),
        };
        Box::pin(async move {
            let Ok(upstream) = upstream else {
                return Ok(refuse(&ProxyFailure::UnforwardableTarget));
            };
            match fetcher.fetch(upstream).await {
                Ok(mut response) => {
                    crate::hop::remove_hop_by_hop(response.headers_mut());
                    response.headers_mut().append(header::VIA, VIA);
                    Ok(response)
                }
                Err(_) if client_body_failed.load(Ordering::Relaxed) => {
                    Ok(refuse(&ProxyFailure::ClientBody))
                }
                Err(e) => {
                    let mut response = refuse(&ProxyFailure::Origin(e.clone()));
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
    use crate::testing::{Reply, TestFetcher};
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
        assert!(
            seen.headers.get(header::FORWARDED).is_none(),
            "no ClientIp, no Forwarded"
        );
    }

    #[tokio::test]
    async fn names_the_client_after_earlier_proxies() {
        let origin = TestFetcher::new();
        origin.route("/", Reply::ok("hi"));
        for (ip, expected) in [
            (
                "203.0.113.7",
                "for=203.0.113.7;host=shop.example;proto=http",
            ),
            (
                "2001:db8::1",
                "for=\"[2001:db8::1]\";host=shop.example;proto=http",
            ),
        ] {
            let mut request = Request::get("/")
                .header(header::HOST, "shop.example")
                .header(header::FORWARDED, "for=192.0.2.1")
                .header("x-forwarded-for", "192.0.2.1")
                .body(Body::empty())
                .unwrap();
            request
                .extensions_mut()
                .insert(ClientIp(ip.parse().unwrap()));
            proxy(origin.clone()).oneshot(request).await.unwrap();
            let seen = origin.requests().pop().unwrap();
            let forwarded: Vec<_> = seen.headers.get_all(header::FORWARDED).iter().collect();
            assert_eq!(forwarded, ["for=192.0.2.1", expected]);
            let xff: Vec<_> = seen.headers.get_all("x-forwarded-for").iter().collect();
            assert_eq!(xff, ["192.0.2.1", ip]);
        }
        // A Host that is not a token is left out rather than quoted.
        let mut request = Request::get("/")
            .header(header::HOST, "bad host\"")
            .body(Body::empty())
            .unwrap();
        request
            .extensions_mut()
            .insert(ClientIp([10, 0, 0, 1].into()));
        proxy(origin.clone()).oneshot(request).await.unwrap();
        let seen = origin.requests().pop().unwrap();
        assert_eq!(seen.headers[header::FORWARDED], "for=10.0.0.1;proto=http");
    }

    #[tokio::test]
    async fn origin_failures_become_gateway_errors() {
        let origin = TestFetcher::new();
        origin.route("/down", Reply::fail(ErrorKind::Unavailable));
        origin.route("/late", Reply::fail(ErrorKind::Timeout));
        let get = |p: &str| Request::get(p).body(Body::empty()).unwrap();
        let response = proxy(origin.clone()).oneshot(get("/down")).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
        let response = proxy(origin.clone()).oneshot(get("/late")).await.unwrap();
        assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
        let custom = proxy(origin).respond_with(|failure| {
            let mut response = Response::new(Body::from(format!("{failure:?}")));
            *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            response
        });
        let response = custom.oneshot(get("/down")).await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            response.extensions().get::<Unreachable>().is_some(),
            "still marked for the cache"
        );
    }

    #[tokio::test]
    async fn a_broken_client_body_is_the_clients_fault() {
        /// Reads the whole request body, as a real client connection to the origin does.
        #[derive(Clone)]
        struct Reading;
        impl Fetcher for Reading {
            async fn fetch(&self, request: Request<Body>) -> Result<Response<Body>, crate::Error> {
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
