//! [`TieredCache`]: the edge read path — isolate memory → PoP cache ([`CacheStore`]) → KV → origin
//! shield → origin — as one async call, with the stampede protection their worst incident asked for.
//!
//! For a `GET` or `HEAD`:
//! 1. each stored tier is asked in turn, and [`CachePolicy::lookup`] decides: a fresh hit is served (and
//!    written back to the tiers above it); a hit within `stale-while-revalidate` is served and **one**
//!    background refresh per key is started through [`WaitUntil`]; anything else falls through;
//! 2. a miss (or a revalidation) **fills** the key once, however many requests miss together (the
//!    [`Coalescer`] from `edge-core`): the shield if there is one, else the origin, is asked — with
//!    `If-None-Match`/`If-Modified-Since` when a stale copy has a validator — and what comes back is
//!    stored in every tier, with a **jittered** age so that entries written together do not expire
//!    together;
//! 3. if the upstream fails (an error or a `5xx`) while a stale copy is inside its `stale-if-error`
//!    window, the stale copy is served (and, when the upstream cannot be reached at all, any stale copy
//!    whose directives allow it, [`Settings::stale_if_disconnected`]); a `5xx` is stored only when the
//!    origin gives it explicit freshness, or for [`Settings::negative_ttl`] when that is set.
//!
//! Responses that may not be shared (`private`, `Set-Cookie`, a `Vary` the waiting request does not
//! match, a body over [`Settings::max_body`]) go to the request that fetched them only: coalesced waiters
//! then fetch for themselves. Unsafe methods pass through and invalidate the URL in every tier that
//! supports it. Every response says what happened in `x-cache-status` (`HIT`, `STALE`, `UPDATING`,
//! `REVALIDATED`, `MISS`, `EXPIRED`, `BYPASS`) and where in `x-cache-tier`.

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use edge_core::cache::{CachedResponse, DynCacheStore};
use edge_core::fetch::DynFetcher;
use edge_core::kv::{DynKvStore, PutOptions};
use edge_core::wait_until::DynWaitUntil;
use edge_core::{
    Body, CacheStore, Clock, Coalescer, Error, ErrorKind, Fetcher, KvStore, WaitUntil,
};
use futures_util::StreamExt;
use http::header::{self, HeaderName};
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri};

use crate::codec;
use crate::memory::MemoryCache;
use crate::policy::{self, CDN_CACHE_CONTROL, CachePolicy, Lookup, Parsed, Revalidation};

/// `x-cache-status`: what the cache did, in one word (the legacy field; see [`Settings::x_cache_status`]).
pub static CACHE_STATUS: HeaderName = HeaderName::from_static("x-cache-status");
/// `x-cache-tier`: which tier answered (legacy, with `x-cache-status`).
pub static CACHE_TIER: HeaderName = HeaderName::from_static("x-cache-tier");
/// `Cache-Status` (RFC 9211): what the cache did, with `hit`/`fwd`/`fwd-status`/`stored`/`ttl`/
/// `collapsed`/`detail` parameters, under the cache's name [`CACHE_NAME`].
pub static CACHE_STATUS_FIELD: HeaderName = HeaderName::from_static("cache-status");
/// The name this cache gives itself in `Cache-Status`.
pub const CACHE_NAME: &str = "edge";

/// What the cache did for one response. Written as `Cache-Status` and (by default) the legacy
/// `x-cache-status`/`x-cache-tier`, and put in the response's extensions for layers and loggers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheOutcome {
    /// In one word: `HIT`, `UPDATING` (stale, refreshing behind), `STALE` (stale, the upstream
    /// failing), `REVALIDATED`, `MISS`, `EXPIRED` (a stale entry replaced) or `BYPASS` (a state-changing
    /// method).
    pub status: &'static str,
    /// The tier that answered.
    pub tier: Option<Tier>,
    /// Seconds of freshness left (negative once stale), for a response from or into storage.
    pub ttl: Option<i64>,
    /// Whether this request's answer was stored.
    pub stored: bool,
    /// What the upstream answered, when the request went there.
    pub forward_status: Option<u16>,
    /// Whether this request waited on another's fill instead of going upstream itself.
    pub collapsed: bool,
}

impl CacheOutcome {
    fn new(status: &'static str, tier: Option<Tier>) -> Self {
        Self {
            status,
            tier,
            ttl: None,
            stored: false,
            forward_status: None,
            collapsed: false,
        }
    }

    /// The `Cache-Status` member for this outcome (RFC 9211).
    #[must_use]
    pub fn cache_status(&self) -> String {
        let mut member = String::from(CACHE_NAME);
        match self.status {
            "HIT" => member.push_str("; hit"),
            "UPDATING" => member.push_str("; hit"),
            "STALE" | "REVALIDATED" | "EXPIRED" => member.push_str("; fwd=stale"),
            "BYPASS" => member.push_str("; fwd=method"),
            _ => member.push_str("; fwd=uri-miss"),
        }
        if let Some(status) = self.forward_status {
            member.push_str(&format!("; fwd-status={status}"));
        }
        if self.stored {
            member.push_str("; stored");
        }
        if self.collapsed {
            member.push_str("; collapsed");
        }
        if let Some(ttl) = self.ttl {
            member.push_str(&format!("; ttl={ttl}"));
        }
        match self.status {
            "UPDATING" => member.push_str("; detail=stale-while-revalidate"),
            "STALE" => member.push_str("; detail=stale-if-error"),
            _ => {}
        }
        member
    }
}

/// The tiers, top to bottom.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Tier {
    /// This process's (isolate's) memory.
    Memory,
    /// The PoP's cache ([`CacheStore`]).
    Store,
    /// The KV store.
    Kv,
    /// The origin shield.
    Shield,
    /// The origin.
    Origin,
}

impl Tier {
    /// Its lowercase name, as in `x-cache-tier`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Store => "store",
            Self::Kv => "kv",
            Self::Shield => "shield",
            Self::Origin => "origin",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Settings of the read path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Settings {
    /// Up to this percentage of an entry's lifetime is taken off at random (per key and write), so
    /// entries written together go stale spread out (default 10).
    pub ttl_jitter_percent: u32,
    /// Cache `5xx` answers for this long, whatever the origin said (default: only as long as the origin's
    /// own explicit freshness says, and not at all without it).
    pub negative_ttl: Option<Duration>,
    /// Larger bodies are passed through, not stored (default 8 MiB).
    pub max_body: usize,
    /// Serve a stale copy when the upstream cannot be reached at all (a refused or broken connection,
    /// a timeout), as RFC 9111 §4.2.4 lets a disconnected cache, unless the copy's directives forbid
    /// it (default on). A `5xx` answer is not a disconnection: only `stale-if-error` covers that.
    pub stale_if_disconnected: bool,
    /// Also write the legacy `x-cache-status` and `x-cache-tier` fields beside the standard
    /// `Cache-Status` (default on; turn off to send only the standard one).
    pub x_cache_status: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            ttl_jitter_percent: 10,
            negative_ttl: None,
            max_body: 8 << 20,
            stale_if_disconnected: true,
            x_cache_status: true,
        }
    }
}

/// Hits and misses of one tier.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TierStats {
    /// Requests the tier answered.
    pub hits: u64,
    /// Requests it was asked and could not answer.
    pub misses: u64,
}

#[derive(Default)]
struct Counters {
    hits: [AtomicU64; 5],
    misses: [AtomicU64; 5],
}

/// What one fill produced, shared by every request coalesced on it.
#[derive(Clone)]
enum Fill {
    /// Stored (or freshened, or negative-cached): serve it to anyone it matches. A fresh answer from
    /// upstream carries the `Age` it arrived with (`Some`), served as received.
    Stored(Arc<CachedResponse>, &'static str, Tier, Option<AsReceived>),
    /// The stale copy, served because the upstream failed inside `stale-if-error`.
    StaleIfError(Arc<CachedResponse>, Tier),
    /// Not shareable (private, cookies, too large, uncacheable status): only its fetcher may have it.
    Private(Arc<std::sync::Mutex<Option<Response<Body>>>>, Tier),
    /// The upstream failed.
    Failed(Error),
}

/// `Surrogate-Capability`, with which a surrogate announces what it understands to the origin.
static SURROGATE_CAPABILITY: HeaderName = HeaderName::from_static("surrogate-capability");

/// The `Age` field an answer arrived with from upstream (`None`: it had none).
#[derive(Clone)]
struct AsReceived(Option<HeaderValue>);

/// The `Age` a served response carries.
enum ServedAge {
    /// Its current age, computed here (a stored response used again).
    Current(u64),
    /// As it arrived (a response just fetched, passed on).
    AsReceived(Option<HeaderValue>),
}

/// The read path. Cheap to clone; clones share tiers and in-flight fills.
pub struct TieredCache<C> {
    inner: Arc<Inner<C>>,
}

impl<C> Clone for TieredCache<C> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<C> std::fmt::Debug for TieredCache<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TieredCache")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

struct Inner<C> {
    policy: CachePolicy,
    settings: Settings,
    memory: Option<MemoryCache<C>>,
    store: Option<Arc<dyn DynCacheStore>>,
    kv: Option<Arc<dyn DynKvStore>>,
    shield: Option<Arc<dyn DynFetcher>>,
    origin: Arc<dyn DynFetcher>,
    clock: C,
    background: Arc<dyn DynWaitUntil>,
    fills: Coalescer<String, Fill>,
    /// Reads of the shared tiers (store, KV), coalesced per tier and key like the fills.
    reads: Coalescer<(Tier, String), Option<(Arc<CachedResponse>, Option<Parsed>)>>,
    refreshing: Mutex<HashSet<String>>,
    counters: Counters,
    jitter_keys: foldhash::fast::FixedState,
    /// The variant keys stored in the memory tier per URL key, oldest first (at most
    /// [`MAX_VARIANTS`]); a variant is served only while listed here, so invalidating a URL reaches
    /// every variant of it.
    variants: quick_cache::sync::Cache<String, Arc<Mutex<VecDeque<String>>>>,
}

/// Variants of one URL kept in the memory tier (different `Vary` values); the oldest goes first.
pub const MAX_VARIANTS: usize = 16;

/// Builds a [`TieredCache`]; every tier but the origin is optional.
pub struct TieredCacheBuilder<C> {
    inner: Inner<C>,
}

impl<C> std::fmt::Debug for TieredCacheBuilder<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TieredCacheBuilder").finish_non_exhaustive()
    }
}

impl<C: Clock + Clone + 'static> TieredCacheBuilder<C> {
    /// The isolate-memory tier.
    #[must_use]
    pub fn memory(mut self, memory: MemoryCache<C>) -> Self {
        self.inner.memory = Some(memory);
        self
    }

    /// The PoP cache tier.
    #[must_use]
    pub fn store(mut self, store: impl CacheStore + 'static) -> Self {
        self.inner.store = Some(Arc::new(store));
        self
    }

    /// The KV tier (entries encoded with [`codec`](crate::codec::encode)).
    #[must_use]
    pub fn kv(mut self, kv: impl KvStore + 'static) -> Self {
        self.inner.kv = Some(Arc::new(kv));
        self
    }

    /// The origin shield: misses go there instead of to the origin.
    #[must_use]
    pub fn shield(mut self, shield: impl Fetcher + 'static) -> Self {
        self.inner.shield = Some(Arc::new(shield));
        self
    }

    /// The freshness model.
    #[must_use]
    pub fn policy(mut self, policy: CachePolicy) -> Self {
        self.inner.policy = policy;
        self
    }

    /// The read path's settings.
    #[must_use]
    pub fn settings(mut self, settings: Settings) -> Self {
        self.inner.settings = settings;
        self
    }

    /// The cache.
    #[must_use]
    pub fn build(self) -> TieredCache<C> {
        TieredCache {
            inner: Arc::new(self.inner),
        }
    }
}

/// The cache key of a request: its absolute URL. The `Host` header supplies a missing authority, and a
/// request without a scheme (the origin form a plain HTTP server receives) is keyed as `http`: what
/// purging the URL as requested finds. A host behind a TLS terminator that wants `https` keys gives
/// its requests absolute URIs.
#[must_use]
pub fn cache_key(uri: &Uri, headers: &HeaderMap) -> String {
    let authority = uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| headers.get(header::HOST).and_then(|h| h.to_str().ok()))
        .unwrap_or("");
    let scheme = uri.scheme_str().unwrap_or("http");
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    // One buffer of the final size; the authority lowercased in place.
    let mut key = String::with_capacity(scheme.len() + 3 + authority.len() + path.len());
    key.push_str(scheme);
    key.push_str("://");
    let start = key.len();
    key.push_str(authority);
    if let Some(authority) = key.get_mut(start..) {
        authority.make_ascii_lowercase();
    }
    key.push_str(path);
    key
}

/// The cache key of `reference` (a `Location` or `Content-Location` value) resolved against the request,
/// if it is on the request's origin: a path, or an absolute URL with the same scheme and authority.
fn same_origin_key(uri: &Uri, headers: &HeaderMap, reference: &HeaderValue) -> Option<String> {
    let reference = reference.to_str().ok()?.trim();
    let own = cache_key(uri, headers);
    let origin_end = own.find("://").map(|i| i + 3)?;
    let origin = own.get(..origin_end + own.get(origin_end..)?.find('/')?)?;
    if reference.starts_with('/') && !reference.starts_with("//") {
        let path: PathAndQuery = reference.parse().ok()?;
        return Some(format!("{origin}{path}"));
    }
    let absolute: Uri = reference.parse().ok()?;
    absolute.authority()?;
    let key = cache_key(&absolute, &HeaderMap::new());
    key.starts_with(origin).then_some(key).filter(|key| {
        key.get(origin.len()..)
            .is_some_and(|rest| rest.starts_with('/'))
    })
}

/// What one request carried that a fill needs (its extensions too: layers below may read them, such
/// as a verified identity).
#[derive(Clone)]
struct Asked {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    extensions: http::Extensions,
}

impl<C: Clock + Clone + 'static> TieredCache<C> {
    /// A read path to `origin`, timed by `clock`, refreshing in the background through `background`.
    pub fn builder(
        origin: impl Fetcher + 'static,
        clock: C,
        background: impl WaitUntil + 'static,
    ) -> TieredCacheBuilder<C> {
        TieredCacheBuilder {
            inner: Inner {
                policy: CachePolicy::new(),
                settings: Settings::default(),
                memory: None,
                store: None,
                kv: None,
                shield: None,
                origin: Arc::new(origin),
                clock,
                background: Arc::new(background),
                fills: Coalescer::new(),
                reads: Coalescer::new(),
                refreshing: Mutex::new(HashSet::new()),
                counters: Counters::default(),
                jitter_keys: foldhash::fast::FixedState::with_seed(0x6564_6765),
                variants: quick_cache::sync::Cache::new(65_536),
            },
        }
    }

    /// Hits and misses per tier, top to bottom.
    #[must_use]
    pub fn stats(&self) -> Vec<(Tier, TierStats)> {
        [
            Tier::Memory,
            Tier::Store,
            Tier::Kv,
            Tier::Shield,
            Tier::Origin,
        ]
        .into_iter()
        .map(|tier| {
            let c = &self.inner.counters;
            (
                tier,
                TierStats {
                    hits: c.hits[tier.index()].load(Ordering::Relaxed),
                    misses: c.misses[tier.index()].load(Ordering::Relaxed),
                },
            )
        })
        .collect()
    }

    /// Marks a response made up because the upstream failed (and nothing stale could stand in) with
    /// what the cache did: it went to the upstream, which failed.
    #[must_use]
    pub fn finish_failure(&self, response: Response<Body>) -> Response<Body> {
        self.inner.finish(response, CacheOutcome::new("MISS", None))
    }

    /// Removes `url`'s entries (every variant) from every tier, keyed exactly as lookups key a request
    /// for it ([`cache_key`]); whether anything was there to remove (in the memory or store tier; KV
    /// cannot tell).
    ///
    /// # Errors
    ///
    /// `url` is not an absolute URL.
    pub async fn purge_url(&self, url: &str) -> Result<bool, Error> {
        let uri: Uri = url
            .parse()
            .map_err(|_| Error::new(ErrorKind::InvalidInput, format!("not a URL: {url}")))?;
        if uri.authority().is_none() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("not an absolute URL: {url}"),
            ));
        }
        Ok(self
            .inner
            .invalidate(&cache_key(&uri, &HeaderMap::new()))
            .await)
    }

    /// Removes every entry tagged `tag` from the tiers that index tags (memory and store); how many.
    ///
    /// # Errors
    ///
    /// An invalid tag.
    pub async fn purge_tag(&self, tag: &str) -> Result<usize, Error> {
        let mut purged = 0;
        if let Some(memory) = &self.inner.memory {
            purged += memory.purge_tag(tag).await?;
        }
        if let Some(store) = &self.inner.store {
            purged += store.purge_tag(tag).await.unwrap_or(0);
        }
        Ok(purged)
    }

    /// Answers `request` through the tiers. See the [module docs](self).
    ///
    /// # Errors
    ///
    /// The upstream failed and nothing stale could stand in.
    pub async fn handle(&self, request: Request<Body>) -> Result<Response<Body>, Error> {
        let inner = &self.inner;
        let method = request.method().clone();
        let key = cache_key(request.uri(), request.headers());
        if method != Method::GET && method != Method::HEAD {
            let (uri, headers) = (request.uri().clone(), request.headers().clone());
            let response = inner.upstream_fetch(request).await?.0;
            if policy::invalidates(&method, response.status()) {
                let _ = inner.invalidate(&key).await;
                // RFC 9111 §4.4: the URLs in `Location` and `Content-Location` too, when they are on
                // the same origin (another origin's entries are not this request's to drop).
                for name in [header::LOCATION, header::CONTENT_LOCATION] {
                    if let Some(related) = response
                        .headers()
                        .get(&name)
                        .and_then(|v| same_origin_key(&uri, &headers, v))
                    {
                        let _ = inner.invalidate(&related).await;
                    }
                }
            }
            let mut outcome = CacheOutcome::new("BYPASS", None);
            outcome.forward_status = Some(response.status().as_u16());
            return Ok(inner.finish(response, outcome));
        }
        // A GET or HEAD has no body to keep: the request's parts are taken, not copied.
        let (parts, _) = request.into_parts();
        let asked = Asked {
            method: parts.method,
            uri: parts.uri,
            headers: parts.headers,
            extensions: parts.extensions,
        };
        let now = inner.clock.wall_time();
        let mut candidate: Option<(Arc<CachedResponse>, Revalidation, Tier)> = None;
        // The tiers asked that could not answer: they get what a lower tier had.
        let mut missed: Vec<Tier> = Vec::new();
        for tier in [Tier::Memory, Tier::Store, Tier::Kv] {
            if !inner.has(tier) {
                continue;
            }
            let found = if tier == Tier::Memory {
                // The URL's latest entry, or the variant this request selects when that one's
                // `Vary` values are not the request's.
                inner.read(tier, &key).await.map(|(entry, parsed)| {
                    inner
                        .variant(&key, &entry, &asked.headers)
                        .unwrap_or((entry, parsed))
                })
            } else {
                // Concurrent misses ask the PoP cache and KV once per key, not once each.
                let (reader, read_key) = (Arc::clone(&self.inner), key.clone());
                inner
                    .reads
                    .run((tier, key.clone()), move || async move {
                        reader.read(tier, &read_key).await
                    })
                    .await
            };
            let Some((entry, parsed)) = found else {
                inner.miss(tier);
                missed.push(tier);
                continue;
            };
            // The memory tier keeps each entry's parse; the others are parsed here, once.
            let parsed = parsed.unwrap_or_else(|| inner.policy.parse(&entry));
            match inner
                .policy
                .lookup_parsed(&method, &asked.headers, &entry, &parsed, now)
            {
                Lookup::Fresh { age } => {
                    inner.hit(tier);
                    inner.write_back(&key, &entry, parsed, &missed).await;
                    let mut outcome = CacheOutcome::new("HIT", Some(tier));
                    outcome.ttl = Some(ttl(&parsed, age));
                    let age = ServedAge::Current(age);
                    let response = serve(&entry, age, &asked.headers, &method);
                    return Ok(inner.finish(response, outcome));
                }
                Lookup::StaleWhileRevalidate { age } => {
                    inner.hit(tier);
                    let mut outcome = CacheOutcome::new("UPDATING", Some(tier));
                    outcome.ttl = Some(ttl(&parsed, age));
                    let response = serve(&entry, ServedAge::Current(age), &asked.headers, &method);
                    let response = inner.finish(response, outcome);
                    self.refresh_in_background(key, asked, Arc::clone(&entry), tier);
                    return Ok(response);
                }
                Lookup::GatewayTimeout => return Ok(gateway_timeout()),
                Lookup::Revalidate(revalidation) => {
                    inner.miss(tier);
                    candidate = Some((entry, revalidation, tier));
                    break;
                }
                Lookup::Unusable => {
                    inner.miss(tier);
                    missed.push(tier);
                }
            }
        }
        if candidate.is_none() {
            let only_if_cached =
                crate::Directives::parse(asked.headers.get_all(header::CACHE_CONTROL))
                    .only_if_cached;
            if only_if_cached {
                return Ok(gateway_timeout());
            }
        }
        let expired = candidate.is_some();
        let flight = {
            let (inner, key, asked) = (Arc::clone(&self.inner), key.clone(), asked.clone());
            inner.fills.clone().run(key.clone(), move || async move {
                inner.fill(key, asked, candidate).await
            })
        };
        let leader = flight.is_leader();
        match flight.await {
            Fill::Stored(entry, status, tier, received) => {
                let current = entry_age(&entry, inner.clock.wall_time());
                let age = match received {
                    Some(AsReceived(age)) => ServedAge::AsReceived(age),
                    None => ServedAge::Current(current),
                };
                let usable = leader
                    || !matches!(
                        inner.policy.lookup(
                            &method,
                            &asked.headers,
                            &entry,
                            inner.clock.wall_time()
                        ),
                        Lookup::Unusable
                    );
                if usable {
                    let status = if status == "MISS" && expired {
                        "EXPIRED"
                    } else {
                        status
                    };
                    let mut outcome = CacheOutcome::new(status, Some(tier));
                    outcome.ttl = Some(ttl(&inner.policy.parse(&entry), current));
                    outcome.stored = leader;
                    outcome.collapsed = !leader;
                    outcome.forward_status = Some(if status == "REVALIDATED" {
                        StatusCode::NOT_MODIFIED.as_u16()
                    } else {
                        entry.status.as_u16()
                    });
                    let response = serve(&entry, age, &asked.headers, &method);
                    return Ok(inner.finish(response, outcome));
                }
                self.fetch_alone(request_of(&asked)).await
            }
            Fill::StaleIfError(entry, tier) => {
                let current = entry_age(&entry, inner.clock.wall_time());
                let mut outcome = CacheOutcome::new("STALE", Some(tier));
                outcome.ttl = Some(ttl(&inner.policy.parse(&entry), current));
                let response = serve(&entry, ServedAge::Current(current), &asked.headers, &method);
                Ok(inner.finish(response, outcome))
            }
            Fill::Private(slot, tier) => {
                let mine = if leader {
                    slot.lock().unwrap_or_else(PoisonError::into_inner).take()
                } else {
                    None
                };
                match mine {
                    Some(response) => {
                        let mut outcome = CacheOutcome::new("MISS", Some(tier));
                        outcome.forward_status = Some(response.status().as_u16());
                        Ok(inner.finish(response, outcome))
                    }
                    None => self.fetch_alone(request_of(&asked)).await,
                }
            }
            Fill::Failed(error) => Err(error),
        }
    }

    /// A request that may not share a coalesced answer goes upstream on its own.
    async fn fetch_alone(&self, request: Request<Body>) -> Result<Response<Body>, Error> {
        let (response, tier) = self.inner.upstream_fetch(request).await?;
        let mut outcome = CacheOutcome::new("MISS", Some(tier));
        outcome.forward_status = Some(response.status().as_u16());
        Ok(self.inner.finish(response, outcome))
    }

    fn refresh_in_background(
        &self,
        key: String,
        asked: Asked,
        entry: Arc<CachedResponse>,
        tier: Tier,
    ) {
        {
            let mut refreshing = self
                .inner
                .refreshing
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if !refreshing.insert(key.clone()) {
                return; // one background refresh per key
            }
        }
        let inner = Arc::clone(&self.inner);
        self.inner.background.wait_until_boxed(Box::pin(async move {
            let revalidation = match inner.policy.lookup(
                &Method::GET,
                &HeaderMap::new(),
                &entry,
                inner.clock.wall_time(),
            ) {
                Lookup::Revalidate(r) => r,
                _ => Revalidation {
                    conditional: Revalidation::validator_of(&entry),
                    ..Revalidation::default()
                },
            };
            let fill = {
                let (inner2, key2) = (Arc::clone(&inner), key.clone());
                inner.fills.clone().run(key.clone(), move || async move {
                    inner2
                        .fill(key2, asked, Some((entry, revalidation, tier)))
                        .await
                })
            };
            let _ = fill.await;
            inner
                .refreshing
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&key);
        }));
    }
}

/// A cache is a [`Fetcher`] too: one PoP's cache can be another's shield.
impl<C: Clock + Clone + 'static> Fetcher for TieredCache<C> {
    async fn fetch(&self, request: Request<Body>) -> Result<Response<Body>, Error> {
        self.handle(request).await
    }
}

impl<C: Clock + Clone + 'static> Inner<C> {
    fn has(&self, tier: Tier) -> bool {
        match tier {
            Tier::Memory => self.memory.is_some(),
            Tier::Store => self.store.is_some(),
            Tier::Kv => self.kv.is_some(),
            Tier::Shield => self.shield.is_some(),
            Tier::Origin => true,
        }
    }

    /// Writes what the cache did onto `response`: `Cache-Status`, the legacy fields when configured,
    /// and the [`CacheOutcome`] in its extensions.
    fn finish(&self, mut response: Response<Body>, outcome: CacheOutcome) -> Response<Body> {
        let headers = response.headers_mut();
        if let Ok(value) = HeaderValue::try_from(outcome.cache_status()) {
            // After any member the caches nearer the origin added (RFC 9211 §2).
            headers.append(CACHE_STATUS_FIELD.clone(), value);
        }
        if self.settings.x_cache_status {
            headers.insert(
                CACHE_STATUS.clone(),
                HeaderValue::from_static(outcome.status),
            );
            if let Some(tier) = outcome.tier {
                headers.insert(CACHE_TIER.clone(), HeaderValue::from_static(tier.name()));
            }
        }
        response.extensions_mut().insert(outcome);
        response
    }

    fn hit(&self, tier: Tier) {
        self.counters.hits[tier.index()].fetch_add(1, Ordering::Relaxed);
    }

    fn miss(&self, tier: Tier) {
        self.counters.misses[tier.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// A tier's entry for `key`; a tier that fails or holds garbage counts as a miss.
    async fn read(&self, tier: Tier, key: &str) -> Option<(Arc<CachedResponse>, Option<Parsed>)> {
        match tier {
            Tier::Memory => self.memory.as_ref()?.get_parsed(key),
            Tier::Store => self
                .store
                .as_ref()?
                .get(key)
                .await
                .ok()
                .flatten()
                .map(|entry| (Arc::new(entry), None)),
            Tier::Kv => {
                let bytes = self.kv.as_ref()?.get(&kv_key(key)).await.ok().flatten()?;
                let entry = codec::decode(&bytes).ok()?;
                (!entry.is_expired_at(self.clock.wall_time())).then(|| (Arc::new(entry), None))
            }
            Tier::Shield | Tier::Origin => None,
        }
    }

    /// Writes `entry` to the tiers above the one that had it (they missed).
    async fn write_back(
        &self,
        key: &str,
        entry: &Arc<CachedResponse>,
        parsed: Parsed,
        tiers: &[Tier],
    ) {
        for &tier in tiers {
            self.write(tier, key, entry, Some(parsed)).await;
        }
    }

    async fn write(
        &self,
        tier: Tier,
        key: &str,
        entry: &Arc<CachedResponse>,
        parsed: Option<Parsed>,
    ) {
        // A tier that refuses (too large, down) is skipped: the others still get the entry.
        match tier {
            Tier::Memory => {
                if let Some(memory) = &self.memory {
                    let _ = memory.put_parsed(key, Arc::clone(entry), parsed);
                    // A response that varies is also kept as its own variant, beside the others.
                    if let Some(variant) = policy::own_variant_key(key, &entry.headers) {
                        let _ = memory.put_parsed(&variant, Arc::clone(entry), parsed);
                        self.list_variant(key, variant).await;
                    }
                }
            }
            Tier::Store => {
                if let Some(store) = &self.store {
                    let _ = store.put(key, (**entry).clone()).await;
                }
            }
            Tier::Kv => {
                if let Some(kv) = &self.kv {
                    let options = match entry.expires_at {
                        Some(at) => PutOptions::new().with_expiration(at),
                        None => PutOptions::new(),
                    };
                    let _ = kv.put(&kv_key(key), codec::encode(entry), options).await;
                }
            }
            Tier::Shield | Tier::Origin => {}
        }
    }

    /// Removes `key`'s entries from every tier; whether the memory or store tier held one.
    async fn invalidate(&self, key: &str) -> bool {
        let mut removed = false;
        if let Some(memory) = &self.memory {
            removed |= memory.delete(key).await.unwrap_or(false);
            if let Some((_, variants)) = self.variants.remove(key) {
                let variants = std::mem::take(&mut *lock(&variants));
                for variant in variants {
                    removed |= memory.delete(&variant).await.unwrap_or(false);
                }
            }
        }
        if let Some(store) = &self.store {
            removed |= store.delete(key).await.unwrap_or(false);
        }
        if let Some(kv) = &self.kv {
            let _ = kv.delete(&kv_key(key)).await;
        }
        removed
    }

    /// The variant of `key` that `request` selects, when `latest` (the URL's newest entry) varies and
    /// is not it.
    fn variant(
        &self,
        key: &str,
        latest: &CachedResponse,
        request: &HeaderMap,
    ) -> Option<(Arc<CachedResponse>, Option<Parsed>)> {
        let variant = policy::variant_key(key, &latest.headers, request)?;
        if policy::own_variant_key(key, &latest.headers).as_deref() == Some(variant.as_str()) {
            return None; // the latest is the one
        }
        let listed = self.variants.get(key)?;
        if !lock(&listed).contains(&variant) {
            return None;
        }
        self.memory.as_ref()?.get_parsed(&variant)
    }

    /// Lists `variant` under `key`, dropping the oldest past [`MAX_VARIANTS`].
    async fn list_variant(&self, key: &str, variant: String) {
        let listed = self
            .variants
            .get_or_insert_with(key, || Ok::<_, std::convert::Infallible>(Arc::default()));
        let Ok(listed) = listed;
        let dropped = {
            let mut listed = lock(&listed);
            listed.retain(|v| *v != variant);
            listed.push_back(variant);
            if listed.len() > MAX_VARIANTS {
                listed.pop_front()
            } else {
                None
            }
        };
        if let (Some(dropped), Some(memory)) = (dropped, &self.memory) {
            let _ = memory.delete(&dropped).await;
        }
    }

    async fn upstream_fetch(
        &self,
        mut request: Request<Body>,
    ) -> Result<(Response<Body>, Tier), Error> {
        // Tells the origin this cache obeys `Surrogate-Control` (Edge Architecture Specification).
        request
            .headers_mut()
            .entry(SURROGATE_CAPABILITY.clone())
            .or_insert(HeaderValue::from_static("edge=\"Surrogate/1.0\""));
        match &self.shield {
            Some(shield) => Ok((shield.fetch(request).await?, Tier::Shield)),
            None => Ok((self.origin.fetch(request).await?, Tier::Origin)),
        }
    }

    /// Fetches `key` upstream (conditionally when there is a stale candidate) and stores the answer.
    async fn fill(
        self: Arc<Self>,
        key: String,
        asked: Asked,
        candidate: Option<(Arc<CachedResponse>, Revalidation, Tier)>,
    ) -> Fill {
        let request_time = self.clock.wall_time();
        let mut request = request_of(&asked);
        *request.method_mut() = Method::GET;
        if let Some((_, revalidation, _)) = &candidate {
            revalidation.apply_to(request.headers_mut());
        }
        let upstream = self.upstream_fetch(request).await;
        let response_time = self.clock.wall_time();
        let tier = if self.shield.is_some() {
            Tier::Shield
        } else {
            Tier::Origin
        };
        let failed = match &upstream {
            Err(_) => true,
            Ok((response, _)) => response.status().is_server_error(),
        };
        if failed {
            self.miss(tier);
            if let Some((entry, revalidation, from)) = &candidate {
                let within_stale_if_error = revalidation
                    .stale_if_error_until
                    .is_some_and(|until| response_time <= until);
                // Unreachable (not a 5xx: an answer is not a disconnection): a stale copy stands in
                // unless its directives forbid it.
                let disconnected = upstream.is_err()
                    && self.settings.stale_if_disconnected
                    && revalidation.stale_if_disconnected;
                if within_stale_if_error || disconnected {
                    return Fill::StaleIfError(Arc::clone(entry), *from);
                }
            }
        } else {
            self.hit(tier);
        }
        let response = match upstream {
            Ok((response, _)) => response,
            Err(error) => return Fill::Failed(error),
        };
        let status = response.status();
        if status == StatusCode::NOT_MODIFIED {
            if let Some((entry, _, _)) = candidate {
                let mut fresh = (*entry).clone();
                let stored = self.policy.freshen(
                    &mut fresh,
                    response.headers(),
                    request_time,
                    response_time,
                );
                fresh.expires_at = Some(response_time + stored.keep_for);
                let fresh = Arc::new(fresh);
                for tier in [Tier::Memory, Tier::Store, Tier::Kv] {
                    self.write(tier, &key, &fresh, Some(stored.parsed)).await;
                }
                return Fill::Stored(fresh, "REVALIDATED", tier, None);
            }
            // The client's own conditional, answered by the origin: its `304` is the client's alone,
            // and nothing to store.
            let (parts, body) = response.into_parts();
            return pass_through(parts, body, tier);
        }
        let (parts, body) = response.into_parts();
        let mut headers = parts.headers.clone();
        if status.is_server_error() {
            if let Some(ttl) = self.settings.negative_ttl {
                // A negative entry: kept only for its own short lifetime, whatever the origin said.
                if let Ok(value) = HeaderValue::try_from(format!("max-age={}", ttl.as_secs())) {
                    headers.insert(CDN_CACHE_CONTROL.clone(), value);
                }
                headers.remove(header::SET_COOKIE);
            }
        }
        // Whether the answer may be stored is decided from its head alone. What may not — and what
        // announces a body past `max_body` — streams straight through to the request that fetched it:
        // its head leaves at once and its body is never held here.
        let stored = match self.policy.store(
            &Method::GET,
            &asked.headers,
            status,
            &mut headers,
            request_time,
            response_time,
        ) {
            // A 5xx is stored only with explicit freshness from the origin (the policy sees to that),
            // or for `negative_ttl` when that is set.
            Ok(stored) => stored,
            Err(_) => return pass_through(parts, body, tier),
        };
        let announced = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if announced.is_some_and(|n| n > self.settings.max_body as u64) {
            return pass_through(parts, body, tier);
        }
        // A storable body is read whole before anyone is answered; the fetcher's body deadline
        // (`HyperFetcher::with_body_timeout`) bounds how long a stalled origin can hold it.
        let body = match read_body(body, self.settings.max_body).await {
            Ok(ReadBody::Whole(bytes)) => bytes,
            Ok(ReadBody::TooLarge(body)) => return pass_through(parts, body, tier),
            Err(error) => return Fill::Failed(error),
        };
        let mut stored = stored;
        let remaining = stored.lifetime.saturating_sub(stored.initial_age);
        stored.refresh_early(self.jitter(&key, remaining), &mut headers);
        let received = AsReceived(parts.headers.get(header::AGE).cloned());
        let tags = policy::tags(&headers);
        let entry = CachedResponse::new(status, headers, body, response_time)
            .with_expires_at(response_time + stored.keep_for)
            .with_tags(tags);
        let entry = Arc::new(entry);
        for tier in [Tier::Memory, Tier::Store, Tier::Kv] {
            self.write(tier, &key, &entry, Some(stored.parsed)).await;
        }
        Fill::Stored(entry, "MISS", tier, Some(received))
    }

    /// How many seconds early this cache refreshes `key`, whose remaining lifetime is `remaining`: up to
    /// `ttl_jitter_percent` of it, the same for a key every time (a fixed hash of the key), so entries
    /// written together go stale spread out and runs are repeatable. Never reported to anyone.
    fn jitter(&self, key: &str, remaining: Duration) -> u64 {
        let span = remaining.as_secs() * u64::from(self.settings.ttl_jitter_percent.min(50)) / 100;
        if span == 0 {
            return 0;
        }
        let mut hasher = self.jitter_keys.build_hasher();
        hasher.write(key.as_bytes());
        hasher.finish() % (span + 1)
    }
}

/// An answer only the request that fetched it may have, its body streaming through unread.
fn pass_through(parts: http::response::Parts, body: Body, tier: Tier) -> Fill {
    let mut response = Response::from_parts(parts, body);
    policy::strip_edge_fields(response.headers_mut());
    Fill::Private(Arc::new(std::sync::Mutex::new(Some(response))), tier)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn kv_key(key: &str) -> String {
    format!("cache:{key}")
}

fn request_of(asked: &Asked) -> Request<Body> {
    let mut request = Request::new(Body::empty());
    *request.method_mut() = asked.method.clone();
    *request.uri_mut() = asked.uri.clone();
    *request.headers_mut() = asked.headers.clone();
    *request.extensions_mut() = asked.extensions.clone();
    request
}

fn entry_age(entry: &CachedResponse, now: SystemTime) -> u64 {
    let stored = entry
        .headers
        .get(header::AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0);
    stored.saturating_add(
        now.duration_since(entry.stored_at)
            .map_or(0, |d| d.as_secs()),
    )
}

/// Answers from `entry`: its content, or a `304` when the request's conditional matches it.
fn serve(
    entry: &CachedResponse,
    age: ServedAge,
    request: &HeaderMap,
    method: &Method,
) -> Response<Body> {
    let current = match &age {
        ServedAge::Current(age) => *age,
        ServedAge::AsReceived(age) => age
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0),
    };
    let conditional = (method == Method::GET || method == Method::HEAD)
        && entry.status == StatusCode::OK
        && policy::not_modified(request, &entry.headers);
    let mut response = if conditional {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        *response.headers_mut() = policy::not_modified_headers(&entry.headers, current);
        response
    } else {
        let body = if method == Method::HEAD {
            Body::empty()
        } else {
            Body::from(entry.body.clone())
        };
        let mut response = Response::new(body);
        *response.status_mut() = entry.status;
        *response.headers_mut() = policy::serve_headers(&entry.headers, current);
        // The stored length, also for HEAD (whose empty body would otherwise say 0 or nothing), and
        // in place of an origin's length that was not the body's (RFC 9110 §8.6).
        if entry.status != StatusCode::NO_CONTENT && !entry.status.is_informational() {
            response
                .headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(entry.body.len()));
        }
        response
    };
    if let ServedAge::AsReceived(received) = age {
        let headers = response.headers_mut();
        headers.remove(header::AGE);
        if let Some(received) = received {
            headers.insert(header::AGE, received);
        }
    }
    response
}

/// Seconds of freshness left at `age` (negative once stale).
fn ttl(parsed: &Parsed, age: u64) -> i64 {
    let lifetime = i64::try_from(parsed.lifetime().as_secs()).unwrap_or(i64::MAX);
    lifetime.saturating_sub(i64::try_from(age).unwrap_or(i64::MAX))
}

fn gateway_timeout() -> Response<Body> {
    let mut response = Response::new(Body::from(
        "not cached, and the request said only-if-cached\n",
    ));
    *response.status_mut() = StatusCode::GATEWAY_TIMEOUT;
    response.headers_mut().insert(
        CACHE_STATUS_FIELD.clone(),
        HeaderValue::from_static("edge; detail=only-if-cached"),
    );
    response
}

/// A body read up to the limit: whole, or too large (and then still readable whole).
enum ReadBody {
    Whole(Bytes),
    TooLarge(Body),
}

/// Reads a body up to `limit`; a longer one comes back as a body that replays what was read and then
/// streams the rest.
async fn read_body(body: Body, limit: usize) -> Result<ReadBody, Error> {
    if let Some(bytes) = body.as_bytes() {
        return Ok(if bytes.len() <= limit {
            ReadBody::Whole(bytes.clone())
        } else {
            ReadBody::TooLarge(body)
        });
    }
    let mut body = body;
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut total = 0usize;
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        total += chunk.len();
        chunks.push(chunk);
        if total > limit {
            let head = futures_util::stream::iter(chunks.into_iter().map(Ok::<Bytes, Error>));
            return Ok(ReadBody::TooLarge(Body::from_stream(head.chain(body))));
        }
    }
    let mut whole = bytes::BytesMut::with_capacity(total);
    for chunk in chunks {
        whole.extend_from_slice(&chunk);
    }
    Ok(ReadBody::Whole(whole.freeze()))
}
