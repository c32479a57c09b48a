//! [`CountClones`]: a service that counts how often it is cloned.

use std::convert::Infallible;
use std::future::Ready;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use http::{Request, Response};

use crate::Body;

/// An inner service that answers `200` with an empty body and counts its clones, for tests that a
/// layer's fast path calls the service behind it without cloning it.
///
/// A tower layer whose future must call the inner service after awaiting something clones that service
/// on every request (tower's swap), and cloning a service clones every layer under it: in a deep stack
/// that is quadratic in the depth, with an `Arc` count touched per layer. A layer that decides at once
/// calls the inner service from `call` and clones nothing; this service proves it.
///
/// ```
/// use edge_core::testing::CountClones;
/// use tower::Service;
///
/// let mut service = CountClones::new();
/// let copy = service.clone();
/// let _ = service.call(http::Request::new(edge_core::Body::empty()));
/// assert_eq!(service.clones(), 1);
/// # drop(copy);
/// ```
#[derive(Debug, Default)]
pub struct CountClones {
    clones: Arc<AtomicUsize>,
}

impl CountClones {
    /// A fresh counter at zero.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// How often this service, or a clone of it, has been cloned.
    #[must_use]
    pub fn clones(&self) -> usize {
        self.clones.load(Ordering::SeqCst)
    }
}

impl Clone for CountClones {
    fn clone(&self) -> Self {
        self.clones.fetch_add(1, Ordering::SeqCst);
        Self {
            clones: Arc::clone(&self.clones),
        }
    }
}

impl<B> tower_service::Service<Request<B>> for CountClones {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Ready<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _request: Request<B>) -> Self::Future {
        std::future::ready(Ok(Response::new(Body::empty())))
    }
}
