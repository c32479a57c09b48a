//! A cache-only reverse proxy built from the SDK's public API, for the HTTP caching conformance suite
//! (`http-cache-tests`, run by `scripts/cache-tests.sh`): [`CacheLayer`] with a memory tier in front of
//! one origin (`edge_core::host::OriginProxy`), served over HTTP/1.1 by `edge_core::host::tokio`, on its default
//! settings.
//!
//! ```text
//! cargo run -p edge-cache --features tower --example conformance_proxy -- 127.0.0.1:8001 http://127.0.0.1:8000
//! ```

use std::net::SocketAddr;
use std::process::ExitCode;

use edge_cache::layer::CacheLayer;
use edge_cache::memory::MemoryCache;
use edge_core::SystemClock;
use edge_core::host::OriginProxy;
use edge_core::host::tokio::HyperFetcher;
use edge_core::host::tokio::TokioWaitUntil;
use edge_core::host::tokio::{ServerLimits, serve};
use http::uri::Uri;
use tower::Layer;

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
    let cache = CacheLayer::new(SystemClock::new(), background)
        .memory(MemoryCache::new(64 << 20, SystemClock::new()))
        .layer(OriginProxy::new(HyperFetcher::new(), origin));
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("conformance proxy on http://{}", listener.local_addr()?);
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    serve(
        listener,
        ServerLimits::default(),
        move |_peer| cache.clone(),
        shutdown,
    )
    .await
}
