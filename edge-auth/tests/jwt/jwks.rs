//! The JWKS provider: rotation, background refresh, kid spraying, origin source.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use edge_auth::jwt::Error;
use edge_auth::jwt::base64url::encode as b64;
use edge_auth::jwt::{JwksProvider, KvKeySource, OriginKeySource};
use edge_auth::jwt::{Validation, Verifier};
use edge_core::kv::{DynKvStore, KvEntry, KvLimits, ListOptions, ListPage, PutOptions};
use edge_core::testing::{Reply, TestFetcher};
use edge_core::wait_until::QueuedWaitUntil;
use edge_core::{Clock, KvStore, ManualClock};
use edge_kv::MemoryKv;
use ring::hmac;
use serde_json::Value;

/// Counts reads, to prove how often the provider goes to KV.
#[derive(Clone)]
struct CountingKv {
    inner: MemoryKv<ManualClock>,
    reads: Arc<AtomicUsize>,
}

impl KvStore for CountingKv {
    fn limits(&self) -> KvLimits {
        self.inner.limits()
    }
    async fn get(&self, key: &str) -> Result<Option<Bytes>, edge_core::Error> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.get(key).await
    }
    async fn get_with_metadata(&self, key: &str) -> Result<Option<KvEntry>, edge_core::Error> {
        self.inner.get_with_metadata(key).await
    }
    async fn put(
        &self,
        key: &str,
        value: Bytes,
        options: PutOptions,
    ) -> Result<(), edge_core::Error> {
        self.inner.put(key, value, options).await
    }
    async fn delete(&self, key: &str) -> Result<(), edge_core::Error> {
        self.inner.delete(key).await
    }
    async fn list(&self, options: ListOptions) -> Result<ListPage, edge_core::Error> {
        self.inner.list(options).await
    }
}

fn secret(kid: &str) -> Vec<u8> {
    format!("{kid:-<32}").into_bytes()
}

fn jwks(kids: &[&str]) -> Bytes {
    let keys: Vec<String> = kids
        .iter()
        .map(|kid| {
            format!(
                r#"{{"kty":"oct","alg":"HS256","kid":"{kid}","k":"{}"}}"#,
                b64(&secret(kid))
            )
        })
        .collect();
    Bytes::from(format!(r#"{{"keys":[{}]}}"#, keys.join(",")))
}

fn token(kid: &str, clock: &ManualClock) -> String {
    let header = b64(format!(r#"{{"alg":"HS256","kid":"{kid}"}}"#).as_bytes());
    let claims = b64(format!(r#"{{"exp":{}}}"#, clock.unix_time().as_secs() + 300).as_bytes());
    let input = format!("{header}.{claims}");
    let tag = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, &secret(kid)),
        input.as_bytes(),
    );
    format!("{input}.{}", b64(tag.as_ref()))
}

fn setup() -> (
    ManualClock,
    CountingKv,
    QueuedWaitUntil,
    JwksProvider<KvKeySource<CountingKv>, ManualClock, QueuedWaitUntil>,
) {
    let clock = ManualClock::new();
    let kv = CountingKv {
        inner: MemoryKv::builder().clock(clock.clone()).build(),
        reads: Arc::default(),
    };
    let background = QueuedWaitUntil::new();
    let provider = JwksProvider::with_timing(
        KvKeySource::new(kv.clone(), "jwks"),
        clock.clone(),
        background.clone(),
        Duration::from_secs(300),
        Duration::from_secs(30),
    );
    (clock, kv, background, provider)
}

#[tokio::test]
async fn a_rotated_key_works_as_soon_as_it_is_published() {
    let (clock, kv, _background, provider) = setup();
    let verifier = Verifier::new(Validation::new());
    kv.put("jwks", jwks(&["2026-01"]), PutOptions::new())
        .await
        .unwrap();
    provider
        .verify::<Value>(&verifier, &token("2026-01", &clock))
        .await
        .unwrap();

    kv.put("jwks", jwks(&["2026-01", "2026-02"]), PutOptions::new())
        .await
        .unwrap();
    provider
        .verify::<Value>(&verifier, &token("2026-02", &clock))
        .await
        .unwrap();
    assert_eq!(
        kv.reads.load(Ordering::SeqCst),
        2,
        "one initial load, one reload for the new kid"
    );
}

#[tokio::test]
async fn spraying_unknown_kids_costs_one_read_per_cooldown() {
    let (clock, kv, _background, provider) = setup();
    let verifier = Verifier::new(Validation::new());
    kv.put("jwks", jwks(&["real"]), PutOptions::new())
        .await
        .unwrap();
    provider.keys().await.unwrap();
    for i in 0..1000 {
        let err = provider
            .verify::<Value>(&verifier, &token(&format!("random-{i}"), &clock))
            .await
            .unwrap_err();
        assert_eq!(err, Error::UnknownKey);
    }
    assert_eq!(
        kv.reads.load(Ordering::SeqCst),
        2,
        "the first load plus one reload for 1000 unknown kids"
    );
    clock.advance(Duration::from_secs(30));
    let _ = provider
        .verify::<Value>(&verifier, &token("random-x", &clock))
        .await;
    assert_eq!(
        kv.reads.load(Ordering::SeqCst),
        3,
        "one more after the cooldown"
    );
}

#[tokio::test]
async fn stale_keys_are_served_while_one_background_refresh_runs() {
    let (clock, kv, background, provider) = setup();
    kv.put("jwks", jwks(&["a"]), PutOptions::new())
        .await
        .unwrap();
    provider.keys().await.unwrap();
    clock.advance(Duration::from_secs(300));
    kv.put("jwks", jwks(&["a", "b"]), PutOptions::new())
        .await
        .unwrap();
    assert_eq!(
        provider.keys().await.unwrap().keys().len(),
        1,
        "stale, served at once"
    );
    provider.keys().await.unwrap();
    assert_eq!(background.pending(), 1, "one refresh");
    background.run_all().await;
    assert_eq!(provider.keys().await.unwrap().keys().len(), 2);

    // A broken document later keeps the last good keys.
    kv.put("jwks", Bytes::from_static(b"{ broken"), PutOptions::new())
        .await
        .unwrap();
    clock.advance(Duration::from_secs(300));
    provider.keys().await.unwrap();
    background.run_all().await;
    assert_eq!(provider.keys().await.unwrap().keys().len(), 2);
}

#[tokio::test]
async fn no_keys_at_all_is_a_key_source_error() {
    let (clock, _kv, _background, provider) = setup();
    let err = provider
        .verify::<Value>(&Verifier::default(), &token("a", &clock))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::KeySource(_)), "{err}");
}

/// An Ed25519 key pair from a fixed seed, its public JWK (with `kid`), and tokens it signs.
struct EdIssuer {
    pair: ring::signature::Ed25519KeyPair,
    kid: &'static str,
}

impl EdIssuer {
    fn new(kid: &'static str) -> Self {
        let seed = [7u8; 32];
        Self {
            pair: ring::signature::Ed25519KeyPair::from_seed_unchecked(&seed).unwrap(),
            kid,
        }
    }

    fn jwks(&self) -> Bytes {
        use ring::signature::KeyPair;
        Bytes::from(format!(
            r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","kid":"{}","x":"{}"}}]}}"#,
            self.kid,
            b64(self.pair.public_key().as_ref())
        ))
    }

    fn token(&self, clock: &ManualClock) -> String {
        let header = b64(format!(r#"{{"alg":"EdDSA","kid":"{}"}}"#, self.kid).as_bytes());
        let claims = b64(format!(r#"{{"exp":{}}}"#, clock.unix_time().as_secs() + 300).as_bytes());
        let input = format!("{header}.{claims}");
        format!("{input}.{}", b64(self.pair.sign(input.as_bytes()).as_ref()))
    }
}

#[tokio::test]
async fn origin_source_fetches_validates_and_writes_through_to_kv() {
    let clock = ManualClock::new();
    let issuer = EdIssuer::new("o1");
    let origin = TestFetcher::new();
    origin.route("/.well-known/jwks.json", Reply::ok(issuer.jwks()));
    let kv = MemoryKv::builder().clock(clock.clone()).build();
    let store: Arc<dyn DynKvStore> = Arc::new(kv.clone());
    let source = OriginKeySource::new(
        origin.clone(),
        "https://issuer.example/.well-known/jwks.json",
    )
    .with_kv(store, "jwks", Duration::from_secs(3600));
    let provider = JwksProvider::new(source, clock.clone(), QueuedWaitUntil::new());
    provider
        .verify::<Value>(&Verifier::default(), &issuer.token(&clock))
        .await
        .unwrap();
    assert_eq!(
        kv.get("jwks").await.unwrap(),
        Some(issuer.jwks()),
        "written through for other isolates"
    );

    let broken = TestFetcher::new();
    broken.route("/jwks", Reply::ok("not json"));
    let source = OriginKeySource::new(broken, "https://issuer.example/jwks");
    let provider = JwksProvider::new(source, clock.clone(), QueuedWaitUntil::new());
    assert!(matches!(
        provider.keys().await.unwrap_err(),
        Error::KeySource(_)
    ));

    // A shared secret published at a URL is refused, not used.
    let leaky = TestFetcher::new();
    leaky.route("/jwks", Reply::ok(jwks(&["hs"])));
    let source = OriginKeySource::new(leaky, "https://issuer.example/jwks");
    let provider = JwksProvider::new(source, clock.clone(), QueuedWaitUntil::new());
    assert!(matches!(
        provider.keys().await.unwrap_err(),
        Error::KeySource(_)
    ));
}

/// Counts `WARN` events on this thread (the test runtime is single-threaded).
struct CountWarnings(Arc<AtomicUsize>);

impl tracing::Subscriber for CountWarnings {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        if *event.metadata().level() == tracing::Level::WARN {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// A source that cannot be reached is visible: in `health()`, and as a warning at most once per cooldown
/// however many requests meet it; recovery clears it.
#[tokio::test]
async fn an_unreachable_source_shows_in_health_and_warns_once_per_cooldown() {
    let warnings = Arc::new(AtomicUsize::new(0));
    let _guard = tracing::subscriber::set_default(CountWarnings(Arc::clone(&warnings)));
    // Other tests on other threads may have registered the warning's callsite with no subscriber; make
    // tracing ask this thread's subscriber again rather than trust that cached "never".
    tracing::callsite::rebuild_interest_cache();
    let (clock, kv, background, provider) = setup();
    let health = provider.health();
    assert!(!health.has_keys && health.consecutive_failures == 0);

    for _ in 0..5 {
        // Again before each call: a test on another thread may hit the callsite first, with no subscriber.
        tracing::callsite::rebuild_interest_cache();
        let err = provider.keys().await.unwrap_err();
        assert!(matches!(err, Error::KeySource(_)), "{err}");
    }
    let health = provider.health();
    assert_eq!(health.consecutive_failures, 5);
    assert!(matches!(health.last_error, Some(Error::KeySource(_))));
    assert_eq!(
        warnings.load(Ordering::Relaxed),
        1,
        "one warning per cooldown"
    );
    clock.advance(Duration::from_secs(30));
    tracing::callsite::rebuild_interest_cache();
    provider.keys().await.unwrap_err();
    assert_eq!(warnings.load(Ordering::Relaxed), 2, "and again after it");

    kv.put("jwks", jwks(&["a"]), PutOptions::new())
        .await
        .unwrap();
    provider.keys().await.unwrap();
    let health = provider.health();
    assert!(health.has_keys && health.consecutive_failures == 0 && health.last_error.is_none());

    // A background refresh that fails is no longer silent either; the last good keys keep serving.
    kv.put("jwks", Bytes::from_static(b"{ broken"), PutOptions::new())
        .await
        .unwrap();
    clock.advance(Duration::from_secs(300));
    provider.keys().await.unwrap();
    tracing::callsite::rebuild_interest_cache();
    background.run_all().await;
    assert_eq!(provider.health().consecutive_failures, 1);
    assert_eq!(warnings.load(Ordering::Relaxed), 3);
    assert_eq!(provider.keys().await.unwrap().keys().len(), 1);
}
