//! [`RequestSpan`]: the server span of the request being handled, shared by every layer that handles it.
//!
//! The outermost layer (edge-observe's `TraceLayer`, or a Worker's entry point) starts the span and puts a
//! `RequestSpan` into the request's extensions; the layers inside it (WAF, JWT, rate limit, cache, the
//! origin fetcher) find it there and add their attributes, their stage timings (which become the
//! `Server-Timing` header) and child spans (an origin fetch, a fragment). The crates that do so depend on
//! this contract only, never on the observability crate.
//!
//! Everything is bounded: at most [`MAX_STAGES`] stages and [`MAX_CHILDREN`] child spans are kept (later
//! ones are counted in the span's `dropped`), attributes as [`Span::set`] bounds them.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use edge_core::ManualClock;
//! use edge_core::trace::{RequestSpan, Sampler, SpanKind, SplitMix, TraceContext, attr};
//!
//! let clock = ManualClock::new();
//! let ids = Arc::new(SplitMix::new(7));
//! let context = TraceContext::from_request(&http::HeaderMap::new(), &*ids, &Sampler::AlwaysOn);
//! let span = RequestSpan::start("GET", SpanKind::Server, context, ids, Arc::new(clock.clone()));
//!
//! // A layer inside records what it decided and how long it took, on the span's own clock.
//! let started = span.now();
//! clock.advance(Duration::from_micros(40));
//! span.set(attr::EDGE_CACHE_STATUS, "HIT");
//! span.stage_since("cache", started, Some("HIT"));
//!
//! let finished = span.finish().unwrap();
//! assert_eq!(finished.stages[0].duration, Duration::from_micros(40));
//! assert_eq!(finished.stages.len(), 1);
//! assert!(finished.span.is_ended());
//! ```

use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{IdSource, Span, SpanKind, TraceContext, Value};
use crate::clock::{Clock, Instant};
use crate::sync::lock;

/// Most stages kept per request.
pub const MAX_STAGES: usize = 32;
/// Most child spans kept per request.
pub const MAX_CHILDREN: usize = 64;

/// One stage of a request and how long it took (a `Server-Timing` entry).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stage {
    /// Its name (`waf`, `auth`, `ratelimit`, `cache`, `origin`, …).
    pub name: Cow<'static, str>,
    /// How long it took.
    pub duration: Duration,
    /// A short description (`HIT`, `limited`, …).
    pub description: Option<Cow<'static, str>>,
}

/// What a finished request span leaves: the span, its children and its stages.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct FinishedRequest {
    /// The request's own span, ended.
    pub span: Span,
    /// The child spans that ended while it ran.
    pub children: Vec<Span>,
    /// The stages, in the order they were recorded.
    pub stages: Vec<Stage>,
}

struct Inner {
    /// `None` once finished: what late clones record then goes nowhere.
    span: Option<Span>,
    children: Vec<Span>,
    stages: Vec<Stage>,
}

/// The span of the request being handled; cheap to clone (clones share it). See the [module docs](self).
#[derive(Clone)]
pub struct RequestSpan {
    // One reference count per request: the layers that clone the span from the extensions touch only
    // it, never the id source's and clock's counts, which every core serving requests shares.
    shared: Arc<Shared>,
}

struct Shared {
    context: TraceContext,
    // `Send + Sync` on every target (not `MaybeSend`): `http::Extensions` holds only such values, also
    // on wasm32. `SystemClock`, `ManualClock` and `SplitMix` are.
    ids: Arc<dyn IdSource + Send + Sync>,
    clock: Arc<dyn Clock + Send + Sync>,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for RequestSpan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestSpan")
            .field("context", &self.shared.context)
            .finish_non_exhaustive()
    }
}

impl RequestSpan {
    /// Starts the span of a request now: `context` is its place in the trace, `ids` makes its
    /// children's ids, `clock` times it and everything the inner layers record.
    pub fn start(
        name: impl Into<Cow<'static, str>>,
        kind: SpanKind,
        context: TraceContext,
        ids: Arc<dyn IdSource + Send + Sync>,
        clock: Arc<dyn Clock + Send + Sync>,
    ) -> Self {
        let span = Span::start(name, kind, context.clone(), &clock);
        Self {
            shared: Arc::new(Shared {
                context,
                ids,
                clock,
                inner: Mutex::new(Inner {
                    span: Some(span),
                    children: Vec::new(),
                    // A request usually records a few stages (waf, ratelimit, cache, origin): no
                    // regrowth.
                    stages: Vec::with_capacity(4),
                }),
            }),
        }
    }

    /// The request span in `extensions`, if an outer layer started one.
    #[must_use]
    pub fn from_extensions(extensions: &http::Extensions) -> Option<&Self> {
        extensions.get::<Self>()
    }

    /// Its place in the trace.
    #[must_use]
    pub fn context(&self) -> &TraceContext {
        &self.shared.context
    }

    /// Whether the trace is sampled (an unsampled span is still timed, for `Server-Timing`, but not
    /// exported).
    #[must_use]
    pub fn is_sampled(&self) -> bool {
        self.shared.context.flags.sampled()
    }

    /// Sets an attribute of the request span (replacing one of the same key).
    pub fn set(&self, key: impl Into<Cow<'static, str>>, value: impl Into<Value>) {
        if let Some(span) = &mut lock(&self.shared.inner).span {
            span.set(key, value);
        }
    }

    /// Records an event on the request span now.
    pub fn event(&self, name: impl Into<Cow<'static, str>>) {
        if let Some(span) = &mut lock(&self.shared.inner).span {
            span.event(name, &self.shared.clock);
        }
    }

    /// The span's clock, now: the start of a stage to record with [`stage_since`](Self::stage_since).
    #[must_use]
    pub fn now(&self) -> Instant {
        self.shared.clock.now()
    }

    /// Records a stage that started at `started` (from [`now`](Self::now)) and ends now.
    pub fn stage_since(
        &self,
        name: impl Into<Cow<'static, str>>,
        started: Instant,
        description: Option<&'static str>,
    ) {
        let duration = self.shared.clock.now().duration_since(started);
        self.stage(name, duration, description);
    }

    /// Records a stage (a `Server-Timing` entry).
    pub fn stage(
        &self,
        name: impl Into<Cow<'static, str>>,
        duration: Duration,
        description: Option<&'static str>,
    ) {
        let mut inner = lock(&self.shared.inner);
        if inner.stages.len() < MAX_STAGES {
            inner.stages.push(Stage {
                name: name.into(),
                duration,
                description: description.map(Cow::Borrowed),
            });
        } else {
            inner.count_dropped();
        }
    }

    /// Starts a child span now (same trace, a new span id, this request as its parent). Hand it back
    /// with [`end_child`](Self::end_child) when it is done.
    pub fn child(&self, name: impl Into<Cow<'static, str>>, kind: SpanKind) -> Span {
        Span::start(
            name,
            kind,
            self.shared.context.child(&*self.shared.ids),
            &self.shared.clock,
        )
    }

    /// Ends `child` (if it was not yet) and keeps it to be exported with the request.
    pub fn end_child(&self, mut child: Span) {
        child.end(&self.shared.clock);
        let mut inner = lock(&self.shared.inner);
        if inner.children.len() < MAX_CHILDREN {
            inner.children.push(child);
        } else {
            inner.count_dropped();
        }
    }

    /// Changes the request span itself (status, name, anything [`Span`] offers); `None` once finished.
    pub fn with_span<T>(&self, change: impl FnOnce(&mut Span) -> T) -> Option<T> {
        lock(&self.shared.inner).span.as_mut().map(change)
    }

    /// Ends the request span now and takes what it gathered; `None` if it was already finished. Clones
    /// still held by inner layers keep working, but what they record afterwards goes nowhere.
    pub fn finish(&self) -> Option<FinishedRequest> {
        let mut inner = lock(&self.shared.inner);
        let mut span = inner.span.take()?;
        span.end(&self.shared.clock);
        Some(FinishedRequest {
            span,
            children: std::mem::take(&mut inner.children),
            stages: std::mem::take(&mut inner.stages),
        })
    }
}

impl Inner {
    fn count_dropped(&mut self) {
        if let Some(span) = &mut self.span {
            span.dropped = span.dropped.saturating_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ManualClock;
    use crate::trace::{Sampler, SplitMix};

    fn started(clock: &ManualClock) -> RequestSpan {
        let ids: Arc<dyn IdSource + Send + Sync> = Arc::new(SplitMix::new(1));
        let context =
            TraceContext::from_request(&http::HeaderMap::new(), &*ids, &Sampler::AlwaysOn);
        RequestSpan::start(
            "GET /",
            SpanKind::Server,
            context,
            ids,
            Arc::new(clock.clone()),
        )
    }

    #[test]
    fn children_belong_to_the_request() {
        let clock = ManualClock::new();
        let span = started(&clock);
        let child = span.child("origin", SpanKind::Client);
        assert_eq!(child.context.trace_id, span.context().trace_id);
        assert_eq!(child.context.parent_id, Some(span.context().span_id));
        assert_ne!(child.context.span_id, span.context().span_id);
        clock.advance(Duration::from_millis(30));
        span.end_child(child);
        clock.advance(Duration::from_millis(5));
        let finished = span.finish().unwrap();
        assert!(span.finish().is_none(), "once");
        assert_eq!(finished.children.len(), 1);
        assert_eq!(finished.children[0].duration, Duration::from_millis(30));
        assert_eq!(finished.span.duration, Duration::from_millis(35));
    }

    #[test]
    fn stages_and_children_are_bounded() {
        let clock = ManualClock::new();
        let span = started(&clock);
        for _ in 0..MAX_STAGES + 3 {
            span.stage("s", Duration::ZERO, None);
        }
        for _ in 0..MAX_CHILDREN + 2 {
            let child = span.child("c", SpanKind::Internal);
            span.end_child(child);
        }
        let finished = span.finish().unwrap();
        assert_eq!(finished.stages.len(), MAX_STAGES);
        assert_eq!(finished.children.len(), MAX_CHILDREN);
        assert_eq!(finished.span.dropped, 5);
    }

    #[test]
    fn found_in_extensions() {
        let clock = ManualClock::new();
        let span = started(&clock);
        let mut extensions = http::Extensions::new();
        assert!(RequestSpan::from_extensions(&extensions).is_none());
        extensions.insert(span.clone());
        let found = RequestSpan::from_extensions(&extensions).unwrap();
        found.set("k", "v");
        assert_eq!(span.finish().unwrap().span.attributes.len(), 1);
    }
}
