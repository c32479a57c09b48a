//! `bare-axum`: the yardstick `scripts/load-test.sh` measures the gateway against — a plain axum server
//! (`axum::serve`, the multi-threaded runtime the gateway also uses) answering every GET with one page, as
//! cacheable HTML, and nothing else: no edge layers.
//!
//! ```text
//! cargo run --release -p edge-example-gateway --bin bare-axum -- --port 8788 --page page.html
//! ```

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use axum::http::header;
use bytes::Bytes;

#[tokio::main]
async fn main() -> ExitCode {
    let mut port = 8788u16;
    let mut page = Bytes::from_static(b"<!doctype html><title>hello</title><p>Hello, world.</p>");
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next();
        match (flag.as_str(), value) {
            ("--port", Some(value)) => match value.parse() {
                Ok(value) => port = value,
                Err(_) => return usage(&format!("--port {value}: not a port")),
            },
            ("--page", Some(path)) => match std::fs::read(&path) {
                Ok(bytes) => page = Bytes::from(bytes),
                Err(e) => return usage(&format!("--page {path}: {e}")),
            },
            _ => return usage(&format!("unknown argument {flag}")),
        }
    }
    let app = axum::Router::new().fallback(move || {
        let page = page.clone();
        async move {
            (
                [
                    (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                    (header::CACHE_CONTROL, "public, max-age=60"),
                ],
                page,
            )
        }
    });
    let listener =
        match tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await {
            Ok(listener) => listener,
            Err(e) => return usage(&format!("cannot listen on port {port}: {e}")),
        };
    println!("bare axum listening on http://127.0.0.1:{port}");
    match axum::serve(listener, app).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bare-axum: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage(problem: &str) -> ExitCode {
    eprintln!("bare-axum: {problem}\nusage: bare-axum [--port <n>] [--page <file>]");
    ExitCode::from(2)
}
