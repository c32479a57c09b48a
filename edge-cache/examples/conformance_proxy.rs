//! A cache-only reverse proxy built from the SDK's public API, for the HTTP caching conformance suite
//! (`http-cache-tests`, run by `scripts/cache-tests.sh`): [`CacheLayer`] with a memory tier in front of
//! one origin, served over HTTP/1.1 by `edge_core::server`, on its default settings.
//!
//! ```text
//! cargo run -p edge-cache --features tower --example conformance_proxy -- 127.0.0.1:8001 http://127.0.0.1:8000
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;

use edge_cache::layer::CacheLayer;
use edge_cache::memory::MemoryCache;
use edge_core::fetch::Unreachable;
use edge_core::fetch::hyper::HyperFetcher;
use edge_core::server::{ServerLimits, serve};
use edge_core::wait_until::TokioWaitUntil;
use edge_core::{Body, Fetcher, SystemClock};
use http::uri::{PathAndQuery, Uri};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use tower::{Layer, ServiceExt};

/// The headers that describe one connection, not the message (RFC 9110 §7.6.1).
#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(origin)) = (args.next(), args.next()) else {
        eprintln!("usage: conformance_proxy <listen ip:port> <origin url>");
        return ExitCode::from(2);
    };
    let (Ok(listen), Ok(origin)) = (listen.parse::<SocketAddr>(), origin.parse::<Uri>()) else {
        eprintln!("conformance_proxy: `<ip:port> <http://host:port>` expected");
        return ExitCode::from(2);
    };
    match run(listen, origin).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("conformance_proxy: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(listen: SocketAddr, origin: Uri) -> std::io::Result<()> {
    let background = TokioWaitUntil::current().map_err(std::io::Error::other)?;
    let fetcher = HyperFetcher::new();
    let to_origin = tower::service_fn(move |request: Request<Body>| {
        let (fetcher, origin) = (fetcher.clone(), origin.clone());
        async move { Ok::<_, Infallible>(forward(&fetcher, &origin, request).await) }
    });
    let cache = CacheLayer::new(SystemClock::new(), background)
        .memory(MemoryCache::new(64 << 20, SystemClock::new()))
        .layer(to_origin);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("conformance proxy on http://{}", listener.local_addr()?);
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    serve(
        listener,
        ServerLimits::default(),
        move |_peer| {
            cache
                .clone()
                .map_request(|request: Request<Incoming>| request.map(Body::from_http_body))
        },
        shutdown,
    )
    .await
}

/// Sends `request` to the origin, its path and query kept, and passes the answer back.
async fn forward(fetcher: &HyperFetcher, origin: &Uri, request: Request<Body>) -> Response<Body> {
    let (mut parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let mut uri = Uri::builder().path_and_query(path);
    if let (Some(scheme), Some(authority)) = (origin.scheme(), origin.authority()) {
        uri = uri.scheme(scheme.clone()).authority(authority.clone());
    }
    let Ok(uri) = uri.build() else {
        return status(StatusCode::BAD_REQUEST);
    };
    parts.uri = uri;
    edge_core::hop::remove_hop_by_hop(&mut parts.headers);
    match fetcher.fetch(Request::from_parts(parts, body)).await {
        Ok(mut response) => {
            edge_core::hop::remove_hop_by_hop(response.headers_mut());
            response
        }
        Err(error) => {
            let mut response = status(StatusCode::BAD_GATEWAY);
            response.extensions_mut().insert(Unreachable(error));
            response
        }
    }
}

fn status(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    response
}
