//! Resource hints: typed `Link` fields (preload, modulepreload, preconnect, prefetch), chosen for the
//! client's connection, from a bundle manifest, sent as `103 Early Hints` where the host can and on the
//! final response everywhere.
//!
//! | host | `103 Early Hints` | what this module does there |
//! |---|---|---|
//! | hyper 1.x, axum | no: hyper's server has no API to send an informational response | `Link` on the final response ([`LinkHints::apply`]) |
//! | Cloudflare Workers | yes, by the platform: with Early Hints on, Cloudflare sends a 103 built from the `Link` fields of HTML responses it has seen | `Link` on the final response, which is what Cloudflare learns from |
//! | a host that can write informational responses | yes | [`LinkHints::early_hints`] builds the 103 to send first |
//!
//! ```
//! use edge_render::hints::{As, Ect, LinkHints, Link};
//!
//! let hints = LinkHints::new()
//!     .with(Link::preload("/assets/app.css", As::Style))
//!     .with(Link::preload("/fonts/inter.woff2", As::Font).mime_type("font/woff2").crossorigin())
//!     .with(Link::prefetch("/assets/next-page.js").non_critical());
//! // On a slow connection only what the page needs now is hinted.
//! let slow = hints.for_connection(Some(Ect::G2), false);
//! assert_eq!(
//!     slow.header_value().unwrap(),
//!     "</assets/app.css>; rel=preload; as=style, </fonts/inter.woff2>; rel=preload; as=font; type=\"font/woff2\"; crossorigin"
//! );
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;

use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use serde::Deserialize;

/// A hint's relation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rel {
    /// Fetch now, it is needed for this page.
    Preload,
    /// Fetch now as a module, with its dependencies' parsing.
    ModulePreload,
    /// Open the connection now.
    Preconnect,
    /// Fetch when idle, it is likely needed next.
    Prefetch,
}

impl Rel {
    const fn as_str(self) -> &'static str {
        match self {
            Self::Preload => "preload",
            Self::ModulePreload => "modulepreload",
            Self::Preconnect => "preconnect",
            Self::Prefetch => "prefetch",
        }
    }
}

/// What a preloaded resource is (`as=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum As {
    /// A script.
    Script,
    /// A stylesheet.
    Style,
    /// An image.
    Image,
    /// A font (needs `crossorigin`).
    Font,
    /// A `fetch()` target.
    Fetch,
    /// A document.
    Document,
}

impl As {
    const fn as_str(self) -> &'static str {
        match self {
            Self::Script => "script",
            Self::Style => "style",
            Self::Image => "image",
            Self::Font => "font",
            Self::Fetch => "fetch",
            Self::Document => "document",
        }
    }
}

/// One `Link` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    url: String,
    rel: Rel,
    kind: Option<As>,
    mime_type: Option<String>,
    crossorigin: bool,
    critical: bool,
}

/// Whether `url` can go between `<` and `>` of a `Link` field as it is: no `>`, no controls, no spaces,
/// no non-ASCII (a header must stay one line of visible ASCII).
fn link_safe(url: &str) -> bool {
    !url.is_empty()
        && url
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'>' && b != b'<')
}

impl Link {
    fn new(url: impl Into<String>, rel: Rel, kind: Option<As>) -> Self {
        Self {
            url: url.into(),
            rel,
            kind,
            mime_type: None,
            crossorigin: false,
            critical: true,
        }
    }

    /// `rel=preload; as=…`: needed by this page.
    pub fn preload(url: impl Into<String>, kind: As) -> Self {
        let mut link = Self::new(url, Rel::Preload, Some(kind));
        // Fonts are always fetched in CORS mode; a preload without it would be fetched twice.
        link.crossorigin = kind == As::Font;
        link
    }

    /// `rel=modulepreload`: an ES module needed by this page.
    pub fn modulepreload(url: impl Into<String>) -> Self {
        Self::new(url, Rel::ModulePreload, None)
    }

    /// `rel=preconnect`: an origin this page will fetch from.
    pub fn preconnect(origin: impl Into<String>) -> Self {
        Self::new(origin, Rel::Preconnect, None)
    }

    /// `rel=prefetch`: likely needed by the next page (not critical by nature).
    pub fn prefetch(url: impl Into<String>) -> Self {
        let mut link = Self::new(url, Rel::Prefetch, None);
        link.critical = false;
        link
    }

    /// Adds `crossorigin` (anonymous).
    #[must_use]
    pub fn crossorigin(mut self) -> Self {
        self.crossorigin = true;
        self
    }

    /// Adds `type="…"` (a browser that does not support the type skips the fetch).
    #[must_use]
    pub fn mime_type(mut self, mime_type: impl Into<String>) -> Self {
        self.mime_type = Some(mime_type.into());
        self
    }

    /// Marks it as nice to have: dropped on slow connections and with `Save-Data`.
    #[must_use]
    pub fn non_critical(mut self) -> Self {
        self.critical = false;
        self
    }

    /// The URL.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Its relation.
    #[must_use]
    pub fn rel(&self) -> Rel {
        self.rel
    }

    fn write(&self, out: &mut String) {
        let _ = write!(out, "<{}>; rel={}", self.url, self.rel.as_str());
        if let Some(kind) = self.kind {
            let _ = write!(out, "; as={}", kind.as_str());
        }
        if let Some(mime_type) = &self.mime_type {
            let _ = write!(out, "; type=\"{mime_type}\"");
        }
        if self.crossorigin {
            out.push_str("; crossorigin");
        }
    }
}

/// The client's effective connection type (the `ECT` client hint).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Ect {
    /// `slow-2g`.
    Slow2g,
    /// `2g`.
    G2,
    /// `3g`.
    G3,
    /// `4g`.
    G4,
}

impl Ect {
    /// The `ECT` field of `headers`, if it is one of the four values.
    #[must_use]
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        match headers.get("ect")?.to_str().ok()?.trim() {
            "slow-2g" => Some(Self::Slow2g),
            "2g" => Some(Self::G2),
            "3g" => Some(Self::G3),
            "4g" => Some(Self::G4),
            _ => None,
        }
    }
}

/// Whether the client sent `Save-Data: on`.
#[must_use]
pub fn save_data(headers: &HeaderMap) -> bool {
    headers
        .get("save-data")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("on"))
}

/// The hints of one response. See the [module docs](self).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkHints {
    links: Vec<Link>,
}

/// Most links a `Link` field carries; more are dropped (a header has to stay small).
pub const MAX_LINKS: usize = 32;

impl LinkHints {
    /// No hints.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `link` (unless its URL cannot be written into a header, or [`MAX_LINKS`] are there, or it
    /// is there already).
    #[must_use]
    pub fn with(mut self, link: Link) -> Self {
        if link_safe(&link.url)
            && self.links.len() < MAX_LINKS
            && !self
                .links
                .iter()
                .any(|l| l.url == link.url && l.rel == link.rel)
        {
            self.links.push(link);
        }
        self
    }

    /// The links.
    #[must_use]
    pub fn links(&self) -> &[Link] {
        &self.links
    }

    /// These hints for a client on `ect` that may ask to save data: on `slow-2g`/`2g` or with `Save-Data`,
    /// only the critical ones; otherwise all.
    #[must_use]
    pub fn for_connection(mut self, ect: Option<Ect>, save_data: bool) -> Self {
        if critical_only(ect, save_data) {
            self.links.retain(|l| l.critical);
        }
        self
    }

    /// The `Link` field value; `None` without links.
    #[must_use]
    pub fn header_value(&self) -> Option<HeaderValue> {
        if self.links.is_empty() {
            return None;
        }
        let mut out = String::new();
        for (i, link) in self.links.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            link.write(&mut out);
        }
        HeaderValue::try_from(out).ok()
    }

    /// Appends the `Link` field to `response` (the fallback every host has).
    pub fn apply<B>(&self, response: &mut Response<B>) {
        if let Some(value) = self.header_value() {
            response.headers_mut().append(header::LINK, value);
        }
    }

    /// A `103 Early Hints` response carrying the `Link` field, for hosts that can send one before the
    /// final response; `None` without links.
    #[must_use]
    pub fn early_hints(&self) -> Option<Response<()>> {
        let value = self.header_value()?;
        let mut response = Response::new(());
        *response.status_mut() = StatusCode::EARLY_HINTS;
        response.headers_mut().insert(header::LINK, value);
        Some(response)
    }
}

/// One chunk of a Vite-style `manifest.json`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
struct Chunk {
    file: String,
    #[serde(default)]
    css: Vec<String>,
    #[serde(default)]
    imports: Vec<String>,
    #[serde(default, rename = "dynamicImports")]
    dynamic_imports: Vec<String>,
}

/// Why a manifest could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ManifestError {
    /// Not a manifest (the JSON error).
    Invalid(String),
    /// Larger than the limit.
    TooLarge,
}

impl std::fmt::Display for ManifestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Invalid(e) => write!(f, "not a bundle manifest: {e}"),
            Self::TooLarge => f.write_str("bundle manifest too large"),
        }
    }
}

impl std::error::Error for ManifestError {}

/// Whether a client on `ect` that may ask to save data gets only the critical hints: on `slow-2g`/`2g` or
/// with `Save-Data`.
fn critical_only(ect: Option<Ect>, save_data: bool) -> bool {
    save_data || matches!(ect, Some(Ect::Slow2g | Ect::G2))
}

/// A bundler's manifest (Vite's `manifest.json` format: entries by source path, each with its `file`,
/// `css`, static `imports` and `dynamicImports`) and the routes that start at each entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BundleManifest {
    chunks: BTreeMap<String, Chunk>,
    base: String,
    routes: Vec<Route>,
}

/// A route, with its `Link` field values worked out once: every request to it sends one of the two.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Route {
    prefix: String,
    entry: String,
    /// All the hints.
    all: Option<HeaderValue>,
    /// Only the critical ones, for a slow connection or `Save-Data` ([`LinkHints::for_connection`]).
    critical: Option<HeaderValue>,
}

/// Largest manifest read.
const MAX_MANIFEST: usize = 4 * 1024 * 1024;

impl BundleManifest {
    /// Reads `json`, whose files are served under `base` (`/` or `/assets-base/`).
    ///
    /// # Errors
    ///
    /// [`ManifestError`].
    pub fn from_json(json: &[u8], base: &str) -> Result<Self, ManifestError> {
        if json.len() > MAX_MANIFEST {
            return Err(ManifestError::TooLarge);
        }
        let chunks =
            serde_json::from_slice(json).map_err(|e| ManifestError::Invalid(e.to_string()))?;
        let mut base = base.to_owned();
        if !base.ends_with('/') {
            base.push('/');
        }
        Ok(Self {
            chunks,
            base,
            routes: Vec::new(),
        })
    }

    /// Requests whose path starts with `prefix` render the entry `entry` (the longest prefix wins).
    #[must_use]
    pub fn route(mut self, prefix: impl Into<String>, entry: impl Into<String>) -> Self {
        let entry = entry.into();
        let hints = self.hints_of(&entry);
        self.routes.push(Route {
            prefix: prefix.into(),
            all: hints.header_value(),
            critical: hints.for_connection(None, true).header_value(),
            entry,
        });
        self.routes
            .sort_by_key(|route| std::cmp::Reverse(route.prefix.len()));
        self
    }

    /// The route `path` takes, if any.
    fn route_of(&self, path: &str) -> Option<&Route> {
        self.routes
            .iter()
            .find(|route| path.starts_with(route.prefix.as_str()))
    }

    /// The `Link` field for a request to `path` from a client on `ect` that may ask to save data: what
    /// [`hints_for`](Self::hints_for) and [`LinkHints::for_connection`] give, formatted when the route was
    /// added rather than on every request.
    #[must_use]
    pub fn link_header(
        &self,
        path: &str,
        ect: Option<Ect>,
        save_data: bool,
    ) -> Option<HeaderValue> {
        let route = self.route_of(path)?;
        if critical_only(ect, save_data) {
            route.critical.clone()
        } else {
            route.all.clone()
        }
    }

    /// The hints for a request to `path`: its entry's script and the scripts it imports statically as
    /// `modulepreload`, their stylesheets as `preload`, and what they import dynamically as non-critical
    /// `prefetch`. No route, no hints.
    #[must_use]
    pub fn hints_for(&self, path: &str) -> LinkHints {
        self.route_of(path)
            .map_or_else(LinkHints::new, |route| self.hints_of(&route.entry))
    }

    /// The hints of the entry named `entry`.
    fn hints_of(&self, entry: &str) -> LinkHints {
        let mut hints = LinkHints::new();
        let mut seen = Vec::new();
        let mut stack = vec![entry.to_owned()];
        let mut dynamic = Vec::new();
        // The static import graph, depth first; the seen list stops cycles.
        while let Some(name) = stack.pop() {
            if seen.contains(&name) || seen.len() > MAX_LINKS {
                continue;
            }
            let Some(chunk) = self.chunks.get(&name) else {
                continue;
            };
            seen.push(name);
            hints = hints.with(Link::modulepreload(format!("{}{}", self.base, chunk.file)));
            for css in &chunk.css {
                hints = hints.with(Link::preload(format!("{}{css}", self.base), As::Style));
            }
            stack.extend(chunk.imports.iter().rev().cloned());
            dynamic.extend(chunk.dynamic_imports.iter().cloned());
        }
        for name in dynamic {
            if let Some(chunk) = self.chunks.get(&name) {
                hints = hints.with(Link::prefetch(format!("{}{}", self.base, chunk.file)));
            }
        }
        hints
    }
}

#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub mod layer;

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = r#"{
        "src/home.ts": { "file": "assets/home-1a2b.js", "css": ["assets/home-3c4d.css"], "imports": ["_vendor.js"], "dynamicImports": ["src/cart.ts"], "isEntry": true },
        "_vendor.js": { "file": "assets/vendor-5e6f.js", "imports": ["_vendor.js"] },
        "src/cart.ts": { "file": "assets/cart-7a8b.js", "isDynamicEntry": true }
    }"#;

    #[test]
    fn a_route_gets_its_critical_and_prefetch_chunks() {
        let manifest = BundleManifest::from_json(MANIFEST.as_bytes(), "/")
            .unwrap()
            .route("/", "src/home.ts");
        let hints = manifest.hints_for("/products");
        assert_eq!(
            hints.header_value().unwrap(),
            "</assets/home-1a2b.js>; rel=modulepreload, </assets/home-3c4d.css>; rel=preload; as=style, \
             </assets/vendor-5e6f.js>; rel=modulepreload, </assets/cart-7a8b.js>; rel=prefetch"
        );
        let slow = hints.for_connection(Some(Ect::Slow2g), false);
        assert_eq!(slow.links().len(), 3, "the prefetch is dropped on slow-2g");
        assert!(BundleManifest::from_json(b"[1,2]", "/").is_err());
        assert!(BundleManifest::default().hints_for("/").links().is_empty());
    }

    #[test]
    fn the_precomputed_field_is_what_the_hints_format_to() {
        let manifest = BundleManifest::from_json(MANIFEST.as_bytes(), "/")
            .unwrap()
            .route("/", "src/home.ts")
            .route("/cart", "src/cart.ts")
            .route("/missing", "src/nowhere.ts");
        let ects = [
            None,
            Some(Ect::Slow2g),
            Some(Ect::G2),
            Some(Ect::G3),
            Some(Ect::G4),
        ];
        for path in ["/", "/products", "/cart/1", "/missing", "/missing/x"] {
            for ect in ects {
                for save_data in [false, true] {
                    let formatted = manifest
                        .hints_for(path)
                        .for_connection(ect, save_data)
                        .header_value();
                    assert_eq!(
                        manifest.link_header(path, ect, save_data),
                        formatted,
                        "{path} {ect:?} {save_data}"
                    );
                }
            }
        }
        assert_eq!(
            BundleManifest::default().link_header("/", None, false),
            None
        );
    }

    #[test]
    fn headers_stay_one_line_of_ascii_and_bounded() {
        let hints = LinkHints::new()
            .with(Link::preload(
                "/a.css>; rel=preload; as=script, </evil.js",
                As::Style,
            ))
            .with(Link::preload("/a\r\nSet-Cookie: x", As::Style))
            .with(Link::preload("/ünïcode.css", As::Style))
            .with(Link::preconnect("https://cdn.example"));
        assert_eq!(hints.links().len(), 1);
        let many = (0..100).fold(LinkHints::new(), |h, i| {
            h.with(Link::preload(format!("/{i}.js"), As::Script))
        });
        assert_eq!(many.links().len(), MAX_LINKS);
    }

    #[test]
    fn connection_hints_and_early_hints() {
        let mut headers = HeaderMap::new();
        headers.insert("ect", HeaderValue::from_static("3g"));
        headers.insert("save-data", HeaderValue::from_static("on"));
        assert_eq!(Ect::from_headers(&headers), Some(Ect::G3));
        assert!(save_data(&headers));
        let hints = LinkHints::new()
            .with(Link::preload("/a.css", As::Style))
            .with(Link::prefetch("/b.js"));
        assert_eq!(
            hints
                .clone()
                .for_connection(Some(Ect::G3), true)
                .links()
                .len(),
            1
        );
        assert_eq!(
            hints
                .clone()
                .for_connection(Some(Ect::G4), false)
                .links()
                .len(),
            2
        );
        let early = hints.early_hints().unwrap();
        assert_eq!(early.status(), StatusCode::EARLY_HINTS);
        let mut response = Response::new(());
        hints.apply(&mut response);
        assert_eq!(
            response.headers()[header::LINK],
            early.headers()[header::LINK]
        );
    }
}
