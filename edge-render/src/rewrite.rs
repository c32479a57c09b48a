//! HTML rewriting on every host: a streaming body transformer over `lol_html`.
//!
//! A [`Rewrite`] is a list of rules, checked when they are added (a bad CSS selector is a
//! [`RewriteError`] then, not at request time); [`Rewrite::body`] applies them to a [`Body`] as it
//! streams: each chunk in is parsed by lol_html and what it can already emit goes out, so a rewritten
//! page streams like the original. The same code runs under axum, hyper and in a Worker (where it stands
//! in for the `HTMLRewriter` workers-rs does not have).
//!
//! ```
//! use edge_core::Body;
//! use edge_render::rewrite::Rewrite;
//!
//! # futures::executor::block_on(async {
//! let rewrite = Rewrite::new()
//!     .append_html_to_head(r#"<link rel="preload" href="/app.css" as="style">"#)
//!     .remove("script.tracker")?
//!     .rewrite_urls("http://origin.internal/", "/")?;
//! let page = Body::from("<html><head></head><body><script class=tracker></script>\
//!                        <a href=\"http://origin.internal/p/1\">one</a></body></html>");
//! let out = rewrite.body(page).collect(1 << 20).await?;
//! assert_eq!(
//!     &out[..],
//!     &br#"<html><head><link rel="preload" href="/app.css" as="style"></head><body><a href="/p/1">one</a></body></html>"#[..]
//! );
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

use std::borrow::Cow;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::{Bytes, BytesMut};
use edge_core::{Body, Error, ErrorKind};
use futures_util::StreamExt;
use lol_html::html_content::ContentType;
use lol_html::send::{HtmlRewriter, Settings};
use lol_html::{MemorySettings, element};

/// A rule that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RewriteError {
    /// Not a CSS selector lol_html supports.
    InvalidSelector(String),
}

impl std::fmt::Display for RewriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::InvalidSelector(s) => write!(f, "not a supported css selector: {s:?}"),
        }
    }
}

impl std::error::Error for RewriteError {}

type AttributeFn = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

#[derive(Clone)]
enum Rule {
    AppendToHead(Arc<str>),
    Remove(Arc<str>),
    Attribute {
        selector: Arc<str>,
        name: Arc<str>,
        change: AttributeFn,
    },
}

/// HTML rewriting rules, applied to bodies as they stream. Cheap to clone. See the [module docs](self).
#[derive(Clone)]
pub struct Rewrite {
    rules: Vec<Rule>,
    max_memory: usize,
}

impl std::fmt::Debug for Rewrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rewrite")
            .field("rules", &self.rules.len())
            .field("max_memory", &self.max_memory)
            .finish()
    }
}

impl Default for Rewrite {
    fn default() -> Self {
        Self::new()
    }
}

fn checked(selector: &str) -> Result<Arc<str>, RewriteError> {
    selector
        .parse::<lol_html::Selector>()
        .map_err(|_| RewriteError::InvalidSelector(selector.to_owned()))?;
    Ok(Arc::from(selector))
}

impl Rewrite {
    /// No rules; lol_html may use 1 MiB per body (for text it must hold, like an unclosed tag).
    #[must_use]
    pub fn new() -> Self {
        Self {
            rules: Vec::new(),
            max_memory: 1024 * 1024,
        }
    }

    /// The most memory lol_html may use per body; past it the body ends with an error.
    #[must_use]
    pub fn with_max_memory(mut self, bytes: usize) -> Self {
        self.max_memory = bytes;
        self
    }

    /// Appends trusted markup (a preload, a stylesheet, a script tag) at the end of `<head>`.
    #[must_use]
    pub fn append_html_to_head(mut self, html: impl Into<Arc<str>>) -> Self {
        self.rules.push(Rule::AppendToHead(html.into()));
        self
    }

    /// Removes the elements matching `selector`, with their content.
    ///
    /// # Errors
    ///
    /// [`RewriteError::InvalidSelector`].
    pub fn remove(mut self, selector: &str) -> Result<Self, RewriteError> {
        self.rules.push(Rule::Remove(checked(selector)?));
        Ok(self)
    }

    /// Changes the `attribute` of the elements matching `selector`: `change` gets its value and returns
    /// the new one, or `None` to leave it.
    ///
    /// # Errors
    ///
    /// [`RewriteError::InvalidSelector`].
    pub fn rewrite_attribute(
        mut self,
        selector: &str,
        attribute: &str,
        change: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> Result<Self, RewriteError> {
        self.rules.push(Rule::Attribute {
            selector: checked(selector)?,
            name: Arc::from(attribute),
            change: Arc::new(change),
        });
        Ok(self)
    }

    /// Rewrites URLs starting with `from` to start with `to` in `href` and `src` attributes (links,
    /// images, scripts, stylesheets, forms' `action`).
    ///
    /// # Errors
    ///
    /// None in practice (the selectors are fixed); the type is the other rules'.
    pub fn rewrite_urls(self, from: &str, to: &str) -> Result<Self, RewriteError> {
        let (from, to): (Arc<str>, Arc<str>) = (Arc::from(from), Arc::from(to));
        let mut this = self;
        for (selector, attribute) in [
            ("a[href]", "href"),
            ("link[href]", "href"),
            ("img[src]", "src"),
            ("script[src]", "src"),
            ("source[src]", "src"),
            ("form[action]", "action"),
        ] {
            let (from, to) = (Arc::clone(&from), Arc::clone(&to));
            this = this.rewrite_attribute(selector, attribute, move |value| {
                value.strip_prefix(&*from).map(|rest| format!("{to}{rest}"))
            })?;
        }
        Ok(this)
    }

    fn settings(&self) -> Settings<'static, 'static> {
        let mut handlers = Vec::with_capacity(self.rules.len());
        for rule in self.rules.clone() {
            handlers.push(match rule {
                Rule::AppendToHead(html) => element!("head", move |el| {
                    el.append(&html, ContentType::Html);
                    Ok(())
                }),
                Rule::Remove(selector) => {
                    let selector: Cow<'static, str> = Cow::Owned(selector.to_string());
                    element!(selector, |el| {
                        el.remove();
                        Ok(())
                    })
                }
                Rule::Attribute {
                    selector,
                    name,
                    change,
                } => {
                    let selector: Cow<'static, str> = Cow::Owned(selector.to_string());
                    element!(selector, move |el| {
                        if let Some(value) = el.get_attribute(&name) {
                            if let Some(new) = change(&value) {
                                el.set_attribute(&name, &new)?;
                            }
                        }
                        Ok(())
                    })
                }
            });
        }
        Settings {
            element_content_handlers: handlers,
            memory_settings: MemorySettings {
                max_allowed_memory_usage: self.max_memory,
                ..MemorySettings::new()
            },
            ..Settings::new_send()
        }
    }

    /// `body` with the rules applied, streaming. A body that lol_html cannot process (over the memory
    /// limit, or ambiguous in a way it refuses) ends with an `InvalidInput` error after what was emitted.
    pub fn body(&self, body: Body) -> Body {
        let out = Arc::new(Mutex::new(BytesMut::new()));
        let sink = Arc::clone(&out);
        let rewriter = HtmlRewriter::new(self.settings(), move |chunk: &[u8]| {
            sink.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend_from_slice(chunk);
        });
        let state = State {
            input: body,
            rewriter: Some(rewriter),
            out,
        };
        Body::from_stream(futures_util::stream::unfold(state, State::next))
    }
}

struct State<O: lol_html::OutputSink + Send> {
    input: Body,
    rewriter: Option<HtmlRewriter<'static, O>>,
    out: Arc<Mutex<BytesMut>>,
}

fn failed(e: &lol_html::errors::RewritingError) -> Error {
    Error::new(
        ErrorKind::InvalidInput,
        format!("html rewriting failed: {e}"),
    )
}

impl<O: lol_html::OutputSink + Send> State<O> {
    fn take(&self) -> Bytes {
        self.out
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .split()
            .freeze()
    }

    async fn next(mut self) -> Option<(Result<Bytes, Error>, Self)> {
        loop {
            let rewriter = self.rewriter.as_mut()?;
            match self.input.next().await {
                Some(Ok(chunk)) => {
                    if let Err(e) = rewriter.write(&chunk) {
                        self.rewriter = None;
                        return Some((Err(failed(&e)), self));
                    }
                    let ready = self.take();
                    if !ready.is_empty() {
                        return Some((Ok(ready), self));
                    }
                }
                Some(Err(e)) => {
                    self.rewriter = None;
                    return Some((Err(e), self));
                }
                None => {
                    let rewriter = self.rewriter.take()?;
                    if let Err(e) = rewriter.end() {
                        return Some((Err(failed(&e)), self));
                    }
                    let rest = self.take();
                    return (!rest.is_empty()).then_some((Ok(rest), self));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(rewrite: &Rewrite, chunks: &[&'static str]) -> Result<String, Error> {
        futures::executor::block_on(async {
            let stream = futures::stream::iter(
                chunks
                    .iter()
                    .map(|c| Ok::<_, Error>(Bytes::from_static(c.as_bytes())))
                    .collect::<Vec<_>>(),
            );
            let out = rewrite
                .body(Body::from_stream(stream))
                .collect(1 << 20)
                .await?;
            Ok(String::from_utf8(out.to_vec()).unwrap())
        })
    }

    #[test]
    fn rules_apply_across_chunk_boundaries() {
        let rewrite = Rewrite::new()
            .append_html_to_head("<meta name=x>")
            .remove(".ad")
            .unwrap()
            .rewrite_attribute("img", "src", |v| Some(format!("/cdn{v}")))
            .unwrap();
        let out = run(
            &rewrite,
            &[
                "<html><he",
                "ad><title>t</title></head><body><div class=\"a",
                "d\">buy</div><img src=\"/a.png\"></body></html>",
            ],
        )
        .unwrap();
        assert_eq!(
            out,
            "<html><head><title>t</title><meta name=x></head><body><img src=\"/cdn/a.png\"></body></html>"
        );
    }

    #[test]
    fn bad_selectors_are_refused_when_added() {
        assert!(matches!(
            Rewrite::new().remove("div[[["),
            Err(RewriteError::InvalidSelector(_))
        ));
    }

    #[test]
    fn output_streams_as_input_arrives() {
        let rewrite = Rewrite::new().remove("script").unwrap();
        futures::executor::block_on(async {
            let (tx, rx) = futures::channel::mpsc::unbounded::<Result<Bytes, Error>>();
            let mut body = rewrite.body(Body::from_stream(rx));
            tx.unbounded_send(Ok(Bytes::from_static(b"<p>first</p><scr")))
                .unwrap();
            let first = body.next().await.unwrap().unwrap();
            assert_eq!(
                &first[..],
                b"<p>first</p>",
                "out before the rest of the page arrives"
            );
            tx.unbounded_send(Ok(Bytes::from_static(b"ipt>x()</script><p>end</p>")))
                .unwrap();
            drop(tx);
            let mut rest = Vec::new();
            while let Some(chunk) = body.next().await {
                rest.extend_from_slice(&chunk.unwrap());
            }
            assert_eq!(&rest[..], b"<p>end</p>");
        });
    }

    #[test]
    fn a_body_past_the_memory_limit_ends_with_an_error() {
        let rewrite = Rewrite::new().remove("div").unwrap().with_max_memory(1024);
        // An attribute value that never ends must be held whole.
        let huge: &'static str =
            Box::leak(format!("<div title=\"{}", "x".repeat(64 * 1024)).into_boxed_str());
        let result = run(&rewrite, &[huge, huge]);
        assert!(result.is_err(), "{result:?}");
    }
}
