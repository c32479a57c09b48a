//! (feature `tower`) The observability layers, for axum, hyper (through hyper-util) and any tower stack.
//!
//! | layer | what it does |
//! |---|---|
//! | [`TraceLayer`] | starts the request's server span from its `traceparent`, hands it to the layers inside ([`RequestSpan`](edge_core::trace::RequestSpan)), adds their stages to `Server-Timing`, exports the span after the response, writes a JSON log line, and (feature `tracing`) enters a `tracing` span so users' subscribers see it |
//! | [`MetricsLayer`] | request counts and latency by route, status class, cache status and colo; `Server-Timing: edge`; a Prometheus endpoint |
//!
//! Put [`MetricsLayer`] outside [`TraceLayer`]: the metrics then time everything, the trace included.

mod metrics;
mod trace;

pub use self::metrics::{MetricsLayer, MetricsService};
pub use self::trace::{LogSink, SpanSink, TraceLayer, TraceService};

/// The response's `x-cache-status`, from the fixed set the HTTP cache writes (`OTHER` for anything else,
/// `NONE` when absent), so a label set cannot grow from it.
pub(crate) fn cache_status(headers: &http::HeaderMap) -> &'static str {
    headers
        .get("x-cache-status")
        .and_then(|v| v.to_str().ok())
        .map_or("NONE", |s| match s {
            "HIT" => "HIT",
            "MISS" => "MISS",
            "STALE" => "STALE",
            "UPDATING" => "UPDATING",
            "REVALIDATED" => "REVALIDATED",
            "EXPIRED" => "EXPIRED",
            "BYPASS" => "BYPASS",
            _ => "OTHER",
        })
}

/// The PoP that served the request: a [`RequestGeo`](edge_core::RequestGeo) in the extensions (the workers
/// adapter puts one there), else `x-edge-colo` or the suffix of `cf-ray` (three to five ASCII letters, as
/// `RequestGeo` reads them); `NONE` when neither says.
pub(crate) fn colo<B>(request: &http::Request<B>) -> std::borrow::Cow<'_, str> {
    if let Some(colo) = request
        .extensions()
        .get::<edge_core::RequestGeo>()
        .and_then(|geo| geo.colo.as_deref())
    {
        return colo.into();
    }
    let from_header = |name: &str| {
        let value = request.headers().get(name)?.to_str().ok()?;
        let code = value.rsplit('-').next().unwrap_or(value).trim();
        ((3..=5).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_alphabetic()))
            .then(|| code.to_ascii_uppercase())
    };
    from_header("x-edge-colo")
        .or_else(|| from_header("cf-ray"))
        .map_or("NONE".into(), Into::into)
}
