//! The tiered read path on a `ManualClock` with scripted origins: hits per tier and write-back, coalesced
//! misses, stale-while-revalidate with one background refresh, stale-if-error, negative caching, 304
//! revalidation, private responses, jitter, invalidation, bad KV values — and the seeds' incident: 300
//! PoPs missing at once send one request through their shield to the origin.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use bytes::Bytes;
use edge_cache::memory::MemoryCache;
use edge_cache::tiered::{Settings, Tier, TieredCache};
use edge_core::testing::{Reply, TestFetcher};
use edge_core::wait_until::QueuedWaitUntil;
use edge_core::{Body, ErrorKind, KvStore, ManualClock};
use edge_kv::MemoryKv;
use http::{HeaderName, Method, Request, Response, StatusCode, header};

const URL: &str = "https://shop.example/api/products";
const PATH: &str = "/api/products";

fn get(url: &str) -> Request<Body> {
    Request::builder().uri(url).body(Body::empty()).unwrap()
}

fn cc(value: &'static str) -> (HeaderName, &'static str) {
    (header::CACHE_CONTROL, value)
}

fn reply(body: &'static str, headers: &[(HeaderName, &'static str)]) -> Reply {
    headers.iter().fold(Reply::ok(body), |r, (name, value)| {
        r.with_header(name.clone(), value)
    })
}

fn status(response: &Response<Body>) -> (&str, &str) {
    let h = |name: &str| {
        response
            .headers()
            .get(name)
            .map_or("", |v| v.to_str().unwrap())
    };
    (h("x-cache-status"), h("x-cache-tier"))
}

async fn body(response: Response<Body>) -> Bytes {
    response.into_body().collect(1 << 20).await.unwrap()
}

struct Setup {
    clock: ManualClock,
    origin: TestFetcher,
    background: QueuedWaitUntil,
    cache: TieredCache<ManualClock>,
}

fn setup(settings: Settings) -> Setup {
    let clock = ManualClock::new();
    let origin = TestFetcher::new().with_clock(clock.clone());
    let background = QueuedWaitUntil::new();
    let cache = TieredCache::builder(origin.clone(), clock.clone(), background.clone())
        .memory(MemoryCache::new(1 << 20, clock.clone()))
        .settings(settings)
        .build();
    Setup {
        clock,
        origin,
        background,
        cache,
    }
}

fn no_jitter() -> Settings {
    let mut s = Settings::default();
    s.ttl_jitter_percent = 0;
    s
}

#[tokio::test]
async fn a_miss_is_stored_and_then_hit() {
    let s = setup(no_jitter());
    s.origin.route(
        PATH,
        reply(
            "[1,2,3]",
            &[
                cc("max-age=60"),
                (HeaderName::from_static("cache-tag"), "products"),
            ],
        ),
    );
    let first = s.cache.handle(get(URL)).await.unwrap();
    assert_eq!(status(&first), ("MISS", "origin"));
    assert!(
        first.headers().get("cache-tag").is_none(),
        "edge fields are stripped"
    );
    s.clock.advance(Duration::from_secs(10));
    let second = s.cache.handle(get(URL)).await.unwrap();
    assert_eq!(status(&second), ("HIT", "memory"));
    assert_eq!(second.headers()["age"], "10");
    assert_eq!(body(second).await, "[1,2,3]");
    let head = s
        .cache
        .handle(
            Request::builder()
                .method(Method::HEAD)
                .uri(URL)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        body(head).await,
        "",
        "HEAD is served from the GET entry, without a body"
    );
    assert_eq!(s.origin.hits(PATH), 1);
    assert_eq!(s.cache.purge_tag("products").await.unwrap(), 1);
    assert_eq!(status(&s.cache.handle(get(URL)).await.unwrap()).0, "MISS");
    let stats = s.cache.stats();
    assert_eq!(stats[0], (Tier::Memory, stats[0].1));
    assert_eq!((stats[0].1.hits, stats[0].1.misses), (2, 2));
    assert_eq!((stats[4].1.hits, stats[4].1.misses), (2, 0));
}

#[tokio::test]
async fn lower_tiers_write_back_and_bad_kv_values_are_misses() {
    let clock = ManualClock::new();
    let origin = TestFetcher::new();
    origin.route(PATH, reply("from origin", &[cc("max-age=600")]));
    let kv = MemoryKv::builder().clock(clock.clone()).build();
    let build = |memory: MemoryCache<ManualClock>| {
        TieredCache::builder(origin.clone(), clock.clone(), QueuedWaitUntil::new())
            .memory(memory)
            .kv(kv.clone())
            .settings(no_jitter())
            .build()
    };
    let first_isolate = build(MemoryCache::new(1 << 20, clock.clone()));
    assert_eq!(
        status(&first_isolate.handle(get(URL)).await.unwrap()).0,
        "MISS"
    );
    // A new isolate: empty memory, the KV still has it; the hit is written back to memory.
    let second_isolate = build(MemoryCache::new(1 << 20, clock.clone()));
    assert_eq!(
        status(&second_isolate.handle(get(URL)).await.unwrap()),
        ("HIT", "kv")
    );
    assert_eq!(
        status(&second_isolate.handle(get(URL)).await.unwrap()),
        ("HIT", "memory")
    );
    assert_eq!(origin.hits(PATH), 1);
    // Garbage in KV is a miss, then overwritten.
    kv.put(
        &format!("cache:{URL}"),
        Bytes::from_static(b"not an entry"),
        Default::default(),
    )
    .await
    .unwrap();
    let third_isolate = build(MemoryCache::new(1 << 20, clock.clone()));
    assert_eq!(
        status(&third_isolate.handle(get(URL)).await.unwrap()),
        ("MISS", "origin")
    );
    assert_eq!(
        status(
            &build(MemoryCache::new(1 << 20, clock.clone()))
                .handle(get(URL))
                .await
                .unwrap()
        ),
        ("HIT", "kv")
    );
}

/// Runs `n` requests at once; the origin answers after `latency` on the manual clock.
async fn concurrently(s: &Setup, n: usize) -> Vec<Response<Body>> {
    let requests = futures::future::join_all((0..n).map(|_| s.cache.handle(get(URL))));
    // Moves the clock whenever someone waits on it, until every request is answered.
    let driver = std::pin::pin!(async {
        loop {
            while s.clock.sleepers() == 0 {
                tokio::task::yield_now().await;
            }
            s.clock.advance(Duration::from_secs(1));
        }
    });
    match futures::future::select(std::pin::pin!(requests), driver).await {
        futures::future::Either::Left((responses, _)) => {
            responses.into_iter().map(Result::unwrap).collect()
        }
        futures::future::Either::Right(((), _)) => unreachable!("the driver never ends"),
    }
}

#[tokio::test]
async fn concurrent_misses_are_coalesced_into_one_origin_request() {
    let s = setup(no_jitter());
    s.origin.route(
        PATH,
        reply("shared", &[cc("max-age=60")]).with_latency(Duration::from_secs(1)),
    );
    let responses = concurrently(&s, 100).await;
    assert_eq!(s.origin.hits(PATH), 1);
    for r in responses {
        assert_eq!(body(r).await, "shared");
    }
}

#[tokio::test]
async fn private_and_cookie_responses_are_never_shared() {
    for headers in [
        vec![cc("private, max-age=60")],
        vec![cc("max-age=60"), (header::SET_COOKIE, "session=abc")],
    ] {
        let s = setup(no_jitter());
        let mut r = Reply::ok("yours").with_latency(Duration::from_secs(1));
        for (name, value) in &headers {
            r = r.with_header(name.clone(), value);
        }
        s.origin.route(PATH, r);
        let responses = concurrently(&s, 5).await;
        assert_eq!(s.origin.hits(PATH), 5, "each request fetched its own");
        assert!(responses.iter().all(|r| status(r).0 == "MISS"));
        s.origin.route(PATH, Reply::ok("yours"));
        let again = s.cache.handle(get(URL)).await.unwrap();
        assert_eq!(status(&again).0, "MISS", "and nothing was stored");
    }
}

fn as_user(user: &str) -> Request<Body> {
    Request::builder()
        .uri(URL)
        .header(header::AUTHORIZATION, format!("Bearer {user}"))
        .body(Body::empty())
        .unwrap()
}

/// RFC 9111 §3.5: an answer to an authenticated request carrying only `proxy-revalidate` (or anything
/// short of `public`, `s-maxage`, `must-revalidate`) is one user's: never stored, never coalesced.
#[tokio::test]
async fn an_authenticated_answer_is_never_handed_to_another_user() {
    for directives in ["max-age=60, proxy-revalidate", "max-age=60"] {
        // One after the other.
        let s = setup(no_jitter());
        s.origin.enqueue(
            PATH,
            reply("for alice", &[(header::CACHE_CONTROL, directives)]),
        );
        s.origin.enqueue(
            PATH,
            reply("for bob", &[(header::CACHE_CONTROL, directives)]),
        );
        let alice = s.cache.handle(as_user("alice")).await.unwrap();
        assert_eq!(body(alice).await, "for alice");
        let bob = s.cache.handle(as_user("bob")).await.unwrap();
        assert_eq!(status(&bob).0, "MISS", "{directives}");
        assert_eq!(body(bob).await, "for bob", "{directives}");

        // At the same time, coalesced on one key.
        let s = setup(no_jitter());
        let slow = |text| {
            reply(text, &[(header::CACHE_CONTROL, directives)]).with_latency(Duration::from_secs(1))
        };
        s.origin.enqueue(PATH, slow("for alice"));
        s.origin.enqueue(PATH, slow("for bob"));
        let both = futures::future::join(
            s.cache.handle(as_user("alice")),
            s.cache.handle(as_user("bob")),
        );
        let driver = std::pin::pin!(async {
            loop {
                while s.clock.sleepers() == 0 {
                    tokio::task::yield_now().await;
                }
                s.clock.advance(Duration::from_secs(1));
            }
        });
        let (alice, bob) = match futures::future::select(std::pin::pin!(both), driver).await {
            futures::future::Either::Left((answers, _)) => answers,
            futures::future::Either::Right(((), _)) => unreachable!("the driver never ends"),
        };
        assert_eq!(body(alice.unwrap()).await, "for alice", "{directives}");
        assert_eq!(body(bob.unwrap()).await, "for bob", "{directives}");
        assert_eq!(s.origin.hits(PATH), 2);
    }
}

#[tokio::test]
async fn stale_while_revalidate_serves_stale_and_refreshes_once() {
    let s = setup(no_jitter());
    s.origin.route(
        PATH,
        reply(
            "v1",
            &[
                cc("max-age=60, stale-while-revalidate=120"),
                (header::ETAG, "\"v1\""),
            ],
        ),
    );
    s.cache.handle(get(URL)).await.unwrap();
    s.clock.advance(Duration::from_secs(90));
    s.origin.route(
        PATH,
        reply(
            "v2",
            &[
                cc("max-age=60, stale-while-revalidate=120"),
                (header::ETAG, "\"v2\""),
            ],
        ),
    );
    for _ in 0..10 {
        let r = s.cache.handle(get(URL)).await.unwrap();
        assert_eq!(status(&r).0, "UPDATING");
        assert_eq!(body(r).await, "v1");
    }
    assert_eq!(
        s.background.pending(),
        1,
        "one background refresh for ten stale hits"
    );
    s.background.run_all().await;
    assert_eq!(s.origin.hits(PATH), 2);
    assert_eq!(
        s.origin.requests()[1].headers.get("if-none-match").unwrap(),
        "\"v1\""
    );
    let r = s.cache.handle(get(URL)).await.unwrap();
    assert_eq!(status(&r).0, "HIT");
    assert_eq!(body(r).await, "v2");
}

#[tokio::test]
async fn stale_if_error_and_revalidation_with_304() {
    let s = setup(no_jitter());
    s.origin.route(
        PATH,
        reply(
            "kept",
            &[
                cc("max-age=10, stale-if-error=100"),
                (header::ETAG, "\"k\""),
            ],
        ),
    );
    s.cache.handle(get(URL)).await.unwrap();
    s.clock.advance(Duration::from_secs(30));
    s.origin
        .route(PATH, Reply::status(StatusCode::SERVICE_UNAVAILABLE));
    let r = s.cache.handle(get(URL)).await.unwrap();
    assert_eq!(status(&r).0, "STALE");
    assert_eq!(body(r).await, "kept");
    s.origin.route(PATH, Reply::fail(ErrorKind::Unavailable));
    let r = s.cache.handle(get(URL)).await.unwrap();
    assert_eq!(status(&r).0, "STALE", "a connection error too");
    // A 304 freshens the stored copy.
    s.origin.route(
        PATH,
        Reply::status(StatusCode::NOT_MODIFIED)
            .with_header(header::CACHE_CONTROL, "max-age=50")
            .with_header(header::ETAG, "\"k\""),
    );
    let r = s.cache.handle(get(URL)).await.unwrap();
    assert_eq!(status(&r).0, "REVALIDATED");
    assert_eq!(body(r).await, "kept");
    let r = s.cache.handle(get(URL)).await.unwrap();
    assert_eq!(status(&r).0, "HIT");
    // Past the stale-if-error window, the failure shows.
    s.clock.advance(Duration::from_secs(500));
    s.origin.route(PATH, Reply::fail(ErrorKind::Unavailable));
    assert_eq!(
        s.cache.handle(get(URL)).await.unwrap_err().kind(),
        ErrorKind::Unavailable
    );
}

#[tokio::test]
async fn errors_are_cached_only_when_configured() {
    let s = setup(no_jitter());
    s.origin.route(PATH, Reply::status(StatusCode::BAD_GATEWAY));
    for _ in 0..3 {
        assert_eq!(
            s.cache.handle(get(URL)).await.unwrap().status(),
            StatusCode::BAD_GATEWAY
        );
    }
    assert_eq!(s.origin.hits(PATH), 3);

    let mut settings = no_jitter();
    settings.negative_ttl = Some(Duration::from_secs(5));
    let s = setup(settings);
    s.origin.route(PATH, Reply::status(StatusCode::BAD_GATEWAY));
    for _ in 0..3 {
        assert_eq!(
            s.cache.handle(get(URL)).await.unwrap().status(),
            StatusCode::BAD_GATEWAY
        );
    }
    assert_eq!(s.origin.hits(PATH), 1);
    s.clock.advance(Duration::from_secs(6));
    s.cache.handle(get(URL)).await.unwrap();
    assert_eq!(s.origin.hits(PATH), 2, "the negative entry lived 5 s");
}

#[tokio::test]
async fn jitter_spreads_expiry_of_entries_written_together() {
    let s = setup(Settings::default());
    let mut stale_after = Vec::new();
    for i in 0..50 {
        let path = format!("/item/{i}");
        s.origin.route(&path, reply("x", &[cc("max-age=100")]));
        s.cache
            .handle(get(&format!("https://shop.example{path}")))
            .await
            .unwrap();
    }
    for i in 0..50 {
        let url = format!("https://shop.example/item/{i}");
        let r = s.cache.handle(get(&url)).await.unwrap();
        let age: u64 = r.headers()["age"].to_str().unwrap().parse().unwrap();
        stale_after.push(100 - age);
    }
    stale_after.sort_unstable();
    stale_after.dedup();
    assert!(stale_after.len() > 5, "expiries spread: {stale_after:?}");
    assert!(
        stale_after.iter().all(|s| (90..=100).contains(s)),
        "by at most 10 %: {stale_after:?}"
    );
}

#[tokio::test]
async fn unsafe_methods_pass_through_and_invalidate() {
    let s = setup(no_jitter());
    s.origin.route(PATH, reply("list", &[cc("max-age=600")]));
    s.cache.handle(get(URL)).await.unwrap();
    let post = Request::builder()
        .method(Method::POST)
        .uri(URL)
        .body(Body::from("new"))
        .unwrap();
    let r = s.cache.handle(post).await.unwrap();
    assert_eq!(status(&r).0, "BYPASS");
    assert_eq!(status(&s.cache.handle(get(URL)).await.unwrap()).0, "MISS");
}

#[tokio::test]
async fn oversized_bodies_pass_through_unstored() {
    let mut settings = no_jitter();
    settings.max_body = 8;
    let s = setup(settings);
    s.origin.route(
        PATH,
        Reply::ok("")
            .with_chunks([Bytes::from("0123456"), Bytes::from("789abc")])
            .with_header(header::CACHE_CONTROL, "max-age=60"),
    );
    let r = s.cache.handle(get(URL)).await.unwrap();
    assert_eq!(body(r).await, "0123456789abc", "streamed through whole");
    assert_eq!(status(&s.cache.handle(get(URL)).await.unwrap()).0, "MISS");
}

#[tokio::test]
async fn only_if_cached_without_an_entry_is_a_504() {
    let s = setup(no_jitter());
    let request = Request::builder()
        .uri(URL)
        .header("cache-control", "only-if-cached")
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        s.cache.handle(request).await.unwrap().status(),
        StatusCode::GATEWAY_TIMEOUT
    );
    assert_eq!(s.origin.hits(PATH), 0);
}

/// The seeds' incident: a synchronized expiry sent 300 PoPs to the origin at once. With each PoP's misses
/// going through a shield that coalesces, the origin sees one request.
#[tokio::test]
async fn three_hundred_pops_missing_at_once_make_one_origin_request() {
    let clock = ManualClock::new();
    let origin = TestFetcher::new().with_clock(clock.clone());
    origin.route(
        PATH,
        reply("hot", &[cc("max-age=60")]).with_latency(Duration::from_secs(1)),
    );
    let shield = TieredCache::builder(origin.clone(), clock.clone(), QueuedWaitUntil::new())
        .memory(MemoryCache::new(1 << 20, clock.clone()))
        .build();
    let pops: Vec<TieredCache<ManualClock>> = (0..300)
        .map(|_| {
            TieredCache::builder(origin.clone(), clock.clone(), QueuedWaitUntil::new())
                .memory(MemoryCache::new(1 << 20, clock.clone()))
                .shield(shield.clone())
                .build()
        })
        .collect();
    let requests = futures::future::join_all(pops.iter().map(|pop| pop.handle(get(URL))));
    let advance = async {
        while clock.sleepers() == 0 {
            tokio::task::yield_now().await;
        }
        clock.advance(Duration::from_secs(1));
    };
    let (responses, ()) = futures::join!(requests, advance);
    assert_eq!(origin.hits(PATH), 1, "one origin request for 300 PoPs");
    for response in responses {
        let response = response.unwrap();
        assert_eq!(status(&response), ("MISS", "shield"));
        assert_eq!(body(response).await, "hot");
    }
    let shield_stats = shield.stats();
    assert_eq!(shield_stats[4].1.hits, 1);
}

/// A PoP cache that counts its reads, each taking a second on the manual clock (a network hop).
#[derive(Clone)]
struct CountingStore {
    inner: MemoryCache<ManualClock>,
    gets: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    clock: ManualClock,
}

impl edge_core::CacheStore for CountingStore {
    fn limits(&self) -> edge_core::cache::CacheLimits {
        self.inner.limits()
    }
    async fn get(
        &self,
        key: &str,
    ) -> Result<Option<edge_core::cache::CachedResponse>, edge_core::Error> {
        self.gets.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.clock.sleep(Duration::from_secs(1)).await;
        self.inner.get(key).await
    }
    async fn put(
        &self,
        key: &str,
        response: edge_core::cache::CachedResponse,
    ) -> Result<(), edge_core::Error> {
        self.inner.put(key, response).await
    }
    async fn delete(&self, key: &str) -> Result<bool, edge_core::Error> {
        self.inner.delete(key).await
    }
    async fn purge_tag(&self, tag: &str) -> Result<usize, edge_core::Error> {
        self.inner.purge_tag(tag).await
    }
}

#[tokio::test]
async fn reads_of_the_shared_tiers_are_coalesced_too() {
    use edge_core::CacheStore as _;
    let clock = ManualClock::new();
    let origin = TestFetcher::new().with_clock(clock.clone());
    origin.route(
        PATH,
        reply("x", &[cc("max-age=60")]).with_latency(Duration::from_secs(1)),
    );
    let store = CountingStore {
        inner: MemoryCache::new(1 << 20, clock.clone()),
        gets: std::sync::Arc::default(),
        clock: clock.clone(),
    };
    let cache = TieredCache::builder(origin.clone(), clock.clone(), QueuedWaitUntil::new())
        .store(store.clone())
        .settings(no_jitter())
        .build();
    let requests = futures::future::join_all((0..50).map(|_| cache.handle(get(URL))));
    let driver = std::pin::pin!(async {
        loop {
            while clock.sleepers() == 0 {
                tokio::task::yield_now().await;
            }
            clock.advance(Duration::from_secs(1));
        }
    });
    let responses = match futures::future::select(std::pin::pin!(requests), driver).await {
        futures::future::Either::Left((responses, _)) => responses,
        futures::future::Either::Right(((), _)) => unreachable!(),
    };
    assert!(responses.iter().all(Result::is_ok));
    assert_eq!(
        store.gets.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one store read for 50 misses"
    );
    assert_eq!(origin.hits(PATH), 1);
    assert!(
        store.inner.get(URL).await.unwrap().is_some(),
        "and the fill wrote it back"
    );
}

/// An origin that sends its head and first chunk, then never finishes the body.
#[derive(Clone)]
struct Stalling(&'static str);

impl edge_core::Fetcher for Stalling {
    async fn fetch(&self, _request: Request<Body>) -> Result<Response<Body>, edge_core::Error> {
        use futures::StreamExt;
        let chunks = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(b"first"))])
            .chain(futures::stream::pending());
        let mut response = Response::new(Body::from_stream(chunks));
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, self.0.parse().unwrap());
        Ok(response)
    }
}

/// What may not be stored streams through: its head reaches the client at once, whatever its body
/// does, instead of waiting for a body the origin never finishes.
#[tokio::test]
async fn an_uncacheable_answer_streams_through_without_waiting_for_its_body() {
    use futures::StreamExt;
    for directives in ["no-store", "private, max-age=60"] {
        let clock = ManualClock::new();
        let cache =
            TieredCache::builder(Stalling(directives), clock.clone(), QueuedWaitUntil::new())
                .memory(MemoryCache::new(1 << 20, clock.clone()))
                .settings(no_jitter())
                .build();
        let response = tokio::time::timeout(Duration::from_secs(5), cache.handle(get(URL)))
            .await
            .expect("the head is not held back by the body")
            .unwrap();
        assert_eq!(status(&response).0, "MISS", "{directives}");
        let mut body = response.into_body();
        assert_eq!(body.next().await.unwrap().unwrap(), "first", "{directives}");
    }
}
