//! The demo origin alone, on a free loopback port: what the Worker's tests in workerd proxy to (the gateway
//! starts the same origin inside its own process).
//!
//! ```text
//! cargo run -p edge-example-pipeline --bin demo-origin
//! ```
//!
//! Prints its URL on the first line of standard output, then serves until standard input closes (so a
//! test harness that spawned it stops it by exiting) or the process is killed.

#[cfg(not(target_arch = "wasm32"))]
#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    use tokio::io::AsyncReadExt;
    let origin = edge_example_pipeline::origin::DemoOrigin::start().await?;
    println!("{}", origin.url());
    let mut stdin = tokio::io::stdin();
    let mut sink = [0u8; 64];
    while stdin.read(&mut sink).await? > 0 {}
    drop(origin);
    Ok(())
}

#[cfg(target_arch = "wasm32")]
fn main() {}
