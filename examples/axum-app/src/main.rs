//! The to-do app with the edge SDK, on `127.0.0.1:3000` (or the address in `AXUM_APP_ADDR`).

use std::net::SocketAddr;

use edge_core::host::tokio::TokioHost;
use edge_example_axum_app::app::AppState;
use edge_example_axum_app::{EdgeConfig, Telemetry, demo_token, router};
use tracing_subscriber::layer::SubscriberExt;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr: SocketAddr = std::env::var("AXUM_APP_ADDR")
        .unwrap_or_else(|_| "127.0.0.1:3000".to_owned())
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let host = TokioHost::new().map_err(std::io::Error::other)?;
    let mut config = EdgeConfig::demo();
    config.otlp_endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok();
    // With a collector, the app's own spans go there too, as children of each request's span.
    let telemetry = match &config.otlp_endpoint {
        Some(endpoint) => {
            let telemetry = Telemetry::new(endpoint, &host).map_err(std::io::Error::other)?;
            let subscriber = tracing_subscriber::registry().with(telemetry.tracing_layer());
            tracing::subscriber::set_global_default(subscriber).map_err(std::io::Error::other)?;
            Some(telemetry)
        }
        None => None,
    };
    let app = router(AppState::default(), config, &host, telemetry.as_ref());
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
    if let Some(telemetry) = &telemetry {
        telemetry.flush().await;
    }
    Ok(())
}
