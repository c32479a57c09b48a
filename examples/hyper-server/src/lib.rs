//! The edge pipeline on bare hyper 1.x: no axum, no router, just connections and the shared tower stack.
//!
//! Run it with `cargo run -p edge-example-hyper-server`; it answers exactly as the axum gateway does, because
//! both serve [`edge_example_pipeline::pipeline`].

use std::future::Future;
use std::io;
use std::time::Duration;

use edge_auth::ratelimit::ClientIp;
use edge_core::Body;
use edge_example_pipeline::EdgeService;
use http::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt;

/// Serves `edge` on `listener` with HTTP/1.1 until `shutdown` resolves, then waits for the connections in
/// flight to finish their current request.
///
/// # Errors
///
/// Never in practice: accept errors (such as running out of file descriptors) are waited out, as axum does.
pub async fn serve(
    listener: TcpListener,
    edge: EdgeService,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let client = ClientIp(peer.ip());
                let service = edge.clone().map_request(move |request: Request<Incoming>| {
                    let mut request = request.map(Body::from_http_body);
                    request.extensions_mut().insert(client);
                    request
                });
                let connection = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    // A client that resets its connection is not a server error.
                    let _ = connection.await;
                });
            }
            () = &mut shutdown => break,
        }
    }
    graceful.shutdown().await;
    Ok(())
}
