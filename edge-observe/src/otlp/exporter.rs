//! [`OtlpExporter`]: the bounded queue, the batches, the retries.

use std::collections::VecDeque;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use edge_core::trace::{Span, SpanExporter};
use edge_core::{Body, Clock, Error, ErrorKind, Fetcher, MaybeSend, SystemClock, Timer};
use futures_util::future::{Either, select};
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER};
use http::{HeaderMap, Method, Request, StatusCode, Uri};

use super::{Encoding, Resource};
use crate::metrics::Registry;

/// Largest collector answer read (to keep the connection reusable); the rest is dropped with it.
const MAX_RESPONSE_BODY: usize = 64 * 1024;

/// What an exporter has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExportStats {
    /// Spans the collector accepted.
    pub exported: u64,
    /// Spans dropped because the queue was full.
    pub dropped_queue_full: u64,
    /// Spans dropped because their batch failed for good (retries used up, or refused).
    pub dropped_failed: u64,
    /// Attempts that were retried.
    pub retries: u64,
    /// Metric exports the collector accepted.
    pub metric_exports: u64,
}

#[derive(Default)]
struct Counters {
    exported: AtomicU64,
    dropped_queue_full: AtomicU64,
    dropped_failed: AtomicU64,
    retries: AtomicU64,
    metric_exports: AtomicU64,
}

struct Settings {
    traces_url: Uri,
    metrics_url: Uri,
    encoding: Encoding,
    headers: HeaderMap,
    resource: Resource,
    max_queue: usize,
    max_batch: usize,
    max_attempts: u32,
    first_backoff: Duration,
    max_backoff: Duration,
    timeout: Duration,
}

struct Shared<F> {
    fetcher: F,
    timer: Arc<dyn Timer>,
    clock: Arc<dyn Clock>,
    started: SystemTime,
    settings: Settings,
    queue: Mutex<VecDeque<Span>>,
    flushing: AtomicBool,
    counters: Counters,
    /// When a failed export was last reported as a `tracing` warning (seconds since the epoch).
    last_warning: AtomicU64,
}

/// Failed exports are reported at most once a minute: a collector that is down fails every flush.
const WARNING_INTERVAL_SECS: u64 = 60;

/// Exports spans and metrics to an OTLP/HTTP collector. Cheap to clone; clones share the queue. See the
/// [module docs](super).
pub struct OtlpExporter<F> {
    shared: Arc<Shared<F>>,
}

impl<F> Clone for OtlpExporter<F> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<F> std::fmt::Debug for OtlpExporter<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpExporter")
            .field("traces_url", &self.shared.settings.traces_url)
            .field("encoding", &self.shared.settings.encoding)
            .field("queued", &self.shared.queue().len())
            .finish_non_exhaustive()
    }
}

/// Builds an [`OtlpExporter`]; from [`OtlpExporter::builder`].
pub struct OtlpExporterBuilder<F> {
    fetcher: F,
    timer: Arc<dyn Timer>,
    clock: Arc<dyn Clock>,
    settings: Settings,
}

impl<F> std::fmt::Debug for OtlpExporterBuilder<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpExporterBuilder")
            .field("traces_url", &self.settings.traces_url)
            .finish_non_exhaustive()
    }
}

fn signal_url(base: &Uri, signal: &str) -> Result<Uri, Error> {
    let path = base.path().trim_end_matches('/');
    let mut parts = base.clone().into_parts();
    parts.path_and_query = Some(format!("{path}/v1/{signal}").parse().map_err(|_| {
        Error::new(
            ErrorKind::InvalidInput,
            "the OTLP endpoint's path is invalid",
        )
    })?);
    Uri::from_parts(parts)
        .map_err(|_| Error::new(ErrorKind::InvalidInput, "the OTLP endpoint is not a URL"))
}

impl<F: Fetcher> OtlpExporter<F> {
    /// An exporter sending through `fetcher` to the collector at `endpoint` (`http://host:4318`: the
    /// signals' paths `/v1/traces` and `/v1/metrics` are appended), sleeping on `timer` between retries.
    ///
    /// # Errors
    ///
    /// `InvalidInput` when `endpoint` is not an absolute `http` or `https` URL without a query.
    pub fn builder(
        fetcher: F,
        endpoint: &str,
        timer: impl Timer + 'static,
    ) -> Result<OtlpExporterBuilder<F>, Error> {
        let base: Uri = endpoint
            .parse()
            .map_err(|_| Error::new(ErrorKind::InvalidInput, "the OTLP endpoint is not a URL"))?;
        let scheme_ok = matches!(base.scheme_str(), Some("http" | "https"));
        if !scheme_ok || base.authority().is_none() || base.query().is_some() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "the OTLP endpoint must be an absolute http(s) URL without a query",
            ));
        }
        Ok(OtlpExporterBuilder {
            fetcher,
            timer: Arc::new(timer),
            clock: Arc::new(SystemClock::new()),
            settings: Settings {
                traces_url: signal_url(&base, "traces")?,
                metrics_url: signal_url(&base, "metrics")?,
                encoding: Encoding::default(),
                headers: HeaderMap::new(),
                resource: Resource::default(),
                max_queue: 2048,
                max_batch: 512,
                max_attempts: 5,
                first_backoff: Duration::from_millis(500),
                max_backoff: Duration::from_secs(10),
                timeout: Duration::from_secs(10),
            },
        })
    }
}

impl<F> OtlpExporterBuilder<F> {
    /// The encoding (protobuf by default).
    #[must_use]
    pub fn encoding(mut self, encoding: Encoding) -> Self {
        self.settings.encoding = encoding;
        self
    }

    /// A header sent with every export (a collector's API key, say).
    #[must_use]
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.settings.headers.append(name, value);
        self
    }

    /// The resource's `service.name` (`edge` by default).
    #[must_use]
    pub fn service_name(mut self, name: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        self.settings.resource = self
            .settings
            .resource
            .with("service.name", edge_core::trace::Value::Str(name.into()));
        self
    }

    /// The whole resource.
    #[must_use]
    pub fn resource(mut self, resource: Resource) -> Self {
        self.settings.resource = resource;
        self
    }

    /// Most spans waiting (2048 by default, at least 1); more are dropped and counted.
    #[must_use]
    pub fn max_queue(mut self, spans: usize) -> Self {
        self.settings.max_queue = spans.max(1);
        self
    }

    /// Most spans in one request (512 by default, at least 1).
    #[must_use]
    pub fn max_batch(mut self, spans: usize) -> Self {
        self.settings.max_batch = spans.max(1);
        self
    }

    /// Attempts per batch, the first included (5 by default, at least 1).
    #[must_use]
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.settings.max_attempts = attempts.max(1);
        self
    }

    /// The wait before the first retry, doubled for each next one up to `max` (500 ms and 10 s by default).
    #[must_use]
    pub fn backoff(mut self, first: Duration, max: Duration) -> Self {
        self.settings.first_backoff = first;
        self.settings.max_backoff = max.max(first);
        self
    }

    /// How long one attempt may take (10 s by default).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.settings.timeout = timeout;
        self
    }

    /// The clock metric timestamps are read from ([`SystemClock`] by default).
    #[must_use]
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The exporter.
    #[must_use]
    pub fn build(self) -> OtlpExporter<F> {
        let started = self.clock.wall_time();
        OtlpExporter {
            shared: Arc::new(Shared {
                fetcher: self.fetcher,
                timer: self.timer,
                clock: self.clock,
                started,
                settings: self.settings,
                queue: Mutex::new(VecDeque::new()),
                flushing: AtomicBool::new(false),
                counters: Counters::default(),
                last_warning: AtomicU64::new(0),
            }),
        }
    }
}

enum Attempt {
    Done,
    Retry(Option<Duration>, Error),
    Fatal(Error),
}

/// Clears the flushing flag however the flush ends (a cancelled flush must not stop every later one).
struct FlushGuard<'a>(&'a AtomicBool);

impl Drop for FlushGuard<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl<F> Shared<F> {
    fn queue(&self) -> MutexGuard<'_, VecDeque<Span>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn take_batch(&self) -> Vec<Span> {
        let mut queue = self.queue();
        let n = queue.len().min(self.settings.max_batch);
        queue.drain(..n).collect()
    }
}

impl<F: Fetcher> Shared<F> {
    async fn attempt(&self, url: &Uri, body: Bytes) -> Attempt {
        let mut request = Request::new(Body::from(body));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = url.clone();
        let headers = request.headers_mut();
        headers.clone_from(&self.settings.headers);
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static(self.settings.encoding.content_type()),
        );
        let fetch = pin!(self.fetcher.fetch(request));
        let deadline = self.timer.sleep(self.settings.timeout);
        match select(fetch, deadline).await {
            Either::Left((Ok(response), _)) => {
                let status = response.status();
                let retry_after = response
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                // Read the (small) answer so the connection can be reused; its content is not needed.
                let _ = response.into_body().collect(MAX_RESPONSE_BODY).await;
                if status.is_success() {
                    Attempt::Done
                } else if matches!(
                    status,
                    StatusCode::TOO_MANY_REQUESTS
                        | StatusCode::BAD_GATEWAY
                        | StatusCode::SERVICE_UNAVAILABLE
                        | StatusCode::GATEWAY_TIMEOUT
                ) {
                    Attempt::Retry(
                        retry_after,
                        Error::new(
                            ErrorKind::Unavailable,
                            format!("collector answered {status}"),
                        ),
                    )
                } else {
                    Attempt::Fatal(Error::new(
                        ErrorKind::Backend,
                        format!("collector refused the export: {status}"),
                    ))
                }
            }
            Either::Left((Err(error), _)) if error.is_transient() => Attempt::Retry(None, error),
            Either::Left((Err(error), _)) => Attempt::Fatal(error),
            Either::Right(((), _)) => Attempt::Retry(
                None,
                Error::new(ErrorKind::Timeout, "the collector did not answer in time"),
            ),
        }
    }

    async fn send(&self, url: &Uri, body: Bytes) -> Result<(), Error> {
        let settings = &self.settings;
        let mut backoff = settings.first_backoff;
        let mut attempt = 1;
        loop {
            let (retry_after, error) = match self.attempt(url, body.clone()).await {
                Attempt::Done => return Ok(()),
                Attempt::Fatal(error) => return Err(error),
                Attempt::Retry(retry_after, error) => (retry_after, error),
            };
            if attempt >= settings.max_attempts {
                return Err(error);
            }
            self.counters.retries.fetch_add(1, Ordering::Relaxed);
            let wait = retry_after.unwrap_or(backoff).min(settings.max_backoff);
            self.timer.sleep(wait).await;
            backoff = backoff.saturating_mul(2).min(settings.max_backoff);
            attempt += 1;
        }
    }

    async fn send_spans(&self, spans: &[Span]) -> Result<(), Error> {
        let body = super::encode_spans(self.settings.encoding, &self.settings.resource, spans);
        let result = self
            .send(&self.settings.traces_url, Bytes::from(body))
            .await;
        let n = spans.len() as u64;
        match &result {
            Ok(()) => self.counters.exported.fetch_add(n, Ordering::Relaxed),
            Err(error) => {
                let dropped = self.counters.dropped_failed.fetch_add(n, Ordering::Relaxed) + n;
                self.warn("traces", error, dropped);
                dropped
            }
        };
        result
    }

    /// Reports a failed export as a `tracing` warning, at most once per [`WARNING_INTERVAL_SECS`].
    fn warn(&self, signal: &'static str, error: &Error, dropped_spans: u64) {
        let now = self
            .clock
            .wall_time()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let last = self.last_warning.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= WARNING_INTERVAL_SECS;
        if due
            && self
                .last_warning
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                edge.otlp.signal = signal,
                edge.otlp.dropped_spans = dropped_spans,
                error = %error,
                "OTLP export failed (reported at most once a minute; ExportStats has the counts)"
            );
        }
    }
}

impl<F: Fetcher + 'static> OtlpExporter<F> {
    /// Queues an ended span for the next [`flush`](Self::flush); drops it (and counts it) when the queue
    /// is full. Never waits on the collector.
    pub fn record(&self, span: Span) {
        self.record_all(std::iter::once(span));
    }

    /// Queues several spans (see [`record`](Self::record)).
    pub fn record_all(&self, spans: impl IntoIterator<Item = Span>) {
        let mut dropped = 0;
        {
            let mut queue = self.shared.queue();
            for span in spans {
                if queue.len() < self.shared.settings.max_queue {
                    queue.push_back(span);
                } else {
                    dropped += 1;
                }
            }
        }
        if dropped > 0 {
            self.shared
                .counters
                .dropped_queue_full
                .fetch_add(dropped, Ordering::Relaxed);
        }
    }

    /// Spans waiting.
    #[must_use]
    pub fn queued(&self) -> usize {
        self.shared.queue().len()
    }

    /// Sends everything queued, in batches, retrying as configured. Meant for
    /// [`WaitUntil`](edge_core::WaitUntil) after the response. While one flush runs, another returns at
    /// once (the running one sends what was queued meanwhile), so a slow collector never piles up
    /// background work.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future loses at most the batch in flight (counted as failed).
    pub fn flush(&self) -> impl Future<Output = ()> + MaybeSend + 'static {
        let shared = Arc::clone(&self.shared);
        async move {
            loop {
                if shared.flushing.swap(true, Ordering::AcqRel) {
                    return;
                }
                let guard = FlushGuard(&shared.flushing);
                loop {
                    let batch = shared.take_batch();
                    if batch.is_empty() {
                        break;
                    }
                    let sent = shared.send_spans(&batch).await;
                    drop(sent);
                }
                drop(guard);
                // A span queued between the last take and the flag's release would wait for the next
                // flush: look once more.
                if shared.queue().is_empty() {
                    return;
                }
            }
        }
    }

    /// Exports a reading of every metric in `registry` (cumulative since this exporter was built).
    ///
    /// # Errors
    ///
    /// The collector could not be reached within the retries, or refused the export.
    pub fn export_metrics(
        &self,
        registry: &Registry,
    ) -> impl Future<Output = Result<(), Error>> + MaybeSend + 'static {
        let shared = Arc::clone(&self.shared);
        let families = registry.snapshot();
        async move {
            let settings = &shared.settings;
            let body = super::encode_metrics(
                settings.encoding,
                &settings.resource,
                &families,
                shared.started,
                shared.clock.wall_time(),
            );
            if let Err(error) = shared.send(&settings.metrics_url, Bytes::from(body)).await {
                let dropped = shared.counters.dropped_failed.load(Ordering::Relaxed);
                shared.warn("metrics", &error, dropped);
                return Err(error);
            }
            shared
                .counters
                .metric_exports
                .fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
    }

    /// What the exporter has done so far.
    #[must_use]
    pub fn stats(&self) -> ExportStats {
        let c = &self.shared.counters;
        ExportStats {
            exported: c.exported.load(Ordering::Relaxed),
            dropped_queue_full: c.dropped_queue_full.load(Ordering::Relaxed),
            dropped_failed: c.dropped_failed.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            metric_exports: c.metric_exports.load(Ordering::Relaxed),
        }
    }
}

/// Sends `spans` at once (in batches, with retries), bypassing the queue.
impl<F: Fetcher + 'static> SpanExporter for OtlpExporter<F> {
    async fn export(&self, spans: Vec<Span>) -> Result<(), Error> {
        for batch in spans.chunks(self.shared.settings.max_batch) {
            self.shared.send_spans(batch).await?;
        }
        Ok(())
    }
}
