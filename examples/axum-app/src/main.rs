//! The to-do app with the edge SDK, on `127.0.0.1:3000` (or the address in `AXUM_APP_ADDR`).

use std::net::SocketAddr;

use edge_core::host::TokioHost;
use edge_example_axum_app::app::AppState;
use edge_example_axum_app::{EdgeConfig, demo_token, router};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr: SocketAddr = std::env::var("AXUM_APP_ADDR")
        .unwrap_or_else(|_| "127.0.0.1:3000".to_owned())
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let host = TokioHost::new().map_err(std::io::Error::other)?;
    let app = router(AppState::default(), EdgeConfig::demo(), &host);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    println!("listening on http://{}", listener.local_addr()?);
    println!(
        "a token for alice, valid for an hour: {}",
        demo_token("alice", now)
    );
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    // Post-response work (cache fills, span exports) finishes before the process does.
    host.drain().await;
    Ok(())
}
