//! The edge gateway on axum.
//!
//! Run it with `cargo run -p edge-example-gateway` and open <http://127.0.0.1:8787/>: it starts its own demo
//! origin on a loopback port and serves it through the edge pipeline (`--help` lists the settings).
//!
//! axum's part is small on purpose: it owns the listener, the gateway's own endpoints (`/_edge/health`) and
//! graceful shutdown; every other request goes to the shared pipeline
//! ([`edge_example_pipeline::pipeline`]), the same one `examples/hyper-server` serves.

use std::future::Future;
use std::io;

use axum::Router;
use axum::routing::get;
use edge_core::Body;
use edge_example_pipeline::EdgeService;
use http::Request;
use tokio::net::TcpListener;
use tower::ServiceExt;

/// The axum app: the gateway's own routes, then the edge pipeline for everything else.
pub fn app(edge: EdgeService) -> Router {
    let edge =
        edge.map_request(|request: Request<axum::body::Body>| request.map(Body::from_http_body));
    Router::new()
        .route("/_edge/health", get(|| async { "ok\n" }))
        .fallback_service(edge)
}

/// Serves `edge` on `listener` until `shutdown` resolves, then finishes the requests in flight.
///
/// # Errors
///
/// The listener failed.
pub async fn serve(
    listener: TcpListener,
    edge: EdgeService,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    axum::serve(listener, app(edge))
        .with_graceful_shutdown(shutdown)
        .await
}
