//! (feature `tower`) `HintsLayer`: `Link` hints from a [`BundleManifest`] on every HTML response,
//! chosen for the client's connection.

use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use edge_core::{BoxFuture, MaybeSend};
use http::{Request, Response, header};
use tower::{Layer, Service};

use super::{BundleManifest, Ect, save_data};

/// Adds the manifest's hints for the request's path to HTML responses.
#[derive(Clone, Debug)]
pub struct HintsLayer {
    manifest: Arc<Manifest>,
}

/// Builds a manifest on first use.
type MakeManifest = Box<dyn Fn() -> BundleManifest + Send + Sync>;

/// The manifest, read at construction or on the first request that needs it.
struct Manifest {
    read: OnceLock<BundleManifest>,
    make: Option<MakeManifest>,
}

impl std::fmt::Debug for Manifest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manifest")
            .field("read", &self.read)
            .field("lazy", &self.make.is_some())
            .finish()
    }
}

impl Manifest {
    fn get(&self) -> &BundleManifest {
        self.read
            .get_or_init(|| self.make.as_ref().map(|make| make()).unwrap_or_default())
    }
}

impl HintsLayer {
    /// Hints from `manifest`.
    #[must_use]
    pub fn new(manifest: BundleManifest) -> Self {
        let read = OnceLock::new();
        let _ = read.set(manifest);
        Self {
            manifest: Arc::new(Manifest { read, make: None }),
        }
    }

    /// Hints from the manifest `make` builds (from a constant, a file, a KV value it captured), on the
    /// first request that reaches the layer: for hosts where start-up time counts (a Worker's first request
    /// compiles whatever it runs, a manifest's JSON reader included). `make` runs once and decides what a
    /// manifest that cannot be read becomes (no hints, say).
    ///
    /// ```
    /// use edge_render::hints::BundleManifest;
    /// use edge_render::hints::layer::HintsLayer;
    ///
    /// const MANIFEST: &str = r#"{"src/main.ts":{"file":"assets/main.js","isEntry":true}}"#;
    /// let layer = HintsLayer::lazy(|| {
    ///     BundleManifest::from_json(MANIFEST.as_bytes(), "/")
    ///         .map(|manifest| manifest.route("/", "src/main.ts"))
    ///         .unwrap_or_default()
    /// });
    /// # let _ = layer;
    /// ```
    #[must_use]
    pub fn lazy(make: impl Fn() -> BundleManifest + Send + Sync + 'static) -> Self {
        Self {
            manifest: Arc::new(Manifest {
                read: OnceLock::new(),
                make: Some(Box::new(make)),
            }),
        }
    }
}

impl<S> Layer<S> for HintsLayer {
    type Service = Hints<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Hints {
            inner,
            manifest: Arc::clone(&self.manifest),
        }
    }
}

/// The service [`HintsLayer`] makes.
#[derive(Clone, Debug)]
pub struct Hints<S> {
    inner: S,
    manifest: Arc<Manifest>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Hints<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: MaybeSend + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<ResBody>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let link = self.manifest.get().link_header(
            request.uri().path(),
            Ect::from_headers(request.headers()),
            save_data(request.headers()),
        );
        let future = self.inner.call(request);
        Box::pin(async move {
            let mut response = future.await?;
            let html = response
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|t| t.starts_with("text/html"));
            if let (true, Some(link)) = (html, link) {
                response.headers_mut().append(header::LINK, link);
            }
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use super::*;

    fn manifest() -> BundleManifest {
        let json =
            r#"{"src/main.ts":{"file":"assets/main.js","isEntry":true,"css":["assets/main.css"]}}"#;
        BundleManifest::from_json(json.as_bytes(), "/")
            .map(|manifest| manifest.route("/", "src/main.ts"))
            .unwrap_or_default()
    }

    fn link(layer: &HintsLayer) -> Option<http::HeaderValue> {
        let mut service = layer.layer(tower::service_fn(|_request: Request<()>| async {
            let mut response = Response::new(());
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, "text/html".parse().unwrap());
            Ok::<_, Infallible>(response)
        }));
        let response = futures::executor::block_on(service.call(Request::new(()))).unwrap();
        response.headers().get(header::LINK).cloned()
    }

    #[test]
    fn a_lazy_manifest_gives_the_hints_an_eager_one_does() {
        let eager = link(&HintsLayer::new(manifest()));
        assert!(eager.is_some());
        assert_eq!(link(&HintsLayer::lazy(manifest)), eager);
        let base = String::from("/");
        let captured = HintsLayer::lazy(move || {
            let json = r#"{"src/main.ts":{"file":"assets/main.js","isEntry":true,"css":["assets/main.css"]}}"#;
            BundleManifest::from_json(json.as_bytes(), &base)
                .map(|manifest| manifest.route("/", "src/main.ts"))
                .unwrap_or_default()
        });
        assert_eq!(
            link(&captured),
            eager,
            "a closure may capture what it reads"
        );
        // A manifest `make` cannot read becomes what it says: here, no hints.
        assert_eq!(link(&HintsLayer::lazy(BundleManifest::default)), None);
    }
}
