//! RFC 9111 for a shared cache at the edge, sans-IO: may this response be stored, and what may be done
//! with a stored one for this request, now.
//!
//! [`CachePolicy::store`] decides storability and how long the store should keep the entry;
//! [`CachePolicy::lookup`] answers, for a request and a stored response, one of
//! serve fresh / serve stale and revalidate in the background / revalidate first / fetch:
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use edge_cache::policy::{CachePolicy, Lookup};
//! use edge_core::cache::CachedResponse;
//! use http::{HeaderMap, Method, StatusCode};
//!
//! let policy = CachePolicy::new();
//! let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
//! let mut headers = HeaderMap::new();
//! headers.insert("cache-control", "max-age=60, stale-while-revalidate=30".parse().unwrap());
//! let request = HeaderMap::new();
//!
//! let stored = policy
//!     .store(&Method::GET, &request, StatusCode::OK, &mut headers, t0, t0)
//!     .expect("storable");
//! assert_eq!(stored.keep_for, Duration::from_secs(90 + 600)); // + keep_stale, for max-stale
//! let entry = CachedResponse::new(StatusCode::OK, headers, "hi".into(), t0);
//!
//! let at = |s| t0 + Duration::from_secs(s);
//! assert!(matches!(policy.lookup(&Method::GET, &request, &entry, at(59)), Lookup::Fresh { age: 59 }));
//! assert!(matches!(policy.lookup(&Method::GET, &request, &entry, at(70)), Lookup::StaleWhileRevalidate { .. }));
//! assert!(matches!(policy.lookup(&Method::GET, &request, &entry, at(95)), Lookup::Revalidate(_)));
//! ```
//!
//! What the edge adds to RFC 9111, and where it is stricter:
//! - **Targeted fields win**: the first *valid* of `CDN-Cache-Control` (RFC 9213), `Surrogate-Control`
//!   replaces `Cache-Control` and `Expires` for this cache's decisions (one that fails to parse is
//!   ignored); both are stripped before a response leaves the edge ([`serve_headers`]).
//! - **`Age`** that is not exactly one non-negative integer (a list such as `7200, 0`, two lines, a
//!   fraction, a sign, text) makes the response stale, rather than being read by its first member or
//!   ignored as RFC 9111 §5.1 suggests: guessing an age too low would serve old content as fresh.
//! - **Deliberate differences from the HTTP caching test suite**: responses carrying `Set-Cookie` are
//!   not stored (its `headers-store-Set-Cookie` expects them stored; a shared cache at the edge must
//!   not risk one visitor's cookie reaching another), and `206` partial responses are not stored (no
//!   range support: `partial-*`).
//! - **`Set-Cookie` responses are never stored**, and responses to requests with `Authorization` only
//!   with `public`, `s-maxage` or `must-revalidate` (§3.5): a shared cache must never hand one user's
//!   session to another.
//! - **Vary**: `Vary: *` is not stored; otherwise the request's values of the varying fields are stored
//!   with the entry and must match (one variant per cache key; at most [`MAX_VARY`] fields).
//! - **Heuristic freshness** (no explicit lifetime, a `Last-Modified`, a heuristically cacheable status):
//!   10 % of the time since modification, at most a day, both settings.
//! - `206` is not stored (no range support); `immutable` keeps a fresh response fresh even when the
//!   request asks for revalidation (a browser reload).

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use edge_core::cache::CachedResponse;
use http::header::{self, GetAll, HeaderName};
use http::{HeaderMap, HeaderValue, Method, StatusCode};

use crate::directives::{Directives, MaxStale};

/// The most `Vary` fields a stored response may name.
pub const MAX_VARY: usize = 8;

/// Where a stored entry keeps the request's values of its `Vary` fields: each as `<length>:<value>`,
/// in the order `Vary` names them (lengths make the record unambiguous whatever the values hold).
static VARY_RECORD: HeaderName = HeaderName::from_static("x-edge-vary");

/// Where a stored entry keeps how many seconds before the end of its freshness this cache refreshes it
/// (the TTL jitter of [`Stored::refresh_early`]): this cache's business only, never sent on.
static REFRESH_EARLY: HeaderName = HeaderName::from_static("x-edge-refresh-early");

/// Fields that describe a connection, not the message (RFC 9110 §7.6.1), or a proxy's dealings with this
/// hop: never stored, never updated from a `304` (RFC 9111 §3.1).
static NOT_STORED: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    HeaderName::from_static("proxy-authentication-info"),
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Fields a `304` does not replace in the stored response (RFC 9111 §3.2): they describe the stored
/// content itself, which the `304` does not carry.
static KEPT_ON_304: [HeaderName; 5] = [
    header::CONTENT_LENGTH,
    header::CONTENT_ENCODING,
    header::CONTENT_RANGE,
    HeaderName::from_static("content-md5"),
    header::ETAG,
];

/// Removes the fields a cache must not store: those of [`NOT_STORED`], those `Connection` names, and
/// this cache's own internal fields should an upstream send them. One pass over the fields decides
/// whether there is anything to do, which there rarely is.
fn strip_connection_fields(headers: &mut HeaderMap) {
    // By name, lengths first: cheaper than a lookup per field, or a comparison with each of them.
    let suspect = |name: &HeaderName| {
        matches!(
            name.as_str(),
            "connection"
                | "keep-alive"
                | "proxy-connection"
                | "proxy-authenticate"
                | "proxy-authentication-info"
                | "te"
                | "transfer-encoding"
                | "upgrade"
                | "x-edge-refresh-early"
                | "x-edge-vary"
        )
    };
    if !headers.keys().any(suspect) {
        return;
    }
    headers.remove(&REFRESH_EARLY);
    headers.remove(&VARY_RECORD);
    let named: Vec<HeaderName> = edge_core::hop::connection_options(headers).collect();
    for name in named.iter().chain(NOT_STORED.iter()) {
        headers.remove(name);
    }
}

/// `CDN-Cache-Control` (RFC 9213).
pub static CDN_CACHE_CONTROL: HeaderName = HeaderName::from_static("cdn-cache-control");
/// The device token this cache answers to in `Surrogate-Control` (`max-age=60;edge`), announced to
/// origins in `Surrogate-Capability: edge="Surrogate/1.0"`.
pub const SURROGATE_DEVICE: &str = "edge";

/// `Surrogate-Control` (Edge Architecture Specification).
pub static SURROGATE_CONTROL: HeaderName = HeaderName::from_static("surrogate-control");
/// `Cache-Tag`: space- or comma-separated tags for purging.
pub static CACHE_TAG: HeaderName = HeaderName::from_static("cache-tag");
/// `Surrogate-Key`: Fastly's name for cache tags.
pub static SURROGATE_KEY: HeaderName = HeaderName::from_static("surrogate-key");

/// Settings of the freshness model. Cheap to copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CachePolicy {
    /// Heuristic freshness as a percentage of the time since `Last-Modified` (default 10).
    pub heuristic_percent: u32,
    /// The longest heuristic lifetime (default one day).
    pub max_heuristic: Duration,
    /// How long past its stale windows an entry with a validator (`ETag`, `Last-Modified`) is kept for
    /// cheap revalidation with a `304` (default one hour).
    pub keep_for_revalidation: Duration,
    /// How long past its stale windows any entry is kept (default ten minutes): so that a request's
    /// `max-stale` can still be met, and a stale copy can stand in while the origin is unreachable.
    /// A stale entry is never served without one of those reasons.
    pub keep_stale: Duration,
    /// Entries are never kept longer than this, whatever the origin says (default 365 days).
    pub max_keep: Duration,
}

impl Default for CachePolicy {
    fn default() -> Self {
        Self::new()
    }
}

/// Why a response was not stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotStored {
    /// Only `GET` responses are stored.
    Method,
    /// A status this cache does not store (`206`, `1xx`), or one without explicit freshness that is not
    /// heuristically cacheable.
    Status,
    /// `no-store` on the request or the response.
    NoStore,
    /// `private`.
    Private,
    /// The request carried `Authorization` and the response did not allow sharing it.
    Authorization,
    /// The response sets a cookie.
    SetCookie,
    /// `Vary: *`, a `Vary` naming too many fields, or a field name that cannot be stored.
    Vary,
    /// Nothing makes it reusable: no lifetime, no validator worth revalidating.
    NotReusable,
}

/// How a storable response should be kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stored {
    /// Its freshness lifetime.
    pub lifetime: Duration,
    /// Its age when received (RFC 9111 §4.2.3 corrected initial age), written into its `Age` header.
    pub initial_age: Duration,
    /// How long the store should keep it: the rest of its lifetime plus the stale windows (and the
    /// revalidation keep when it has a validator).
    pub keep_for: Duration,
    /// Its freshness directives, parsed: hand them to [`CachePolicy::lookup_parsed`] to answer
    /// lookups of this entry without parsing its headers again.
    pub parsed: Parsed,
}

/// A stored response's freshness directives, parsed once (see [`CachePolicy::parse`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parsed(Freshness);

impl Parsed {
    /// The freshness lifetime the response declares (what this cache tells others: its own early
    /// refresh is not in it).
    #[must_use]
    pub fn lifetime(&self) -> Duration {
        Duration::from_secs(self.0.lifetime.saturating_add(self.0.early))
    }
}

/// What to do with a stored response for this request.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Lookup {
    /// Serve it; it is fresh (or stale within what the request accepts with `max-stale`).
    Fresh {
        /// Its current age, in seconds.
        age: u64,
    },
    /// Serve it now, and revalidate it in the background (`stale-while-revalidate`).
    StaleWhileRevalidate {
        /// Its current age, in seconds.
        age: u64,
    },
    /// Ask the origin first, conditionally when it has a validator.
    Revalidate(Revalidation),
    /// The stored response cannot answer this request (method, `Vary`): fetch as if absent.
    Unusable,
    /// The request said `only-if-cached` and nothing usable is stored: answer `504`.
    GatewayTimeout,
}

/// How to revalidate a stored response.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Revalidation {
    /// The validator to send: `If-None-Match` with the stored `ETag`, else `If-Modified-Since` with the
    /// stored `Last-Modified`; `None` without one.
    pub conditional: Option<(HeaderName, HeaderValue)>,
    /// Until when the stored response may be served if the origin fails (`stale-if-error`).
    pub stale_if_error_until: Option<SystemTime>,
    /// Whether the stored response may be served stale if the origin cannot be reached at all (RFC
    /// 9111 §4.2.4: a disconnected cache may, unless `must-revalidate`, `proxy-revalidate`,
    /// `no-cache` or `s-maxage` forbid it).
    pub stale_if_disconnected: bool,
}

impl Revalidation {
    /// The conditional header for `stored`'s validator, if it has one.
    #[must_use]
    pub fn validator_of(stored: &CachedResponse) -> Option<(HeaderName, HeaderValue)> {
        if let Some(etag) = stored.headers.get(header::ETAG) {
            Some((header::IF_NONE_MATCH, etag.clone()))
        } else {
            stored
                .headers
                .get(header::LAST_MODIFIED)
                .map(|modified| (header::IF_MODIFIED_SINCE, modified.clone()))
        }
    }

    /// Adds the conditional header to an outgoing request's headers.
    pub fn apply_to(&self, headers: &mut HeaderMap) {
        if let Some((name, value)) = &self.conditional {
            headers.insert(name.clone(), value.clone());
        }
    }
}

/// The freshness facts of a stored or received response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Freshness {
    /// The lifetime this cache decides by: the declared one less `early`.
    lifetime: u64,
    /// Seconds this cache refreshes before the declared lifetime ends (its TTL jitter).
    early: u64,
    swr: u64,
    sie: u64,
    no_cache: bool,
    no_store: bool,
    private: bool,
    public: bool,
    /// `must-revalidate` or `proxy-revalidate`: never served stale by this (shared) cache.
    revalidate: bool,
    /// `must-revalidate` alone: the one of the two that also makes an authorized response shareable.
    must_revalidate: bool,
    must_understand: bool,
    immutable: bool,
    has_s_maxage: bool,
    explicit: bool,
}

/// RFC 9111 §3.5: a shared cache may store a response to a request carrying `Authorization`, and so
/// hand it to other users, only if the response allows it with `public`, `s-maxage` or
/// `must-revalidate`. Nothing else does: in particular not `proxy-revalidate`, which only forbids
/// serving stale, and not `max-age`. The one place this rule lives.
fn shareable_despite_authorization(f: &Freshness) -> bool {
    f.public || f.has_s_maxage || f.must_revalidate
}

/// The value of an `Age` field, capped at 2³¹ (RFC 9111 §1.2.2). An `Age` that is not exactly one
/// non-negative integer — a list (`7200, 0`, `0, 0`), two lines, a sign, a fraction, a parameter, text —
/// makes the response count as **stale** (its age is taken as the cap). RFC 9111 §5.1 suggests reading
/// a list's first member and ignoring what does not parse; a shared cache that guesses an age too low
/// serves old content as fresh, so this one takes the safe reading, as the HTTP caching test suite
/// expects (its `age-parse-*` tests).
fn age_field(headers: &HeaderMap) -> u64 {
    let cap = u64::from(crate::directives::MAX_DELTA_SECONDS);
    let mut lines = headers.get_all(header::AGE).iter();
    let Some(first) = lines.next() else {
        return 0;
    };
    let digits = first.as_bytes().trim_ascii();
    if lines.next().is_some() || digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return cap;
    }
    digits.iter().fold(0u64, |n, d| {
        n.saturating_mul(10)
            .saturating_add(u64::from(d - b'0'))
            .min(cap)
    })
}

fn secs(d: Duration) -> u64 {
    d.as_secs()
}

fn since(later: SystemTime, earlier: SystemTime) -> u64 {
    later.duration_since(earlier).map_or(0, |d| d.as_secs())
}

/// A date field: absent, present but unparsable (which means "in the past" for `Expires`), or a time.
enum DateField {
    Absent,
    Invalid,
    At(SystemTime),
}

impl DateField {
    fn read(headers: &HeaderMap, name: &HeaderName) -> Self {
        match headers.get(name) {
            None => Self::Absent,
            Some(value) => imf_fixdate(value.as_bytes())
                .or_else(|| {
                    // The obsolete formats (RFC 850, asctime) through the general parser.
                    value
                        .to_str()
                        .ok()
                        .and_then(|s| httpdate::parse_http_date(s.trim()).ok())
                })
                .map_or(Self::Invalid, Self::At),
        }
    }

    fn valid(self) -> Option<SystemTime> {
        match self {
            Self::At(t) => Some(t),
            Self::Absent | Self::Invalid => None,
        }
    }
}

/// Parses the preferred date format, `Sun, 06 Nov 1994 08:49:37 GMT`, at fixed positions (what every
/// current server sends); anything else is `None` and goes to the general parser.
fn imf_fixdate(b: &[u8]) -> Option<SystemTime> {
    if b.len() != 29 || &b[3..5] != b", " || &b[25..] != b" GMT" {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<u64> {
        b[range].iter().try_fold(0u64, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + u64::from(d - b'0'))
        })
    };
    let day = num(5..7)?;
    let month = match &b[8..11] {
        b"Jan" => 1,
        b"Feb" => 2,
        b"Mar" => 3,
        b"Apr" => 4,
        b"May" => 5,
        b"Jun" => 6,
        b"Jul" => 7,
        b"Aug" => 8,
        b"Sep" => 9,
        b"Oct" => 10,
        b"Nov" => 11,
        b"Dec" => 12,
        _ => return None,
    };
    let year = num(12..16)?;
    let (hour, minute, second) = (num(17..19)?, num(20..22)?, num(23..25)?);
    if b[7] != b' ' || b[11] != b' ' || b[16] != b' ' || b[19] != b':' || b[22] != b':' {
        return None;
    }
    if !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 || year < 1970 {
        return None;
    }
    // Days since the epoch of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146_097 + doe).checked_sub(719_468)?;
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second;
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

/// The status codes RFC 9110 defines, whose caching rules this cache implements (for
/// `must-understand`).
fn understood(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200..=206 | 300..=305 | 307 | 308 | 400..=417 | 421 | 422 | 426 | 500..=505
    )
}

/// Statuses reusable with heuristic freshness (RFC 9110 §15.1).
fn heuristically_cacheable(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

impl CachePolicy {
    /// The defaults: 10 % heuristic capped at a day, validators kept an hour, nothing past a year.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            heuristic_percent: 10,
            max_heuristic: Duration::from_secs(86_400),
            keep_for_revalidation: Duration::from_secs(3_600),
            keep_stale: Duration::from_secs(600),
            max_keep: Duration::from_secs(365 * 86_400),
        }
    }

    /// The freshness of a stored entry: as received, less this cache's own early refresh (TTL jitter,
    /// recorded by [`Stored::refresh_early`]), which shortens the lifetime it decides by, never the age
    /// it reports.
    fn stored_freshness(&self, stored: &CachedResponse, response_time: SystemTime) -> Freshness {
        let mut f = self.freshness(stored.status, &stored.headers, response_time);
        let early = stored
            .headers
            .get(&REFRESH_EARLY)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            .min(f.lifetime);
        f.lifetime -= early;
        f.early = early;
        f
    }

    /// How long an entry is kept past its stale windows, in seconds.
    fn past_stale(&self, has_validator: bool) -> u64 {
        let revalidation = if has_validator {
            secs(self.keep_for_revalidation)
        } else {
            0
        };
        revalidation.max(secs(self.keep_stale))
    }

    fn freshness(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        response_time: SystemTime,
    ) -> Freshness {
        // RFC 9213 §2.2: the first targeted field with a valid, non-empty value decides, and then
        // `Cache-Control` and `Expires` are ignored; a targeted field that fails to parse is ignored.
        let targeted = [
            Directives::parse(headers.get_all(&CDN_CACHE_CONTROL)),
            Directives::parse_surrogate(headers.get_all(&SURROGATE_CONTROL), SURROGATE_DEVICE),
        ]
        .into_iter()
        .find(|d| d.present && !d.malformed);
        let is_targeted = targeted.is_some();
        let d =
            targeted.unwrap_or_else(|| Directives::parse(headers.get_all(header::CACHE_CONTROL)));
        // `Date` matters only for `Expires` and heuristics: not read when `max-age` decides.
        let date_value = || {
            DateField::read(headers, &header::DATE)
                .valid()
                .unwrap_or(response_time)
        };
        let explicit = d.s_maxage.or(d.max_age).map(u64::from).or_else(|| {
            if is_targeted {
                return None;
            }
            match DateField::read(headers, &header::EXPIRES) {
                DateField::Absent => None,
                DateField::Invalid => Some(0),
                DateField::At(expires) => Some(since(expires, date_value())),
            }
        });
        let lifetime = match explicit {
            Some(lifetime) => lifetime,
            None if heuristically_cacheable(status) || d.public => {
                DateField::read(headers, &header::LAST_MODIFIED)
                    .valid()
                    .map_or(0, |modified| {
                        (since(date_value(), modified) * u64::from(self.heuristic_percent) / 100)
                            .min(secs(self.max_heuristic))
                    })
            }
            None => 0,
        };
        Freshness {
            lifetime: if d.malformed { 0 } else { lifetime },
            early: 0,
            swr: d.stale_while_revalidate.map_or(0, u64::from),
            sie: d.stale_if_error.map_or(0, u64::from),
            no_cache: d.no_cache,
            no_store: d.no_store,
            private: d.private,
            public: d.public,
            revalidate: d.must_revalidate || d.proxy_revalidate,
            must_revalidate: d.must_revalidate,
            must_understand: d.must_understand,
            immutable: d.immutable,
            has_s_maxage: d.s_maxage.is_some(),
            explicit: explicit.is_some(),
        }
    }

    /// Decides whether the response to `method` with `request` headers may be stored, and if so
    /// prepares `response` headers for storage: its `Age` becomes its corrected initial age, and the
    /// request's values of its `Vary` fields are recorded. `request_time` is when the request was sent,
    /// `response_time` when the response arrived.
    ///
    /// # Errors
    ///
    /// Why it may not be stored; `response` is then unchanged.
    pub fn store(
        &self,
        method: &Method,
        request: &HeaderMap,
        status: StatusCode,
        response: &mut HeaderMap,
        request_time: SystemTime,
        response_time: SystemTime,
    ) -> Result<Stored, NotStored> {
        if method != Method::GET {
            return Err(NotStored::Method);
        }
        if status.is_informational() || status == StatusCode::PARTIAL_CONTENT {
            return Err(NotStored::Status);
        }
        let req = Directives::parse(request.get_all(header::CACHE_CONTROL));
        let f = self.freshness(status, response, response_time);
        // RFC 9111 §5.2.2.3: `must-understand` stores only a status whose caching rules this cache
        // knows, and then overrides the `no-store` that should accompany it.
        if f.must_understand && !understood(status) {
            return Err(NotStored::Status);
        }
        if req.no_store || (f.no_store && !f.must_understand) {
            return Err(NotStored::NoStore);
        }
        if f.private {
            return Err(NotStored::Private);
        }
        if request.contains_key(header::AUTHORIZATION) && !shareable_despite_authorization(&f) {
            return Err(NotStored::Authorization);
        }
        if response.contains_key(header::SET_COOKIE) {
            return Err(NotStored::SetCookie);
        }
        if !f.explicit && !heuristically_cacheable(status) && !f.public {
            return Err(NotStored::Status);
        }
        let has_validator =
            response.contains_key(header::ETAG) || response.contains_key(header::LAST_MODIFIED);
        if f.lifetime == 0 && f.swr == 0 && f.sie == 0 && !has_validator {
            return Err(NotStored::NotReusable);
        }
        let vary = recorded_vary(response, request)?;

        // RFC 9111 §4.2.3, at the moment of receipt.
        let date_value = DateField::read(response, &header::DATE)
            .valid()
            .unwrap_or(response_time);
        let apparent_age = since(response_time, date_value);
        let had_age = response.contains_key(header::AGE);
        let age_value = age_field(response);
        let response_delay = since(response_time, request_time);
        let initial_age = apparent_age.max(age_value.saturating_add(response_delay));

        let remaining = f.lifetime.saturating_sub(initial_age);
        let keep = remaining
            .saturating_add(f.swr.max(f.sie))
            .saturating_add(self.past_stale(has_validator))
            .min(secs(self.max_keep));

        // Only now change the headers: an error above leaves them as they were.
        strip_connection_fields(response);
        if let Some(vary) = vary {
            response.insert(VARY_RECORD.clone(), vary);
        }
        // No Age means zero: a response that arrived new needs no field (and no map growth).
        if initial_age > 0 {
            response.insert(header::AGE, HeaderValue::from(initial_age));
        } else if had_age {
            response.remove(header::AGE);
        }
        Ok(Stored {
            lifetime: Duration::from_secs(f.lifetime),
            initial_age: Duration::from_secs(initial_age),
            keep_for: Duration::from_secs(keep),
            parsed: Parsed(f),
        })
    }

    /// What to do with `stored` for a `method` request with `request` headers at `now`.
    #[must_use]
    pub fn lookup(
        &self,
        method: &Method,
        request: &HeaderMap,
        stored: &CachedResponse,
        now: SystemTime,
    ) -> Lookup {
        self.decide(method, request, stored, None, now)
    }

    /// [`CachePolicy::lookup`] with `stored`'s directives already parsed (from [`Stored::parsed`] or
    /// [`CachePolicy::parse`]): for a cache that keeps the parse beside the entry.
    #[must_use]
    pub fn lookup_parsed(
        &self,
        method: &Method,
        request: &HeaderMap,
        stored: &CachedResponse,
        parsed: &Parsed,
        now: SystemTime,
    ) -> Lookup {
        self.decide(method, request, stored, Some(*parsed), now)
    }

    /// Parses `stored`'s freshness directives once, for [`CachePolicy::lookup_parsed`].
    #[must_use]
    pub fn parse(&self, stored: &CachedResponse) -> Parsed {
        Parsed(self.stored_freshness(stored, stored.stored_at))
    }

    fn decide(
        &self,
        method: &Method,
        request: &HeaderMap,
        stored: &CachedResponse,
        parsed: Option<Parsed>,
        now: SystemTime,
    ) -> Lookup {
        let req = Directives::parse(request.get_all(header::CACHE_CONTROL));
        let only_if_cached = req.only_if_cached;
        let unusable = if only_if_cached {
            Lookup::GatewayTimeout
        } else {
            Lookup::Unusable
        };
        if (method != Method::GET && method != Method::HEAD)
            || !vary_matches(request, &stored.headers)
        {
            return unusable;
        }
        let f = match parsed {
            Some(Parsed(f)) => f,
            None => self.stored_freshness(stored, stored.stored_at),
        };
        let stored_age = age_field(&stored.headers);
        let age = stored_age.saturating_add(since(now, stored.stored_at));
        // Pragma: no-cache counts only without Cache-Control (RFC 9111 §5.4).
        let pragma_no_cache = !req.present
            && request
                .get_all(header::PRAGMA)
                .iter()
                .any(|v| v.as_bytes().eq_ignore_ascii_case(b"no-cache"));
        let fresh = age < f.lifetime
            && req.max_age.is_none_or(|max| age <= u64::from(max))
            && req
                .min_fresh
                .is_none_or(|min| f.lifetime - age >= u64::from(min));
        let wants_revalidation =
            f.no_cache || ((req.no_cache || pragma_no_cache) && !(f.immutable && fresh));
        let decision = if wants_revalidation {
            Self::revalidate(&f, stored, false)
        } else if fresh {
            Lookup::Fresh { age }
        } else {
            let stale_by = age.saturating_sub(f.lifetime);
            let accepted = match req.max_stale {
                Some(MaxStale::Any) => true,
                Some(MaxStale::Seconds(n)) => stale_by <= u64::from(n),
                None => false,
            };
            if f.revalidate {
                Self::revalidate(&f, stored, true)
            } else if accepted {
                Lookup::Fresh { age }
            } else if stale_by < f.swr && req.max_age.is_none() && req.min_fresh.is_none() {
                Lookup::StaleWhileRevalidate { age }
            } else {
                Self::revalidate(&f, stored, false)
            }
        };
        match decision {
            Lookup::Revalidate(_) if only_if_cached => Lookup::GatewayTimeout,
            other => other,
        }
    }

    fn revalidate(f: &Freshness, stored: &CachedResponse, strict: bool) -> Lookup {
        let conditional = Revalidation::validator_of(stored);
        // It went stale when its age reached its lifetime; the window runs from there.
        let stale_at = stored.stored_at
            + Duration::from_secs(f.lifetime.saturating_sub(stored_age_of(stored)));
        let stale_if_error_until =
            (!strict && f.sie > 0).then(|| stale_at + Duration::from_secs(f.sie));
        let stale_if_disconnected = !(f.revalidate || f.no_cache || f.has_s_maxage);
        Lookup::Revalidate(Revalidation {
            conditional,
            stale_if_error_until,
            stale_if_disconnected,
        })
    }

    /// Freshens `stored` with a `304 Not Modified` (RFC 9111 §4.3.4): the 304's fields replace the
    /// stored ones (except framing fields), and its age starts again from this exchange.
    pub fn freshen(
        &self,
        stored: &mut CachedResponse,
        not_modified: &HeaderMap,
        request_time: SystemTime,
        response_time: SystemTime,
    ) -> Stored {
        let mut not_modified = not_modified.clone();
        strip_connection_fields(&mut not_modified);
        for name in not_modified.keys() {
            if KEPT_ON_304.contains(name) || *name == REFRESH_EARLY || *name == VARY_RECORD {
                continue;
            }
            stored.headers.remove(name);
            for value in not_modified.get_all(name) {
                stored.headers.append(name.clone(), value.clone());
            }
        }
        stored.headers.remove(header::AGE);
        if let Some(age) = not_modified.get(header::AGE) {
            stored.headers.insert(header::AGE, age.clone());
        }
        stored.stored_at = response_time;
        let f = self.stored_freshness(stored, response_time);
        let date_value = DateField::read(&stored.headers, &header::DATE)
            .valid()
            .unwrap_or(response_time);
        let age_value = stored_age_of(stored);
        let initial_age = since(response_time, date_value)
            .max(age_value.saturating_add(since(response_time, request_time)));
        stored
            .headers
            .insert(header::AGE, HeaderValue::from(initial_age));
        let has_validator = stored.headers.contains_key(header::ETAG)
            || stored.headers.contains_key(header::LAST_MODIFIED);
        let keep = f
            .lifetime
            .saturating_sub(initial_age)
            .saturating_add(f.swr.max(f.sie))
            .saturating_add(self.past_stale(has_validator));
        Stored {
            parsed: Parsed(f),
            lifetime: Duration::from_secs(f.lifetime),
            initial_age: Duration::from_secs(initial_age),
            keep_for: Duration::from_secs(keep.min(secs(self.max_keep))),
        }
    }
}

fn stored_age_of(stored: &CachedResponse) -> u64 {
    age_field(&stored.headers)
}

/// Calls `each` with every field name `Vary` lists (as written), in order, duplicates included; fails
/// for `*`, a name that is not a field name, or more than [`MAX_VARY`] names.
fn for_each_vary<'h>(
    response: &'h HeaderMap,
    mut each: impl FnMut(&'h str),
) -> Result<(), NotStored> {
    let mut count = 0;
    for value in response.get_all(header::VARY) {
        let text = value.to_str().map_err(|_| NotStored::Vary)?;
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let valid = name != "*"
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            count += 1;
            if !valid || count > MAX_VARY {
                return Err(NotStored::Vary);
            }
            each(name);
        }
    }
    Ok(())
}

/// Appends `<name>:<length>:<value>` for the request's value of `name` (all its lines, trimmed, joined
/// with ", ") to `out`.
/// Appends `<name>:<length>:<value>` to a Vary record: the request's value as sent (lines trimmed,
/// joined with `, `). Compared as sent first (the same client sends the same bytes), then normalised
/// ([`value_is`]).
fn append_value(out: &mut Vec<u8>, request: &HeaderMap, name: &str) {
    out.extend_from_slice(name.as_bytes());
    out.push(b':');
    let lines = request.get_all(name);
    let len: usize = lines
        .iter()
        .enumerate()
        .map(|(i, line)| line.as_bytes().trim_ascii().len() + if i > 0 { 2 } else { 0 })
        .sum();
    push_decimal(out, len);
    out.push(b':');
    for (i, line) in lines.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(line.as_bytes().trim_ascii());
    }
}

fn push_decimal(out: &mut Vec<u8>, n: usize) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// A selecting field's value normalised so that requests that mean the same select the same variant:
/// whitespace at the ends and around `,` `;` `=` removed (lines joined with `,`); `Accept-Language`
/// also without case or order.
fn normalized(value: WithoutOws<impl Iterator<Item = u8>>, accept_language: bool) -> Vec<u8> {
    let joined: Vec<u8> = value.collect();
    if !accept_language {
        return joined;
    }
    let mut members: Vec<Vec<u8>> = joined
        .split(|&b| b == b',')
        .filter(|m| !m.is_empty())
        .map(<[u8]>::to_ascii_lowercase)
        .collect();
    members.sort();
    members.join(&b","[..])
}

/// [`without_ows`] over one recorded value.
fn ows_free(value: &[u8]) -> WithoutOws<std::iter::Copied<std::slice::Iter<'_, u8>>> {
    WithoutOws {
        bytes: value.iter().copied(),
        spaces: 0,
        to_emit: 0,
        stashed: None,
        after_delimiter: true,
    }
}

/// The bytes of every line of `name` joined with `,`, without the optional whitespace at their ends
/// and around the list and parameter delimiters; no allocation.
fn without_ows(lines: GetAll<'_, HeaderValue>) -> WithoutOws<impl Iterator<Item = u8> + '_> {
    let mut first = true;
    let bytes = lines.into_iter().flat_map(move |line| {
        let separator = (!std::mem::take(&mut first)).then_some(b',');
        separator.into_iter().chain(line.as_bytes().iter().copied())
    });
    WithoutOws {
        bytes,
        spaces: 0,
        to_emit: 0,
        stashed: None,
        after_delimiter: true,
    }
}

/// See [`without_ows`]: spaces are held back until the next byte shows whether they sit between two
/// words (kept) or next to a delimiter or an end (dropped).
struct WithoutOws<I> {
    bytes: I,
    /// Spaces seen and not yet decided on.
    spaces: usize,
    /// Spaces decided on, to give before `stashed`.
    to_emit: usize,
    stashed: Option<u8>,
    after_delimiter: bool,
}

impl<I: Iterator<Item = u8>> Iterator for WithoutOws<I> {
    type Item = u8;

    fn next(&mut self) -> Option<u8> {
        if self.to_emit > 0 {
            self.to_emit -= 1;
            return Some(b' ');
        }
        if let Some(b) = self.stashed.take() {
            return Some(b);
        }
        loop {
            let b = self.bytes.next()?;
            match b {
                b' ' | b'\t' => self.spaces += 1,
                b',' | b';' | b'=' => {
                    self.spaces = 0;
                    self.after_delimiter = true;
                    return Some(b);
                }
                _ => {
                    let spaces = std::mem::take(&mut self.spaces);
                    let keep = !std::mem::replace(&mut self.after_delimiter, false);
                    if spaces > 0 && keep {
                        self.to_emit = spaces - 1;
                        self.stashed = Some(b);
                        return Some(b' ');
                    }
                    return Some(b);
                }
            }
        }
    }
}

/// The record of the request's `Vary` values to store with the response (`None` without `Vary`).
fn recorded_vary(
    response: &HeaderMap,
    request: &HeaderMap,
) -> Result<Option<HeaderValue>, NotStored> {
    let mut record = Vec::new();
    for_each_vary(response, |name| append_value(&mut record, request, name))?;
    if record.is_empty() {
        return Ok(None);
    }
    HeaderValue::from_maybe_shared(Bytes::from(record))
        .map(Some)
        .map_err(|_| NotStored::Vary)
}

/// Whether the request's values of the stored response's `Vary` fields are the recorded ones. Walks the
/// record (which names its fields) in place: no allocation unless a field spans several lines.
fn vary_matches(request: &HeaderMap, stored: &HeaderMap) -> bool {
    let Some(recorded) = stored.get(&VARY_RECORD) else {
        // No record: fine without Vary; a Vary without its record cannot be matched.
        return !stored.contains_key(header::VARY);
    };
    let mut rest = recorded.as_bytes();
    while !rest.is_empty() {
        match next_recorded(rest) {
            Some((name, value, after)) if value_is(request, name, value) => rest = after,
            _ => return false,
        }
    }
    true
}

/// Splits `<name>:<length>:<value>` off the front of a Vary record.
fn next_recorded(record: &[u8]) -> Option<(&str, &[u8], &[u8])> {
    let name_end = record.iter().position(|&b| b == b':')?;
    let name = std::str::from_utf8(&record[..name_end]).ok()?;
    let rest = &record[name_end + 1..];
    let colon = rest.iter().take(8).position(|&b| b == b':')?;
    let digits = &rest[..colon];
    if name.is_empty() || digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let len = digits
        .iter()
        .fold(0usize, |n, &d| n * 10 + usize::from(d - b'0'));
    let value = rest.get(colon + 1..colon + 1 + len)?;
    Some((name, value, &rest[colon + 1 + len..]))
}

/// Whether the request's value of `name` (lines trimmed and joined with ", ") is `expected`.
fn value_is(request: &HeaderMap, name: &str, expected: &[u8]) -> bool {
    let all = request.get_all(name);
    let mut lines = all.iter();
    match (lines.next(), lines.next()) {
        (None, _) => expected.is_empty(),
        // The common case, the same bytes as the stored request's, needs no normalising.
        (Some(one), None) if one.as_bytes().trim_ascii() == expected => true,
        _ if name.eq_ignore_ascii_case("accept-language") => {
            normalized(without_ows(all), true) == normalized(ows_free(expected), true)
        }
        _ => without_ows(all).eq(ows_free(expected)),
    }
}

/// The key of `stored`'s variant that `request` selects, under the URL key `key`: the request's values
/// of the stored response's `Vary` fields. `None` when the stored response has no `Vary` (or `*`).
#[must_use]
pub fn variant_key(key: &str, stored: &HeaderMap, request: &HeaderMap) -> Option<String> {
    if !stored.contains_key(&VARY_RECORD) {
        return None;
    }
    let mut variant = key.as_bytes().to_vec();
    for_each_vary(stored, |name| {
        let accept_language = name.eq_ignore_ascii_case("accept-language");
        variant.push(b'\n');
        variant.extend_from_slice(name.as_bytes());
        variant.push(b':');
        variant.extend(normalized(
            without_ows(request.get_all(name)),
            accept_language,
        ));
    })
    .ok()?;
    String::from_utf8(variant).ok()
}

/// The variant key a stored response was stored for (its own recorded `Vary` values), if it varies.
#[must_use]
pub fn own_variant_key(key: &str, stored: &HeaderMap) -> Option<String> {
    let mut rest = stored.get(&VARY_RECORD)?.as_bytes();
    let mut variant = key.as_bytes().to_vec();
    while !rest.is_empty() {
        let (name, value, after) = next_recorded(rest)?;
        let accept_language = name.eq_ignore_ascii_case("accept-language");
        variant.push(b'\n');
        variant.extend_from_slice(name.as_bytes());
        variant.push(b':');
        variant.extend(normalized(ows_free(value), accept_language));
        rest = after;
    }
    String::from_utf8(variant).ok()
}

/// The headers of `stored` as they leave the edge: `Age` set to `age` seconds, and the edge-only fields
/// removed (`CDN-Cache-Control`, `Surrogate-Control`, `Cache-Tag`, `Surrogate-Key` and the recorded
/// `Vary` values).
#[must_use]
pub fn serve_headers(stored: &HeaderMap, age: u64) -> HeaderMap {
    // Copied field by field, leaving this edge's own out, into a map with room for what the layers add
    // on the way out (Cache-Status, rate limits, Link, Server-Timing …): a clone followed by removals
    // looks each edge field up, and the map then regrows (rehashing every field) as the layers add.
    let mut headers = HeaderMap::with_capacity(stored.len() + ROOM_FOR_LAYERS);
    for (name, value) in stored {
        if !is_edge_field(name) && name != header::AGE {
            headers.append(name.clone(), value.clone());
        }
    }
    headers.insert(header::AGE, HeaderValue::from(age));
    headers
}

/// Fields the layers outside the cache typically add to a response it serves.
const ROOM_FOR_LAYERS: usize = 12;

/// The fields meant for this edge only, removed before a response (cached or not) leaves it.
fn edge_fields() -> [&'static HeaderName; 6] {
    [
        &CDN_CACHE_CONTROL,
        &SURROGATE_CONTROL,
        &CACHE_TAG,
        &SURROGATE_KEY,
        &VARY_RECORD,
        &REFRESH_EARLY,
    ]
}

fn is_edge_field(name: &HeaderName) -> bool {
    edge_fields().contains(&name)
}

/// Removes the fields meant for this edge only, before a response (cached or not) leaves it.
pub fn strip_edge_fields(headers: &mut HeaderMap) {
    for name in edge_fields() {
        headers.remove(name);
    }
}

impl Stored {
    /// Has this cache refresh the entry `seconds` before its freshness ends (TTL jitter, so that
    /// entries written together do not all go stale together). Only this cache's decisions change:
    /// the `Age` it reports and the freshness other caches compute stay true. Records the amount in
    /// `headers` (an internal field, stripped before the response leaves) and in the parse.
    pub fn refresh_early(&mut self, seconds: u64, headers: &mut HeaderMap) {
        let seconds = seconds.min(self.parsed.0.lifetime);
        if seconds == 0 {
            return;
        }
        headers.insert(REFRESH_EARLY.clone(), HeaderValue::from(seconds));
        self.parsed.0.lifetime -= seconds;
        self.parsed.0.early += seconds;
        self.lifetime = Duration::from_secs(self.parsed.0.lifetime);
    }
}

/// Whether a stored response answers `request`'s conditional with `304 Not Modified` (RFC 9111 §4.3.2,
/// RFC 9110 §13.2.2): `If-None-Match` decides when present (weak comparison with the stored `ETag`, `*`
/// matching any); otherwise `If-Modified-Since`, against the stored `Last-Modified` (or `Date`).
#[must_use]
pub fn not_modified(request: &HeaderMap, stored: &HeaderMap) -> bool {
    let if_none_match = request.get_all(header::IF_NONE_MATCH);
    if if_none_match.iter().next().is_some() {
        let etag = stored.get(header::ETAG).and_then(|v| v.to_str().ok());
        let opaque = |tag: &str| {
            let tag = tag.trim();
            tag.strip_prefix("W/").unwrap_or(tag).to_owned()
        };
        return if_none_match
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|candidate| {
                candidate.trim() == "*"
                    || etag.is_some_and(|etag| opaque(candidate) == opaque(etag))
            });
    }
    let DateField::At(since_time) = DateField::read(request, &header::IF_MODIFIED_SINCE) else {
        return false;
    };
    let modified = DateField::read(stored, &header::LAST_MODIFIED)
        .valid()
        .or_else(|| DateField::read(stored, &header::DATE).valid());
    modified.is_some_and(|modified| modified <= since_time)
}

/// The `304 Not Modified` for a stored response (RFC 9110 §15.4.5): the fields a `200` would carry
/// that describe the representation's identity and caching, no content.
#[must_use]
pub fn not_modified_headers(stored: &HeaderMap, age: u64) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for name in [
        header::CACHE_CONTROL,
        header::CONTENT_LOCATION,
        header::DATE,
        header::ETAG,
        header::EXPIRES,
        header::VARY,
        header::LAST_MODIFIED,
    ] {
        for value in stored.get_all(&name) {
            headers.append(name.clone(), value.clone());
        }
    }
    headers.insert(header::AGE, HeaderValue::from(age));
    headers
}

/// The cache tags a response carries (`Cache-Tag` and `Surrogate-Key`, separated by commas or spaces).
#[must_use]
pub fn tags(headers: &HeaderMap) -> Vec<String> {
    let mut tags: Vec<String> = Vec::new();
    for name in [&CACHE_TAG, &SURROGATE_KEY] {
        for value in headers.get_all(name) {
            let Ok(text) = value.to_str() else { continue };
            for tag in text
                .split([',', ' '])
                .map(str::trim)
                .filter(|t| !t.is_empty())
            {
                if !tags.iter().any(|t| t == tag) {
                    tags.push(tag.to_owned());
                }
            }
        }
    }
    tags
}

/// Whether a response to `method` with `status` invalidates the stored responses for its target URI
/// (and its `Location` / `Content-Location`) — RFC 9111 §4.4: an unsafe method that succeeded.
#[must_use]
pub fn invalidates(method: &Method, status: StatusCode) -> bool {
    !matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    ) && (status.is_success() || status.is_redirection())
}

#[cfg(test)]
mod tests {

    #[test]
    fn selecting_values_are_compared_without_optional_whitespace() {
        let mut request = HeaderMap::new();
        request.append(
            "accept-encoding",
            HeaderValue::from_static("  gzip ,  br;q=0.5 , x  y "),
        );
        request.append("accept-encoding", HeaderValue::from_static("zstd"));
        let bytes: Vec<u8> = without_ows(request.get_all("accept-encoding")).collect();
        assert_eq!(bytes, b"gzip,br;q=0.5,x  y,zstd");
        let mut record = Vec::new();
        append_value(&mut record, &request, "accept-encoding");
        assert_eq!(record, b"accept-encoding:29:gzip ,  br;q=0.5 , x  y, zstd");
        assert!(value_is(
            &request,
            "accept-encoding",
            b"gzip,br;q=0.5,x  y,zstd"
        ));
        assert!(!value_is(
            &request,
            "accept-encoding",
            b"gzip,br;q=0.5,x y,zstd"
        ));
        let mut languages = HeaderMap::new();
        languages.insert(
            "accept-language",
            HeaderValue::from_static("FR, en-GB ;q=0.8"),
        );
        assert_eq!(
            normalized(without_ows(languages.get_all("accept-language")), true),
            b"en-gb;q=0.8,fr"
        );
        assert!(value_is(&languages, "accept-language", b"en-GB;q=0.8 ,fr"));
        let empty = HeaderMap::new();
        assert!(
            without_ows(empty.get_all("accept-encoding"))
                .next()
                .is_none()
        );
    }
    use super::*;

    #[test]
    fn the_fixed_date_parser_agrees_with_httpdate() {
        for secs in [
            0u64,
            784_111_777,
            951_782_400,
            1_709_164_800,
            1_800_000_000,
            4_102_444_799,
        ] {
            let t = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
            let text = httpdate::fmt_http_date(t);
            assert_eq!(imf_fixdate(text.as_bytes()), Some(t), "{text}");
        }
        for bad in [
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "Sun, 06 Now 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:49:37 GMT",
        ] {
            assert_eq!(imf_fixdate(bad.as_bytes()), None, "{bad}");
        }
    }
}
