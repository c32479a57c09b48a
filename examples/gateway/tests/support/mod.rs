//! What the gateway's loopback tests share: the gateway on an ephemeral port, with its embedded origin.
// Each test file uses what it needs of this module.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use edge_example_pipeline::Edge;
use edge_example_pipeline::GatewayConfig;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// A gateway serving on loopback.
pub(crate) struct Running {
    /// `http://127.0.0.1:PORT`.
    pub(crate) base: String,
    /// The pipeline behind it.
    pub(crate) edge: Edge,
    stop: oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Starts the gateway with `config` on an ephemeral loopback port.
pub(crate) async fn start(config: GatewayConfig) -> Running {
    let edge = Edge::start(&config).await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(edge_example_gateway::serve(listener, &edge, async {
        let _ = stopped.await;
    }));
    Running {
        base,
        edge,
        stop,
        server,
    }
}

impl Running {
    /// Shuts the gateway down gracefully and checks it served without error.
    pub(crate) async fn stop(self) {
        self.stop.send(()).unwrap();
        self.server.await.unwrap().unwrap();
    }
}
