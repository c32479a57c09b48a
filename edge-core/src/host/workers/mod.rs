//! Cloudflare Workers adapters (feature `workers`, wasm32 only): the platform's primitives behind the SDK's
//! contracts, so the layers an axum or hyper host runs serve a Worker unchanged.
//!
//! | contract | Workers primitive | here |
//! |---|---|---|
//! | [`Fetcher`](crate::Fetcher) | global `fetch()` | [`WorkersFetcher`] |
//! | [`WaitUntil`](crate::WaitUntil) | the execution context's `waitUntil()` | [`WorkersWaitUntil`] with [`in_request`] |
//! | [`Timer`](crate::Timer) | `setTimeout()` | [`WorkersTimer`] |
//! | [`Clock`](crate::Clock) | `Date.now()` | [`SystemClock`](crate::SystemClock) (on wasm32 it reads `Date.now()`) |
//! | [`RequestGeo`](crate::RequestGeo) | the request's `cf` object | [`geo_from_request`], filled by [`request_from_worker`] |
//! | [`Body`](crate::Body), `http` types | `Request`, `Response`, `ReadableStream` | [`request_from_worker`], [`response_to_worker`], … |
//!
//! KV, the Cache API and Durable Objects live with the crates that own those contracts (`edge-kv`,
//! `edge-cache`, `edge-do`, each behind its own `workers` feature).
//!
//! Nothing here needs `Send`: on wasm32 the SDK's [`MaybeSend`](crate::MaybeSend) bound is empty, so JS
//! handles are held as they are, with no `SendWrapper` and no `unsafe impl Send`. A JS exception thrown by a
//! platform call becomes an [`Error`](crate::Error) of kind [`Backend`](crate::ErrorKind::Backend) (or the
//! kind the call's contract names), never a trap.
//!
//! A Worker's entry point wraps its request in [`in_request`] so that post-response work is tied to the
//! request's own execution context:
//!
//! ```ignore
//! #[worker::event(fetch)]
//! async fn fetch(req: worker::Request, env: worker::Env, ctx: worker::Context) -> worker::Result<worker::Response> {
//!     let request = edge_core::host::workers::request_from_worker(req)?;
//!     let response = edge_core::host::workers::in_request(ctx, service().oneshot(request)).await?;
//!     Ok(edge_core::host::workers::response_to_worker(response)?)
//! }
//! ```

mod context;
mod fetch;
mod http;

pub use context::{InRequest, WorkersTimer, WorkersWaitUntil, in_request};
pub use fetch::WorkersFetcher;
pub use http::{
    body_from_stream, body_to_stream, geo_from_request, request_from_web_sys, request_from_worker,
    request_to_web_sys, response_from_web_sys, response_to_web_sys, response_to_worker,
};

use wasm_bindgen::{JsCast, JsValue};

use crate::error::{Error, ErrorKind};

/// The message of a JS exception, for an [`Error`]: an `Error`'s `message`, a thrown string, or a fixed
/// text for anything else. JS values are not `Send`, so only their text is kept.
#[must_use]
pub fn js_message(value: &JsValue) -> String {
    if let Some(error) = value.dyn_ref::<js_sys::Error>() {
        return String::from(error.message());
    }
    value
        .as_string()
        .unwrap_or_else(|| "a JS value that is not an Error".to_owned())
}

/// An [`Error`] of `kind` for a JS exception thrown while doing `what`.
#[must_use]
pub fn js_error(kind: ErrorKind, what: &str, value: &JsValue) -> Error {
    Error::new(kind, format!("{what}: {}", js_message(value)))
}

/// An [`Error`] of kind [`Backend`](ErrorKind::Backend) for a workers-rs error met while doing `what`.
#[must_use]
pub fn worker_error(what: &str, error: &worker::Error) -> Error {
    Error::new(ErrorKind::Backend, format!("{what}: {error}"))
}
