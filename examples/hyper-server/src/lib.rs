//! The edge pipeline on bare hyper 1.x: no axum, no router, just connections and the shared tower stack.
//!
//! Run it with `cargo run -p edge-example-hyper-server`; it answers exactly as the axum gateway does, because
//! both serve [`edge_example_pipeline::pipeline`].

use std::future::Future;
use std::io;

use edge_core::host::tokio::serve as serve_http1;
use edge_example_pipeline::Edge;
use tokio::net::TcpListener;

/// Serves `edge` on `listener` with HTTP/1.1 until `shutdown` resolves, then waits for the connections in
/// flight to finish their current request. The connections are held to the edge's
/// [`server_limits`](Edge::server_limits) (header-read and request timeouts, a connection cap, a body
/// cap, `Host` checks) by [`edge_core::host::tokio::serve`], which also gives each request its peer's address
/// as [`ClientIp`](edge_core::ClientIp) for the rate limits.
///
/// The returned future owns everything it needs (so it can be spawned).
///
/// # Errors
///
/// Never in practice: accept errors (such as running out of file descriptors) are waited out, as axum does.
pub fn serve(
    listener: TcpListener,
    edge: &Edge,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> impl Future<Output = io::Result<()>> + Send + 'static {
    let (service, limits) = (edge.service(), edge.server_limits());
    serve_http1(listener, limits, move |_peer| service.clone(), shutdown)
}
