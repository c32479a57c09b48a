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
//! [`raw_html_unchecked`](HtmlWriter::raw_html_unchecked). Event-handler attributes (`on*`) and `style`
//! cannot be set from data at all, and URL attributes only through `url_attr`.
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
    /// The attribute cannot be set from data (`on*`, `style`), or needs [`StartTag::url_attr`].
    ForbiddenAttribute(&'static str),
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
            Self::Closed => f.write_str("the client has gone"),
        }
    }
}

impl std::error::Error for HtmlError {}

/// Attributes whose value is a URL: set them with [`StartTag::url_attr`].
const URL_ATTRIBUTES: [&str; 12] = [
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
];

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
        })
    }

    /// Text, escaped ([`escape::text`]).
    ///
    /// # Errors
    ///
    /// [`HtmlError::BufferFull`].
    pub fn text(&mut self, text: &str) -> Result<(), HtmlError> {
        self.append(text.len(), |b| escape::text(text, b))
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
        })
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
        if lower.starts_with("on") || lower == "style" || URL_ATTRIBUTES.contains(&lower.as_str()) {
            return Err(HtmlError::ForbiddenAttribute(name));
        }
        self.write_attr(name, value, escape::attribute)
    }

    /// ` name="url"` for a URL attribute: the URL if it is safe ([`escape::url`]), an inert one otherwise.
    ///
    /// # Errors
    ///
    /// [`HtmlError::InvalidName`], [`HtmlError::BufferFull`].
    pub fn url_attr(self, name: &'static str, url: &str) -> Result<Self, HtmlError> {
        Self::name_ok(name)?;
        self.write_attr(name, url, escape::url)
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
