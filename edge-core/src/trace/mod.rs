//! The trace contract: W3C Trace Context, ids, head sampling, spans and the exporter trait.
//!
//! | item | what it is |
//! |---|---|
//! | [`TraceParent`], [`TraceState`] | the two W3C headers, strict to the spec ([`context`]) |
//! | [`TraceContext`] | where a request sits in its trace: ids, flags, vendor state; [`TraceContext::inject`] propagates it into an outgoing request |
//! | [`IdSource`] | new trace and span ids from an injected random source ([`SplitMix`] for hosts and tests) |
//! | [`Sampler`] | head sampling: always, never, a ratio of trace ids, or the parent's decision |
//! | [`Span`] | a timed operation with attributes, events and a status, timed by the [`Clock`] |
//! | [`SpanExporter`] | where finished spans go (OTLP in the observability crate) |
//! | [`RequestSpan`] | the server span of the request being handled, in its extensions: inner layers add attributes, `Server-Timing` stages and child spans ([`request`]) |
//! | [`attr`] | the attribute names every crate records (OpenTelemetry's HTTP conventions, `edge.*` for the SDK's own) |
//!
//! Bad input never fails a request: a malformed or oversized `traceparent` starts a new trace, a bad
//! `tracestate` is dropped, and spans keep at most [`MAX_ATTRIBUTES`] attributes and [`MAX_EVENTS`]
//! events (later ones are counted as dropped).

pub mod attr;
pub mod context;
pub mod request;

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use http::HeaderMap;

pub use self::context::{SpanId, TraceFlags, TraceId, TraceParent, TraceState};
pub use self::request::{FinishedRequest, RequestSpan, Stage};
use crate::clock::{Clock, Instant};
use crate::error::Error;
use crate::sync::{MaybeSend, MaybeSync};

/// Most attributes a span keeps.
pub const MAX_ATTRIBUTES: usize = 128;
/// Most events a span keeps.
pub const MAX_EVENTS: usize = 128;
/// Longest string attribute value kept, in bytes (longer ones are cut at a character boundary).
pub const MAX_VALUE_LEN: usize = 4096;

/// New ids from a random source.
pub trait IdSource: MaybeSend + MaybeSync {
    /// 64 random bits.
    fn next_u64(&self) -> u64;

    /// A new trace id (never all zeros).
    fn trace_id(&self) -> TraceId {
        loop {
            let mut bytes = [0u8; 16];
            bytes[..8].copy_from_slice(&self.next_u64().to_be_bytes());
            bytes[8..].copy_from_slice(&self.next_u64().to_be_bytes());
            if let Some(id) = TraceId::from_bytes(bytes) {
                return id;
            }
        }
    }

    /// A new span id (never all zeros).
    fn span_id(&self) -> SpanId {
        loop {
            if let Some(id) = SpanId::from_bytes(self.next_u64().to_be_bytes()) {
                return id;
            }
        }
    }
}

/// SplitMix64 over an atomic counter: fast, thread-safe, and as unpredictable as its seed. Hosts seed it
/// from the OS (`getrandom`, `crypto.getRandomValues` on Workers); tests with a constant.
#[derive(Debug)]
pub struct SplitMix {
    state: AtomicU64,
}

impl SplitMix {
    /// A source starting from `seed`.
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self {
            state: AtomicU64::new(seed),
        }
    }

    /// A source seeded from the operating system's randomness (through std's `RandomState`, whose keys
    /// come from `getrandom`) and the time. Native hosts only: on `wasm32-unknown-unknown` std has no
    /// randomness, so a Worker seeds [`new`](Self::new) from `crypto.getRandomValues`.
    #[cfg(not(target_arch = "wasm32"))]
    #[must_use]
    pub fn from_os() -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        hasher.write_u128(now);
        Self::new(hasher.finish())
    }
}

impl IdSource for SplitMix {
    fn next_u64(&self) -> u64 {
        let mut z = self
            .state
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
            .wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Head sampling: decided once, where a trace enters, and carried in the `sampled` flag.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Sampler {
    /// Record every trace.
    AlwaysOn,
    /// Record none.
    AlwaysOff,
    /// Record this fraction of traces, decided by the trace id (so every service agrees).
    Ratio(f64),
    /// Follow the caller's `sampled` flag; `root` decides for new traces.
    ParentBased(Box<Sampler>),
}

impl Sampler {
    /// Whether to record a trace with `trace_id`, whose caller said `parent_sampled` (`None`: no caller).
    #[must_use]
    pub fn sample(&self, trace_id: TraceId, parent_sampled: Option<bool>) -> bool {
        match self {
            Self::AlwaysOn => true,
            Self::AlwaysOff => false,
            Self::Ratio(ratio) => {
                // OpenTelemetry's TraceIdRatioBased: the id's low 56 bits against the ratio of 2^56.
                let bytes = trace_id.to_bytes();
                let mut low = [0u8; 8];
                low[1..].copy_from_slice(&bytes[9..]);
                let value = u64::from_be_bytes(low);
                let ratio = if ratio.is_nan() {
                    0.0
                } else {
                    ratio.clamp(0.0, 1.0)
                };
                #[allow(
                    clippy::cast_possible_truncation,
                    clippy::cast_sign_loss,
                    clippy::cast_precision_loss
                )]
                let threshold = (ratio * (1u64 << 56) as f64) as u64;
                value < threshold
            }
            Self::ParentBased(root) => match parent_sampled {
                Some(sampled) => sampled,
                None => root.sample(trace_id, None),
            },
        }
    }
}

/// Where a request sits in its trace.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TraceContext {
    /// The trace.
    pub trace_id: TraceId,
    /// This span.
    pub span_id: SpanId,
    /// The caller's span, if the trace came from a caller.
    pub parent_id: Option<SpanId>,
    /// The flags (sampled).
    pub flags: TraceFlags,
    /// Vendor state, propagated.
    pub state: TraceState,
}

impl TraceContext {
    /// The context of a request arriving with `headers`: a child of the caller's span when it sent a
    /// valid `traceparent`, else the root of a new trace; sampled as `sampler` decides.
    pub fn from_request(
        headers: &HeaderMap,
        ids: &(impl IdSource + ?Sized),
        sampler: &Sampler,
    ) -> Self {
        match TraceParent::from_headers(headers) {
            Some(parent) => {
                let sampled = sampler.sample(parent.trace_id, Some(parent.flags.sampled()));
                Self {
                    trace_id: parent.trace_id,
                    span_id: ids.span_id(),
                    parent_id: Some(parent.parent_id),
                    flags: parent.flags.with_sampled(sampled),
                    state: TraceState::from_headers(headers),
                }
            }
            None => {
                let trace_id = ids.trace_id();
                let sampled = sampler.sample(trace_id, None);
                Self {
                    trace_id,
                    span_id: ids.span_id(),
                    parent_id: None,
                    flags: TraceFlags(TraceFlags::RANDOM).with_sampled(sampled),
                    state: TraceState::default(),
                }
            }
        }
    }

    /// The context of a new span whose parent is known only by its ids (`traceparent`): a remote
    /// caller, or an outer span recorded elsewhere.
    pub fn child_of(parent: &TraceParent, ids: &(impl IdSource + ?Sized)) -> Self {
        Self {
            trace_id: parent.trace_id,
            span_id: ids.span_id(),
            parent_id: Some(parent.parent_id),
            flags: parent.flags,
            state: TraceState::default(),
        }
    }

    /// A child context (same trace, new span id, this span as parent).
    #[must_use]
    pub fn child(&self, ids: &(impl IdSource + ?Sized)) -> Self {
        Self {
            trace_id: self.trace_id,
            span_id: ids.span_id(),
            parent_id: Some(self.span_id),
            flags: self.flags,
            state: self.state.clone(),
        }
    }

    /// Writes `traceparent` (this span as the parent) and `tracestate` into an outgoing request's
    /// headers, replacing what they had.
    pub fn inject(&self, headers: &mut HeaderMap) {
        let parent = TraceParent::new(self.trace_id, self.span_id, self.flags);
        headers.insert("traceparent", parent.to_header_value());
        headers.remove("tracestate");
        if let Some(state) = self.state.to_header_value() {
            headers.insert("tracestate", state);
        }
    }
}

/// An attribute value.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Value {
    /// A string.
    Str(Cow<'static, str>),
    /// An integer.
    I64(i64),
    /// A float.
    F64(f64),
    /// A boolean.
    Bool(bool),
}

impl From<&'static str> for Value {
    fn from(s: &'static str) -> Self {
        Self::Str(Cow::Borrowed(s))
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Self::Str(Cow::Owned(s))
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Self {
        Self::I64(n)
    }
}

impl From<u16> for Value {
    fn from(n: u16) -> Self {
        Self::I64(i64::from(n))
    }
}

impl From<f64> for Value {
    fn from(n: f64) -> Self {
        Self::F64(n)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Self::Bool(b)
    }
}

fn bounded(value: Value) -> Value {
    match value {
        Value::Str(s) => Value::Str(bounded_str(s)),
        other => other,
    }
}

/// `text` cut to [`MAX_VALUE_LEN`] bytes at a character boundary: every string a span keeps (attribute
/// values, event names, an error status) is bounded here, whoever recorded it.
fn bounded_str(text: Cow<'static, str>) -> Cow<'static, str> {
    if text.len() <= MAX_VALUE_LEN {
        return text;
    }
    let mut end = MAX_VALUE_LEN;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(text[..end].to_owned())
}

/// The kind of a span (OpenTelemetry's).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum SpanKind {
    /// Internal work.
    #[default]
    Internal,
    /// Handling an incoming request.
    Server,
    /// Making an outgoing request.
    Client,
}

/// How a span ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Status {
    /// Not set.
    #[default]
    Unset,
    /// Explicitly fine.
    Ok,
    /// Failed, with a description.
    Error(Cow<'static, str>),
}

/// Something that happened during a span.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Event {
    /// Its name.
    pub name: Cow<'static, str>,
    /// When (wall clock).
    pub at: SystemTime,
    /// Its attributes.
    pub attributes: Vec<(Cow<'static, str>, Value)>,
}

/// A timed operation. Start it with [`Span::start`], annotate it, and [`Span::end`] it; an ended span
/// is what a [`SpanExporter`] receives.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Span {
    /// Its context (trace, span and parent ids).
    pub context: TraceContext,
    /// Its name (`GET /api/products`, `cache.lookup`, …).
    pub name: Cow<'static, str>,
    /// Its kind.
    pub kind: SpanKind,
    /// When it started (wall clock, for export).
    pub start: SystemTime,
    /// When it ended (wall clock); `None` while running.
    pub end: Option<SystemTime>,
    /// Its duration, from the monotonic clock; zero while running.
    pub duration: std::time::Duration,
    /// Its attributes, in the order set (a repeated key replaces the earlier value).
    pub attributes: Vec<(Cow<'static, str>, Value)>,
    /// Its events.
    pub events: Vec<Event>,
    /// How it ended.
    pub status: Status,
    /// Attributes and events that did not fit.
    pub dropped: u32,
    started_at: Instant,
}

impl Span {
    /// Starts a span now, by `clock`.
    pub fn start(
        name: impl Into<Cow<'static, str>>,
        kind: SpanKind,
        context: TraceContext,
        clock: &impl Clock,
    ) -> Self {
        Self {
            context,
            name: name.into(),
            kind,
            start: clock.wall_time(),
            end: None,
            duration: std::time::Duration::ZERO,
            // A request's span collects a score of attributes (HTTP, route, cache, auth, limits): room
            // for them up front, rather than four reallocations on every request.
            attributes: Vec::with_capacity(16),
            events: Vec::new(),
            status: Status::Unset,
            dropped: 0,
            started_at: clock.now(),
        }
    }

    /// Sets an attribute (replacing one of the same key).
    pub fn set(&mut self, key: impl Into<Cow<'static, str>>, value: impl Into<Value>) {
        let key = key.into();
        let value = bounded(value.into());
        if let Some(slot) = self.attributes.iter_mut().find(|(k, _)| *k == key) {
            slot.1 = value;
        } else if self.attributes.len() < MAX_ATTRIBUTES {
            self.attributes.push((key, value));
        } else {
            self.dropped = self.dropped.saturating_add(1);
        }
    }

    /// Records an event now.
    pub fn event(&mut self, name: impl Into<Cow<'static, str>>, clock: &impl Clock) {
        if self.events.len() < MAX_EVENTS {
            self.events.push(Event {
                name: bounded_str(name.into()),
                at: clock.wall_time(),
                attributes: Vec::new(),
            });
        } else {
            self.dropped = self.dropped.saturating_add(1);
        }
    }

    /// Sets the status.
    pub fn set_status(&mut self, status: Status) {
        self.status = match status {
            Status::Error(message) => Status::Error(bounded_str(message)),
            other => other,
        };
    }

    /// Ends the span now (a second call changes nothing). The end time is the start time plus the
    /// monotonic duration, so a wall clock corrected mid-span cannot end it before it started.
    pub fn end(&mut self, clock: &impl Clock) {
        if self.end.is_none() {
            self.duration = clock.now().duration_since(self.started_at);
            self.end = Some(self.start.checked_add(self.duration).unwrap_or(self.start));
        }
    }

    /// Whether it has ended.
    #[must_use]
    pub fn is_ended(&self) -> bool {
        self.end.is_some()
    }
}

/// Where ended spans go. Exporters batch, retry and drop as they see fit; a failure must never reach
/// the request that produced the spans (callers run exports after the response, through `WaitUntil`).
pub trait SpanExporter: MaybeSend + MaybeSync {
    /// Sends `spans`.
    fn export(&self, spans: Vec<Span>) -> impl Future<Output = Result<(), Error>> + MaybeSend;
}

#[cfg(test)]
mod tests;
