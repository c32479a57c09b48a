//! A JSON document read from KV on first use, kept in memory, refreshed in the background.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use edge_core::clock::Instant;
use edge_core::{Clock, Coalescer, Error, ErrorKind, KvStore, MaybeSend, MaybeSync, WaitUntil};
use serde::de::DeserializeOwned;

/// A document (configuration, a flag set, a key set) stored as JSON under one KV key.
///
/// The Workers cold-start advice: do no blocking work at start-up. Nothing is read when the document is
/// created; the first [`get`](Self::get) reads and parses it (concurrent first callers share one read), and
/// the parsed value is kept in memory for `ttl`. After that, a call past the TTL returns the value it has at
/// once and refreshes it in the background through [`WaitUntil`], one refresh at a time. If a refresh fails
/// (KV down, the document deleted or corrupted), the last good value keeps being served and the refresh is
/// retried after a quarter of the TTL.
///
/// ```
/// use std::time::Duration;
/// use bytes::Bytes;
/// use edge_core::{KvStore, ManualClock, kv::PutOptions, wait_until::QueuedWaitUntil};
/// use edge_kv::{MemoryKv, patterns::LazyDocument};
///
/// #[derive(serde::Deserialize)]
/// struct Config { banner: String }
///
/// # futures::executor::block_on(async {
/// let kv = MemoryKv::new();
/// kv.put("config", Bytes::from_static(br#"{"banner":"hello"}"#), PutOptions::new()).await?;
/// let config: LazyDocument<_, Config, _, _> =
///     LazyDocument::new(kv, "config", ManualClock::new(), QueuedWaitUntil::new()).with_ttl(Duration::from_secs(30));
/// assert_eq!(config.get().await?.banner, "hello");
/// # Ok::<_, edge_core::Error>(()) }).unwrap();
/// ```
pub struct LazyDocument<S, T, C, W> {
    inner: Arc<Inner<S, T, C, W>>,
}

struct Inner<S, T, C, W> {
    store: S,
    key: String,
    ttl: Duration,
    clock: C,
    background: W,
    cached: Mutex<Option<Cached<T>>>,
    first_load: Coalescer<(), Result<Arc<T>, Error>>,
    refreshing: AtomicBool,
}

struct Cached<T> {
    value: Arc<T>,
    /// When the value stops being fresh.
    fresh_until: Instant,
}

impl<S, T, C, W> LazyDocument<S, T, C, W>
where
    S: KvStore + 'static,
    T: DeserializeOwned + MaybeSend + MaybeSync + 'static,
    C: Clock + 'static,
    W: WaitUntil + 'static,
{
    /// The document at `key` in `store`, fresh for 60 s by `clock`, refreshed through `background`.
    pub fn new(store: S, key: impl Into<String>, clock: C, background: W) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                key: key.into(),
                ttl: Duration::from_secs(60),
                clock,
                background,
                cached: Mutex::new(None),
                first_load: Coalescer::new(),
                refreshing: AtomicBool::new(false),
            }),
        }
    }

    /// How long a read value is served without asking KV again (default 60 s).
    #[must_use]
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.ttl = ttl;
        }
        self
    }

    /// The document.
    ///
    /// # Errors
    ///
    /// Only before the first successful read: [`ErrorKind::NotFound`] if the key is absent,
    /// [`ErrorKind::Corrupt`] if it is not the expected JSON, or the store's error. Once a value has been
    /// read, failures to refresh it are absorbed (the last good value is served).
    pub async fn get(&self) -> Result<Arc<T>, Error> {
        let now = self.inner.clock.now();
        let cached = {
            let cached = lock(&self.inner.cached);
            cached
                .as_ref()
                .map(|c| (Arc::clone(&c.value), c.fresh_until > now))
        };
        match cached {
            Some((value, true)) => Ok(value),
            Some((value, false)) => {
                self.refresh_in_background();
                Ok(value)
            }
            None => {
                let inner = Arc::clone(&self.inner);
                self.inner
                    .first_load
                    .run((), move || async move { inner.load().await })
                    .await
            }
        }
    }

    fn refresh_in_background(&self) {
        if self.inner.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let inner = Arc::clone(&self.inner);
        self.inner.background.wait_until(async move {
            if inner.load().await.is_err() {
                // Keep serving the last good value; try again after a quarter of the TTL.
                let retry_at = inner.clock.now() + inner.ttl / 4;
                if let Some(cached) = lock(&inner.cached).as_mut() {
                    cached.fresh_until = retry_at;
                }
            }
            inner.refreshing.store(false, Ordering::Release);
        });
    }
}

impl<S: KvStore, T: DeserializeOwned, C: Clock, W> Inner<S, T, C, W> {
    /// Reads and parses the document, and caches it on success.
    async fn load(&self) -> Result<Arc<T>, Error> {
        let raw = self.store.get(&self.key).await?.ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!("no document at `{}`", self.key),
            )
        })?;
        let value: T = serde_json::from_slice(&raw).map_err(|e| {
            Error::with_source(
                ErrorKind::Corrupt,
                format!("document at `{}` is not valid", self.key),
                e,
            )
        })?;
        let value = Arc::new(value);
        *lock(&self.cached) = Some(Cached {
            value: Arc::clone(&value),
            fresh_until: self.clock.now() + self.ttl,
        });
        Ok(value)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section here is a plain assignment or read: poisoning carries no broken invariant.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl<S, T, C, W> Clone for LazyDocument<S, T, C, W> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<S, T, C, W> fmt::Debug for LazyDocument<S, T, C, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LazyDocument")
            .field("key", &self.inner.key)
            .field("ttl", &self.inner.ttl)
            .finish_non_exhaustive()
    }
}
