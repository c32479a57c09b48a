//! The one shape of the layers' default refusals: a small JSON body no cache may keep.

use edge_core::Body;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

/// `status` with `body` as `application/json` and `Cache-Control: no-store`.
pub(crate) fn json_refusal(status: StatusCode, body: impl Into<Body>) -> Response<Body> {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
