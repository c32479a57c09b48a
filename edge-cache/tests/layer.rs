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

fn cached_origin() -> edge_cache::layer::CacheService<ManualClock> {
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
