//! `CacheLayer` as a tower service: the purge endpoint keys exactly as lookups do, reports what it
//! removed, and a request with a bad line purges nothing.
#![cfg(feature = "tower")]
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::convert::Infallible;

use edge_cache::layer::CacheLayer;
use edge_cache::memory::MemoryCache;
use edge_core::wait_until::QueuedWaitUntil;
use edge_core::{Body, ManualClock};
use http::{Method, Request, Response, header};
use tower::{Layer, ServiceExt};

fn cached_origin() -> edge_cache::layer::Cache<ManualClock> {
    let clock = ManualClock::new();
    let origin = tower::service_fn(|_req: Request<Body>| async {
        let mut response = Response::new(Body::from("page"));
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, "max-age=600".parse().unwrap());
        Ok::<_, Infallible>(response)
    });
    CacheLayer::new(clock.clone(), QueuedWaitUntil::new())
        .memory(MemoryCache::new(1 << 20, clock))
        .purge_endpoint("/_purge", "secret")
        .layer(origin)
}

fn page(path: &str) -> Request<Body> {
    Request::builder()
        .uri(path)
        .header(header::HOST, "shop.example")
        .body(Body::empty())
        .unwrap()
}

fn purge(lines: &str) -> Request<Body> {
    Request::builder()
        .method(Method::POST)
        .uri("/_purge")
        .header(header::AUTHORIZATION, "Bearer secret")
        .body(Body::from(lines.to_owned()))
        .unwrap()
}

async fn text(response: Response<Body>) -> String {
    String::from_utf8(
        response
            .into_body()
            .collect(1 << 16)
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap()
}

#[tokio::test]
async fn purge_keys_as_lookups_do_and_reports_what_it_removed() {
    let cache = cached_origin();
    for path in ["/a", "/b"] {
        cache.clone().oneshot(page(path)).await.unwrap();
    }
    let status = |r: &Response<Body>| r.headers()["x-cache-status"].to_str().unwrap().to_owned();
    assert_eq!(
        status(&cache.clone().oneshot(page("/a")).await.unwrap()),
        "HIT"
    );

    // A bad line anywhere: nothing is purged.
    let bad = cache
        .clone()
        .oneshot(purge("url http://shop.example/a\nurl /relative\n"))
        .await
        .unwrap();
    assert_eq!(bad.status(), http::StatusCode::BAD_REQUEST);
    assert_eq!(
        status(&cache.clone().oneshot(page("/a")).await.unwrap()),
        "HIT"
    );

    let done = cache
        .clone()
        .oneshot(purge(
            "url http://shop.example/a\nurl http://shop.example/never\n",
        ))
        .await
        .unwrap();
    assert_eq!(
        text(done).await,
        "purged 1 of 2 urls (the others were not cached) and 0 tagged entries\n"
    );
    assert_eq!(
        status(&cache.clone().oneshot(page("/a")).await.unwrap()),
        "MISS"
    );
    assert_eq!(status(&cache.oneshot(page("/b")).await.unwrap()), "HIT");
}

/// A service that fails instead of answering is an unreachable origin: the user's responder shapes the
/// answer, which still leaves uncacheable and with the cache's `Cache-Status`; a stale copy stands in
/// when the origin's directives allow it.
#[tokio::test]
async fn origin_failures_go_through_the_responder() {
    let clock = ManualClock::new();
    let origin = tower::service_fn(|request: Request<Body>| async move {
        if request.uri().path() == "/down" {
            return Err(std::io::Error::other("connection refused"));
        }
        Ok(Response::new(Body::from("up")))
    });
    let service = CacheLayer::new(clock.clone(), QueuedWaitUntil::new())
        .memory(MemoryCache::new(1 << 20, clock))
        .respond_with(|error| {
            let mut response = Response::new(Body::from(format!("sorry: {}", error.kind())));
            *response.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
            response
        })
        .layer(origin);
    let response = service.clone().oneshot(page("/down")).await.unwrap();
    assert_eq!(response.status(), http::StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
    assert!(response.headers().get("cache-status").is_some());
    assert!(text(response).await.starts_with("sorry: "));
    let up = service.oneshot(page("/up")).await.unwrap();
    assert_eq!(text(up).await, "up");
}

/// Responses served from the cache carry their stored length, HEAD included.
#[tokio::test]
async fn hits_and_head_carry_the_stored_length() {
    let service = cached_origin();
    service.clone().oneshot(page("/len")).await.unwrap();
    let hit = service.clone().oneshot(page("/len")).await.unwrap();
    assert_eq!(hit.headers()["x-cache-status"], "HIT");
    assert_eq!(hit.headers()[header::CONTENT_LENGTH], "4");
    assert_eq!(http_body::Body::size_hint(hit.body()).exact(), Some(4));
    let mut head = page("/len");
    *head.method_mut() = Method::HEAD;
    let head = service.oneshot(head).await.unwrap();
    assert_eq!(head.headers()[header::CONTENT_LENGTH], "4");
    assert_eq!(text(head).await, "");
}
