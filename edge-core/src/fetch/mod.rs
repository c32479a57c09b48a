//! Outbound HTTP: how the SDK reaches origins, fragment servers and JWKS endpoints.
//!
//! A [`Fetcher`] takes an `http::Request<Body>` with an absolute URI and returns the response. Redirects are
//! not followed (an edge proxy passes them on). Implementations:
//!
//! | implementation | where | feature |
//! |---|---|---|
//! | [`HyperFetcher`](crate::host::tokio::HyperFetcher) | native hosts, pooled connections over hyper-util | `hyper` |
//! | [`TestFetcher`](crate::testing::TestFetcher) | tests: canned replies, latency on a `ManualClock`, failures | `testing` |
//! | `WorkersFetcher` | Cloudflare Workers (`fetch`) | `workers` (planned) |
//!
//! # Errors
//!
//! Failures to get a response map onto [`ErrorKind`](crate::ErrorKind): a refused or failed connection is
//! `Unavailable`, a passed deadline `Timeout`, a malformed response `Protocol`, a relative URI
//! `InvalidInput`. An HTTP error status is *not* an error: a 503 from the origin is a response.
//!
//! # Cancel safety
//!
//! Dropping the future abandons the request; the connection is closed or returned to the pool.
//!
//! ```
//! use edge_core::{Body, Fetcher};
//!
//! async fn origin_status<F: Fetcher>(fetcher: &F) -> Result<u16, edge_core::Error> {
//!     let request = http::Request::get("http://origin.internal/health").body(Body::empty()).unwrap();
//!     Ok(fetcher.fetch(request).await?.status().as_u16())
//! }
//! ```

use http::{Request, Response};

use crate::body::Body;
use crate::error::Error;
use crate::sync::{BoxFuture, MaybeSend, MaybeSync};

/// Marks a response that a service made up because its upstream could not be reached (a refused or
/// broken connection, a passed deadline): the error it stands for, in the response's extensions.
///
/// A tower service that proxies to an origin answers such failures with a `502`/`504` it writes itself,
/// since its error type is usually `Infallible`; with this marker a layer in front of it (the HTTP
/// cache) can still tell "the origin answered 502" from "the origin was not there", and, for
/// instance, serve a stale copy only in the second case.
///
/// ```
/// use edge_core::{Body, Error, ErrorKind, fetch::Unreachable};
///
/// let mut response = http::Response::new(Body::from("origin unreachable"));
/// *response.status_mut() = http::StatusCode::BAD_GATEWAY;
/// response.extensions_mut().insert(Unreachable(Error::new(ErrorKind::Unavailable, "refused")));
/// assert!(response.extensions().get::<Unreachable>().is_some());
/// ```
#[derive(Clone, Debug)]
pub struct Unreachable(pub Error);

/// Sends HTTP requests. See the [module docs](self).
pub trait Fetcher: MaybeSend + MaybeSync {
    /// Sends `request` and returns the response head with a streaming body.
    ///
    /// # Errors
    ///
    /// No response could be obtained; see the [module docs](self#errors).
    fn fetch(
        &self,
        request: Request<Body>,
    ) -> impl Future<Output = Result<Response<Body>, Error>> + MaybeSend;
}

/// The object-safe twin of [`Fetcher`]. Every `Fetcher` is one.
pub trait DynFetcher: MaybeSend + MaybeSync {
    /// See [`Fetcher::fetch`].
    fn fetch_boxed(&self, request: Request<Body>) -> BoxFuture<'_, Result<Response<Body>, Error>>;
}

impl<T: Fetcher> DynFetcher for T {
    fn fetch_boxed(&self, request: Request<Body>) -> BoxFuture<'_, Result<Response<Body>, Error>> {
        Box::pin(self.fetch(request))
    }
}

/// A `dyn DynFetcher` is itself a [`Fetcher`].
impl<'d> Fetcher for dyn DynFetcher + 'd {
    fn fetch(
        &self,
        request: Request<Body>,
    ) -> impl Future<Output = Result<Response<Body>, Error>> + MaybeSend {
        self.fetch_boxed(request)
    }
}

impl<F: Fetcher + ?Sized> Fetcher for std::sync::Arc<F> {
    fn fetch(
        &self,
        request: Request<Body>,
    ) -> impl Future<Output = Result<Response<Body>, Error>> + MaybeSend {
        (**self).fetch(request)
    }
}
