//! [`HyperFetcher`]: outbound HTTP over hyper-util's pooled client (feature `hyper`, native hosts).
//!
//! hyper-util rather than reqwest: hyper is already in every axum or hyper host's dependency tree, so this
//! adds almost nothing to build, and it leaves the TLS choice to the user, who passes any connector
//! (`hyper-rustls`, `hyper-tls`) to [`HyperFetcher::with_connector`]. The default connector speaks plain HTTP,
//! which is what an origin on a private network or on loopback needs.

use std::time::Duration;

use http::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::body::Body;
use crate::error::{Error, ErrorKind};
use crate::fetch::Fetcher;

/// A [`Fetcher`] over hyper-util's connection-pooling client. Cheap to clone; clones share the pool.
///
/// Requests are made on the tokio runtime of the task that awaits them.
///
/// hyper-util rather than reqwest: hyper is already in every axum or hyper host's dependency tree, so this
/// adds almost nothing to build, and it leaves the TLS choice to the user, who passes any connector
/// (`hyper-rustls`, `hyper-tls`) to [`HyperFetcher::with_connector`]. The default connector speaks plain
/// HTTP, which is what an origin on a private network or on loopback needs.
///
/// ```no_run
/// use std::time::Duration;
/// use edge_core::{Body, Fetcher, host::tokio::HyperFetcher};
///
/// # async fn demo() -> Result<(), edge_core::Error> {
/// let fetcher = HyperFetcher::new().with_timeout(Duration::from_secs(5));
/// let request = http::Request::get("http://127.0.0.1:3000/").body(Body::empty()).unwrap();
/// let response = fetcher.fetch(request).await?;
/// println!("{}", response.status());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct HyperFetcher<C = HttpConnector> {
    client: Client<C, Body>,
    timeout: Option<Duration>,
    body_timeout: Option<Duration>,
}

impl HyperFetcher<HttpConnector> {
    /// A plain-HTTP fetcher with hyper-util's default pool settings and no timeout.
    #[must_use]
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Self::with_connector(connector)
    }
}

impl Default for HyperFetcher<HttpConnector> {
    fn default() -> Self {
        Self::new()
    }
}

impl<C> HyperFetcher<C>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    /// A fetcher that opens connections with `connector` (for instance an HTTPS connector).
    #[must_use]
    pub fn with_connector(connector: C) -> Self {
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector);
        Self {
            client,
            timeout: None,
            body_timeout: None,
        }
    }

    /// Fails a request with [`ErrorKind::Timeout`] if its response head has not arrived within `timeout`.
    /// The body then streams without a deadline unless [`with_body_timeout`](Self::with_body_timeout)
    /// sets one.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Fails a response body with [`ErrorKind::Timeout`] if it has not ended within `timeout` of its
    /// head: an origin that sends a head and then stalls cannot hold a reader (a cache fill, a client)
    /// forever.
    #[must_use]
    pub fn with_body_timeout(mut self, timeout: Duration) -> Self {
        self.body_timeout = Some(timeout);
        self
    }
}

impl<C> Fetcher for HyperFetcher<C>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    async fn fetch(&self, request: Request<Body>) -> Result<Response<Body>, Error> {
        if request.uri().scheme().is_none() || request.uri().authority().is_none() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("fetch needs an absolute uri, got `{}`", request.uri()),
            ));
        }
        let response = self.client.request(request);
        let response = match self.timeout {
            Some(timeout) => tokio::time::timeout(timeout, response).await.map_err(|_| {
                Error::new(
                    ErrorKind::Timeout,
                    format!("no response within {timeout:?}"),
                )
            })?,
            None => response.await,
        };
        let response = response.map_err(|e| {
            let kind = if e.is_connect() {
                ErrorKind::Unavailable
            } else {
                ErrorKind::Protocol
            };
            Error::with_source(kind, "http request failed", e)
        })?;
        let body_timeout = self.body_timeout;
        Ok(response.map(|body| {
            let body = Body::from_http_body(body);
            match body_timeout {
                Some(timeout) if body.is_stream() => with_deadline(body, timeout),
                _ => body,
            }
        }))
    }
}

/// `body`, failing with [`ErrorKind::Timeout`] if it has not ended by `timeout` from now.
fn with_deadline(body: Body, timeout: Duration) -> Body {
    use futures_util::StreamExt;
    let deadline = tokio::time::Instant::now() + timeout;
    let chunks = futures_util::stream::unfold(Some(body), move |body| async move {
        let mut body = body?;
        match tokio::time::timeout_at(deadline, body.next()).await {
            Ok(Some(chunk)) => Some((chunk, Some(body))),
            Ok(None) => None,
            Err(_) => {
                let error = Error::new(
                    ErrorKind::Timeout,
                    format!("the response body did not end within {timeout:?}"),
                );
                Some((Err(error), None))
            }
        }
    });
    Body::from_stream(chunks)
}
