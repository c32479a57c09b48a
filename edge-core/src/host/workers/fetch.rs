//! Outbound HTTP through the runtime's `fetch()`.

use http::{Request, Response};
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use crate::body::Body;
use crate::error::{Error, ErrorKind};
use crate::fetch::Fetcher;

use super::http::{request_to_web_sys, response_from_web_sys};
use super::js_error;

/// [`Fetcher`] over the Workers runtime's global `fetch()`: request and response bodies stream both ways,
/// redirects are returned rather than followed (as every other `Fetcher` in the SDK does), and a network
/// failure is an [`ErrorKind::Unavailable`] error.
///
/// Subrequest limits apply (50 per request on the free plan, 1,000 on paid plans): the ESI assembler's
/// fragment limit keeps a page well under them.
#[derive(Clone, Copy, Debug, Default)]
#[non_exhaustive]
pub struct WorkersFetcher;

impl WorkersFetcher {
    /// The runtime's `fetch()`.
    #[must_use]
    pub const fn new() -> Self {
        Self
    }
}

impl Fetcher for WorkersFetcher {
    async fn fetch(&self, request: Request<Body>) -> Result<Response<Body>, Error> {
        let request = request_to_web_sys(request)?;
        // Workers' global scope has `fetch` as every worker global does; the cast only picks the binding.
        let global: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
        let response = JsFuture::from(global.fetch_with_request(&request))
            .await
            .map_err(|e| js_error(ErrorKind::Unavailable, "fetch", &e))?;
        let response: web_sys::Response = response.dyn_into().map_err(|_| {
            Error::new(
                ErrorKind::Protocol,
                "fetch resolved to something else than a Response",
            )
        })?;
        response_from_web_sys(response)
    }
}
