//! Streaming HTML: the shell goes out at once, later sections as their data arrives, and every piece of
//! data is escaped for the context it lands in.
//!
//! [`stream`] gives an [`HtmlWriter`] and the [`HtmlBody`] that carries what it writes (a `Stream` of
//! `Bytes`; [`HtmlBody::into_body`] makes it the SDK's [`Body`] for axum, hyper or a Worker). Writes are
//! synchronous and go to a buffer; [`HtmlWriter::flush`] sends the buffer as one chunk, waiting while the
//! channel holds [`HtmlSettings::max_chunks`] unsent chunks, so a slow client slows the writer instead
//! of growing memory. A write that would take the buffer past [`HtmlSettings::max_buffer`] fails with
//! [`HtmlError::BufferFull`] and writes nothing.
//!
//! Data goes through typed methods only: [`text`](HtmlWriter::text), attribute values
//! ([`StartTag::attr`]), URLs ([`StartTag::url_attr`], which refuses `javascript:` and friends) and JSON
//! ([`json_script`](HtmlWriter::json_script)). Markup that is not data needs the explicitly named
//! [`raw_html_unchecked`](HtmlWriter::raw_html_unchecked). What carries script or markup by any route
//! cannot be set from data at all: event handlers (`on*`), `style`, `srcdoc`, `http-equiv`, a `<meta>`'s
//! `content`, SVG animation's `attributeName`/`values`/`to`/`from`/`by`; URL attributes only through
//! `url_attr`, which knows the element: a URL that loads code or sets the page's base (`script src`,
//! `iframe src`, `object data`, `embed src`, `base href`, `link href`, `form action`, …) may only be a
//! path on the page's own origin or on a host the writer was told to trust ([`HtmlWriter::trust_host`]).
//!
//! The writer knows which element it is in. `text` inside `<script>` or `<style>` (raw text, where
//! escaping is no protection) is refused: script data goes through [`json_script`](HtmlWriter::json_script).
//! Inside `<pre>`, `<textarea>` and `<listing>`, whose first newline the parser drops, a text starting
//! with a newline keeps it.
//!
//! ```
//! use edge_render::html::{self, HtmlSettings};
//!
//! # futures::executor::block_on(async {
//! let (mut page, body) = html::stream(HtmlSettings::default());
//! let reader = async move { body.collect_string().await };
//! let writer = async move {
//!     page.doctype()?;
//!     page.open("html")?.attr("lang", "en")?.finish()?;
//!     page.open("body")?.finish()?;
//!     page.open("h1")?.finish()?;
//!     page.text("Hello, <Ada> & friends")?;
//!     page.close("h1")?;
//!     page.flush().await?; // the shell leaves now
//!     page.open("a")?.url_attr("href", "javascript:alert(1)")?.finish()?;
//!     page.text("profile")?;
//!     page.close("a")?;
//!     page.json_script("state", &serde_json::json!({ "user": "</script><b>" }))?;
//!     page.close("body")?;
//!     page.close("html")?;
//!     page.finish().await
//! };
//! let (html, written) = futures::join!(reader, writer);
//! written?;
//! assert_eq!(
//!     html.unwrap(),
//!     "<!DOCTYPE html><html lang=\"en\"><body><h1>Hello, &lt;Ada&gt; &amp; friends</h1>\
//!      <a href=\"about:invalid#edge-unsafe-url\">profile</a>\
//!      <script type=\"application/json\" id=\"state\">{\"user\":\"\\u003c/script\\u003e\\u003cb\\u003e\"}</script>\
//!      </body></html>"
//! );
//! # Ok::<_, edge_render::html::HtmlError>(())
//! # }).unwrap();
//! ```

pub mod escape;

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use edge_core::{Body, Error, ErrorKind};
use futures_channel::mpsc;
use futures_util::{SinkExt, StreamExt};

/// How much a writer may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HtmlSettings {
    /// Most bytes buffered between flushes (default 256 KiB).
    pub max_buffer: usize,
    /// Most flushed chunks waiting for the client (default 8); a flush past it waits.
    pub max_chunks: usize,
}

impl Default for HtmlSettings {
    fn default() -> Self {
        Self {
            max_buffer: 256 * 1024,
            max_chunks: 8,
        }
    }
}

impl HtmlSettings {
    /// Sets [`max_buffer`](Self::max_buffer).
    #[must_use]
    pub const fn with_max_buffer(mut self, bytes: usize) -> Self {
        self.max_buffer = bytes;
        self
    }

    /// Sets [`max_chunks`](Self::max_chunks) (at least 1).
    #[must_use]
    pub const fn with_max_chunks(mut self, chunks: usize) -> Self {
        self.max_chunks = if chunks == 0 { 1 } else { chunks };
        self
    }
}

/// Why a write failed. Nothing was written by the call that failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HtmlError {
    /// The write would take the buffer past [`HtmlSettings::max_buffer`]: flush first.
    BufferFull,
    /// A tag or attribute name is not an HTML name (`[A-Za-z][A-Za-z0-9-]*`, attributes also `:`/`_`).
    InvalidName(&'static str),
    /// The attribute cannot be set from data (`on*`, `style`, `srcdoc`, …), or needs
    /// [`StartTag::url_attr`], or is not a URL attribute of this element.
    ForbiddenAttribute(&'static str),
    /// `text` inside a raw-text element (`script`, `style`), where escaping protects nothing.
    RawTextElement(&'static str),
    /// The value could not be serialized as JSON.
    Json(String),
    /// The reader (the client) has gone.
    Closed,
}

impl std::fmt::Display for HtmlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::BufferFull => f.write_str("the html buffer is full: flush first"),
            Self::InvalidName(name) => write!(f, "not an html name: {name:?}"),
            Self::ForbiddenAttribute(name) => {
                write!(f, "attribute {name:?} cannot be set from data")
            }
            Self::Json(e) => write!(f, "json for a script could not be serialized: {e}"),
            Self::RawTextElement(name) => {
                write!(f, "no text from data inside <{name}>: use a typed writer")
            }
            Self::Closed => f.write_str("the client has gone"),
        }
    }
}

impl std::error::Error for HtmlError {}

/// Attributes whose value is a URL: set them with [`StartTag::url_attr`].
const URL_ATTRIBUTES: [&str; 16] = [
    "href",
    "src",
    "action",
    "formaction",
    "poster",
    "cite",
    "data",
    "background",
    "ping",
    "srcset",
    "xlink:href",
    "manifest",
    "codebase",
    "archive",
    "classid",
    "longdesc",
];

/// Attributes that carry script or markup by another route than a URL: never from data.
const SCRIPT_CARRYING: [&str; 4] = ["style", "srcdoc", "http-equiv", "attributename"];

/// SVG animation elements: their `values`/`to`/`from`/`by` can set any attribute (an `href` to a
/// `javascript:` URL), so those are not taken from data on them.
const SVG_ANIMATION: [&str; 5] = [
    "animate",
    "set",
    "animatetransform",
    "animatemotion",
    "animatecolor",
];

/// `(element, attribute)` pairs whose URL loads code, embeds a document or moves the page's base: a
/// path on the page's own origin only, or a trusted host.
const ACTIVE_URLS: [(&str, &str); 12] = [
    ("script", "src"),
    ("iframe", "src"),
    ("frame", "src"),
    ("embed", "src"),
    ("object", "data"),
    ("object", "codebase"),
    ("object", "archive"),
    ("applet", "codebase"),
    ("base", "href"),
    ("link", "href"),
    ("form", "action"),
    ("*", "formaction"),
];

/// Elements whose text the parser reads raw: escaping does not protect it.
const RAW_TEXT: [&str; 2] = ["script", "style"];

/// Elements with no content and no end tag.
const VOID_ELEMENTS: [&str; 14] = [
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track",
    "wbr", "param",
];

/// Elements whose first newline the parser drops.
const LEADING_NEWLINE: [&str; 3] = ["pre", "textarea", "listing"];

fn valid_name(name: &str, attribute: bool) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| {
            b.is_ascii_alphanumeric() || b == b'-' || (attribute && (b == b':' || b == b'_'))
        })
}

/// A writer of one HTML document. See the [module docs](self).
#[derive(Debug)]
pub struct HtmlWriter {
    buffer: String,
    settings: HtmlSettings,
    sender: mpsc::Sender<Bytes>,
    /// The elements opened and not closed, innermost last.
    open: Vec<&'static str>,
    /// Nothing has been written inside the innermost element since its start tag.
    fresh: bool,
    /// Hosts an active URL ([`ACTIVE_URLS`]) may name besides the page's own origin.
    trusted_hosts: Vec<String>,
}

/// The bytes an [`HtmlWriter`] flushes, in order: a `Stream` of `Result<Bytes, Error>`.
#[derive(Debug)]
pub struct HtmlBody {
    receiver: mpsc::Receiver<Bytes>,
}

/// A writer and the body it writes into.
#[must_use]
pub fn stream(settings: HtmlSettings) -> (HtmlWriter, HtmlBody) {
    // The channel holds `buffer + senders` messages; one sender.
    let (sender, receiver) = mpsc::channel(settings.max_chunks.saturating_sub(1));
    (
        HtmlWriter {
            buffer: String::new(),
            settings,
            sender,
            open: Vec::new(),
            fresh: false,
            trusted_hosts: Vec::new(),
        },
        HtmlBody { receiver },
    )
}

impl HtmlWriter {
    /// Makes room for `additional` bytes, or refuses.
    fn room(&mut self, additional: usize) -> Result<(), HtmlError> {
        if self.buffer.len().saturating_add(additional) > self.settings.max_buffer {
            return Err(HtmlError::BufferFull);
        }
        Ok(())
    }

    /// Appends what `write` produces, or nothing if it would overflow the buffer.
    fn append(
        &mut self,
        worst_case: usize,
        write: impl FnOnce(&mut String),
    ) -> Result<(), HtmlError> {
        self.room(worst_case)?;
        let mark = self.buffer.len();
        write(&mut self.buffer);
        if self.buffer.len() > self.settings.max_buffer {
            self.buffer.truncate(mark);
            return Err(HtmlError::BufferFull);
        }
        Ok(())
    }

    /// Lets active URLs (`script src`, `iframe src`, …) name `host` (e.g. a CDN), besides paths on the
    /// page's own origin. Exact host names, compared without case or a trailing dot.
    pub fn trust_host(&mut self, host: &str) {
        self.trusted_hosts
            .push(host.trim_end_matches('.').to_ascii_lowercase());
    }

    /// The innermost open element, if any.
    fn current(&self) -> Option<&'static str> {
        self.open.last().copied()
    }

    /// Bytes written and not yet flushed.
    #[must_use]
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// `<!DOCTYPE html>`.
    ///
    /// # Errors
    ///
    /// [`HtmlError::BufferFull`].
    pub fn doctype(&mut self) -> Result<(), HtmlError> {
        self.append(15, |b| b.push_str("<!DOCTYPE html>"))
    }

    /// Starts the tag `name`; add attributes to the [`StartTag`] and [`finish`](StartTag::finish) it.
    ///
    /// # Errors
    ///
    /// [`HtmlError::InvalidName`], [`HtmlError::BufferFull`].
    pub fn open(&mut self, name: &'static str) -> Result<StartTag<'_>, HtmlError> {
        if !valid_name(name, false) {
            return Err(HtmlError::InvalidName(name));
        }
        let mark = self.buffer.len();
        self.append(name.len() + 1, |b| {
            b.push('<');
            b.push_str(name);
        })?;
        Ok(StartTag {
            writer: self,
            element: name,
            mark,
            done: false,
        })
    }

    /// `</name>`.
    ///
    /// # Errors
    ///
    /// [`HtmlError::InvalidName`], [`HtmlError::BufferFull`].
    pub fn close(&mut self, name: &'static str) -> Result<(), HtmlError> {
        if !valid_name(name, false) {
            return Err(HtmlError::InvalidName(name));
        }
        self.append(name.len() + 3, |b| {
            b.push_str("</");
            b.push_str(name);
            b.push('>');
        })?;
        if let Some(at) = self.open.iter().rposition(|e| e.eq_ignore_ascii_case(name)) {
            self.open.truncate(at);
        }
        self.fresh = false;
        Ok(())
    }

    /// Text, escaped ([`escape::text`], right for normal and RCDATA elements such as `<title>` and
    /// `<textarea>`). Inside `<pre>`, `<textarea>` or `<listing>`, a leading newline written first is
    /// kept (the parser drops one there).
    ///
    /// # Errors
    ///
    /// [`HtmlError::RawTextElement`] inside `<script>` or `<style>`; [`HtmlError::BufferFull`].
    pub fn text(&mut self, text: &str) -> Result<(), HtmlError> {
        if let Some(element) = self
            .current()
            .filter(|e| RAW_TEXT.iter().any(|r| e.eq_ignore_ascii_case(r)))
        {
            return Err(HtmlError::RawTextElement(element));
        }
        let keep_newline = self.fresh
            && text.starts_with('\n')
            && self
                .current()
                .is_some_and(|e| LEADING_NEWLINE.iter().any(|l| e.eq_ignore_ascii_case(l)));
        self.append(text.len() + usize::from(keep_newline), |b| {
            if keep_newline {
                b.push('\n');
            }
            escape::text(text, b);
        })?;
        if !text.is_empty() {
            self.fresh = false;
        }
        Ok(())
    }

    /// `<script type="application/json" id="{id}">…</script>` holding `value` as JSON escaped so that it
    /// cannot end the script ([`escape::json_for_script`]). Read it in the page with
    /// `JSON.parse(document.getElementById(id).textContent)`.
    ///
    /// # Errors
    ///
    /// [`HtmlError::Json`], [`HtmlError::BufferFull`].
    pub fn json_script(
        &mut self,
        id: &str,
        value: &impl serde::Serialize,
    ) -> Result<(), HtmlError> {
        let json = serde_json::to_string(value).map_err(|e| HtmlError::Json(e.to_string()))?;
        self.append(json.len() + id.len() + 48, |b| {
            b.push_str("<script type=\"application/json\" id=\"");
            escape::attribute(id, b);
            b.push_str("\">");
            escape::json_for_script(&json, b);
            b.push_str("</script>");
        })?;
        self.fresh = false;
        Ok(())
    }

    /// Markup written as it is, unescaped: for trusted templates only, never for data.
    ///
    /// # Errors
    ///
    /// [`HtmlError::BufferFull`].
    pub fn raw_html_unchecked(&mut self, html: &str) -> Result<(), HtmlError> {
        self.append(html.len(), |b| b.push_str(html))
    }

    /// Sends what was written as one chunk, waiting while the client is [`max_chunks`](HtmlSettings::max_chunks)
    /// behind. Nothing to send is no chunk.
    ///
    /// # Errors
    ///
    /// [`HtmlError::Closed`] when the body was dropped (the client went away).
    pub async fn flush(&mut self) -> Result<(), HtmlError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buffer));
        // `feed` waits for room and hands the chunk over without waiting for it to be read.
        self.sender.feed(chunk).await.map_err(|_| HtmlError::Closed)
    }

    /// Flushes and ends the document.
    ///
    /// # Errors
    ///
    /// [`HtmlError::Closed`].
    pub async fn finish(mut self) -> Result<(), HtmlError> {
        self.flush().await?;
        self.sender.close_channel();
        Ok(())
    }
}

/// A start tag being written: add attributes, then [`finish`](Self::finish) it. Dropped without
/// finishing (a failed attribute drops it too), it takes back the whole tag.
#[derive(Debug)]
pub struct StartTag<'w> {
    writer: &'w mut HtmlWriter,
    element: &'static str,
    mark: usize,
    done: bool,
}

impl StartTag<'_> {
    fn name_ok(name: &'static str) -> Result<(), HtmlError> {
        if !valid_name(name, true) {
            return Err(HtmlError::InvalidName(name));
        }
        Ok(())
    }

    /// ` name="value"`, the value escaped ([`escape::attribute`]).
    ///
    /// # Errors
    ///
    /// [`HtmlError::InvalidName`]; [`HtmlError::ForbiddenAttribute`] for `on*`, `style` and the URL
    /// attributes (use [`url_attr`](Self::url_attr)); [`HtmlError::BufferFull`].
    pub fn attr(self, name: &'static str, value: &str) -> Result<Self, HtmlError> {
        Self::name_ok(name)?;
        let lower = name.to_ascii_lowercase();
        if self.carries_script(&lower) || URL_ATTRIBUTES.contains(&lower.as_str()) {
            return Err(HtmlError::ForbiddenAttribute(name));
        }
        self.write_attr(name, value, escape::attribute)
    }

    /// Whether `attribute` (lower case) on this element carries script or markup by a route other than
    /// a URL.
    fn carries_script(&self, attribute: &str) -> bool {
        let element = self.element.to_ascii_lowercase();
        attribute.starts_with("on")
            || SCRIPT_CARRYING.contains(&attribute)
            || (element == "meta" && attribute == "content")
            || (SVG_ANIMATION.contains(&element.as_str())
                && matches!(attribute, "values" | "to" | "from" | "by"))
    }

    /// ` name="url"` for a URL attribute: the URL if it is safe for this element ([`escape::url`],
    /// and for active URLs a path on the page's origin or a trusted host), an inert one otherwise.
    ///
    /// # Errors
    ///
    /// [`HtmlError::InvalidName`]; [`HtmlError::ForbiddenAttribute`] for an attribute that is not a URL
    /// attribute (`onclick`, `style`, …); [`HtmlError::BufferFull`].
    pub fn url_attr(self, name: &'static str, url: &str) -> Result<Self, HtmlError> {
        Self::name_ok(name)?;
        let lower = name.to_ascii_lowercase();
        if self.carries_script(&lower) || !URL_ATTRIBUTES.contains(&lower.as_str()) {
            return Err(HtmlError::ForbiddenAttribute(name));
        }
        let element = self.element.to_ascii_lowercase();
        let active = ACTIVE_URLS
            .iter()
            .any(|(e, a)| (*e == "*" || *e == element) && *a == lower);
        if active && !self.same_origin_or_trusted(url) {
            return self.write_attr(name, escape::UNSAFE_URL, escape::attribute);
        }
        self.write_attr(name, url, escape::url)
    }

    /// Whether an active URL stays on the page's origin (a path, not `//host`) or names a trusted host
    /// over https.
    fn same_origin_or_trusted(&self, url: &str) -> bool {
        // Read as a browser does: leading spaces and controls skipped, tabs and newlines ignored,
        // backslashes are slashes.
        let cleaned: String = url
            .trim_start_matches(|c: char| c <= ' ')
            .chars()
            .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
            .map(|c| if c == '\\' { '/' } else { c })
            .collect();
        if cleaned.starts_with('/') && !cleaned.starts_with("//") {
            return true;
        }
        let Some(rest) = cleaned
            .get(..8)
            .filter(|s| s.eq_ignore_ascii_case("https://"))
            .map(|_| &cleaned[8..])
        else {
            return false;
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        if authority.contains('@') {
            return false;
        }
        let host = authority
            .rsplit_once(':')
            .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
            .map_or(authority, |(host, _)| host)
            .trim_end_matches('.')
            .to_ascii_lowercase();
        self.writer.trusted_hosts.contains(&host)
    }

    /// ` name` (a boolean attribute: `defer`, `async`, `hidden`, …).
    ///
    /// # Errors
    ///
    /// [`HtmlError::InvalidName`], [`HtmlError::ForbiddenAttribute`], [`HtmlError::BufferFull`].
    pub fn flag(self, name: &'static str) -> Result<Self, HtmlError> {
        Self::name_ok(name)?;
        if name.to_ascii_lowercase().starts_with("on") {
            return Err(HtmlError::ForbiddenAttribute(name));
        }
        self.writer.append(name.len() + 1, |b| {
            b.push(' ');
            b.push_str(name);
        })?;
        Ok(self)
    }

    fn write_attr(
        self,
        name: &'static str,
        value: &str,
        escape: fn(&str, &mut String),
    ) -> Result<Self, HtmlError> {
        self.writer.append(name.len() + value.len() + 4, |b| {
            b.push(' ');
            b.push_str(name);
            b.push_str("=\"");
            escape(value, b);
            b.push('"');
        })?;
        Ok(self)
    }

    /// `>`: the tag is written.
    ///
    /// # Errors
    ///
    /// [`HtmlError::BufferFull`].
    pub fn finish(mut self) -> Result<(), HtmlError> {
        self.writer.append(1, |b| b.push('>'))?;
        self.done = true;
        if !VOID_ELEMENTS
            .iter()
            .any(|v| self.element.eq_ignore_ascii_case(v))
        {
            self.writer.open.push(self.element);
        }
        self.writer.fresh = true;
        Ok(())
    }
}

impl Drop for StartTag<'_> {
    fn drop(&mut self) {
        // Not finished (an error on the way, or forgotten): no half tag stays in the document.
        if !self.done {
            self.writer.buffer.truncate(self.mark);
        }
    }
}

impl HtmlBody {
    /// The SDK's [`Body`], streaming each chunk as it is flushed.
    #[must_use]
    pub fn into_body(self) -> Body {
        Body::from_stream(self.receiver.map(Ok::<_, Error>))
    }

    /// Reads the whole document (for tests and for hosts that must buffer).
    ///
    /// # Errors
    ///
    /// `InvalidInput` if the document is not UTF-8 (it always is).
    pub async fn collect_string(mut self) -> Result<String, Error> {
        let mut out = Vec::new();
        while let Some(chunk) = self.receiver.next().await {
            out.extend_from_slice(&chunk);
        }
        String::from_utf8(out).map_err(|_| Error::new(ErrorKind::InvalidInput, "not utf-8"))
    }
}

impl futures_core::Stream for HtmlBody {
    type Item = Result<Bytes, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.receiver.poll_next_unpin(cx).map(|chunk| chunk.map(Ok))
    }
}

#[cfg(test)]
mod tests;
