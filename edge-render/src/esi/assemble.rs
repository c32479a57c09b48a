//! The ESI assembler: a template stream in, the assembled page streamed out in document order.
//!
//! [`Assembler::assemble`] reads the template as it arrives, tokenizes and parses it, and for each node
//! starts its work at once: text is ready, an include starts its fetch, a `try` or `choose` renders its
//! branch. The output is a stream that yields each piece as soon as it **and everything before it** is
//! ready: the bytes before the first pending include leave immediately, a slow fragment late in the page
//! holds back only what follows it, and all fetches run in parallel.
//!
//! A fragment is fetched through the [`Fetcher`] with a per-fragment timeout and the page's remaining
//! time, coalesced with identical fetches in flight (one request for any number of pages wanting it), and
//! cached in the [`CacheStore`] for as long as its `Cache-Control` (`s-maxage`, then `max-age`) allows
//! (`no-store`, `private` and `no-cache` fragments are not stored). An HTML fragment is itself assembled,
//! up to [`EsiSettings::max_depth`].
//!
//! An include fails when its URL is not allowed (another host than the page's or the allow-list's, a
//! scheme other than http(s), control characters), would loop (a page including itself, or two
//! including each other), passes a limit (depth, [`EsiSettings::max_fragments`] per page, the fragment's
//! size), times out, or gets a non-2xx answer. A failed include tries its `alt`; then, with
//! `onerror="continue"`, renders nothing; inside `<esi:attempt>` it makes the `try` render its `except`;
//! otherwise [`EsiSettings::on_failure`] decides: by default ([`OnFailure::Omit`]) it renders nothing, and
//! [`OnFailure::Abort`] ends the stream with an error instead. Fragments are requested without the
//! client's cookies (they are shared between users); put what varies by user into the URL with
//! variables.
//!
//! A malformed template ([`EsiError`]) ends the stream with an error after the bytes before it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use edge_core::cache::CachedResponse;
use edge_core::trace::{RequestSpan, SpanKind, Status, attr};
use edge_core::{
    Body, BoxFuture, BoxStream, CacheStore, Clock, Coalescer, Error, ErrorKind, Fetcher, Instant,
    Timer,
};
use futures_util::future::{Either, select};
use futures_util::stream::FuturesOrdered;
use futures_util::{FutureExt, StreamExt};
use http::{HeaderValue, Request, StatusCode, Uri};

use super::EsiError;
use super::expr::evaluate;
use super::parse::{Node, Parser, ParserLimits};
use super::tokenizer::{IncludeTag, Tokenizer, TokenizerLimits};
use super::vars::{Variables, percent_encode, substitute};

/// What a failed include does outside `try` and without `onerror="continue"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnFailure {
    /// It renders nothing (the page goes on; the failure is recorded on the request's span).
    #[default]
    Omit,
    /// The stream ends with an error (the client sees a cut-off page).
    Abort,
}

/// The assembler's limits and policies, with safe defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct EsiSettings {
    /// Deepest include nesting (a fragment's fragments, …; default 3).
    pub max_depth: usize,
    /// Most includes fetched per page, alternates and nested ones counted (default 64).
    pub max_fragments: usize,
    /// Largest fragment body, after its own assembly (default 1 MiB).
    pub max_fragment_size: usize,
    /// How long one fragment may take (default 2 s).
    pub fragment_timeout: Duration,
    /// How long the whole page's fragments may take (default 10 s).
    pub total_timeout: Duration,
    /// Hosts fragments may come from besides the page's own (exact, case-insensitive).
    pub allowed_hosts: Vec<String>,
    /// What an unhandled failed include does.
    pub on_failure: OnFailure,
    /// The tokenizer's limits.
    pub tokenizer: TokenizerLimits,
    /// The parser's limits.
    pub parser: ParserLimits,
}

impl Default for EsiSettings {
    fn default() -> Self {
        Self {
            max_depth: 3,
            max_fragments: 64,
            max_fragment_size: 1024 * 1024,
            fragment_timeout: Duration::from_secs(2),
            total_timeout: Duration::from_secs(10),
            allowed_hosts: Vec::new(),
            on_failure: OnFailure::Omit,
            tokenizer: TokenizerLimits::default(),
            parser: ParserLimits::default(),
        }
    }
}

impl EsiSettings {
    /// Sets [`max_depth`](Self::max_depth).
    #[must_use]
    pub fn with_max_depth(mut self, depth: usize) -> Self {
        self.max_depth = depth;
        self
    }

    /// Sets [`max_fragments`](Self::max_fragments).
    #[must_use]
    pub fn with_max_fragments(mut self, fragments: usize) -> Self {
        self.max_fragments = fragments;
        self
    }

    /// Sets [`max_fragment_size`](Self::max_fragment_size).
    #[must_use]
    pub fn with_max_fragment_size(mut self, bytes: usize) -> Self {
        self.max_fragment_size = bytes;
        self
    }

    /// Sets [`fragment_timeout`](Self::fragment_timeout) and [`total_timeout`](Self::total_timeout).
    #[must_use]
    pub fn with_timeouts(mut self, fragment: Duration, total: Duration) -> Self {
        self.fragment_timeout = fragment;
        self.total_timeout = total;
        self
    }

    /// Sets [`on_failure`](Self::on_failure).
    #[must_use]
    pub fn with_on_failure(mut self, on_failure: OnFailure) -> Self {
        self.on_failure = on_failure;
        self
    }

    /// Allows fragments from `host` too.
    #[must_use]
    pub fn allow_host(mut self, host: impl Into<String>) -> Self {
        self.allowed_hosts.push(host.into().to_ascii_lowercase());
        self
    }
}

/// A fetched fragment as shared between coalesced waiters.
#[derive(Clone, Debug)]
struct Fragment {
    body: Bytes,
    html: bool,
}

type Fetched = Result<Fragment, String>;

struct Shared<F, S> {
    fetcher: F,
    cache: Option<S>,
    clock: Arc<dyn Clock>,
    timer: Arc<dyn Timer>,
    settings: EsiSettings,
    flights: Coalescer<String, Fetched>,
    /// Resolved include URLs by (page origin, `src`), for sources without variables.
    resolved: Mutex<HashMap<(Arc<str>, Arc<str>), Result<(Uri, Arc<str>), String>>>,
}

/// Most remembered resolutions (the memo is cleared past it).
const MAX_RESOLVED: usize = 4096;

/// Assembles ESI pages. Cheap to clone; clones share the fetches in flight. See the [module docs](self).
pub struct Assembler<F, S> {
    shared: Arc<Shared<F, S>>,
}

impl<F, S> Clone for Assembler<F, S> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<F, S> std::fmt::Debug for Assembler<F, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Assembler")
            .field("settings", &self.shared.settings)
            .finish_non_exhaustive()
    }
}

/// The page being assembled: what every include in it shares.
struct Page {
    url: Uri,
    /// The page's scheme and authority: relative includes resolve against it.
    origin: Arc<str>,
    /// `url` as text, for the loop check.
    key: String,
    vars: Variables,
    deadline: Instant,
    fetched: AtomicUsize,
    span: Option<RequestSpan>,
}

/// Where in the page a node is: its depth and the URLs of the fragments it sits in.
#[derive(Clone)]
struct Place {
    page: Arc<Page>,
    depth: usize,
    ancestors: Arc<Vec<String>>,
}

/// Why a node did not render.
#[derive(Debug)]
enum Failure {
    /// An include failed: `try` catches it.
    Include(String),
    /// The template is not valid ESI: nothing catches it.
    Template(EsiError),
}

/// The fragment cache of an [`Assembler`] built without one: keeps nothing.
#[derive(Clone, Copy, Debug, Default)]
#[non_exhaustive]
pub struct NoFragmentCache;

impl CacheStore for NoFragmentCache {
    fn limits(&self) -> edge_core::cache::CacheLimits {
        edge_core::cache::CacheLimits::new(0)
    }

    async fn get(&self, _key: &str) -> Result<Option<edge_core::cache::CachedResponse>, Error> {
        Ok(None)
    }

    async fn put(
        &self,
        _key: &str,
        _response: edge_core::cache::CachedResponse,
    ) -> Result<(), Error> {
        Ok(())
    }

    async fn delete(&self, _key: &str) -> Result<bool, Error> {
        Ok(false)
    }

    async fn purge_tag(&self, _tag: &str) -> Result<usize, Error> {
        Ok(0)
    }
}

/// Builds an [`Assembler`]: the fetcher and the timer are required; fragments are not cached, time is
/// the [`SystemClock`](edge_core::SystemClock) and the settings are [`EsiSettings::default`] unless set.
///
/// ```
/// use edge_core::ManualClock;
/// use edge_core::testing::TestFetcher;
/// use edge_render::esi::{Assembler, EsiSettings};
///
/// let clock = ManualClock::new();
/// let assembler = Assembler::builder(TestFetcher::new(), clock.clone())
///     .clock(clock)
///     .settings(EsiSettings::default().allow_host("fragments.example"))
///     .build();
/// # let _ = assembler;
/// ```
pub struct AssemblerBuilder<F, S> {
    fetcher: F,
    cache: Option<S>,
    clock: Arc<dyn Clock>,
    timer: Arc<dyn Timer>,
    settings: EsiSettings,
}

impl<F, S> std::fmt::Debug for AssemblerBuilder<F, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssemblerBuilder")
            .field("cached", &self.cache.is_some())
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl<F: Fetcher + 'static> Assembler<F, NoFragmentCache> {
    /// An [`AssemblerBuilder`] fetching through `fetcher` and sleeping on `timer` (the host's:
    /// `TokioTimer`, `WorkersTimer`, a `ManualClock` in tests).
    pub fn builder(
        fetcher: F,
        timer: impl Timer + 'static,
    ) -> AssemblerBuilder<F, NoFragmentCache> {
        AssemblerBuilder {
            fetcher,
            cache: None,
            clock: Arc::new(edge_core::SystemClock::new()),
            timer: Arc::new(timer),
            settings: EsiSettings::default(),
        }
    }
}

impl<F, S> AssemblerBuilder<F, S> {
    /// Caches fragments in `cache` for as long as their `Cache-Control` allows.
    #[must_use]
    pub fn cache<T: CacheStore + 'static>(self, cache: T) -> AssemblerBuilder<F, T> {
        AssemblerBuilder {
            fetcher: self.fetcher,
            cache: Some(cache),
            clock: self.clock,
            timer: self.timer,
            settings: self.settings,
        }
    }

    /// Times fragments and deadlines on `clock`.
    #[must_use]
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The limits, time limits and failure handling.
    #[must_use]
    pub fn settings(mut self, settings: EsiSettings) -> Self {
        self.settings = settings;
        self
    }
}

impl<F: Fetcher + 'static, S: CacheStore + 'static> AssemblerBuilder<F, S> {
    /// The assembler.
    #[must_use]
    pub fn build(self) -> Assembler<F, S> {
        Assembler {
            shared: Arc::new(Shared {
                fetcher: self.fetcher,
                cache: self.cache,
                clock: self.clock,
                timer: self.timer,
                settings: self.settings,
                flights: Coalescer::new(),
                resolved: Mutex::new(HashMap::new()),
            }),
        }
    }
}

impl<F, S> Assembler<F, S>
where
    F: Fetcher + 'static,
    S: CacheStore + 'static,
{
    /// An assembler fetching through `fetcher`, caching fragments in `cache` (`None`: no caching), timing
    /// on `clock` and sleeping on `timer`. [`Assembler::builder`] names the parts instead.
    pub fn new(
        fetcher: F,
        cache: Option<S>,
        clock: impl Clock + 'static,
        timer: impl Timer + 'static,
        settings: EsiSettings,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                fetcher,
                cache,
                clock: Arc::new(clock),
                timer: Arc::new(timer),
                settings,
                flights: Coalescer::new(),
                resolved: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Assembles `template`, the page at `page_url` for a request with `vars`, recording fragments on
    /// `span` (the request's, if any). The result streams in document order; see the [module docs](self).
    pub fn assemble(
        &self,
        page_url: Uri,
        vars: Variables,
        span: Option<RequestSpan>,
        template: BoxStream<'static, Result<Bytes, Error>>,
    ) -> BoxStream<'static, Result<Bytes, Error>> {
        let deadline = self.shared.clock.now() + self.shared.settings.total_timeout;
        let place = Place {
            page: Arc::new(Page {
                origin: Arc::from(format!(
                    "{}://{}",
                    page_url.scheme_str().unwrap_or(""),
                    page_url.authority().map_or("", |a| a.as_str())
                )),
                key: page_url.to_string(),
                url: page_url,
                vars,
                deadline,
                fetched: AtomicUsize::new(0),
                span,
            }),
            depth: 0,
            ancestors: Arc::new(Vec::new()),
        };
        self.stream(place, template)
    }

    fn stream(
        &self,
        place: Place,
        template: BoxStream<'static, Result<Bytes, Error>>,
    ) -> BoxStream<'static, Result<Bytes, Error>> {
        let settings = &self.shared.settings;
        let state = Assembly {
            assembler: self.clone(),
            place,
            template: Some(template),
            tokenizer: Tokenizer::new(settings.tokenizer),
            parser: Parser::new(settings.parser),
            queue: FuturesOrdered::new(),
            ready: std::collections::VecDeque::new(),
            error_after: None,
            failed: false,
        };
        Box::pin(futures_util::stream::unfold(state, Assembly::next))
    }

    /// Renders `nodes` in order (their work concurrent) into one buffer; `in_vars` as for [`render`].
    fn render_all(
        &self,
        nodes: Vec<Node>,
        place: &Place,
        in_vars: bool,
    ) -> BoxFuture<'static, Result<Bytes, Failure>> {
        let parts: Vec<_> = nodes
            .into_iter()
            .map(|node| self.render(node, place, in_vars))
            .collect();
        Box::pin(async move {
            let mut out = BytesMut::new();
            for part in futures_util::future::join_all(parts).await {
                out.extend_from_slice(&part?);
            }
            Ok(out.freeze())
        })
    }

    /// The work of one node. `in_vars`: text gets its variables substituted.
    fn render(
        &self,
        node: Node,
        place: &Place,
        in_vars: bool,
    ) -> BoxFuture<'static, Result<Bytes, Failure>> {
        match node {
            Node::Text(text) if in_vars => {
                let mut out = String::new();
                substitute(
                    &String::from_utf8_lossy(&text),
                    &place.page.vars,
                    crate::html::escape::text,
                    &mut out,
                );
                Box::pin(std::future::ready(Ok(Bytes::from(out))))
            }
            Node::Text(text) => Box::pin(std::future::ready(Ok(text))),
            Node::Include(tag) => {
                let this = self.clone();
                let place = place.clone();
                Box::pin(async move { this.include(tag, place).await })
            }
            Node::Vars(nodes) => self.render_all(nodes, place, true),
            Node::Try { attempt, except } => {
                let attempt = self.render_all(attempt, place, in_vars);
                let this = self.clone();
                let place = place.clone();
                Box::pin(async move {
                    match attempt.await {
                        Ok(bytes) => Ok(bytes),
                        Err(Failure::Include(_)) => this.render_all(except, &place, in_vars).await,
                        Err(fatal) => Err(fatal),
                    }
                })
            }
            Node::Choose { whens, otherwise } => {
                let vars = &place.page.vars;
                // A test that does not parse is false: a broken `when` never renders.
                let chosen = whens
                    .into_iter()
                    .find(|(test, _)| evaluate(test, vars).unwrap_or(false))
                    .map_or(otherwise, |(_, nodes)| nodes);
                self.render_all(chosen, place, in_vars)
            }
            // `Node` is non-exhaustive; anything newer renders nothing rather than something wrong.
            #[allow(unreachable_patterns)]
            _ => Box::pin(std::future::ready(Ok(Bytes::new()))),
        }
    }

    /// One `<esi:include>`: `src`, then `alt`, then `onerror`.
    async fn include(self, tag: IncludeTag, place: Place) -> Result<Bytes, Failure> {
        let first = self.fetch_fragment(&tag.src, &place).await;
        let result = match (first, &tag.alt) {
            (Ok(bytes), _) => Ok(bytes),
            (Err(Failure::Include(_)), Some(alt)) => self.fetch_fragment(alt, &place).await,
            (Err(failure), _) => Err(failure),
        };
        match result {
            Err(Failure::Include(_)) if tag.continue_on_error => Ok(Bytes::new()),
            other => other,
        }
    }

    /// [`resolve`](Self::resolve) and the URL as text, remembered for sources without variables: a page
    /// assembled again and again resolves the same few includes.
    fn resolve_cached(&self, src: &str, place: &Place) -> Result<(Uri, Arc<str>), String> {
        let variable = src.contains("$(");
        let memo_key = (place.page.origin.clone(), Arc::<str>::from(src));
        if !variable {
            let memo = self
                .shared
                .resolved
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(hit) = memo.get(&memo_key) {
                return hit.clone();
            }
        }
        let resolved = self.resolve(src, place).map(|uri| {
            let key = Arc::<str>::from(uri.to_string());
            (uri, key)
        });
        if !variable {
            let mut memo = self
                .shared
                .resolved
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            // Bounded: a template generating endless distinct sources only costs the re-resolving.
            if memo.len() >= MAX_RESOLVED {
                memo.clear();
            }
            memo.insert(memo_key, resolved.clone());
        }
        resolved
    }

    /// Resolves `src` against the page and checks it may be fetched.
    fn resolve(&self, src: &str, place: &Place) -> Result<Uri, String> {
        let substituted;
        let url = if src.contains("$(") {
            let mut url = String::new();
            substitute(src, &place.page.vars, percent_encode, &mut url);
            substituted = url;
            substituted.as_str()
        } else {
            src
        };
        if url.bytes().any(|b| b < 0x20 || b == 0x7f) {
            return Err("control characters in src".into());
        }
        let uri = resolve_reference(url, &place.page.url)?;
        let host = normalized_host(uri.host().unwrap_or(""));
        let page_host = normalized_host(place.page.url.host().unwrap_or(""));
        let allowed = host == page_host
            || self
                .shared
                .settings
                .allowed_hosts
                .iter()
                .any(|h| normalized_host(h) == host);
        if !allowed {
            return Err(format!("host {host} is not allowed"));
        }
        Ok(uri)
    }

    async fn fetch_fragment(&self, src: &str, place: &Place) -> Result<Bytes, Failure> {
        let settings = &self.shared.settings;
        let (uri, key) = self.resolve_cached(src, place).map_err(Failure::Include)?;
        if place.depth >= settings.max_depth {
            return Err(Failure::Include("includes nested too deep".into()));
        }
        if *key == *place.page.key || place.ancestors.iter().any(|a| **a == *key) {
            return Err(Failure::Include("include loop".into()));
        }
        if place.page.fetched.fetch_add(1, Ordering::Relaxed) >= settings.max_fragments {
            return Err(Failure::Include("too many fragments".into()));
        }
        let child = place.page.span.as_ref().map(|span| {
            let mut child = span.child("esi.include", SpanKind::Client);
            child.set(attr::EDGE_ESI_FRAGMENT, key.to_string());
            child
        });
        let fetched = self.fetched(&key, uri, place).await;
        let result = match fetched {
            Ok(fragment) if fragment.html => self.nested(fragment.body, &key, place).await,
            Ok(fragment) => Ok(fragment.body),
            Err(reason) => Err(Failure::Include(reason)),
        };
        if let (Some(span), Some(mut child)) = (&place.page.span, child) {
            if let Err(failure) = &result {
                child.set_status(Status::Error(format!("{failure:?}").into()));
            }
            span.end_child(child);
        }
        result
    }

    /// Assembles a fetched HTML fragment in place (its own includes, one level deeper).
    async fn nested(&self, body: Bytes, key: &str, place: &Place) -> Result<Bytes, Failure> {
        // Without ESI in it there is nothing to do (the common case: no copy).
        if !super::tokenizer::may_hold_esi(&body) {
            return Ok(body);
        }
        let mut ancestors = (*place.ancestors).clone();
        ancestors.push(key.to_owned());
        let inner = Place {
            page: Arc::clone(&place.page),
            depth: place.depth + 1,
            ancestors: Arc::new(ancestors),
        };
        let template: BoxStream<'static, Result<Bytes, Error>> =
            Box::pin(futures_util::stream::once(async move { Ok(body) }));
        let mut stream = self.stream(inner, template);
        let mut out = BytesMut::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| Failure::Include(format!("nested esi: {e}")))?;
            out.extend_from_slice(&chunk);
            if out.len() > self.shared.settings.max_fragment_size {
                return Err(Failure::Include("fragment too large".into()));
            }
        }
        Ok(out.freeze())
    }

    /// The fragment at `uri`: from the cache, or fetched once for every page waiting on it.
    async fn fetched(&self, key: &str, uri: Uri, place: &Place) -> Fetched {
        let shared = &self.shared;
        if let Some(cache) = &shared.cache {
            if let Ok(Some(hit)) = cache.get(key).await {
                let html = is_html(&hit.headers);
                return Ok(Fragment {
                    body: hit.body,
                    html,
                });
            }
        }
        let remaining = place
            .page
            .deadline
            .checked_duration_since(shared.clock.now())
            .unwrap_or_default();
        let timeout = shared.settings.fragment_timeout.min(remaining);
        let this = self.clone();
        let key = key.to_owned();
        shared
            .flights
            .run(key.clone(), move || async move {
                this.load(key, uri, timeout).await
            })
            .await
    }

    async fn load(self, key: String, uri: Uri, timeout: Duration) -> Fetched {
        let shared = &self.shared;
        let mut request = Request::new(Body::empty());
        *request.uri_mut() = uri;
        request.headers_mut().insert(
            http::header::ACCEPT,
            HeaderValue::from_static("text/html, */*"),
        );
        let mut fetch = std::pin::pin!(shared.fetcher.fetch(request));
        // A fragment that is there at once (memory, a cache in front) needs no timer.
        let answer = match (&mut fetch).now_or_never() {
            Some(answer) => Some(answer),
            None => match select(fetch, shared.timer.sleep(timeout)).await {
                Either::Left((answer, _)) => Some(answer),
                Either::Right(_) => None,
            },
        };
        let response = match answer {
            Some(Ok(response)) => response,
            Some(Err(error)) => return Err(format!("fetch failed: {}", error.kind())),
            None => return Err("fragment timed out".into()),
        };
        let status = response.status();
        if !status.is_success() {
            return Err(format!("fragment answered {status}"));
        }
        let (parts, body) = response.into_parts();
        let body = body
            .collect(shared.settings.max_fragment_size)
            .await
            .map_err(|e| {
                if e.kind() == ErrorKind::TooLarge {
                    "fragment too large".to_owned()
                } else {
                    format!("fragment body failed: {}", e.kind())
                }
            })?;
        let html = is_html(&parts.headers);
        if let (Some(cache), Some(ttl)) = (&shared.cache, cacheable_for(&parts.headers)) {
            let now: SystemTime = shared.clock.wall_time();
            let mut entry =
                CachedResponse::new(StatusCode::OK, parts.headers.clone(), body.clone(), now);
            entry.expires_at = now.checked_add(ttl);
            // A fragment the cache refuses (too large, …) is still served.
            let _ = cache.put(&key, entry).await;
        }
        Ok(Fragment { body, html })
    }
}

fn is_html(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|t| t.to_ascii_lowercase().contains("html"))
}

/// How long a fragment may be cached: `s-maxage`, else `max-age`; never for `no-store`, `no-cache` or
/// `private`.
fn cacheable_for(headers: &http::HeaderMap) -> Option<Duration> {
    let mut max_age = None;
    let mut s_maxage = None;
    for value in headers.get_all(http::header::CACHE_CONTROL) {
        for directive in value.to_str().ok()?.split(',') {
            let directive = directive.trim().to_ascii_lowercase();
            match directive.split_once('=') {
                Some(("max-age", n)) => max_age = n.trim_matches('"').parse().ok(),
                Some(("s-maxage", n)) => s_maxage = n.trim_matches('"').parse().ok(),
                None if matches!(directive.as_str(), "no-store" | "no-cache" | "private") => {
                    return None;
                }
                _ => {}
            }
        }
    }
    s_maxage
        .or(max_age)
        .filter(|s: &u64| *s > 0)
        .map(Duration::from_secs)
}

/// The state of one assembly: the template still to read, and the output still to send, in order.
struct Assembly<F, S> {
    assembler: Assembler<F, S>,
    place: Place,
    template: Option<BoxStream<'static, Result<Bytes, Error>>>,
    tokenizer: Tokenizer,
    parser: Parser,
    queue: FuturesOrdered<BoxFuture<'static, Result<Bytes, Failure>>>,
    /// Finished pieces that come before everything in `queue` (they go out first).
    ready: std::collections::VecDeque<Result<Bytes, Failure>>,
    /// A template error, sent once everything before it has been.
    error_after: Option<EsiError>,
    failed: bool,
}

impl<F, S> Assembly<F, S>
where
    F: Fetcher + 'static,
    S: CacheStore + 'static,
{
    /// Turns a chunk of template (or its end) into queued work.
    /// What comes before an error in the template is still queued (and sent).
    fn schedule(&mut self, chunk: Option<Bytes>) -> Result<(), EsiError> {
        let mut tokens = Vec::new();
        let tokenized = match chunk {
            Some(chunk) => self.tokenizer.feed(chunk, &mut tokens),
            None => self.tokenizer.finish(&mut tokens),
        };
        let mut nodes = Vec::new();
        let mut parsed = tokens
            .into_iter()
            .try_for_each(|token| self.parser.push(token, &mut nodes));
        if parsed.is_ok() && tokenized.is_ok() && self.template.is_none() {
            parsed = self.parser.finish();
        }
        for node in nodes {
            // Text is ready; so is an include whose fragment is at hand (the memory cache): polled once
            // here, it needs no place in the queue. Whatever waits keeps its place in document order.
            let done = match node {
                Node::Text(text) => Ok(Ok(text)),
                node => {
                    let mut work = self.assembler.render(node, &self.place, false);
                    let mut cx =
                        std::task::Context::from_waker(futures_util::task::noop_waker_ref());
                    match work.as_mut().poll(&mut cx) {
                        std::task::Poll::Ready(result) => Ok(result),
                        std::task::Poll::Pending => Err(work),
                    }
                }
            };
            match done {
                Ok(result) if self.queue.is_empty() => self.ready.push_back(result),
                Ok(result) => self.queue.push_back(Box::pin(std::future::ready(result))),
                Err(work) => self.queue.push_back(work),
            }
        }
        tokenized.and(parsed)
    }

    fn error(&mut self, failure: Failure) -> Error {
        self.failed = true;
        match failure {
            Failure::Template(e) => {
                Error::with_source(ErrorKind::InvalidInput, "invalid esi template", e)
            }
            Failure::Include(reason) => Error::new(
                ErrorKind::Unavailable,
                format!("esi include failed: {reason}"),
            ),
        }
    }

    /// What a finished piece sends: its bytes, the stream's error, or nothing (an empty piece, or an
    /// include that failed and is omitted).
    fn deliver(&mut self, result: Result<Bytes, Failure>) -> Option<Result<Bytes, Error>> {
        match result {
            Ok(bytes) if bytes.is_empty() => None,
            Ok(bytes) => Some(Ok(bytes)),
            Err(Failure::Include(_))
                if self.assembler.shared.settings.on_failure == OnFailure::Omit =>
            {
                if let Some(span) = &self.place.page.span {
                    span.event("esi.include_failed");
                }
                None
            }
            Err(failure) => Some(Err(self.error(failure))),
        }
    }

    /// The next piece of output, in document order.
    async fn next(mut self) -> Option<(Result<Bytes, Error>, Self)> {
        if self.failed {
            return None;
        }
        loop {
            // What is ready goes out first: the pieces ahead of the queue, then the queue's head.
            if let Some(result) = self.ready.pop_front() {
                if let Some(item) = self.deliver(result) {
                    return Some((item, self));
                }
                continue;
            }
            if let Some(Some(result)) = self.queue.next().now_or_never() {
                if let Some(item) = self.deliver(result) {
                    return Some((item, self));
                }
                continue;
            }
            let Some(template) = self.template.as_mut() else {
                // The template is all read: wait for the rest of the queue, then end (with the template's
                // error, if it had one).
                let Some(result) = self.queue.next().await else {
                    let error = self.error_after.take()?;
                    let error = self.error(Failure::Template(error));
                    return Some((Err(error), self));
                };
                if let Some(item) = self.deliver(result) {
                    return Some((item, self));
                }
                continue;
            };
            // Wait for whichever comes first: more template, or the head of the queue.
            let step = {
                let head = self.queue.next();
                let more = template.next();
                match select(more, head).await {
                    Either::Left((chunk, _)) => Step::Template(chunk),
                    Either::Right((Some(done), _)) => Step::Output(done),
                    Either::Right((None, more)) => Step::Template(more.await),
                }
            };
            match step {
                Step::Template(Some(Ok(chunk))) => {
                    if let Err(e) = self.schedule(Some(chunk)) {
                        self.template = None;
                        self.error_after = Some(e);
                    }
                }
                Step::Template(Some(Err(e))) => {
                    self.failed = true;
                    return Some((Err(e), self));
                }
                Step::Template(None) => {
                    self.template = None;
                    if let Err(e) = self.schedule(None) {
                        self.error_after = Some(e);
                    }
                }
                // The queue's head finished while waiting: nothing is ahead of it (`ready` was empty).
                Step::Output(result) => self.ready.push_front(result),
            }
        }
    }
}

enum Step {
    Template(Option<Result<Bytes, Error>>),
    Output(Result<Bytes, Failure>),
}

/// A host as compared against the page's and the allow-list: lower case, without the trailing dot of a
/// fully qualified name (`Shop.Example.` is `shop.example`).
fn normalized_host(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// Resolves an include's `src` against the page's URL as RFC 3986 §5.2 says, for the references a
/// fragment can be: absolute (`https://host/x`: http or https only), network-path (`//host/x`: the
/// page's scheme, that host), absolute-path (`/x`) and relative-path (`x`, `../x`: merged with the
/// page's directory, dot segments removed). Anything else, other schemes (`javascript:`, `data:`)
/// included, is refused before any fetch.
fn resolve_reference(src: &str, page: &Uri) -> Result<Uri, String> {
    let bad = || "src is not a url".to_owned();
    let src = src.trim();
    if src.is_empty() {
        return Err(bad());
    }
    // A scheme is letters, digits, `+ - .` before the first `:`, if no `/ ? #` comes first.
    let scheme_end = src
        .find([':', '/', '?', '#'])
        .filter(|&i| src.as_bytes()[i] == b':');
    let (scheme, authority, rest) = if let Some(end) = scheme_end {
        let scheme = &src[..end];
        let valid = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        if !valid {
            return Err(bad());
        }
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err("only http and https fragments".into());
        }
        let after = src[end + 1..].strip_prefix("//").ok_or_else(bad)?;
        let split = after.find(['/', '?', '#']).unwrap_or(after.len());
        (scheme, after[..split].to_owned(), after[split..].to_owned())
    } else if let Some(after) = src.strip_prefix("//") {
        let split = after.find(['/', '?', '#']).unwrap_or(after.len());
        (
            page.scheme_str().unwrap_or("https").to_owned(),
            after[..split].to_owned(),
            after[split..].to_owned(),
        )
    } else {
        let authority = page
            .authority()
            .map(|a| a.as_str().to_owned())
            .ok_or_else(bad)?;
        let scheme = page.scheme_str().unwrap_or("https").to_owned();
        let rest = if src.starts_with('/') {
            src.to_owned()
        } else {
            // Relative path: the page's directory, then the reference.
            let base = page.path();
            let directory = &base[..base.rfind('/').map_or(0, |i| i + 1)];
            let directory = if directory.is_empty() { "/" } else { directory };
            format!("{directory}{src}")
        };
        (scheme, authority, rest)
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(bad());
    }
    // Hosts compare without case or the trailing dot of a fully qualified name.
    let authority = match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') && port.bytes().all(|b| b.is_ascii_digit()) => {
            format!("{}:{port}", normalized_host(host))
        }
        _ => normalized_host(&authority),
    };
    // Fragments never reach a server; the path loses its dot segments.
    let rest = rest.split('#').next().unwrap_or("");
    let (path, query) = match rest.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (rest, None),
    };
    let path = remove_dot_segments(if path.is_empty() { "/" } else { path });
    let target = match query {
        Some(query) => format!("{path}?{query}"),
        None => path,
    };
    Uri::builder()
        .scheme(scheme.as_str())
        .authority(authority.as_str())
        .path_and_query(target.as_str())
        .build()
        .map_err(|_| bad())
}

/// RFC 3986 §5.2.4, on an absolute path.
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    for (i, segment) in segments.iter().enumerate() {
        match *segment {
            "." => {
                if i == last {
                    out.push("");
                }
            }
            ".." => {
                out.pop();
                if i == last {
                    out.push("");
                }
            }
            other => out.push(other),
        }
    }
    format!("/{}", out.join("/"))
}

#[cfg(test)]
mod resolve_tests {
    use super::{normalized_host, remove_dot_segments, resolve_reference};
    use http::Uri;

    #[test]
    fn references_resolve_as_rfc_3986_says() {
        let page = Uri::from_static("https://shop.example/catalog/index.html?x=1");
        let ok = |src: &str| resolve_reference(src, &page).map(|u| u.to_string());
        assert_eq!(ok("/frag").unwrap(), "https://shop.example/frag");
        assert_eq!(ok("frag").unwrap(), "https://shop.example/catalog/frag");
        assert_eq!(
            ok("../a/./b?q=1#top").unwrap(),
            "https://shop.example/a/b?q=1"
        );
        assert_eq!(ok("//cdn.example/x").unwrap(), "https://cdn.example/x");
        assert_eq!(
            ok("HTTP://Other.Example/y").unwrap(),
            "http://other.example/y"
        );
        for refused in [
            "javascript:alert(1)",
            "JavaScript:alert(1)",
            "data:text/html,hi",
            "file:///etc/passwd",
            "",
            "http:no-slashes",
            "https://user@evil.example/",
            "//",
        ] {
            assert!(ok(refused).is_err(), "{refused:?} must be refused");
        }
        // Not a scheme: a colon after a slash is part of a relative path.
        assert_eq!(ok("a/b:c").unwrap(), "https://shop.example/catalog/a/b:c");
        assert_eq!(normalized_host("Shop.Example."), "shop.example");
        assert_eq!(
            ok("https://shop.example.:8443/z").unwrap(),
            "https://shop.example:8443/z"
        );
        assert_eq!(remove_dot_segments("/a/b/../../../c/."), "/c/");
    }
}
