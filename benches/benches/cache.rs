//! HTTP caching: the freshness evaluation next to http-cache-semantics on the same request and response;
//! the memory tier's hit path next to quick_cache and moka; and a cache hit through the tower layer next
//! to a bare axum handler answering the same bytes.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::convert::Infallible;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use edge_cache::layer::CacheLayer;
use edge_cache::memory::MemoryCache;
use edge_cache::policy::CachePolicy;
use edge_core::cache::CachedResponse;
use edge_core::wait_until::QueuedWaitUntil;
use edge_core::{Body, SystemClock};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use tower::{Layer, ServiceExt};

/// A typical cacheable API response and a browser-like request.
fn exchange() -> (http::request::Parts, http::response::Parts) {
    let (request, ()) = Request::builder()
        .method(Method::GET)
        .uri("https://shop.example/api/products?page=2")
        .header("host", "shop.example")
        .header("accept", "application/json")
        .header("accept-encoding", "gzip, br")
        .header("accept-language", "en-GB,en;q=0.9")
        .header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
        )
        .header("cache-control", "max-age=0")
        .body(())
        .unwrap()
        .into_parts();
    let now = httpdate::fmt_http_date(SystemTime::now());
    let (response, ()) = Response::builder()
        .status(StatusCode::OK)
        .header("date", now.as_str())
        .header("content-type", "application/json")
        .header("content-length", "5120")
        .header(
            "cache-control",
            "public, max-age=60, s-maxage=300, stale-while-revalidate=30",
        )
        .header("etag", "\"p2-v17\"")
        .header("last-modified", "Tue, 01 Sep 2026 10:00:00 GMT")
        .header("vary", "Accept-Encoding")
        .header("server", "origin")
        .body(())
        .unwrap()
        .into_parts();
    (request, response)
}

fn freshness(c: &mut Criterion) {
    let (request, response) = exchange();
    let policy = CachePolicy::new();
    let now = SystemTime::now();
    let later = now + Duration::from_secs(30);
    let mut group = c.benchmark_group("cache/freshness (store + lookup)");
    // Like http-cache-semantics' policy object, the parse made when storing answers the lookup
    // (`Stored::parsed`, which the memory tier keeps beside each entry).
    // Ours takes the response's headers by `&mut` (a cache owns the response it stores) and records
    // the request's Vary values in them; each iteration takes that record out again (one removal,
    // included in the time), so every iteration starts from the same headers, as warm in the cache as
    // http-cache-semantics' input is. (A clone per iteration would time a copy neither design needs:
    // http-cache-semantics copies the headers inside `new` anyway.)
    let mut headers = response.headers.clone();
    group.bench_function("edge_cache", |b| {
        b.iter(|| {
            let stored = policy
                .store(
                    &request.method,
                    &request.headers,
                    response.status,
                    &mut headers,
                    now,
                    now,
                )
                .unwrap();
            let entry = CachedResponse::new(
                response.status,
                std::mem::take(&mut headers),
                Bytes::new(),
                now,
            );
            let lookup = policy.lookup_parsed(
                &request.method,
                &request.headers,
                &entry,
                &stored.parsed,
                later,
            );
            black_box((&stored, &lookup));
            headers = entry.headers;
            headers.remove("x-edge-vary");
        })
    });
    group.bench_function("http-cache-semantics", |b| {
        b.iter(|| {
            let theirs = http_cache_semantics::CachePolicy::new(&request, &response);
            let stale = theirs.is_stale(later);
            black_box((stale, theirs.before_request(&request, later)))
        })
    });
    group.finish();
}

/// `n` distinct page URLs, the keys the memory-tier benches use.
fn page_keys(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("https://shop.example/p/{i}"))
        .collect()
}

/// A 512-byte page with no header fields, the entry the memory-tier benches store.
fn page() -> Arc<CachedResponse> {
    Arc::new(CachedResponse::new(
        StatusCode::OK,
        HeaderMap::new(),
        Bytes::from(vec![b'x'; 512]),
        SystemTime::now(),
    ))
}

fn memory_tier(c: &mut Criterion) {
    let (keys, entry) = (page_keys(10_000), page());
    let ours = MemoryCache::new(256 << 20, SystemClock::new());
    let quick = quick_cache::sync::Cache::<String, Arc<CachedResponse>>::new(20_000);
    let moka = moka::sync::Cache::<String, Arc<CachedResponse>>::new(20_000);
    for key in &keys {
        ours.put_shared(key, Arc::clone(&entry)).unwrap();
        quick.insert(key.clone(), Arc::clone(&entry));
        moka.insert(key.clone(), Arc::clone(&entry));
    }
    let mut group = c.benchmark_group("cache/memory hit (10k entries)");
    let mut i = 0usize;
    let mut next = || {
        i = (i + 7919) % keys.len();
        keys[i].as_str()
    };
    group.bench_function("edge_cache MemoryCache::get_shared", |b| {
        b.iter(|| black_box(ours.get_shared(next())))
    });
    let mut i = 0usize;
    let mut next = || {
        i = (i + 7919) % keys.len();
        keys[i].as_str()
    };
    group.bench_function("quick_cache", |b| b.iter(|| black_box(quick.get(next()))));
    let mut i = 0usize;
    let mut next = || {
        i = (i + 7919) % keys.len();
        keys[i].as_str()
    };
    group.bench_function("moka (sync)", |b| b.iter(|| black_box(moka.get(next()))));
    group.finish();
}

/// Inserting into a full memory tier, so every insert evicts: `MemoryCache::put_shared` next to
/// quick_cache with the same key type (`Arc<str>`), weights (the entry's) and hasher.
fn memory_insert_evict(c: &mut Criterion) {
    #[derive(Clone)]
    struct ByWeight;
    impl quick_cache::Weighter<Arc<str>, Arc<CachedResponse>> for ByWeight {
        fn weight(&self, key: &Arc<str>, value: &Arc<CachedResponse>) -> u64 {
            (key.len() + value.weight()) as u64
        }
    }
    let (keys, entry) = (page_keys(100_000), page());
    // Room for about a thousand entries.
    let capacity = 1_000 * (keys[0].len() + entry.weight()) as u64;
    let ours = MemoryCache::new(capacity, SystemClock::new());
    let quick = quick_cache::sync::Cache::<
        Arc<str>,
        Arc<CachedResponse>,
        ByWeight,
        foldhash::fast::RandomState,
    >::with(
        (capacity / 4096).max(16) as usize,
        capacity,
        ByWeight,
        foldhash::fast::RandomState::default(),
        quick_cache::sync::DefaultLifecycle::default(),
    );
    let mut group = c.benchmark_group("cache/memory insert, evicting");
    let mut i = 0usize;
    group.bench_function("edge_cache MemoryCache::put_shared", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            black_box(ours.put_shared(&keys[i], Arc::clone(&entry)).is_ok())
        })
    });
    let mut i = 0usize;
    group.bench_function("quick_cache", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            quick.insert(Arc::from(keys[i].as_str()), Arc::clone(&entry));
        })
    });
    group.finish();
    assert!(ours.len() < 2_000 && quick.len() < 2_000, "both evict");
}

fn layer_hit(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let body = Bytes::from(vec![b'x'; 2048]);
    let page = body.clone();
    let origin = tower::service_fn(move |_request: Request<Body>| {
        let page = page.clone();
        async move {
            let mut response = Response::new(Body::from(page));
            response.headers_mut().insert(
                "cache-control",
                HeaderValue::from_static("public, max-age=3600"),
            );
            Ok::<_, Infallible>(response)
        }
    });
    let mut cached = CacheLayer::new(SystemClock::new(), QueuedWaitUntil::new())
        .memory(MemoryCache::new(64 << 20, SystemClock::new()))
        .layer(origin);
    let request = || {
        Request::builder()
            .uri("https://shop.example/")
            .header("accept", "text/html")
            .body(Body::empty())
            .unwrap()
    };
    runtime.block_on(async {
        let warm = cached.clone().oneshot(request()).await.unwrap();
        assert_eq!(warm.headers()["x-cache-status"], "MISS");
        let hit = cached.clone().oneshot(request()).await.unwrap();
        assert_eq!(hit.headers()["x-cache-status"], "HIT");
    });

    let bare_body = body.clone();
    let mut bare = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let body = bare_body.clone();
            async move { ([("cache-control", "public, max-age=3600")], body) }
        }),
    );
    let axum_request = || {
        Request::builder()
            .uri("https://shop.example/")
            .header("accept", "text/html")
            .body(axum::body::Body::empty())
            .unwrap()
    };

    let mut group = c.benchmark_group("cache/request");
    support::bench_service(
        &mut group,
        "cache hit through CacheLayer",
        &runtime,
        &mut cached,
        request,
    );
    support::bench_service(
        &mut group,
        "bare axum handler",
        &runtime,
        &mut bare,
        axum_request,
    );
    group.finish();
}

criterion_group!(
    benches,
    freshness,
    memory_tier,
    memory_insert_evict,
    layer_hit
);
criterion_main!(benches);
