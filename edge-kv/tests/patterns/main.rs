//! The seeds' KV patterns and the flag client, over real stores (`MemoryKv`, `SimulatedKv`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use edge_core::kv::{KvEntry, KvLimits, ListOptions, ListPage, PutOptions};
use edge_core::testing::{Reply, TestFetcher};
use edge_core::wait_until::QueuedWaitUntil;
use edge_core::{Clock, Error, ErrorKind, KvStore, ManualClock, RequestGeo};
use edge_kv::flags::{FlagClient, FlagContext, Reason};
use edge_kv::patterns::{
    FetchLoader, LazyDocument, ReadThrough, ReadYourWrites, RecentWrites, WriteThrough,
};
use edge_kv::{LinkLatency, MemoryKv, SimulatedKv};
use futures::future::join_all;
use http::StatusCode;

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// A store that is down.
struct DownKv;

impl KvStore for DownKv {
    fn limits(&self) -> KvLimits {
        KvLimits::WORKERS
    }
    async fn get(&self, _: &str) -> Result<Option<Bytes>, Error> {
        Err(Error::new(ErrorKind::Unavailable, "down"))
    }
    async fn get_with_metadata(&self, _: &str) -> Result<Option<KvEntry>, Error> {
        Err(Error::new(ErrorKind::Unavailable, "down"))
    }
    async fn put(&self, _: &str, _: Bytes, _: PutOptions) -> Result<(), Error> {
        Err(Error::new(ErrorKind::Unavailable, "down"))
    }
    async fn delete(&self, _: &str) -> Result<(), Error> {
        Err(Error::new(ErrorKind::Unavailable, "down"))
    }
    async fn list(&self, _: ListOptions) -> Result<ListPage, Error> {
        Err(Error::new(ErrorKind::Unavailable, "down"))
    }
}

#[tokio::test]
async fn read_through_coalesces_misses_and_fills_kv_after_the_response() {
    let clock = ManualClock::new();
    let kv = MemoryKv::builder().clock(clock.clone()).build();
    let loads = Arc::new(AtomicUsize::new(0));
    let background = QueuedWaitUntil::new();
    let counter = Arc::clone(&loads);
    let loader_clock = clock.clone();
    let products = ReadThrough::new(
        kv.clone(),
        move |key: String| {
            let (counter, sleep) = (
                Arc::clone(&counter),
                loader_clock.sleep(Duration::from_millis(200)),
            );
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                sleep.await;
                Ok(Some(Bytes::from(format!("origin:{key}"))))
            }
        },
        background.clone(),
    )
    .with_ttl(Duration::from_secs(120));

    let readers = join_all((0..100).map(|_| products.get("p:1")));
    let advance = async {
        tokio::task::yield_now().await;
        clock.advance(Duration::from_millis(200));
    };
    let (results, ()) = tokio::join!(readers, advance);
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().unwrap().as_deref() == Some(&b"origin:p:1"[..]))
    );
    assert_eq!(
        loads.load(Ordering::SeqCst),
        1,
        "one origin load for 100 concurrent misses"
    );
    assert_eq!(
        kv.get("p:1").await.unwrap(),
        None,
        "KV is filled after the response, not before"
    );
    background.run_all().await;
    let entry = kv.get_with_metadata("p:1").await.unwrap().unwrap();
    assert_eq!(
        entry.expires_at,
        Some(clock.wall_time() + Duration::from_secs(120))
    );
    products.get("p:1").await.unwrap();
    assert_eq!(loads.load(Ordering::SeqCst), 1, "the next read is a KV hit");
}

#[tokio::test]
async fn read_through_returns_origin_errors_and_survives_kv_outages() {
    let background = QueuedWaitUntil::new();
    let failing = ReadThrough::new(
        MemoryKv::new(),
        |_key: String| async { Err(Error::new(ErrorKind::Timeout, "origin")) },
        background.clone(),
    );
    assert!(failing.get("k").await.unwrap_err().is_timeout());
    assert_eq!(
        background.pending(),
        0,
        "nothing is written after an origin failure"
    );
    assert_eq!(
        failing.get("").await.unwrap_err().kind(),
        ErrorKind::InvalidKey
    );

    let kv_down = ReadThrough::new(
        DownKv,
        |_key: String| async { Ok(Some(b("fresh"))) },
        background.clone(),
    );
    assert_eq!(
        kv_down.get("k").await.unwrap(),
        Some(b("fresh")),
        "a broken KV does not break reads"
    );
    background.run_all().await; // the fill fails quietly
}

#[tokio::test]
async fn fetch_loader_maps_origin_statuses() {
    let origin = TestFetcher::new();
    origin.route("/api/products/1", Reply::ok("kettle"));
    origin.route("/api/products/2", Reply::status(StatusCode::NOT_FOUND));
    origin.route(
        "/api/products/3",
        Reply::status(StatusCode::SERVICE_UNAVAILABLE),
    );
    let products = ReadThrough::new(
        MemoryKv::new(),
        FetchLoader::new(origin, "http://origin/api/products/"),
        QueuedWaitUntil::new(),
    );
    assert_eq!(products.get("1").await.unwrap(), Some(b("kettle")));
    assert_eq!(products.get("2").await.unwrap(), None);
    assert_eq!(
        products.get("3").await.unwrap_err().kind(),
        ErrorKind::Backend
    );
}

#[tokio::test]
async fn write_through_writes_the_origin_first_then_invalidates() {
    let kv = MemoryKv::new();
    kv.put("user:1", b("old"), PutOptions::new()).await.unwrap();
    let origin_writes = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&origin_writes);
    let users = WriteThrough::new(kv.clone(), move |_key: String, _value: Bytes| {
        let counter = Arc::clone(&counter);
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    });
    users.write("user:1", b("new")).await.unwrap();
    assert_eq!(origin_writes.load(Ordering::SeqCst), 1);
    assert_eq!(kv.get("user:1").await.unwrap(), None);

    kv.put("user:2", b("kept"), PutOptions::new())
        .await
        .unwrap();
    let refusing = WriteThrough::new(kv.clone(), |_key: String, _value: Bytes| async {
        Err(Error::new(ErrorKind::Unavailable, "origin down"))
    });
    assert_eq!(
        refusing.write("user:2", b("new")).await.unwrap_err().kind(),
        ErrorKind::Unavailable
    );
    assert_eq!(
        kv.get("user:2").await.unwrap(),
        Some(b("kept")),
        "origin failure leaves KV untouched"
    );
    assert_eq!(
        refusing.write("", b("x")).await.unwrap_err().kind(),
        ErrorKind::InvalidKey
    );
}

#[derive(Debug, serde::Deserialize, PartialEq)]
struct Config {
    banner: String,
}

#[tokio::test]
async fn lazy_documents_load_on_first_use_and_refresh_in_the_background() {
    let clock = ManualClock::new();
    let kv = MemoryKv::builder().clock(clock.clone()).build();
    let background = QueuedWaitUntil::new();
    let config: LazyDocument<_, Config, _, _> =
        LazyDocument::new(kv.clone(), "config", clock.clone(), background.clone())
            .with_ttl(Duration::from_secs(60));
    // Nothing was read at creation: the document can still appear afterwards.
    assert_eq!(config.get().await.unwrap_err().kind(), ErrorKind::NotFound);
    kv.put("config", b(r#"{"banner":"v1"}"#), PutOptions::new())
        .await
        .unwrap();
    assert_eq!(config.get().await.unwrap().banner, "v1");

    kv.put("config", b(r#"{"banner":"v2"}"#), PutOptions::new())
        .await
        .unwrap();
    assert_eq!(config.get().await.unwrap().banner, "v1", "fresh for 60 s");
    clock.advance(Duration::from_secs(60));
    assert_eq!(
        config.get().await.unwrap().banner,
        "v1",
        "stale is served at once…"
    );
    assert_eq!(
        background.pending(),
        1,
        "…while one refresh runs in the background"
    );
    config.get().await.unwrap();
    assert_eq!(background.pending(), 1, "one refresh at a time");
    background.run_all().await;
    assert_eq!(config.get().await.unwrap().banner, "v2");

    kv.put("config", b("{ not json"), PutOptions::new())
        .await
        .unwrap();
    clock.advance(Duration::from_secs(60));
    config.get().await.unwrap();
    background.run_all().await;
    assert_eq!(
        config.get().await.unwrap().banner,
        "v2",
        "a corrupt update keeps the last good value"
    );
    assert_eq!(
        background.pending(),
        0,
        "and waits a quarter TTL before retrying"
    );

    let corrupt: LazyDocument<_, Config, _, _> = LazyDocument::new(kv, "config", clock, background);
    assert_eq!(corrupt.get().await.unwrap_err().kind(), ErrorKind::Corrupt);
}

#[tokio::test]
async fn read_your_writes_on_an_eventually_consistent_kv() {
    let clock = ManualClock::new();
    let sim = SimulatedKv::builder()
        .clock(clock.clone())
        .pops(["iad", "syd"])
        .latency(LinkLatency::fixed(Duration::from_millis(300)))
        .build();
    let (iad, syd) = (sim.pop("iad").unwrap(), sim.pop("syd").unwrap());
    let window = Duration::from_secs(5);

    // Request 1 lands in Virginia and saves the user's display name.
    let first = ReadYourWrites::new(iad, RecentWrites::new(), window, clock.clone());
    first
        .put("profile:42:name", b("Ada"), PutOptions::new())
        .await
        .unwrap();
    let cookie = first.recent_writes().to_token();

    // Request 2, 50 ms later, lands in Sydney, whose replica has not caught up.
    clock.advance(Duration::from_millis(50));
    assert_eq!(
        syd.get("profile:42:name").await.unwrap(),
        None,
        "the plain replica is stale"
    );
    let second = ReadYourWrites::new(
        syd.clone(),
        RecentWrites::from_token(&cookie).unwrap(),
        window,
        clock.clone(),
    );
    assert_eq!(
        second.get("profile:42:name").await.unwrap(),
        Some(b("Ada")),
        "the user sees their own write"
    );

    // Other users are not affected, and once the window has passed the replica answers.
    let stranger = ReadYourWrites::new(syd.clone(), RecentWrites::new(), window, clock.clone());
    assert_eq!(stranger.get("profile:42:name").await.unwrap(), None);
    clock.advance(Duration::from_secs(5));
    assert_eq!(
        second.get("profile:42:name").await.unwrap(),
        Some(b("Ada")),
        "replicated by now"
    );
    assert!(RecentWrites::from_token("tampered").is_err());
}

const FLAGS: &str = r#"{"flags":{"home-hero":{"variants":["control","bold"],"default":"control",
    "rules":[{"countries":["DE"],"serve":"bold"}],
    "rollout":[{"variant":"control","weight":5000},{"variant":"bold","weight":5000}]}}}"#;

#[tokio::test]
async fn flag_client_falls_back_on_every_kind_of_trouble() {
    let clock = ManualClock::new();
    let kv = MemoryKv::builder().clock(clock.clone()).build();
    let background = QueuedWaitUntil::new();
    let flags = FlagClient::new(kv.clone(), "flags", clock.clone(), background.clone());
    let german = FlagContext::new().with_geo(RequestGeo::new().with_country("DE"));

    let missing = flags.decide("home-hero", &german, "safe").await;
    assert_eq!(
        (missing.variant.as_str(), missing.reason),
        ("safe", Reason::Fallback),
        "no document yet"
    );

    kv.put("flags", b(FLAGS), PutOptions::new()).await.unwrap();
    let flags = FlagClient::new(kv.clone(), "flags", clock.clone(), background.clone());
    assert_eq!(flags.variant("home-hero", &german, "safe").await, "bold");
    assert_eq!(flags.variant("unknown", &german, "safe").await, "safe");
    let user = FlagContext::new().with_user("visitor-7");
    let first = flags.variant("home-hero", &user, "safe").await;
    for _ in 0..10 {
        assert_eq!(
            flags.variant("home-hero", &user, "safe").await,
            first,
            "sticky per user"
        );
    }

    let broken = FlagClient::new(kv.clone(), "broken", clock.clone(), background.clone());
    kv.put(
        "broken",
        b(r#"{"flags":{"x":{"variants":["a"],"default":"nope"}}}"#),
        PutOptions::new(),
    )
    .await
    .unwrap();
    assert_eq!(
        broken.decide("x", &user, "safe").await.reason,
        Reason::Fallback,
        "invalid document"
    );

    let down = FlagClient::new(DownKv, "flags", clock, background);
    assert_eq!(
        down.variant("home-hero", &german, "safe").await,
        "safe",
        "KV down"
    );
}
