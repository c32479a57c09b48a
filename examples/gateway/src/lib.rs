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

use std::net::SocketAddr;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::get;
use edge_auth::ratelimit::ClientIp;
use edge_core::Body;
use edge_example_pipeline::EdgeService;
use http::Request;
use tokio::net::TcpListener;
use tower::ServiceExt;

/// The axum app: the gateway's own routes, then the edge pipeline for everything else.
pub fn app(edge: EdgeService) -> Router {
    let edge = edge.map_request(|request: Request<axum::body::Body>| {
        let mut request = request.map(Body::from_http_body);
        // The connection's address, for per-client rate limits (present when served with connect info).
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip());
        if let Some(ip) = peer {
            request.extensions_mut().insert(ClientIp(ip));
        }
        request
    });
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
    axum::serve(
        listener,
        app(edge).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
