//! (feature `tracing`) [`SpanExportLayer`]: the application's own `tracing` spans, exported through the
//! SDK's exporter as children of the request's server span.
//!
//! [`TraceLayer`](crate::trace::TraceLayer) (with feature `tracing`) runs each request inside an
//! `http.server` span whose `traceparent` field names the request's server span. Installed in the
//! application's subscriber, this layer gives every span opened inside it (an `#[instrument]`ed handler,
//! a database call) an id in the same trace, times it, keeps its fields as attributes and its events as
//! span events, and hands it on when it closes. Made by
//! [`TraceLayer::span_export_layer`](crate::trace::TraceLayer::span_export_layer), it hands the spans to
//! the trace layer, which sends them to its [`OtlpExporter`] with the next request's spans, after the
//! response: on every target, a Worker included. Made by [`SpanExportLayer::new`], it hands them
//! straight to a `Send + Sync` [`SpanSink`]. Either way no
//! `tracing-opentelemetry` is needed beside the SDK.
//!
//! A span outside any request (no ancestor with a `traceparent` field) is not exported; a span in a trace
//! the sampler dropped is not either. Any span of yours with a `traceparent` field (a job picked off a
//! queue with the producer's context, say) roots a subtree in that trace the same way.
//!
//! ```
//! use edge_core::SystemClock;
//! use edge_core::host::tokio::HyperFetcher;
//! use edge_core::host::tokio::TokioTimer;
//! use edge_core::trace::SplitMix;
//! use edge_observe::otlp::OtlpExporter;
//! use edge_core::wait_until::QueuedWaitUntil;
//! use edge_observe::trace::TraceLayer;
//! use tracing_subscriber::layer::SubscriberExt;
//!
//! # fn main() -> Result<(), edge_core::Error> {
//! let exporter = OtlpExporter::builder(HyperFetcher::new(), "http://127.0.0.1:4318", TokioTimer::new())?.build();
//! let trace = TraceLayer::new(SystemClock::new(), QueuedWaitUntil::new(), SplitMix::from_os())
//!     .export_to(exporter);
//! let subscriber = tracing_subscriber::registry().with(trace.span_export_layer());
//! // tracing::subscriber::set_global_default(subscriber); then add `trace` to the app's router.
//! # let _ = subscriber;
//! # Ok(())
//! # }
//! ```
//!
//! [`OtlpExporter`]: crate::otlp::OtlpExporter

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use edge_core::Clock;
use edge_core::trace::{IdSource, Span, SpanKind, Status, TraceContext, TraceParent, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use crate::trace::SpanSink;

/// Exports `tracing` spans inside a request as children of its server span. See the [module docs](self).
pub struct SpanExportLayer {
    sink: Arc<dyn SpanSink + Send + Sync>,
    clock: Arc<dyn Clock + Send + Sync>,
    ids: Arc<dyn IdSource + Send + Sync>,
}

/// The most application spans waiting for a request to carry them (the rest are dropped).
const MAX_BUFFERED: usize = 4096;

/// Ended application spans waiting for the next finishing request of a
/// [`TraceLayer`](crate::trace::TraceLayer) to hand them to its sink. `Send + Sync` on every target, so
/// the `tracing` layer can hold it where the exporter itself is not (a Worker's).
#[derive(Debug, Default)]
pub(crate) struct SpanBuffer {
    spans: std::sync::Mutex<Vec<Span>>,
    dropped: std::sync::atomic::AtomicU64,
}

impl SpanBuffer {
    /// Everything buffered so far.
    pub(crate) fn take(&self) -> Vec<Span> {
        std::mem::take(
            &mut *self
                .spans
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

impl SpanSink for Arc<SpanBuffer> {
    fn record_spans(&self, spans: Vec<Span>) {
        let mut buffered = self
            .spans
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let room = MAX_BUFFERED.saturating_sub(buffered.len());
        let over = spans.len().saturating_sub(room) as u64;
        buffered.extend(spans.into_iter().take(room));
        if over > 0 {
            let before = self
                .dropped
                .fetch_add(over, std::sync::atomic::Ordering::Relaxed);
            if before == 0 {
                // Said once: the buffer is only drained by finishing requests of a TraceLayer that
                // exports; spans opened with no such request to carry them pile up.
                tracing::warn!(
                    "application spans dropped: {MAX_BUFFERED} are waiting for a TraceLayer request to \
                     export them (is the trace layer exporting, and in front of these routes?)"
                );
            }
        }
    }

    fn flush_later(&self) -> edge_core::BoxFuture<'static, ()> {
        Box::pin(async {})
    }
}

impl fmt::Debug for SpanExportLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpanExportLayer").finish_non_exhaustive()
    }
}

impl SpanExportLayer {
    /// Hands ended spans to `sink`, timed by `clock`, with span ids from `ids`.
    pub fn new(
        sink: impl SpanSink + Send + Sync,
        clock: impl Clock + Send + Sync + 'static,
        ids: impl IdSource + Send + Sync + 'static,
    ) -> Self {
        Self {
            sink: Arc::new(sink),
            clock: Arc::new(clock),
            ids: Arc::new(ids),
        }
    }

    pub(crate) fn buffered(
        buffer: Arc<SpanBuffer>,
        clock: Arc<dyn Clock + Send + Sync>,
        ids: Arc<dyn IdSource + Send + Sync>,
    ) -> Self {
        Self {
            sink: Arc::new(buffer),
            clock,
            ids,
        }
    }
}

/// What the layer keeps in a `tracing` span's extensions.
enum Node {
    /// A span that names its place in a trace (`traceparent`): its children join that trace; the span
    /// itself is exported by whoever made it.
    Root(TraceParent),
    /// A span of ours, running. `None` once handed to the sink.
    Local(Option<Box<Span>>),
}

impl Node {
    /// The context of a new child of this span (`None` once it has ended).
    fn child(&self, ids: &(dyn IdSource + Send + Sync)) -> Option<TraceContext> {
        match self {
            Self::Root(parent) => Some(TraceContext::child_of(parent, ids)),
            Self::Local(span) => span.as_ref().map(|s| s.context.child(ids)),
        }
    }
}

/// Fields as span attributes; a `traceparent` field read as one.
#[derive(Default)]
struct Fields {
    attributes: Vec<(Cow<'static, str>, Value)>,
    traceparent: Option<TraceParent>,
    message: Option<String>,
}

// Values, event names and error texts are bounded by `Span` itself (`edge_core::trace::MAX_VALUE_LEN`).
impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "traceparent" => self.traceparent = TraceParent::parse(value),
            "message" => self.message = Some(value.to_owned()),
            name => self
                .attributes
                .push((name.into(), Value::Str(value.to_owned().into()))),
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.attributes
            .push((field.name().into(), Value::I64(value)));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        let value = i64::try_from(value).unwrap_or(i64::MAX);
        self.attributes
            .push((field.name().into(), Value::I64(value)));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.attributes
            .push((field.name().into(), Value::F64(value)));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.attributes
            .push((field.name().into(), Value::Bool(value)));
    }
}

impl<S> tracing_subscriber::Layer<S> for SpanExportLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attributes: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut fields = Fields::default();
        attributes.record(&mut fields);
        let node = if let Some(parent) = fields.traceparent {
            Node::Root(parent)
        } else {
            let context = span.parent().and_then(|parent| {
                parent
                    .extensions()
                    .get::<Node>()
                    .and_then(|node| node.child(&*self.ids))
            });
            let Some(context) = context else {
                return; // outside any request
            };
            if !context.flags.sampled() {
                return;
            }
            let mut local = Span::start(
                span.metadata().name(),
                SpanKind::Internal,
                context,
                &self.clock,
            );
            for (key, value) in fields.attributes {
                local.set(key, value);
            }
            Node::Local(Some(Box::new(local)))
        };
        span.extensions_mut().insert(node);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut extensions = span.extensions_mut();
        if let Some(Node::Local(Some(local))) = extensions.get_mut::<Node>() {
            let mut fields = Fields::default();
            values.record(&mut fields);
            for (key, value) in fields.attributes {
                local.set(key, value);
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.event_span(event) else {
            return;
        };
        let mut extensions = span.extensions_mut();
        if let Some(Node::Local(Some(local))) = extensions.get_mut::<Node>() {
            let mut fields = Fields::default();
            event.record(&mut fields);
            let name = fields
                .message
                .unwrap_or_else(|| event.metadata().name().to_owned());
            if *event.metadata().level() == Level::ERROR {
                local.set_status(Status::Error(Cow::Owned(name.clone())));
            }
            local.event(name, &self.clock);
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else {
            return;
        };
        let mut extensions = span.extensions_mut();
        if let Some(Node::Local(local)) = extensions.get_mut::<Node>() {
            if let Some(mut local) = local.take() {
                local.end(&self.clock);
                self.sink.record_spans(vec![*local]);
            }
        }
    }
}
