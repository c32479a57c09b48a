//! Signing keys from a JWK Set kept in edge KV (or fetched from an origin), cached, refreshed, and safe
//! against `kid` spraying.
//!
//! The usual edge design keeps the issuer's JWK Set in edge KV, rotated from the origin, and looks keys up by `kid` on
//! every request. [`JwksProvider`] does that with three guarantees:
//!
//! - **No blocking work per request.** The parsed key set is kept in memory for a TTL; past it, requests
//!   keep using it while one background refresh runs (through [`WaitUntil`]).
//! - **Rotation is picked up at once.** A token naming a `kid` the cached set lacks triggers a reload, so a
//!   new key works as soon as it is published.
//! - **No amplification.** That reload happens at most once per cooldown (default 30 s) however many
//!   unknown `kid`s arrive, and concurrent reloads are coalesced into one: an attacker spraying random `kid`s
//!   costs one KV read per cooldown, not one per request.
//!
//! Keys are never taken from a token (`jku`, `x5u`, `jwk` headers are ignored by the verifier).

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use edge_core::clock::Instant;
use edge_core::kv::{DynKvStore, PutOptions};
use edge_core::refresh::{Load, Refresh};
use edge_core::{Body, Clock, ErrorKind, Fetcher, KvStore, MaybeSend, MaybeSync, WaitUntil};
use serde::de::DeserializeOwned;

use crate::jwt::Error;
use crate::jwt::{Algorithm, JwkSet, KeySet, Verified, Verifier};

/// Where a [`JwksProvider`] reads the JWK Set document from.
pub trait KeySource: MaybeSend + MaybeSync {
    /// The current JWK Set document.
    fn load(&self) -> impl Future<Output = Result<Bytes, edge_core::Error>> + MaybeSend;
}

/// A JWK Set fixed at start-up: read from configuration, a file or an environment variable. Nothing is
/// refreshed; a document that does not parse fails the first verification (with a 503), not the start.
///
/// ```
/// use edge_auth::jwt::{JwksProvider, StaticKeySource};
/// use edge_core::SystemClock;
/// use edge_core::wait_until::QueuedWaitUntil;
///
/// let jwks = r#"{"keys":[{"kty":"oct","alg":"HS256","kid":"k1","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"}]}"#;
/// let keys = JwksProvider::new(StaticKeySource::new(jwks), SystemClock::new(), QueuedWaitUntil::new());
/// # let _ = keys;
/// ```
#[derive(Clone, Debug)]
pub struct StaticKeySource {
    document: Bytes,
}

impl StaticKeySource {
    /// The JWK Set document `document`.
    pub fn new(document: impl Into<Bytes>) -> Self {
        Self {
            document: document.into(),
        }
    }
}

impl KeySource for StaticKeySource {
    async fn load(&self) -> Result<Bytes, edge_core::Error> {
        Ok(self.document.clone())
    }
}

/// The JWK Set stored under one key of a [`KvStore`].
#[derive(Debug)]
pub struct KvKeySource<S> {
    store: S,
    key: String,
}

impl<S: KvStore> KvKeySource<S> {
    /// Reads `key` from `store`.
    pub fn new(store: S, key: impl Into<String>) -> Self {
        Self {
            store,
            key: key.into(),
        }
    }
}

impl<S: KvStore> KeySource for KvKeySource<S> {
    async fn load(&self) -> Result<Bytes, edge_core::Error> {
        self.store.get(&self.key).await?.ok_or_else(|| {
            edge_core::Error::new(ErrorKind::NotFound, format!("no JWK Set at `{}`", self.key))
        })
    }
}

/// The JWK Set served at an origin URL (an issuer's `jwks_uri`), fetched through a [`Fetcher`]; optionally
/// written through to KV so other isolates and PoPs read it there.
pub struct OriginKeySource<F> {
    fetcher: F,
    url: String,
    write_through: Option<(Arc<dyn DynKvStore>, String, Duration)>,
    max_body: usize,
}

impl<F: Fetcher> OriginKeySource<F> {
    /// Fetches `url` with `fetcher`.
    pub fn new(fetcher: F, url: impl Into<String>) -> Self {
        Self {
            fetcher,
            url: url.into(),
            write_through: None,
            max_body: 256 * 1024,
        }
    }

    /// Also writes each fetched (and valid) set to `key` in `store`, with `ttl`.
    #[must_use]
    pub fn with_kv(
        mut self,
        store: Arc<dyn DynKvStore>,
        key: impl Into<String>,
        ttl: Duration,
    ) -> Self {
        self.write_through = Some((store, key.into(), ttl));
        self
    }
}

impl<F> fmt::Debug for OriginKeySource<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OriginKeySource")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl<F: Fetcher> KeySource for OriginKeySource<F> {
    async fn load(&self) -> Result<Bytes, edge_core::Error> {
        let request = http::Request::get(&self.url)
            .header(
                http::header::ACCEPT,
                "application/jwk-set+json, application/json",
            )
            .body(Body::empty())
            .map_err(|e| {
                edge_core::Error::with_source(ErrorKind::InvalidInput, "bad JWKS url", e)
            })?;
        let response = self.fetcher.fetch(request).await?;
        if !response.status().is_success() {
            return Err(edge_core::Error::new(
                ErrorKind::Backend,
                format!("JWKS origin answered {}", response.status()),
            ));
        }
        let body = response.into_body().collect(self.max_body).await?;
        // Only a valid set is cached; a broken one stays the origin's problem. A shared secret (`oct`
        // key) fetched over the network is refused too: it has no business in a published set.
        let set = JwkSet::from_json(&body)
            .map_err(|e| edge_core::Error::new(ErrorKind::Corrupt, e.to_string()))?;
        if set.has_symmetric_keys() {
            return Err(edge_core::Error::new(
                ErrorKind::Corrupt,
                "the JWK Set from the URL carries a symmetric (`oct`) key; refusing it",
            ));
        }
        if let Some((store, key, ttl)) = &self.write_through {
            store
                .put(key, body.clone(), PutOptions::new().with_ttl(*ttl))
                .await?;
        }
        Ok(body)
    }
}

/// Cached keys from a [`KeySource`]. See the [module docs](self). Cheap to clone.
///
/// ```
/// use std::time::Duration;
/// use bytes::Bytes;
/// use edge_auth::jwt::{JwksProvider, KvKeySource};
/// use edge_auth::jwt::{Validation, Verifier};
/// use edge_core::{KvStore, ManualClock, kv::PutOptions, wait_until::QueuedWaitUntil};
///
/// # futures::executor::block_on(async {
/// let kv = edge_kv::MemoryKv::new();
/// kv.put("jwks", Bytes::from_static(br#"{"keys":[]}"#), PutOptions::new()).await?;
/// let keys = JwksProvider::new(KvKeySource::new(kv, "jwks"), ManualClock::new(), QueuedWaitUntil::new());
/// let verifier = Verifier::new(Validation::new());
/// let rejected = keys.verify::<serde_json::Value>(&verifier, "e30.e30.e30").await;
/// assert!(rejected.is_err());
/// # Ok::<_, edge_core::Error>(()) }).unwrap();
/// ```
pub struct JwksProvider<K: KeySource, C: Clock, W> {
    keys: Refresh<KeyLoader<K, C>, Arc<C>, W>,
}

/// One load of the key set (the [`Refresh`] keeps it fresh), with what the provider remembers between
/// loads: the algorithms to bind, the unknown-`kid` cooldown, and how the source is doing.
struct KeyLoader<K, C> {
    source: K,
    clock: Arc<C>,
    cooldown: Duration,
    /// Algorithms keys without `alg` are bound to ([`JwksProvider::with_algorithms`]).
    bind: Mutex<Arc<[Algorithm]>>,
    health: Mutex<Health>,
}

#[derive(Default)]
struct Health {
    /// When a reload for an unknown `kid` last ran.
    last_forced: Option<Instant>,
    /// Loads that failed since the last one that succeeded, and the latest failure.
    failures: u32,
    last_error: Option<Error>,
    /// When a failure was last logged (failures are logged at most once per cooldown).
    last_warned: Option<Instant>,
    /// Whether a key set is being served (for the log line of a failure).
    serving: bool,
}

/// How the provider's key source is doing ([`JwksProvider::health`]): for a readiness check, or a metric.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct JwksHealth {
    /// Whether a key set has ever been loaded (tokens can be verified).
    pub has_keys: bool,
    /// Loads that failed since the last one that succeeded (0: the source is fine).
    pub consecutive_failures: u32,
    /// The latest failure, while `consecutive_failures > 0`.
    pub last_error: Option<Error>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Critical sections are plain field reads and writes: poisoning carries no broken invariant.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl<K, C, W> JwksProvider<K, C, W>
where
    K: KeySource + 'static,
    C: Clock + 'static,
    W: WaitUntil + 'static,
{
    /// Keys from `source`, fresh for 5 minutes on `clock`, refreshed through `background`, with a 30 s
    /// cooldown on reloads for unknown `kid`s.
    pub fn new(source: K, clock: C, background: W) -> Self {
        Self::with_timing(
            source,
            clock,
            background,
            Duration::from_secs(300),
            Duration::from_secs(30),
        )
    }

    /// As [`new`](Self::new), with the TTL and the unknown-`kid` cooldown given.
    pub fn with_timing(
        source: K,
        clock: C,
        background: W,
        ttl: Duration,
        cooldown: Duration,
    ) -> Self {
        let clock = Arc::new(clock);
        let loader = KeyLoader {
            source,
            clock: Arc::clone(&clock),
            cooldown,
            bind: Mutex::new(Arc::from([])),
            health: Mutex::new(Health::default()),
        };
        Self {
            keys: Refresh::new(loader, ttl, clock, background),
        }
    }

    /// Binds keys that name no `alg` (as several identity providers publish their RSA keys) to the
    /// algorithms of `algorithms` that fit them: an RSA key without `alg` then verifies, say, `RS256`
    /// tokens only. Which algorithms is the caller's decision, never the token's (RFC 8725 §3.1).
    /// Without it such keys are skipped, with a warning saying so. Applies from the next load, to
    /// every clone of this provider.
    #[must_use]
    pub fn with_algorithms(self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        *lock(&self.keys.loader().bind) = algorithms.into_iter().collect();
        self.keys.invalidate();
        lock(&self.keys.loader().health).serving = false;
        self
    }

    /// The current key set (loading it on first use).
    ///
    /// # Errors
    ///
    /// [`Error::KeySource`] if the set has never been loaded and cannot be now.
    pub async fn keys(&self) -> Result<Arc<KeySet>, Error> {
        self.keys.get().await
    }

    /// Verifies `token` with the current keys; a token naming an unknown `kid` reloads them (at most once per
    /// cooldown) and is tried once more.
    ///
    /// # Errors
    ///
    /// The verifier's [`Error`], or [`Error::KeySource`] if no keys could ever be loaded.
    pub async fn verify<T: DeserializeOwned>(
        &self,
        verifier: &Verifier,
        token: &str,
    ) -> Result<Verified<T>, Error> {
        let now = self.keys.loader().clock.unix_time();
        let keys = self.keys().await?;
        match verifier.verify(token, &*keys, now) {
            Err(Error::UnknownKey) if self.keys.loader().may_force_reload() => {
                let keys = self.keys.reload().await?;
                verifier.verify(token, &*keys, now)
            }
            result => result,
        }
    }

    /// [`verify`](Self::verify) without waiting, when no I/O can be needed: keys are in memory (fresh,
    /// or stale and refreshing in the background) and the token's key is among them. `None` means "call
    /// `verify`": no keys yet, or an unknown `kid`, which `verify` may answer with a reload.
    pub fn verify_now<T: DeserializeOwned>(
        &self,
        verifier: &Verifier,
        token: &str,
    ) -> Option<Result<Verified<T>, Error>> {
        let keys = self.keys.get_now()?;
        let now = self.keys.loader().clock.unix_time();
        match verifier.verify(token, &*keys, now) {
            Err(Error::UnknownKey) => None,
            result => Some(result),
        }
    }

    /// How the key source is doing: a source that cannot be reached shows here, and as a `tracing`
    /// warning (at most one per cooldown), not only in the verdicts of the tokens.
    pub fn health(&self) -> JwksHealth {
        let health = lock(&self.keys.loader().health);
        JwksHealth {
            has_keys: self.keys.current().is_some(),
            consecutive_failures: health.failures,
            last_error: health.last_error.clone(),
        }
    }
}

impl<K: KeySource, C: Clock> Load for KeyLoader<K, C> {
    type Value = KeySet;
    type Error = Error;

    /// One load of the key set, its outcome recorded for [`JwksProvider::health`] and the logs.
    async fn load(&self) -> Result<KeySet, Error> {
        let result = self.load_once().await;
        let now = self.clock.now();
        let mut health = lock(&self.health);
        match &result {
            Ok(_) if health.failures > 0 => {
                tracing::info!(
                    edge.jwks.failures = health.failures,
                    "the JWK Set loads again"
                );
                health.failures = 0;
                health.last_error = None;
            }
            Ok(_) => {}
            Err(error) => {
                health.failures = health.failures.saturating_add(1);
                health.last_error = Some(error.clone());
                let quiet = health
                    .last_warned
                    .is_some_and(|at| now.duration_since(at) < self.cooldown);
                if !quiet {
                    health.last_warned = Some(now);
                    tracing::warn!(
                        edge.jwks.failures = health.failures,
                        edge.jwks.serving_last_good = health.serving,
                        error = %error,
                        "the JWK Set could not be loaded"
                    );
                }
            }
        }
        health.serving |= result.is_ok();
        result
    }
}

impl<K: KeySource, C: Clock> KeyLoader<K, C> {
    /// `true` (and the cooldown restarted) if a forced reload is allowed now.
    fn may_force_reload(&self) -> bool {
        let now = self.clock.now();
        let mut health = lock(&self.health);
        let allowed = health
            .last_forced
            .is_none_or(|at| now.duration_since(at) >= self.cooldown);
        if allowed {
            health.last_forced = Some(now);
        }
        allowed
    }

    async fn load_once(&self) -> Result<KeySet, Error> {
        let document = self.source.load().await.map_err(Error::KeySource)?;
        let bind = Arc::clone(&lock(&self.bind));
        let (keys, skipped) = JwkSet::from_json(&document)?.verifying_keys_with(&bind);
        for (kid, why) in &skipped {
            // Loads happen at most once per TTL or cooldown, so this cannot flood the logs.
            tracing::warn!(
                edge.jwks.kid = kid.as_deref().unwrap_or("-"),
                edge.jwks.skipped = %why,
                "a key of the JWK Set was skipped"
            );
        }
        Ok(keys)
    }
}

impl<K: KeySource, C: Clock, W> Clone for JwksProvider<K, C, W> {
    fn clone(&self) -> Self {
        Self {
            keys: self.keys.clone(),
        }
    }
}

impl<K: KeySource, C: Clock, W> fmt::Debug for JwksProvider<K, C, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksProvider")
            .field("keys", &self.keys)
            .field("cooldown", &self.keys.loader().cooldown)
            .finish_non_exhaustive()
    }
}
