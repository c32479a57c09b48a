//! The CRS engine (edge-auth feature `crs`) on the OWASP Core Rule Set 4 as published, at paranoia 1:
//! a typical API request (10 headers, 5 query arguments, a 1 KB JSON body), a SQL injection in the
//! query, and the lite profile on the same API request for scale and on a browser's page request. ModSecurity 3 runs the same requests
//! in `scripts/crs-oracle.sh`, which times both engines per request in one run (a C library: it is timed
//! by its own driver rather than through FFI here).
//!
//! `cargo bench -p edge-benches --bench crs`; CRS from `EDGE_CRS_DIR`, else `../shared/crs`.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout
)]

use std::path::PathBuf;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use edge_auth::waf::WafRules;
use edge_auth::waf::crs::RuleSet;
use http::request::Parts;

fn crs_dir() -> PathBuf {
    std::env::var_os("EDGE_CRS_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/crs"),
        PathBuf::from,
    )
}

/// 10 headers, 5 query arguments, a 1 KB JSON body.
fn api_request() -> (Parts, Vec<u8>) {
    let mut body = String::from("{\"order\":{\"id\":48213,\"items\":[");
    while body.len() < 960 {
        body.push_str("{\"sku\":\"SKU-2231-BLUE\",\"qty\":2,\"note\":\"gift wrap please\"},");
    }
    body.push_str("{\"sku\":\"SKU-1\",\"qty\":1}]}}");
    let (parts, ()) = http::Request::post(
        "/api/v2/orders?store=eu-west&currency=EUR&page=2&sort=created&expand=items",
    )
    .header("host", "api.example.com")
    .header(
        "user-agent",
        "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    )
    .header("accept", "application/json")
    .header("accept-language", "en-US,en;q=0.5")
    .header("accept-encoding", "gzip, deflate, br")
    .header("content-type", "application/json")
    .header("content-length", body.len().to_string())
    .header(
        "authorization",
        "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJl",
    )
    .header("x-request-id", "6f1c2a9e-7d3b-4b8e-9a51-0c2f3d4e5a6b")
    .header("cookie", "session=8f3a9c2e1b; theme=dark")
    .body(())
    .unwrap()
    .into_parts();
    (parts, body.into_bytes())
}

/// A page as a browser asks for it: a query, its usual headers (a long `User-Agent`, `Accept` with
/// weights, client hints with quotes), a referer and a cookie.
fn browser_get() -> Parts {
    let (parts, ()) = http::Request::get("https://shop.example/products/shoes?colour=blue&size=42")
        .header("host", "shop.example")
        .header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
             Chrome/120.0.0.0 Safari/537.36",
        )
        .header(
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8",
        )
        .header("accept-language", "en-GB,en;q=0.9")
        .header("accept-encoding", "gzip, deflate, br")
        .header("referer", "https://shop.example/products?page=2")
        .header(
            "sec-ch-ua",
            "\"Chromium\";v=\"120\", \"Not?A_Brand\";v=\"8\"",
        )
        .header("cookie", "session=8f3a9c2e1b; theme=dark")
        .body(())
        .unwrap()
        .into_parts();
    parts
}

fn bench(c: &mut Criterion) {
    let crs = RuleSet::builder()
        .crs_dir(crs_dir())
        .expect("CRS 4 at EDGE_CRS_DIR or ../shared/crs")
        .paranoia(1)
        .build()
        .unwrap();
    let (api, body) = api_request();
    assert!(!crs.evaluate(&api, &body, None).is_blocked());
    let (sqli, ()) =
        http::Request::get("/search?q=1%27%20UNION%20SELECT%20password%20FROM%20users--%20-")
            .header("host", "example.com")
            .header("user-agent", "Mozilla/5.0")
            .header("accept", "text/html")
            .body(())
            .unwrap()
            .into_parts();
    assert!(crs.evaluate(&sqli, b"", None).is_blocked());

    // The spread, which criterion's mean does not show (figures only: machines here are shared); not
    // when the benches run once as tests.
    if std::env::args().any(|a| a == "--bench") {
        spread(&crs, &api, &body);
    }

    let mut group = c.benchmark_group("crs");
    group.bench_function("api_request", |b| {
        b.iter(|| crs.evaluate(&api, &body, None))
    });
    group.bench_function("sqli_query", |b| b.iter(|| crs.evaluate(&sqli, b"", None)));
    let lite = WafRules::default();
    group.bench_function("lite_api_request", |b| {
        b.iter(|| lite.inspect(&api.uri, &api.headers, Some(&body)))
    });
    let browser = browser_get();
    assert!(
        !lite
            .inspect(&browser.uri, &browser.headers, None)
            .is_blocked()
    );
    group.bench_function("lite_browser_get", |b| {
        b.iter(|| lite.inspect(&browser.uri, &browser.headers, None))
    });
    group.finish();
}

fn spread(crs: &RuleSet, api: &Parts, body: &[u8]) {
    let mut nanos: Vec<u128> = (0..2000)
        .map(|_| {
            let started = Instant::now();
            let _ = crs.evaluate(api, body, None);
            started.elapsed().as_nanos()
        })
        .collect();
    nanos.sort_unstable();
    println!(
        "crs/api_request over 2000 runs: p50 {:.1} µs, p99 {:.1} µs",
        nanos[1000] as f64 / 1000.0,
        nanos[1980] as f64 / 1000.0
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
