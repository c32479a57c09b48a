//! The edge pipeline: the tower stack in front of the origin, built in one place for every host.
//!
//! Today the stack is the origin proxy alone. The SDK's request path grows here, outermost first: trace
//! context → WAF → JWT → rate limit → cache → edge-side render → origin proxy, each a tower layer added in
//! [`build`], so axum and bare hyper both get it.

use std::convert::Infallible;
use std::io;

use edge_core::Body;
use edge_core::fetch::hyper::HyperFetcher;
use edge_core::wait_until::TokioWaitUntil;
use http::{Request, Response, Uri};
use tower::util::BoxCloneSyncService;

use crate::config::GatewayConfig;
use crate::origin::DemoOrigin;
use crate::proxy::OriginProxy;

/// The pipeline as one cloneable, thread-safe service over [`edge_core::Body`]. It never fails: every error
/// is already an HTTP response.
pub type EdgeService = BoxCloneSyncService<Request<Body>, Response<Body>, Infallible>;

/// A started pipeline: the service, the demo origin if one was started, and the post-response work.
#[derive(Debug)]
pub struct Edge {
    service: EdgeService,
    origin_url: Uri,
    background: TokioWaitUntil,
    _demo_origin: Option<DemoOrigin>,
}

impl Edge {
    /// Builds the pipeline for `config`, starting the embedded demo origin unless an origin is configured.
    /// Must be called inside a tokio runtime.
    ///
    /// # Errors
    ///
    /// The demo origin's port could not be bound, or there is no tokio runtime.
    pub async fn start(config: &GatewayConfig) -> io::Result<Self> {
        let (origin_url, demo_origin) = match &config.origin {
            Some(origin) => (origin.clone(), None),
            None => {
                let demo = DemoOrigin::start().await?;
                let url = demo
                    .url()
                    .parse()
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                (url, Some(demo))
            }
        };
        let background = TokioWaitUntil::current().map_err(io::Error::other)?;
        let fetcher = HyperFetcher::new().with_timeout(config.origin_timeout);
        let service = build(fetcher, origin_url.clone());
        Ok(Self {
            service,
            origin_url,
            background,
            _demo_origin: demo_origin,
        })
    }

    /// The pipeline, ready to be served. Clones are cheap and share everything.
    #[must_use]
    pub fn service(&self) -> EdgeService {
        self.service.clone()
    }

    /// The origin requests are forwarded to.
    #[must_use]
    pub fn origin_url(&self) -> &Uri {
        &self.origin_url
    }

    /// Waits for post-response work (span export, cache writes) to finish; call before exiting.
    pub async fn drain(&self) {
        self.background.drain().await;
    }
}

/// Builds the tower stack over `fetcher`, forwarding to `origin`.
pub fn build<F>(fetcher: F, origin: Uri) -> EdgeService
where
    F: edge_core::Fetcher + 'static,
{
    let stack = tower::ServiceBuilder::new().service(OriginProxy::new(fetcher, origin));
    BoxCloneSyncService::new(stack)
}
