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
    // Past the stale-if-error window, a 5xx answer shows; an unreachable origin is a disconnection,
    // which a stale copy may still cover (RFC 9111 §4.2.4) while it is kept.
    s.clock.advance(Duration::from_secs(500));
    s.origin
        .route(PATH, Reply::status(StatusCode::SERVICE_UNAVAILABLE));
    let r = s.cache.handle(get(URL)).await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    s.origin.route(PATH, Reply::fail(ErrorKind::Unavailable));
    let r = s.cache.handle(get(URL)).await.unwrap();
    assert_eq!(
        status(&r).0,
        "STALE",
        "disconnected: the stale copy stands in"
    );
    // Unless the setting is off, or the copy's directives forbid it.
    let mut strict = no_jitter();
    strict.stale_if_disconnected = false;
    for (settings, directives) in [
        (strict, "max-age=10"),
        (no_jitter(), "max-age=10, must-revalidate"),
    ] {
        let s = setup(settings);
        s.origin
            .route(PATH, reply("kept", &[(header::CACHE_CONTROL, directives)]));
        s.cache.handle(get(URL)).await.unwrap();
        s.clock.advance(Duration::from_secs(30));
        s.origin.route(PATH, Reply::fail(ErrorKind::Unavailable));
        assert_eq!(
            s.cache.handle(get(URL)).await.unwrap_err().kind(),
            ErrorKind::Unavailable,
            "{directives}"
        );
    }
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
    let url = |i: usize| format!("https://shop.example/item/{i}");
    for i in 0..50 {
        let path = format!("/item/{i}");
        s.origin.route(&path, reply("x", &[cc("max-age=100")]));
        let first = s.cache.handle(get(&url(i))).await.unwrap();
        assert!(
            first.headers().get("age").is_none(),
            "a fresh answer passes on as it came"
        );
    }
    s.clock.advance(Duration::from_secs(10));
    for i in 0..50 {
        let hit = s.cache.handle(get(&url(i))).await.unwrap();
        assert_eq!(status(&hit).0, "HIT");
        assert_eq!(hit.headers()["age"], "10", "the jitter never reaches Age");
    }
    // Step through the last tenth of the lifetime: when does each entry go to the origin again?
    s.clock.advance(Duration::from_secs(79));
    let mut refreshed_at = vec![None; 50];
    for second in 90..=101u64 {
        s.clock.advance(Duration::from_secs(1));
        for (i, at) in refreshed_at.iter_mut().enumerate() {
            if at.is_none() {
                let r = s.cache.handle(get(&url(i))).await.unwrap();
                if status(&r).0 != "HIT" {
                    *at = Some(second);
                }
            }
        }
    }
    let mut seconds: Vec<u64> = refreshed_at.iter().map(|at| at.unwrap()).collect();
    assert!(
        seconds.iter().all(|s| (90..=100).contains(s)),
        "by at most 10 % of the remaining lifetime: {seconds:?}"
    );
    seconds.sort_unstable();
    seconds.dedup();
    assert!(seconds.len() > 5, "expiries spread: {seconds:?}");
    // Deterministic per key: the same cache setup refreshes the same key at the same moment.
    let again = setup(Settings::default());
    again
        .origin
        .route("/item/7", reply("x", &[cc("max-age=100")]));
    again.cache.handle(get(&url(7))).await.unwrap();
    again.clock.advance(Duration::from_secs(89));
    let mut at = None;
    for second in 90..=101u64 {
        again.clock.advance(Duration::from_secs(1));
        let r = again.cache.handle(get(&url(7))).await.unwrap();
        if at.is_none() && status(&r).0 != "HIT" {
            at = Some(second);
        }
    }
    assert_eq!(at, refreshed_at[7]);
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

fn get_with(url: &str, headers: &[(HeaderName, &str)]) -> Request<Body> {
    let mut request = get(url);
    for (name, value) in headers {
        request
            .headers_mut()
            .insert(name.clone(), value.parse().unwrap());
    }
    request
}

/// RFC 9111 §4.3.2: a client's conditional against a fresh stored response is answered here with a
/// `304`, `If-None-Match` taking precedence over `If-Modified-Since`.
#[tokio::test]
async fn client_conditionals_are_answered_from_the_stored_response() {
    let s = setup(no_jitter());
    s.origin.route(
        PATH,
        reply(
            "v1",
            &[
                cc("max-age=60"),
                (header::ETAG, "W/\"v1\""),
                (header::LAST_MODIFIED, "Wed, 01 Jan 2020 00:00:00 GMT"),
            ],
        ),
    );
    s.cache.handle(get(URL)).await.unwrap();
    let matching = s
        .cache
        .handle(get_with(URL, &[(header::IF_NONE_MATCH, "\"v0\", \"v1\"")]))
        .await
        .unwrap();
    assert_eq!(matching.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(matching.headers()[header::ETAG], "W/\"v1\"");
    assert_eq!(matching.headers()[header::CACHE_CONTROL], "max-age=60");
    assert_eq!(body(matching).await, "");
    let other = s
        .cache
        .handle(get_with(URL, &[(header::IF_NONE_MATCH, "\"v2\"")]))
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::OK);
    // If-None-Match decides when present, even if If-Modified-Since alone would say 304.
    let precedence = s
        .cache
        .handle(get_with(
            URL,
            &[
                (header::IF_NONE_MATCH, "\"v2\""),
                (header::IF_MODIFIED_SINCE, "Thu, 01 Jan 2026 00:00:00 GMT"),
            ],
        ))
        .await
        .unwrap();
    assert_eq!(precedence.status(), StatusCode::OK);
    let since = s
        .cache
        .handle(get_with(
            URL,
            &[(header::IF_MODIFIED_SINCE, "Thu, 01 Jan 2026 00:00:00 GMT")],
        ))
        .await
        .unwrap();
    assert_eq!(since.status(), StatusCode::NOT_MODIFIED);
    let before = s
        .cache
        .handle(get_with(
            URL,
            &[(header::IF_MODIFIED_SINCE, "Tue, 01 Jan 2019 00:00:00 GMT")],
        ))
        .await
        .unwrap();
    assert_eq!(before.status(), StatusCode::OK);
    assert_eq!(s.origin.hits(PATH), 1, "all answered here");
}

/// RFC 9111 §4.4: a successful request with a state-changing method (not safe in RFC 9110 §9.2.1)
/// invalidates its URL and the same-origin URLs in its answer's `Location` and `Content-Location`.
#[tokio::test]
async fn state_changing_methods_invalidate_location_and_content_location() {
    let s = setup(no_jitter());
    for path in ["/a", "/b", "/c"] {
        s.origin.route(path, reply("x", &[cc("max-age=600")]));
        s.cache
            .handle(get(&format!("https://shop.example{path}")))
            .await
            .unwrap();
    }
    s.origin.route(
        "/form",
        Reply::status(StatusCode::CREATED)
            .with_header(header::LOCATION, "/a")
            .with_header(header::CONTENT_LOCATION, "https://shop.example/b"),
    );
    let post = Request::builder()
        .method(Method::POST)
        .uri("https://shop.example/form")
        .body(Body::empty())
        .unwrap();
    s.cache.handle(post).await.unwrap();
    for (path, expected) in [("/a", "MISS"), ("/b", "MISS"), ("/c", "HIT")] {
        let r = s
            .cache
            .handle(get(&format!("https://shop.example{path}")))
            .await
            .unwrap();
        assert_eq!(status(&r).0, expected, "{path}");
    }
    // Another origin's entries are not this request's to drop.
    s.origin.route(
        "/form",
        Reply::status(StatusCode::CREATED).with_header(header::LOCATION, "https://other.example/c"),
    );
    let post = Request::builder()
        .method(Method::POST)
        .uri("https://shop.example/form")
        .body(Body::empty())
        .unwrap();
    s.cache.handle(post).await.unwrap();
    let r = s.cache.handle(get("https://shop.example/c")).await.unwrap();
    assert_eq!(status(&r).0, "HIT");
}

/// A `304` does not replace what describes the stored content (RFC 9111 §3.2), and what a
/// `Connection` field names is never stored.
#[tokio::test]
async fn stored_headers_keep_their_content_fields_and_drop_connection_fields() {
    let s = setup(no_jitter());
    s.origin.route(
        PATH,
        reply(
            "content",
            &[
                cc("max-age=1"),
                (header::ETAG, "\"a\""),
                (header::CONTENT_RANGE, "bytes 0-6/7"),
                (header::CONNECTION, "x-hop"),
                (HeaderName::from_static("x-hop"), "1"),
                (HeaderName::from_static("x-kept"), "1"),
            ],
        ),
    );
    s.cache.handle(get(URL)).await.unwrap();
    s.clock.advance(Duration::from_secs(5));
    s.origin.route(
        PATH,
        Reply::status(StatusCode::NOT_MODIFIED)
            .with_header(header::CACHE_CONTROL, "max-age=60")
            .with_header(header::ETAG, "\"b\"")
            .with_header(header::CONTENT_RANGE, "bytes 0-1/2")
            .with_header(HeaderName::from_static("x-kept"), "2"),
    );
    let r = s.cache.handle(get(URL)).await.unwrap();
    assert_eq!(status(&r).0, "REVALIDATED");
    assert_eq!(r.headers()[header::ETAG], "\"a\"");
    assert_eq!(r.headers()[header::CONTENT_RANGE], "bytes 0-6/7");
    assert_eq!(r.headers()["x-kept"], "2", "other fields are updated");
    assert!(r.headers().get("x-hop").is_none());
    assert!(r.headers().get(header::CONNECTION).is_none());
}

/// `max-stale` works end to end: stale entries are kept a while (`keep_stale`) for it.
#[tokio::test]
async fn max_stale_is_met_from_a_kept_stale_entry() {
    let s = setup(no_jitter());
    s.origin.route(PATH, reply("old", &[cc("max-age=10")]));
    s.cache.handle(get(URL)).await.unwrap();
    s.clock.advance(Duration::from_secs(70));
    s.origin.route(PATH, reply("new", &[cc("max-age=10")]));
    let r = s
        .cache
        .handle(get_with(URL, &[(header::CACHE_CONTROL, "max-stale=120")]))
        .await
        .unwrap();
    assert_eq!(body(r).await, "old", "60 s stale, within max-stale");
    let r = s
        .cache
        .handle(get_with(URL, &[(header::CACHE_CONTROL, "max-stale=30")]))
        .await
        .unwrap();
    assert_eq!(body(r).await, "new", "past max-stale: fetched");
}

/// Several variants of one URL are kept side by side (up to MAX_VARIANTS), selected by the request's
/// normalised values, and a state-changing request to the URL drops them all.
#[tokio::test]
async fn variants_of_one_url_live_side_by_side() {
    let s = setup(no_jitter());
    let lang = HeaderName::from_static("accept-language");
    let vary = [cc("max-age=600"), (header::VARY, "Accept-Language")];
    s.origin.enqueue(PATH, reply("english", &vary));
    s.origin.enqueue(PATH, reply("deutsch", &vary));
    let en = s
        .cache
        .handle(get_with(URL, &[(lang.clone(), "en")]))
        .await
        .unwrap();
    assert_eq!(body(en).await, "english");
    let de = s
        .cache
        .handle(get_with(URL, &[(lang.clone(), "de")]))
        .await
        .unwrap();
    assert_eq!(body(de).await, "deutsch");
    // Both are served from the cache now, the older included.
    for (value, expected) in [("en", "english"), ("de", "deutsch"), ("EN", "english")] {
        let r = s
            .cache
            .handle(get_with(URL, &[(lang.clone(), value)]))
            .await
            .unwrap();
        assert_eq!(status(&r).0, "HIT", "{value}");
        assert_eq!(body(r).await, expected, "{value}");
    }
    let normalised = s
        .cache
        .handle(get_with(URL, &[(lang.clone(), "de , en;q=0.5")]))
        .await;
    assert_eq!(status(&normalised.unwrap()).0, "MISS", "a third variant");
    assert_eq!(s.origin.hits(PATH), 3);
    // A state-changing request (POST) to the URL invalidates every variant.
    s.origin.route(PATH, Reply::status(StatusCode::NO_CONTENT));
    let delete = Request::builder()
        .method(Method::DELETE)
        .uri(URL)
        .body(Body::empty())
        .unwrap();
    s.cache.handle(delete).await.unwrap();
    s.origin.route(PATH, reply("after", &vary));
    for value in ["en", "de"] {
        let r = s
            .cache
            .handle(get_with(URL, &[(lang.clone(), value)]))
            .await
            .unwrap();
        assert_eq!(status(&r).0, "MISS", "{value} was invalidated");
    }
}

/// RFC 9211 `Cache-Status` on every answer; the legacy fields only while configured.
#[tokio::test]
async fn cache_status_tells_what_the_cache_did() {
    let field = |r: &Response<Body>| {
        r.headers()
            .get("cache-status")
            .map_or(String::new(), |v| v.to_str().unwrap().to_owned())
    };
    let s = setup(no_jitter());
    s.origin.route(
        PATH,
        reply("x", &[cc("max-age=60, stale-while-revalidate=30")]),
    );
    let miss = s.cache.handle(get(URL)).await.unwrap();
    assert_eq!(
        field(&miss),
        "edge; fwd=uri-miss; fwd-status=200; stored; ttl=60"
    );
    s.clock.advance(Duration::from_secs(10));
    let hit = s.cache.handle(get(URL)).await.unwrap();
    assert_eq!(field(&hit), "edge; hit; ttl=50");
    s.clock.advance(Duration::from_secs(60));
    let updating = s.cache.handle(get(URL)).await.unwrap();
    assert_eq!(
        field(&updating),
        "edge; hit; ttl=-10; detail=stale-while-revalidate"
    );
    let post = Request::builder()
        .method(Method::POST)
        .uri(URL)
        .body(Body::empty())
        .unwrap();
    s.origin.route(PATH, Reply::status(StatusCode::NO_CONTENT));
    let bypass = s.cache.handle(post).await.unwrap();
    assert_eq!(field(&bypass), "edge; fwd=method; fwd-status=204");

    let mut quiet = no_jitter();
    quiet.x_cache_status = false;
    let s = setup(quiet);
    s.origin.route(PATH, reply("x", &[cc("max-age=60")]));
    let r = s.cache.handle(get(URL)).await.unwrap();
    assert!(
        r.headers().get("x-cache-status").is_none() && r.headers().get("x-cache-tier").is_none()
    );
    assert!(field(&r).starts_with("edge; fwd=uri-miss"));
}

/// A request as a plain HTTP server receives it (origin form, `Host`) is keyed `http://…`, so purging
/// the URL as requested removes it, and the purge says whether anything was there.
#[tokio::test]
async fn purging_a_url_finds_what_a_plain_http_request_stored() {
    let s = setup(no_jitter());
    s.origin.route(PATH, reply("x", &[cc("max-age=600")]));
    let origin_form = || {
        Request::builder()
            .uri(PATH)
            .header(header::HOST, "Shop.Example")
            .body(Body::empty())
            .unwrap()
    };
    s.cache.handle(origin_form()).await.unwrap();
    assert_eq!(
        status(&s.cache.handle(origin_form()).await.unwrap()).0,
        "HIT"
    );
    assert!(
        !s.cache
            .purge_url("https://shop.example/api/products")
            .await
            .unwrap()
    );
    assert!(
        s.cache
            .purge_url("http://shop.example/api/products")
            .await
            .unwrap()
    );
    assert!(
        !s.cache
            .purge_url("http://shop.example/api/products")
            .await
            .unwrap(),
        "already gone"
    );
    assert_eq!(
        status(&s.cache.handle(origin_form()).await.unwrap()).0,
        "MISS"
    );
    assert!(s.cache.purge_url("/relative").await.is_err());
}
