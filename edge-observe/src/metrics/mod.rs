//! Counters, gauges and latency histograms with labels, and their Prometheus text exposition.
//!
//! A [`Registry`] holds metric families; a family is created once with its label names, and
//! [`Counter::with`] / [`Histogram::with`] give the series for one set of label values (create it on
//! first use). Recording on a series is a few relaxed atomic adds.
//!
//! Memory stays bounded whatever the label values: each value is cut to [`MAX_LABEL_VALUE_LEN`] bytes,
//! and a family holds at most [`Registry::max_series`] series — label sets beyond that are counted in
//! one overflow series whose values are all `"_overflow"`.
//!
//! ```
//! use std::time::Duration;
//! use edge_observe::metrics::Registry;
//!
//! let registry = Registry::new();
//! let latency = registry.histogram("edge_request_duration_seconds", "Request latency.", &["route", "status_class"]);
//! latency.with(&["/api/products", "2xx"]).observe(Duration::from_millis(42));
//! let text = registry.render_prometheus();
//! assert!(text.contains(r#"edge_request_duration_seconds_bucket{route="/api/products",status_class="2xx",le="0.05"} 1"#));
//! ```

#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub mod layer;
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub use layer::{Metrics, MetricsLayer};

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Latency buckets for an edge service: 10 ms, 25 ms, 50 ms, 100 ms, 250 ms, 500 ms, 1 s, 2.5 s, 5 s, 10 s.
pub const DEFAULT_BUCKETS: [Duration; 10] = [
    Duration::from_millis(10),
    Duration::from_millis(25),
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_millis(2500),
    Duration::from_secs(5),
    Duration::from_secs(10),
];

/// Longest label value kept, in bytes (longer ones are cut at a character boundary).
pub const MAX_LABEL_VALUE_LEN: usize = 128;

/// The value every label of the overflow series carries.
pub const OVERFLOW: &str = "_overflow";

enum Kind {
    Counter,
    Gauge,
    Histogram(Arc<[Duration]>),
}

/// One series' numbers.
#[derive(Debug)]
struct Cells {
    value: AtomicU64,
    gauge: AtomicI64,
    buckets: Box<[AtomicU64]>,
    sum_nanos: AtomicU64,
}

/// A family's series by their label values.
type SeriesMap = hashbrown::HashMap<Box<[String]>, Arc<Cells>, foldhash::fast::RandomState>;

struct Family {
    name: String,
    help: String,
    labels: Vec<String>,
    kind: Kind,
    series: Mutex<SeriesMap>,
    max_series: usize,
}

/// Label values as the caller holds them, looked up without copying: `[&str]` hashes exactly as
/// `[String]` does (a length, then each string), so it finds the owned key.
#[derive(Hash)]
struct Borrowed<'a>(&'a [&'a str]);

impl hashbrown::Equivalent<Box<[String]>> for Borrowed<'_> {
    fn equivalent(&self, key: &Box<[String]>) -> bool {
        self.0.len() == key.len() && self.0.iter().zip(key.iter()).all(|(a, b)| *a == b)
    }
}

impl Family {
    fn lock(&self) -> MutexGuard<'_, SeriesMap> {
        self.series.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn cells(&self, values: &[&str]) -> Arc<Cells> {
        self.with_cells(values, Arc::clone)
    }

    /// Runs `use_cells` on the series for `values`, created if new, under the family's lock: a record
    /// made once (a request's count) touches no reference count, which every core would contend for.
    fn with_cells<T>(&self, values: &[&str], use_cells: impl FnOnce(&Arc<Cells>) -> T) -> T {
        let n = self.labels.len();
        let padded: Vec<&str>;
        // The common case, one value per label and none too long, is looked up as given.
        let key: &[&str] =
            if values.len() == n && values.iter().all(|v| v.len() <= MAX_LABEL_VALUE_LEN) {
                values
            } else {
                padded = (0..n)
                    .map(|i| bounded(values.get(i).copied().unwrap_or("")))
                    .collect();
                &padded
            };
        let mut series = self.lock();
        if let Some(cells) = series.get(&Borrowed(key)) {
            return use_cells(cells);
        }
        let key: Box<[String]> = if series.len() >= self.max_series {
            self.labels.iter().map(|_| OVERFLOW.to_owned()).collect()
        } else {
            key.iter().map(|v| (*v).to_owned()).collect()
        };
        let buckets = match &self.kind {
            Kind::Histogram(bounds) => bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            Kind::Counter | Kind::Gauge => Box::default(),
        };
        use_cells(series.entry(key).or_insert_with(|| {
            Arc::new(Cells {
                value: AtomicU64::new(0),
                gauge: AtomicI64::new(0),
                buckets,
                sum_nanos: AtomicU64::new(0),
            })
        }))
    }
}

impl Cells {
    /// One observation of a histogram whose buckets end at `bounds`.
    fn observe(&self, bounds: &[Duration], value: Duration) {
        // Only the first bucket the value fits in is counted; rendering makes them cumulative.
        if let Some(i) = bounds.iter().position(|bound| value <= *bound) {
            if let Some(bucket) = self.buckets.get(i) {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.value.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(value.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

/// `value` cut to [`MAX_LABEL_VALUE_LEN`] bytes at a character boundary.
fn bounded(value: &str) -> &str {
    if value.len() <= MAX_LABEL_VALUE_LEN {
        return value;
    }
    let mut end = MAX_LABEL_VALUE_LEN;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    &value[..end]
}

/// Metric families, rendered together. Cheap to clone; clones share the families.
#[derive(Clone)]
pub struct Registry {
    families: Arc<Mutex<Vec<Arc<Family>>>>,
    max_series: usize,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("families", &self.lock().len())
            .finish()
    }
}

/// A counter family. Cheap to clone.
#[derive(Clone)]
pub struct Counter(Arc<Family>);
/// A gauge family. Cheap to clone.
#[derive(Clone)]
pub struct Gauge(Arc<Family>);
/// A histogram family. Cheap to clone.
#[derive(Clone)]
pub struct Histogram(Arc<Family>);

macro_rules! debug_family {
    ($($t:ident),*) => {$(
        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($t)).field("name", &self.0.name).finish_non_exhaustive()
            }
        }
    )*};
}
debug_family!(Counter, Gauge, Histogram);

/// One counter series.
#[derive(Clone, Debug)]
pub struct CounterSeries(Arc<Cells>);
/// One gauge series.
#[derive(Clone, Debug)]
pub struct GaugeSeries(Arc<Cells>);
/// One histogram series.
#[derive(Clone, Debug)]
pub struct HistogramSeries {
    cells: Arc<Cells>,
    bounds: Arc<[Duration]>,
}

impl Registry {
    /// An empty registry; each family holds at most 1,000 series.
    #[must_use]
    pub fn new() -> Self {
        Self::with_max_series(1000)
    }

    /// An empty registry whose families hold at most `max_series` series each (at least 1).
    #[must_use]
    pub fn with_max_series(max_series: usize) -> Self {
        Self {
            families: Arc::default(),
            max_series: max_series.max(1),
        }
    }

    /// The most series a family holds.
    #[must_use]
    pub fn max_series(&self) -> usize {
        self.max_series
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Arc<Family>>> {
        self.families.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn family(&self, name: &str, help: &str, labels: &[&str], kind: Kind) -> Arc<Family> {
        let mut families = self.lock();
        if let Some(existing) = families.iter().find(|f| f.name == name) {
            return Arc::clone(existing);
        }
        let family = Arc::new(Family {
            name: sanitize_name(name),
            help: help.replace(['\\', '\n'], " "),
            labels: labels.iter().map(|l| sanitize_name(l)).collect(),
            kind,
            series: Mutex::new(SeriesMap::default()),
            max_series: self.max_series,
        });
        families.push(Arc::clone(&family));
        family
    }

    /// The counter family `name` (created with `labels` on first call).
    #[must_use]
    pub fn counter(&self, name: &str, help: &str, labels: &[&str]) -> Counter {
        Counter(self.family(name, help, labels, Kind::Counter))
    }

    /// The gauge family `name`.
    #[must_use]
    pub fn gauge(&self, name: &str, help: &str, labels: &[&str]) -> Gauge {
        Gauge(self.family(name, help, labels, Kind::Gauge))
    }

    /// The histogram family `name`, with the [`DEFAULT_BUCKETS`].
    #[must_use]
    pub fn histogram(&self, name: &str, help: &str, labels: &[&str]) -> Histogram {
        self.histogram_with_buckets(name, help, labels, &DEFAULT_BUCKETS)
    }

    /// The histogram family `name` with these upper bounds (sorted and deduplicated here).
    #[must_use]
    pub fn histogram_with_buckets(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: &[Duration],
    ) -> Histogram {
        let mut bounds = buckets.to_vec();
        bounds.sort_unstable();
        bounds.dedup();
        Histogram(self.family(name, help, labels, Kind::Histogram(bounds.into())))
    }

    /// Every family in the Prometheus text exposition format (version 0.0.4).
    #[must_use]
    pub fn render_prometheus(&self) -> String {
        let families: Vec<Arc<Family>> = self.lock().clone();
        let mut out = String::new();
        for family in families {
            let kind = match family.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
                Kind::Histogram(_) => "histogram",
            };
            let _ = writeln!(out, "# HELP {} {}", family.name, family.help);
            let _ = writeln!(out, "# TYPE {} {kind}", family.name);
            let mut series: Vec<(Box<[String]>, Arc<Cells>)> = family
                .lock()
                .iter()
                .map(|(k, v)| (k.clone(), Arc::clone(v)))
                .collect();
            series.sort_by(|a, b| a.0.cmp(&b.0));
            for (values, cells) in series {
                let labels = render_labels(&family.labels, &values);
                match &family.kind {
                    Kind::Counter => {
                        let _ = writeln!(
                            out,
                            "{}{} {}",
                            family.name,
                            braces(&labels),
                            cells.value.load(Ordering::Relaxed)
                        );
                    }
                    Kind::Gauge => {
                        let _ = writeln!(
                            out,
                            "{}{} {}",
                            family.name,
                            braces(&labels),
                            cells.gauge.load(Ordering::Relaxed)
                        );
                    }
                    Kind::Histogram(bounds) => {
                        let mut cumulative = 0;
                        for (bound, bucket) in bounds.iter().zip(cells.buckets.iter()) {
                            cumulative += bucket.load(Ordering::Relaxed);
                            let le = format!("le=\"{}\"", bound.as_secs_f64());
                            let _ = writeln!(
                                out,
                                "{}_bucket{} {cumulative}",
                                family.name,
                                braces(&join(&labels, &le))
                            );
                        }
                        let count = cells.value.load(Ordering::Relaxed);
                        let _ = writeln!(
                            out,
                            "{}_bucket{} {count}",
                            family.name,
                            braces(&join(&labels, "le=\"+Inf\""))
                        );
                        let sum = Duration::from_nanos(cells.sum_nanos.load(Ordering::Relaxed));
                        let _ = writeln!(
                            out,
                            "{}_sum{} {}",
                            family.name,
                            braces(&labels),
                            sum.as_secs_f64()
                        );
                        let _ = writeln!(out, "{}_count{} {count}", family.name, braces(&labels));
                    }
                }
            }
        }
        out
    }
}

/// A reading of one metric family, for exporters (OTLP); series sorted by their label values.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct FamilySnapshot {
    /// The family's name.
    pub name: String,
    /// Its help text.
    pub help: String,
    /// Its label names.
    pub labels: Vec<String>,
    /// Its series.
    pub points: Points,
}

/// The series of a [`FamilySnapshot`]: each one's label values and reading.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Points {
    /// Counter totals.
    Counter(Vec<(Vec<String>, u64)>),
    /// Gauge values.
    Gauge(Vec<(Vec<String>, i64)>),
    /// Histograms over `bounds`.
    Histogram {
        /// The buckets' upper bounds, ascending.
        bounds: Vec<Duration>,
        /// Each series' reading.
        series: Vec<(Vec<String>, HistogramPoint)>,
    },
}

/// One histogram series' reading.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HistogramPoint {
    /// Observations per bucket (not cumulative): one per bound, then one for values above the last.
    pub buckets: Vec<u64>,
    /// Observations in all.
    pub count: u64,
    /// Their sum.
    pub sum: Duration,
}

impl Registry {
    /// A reading of every family, in the order they were created.
    #[must_use]
    pub fn snapshot(&self) -> Vec<FamilySnapshot> {
        let families: Vec<Arc<Family>> = self.lock().clone();
        families
            .iter()
            .map(|family| {
                let mut series: Vec<(Vec<String>, Arc<Cells>)> = family
                    .lock()
                    .iter()
                    .map(|(k, v)| (k.to_vec(), Arc::clone(v)))
                    .collect();
                series.sort_by(|a, b| a.0.cmp(&b.0));
                let points = match &family.kind {
                    Kind::Counter => Points::Counter(
                        series
                            .into_iter()
                            .map(|(labels, cells)| (labels, cells.value.load(Ordering::Relaxed)))
                            .collect(),
                    ),
                    Kind::Gauge => Points::Gauge(
                        series
                            .into_iter()
                            .map(|(labels, cells)| (labels, cells.gauge.load(Ordering::Relaxed)))
                            .collect(),
                    ),
                    Kind::Histogram(bounds) => Points::Histogram {
                        bounds: bounds.to_vec(),
                        series: series
                            .into_iter()
                            .map(|(labels, cells)| (labels, histogram_point(&cells)))
                            .collect(),
                    },
                };
                FamilySnapshot {
                    name: family.name.clone(),
                    help: family.help.clone(),
                    labels: family.labels.clone(),
                    points,
                }
            })
            .collect()
    }
}

fn histogram_point(cells: &Cells) -> HistogramPoint {
    let mut buckets: Vec<u64> = cells
        .buckets
        .iter()
        .map(|b| b.load(Ordering::Relaxed))
        .collect();
    let counted: u64 = buckets.iter().sum();
    // Recording bumps a bucket before the count: a reading taken in between must still add up.
    let count = cells.value.load(Ordering::Relaxed).max(counted);
    buckets.push(count - counted);
    HistogramPoint {
        buckets,
        count,
        sum: Duration::from_nanos(cells.sum_nanos.load(Ordering::Relaxed)),
    }
}

/// Metric and label names: `[a-zA-Z_:][a-zA-Z0-9_:]*`; anything else becomes `_`.
fn sanitize_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit()) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() {
        out.push('_');
    }
    out
}

/// A label value escaped for the text format: `\` → `\\`, `"` → `\"`, newline → `\n`.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn render_labels(names: &[String], values: &[String]) -> String {
    names
        .iter()
        .zip(values)
        .map(|(n, v)| format!("{n}=\"{}\"", escape(v)))
        .collect::<Vec<_>>()
        .join(",")
}

fn join(labels: &str, extra: &str) -> String {
    if labels.is_empty() {
        extra.to_owned()
    } else {
        format!("{labels},{extra}")
    }
}

fn braces(labels: &str) -> String {
    if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    }
}

impl Counter {
    /// The series for these label values (in the family's label order).
    #[must_use]
    pub fn with(&self, values: &[&str]) -> CounterSeries {
        CounterSeries(self.0.cells(values))
    }

    /// Adds `n` to the series for these label values: [`with`](Self::with)`(values).add(n)` without
    /// holding on to the series, for a hot path that records once (nothing is cloned, so the cores
    /// serving requests do not contend for a reference count).
    ///
    /// ```
    /// let registry = edge_observe::Registry::new();
    /// let requests = registry.counter("requests_total", "Requests.", &["status"]);
    /// requests.add(&["2xx"], 1);
    /// assert_eq!(requests.with(&["2xx"]).get(), 1);
    /// ```
    pub fn add(&self, values: &[&str], n: u64) {
        self.0.with_cells(values, |cells| {
            cells.value.fetch_add(n, Ordering::Relaxed);
        });
    }
}

impl CounterSeries {
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.value.fetch_add(n, Ordering::Relaxed);
    }

    /// The count.
    #[must_use]
    pub fn get(&self) -> u64 {
        self.0.value.load(Ordering::Relaxed)
    }
}

impl Gauge {
    /// The series for these label values.
    #[must_use]
    pub fn with(&self, values: &[&str]) -> GaugeSeries {
        GaugeSeries(self.0.cells(values))
    }
}

impl GaugeSeries {
    /// Sets the value.
    pub fn set(&self, value: i64) {
        self.0.gauge.store(value, Ordering::Relaxed);
    }

    /// Adds `delta` (negative to subtract).
    pub fn add(&self, delta: i64) {
        self.0.gauge.fetch_add(delta, Ordering::Relaxed);
    }

    /// The value.
    #[must_use]
    pub fn get(&self) -> i64 {
        self.0.gauge.load(Ordering::Relaxed)
    }
}

impl Histogram {
    /// The series for these label values.
    #[must_use]
    pub fn with(&self, values: &[&str]) -> HistogramSeries {
        let bounds = match &self.0.kind {
            Kind::Histogram(bounds) => Arc::clone(bounds),
            Kind::Counter | Kind::Gauge => Arc::from(Vec::new()),
        };
        HistogramSeries {
            cells: self.0.cells(values),
            bounds,
        }
    }

    /// Records `value` in the series for these label values: [`with`](Self::with)`(values).observe(value)`
    /// without holding on to the series (see [`Counter::add`]).
    pub fn observe(&self, values: &[&str], value: Duration) {
        let bounds = match &self.0.kind {
            Kind::Histogram(bounds) => &bounds[..],
            Kind::Counter | Kind::Gauge => &[],
        };
        self.0
            .with_cells(values, |cells| cells.observe(bounds, value));
    }
}

impl HistogramSeries {
    /// Records one observation.
    pub fn observe(&self, value: Duration) {
        self.cells.observe(&self.bounds, value);
    }

    /// How many observations.
    #[must_use]
    pub fn count(&self) -> u64 {
        self.cells.value.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn recording_in_passing_is_recording_through_a_series() {
        const EVENTS: [(&str, u64); 4] = [("a", 5), ("b", 50), ("a", 500), ("a", 50)];
        let registry = Registry::new();
        let bounds = [Duration::from_millis(10), Duration::from_millis(100)];
        let counter = registry.counter("c", "C.", &["k"]);
        let histogram = registry.histogram_with_buckets("h", "H.", &["k"], &bounds);
        for (k, ms) in EVENTS {
            counter.add(&[k], 2);
            histogram.observe(&[k], Duration::from_millis(ms));
        }
        let twin = Registry::new();
        let (twin_counter, twin_histogram) = (
            twin.counter("c", "C.", &["k"]),
            twin.histogram_with_buckets("h", "H.", &["k"], &bounds),
        );
        for (k, ms) in EVENTS {
            twin_counter.with(&[k]).add(2);
            twin_histogram.with(&[k]).observe(Duration::from_millis(ms));
        }
        assert_eq!(registry.snapshot(), twin.snapshot());
        assert_eq!(counter.with(&["a"]).get(), 6);
        assert_eq!(histogram.with(&["a"]).count(), 3);
    }

    #[test]
    fn snapshot_reads_every_kind() {
        let registry = Registry::new();
        registry.counter("c", "C.", &["k"]).with(&["a"]).add(2);
        registry.gauge("g", "G.", &[]).with(&[]).set(-4);
        let h = registry.histogram_with_buckets(
            "h",
            "H.",
            &[],
            &[Duration::from_millis(10), Duration::from_millis(100)],
        );
        for ms in [1, 50, 50, 500] {
            h.with(&[]).observe(Duration::from_millis(ms));
        }
        let snapshot = registry.snapshot();
        assert_eq!(snapshot.len(), 3);
        assert_eq!(
            snapshot[0].points,
            Points::Counter(vec![(vec!["a".to_owned()], 2)])
        );
        assert_eq!(snapshot[1].points, Points::Gauge(vec![(vec![], -4)]));
        let Points::Histogram { bounds, series } = &snapshot[2].points else {
            panic!("not a histogram")
        };
        assert_eq!(bounds.len(), 2);
        assert_eq!(series[0].1.buckets, vec![1, 2, 1]);
        assert_eq!(series[0].1.count, 4);
        assert_eq!(series[0].1.sum, Duration::from_millis(601));
    }

    #[test]
    fn exposition_of_every_kind() {
        let registry = Registry::new();
        let requests = registry.counter("edge_requests_total", "Requests.", &["route", "cache"]);
        requests.with(&["/", "HIT"]).add(3);
        requests.with(&["/", "MISS"]).inc();
        let inflight = registry.gauge("edge_in_flight", "In flight.", &[]);
        inflight.with(&[]).set(2);
        inflight.with(&[]).add(-1);
        let latency = registry.histogram("edge_latency_seconds", "Latency.", &["colo"]);
        let lhr = latency.with(&["LHR"]);
        for ms in [5, 20, 20, 700, 20_000] {
            lhr.observe(Duration::from_millis(ms));
        }
        let text = registry.render_prometheus();
        let expected = [
            "# TYPE edge_requests_total counter",
            r#"edge_requests_total{route="/",cache="HIT"} 3"#,
            r#"edge_requests_total{route="/",cache="MISS"} 1"#,
            "edge_in_flight 1",
            r#"edge_latency_seconds_bucket{colo="LHR",le="0.01"} 1"#,
            r#"edge_latency_seconds_bucket{colo="LHR",le="0.025"} 3"#,
            r#"edge_latency_seconds_bucket{colo="LHR",le="1"} 4"#,
            r#"edge_latency_seconds_bucket{colo="LHR",le="10"} 4"#,
            r#"edge_latency_seconds_bucket{colo="LHR",le="+Inf"} 5"#,
            r#"edge_latency_seconds_sum{colo="LHR"} 20.745"#,
            r#"edge_latency_seconds_count{colo="LHR"} 5"#,
        ];
        for line in expected {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }

    #[test]
    fn hostile_labels_are_escaped_cut_and_bounded() {
        let registry = Registry::with_max_series(3);
        let hits = registry.counter("hits", "Hits.", &["path"]);
        hits.with(&["a\"b\\c\nd"]).inc();
        let long = "é".repeat(200);
        hits.with(&[&long]).inc();
        for i in 0..100 {
            hits.with(&[&format!("/p/{i}")]).inc();
        }
        let text = registry.render_prometheus();
        assert!(text.contains(r#"hits{path="a\"b\\c\nd"} 1"#), "{text}");
        assert_eq!(
            text.lines().filter(|l| l.starts_with("hits{")).count(),
            4,
            "3 series + overflow"
        );
        assert!(text.contains(r#"hits{path="_overflow"} 99"#), "{text}");
        assert!(text.lines().all(|l| l.len() < 400));
    }

    proptest! {
        #[test]
        fn any_label_value_renders_one_line_per_series(values in proptest::collection::vec(any::<String>(), 1..20)) {
            let registry = Registry::with_max_series(50);
            let c = registry.counter("c", "C.", &["v"]);
            for v in &values {
                c.with(&[v]).inc();
            }
            let text = registry.render_prometheus();
            let series = text.lines().filter(|l| l.starts_with("c{")).count();
            let distinct: std::collections::HashSet<String> = values.iter().map(|v| bounded(v).to_owned()).collect();
            prop_assert_eq!(series, distinct.len());
        }
    }
}
