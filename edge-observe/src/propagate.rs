//! [`TracedFetcher`]: the trace carried into outgoing requests, with a client span per fetch.
//!
//! Wrap the fetcher the pipeline reaches its origin (or fragments, or a shield) with. For a request whose
//! extensions hold a [`RequestSpan`] (the [`TraceLayer`](crate::trace::TraceLayer) puts one there, and the
//! SDK's layers keep extensions when they forward), it starts a client span, sends that span's
//! `traceparent` and the `tracestate` upstream, records the outcome on it, and, when asked, a
//! `Server-Timing` stage. With only a [`TraceContext`] in the extensions it propagates that; with neither
//! it sends the request as it is.
//!
//! ```
//! use std::sync::Arc;
//! use edge_core::testing::{Reply, TestFetcher};
//! use edge_core::trace::{RequestSpan, Sampler, SpanKind, SplitMix, TraceContext};
//! use edge_core::{Body, Fetcher, ManualClock};
//! use edge_observe::propagate::TracedFetcher;
//!
//! # futures::executor::block_on(async {
//! let origin = TestFetcher::new();
//! origin.route("/", Reply::ok("hi"));
//! let fetcher = TracedFetcher::new(origin.clone()).with_stage("origin");
//!
//! let ids = Arc::new(SplitMix::new(1));
//! let context = TraceContext::from_request(&http::HeaderMap::new(), &*ids, &Sampler::AlwaysOn);
//! let span = RequestSpan::start("GET", SpanKind::Server, context, ids, Arc::new(ManualClock::new()));
//! let mut request = http::Request::get("http://origin.internal/").body(Body::empty()).unwrap();
//! request.extensions_mut().insert(span.clone());
//! fetcher.fetch(request).await.unwrap();
//!
//! let sent = &origin.requests()[0];
//! let finished = span.finish().unwrap();
//! let child = &finished.children[0];
//! assert!(sent.headers["traceparent"].to_str().unwrap().contains(&child.context.span_id.to_string()));
//! assert_eq!(finished.stages[0].name, "origin");
//! # });
//! ```

use std::borrow::Cow;

use edge_core::trace::{RequestSpan, SpanKind, Status, TraceContext, attr};
use edge_core::{Body, Error, Fetcher};
use http::{Request, Response};

/// A [`Fetcher`] that propagates the trace. See the [module docs](self).
#[derive(Clone, Debug)]
pub struct TracedFetcher<F> {
    inner: F,
    stage: Option<Cow<'static, str>>,
}

impl<F> TracedFetcher<F> {
    /// Propagates the trace into `inner`'s requests.
    pub const fn new(inner: F) -> Self {
        Self { inner, stage: None }
    }

    /// Also records each fetch as a `Server-Timing` stage called `stage`.
    #[must_use]
    pub fn with_stage(mut self, stage: impl Into<Cow<'static, str>>) -> Self {
        self.stage = Some(stage.into());
        self
    }

    /// The wrapped fetcher.
    pub const fn inner(&self) -> &F {
        &self.inner
    }
}

impl<F: Fetcher> Fetcher for TracedFetcher<F> {
    async fn fetch(&self, mut request: Request<Body>) -> Result<Response<Body>, Error> {
        let Some(parent) = RequestSpan::from_extensions(request.extensions()).cloned() else {
            if let Some(context) = request.extensions().get::<TraceContext>().cloned() {
                context.inject(request.headers_mut());
            }
            return self.inner.fetch(request).await;
        };
        let method = attr::method_value(request.method());
        let mut child = parent.child(method, SpanKind::Client);
        child.set(attr::HTTP_REQUEST_METHOD, method);
        let uri = request.uri();
        let url = match (uri.scheme_str(), uri.authority()) {
            (Some(scheme), Some(authority)) => format!("{scheme}://{authority}{}", uri.path()),
            _ => uri.path().to_owned(),
        };
        child.set(attr::URL_FULL, url);
        if let Some(host) = uri.host() {
            child.set(attr::SERVER_ADDRESS, host.to_owned());
        }
        child.context.inject(request.headers_mut());
        let started = parent.now();
        let result = self.inner.fetch(request).await;
        match &result {
            Ok(response) => {
                child.set(attr::HTTP_RESPONSE_STATUS_CODE, response.status().as_u16());
                if response.status().is_server_error() {
                    child.set(attr::ERROR_TYPE, response.status().as_str().to_owned());
                    child.set_status(Status::Error(Cow::Borrowed("server error")));
                }
            }
            Err(error) => {
                child.set(attr::ERROR_TYPE, error.kind().to_string());
                child.set_status(Status::Error(Cow::Owned(error.kind().to_string())));
            }
        }
        parent.end_child(child);
        if let Some(stage) = &self.stage {
            parent.stage_since(stage.clone(), started, None);
        }
        result
    }
}
