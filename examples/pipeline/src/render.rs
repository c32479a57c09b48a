//! Edge-side rendering in the pipeline: `/shell`, a page written at the edge shell first, its
//! personalised section streamed in when the (slow) data arrives; the ESI assembler for `/esi/`; `Link`
//! preload hints on HTML pages.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use edge_core::{Body, BoxFuture, Fetcher};
use edge_render::esi::Variables;
use edge_render::hints::BundleManifest;
use edge_render::html::{self, HtmlError, HtmlSettings, HtmlWriter};
use futures_util::{FutureExt, StreamExt};
use http::{HeaderValue, Request, Response, Uri, header};

/// The demo bundle's manifest (Vite's format): the home and shell pages' scripts and styles.
pub const DEMO_MANIFEST: &str = r#"{
  "src/main.ts": { "file": "assets/main-4f1c.js", "css": ["assets/main-9a0e.css"], "imports": ["_vendor.js"], "dynamicImports": ["src/cart.ts"], "isEntry": true },
  "_vendor.js": { "file": "assets/vendor-77b2.js" },
  "src/cart.ts": { "file": "assets/cart-2d6a.js", "isDynamicEntry": true }
}"#;

/// The demo manifest with its routes: every page starts at `src/main.ts`.
///
/// # Errors
///
/// Never in practice (the manifest is a constant); the type is the reader's.
pub fn demo_manifest() -> Result<BundleManifest, edge_render::hints::ManifestError> {
    Ok(BundleManifest::from_json(DEMO_MANIFEST.as_bytes(), "/")?.route("/", "src/main.ts"))
}

/// Answers `GET /shell` itself and passes everything else on.
pub struct ShellPage<S, F> {
    inner: S,
    fetcher: Arc<F>,
    /// Shared: the service is cloned per request.
    origin: Arc<Uri>,
}

impl<S: Clone, F> Clone for ShellPage<S, F> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            fetcher: Arc::clone(&self.fetcher),
            origin: Arc::clone(&self.origin),
        }
    }
}

impl<S, F> std::fmt::Debug for ShellPage<S, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShellPage")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl<S, F> ShellPage<S, F> {
    /// `/shell` over `inner`, its data fetched from `origin` through `fetcher`.
    pub fn new(inner: S, fetcher: Arc<F>, origin: Uri) -> Self {
        Self {
            inner,
            fetcher,
            origin: Arc::new(origin),
        }
    }
}

/// The page: the shell at once (the visitor's name escaped), then the recommendations when they come.
async fn write_page<F: Fetcher>(
    mut page: HtmlWriter,
    fetcher: Arc<F>,
    data: Uri,
    name: String,
) -> Result<(), HtmlError> {
    page.doctype()?;
    page.raw_html_unchecked("<html><head><title>Edge-rendered</title></head><body>")?;
    page.open("h1")?.finish()?;
    page.text(&format!("Hello, {name}"))?;
    page.close("h1")?;
    page.open("p")?.attr("class", "shell")?.finish()?;
    page.text("The shell left the edge before the personalised part below was ready.")?;
    page.close("p")?;
    page.flush().await?;
    let request = Request::get(data)
        .body(Body::empty())
        .map_err(|_| HtmlError::Closed)?;
    let items: Vec<String> = match fetcher.fetch(request).await {
        Ok(response) => match response.into_body().collect(64 * 1024).await {
            Ok(bytes) => serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v.get("items").cloned())
                .and_then(|v| serde_json::from_value(v).ok())
                .unwrap_or_default(),
            Err(_) => Vec::new(),
        },
        Err(_) => Vec::new(),
    };
    page.open("section")?.attr("id", "recommended")?.finish()?;
    if items.is_empty() {
        page.text("No recommendations right now.")?;
    }
    for item in &items {
        page.open("li")?.finish()?;
        page.text(item)?;
        page.close("li")?;
    }
    page.close("section")?;
    page.json_script(
        "state",
        &serde_json::json!({ "user": name, "items": items }),
    )?;
    page.raw_html_unchecked("</body></html>")?;
    page.finish().await
}

impl<S, F> tower::Service<Request<Body>> for ShellPage<S, F>
where
    S: tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
    S::Future: edge_core::MaybeSend + 'static,
    F: Fetcher + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        if request.method() != http::Method::GET || request.uri().path() != "/shell" {
            return Box::pin(self.inner.call(request));
        }
        // The query read as ESI reads it (percent-decoded), so both kinds of page agree.
        let query = Variables::from_request(request.headers(), request.uri().query(), None);
        let name = query
            .get("QUERY_STRING", Some("name"))
            .map_or_else(|| "guest".to_owned(), |v| v.as_text().to_owned());
        let ms = query
            .get("QUERY_STRING", Some("ms"))
            .and_then(|v| v.as_text().parse::<u64>().ok())
            .unwrap_or(700);
        let data = format!(
            "{}://{}/api/recommendations?ms={ms}",
            self.origin.scheme_str().unwrap_or("http"),
            self.origin.authority().map_or("localhost", |a| a.as_str())
        );
        let Ok(data) = data.parse::<Uri>() else {
            return Box::pin(self.inner.call(request));
        };
        let (writer, body) = html::stream(HtmlSettings::default());
        let writing = write_page(writer, Arc::clone(&self.fetcher), data, name);
        // The body drives the writer: no task is spawned, so the same page renders in a Worker.
        let pieces =
            futures_util::stream::select(body.map(Some), writing.into_stream().map(|_| None))
                .filter_map(std::future::ready);
        let mut response = Response::new(Body::from_stream(pieces));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, no-store"),
        );
        Box::pin(async move { Ok(response) })
    }
}
