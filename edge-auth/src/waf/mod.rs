//! A small, readable WAF step: SQL injection, cross-site scripting and path traversal, over the path,
//! the query, headers and the body, with bounded inspection.
//!
//! | rule id | category | looks for |
//! |---|---|---|
//! | `sqli-tautology` | SQL injection | a comparison of two literals after `OR`/`AND`, `WHEN` or as a function's argument: `' or 'a'='a`, `1 and 5=5`, `CASE WHEN 1=1`, `IF(1=1,…)` |
//! | `sqli-union-select` | SQL injection | `UNION [ALL] SELECT`, through comments and `/*!…*/` |
//! | `sqli-stacked-query` | SQL injection | a statement after `;` (`DROP`, `EXEC`, `SELECT … FROM` …) |
//! | `sqli-comment-breakout` | SQL injection | a string closed by the input and the rest commented out: `admin'--` |
//! | `sqli-attack-function` | SQL injection | sleeps and error oracles: `SLEEP(`, `BENCHMARK(`, `WAITFOR DELAY`, `EXTRACTVALUE(` … |
//! | `sqli-blind-oracle` | SQL injection | `AND ASCII(SUBSTRING(…))`, `OR EXISTS(…)`, `OR CASE …`, `RLIKE (SELECT …)` |
//! | `sqli-schema-probe` | SQL injection | `information_schema`, `@@version`, `INTO OUTFILE` … |
//! | `xss-active-tag` | XSS | `<script`, `<iframe`, `<object`, `<embed`, `<base` … |
//! | `xss-event-handler` | XSS | an `on…=` attribute inside a tag, or a known DOM event attribute breaking out of one (`" onfocus=…`) |
//! | `xss-script-breakout` | XSS | a script sink (`alert(`, `eval(` …) right after a quote or `;`: leaving a JS string |
//! | `xss-script-url` | XSS | `javascript:`/`vbscript:`/`data:text/html` as a value or in a tag, `srcdoc`, CSS `expression(` |
//! | `traversal-dot-dot` | path traversal | a `..` path segment (also `..;`, and `\` as a separator) |
//! | `traversal-sensitive-file` | path traversal | `/etc/passwd`, `win.ini`, `/.git/`, `/.env` … |
//! | `traversal-nul-byte` | path traversal | a NUL byte |
//! | `traversal-overlong-encoding` | path traversal | overlong UTF-8 for `.`/`/` (`%c0%ae`) |
//! | `double-encoding` | evasion | a path that needed more than one percent-decoding round (log-only by default) |
//!
//! Every value is decoded once, in [`decode`], before any rule sees it: percent-decoding until stable
//! (double encoding included), `+` as space in queries and forms, HTML character references for the XSS
//! rules. Rules run on the path (each segment, then the whole path, so `/**/` between segments hides
//! nothing), every query parameter name and value, header values (except `Authorization`, whose opaque
//! token is not text), each cookie's name and value on its own, and the body when it is a
//! form, JSON (each string, key or value), XML (each text node, CDATA section and attribute value,
//! entities decoded), `multipart/form-data` (each field's name and value, each file's name, and a file's
//! content when its type is text) or text. Inspection is bounded ([`InspectLimits`]), and by
//! default a request with a part beyond the limits (a query value past 8 KiB, a body past 256 KiB,
//! more fields than are inspected) is refused rather than inspected only in part: otherwise padding a
//! value past the limit would carry an injection through ([`WafRules::block_oversize`] turns that off).
//! That holds for uploads too: a `multipart/form-data` body past `max_body_len` is refused by default, so
//! a route that takes large files raises the limit, or turns the refusal off and accepts that what
//! follows the first `max_body_len` bytes is not inspected.
//! Strings inside a body are bounded by the body's limit, not the per-value one.
//!
//! Each rule blocks or only logs ([`Mode`]); a [`Verdict`] lists every match, and its
//! [`penalty`](Verdict::penalty) can feed a rate limiter so repeat offenders are cut off (see
//! `WafLayer::penalize` with feature `tower`).

mod body;
#[cfg(feature = "crs")]
#[cfg_attr(docsrs, doc(cfg(feature = "crs")))]
pub mod crs;
pub mod decode;
#[cfg(feature = "tower")]
pub mod layer;
mod sqli;
mod traversal;
mod xss;

use std::fmt;

use http::HeaderMap;

/// A set of bytes, for the rules' first question of a value: does it hold any byte that could start
/// what the rule looks for? One table lookup per byte, worked out at compile time.
pub(crate) struct ByteSet([bool; 256]);

impl ByteSet {
    pub(crate) const fn new(bytes: &[u8]) -> Self {
        let mut set = [false; 256];
        let mut i = 0;
        while i < bytes.len() {
            set[bytes[i] as usize] = true;
            i += 1;
        }
        Self(set)
    }

    /// Whether `text` holds any byte of the set.
    pub(crate) fn any_in(&self, text: &[u8]) -> bool {
        text.iter().any(|&b| self.0[usize::from(b)])
    }
}

/// A fixed list of at most 32 strings to look for, with the words each byte can start worked out once (at
/// compile time for the rules' lists).
pub(crate) struct Needles<'a> {
    words: &'a [&'a str],
    /// For each byte, the words that start with it (bit `i`: `words[i]`).
    starting_with: [u32; 256],
}

impl<'a> Needles<'a> {
    pub(crate) const fn new(words: &'a [&'a str]) -> Self {
        assert!(words.len() <= 32, "at most 32 needles");
        let mut starting_with = [0; 256];
        let mut i = 0;
        while i < words.len() {
            if let Some(&first) = words[i].as_bytes().first() {
                starting_with[first as usize] |= 1 << i;
            }
            i += 1;
        }
        Self {
            words,
            starting_with,
        }
    }

    pub(crate) fn words(&self) -> &'a [&'a str] {
        self.words
    }
}

/// Whether `text` holds any of `needles` (each non-empty).
///
/// The rules ask this of every value with a dozen names at a time, and most values are short (a header, a
/// query parameter): there, one pass that rules out most positions with one lookup, and compares the rest
/// only with the words starting with the byte there, is several times cheaper than a substring search
/// per needle, each with its own set-up. Past [`SCAN_UP_TO`] bytes the searches' linear-time skipping
/// wins, so long values take them.
pub(crate) fn contains_any(text: &str, needles: &Needles<'_>) -> bool {
    if text.len() > SCAN_UP_TO {
        return needles.words.iter().any(|needle| text.contains(needle));
    }
    let bytes = text.as_bytes();
    (0..bytes.len()).any(|at| {
        let rest = bytes.get(at..).unwrap_or_default();
        let mut candidates = rest
            .first()
            .map_or(0, |&b| needles.starting_with[usize::from(b)]);
        while candidates != 0 {
            let word = needles.words.get(candidates.trailing_zeros() as usize);
            candidates &= candidates - 1;
            // Compared in line: a call to `memcmp` per candidate costs more than these few bytes.
            if let Some(needle) = word.map(|word| word.as_bytes()) {
                if rest.len() >= needle.len() && rest.iter().zip(needle).all(|(a, b)| a == b) {
                    return true;
                }
            }
        }
        false
    })
}

/// The longest value [`contains_any`] scans byte by byte.
const SCAN_UP_TO: usize = 256;

#[cfg(feature = "tower")]
pub use layer::{Waf, WafLayer};

/// What a rule protects against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Category {
    /// SQL injection.
    SqlInjection,
    /// Cross-site scripting.
    CrossSiteScripting,
    /// Path traversal and file disclosure.
    PathTraversal,
    /// Encoding tricks that only serve to evade filters.
    Evasion,
}

/// What a matching rule does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Mode {
    /// Refuse the request.
    Block,
    /// Let it through, but record the match in the [`Verdict`].
    LogOnly,
    /// Do not run the rule.
    Off,
}

/// Where in the request a rule matched.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Location {
    /// The path.
    Path,
    /// A query parameter (its name).
    Query(String),
    /// A header (its name).
    Header(String),
    /// A cookie (its name).
    Cookie(String),
    /// The body.
    Body,
}

/// One rule that matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Match {
    /// The rule's id (see the table in the [module docs](self)).
    pub rule: &'static str,
    /// Its category.
    pub category: Category,
    /// Where it matched.
    pub location: Location,
    /// What the rule was set to do.
    pub mode: Mode,
}

/// The WAF's findings for one request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Every match of the built-in rules, in inspection order.
    pub matches: Vec<Match>,
    /// Some inspected part was larger than the limits allow and [`WafRules::block_oversize`] is on (with
    /// the CRS profile: the body was larger than its limit).
    pub oversize: bool,
    /// With the CRS profile ([`WafLayer::crs`](crate::waf::WafLayer::crs)): the rule set's evaluation,
    /// the audit record (matched rule ids, messages, logged data, the anomaly score).
    #[cfg(feature = "crs")]
    #[cfg_attr(docsrs, doc(cfg(feature = "crs")))]
    pub crs: Option<crs::Evaluation>,
}

impl Verdict {
    /// Whether the request must be refused.
    #[must_use]
    pub fn is_blocked(&self) -> bool {
        self.oversize || self.matches.iter().any(|m| m.mode == Mode::Block) || self.crs_blocked()
    }

    /// Whether no rule matched.
    #[must_use]
    pub fn is_clean(&self) -> bool {
        self.matches.is_empty() && self.crs_matches() == 0
    }

    /// How many units a rate limiter for offenders should charge: one per match of the built-in rules
    /// (log-only ones too); with CRS, whose rules also note what is merely unusual (a numeric `Host` is a
    /// warning), one for a request with an attack signature (a match of severity critical or worse),
    /// whether or not its score reached the threshold.
    #[must_use]
    pub fn penalty(&self) -> u32 {
        u32::try_from(self.matches.len()).unwrap_or(u32::MAX) + u32::from(self.crs_attack())
    }

    /// The first rule that matched, for logs and span attributes.
    #[must_use]
    pub fn first_rule(&self) -> Option<std::borrow::Cow<'static, str>> {
        if let Some(m) = self.matches.first() {
            return Some(std::borrow::Cow::Borrowed(m.rule));
        }
        #[cfg(feature = "crs")]
        if let Some(m) = self.crs.as_ref().and_then(|e| e.matches.first()) {
            return Some(std::borrow::Cow::Owned(m.id.to_string()));
        }
        None
    }

    #[cfg(feature = "crs")]
    fn crs_blocked(&self) -> bool {
        self.crs.as_ref().is_some_and(crs::Evaluation::is_blocked)
    }

    #[cfg(not(feature = "crs"))]
    #[allow(clippy::unused_self)]
    fn crs_blocked(&self) -> bool {
        false
    }

    #[cfg(feature = "crs")]
    fn crs_attack(&self) -> bool {
        self.crs
            .as_ref()
            .is_some_and(|e| e.matches.iter().any(|m| m.severity.is_some_and(|s| s <= 2)))
    }

    #[cfg(not(feature = "crs"))]
    #[allow(clippy::unused_self)]
    fn crs_attack(&self) -> bool {
        false
    }

    #[cfg(feature = "crs")]
    fn crs_matches(&self) -> usize {
        self.crs.as_ref().map_or(0, |e| e.matches.len())
    }

    #[cfg(not(feature = "crs"))]
    #[allow(clippy::unused_self)]
    fn crs_matches(&self) -> usize {
        0
    }
}

/// How much of a request is inspected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct InspectLimits {
    /// Longest value (path, parameter, header, body string) inspected, in bytes.
    pub max_value_len: usize,
    /// Largest body inspected, in bytes.
    pub max_body_len: usize,
    /// Most query parameters, headers or body fields inspected.
    pub max_fields: usize,
}

impl Default for InspectLimits {
    fn default() -> Self {
        Self {
            max_value_len: 8 * 1024,
            max_body_len: 256 * 1024,
            max_fields: 256,
        }
    }
}

struct Rule {
    id: &'static str,
    category: Category,
    mode: Mode,
}

const RULE_IDS: [(&str, Category, Mode); 16] = [
    ("sqli-tautology", Category::SqlInjection, Mode::Block),
    ("sqli-union-select", Category::SqlInjection, Mode::Block),
    ("sqli-stacked-query", Category::SqlInjection, Mode::Block),
    ("sqli-comment-breakout", Category::SqlInjection, Mode::Block),
    ("sqli-attack-function", Category::SqlInjection, Mode::Block),
    ("sqli-blind-oracle", Category::SqlInjection, Mode::Block),
    ("sqli-schema-probe", Category::SqlInjection, Mode::Block),
    ("xss-active-tag", Category::CrossSiteScripting, Mode::Block),
    (
        "xss-event-handler",
        Category::CrossSiteScripting,
        Mode::Block,
    ),
    ("xss-script-url", Category::CrossSiteScripting, Mode::Block),
    (
        "xss-script-breakout",
        Category::CrossSiteScripting,
        Mode::Block,
    ),
    ("traversal-dot-dot", Category::PathTraversal, Mode::Block),
    (
        "traversal-sensitive-file",
        Category::PathTraversal,
        Mode::Block,
    ),
    ("traversal-nul-byte", Category::PathTraversal, Mode::Block),
    (
        "traversal-overlong-encoding",
        Category::PathTraversal,
        Mode::Block,
    ),
    ("double-encoding", Category::Evasion, Mode::LogOnly),
];

/// The rule set with its modes and limits. Cheap to share behind an `Arc`.
///
/// ```
/// use edge_auth::waf::{Mode, WafRules};
///
/// let waf = WafRules::new().with_mode("xss-script-url", Mode::LogOnly);
/// let request = http::Request::get("/search?q=%27%20or%201%3D1--").body(()).unwrap();
/// let verdict = waf.inspect(request.uri(), request.headers(), None);
/// assert!(verdict.is_blocked());
/// assert_eq!(verdict.matches[0].rule, "sqli-tautology");
/// assert!(!waf.inspect(&"/search?q=O%27Brien".parse().unwrap(), &http::HeaderMap::new(), None).is_blocked());
/// ```
pub struct WafRules {
    rules: Vec<Rule>,
    limits: InspectLimits,
    block_oversize: bool,
}

impl Default for WafRules {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for WafRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WafRules")
            .field(
                "rules",
                &self
                    .rules
                    .iter()
                    .map(|r| (r.id, r.mode))
                    .collect::<Vec<_>>(),
            )
            .field("limits", &self.limits)
            .field("block_oversize", &self.block_oversize)
            .finish()
    }
}

/// A body the WAF knows how to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BodyKind {
    Form,
    Json,
    Xml,
    Multipart,
    Text,
    Opaque,
}

impl BodyKind {
    /// From `Content-Type` (none: text).
    pub(crate) fn of(headers: &HeaderMap) -> Self {
        let content_type = headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if content_type.starts_with("application/x-www-form-urlencoded") {
            Self::Form
        } else if content_type.starts_with("application/json") || content_type.ends_with("+json") {
            Self::Json
        } else if content_type.starts_with("multipart/form-data") {
            Self::Multipart
        } else if content_type.starts_with("application/xml")
            || content_type.starts_with("text/xml")
            || content_type
                .split(';')
                .next()
                .is_some_and(|t| t.trim_end().ends_with("+xml"))
        {
            Self::Xml
        } else if content_type.starts_with("text/") || content_type.is_empty() {
            Self::Text
        } else {
            Self::Opaque
        }
    }
}

impl WafRules {
    /// Every rule in its default mode (all block, except `double-encoding`, which logs).
    #[must_use]
    pub fn new() -> Self {
        Self {
            rules: RULE_IDS
                .iter()
                .map(|&(id, category, mode)| Rule { id, category, mode })
                .collect(),
            limits: InspectLimits::default(),
            block_oversize: true,
        }
    }

    /// Sets one rule's mode (unknown ids are ignored; [`WafRules::rule_ids`] lists the known ones).
    #[must_use]
    pub fn with_mode(mut self, rule: &str, mode: Mode) -> Self {
        for r in self.rules.iter_mut().filter(|r| r.id == rule) {
            r.mode = mode;
        }
        self
    }

    /// Sets the mode of every rule in `category`.
    #[must_use]
    pub fn with_category_mode(mut self, category: Category, mode: Mode) -> Self {
        for r in self.rules.iter_mut().filter(|r| r.category == category) {
            r.mode = mode;
        }
        self
    }

    /// Sets the inspection limits.
    #[must_use]
    pub fn with_limits(mut self, limits: InspectLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Refuses requests with a part beyond the limits instead of inspecting only its beginning (the
    /// default: `false` lets such a request through with only its beginning inspected).
    #[must_use]
    pub fn block_oversize(mut self, block: bool) -> Self {
        self.block_oversize = block;
        self
    }

    /// The inspection limits.
    #[must_use]
    pub fn limits(&self) -> &InspectLimits {
        &self.limits
    }

    /// The ids of every rule.
    pub fn rule_ids(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.rules.iter().map(|r| r.id)
    }

    /// Inspects a request: its URI, headers and (when given) the first bytes of its body.
    #[must_use]
    pub fn inspect(&self, uri: &http::Uri, headers: &HeaderMap, body: Option<&[u8]>) -> Verdict {
        let mut verdict = Verdict::default();
        // One buffer for every decoded value of the request (a form's names get their own).
        let buf = &mut String::with_capacity(256);
        let path = uri.path();
        self.check_path(path, &mut verdict, buf);
        if let Some(query) = uri.query() {
            self.check_form(
                query.as_bytes(),
                self.limits.max_value_len,
                &mut verdict,
                buf,
                |name| Location::Query(name.to_owned()),
            );
        }
        if headers.len() > self.limits.max_fields {
            verdict.oversize |= self.block_oversize;
        }
        let value_limit = self.limits.max_value_len;
        for (name, value) in headers.iter().take(self.limits.max_fields) {
            if name == http::header::AUTHORIZATION {
                continue;
            }
            if name == http::header::COOKIE {
                // `name=value; …`: each cookie on its own, under its name.
                let cookies = value
                    .as_bytes()
                    .split(|&b| b == b';')
                    .map(<[u8]>::trim_ascii);
                self.check_pairs(cookies, false, value_limit, &mut verdict, buf, |name| {
                    Location::Cookie(name.to_owned())
                });
                continue;
            }
            let location = || Location::Header(name.as_str().to_owned());
            self.check_value(
                value.as_bytes(),
                value_limit,
                false,
                &mut verdict,
                buf,
                location,
            );
        }
        if let Some(body) = body {
            self.check_body(headers, body, &mut verdict, buf);
        }
        verdict
    }

    fn mode(&self, id: &str) -> Mode {
        self.rules
            .iter()
            .find(|r| r.id == id)
            .map_or(Mode::Off, |r| r.mode)
    }

    fn record(&self, id: &'static str, location: Location, verdict: &mut Verdict) {
        let mode = self.mode(id);
        if mode == Mode::Off {
            return;
        }
        let category = self
            .rules
            .iter()
            .find(|r| r.id == id)
            .map_or(Category::Evasion, |r| r.category);
        verdict.matches.push(Match {
            rule: id,
            category,
            location,
            mode,
        });
    }

    /// Bounds a value to `limit` bytes, marking the verdict oversize when it was cut.
    fn bounded<'a>(&self, value: &'a [u8], limit: usize, verdict: &mut Verdict) -> &'a [u8] {
        if value.len() > limit {
            verdict.oversize |= self.block_oversize;
            value.get(..limit).unwrap_or(value)
        } else {
            value
        }
    }

    fn check_path(&self, path: &str, verdict: &mut Verdict, buf: &mut String) {
        let raw = self.bounded(path.as_bytes(), self.limits.max_value_len, verdict);
        let (double_encoded, overlong) = decode::decode_into(raw, false, buf);
        if double_encoded {
            self.record("double-encoding", Location::Path, verdict);
        }
        if let Some(id) = traversal::detect(buf, overlong, true) {
            self.record(id, Location::Path, verdict);
        }
        // Injection in a path segment (`/products/1' or '1'='1`), or across segments
        // (`/1/**/union/**/select/1`).
        let found = buf
            .split('/')
            .filter(|s| !s.is_empty())
            .find_map(|segment| sqli::detect(segment).or_else(|| xss::detect(segment)))
            .or_else(|| sqli::detect(buf).or_else(|| xss::detect(buf)));
        if let Some(id) = found {
            self.record(id, Location::Path, verdict);
        }
    }

    fn check_value(
        &self,
        raw: &[u8],
        limit: usize,
        plus_is_space: bool,
        verdict: &mut Verdict,
        buf: &mut String,
        location: impl Fn() -> Location,
    ) {
        let raw = self.bounded(raw, limit, verdict);
        let (_, overlong) = decode::decode_into(raw, plus_is_space, buf);
        self.check_text(buf, overlong, verdict, location);
    }

    fn check_text(
        &self,
        text: &str,
        overlong: bool,
        verdict: &mut Verdict,
        location: impl Fn() -> Location,
    ) {
        let found = sqli::detect(text)
            .or_else(|| xss::detect(text))
            .or_else(|| traversal::detect(text, overlong, false));
        if let Some(id) = found {
            self.record(id, location(), verdict);
        }
    }

    /// `name=value&…`: each name and value decoded on its own, so encoded `&` and `=` stay data.
    fn check_form(
        &self,
        form: &[u8],
        limit: usize,
        verdict: &mut Verdict,
        buf: &mut String,
        location: impl Fn(&str) -> Location,
    ) {
        let pairs = form.split(|&b| b == b'&');
        self.check_pairs(pairs, true, limit, verdict, buf, location);
    }

    /// `name=value` pairs (a form's, a `Cookie` header's): each name and value decoded and checked on its
    /// own, the match labelled by `location` of the name; at most `max_fields` of them.
    fn check_pairs<'p>(
        &self,
        pairs: impl Iterator<Item = &'p [u8]> + Clone,
        plus_is_space: bool,
        limit: usize,
        verdict: &mut Verdict,
        buf: &mut String,
        location: impl Fn(&str) -> Location,
    ) {
        let pairs = pairs.filter(|p| !p.is_empty());
        if pairs.clone().nth(self.limits.max_fields).is_some() {
            verdict.oversize |= self.block_oversize;
        }
        let name = &mut String::new();
        for pair in pairs.take(self.limits.max_fields) {
            let (raw_name, value) = match pair.iter().position(|&b| b == b'=') {
                Some(eq) => (&pair[..eq], &pair[eq + 1..]),
                None => (pair, &[][..]),
            };
            let (_, overlong) =
                decode::decode_into(self.bounded(raw_name, limit, verdict), plus_is_space, name);
            let name = &*name;
            let label = || location(name);
            self.check_text(name, overlong, verdict, label);
            self.check_value(value, limit, plus_is_space, verdict, buf, label);
        }
    }

    fn check_body(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        verdict: &mut Verdict,
        buf: &mut String,
    ) {
        // Strings inside the body are bounded by the body's limit, not the per-value one.
        let limit = self.limits.max_body_len;
        let body = if body.len() > self.limits.max_body_len {
            verdict.oversize |= self.block_oversize;
            body.get(..self.limits.max_body_len).unwrap_or(body)
        } else {
            body
        };
        match BodyKind::of(headers) {
            BodyKind::Form => self.check_form(body, limit, verdict, buf, |_| Location::Body),
            BodyKind::Json => match serde_json::from_slice::<serde_json::Value>(body) {
                Ok(value) => {
                    let mut budget = self.limits.max_fields;
                    self.check_json(&value, verdict, buf, &mut budget);
                }
                // Cut off by the limit, or not JSON at all: read it as text.
                Err(_) => self.check_value(body, limit, false, verdict, buf, || Location::Body),
            },
            BodyKind::Xml => match std::str::from_utf8(body) {
                Ok(document) => {
                    let strings = body::xml_strings(document);
                    if strings.len() > self.limits.max_fields {
                        verdict.oversize |= self.block_oversize;
                    }
                    for text in strings.iter().take(self.limits.max_fields) {
                        self.check_value(text.as_bytes(), limit, false, verdict, buf, || {
                            Location::Body
                        });
                    }
                }
                Err(_) => self.check_value(body, limit, false, verdict, buf, || Location::Body),
            },
            BodyKind::Multipart => {
                let boundary = headers
                    .get(http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(body::boundary);
                let Some(boundary) = boundary else {
                    // No boundary to split on: read it as text.
                    return self.check_value(body, limit, false, verdict, buf, || Location::Body);
                };
                // Each field's name and value, each file's name; a binary file's content is not text.
                for part in body::multipart_parts(body, boundary, self.limits.max_fields) {
                    let texts = [
                        Some(part.name.as_bytes()),
                        part.filename.map(str::as_bytes),
                        part.value,
                    ];
                    for text in texts.into_iter().flatten() {
                        self.check_value(text, limit, false, verdict, buf, || Location::Body);
                    }
                }
            }
            BodyKind::Text => self.check_value(body, limit, false, verdict, buf, || Location::Body),
            BodyKind::Opaque => {}
        }
    }

    fn check_json(
        &self,
        value: &serde_json::Value,
        verdict: &mut Verdict,
        buf: &mut String,
        budget: &mut usize,
    ) {
        use serde_json::Value;
        let limit = self.limits.max_body_len;
        if *budget == 0 {
            verdict.oversize |= self.block_oversize;
            return;
        }
        match value {
            Value::String(s) => {
                *budget -= 1;
                self.check_value(s.as_bytes(), limit, false, verdict, buf, || Location::Body);
            }
            Value::Array(items) => {
                for item in items {
                    self.check_json(item, verdict, buf, budget);
                }
            }
            Value::Object(members) => {
                for (key, item) in members {
                    *budget = budget.saturating_sub(1);
                    self.check_value(key.as_bytes(), limit, false, verdict, buf, || {
                        Location::Body
                    });
                    self.check_json(item, verdict, buf, budget);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The scan answers what a substring search per needle would, short values and long.
        #[test]
        fn contains_any_is_any_contains(
            text in "[a-c/.é ]{0,300}",
            needles in proptest::collection::vec("[a-c/.é]{1,4}", 1..6),
        ) {
            let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
            proptest::prop_assert_eq!(
                contains_any(&text, &Needles::new(&needles)),
                needles.iter().any(|needle| text.contains(needle))
            );
        }
    }

    fn verdict(uri: &str, headers: &[(&str, &str)], body: Option<&str>) -> Verdict {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        WafRules::new().inspect(&uri.parse().unwrap(), &map, body.map(str::as_bytes))
    }

    #[test]
    fn each_part_of_a_request_is_inspected() {
        assert!(verdict("/a?q=1%27%20union%20select%201--", &[], None).is_blocked());
        assert!(
            verdict("/a?q=1%2527%20union%20select%201--", &[], None).is_blocked(),
            "double encoded"
        );
        assert!(verdict("/static/..%2f..%2fetc/passwd", &[], None).is_blocked());
        assert!(verdict("/static/%252e%252e/%252e%252e/etc/passwd", &[], None).is_blocked());
        assert!(verdict("/", &[("user-agent", "<script>alert(1)</script>")], None).is_blocked());
        assert!(
            !verdict("/", &[("authorization", "Bearer ' or 1=1--")], None).is_blocked(),
            "credentials are not text"
        );
        let form = [("content-type", "application/x-www-form-urlencoded")];
        assert!(verdict("/login", &form, Some("user=admin%27--&pass=x")).is_blocked());
        let json = [("content-type", "application/json")];
        assert!(
            verdict(
                "/c",
                &json,
                Some(r#"{"comment":"<img src=x onerror=alert(1)>"}"#)
            )
            .is_blocked()
        );
        assert!(
            !verdict(
                "/c",
                &json,
                Some(r#"{"name":"O'Brien","size":"select your size"}"#)
            )
            .is_blocked()
        );
        let v = verdict(
            "/a?name=O%27Brien&q=select+your+size&sort=price-asc",
            &[],
            None,
        );
        assert!(v.matches.is_empty(), "{v:?}");
    }

    #[test]
    fn cookies_are_read_one_by_one_and_the_path_as_a_whole() {
        let cookie = |value: &str| verdict("/", &[("cookie", value)], None);
        let attack = cookie("theme=dark; session=1%27%20or%20%271%27%3D%271");
        assert!(attack.is_blocked());
        assert_eq!(
            attack.matches[0].location,
            Location::Cookie("session".to_owned())
        );
        assert!(cookie("pref=<script>alert(1)</script>").is_blocked());
        for benign in [
            "session=abc123; theme=dark; _ga=GA1.2.1234567.1700000000",
            "token=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI0MiJ9.c2lnbmF0dXJl; lang=en-GB",
            "cart=%7B%22items%22%3A%5B1%2C2%5D%7D; consent=yes",
            "a=b==; flag; empty=",
        ] {
            let v = cookie(benign);
            assert!(v.matches.is_empty(), "{benign}: {v:?}");
        }
        assert!(
            verdict("/products/1/**/union/**/select/1,2", &[], None).is_blocked(),
            "a comment between segments hides nothing"
        );
        for path in [
            "/api/v1/items/42",
            "/blog/2026/12/rock-n-roll",
            "/a-b/c_d/e.f",
        ] {
            let v = verdict(path, &[], None);
            assert!(v.matches.is_empty(), "{path}: {v:?}");
        }
    }

    #[test]
    fn xml_and_multipart_bodies_are_read_string_by_string() {
        let xml = [("content-type", "application/soap+xml; charset=utf-8")];
        let attack = r#"<q><id>1' union select password from users--</id></q>"#;
        assert!(verdict("/soap", &xml, Some(attack)).is_blocked());
        let encoded = r#"<q note="&lt;script&gt;alert(1)&lt;/script&gt;"/>"#;
        assert!(verdict("/x", &[("content-type", "text/xml")], Some(encoded)).is_blocked());
        let benign = r#"<?xml version="1.0"?><order id="7"><name>O'Brien</name><note>select your size</note></order>"#;
        let v = verdict("/x", &xml, Some(benign));
        assert!(v.matches.is_empty(), "{v:?}");

        let multipart = [("content-type", "multipart/form-data; boundary=b0undary")];
        let form = |parts: &[(&str, &str)]| {
            let mut body = String::new();
            for (disposition, content) in parts {
                body.push_str(&format!(
                    "--b0undary\r\nContent-Disposition: form-data; {disposition}\r\n\r\n{content}\r\n"
                ));
            }
            body + "--b0undary--\r\n"
        };
        let field = form(&[("name=\"q\"", "1' or '1'='1")]);
        assert!(verdict("/up", &multipart, Some(&field)).is_blocked());
        let file_name = form(&[("name=\"f\"; filename=\"../../etc/passwd\"", "x")]);
        assert!(verdict("/up", &multipart, Some(&file_name)).is_blocked());
        let ordinary = form(&[
            ("name=\"title\"", "Rock 'n' roll"),
            ("name=\"note\"", "select your size"),
            ("name=\"photo\"; filename=\"holiday.jpg\"", "binary"),
        ]);
        let v = verdict("/up", &multipart, Some(&ordinary));
        assert!(v.matches.is_empty(), "{v:?}");
        // A binary upload's bytes are not text: only its name is read.
        let upload = "--b0undary\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.bin\"\r\n\
                      Content-Type: application/octet-stream\r\n\r\n1' or '1'='1\r\n--b0undary--\r\n";
        let v = verdict("/up", &multipart, Some(upload));
        assert!(v.matches.is_empty(), "{v:?}");
    }

    #[test]
    fn modes_limits_and_penalties() {
        let waf = WafRules::new().with_category_mode(Category::SqlInjection, Mode::LogOnly);
        let v = waf.inspect(
            &"/?q=1%20or%201=1".parse().unwrap(),
            &HeaderMap::new(),
            None,
        );
        assert!(!v.is_blocked());
        assert_eq!(v.penalty(), 1);
        assert_eq!(v.matches[0].location, Location::Query("q".to_owned()));
        let off = WafRules::new().with_mode("sqli-tautology", Mode::Off);
        assert!(
            off.inspect(
                &"/?q=1%20or%201=1".parse().unwrap(),
                &HeaderMap::new(),
                None
            )
            .matches
            .is_empty()
        );
        // Padding past the inspected length must not carry an injection through: refused by default.
        let padded = format!("/?q={}%27%20OR%20%271%27%3D%271", "a".repeat(10_000));
        let long = format!("/?q={}", "a".repeat(10_000));
        for uri in [&padded, &long] {
            assert!(
                WafRules::new()
                    .inspect(&uri.parse().unwrap(), &HeaderMap::new(), None)
                    .is_blocked()
            );
        }
        let lenient = WafRules::new().block_oversize(false);
        assert!(
            !lenient
                .inspect(&long.parse().unwrap(), &HeaderMap::new(), None)
                .is_blocked(),
            "opted out: only the beginning is inspected"
        );
        // So must padding with fields past the inspected number.
        let many = format!("/?{}&q=%27%20OR%20%271%27%3D%271", "a=1&".repeat(300));
        assert!(
            WafRules::new()
                .inspect(&many.parse().unwrap(), &HeaderMap::new(), None)
                .is_blocked()
        );
        // A long string inside a body is bounded by the body's limit, not the per-value one.
        let mut json = HeaderMap::new();
        json.insert(
            http::header::CONTENT_TYPE,
            "application/json".parse().unwrap(),
        );
        let big_string = format!("{{\"photo\":\"{}\"}}", "QUJD".repeat(5_000));
        assert!(
            !WafRules::new()
                .inspect(
                    &"/upload".parse().unwrap(),
                    &json,
                    Some(big_string.as_bytes())
                )
                .is_blocked()
        );
        let hidden = format!("{{\"note\":\"{} ' OR '1'='1\"}}", "a".repeat(20_000));
        assert!(
            WafRules::new()
                .inspect(&"/upload".parse().unwrap(), &json, Some(hidden.as_bytes()))
                .is_blocked(),
            "and inspected to its end"
        );
        let logged = WafRules::new().inspect(&"/a%252fb".parse().unwrap(), &HeaderMap::new(), None);
        assert_eq!(logged.matches[0].rule, "double-encoding");
        assert!(!logged.is_blocked());
    }
}
