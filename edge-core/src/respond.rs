//! [`Responder`]: how a layer's refusal becomes the response the client gets, replaceable by the user.
//!
//! Every SDK layer that answers by itself (a missing token, a rate limit, a WAF block, an origin that
//! failed) describes why in a typed reason and turns it into a response with a `Responder` for that
//! reason. Each layer's default is a small JSON or text answer; `respond_with` on the layer takes a
//! closure instead, which can call the reason's own default and adjust it, or answer in the app's own
//! error format.
//!
//! ```
//! use edge_core::Body;
//! use edge_core::respond::Responder;
//!
//! /// Why a (made-up) layer refused.
//! #[derive(Debug)]
//! struct Closed { reopens_at: &'static str }
//!
//! let responder = Responder::new(|closed: &Closed| {
//!     let mut response = http::Response::new(Body::from(format!("closed until {}\n", closed.reopens_at)));
//!     *response.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
//!     response
//! });
//! let response = responder.respond(&Closed { reopens_at: "09:00" });
//! assert_eq!(response.status(), 503);
//! ```

use std::fmt;
use std::sync::Arc;

use http::Response;

use crate::Body;

/// A shared function from a refusal's reason `R` to a response. Cheap to clone.
pub struct Responder<R: ?Sized> {
    respond: Arc<dyn Fn(&R) -> Response<Body> + Send + Sync>,
}

impl<R: ?Sized> Responder<R> {
    /// Answers with `respond`.
    pub fn new(respond: impl Fn(&R) -> Response<Body> + Send + Sync + 'static) -> Self {
        Self {
            respond: Arc::new(respond),
        }
    }

    /// The response for `reason`.
    #[must_use]
    pub fn respond(&self, reason: &R) -> Response<Body> {
        (self.respond)(reason)
    }
}

impl<R: ?Sized> Clone for Responder<R> {
    fn clone(&self) -> Self {
        Self {
            respond: Arc::clone(&self.respond),
        }
    }
}

impl<R: ?Sized> fmt::Debug for Responder<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Responder").finish_non_exhaustive()
    }
}
