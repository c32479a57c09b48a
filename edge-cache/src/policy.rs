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
//! assert_eq!(stored.keep_for, Duration::from_secs(90));
//! let entry = CachedResponse::new(StatusCode::OK, headers, "hi".into(), t0);
//!
//! let at = |s| t0 + Duration::from_secs(s);
//! assert!(matches!(policy.lookup(&Method::GET, &request, &entry, at(59)), Lookup::Fresh { age: 59 }));
//! assert!(matches!(policy.lookup(&Method::GET, &request, &entry, at(70)), Lookup::StaleWhileRevalidate { .. }));
//! assert!(matches!(policy.lookup(&Method::GET, &request, &entry, at(95)), Lookup::Revalidate(_)));
//! ```
//!
//! What the edge adds to RFC 9111, and where it is stricter:
//! - **Targeted fields win**: `CDN-Cache-Control` (RFC 9213), else `Surrogate-Control`, replaces
//!   `Cache-Control` for this cache's decisions; both are stripped before a response leaves the edge
//!   ([`serve_headers`]).
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

use edge_core::cache::CachedResponse;
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Method, StatusCode};

use crate::directives::{Directives, MaxStale};

/// The most `Vary` fields a stored response may name.
pub const MAX_VARY: usize = 8;

/// The prefix under which a stored entry keeps the request's values of its `Vary` fields.
const VARY_PREFIX: &str = "x-edge-vary-";

/// `CDN-Cache-Control` (RFC 9213).
pub static CDN_CACHE_CONTROL: HeaderName = HeaderName::from_static("cdn-cache-control");
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
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Revalidation {
    /// `If-None-Match` / `If-Modified-Since` to send (empty without a validator).
    pub conditional: HeaderMap,
    /// Until when the stored response may be served if the origin fails (`stale-if-error`).
    pub stale_if_error_until: Option<SystemTime>,
}

/// The freshness facts of a stored or received response.
#[derive(Clone, Copy, Debug)]
struct Freshness {
    lifetime: u64,
    swr: u64,
    sie: u64,
    no_cache: bool,
    no_store: bool,
    private: bool,
    public: bool,
    revalidate: bool,
    immutable: bool,
    has_s_maxage: bool,
    explicit: bool,
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
            Some(value) => value
                .to_str()
                .ok()
                .and_then(|s| httpdate::parse_http_date(s.trim()).ok())
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
            max_keep: Duration::from_secs(365 * 86_400),
        }
    }

    fn freshness(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        response_time: SystemTime,
    ) -> Freshness {
        let targeted = [&CDN_CACHE_CONTROL, &SURROGATE_CONTROL]
            .into_iter()
            .map(|name| Directives::parse(headers.get_all(name)))
            .find(|d| d.present);
        let d =
            targeted.unwrap_or_else(|| Directives::parse(headers.get_all(header::CACHE_CONTROL)));
        let date_value = DateField::read(headers, &header::DATE)
            .valid()
            .unwrap_or(response_time);
        let explicit = d.s_maxage.or(d.max_age).map(u64::from).or_else(|| {
            match DateField::read(headers, &header::EXPIRES) {
                DateField::Absent => None,
                DateField::Invalid => Some(0),
                DateField::At(expires) => Some(since(expires, date_value)),
            }
        });
        let lifetime = match explicit {
            Some(lifetime) => lifetime,
            None if heuristically_cacheable(status) || d.public => {
                DateField::read(headers, &header::LAST_MODIFIED)
                    .valid()
                    .map_or(0, |modified| {
                        (since(date_value, modified) * u64::from(self.heuristic_percent) / 100)
                            .min(secs(self.max_heuristic))
                    })
            }
            None => 0,
        };
        Freshness {
            lifetime: if d.malformed { 0 } else { lifetime },
            swr: d.stale_while_revalidate.map_or(0, u64::from),
            sie: d.stale_if_error.map_or(0, u64::from),
            no_cache: d.no_cache,
            no_store: d.no_store,
            private: d.private,
            public: d.public,
            revalidate: d.must_revalidate || d.proxy_revalidate,
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
        if req.no_store || f.no_store {
            return Err(NotStored::NoStore);
        }
        if f.private {
            return Err(NotStored::Private);
        }
        if request.contains_key(header::AUTHORIZATION)
            && !(f.public || f.has_s_maxage || f.revalidate)
        {
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
        let vary = vary_fields(response)?;

        // RFC 9111 §4.2.3, at the moment of receipt.
        let date_value = DateField::read(response, &header::DATE)
            .valid()
            .unwrap_or(response_time);
        let apparent_age = since(response_time, date_value);
        let age_value = response
            .get(header::AGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0);
        let response_delay = since(response_time, request_time);
        let initial_age = apparent_age.max(age_value.saturating_add(response_delay));

        let remaining = f.lifetime.saturating_sub(initial_age);
        let mut keep = remaining.saturating_add(f.swr.max(f.sie));
        if has_validator {
            keep = keep.saturating_add(secs(self.keep_for_revalidation));
        }
        let keep = keep.min(secs(self.max_keep));

        // Only now change the headers: an error above leaves them as they were.
        for name in &vary {
            let stored_name = HeaderName::from_bytes(format!("{VARY_PREFIX}{name}").as_bytes())
                .map_err(|_| NotStored::Vary)?;
            let value = joined(request, name);
            response.insert(stored_name, value);
        }
        response.insert(header::AGE, HeaderValue::from(initial_age));
        Ok(Stored {
            lifetime: Duration::from_secs(f.lifetime),
            initial_age: Duration::from_secs(initial_age),
            keep_for: Duration::from_secs(keep),
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
        let f = self.freshness(stored.status, &stored.headers, stored.stored_at);
        let stored_age = stored
            .headers
            .get(header::AGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0);
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
        let mut conditional = HeaderMap::new();
        if let Some(etag) = stored.headers.get(header::ETAG) {
            conditional.insert(header::IF_NONE_MATCH, etag.clone());
        } else if let Some(modified) = stored.headers.get(header::LAST_MODIFIED) {
            conditional.insert(header::IF_MODIFIED_SINCE, modified.clone());
        }
        // It went stale when its age reached its lifetime; the window runs from there.
        let stale_at = stored.stored_at
            + Duration::from_secs(f.lifetime.saturating_sub(stored_age_of(stored)));
        let stale_if_error_until =
            (!strict && f.sie > 0).then(|| stale_at + Duration::from_secs(f.sie));
        Lookup::Revalidate(Revalidation {
            conditional,
            stale_if_error_until,
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
        for name in not_modified.keys() {
            if name == header::CONTENT_LENGTH
                || name == header::TRANSFER_ENCODING
                || name == header::CONTENT_ENCODING
            {
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
        let f = self.freshness(stored.status, &stored.headers, response_time);
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
        let mut keep = f
            .lifetime
            .saturating_sub(initial_age)
            .saturating_add(f.swr.max(f.sie));
        if has_validator {
            keep = keep.saturating_add(secs(self.keep_for_revalidation));
        }
        Stored {
            lifetime: Duration::from_secs(f.lifetime),
            initial_age: Duration::from_secs(initial_age),
            keep_for: Duration::from_secs(keep.min(secs(self.max_keep))),
        }
    }
}

fn stored_age_of(stored: &CachedResponse) -> u64 {
    stored
        .headers
        .get(header::AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The field names listed by `Vary` (lowercase), or why the response cannot be stored.
fn vary_fields(response: &HeaderMap) -> Result<Vec<String>, NotStored> {
    let mut fields = Vec::new();
    for value in response.get_all(header::VARY) {
        let text = value.to_str().map_err(|_| NotStored::Vary)?;
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if name == "*" {
                return Err(NotStored::Vary);
            }
            let name = name.to_ascii_lowercase();
            if HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(NotStored::Vary);
            }
            if !fields.contains(&name) {
                fields.push(name);
            }
        }
    }
    if fields.len() > MAX_VARY {
        return Err(NotStored::Vary);
    }
    Ok(fields)
}

/// All values of `name` in `headers`, joined with ", " (empty when absent).
fn joined(headers: &HeaderMap, name: &str) -> HeaderValue {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (None, _) => HeaderValue::from_static(""),
        (Some(one), None) => one.clone(),
        (Some(first), Some(second)) => {
            let mut bytes = first.as_bytes().to_vec();
            for value in std::iter::once(second).chain(values) {
                bytes.extend_from_slice(b", ");
                bytes.extend_from_slice(value.as_bytes());
            }
            HeaderValue::from_bytes(&bytes).unwrap_or_else(|_| HeaderValue::from_static(""))
        }
    }
}

/// Whether the request's values of the stored response's `Vary` fields match the recorded ones
/// (compared after trimming; field values are otherwise compared exactly).
fn vary_matches(request: &HeaderMap, stored: &HeaderMap) -> bool {
    if !stored.contains_key(header::VARY) {
        return true;
    }
    let Ok(fields) = vary_fields(stored) else {
        return false;
    };
    fields.iter().all(|name| {
        let recorded = stored
            .iter()
            .find(|(n, _)| n.as_str().strip_prefix(VARY_PREFIX) == Some(name.as_str()))
            .map(|(_, v)| v.as_bytes());
        let current = joined(request, name);
        recorded.is_some_and(|r| r.trim_ascii() == current.as_bytes().trim_ascii())
    })
}

/// The headers of `stored` as they leave the edge: `Age` set to `age` seconds, and the edge-only fields
/// removed (`CDN-Cache-Control`, `Surrogate-Control`, `Cache-Tag`, `Surrogate-Key` and the recorded
/// `Vary` values).
#[must_use]
pub fn serve_headers(stored: &HeaderMap, age: u64) -> HeaderMap {
    let mut headers = stored.clone();
    strip_edge_fields(&mut headers);
    headers.insert(header::AGE, HeaderValue::from(age));
    headers
}

/// Removes the fields meant for this edge only, before a response (cached or not) leaves it.
pub fn strip_edge_fields(headers: &mut HeaderMap) {
    for name in [
        &CDN_CACHE_CONTROL,
        &SURROGATE_CONTROL,
        &CACHE_TAG,
        &SURROGATE_KEY,
    ] {
        headers.remove(name);
    }
    let recorded: Vec<HeaderName> = headers
        .keys()
        .filter(|n| n.as_str().starts_with(VARY_PREFIX))
        .cloned()
        .collect();
    for name in recorded {
        headers.remove(name);
    }
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
