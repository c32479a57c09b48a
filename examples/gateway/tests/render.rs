//! Edge-side rendering through the axum gateway over real loopback HTTP: the ESI page's bytes before its
//! slow fragment arrive at once, the edge-rendered shell leaves before its data, hints ride on HTML.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::start;

use std::time::{Duration, Instant};

use edge_core::host::tokio::HyperFetcher;
use edge_core::{Body, Fetcher};
use edge_example_pipeline::GatewayConfig;
use futures_util::StreamExt;
use http::{Request, StatusCode};

/// The response head, then each body chunk with when it arrived.
async fn timed(base: &str, path: &str) -> (http::response::Parts, Vec<(Duration, Vec<u8>)>) {
    let started = Instant::now();
    let request = Request::get(format!("{base}{path}"))
        .body(Body::empty())
        .unwrap();
    let response = HyperFetcher::new().fetch(request).await.unwrap();
    let (parts, mut body) = response.into_parts();
    let mut chunks = Vec::new();
    while let Some(chunk) = body.next().await {
        chunks.push((started.elapsed(), chunk.unwrap().to_vec()));
    }
    (parts, chunks)
}

fn text(chunks: &[(Duration, Vec<u8>)]) -> String {
    String::from_utf8(chunks.iter().flat_map(|(_, c)| c.clone()).collect()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_esi_page_streams_before_its_slow_fragment() {
    let gateway = start(GatewayConfig::default()).await;
    let (head, chunks) = timed(&gateway.base, "/esi/page?name=%3CAda%3E").await;
    assert_eq!(head.status, StatusCode::OK);
    let page = text(&chunks);
    assert!(
        page.contains("<header><a href=\"/\">Demo shop</a></header>"),
        "{page}"
    );
    assert!(
        page.contains("Hello, %3CAda%3E") || page.contains("Hello, &lt;Ada&gt;"),
        "{page}"
    );
    assert!(page.contains("Recommended: Hand grinder"), "{page}");
    assert!(
        page.contains("Offers are unavailable right now."),
        "the broken fragment's alt: {page}"
    );
    assert!(
        !page.contains("<esi:") && !page.contains("does not speak ESI"),
        "{page}"
    );
    // Time to first byte does not wait for the 800 ms fragment that comes later in the document.
    let (first, _) = &chunks[0];
    let (last, _) = chunks.last().unwrap();
    assert!(
        *last >= Duration::from_millis(800),
        "the slow fragment took its time: {last:?}"
    );
    assert!(
        *first + Duration::from_millis(500) < *last,
        "first bytes at {first:?}, the rest at {last:?}"
    );
    assert!(String::from_utf8_lossy(&chunks[0].1).contains("<!DOCTYPE html>"));
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shell_leaves_before_its_personalised_section() {
    let gateway = start(GatewayConfig::default()).await;
    let (head, chunks) = timed(&gateway.base, "/shell?name=%3Cb%3EAda%3C%2Fb%3E&ms=700").await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.headers["cache-control"], "private, no-store");
    let page = text(&chunks);
    assert!(
        page.contains("Hello, &lt;b&gt;Ada&lt;/b&gt;"),
        "the name is escaped: {page}"
    );
    assert!(
        page.contains("<li>Pour-over kettle &lt;limited&gt;</li>"),
        "{page}"
    );
    assert!(
        page.contains(r#"\u003cb\u003eAda\u003c/b\u003e"#),
        "json for the script is escaped: {page}"
    );
    let shell_at = chunks
        .iter()
        .find(|(_, c)| String::from_utf8_lossy(c).contains("class=\"shell\""))
        .map(|(at, _)| *at)
        .unwrap();
    let section_at = chunks
        .iter()
        .find(|(_, c)| String::from_utf8_lossy(c).contains("recommended"))
        .map(|(at, _)| *at)
        .unwrap();
    assert!(
        shell_at + Duration::from_millis(400) < section_at,
        "shell {shell_at:?}, section {section_at:?}"
    );
    gateway.stop().await;
}

#[tokio::test]
async fn html_pages_carry_preload_hints_for_the_connection() {
    let gateway = start(GatewayConfig::default()).await;
    let (head, _) = timed(&gateway.base, "/about").await;
    let link = head.headers["link"].to_str().unwrap().to_owned();
    assert!(
        link.contains("</assets/main-4f1c.js>; rel=modulepreload"),
        "{link}"
    );
    assert!(
        link.contains("</assets/main-9a0e.css>; rel=preload; as=style"),
        "{link}"
    );
    assert!(link.contains("rel=prefetch"), "{link}");
    // On 2g the prefetch is left out.
    let request = Request::get(format!("{}/about", gateway.base))
        .header("ect", "2g")
        .body(Body::empty())
        .unwrap();
    let slow = HyperFetcher::new().fetch(request).await.unwrap();
    assert!(
        !slow.headers()["link"]
            .to_str()
            .unwrap()
            .contains("prefetch")
    );
    // JSON is not hinted.
    let (api, _) = timed(&gateway.base, "/api/products").await;
    assert!(api.headers.get("link").is_none());
    gateway.stop().await;
}
