//! `hyper-server`: the edge pipeline on bare hyper, in front of an embedded demo origin.
//!
//! ```text
//! cargo run -p edge-example-hyper-server                 # http://127.0.0.1:8787
//! ```

use std::process::ExitCode;

use edge_example_pipeline::Edge;
use edge_example_pipeline::config::{GatewayConfig, USAGE};

#[tokio::main]
async fn main() -> ExitCode {
    if std::env::args().any(|a| a == "--help" || a == "-h") {
        println!("hyper-server: the edge pipeline on bare hyper\n\n{USAGE}");
        return ExitCode::SUCCESS;
    }
    let config = match GatewayConfig::from_env_and_args() {
        Ok(config) => config,
        Err(message) => {
            eprintln!("hyper-server: {message}");
            return ExitCode::from(2);
        }
    };
    match run(&config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hyper-server: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: &GatewayConfig) -> std::io::Result<()> {
    let edge = Edge::start(config).await?;
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    println!(
        "edge (bare hyper) listening on http://{}",
        listener.local_addr()?
    );
    println!("origin: {}", edge.origin_url());
    let shutdown = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    edge_example_hyper_server::serve(listener, &edge, shutdown).await?;
    edge.drain().await;
    Ok(())
}
