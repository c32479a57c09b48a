//! Read-through: KV first, the origin on a miss, KV filled in the background.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use edge_core::kv::PutOptions;
use edge_core::{
    Body, Coalescer, Error, ErrorKind, Fetcher, KvStore, MaybeSend, MaybeSync, WaitUntil,
};
use http::StatusCode;

/// Where a [`ReadThrough`] loads a missing key from.
///
/// Closures `Fn(String) -> impl Future<Output = Result<Option<Bytes>, Error>>` are loaders; so is
/// [`FetchLoader`], which asks an origin over HTTP.
pub trait Loader: MaybeSend + MaybeSync {
    /// The value for `key`, `None` if the origin has none.
    fn load(&self, key: &str) -> impl Future<Output = Result<Option<Bytes>, Error>> + MaybeSend;
}

impl<F, Fut> Loader for F
where
    F: Fn(String) -> Fut + MaybeSend + MaybeSync,
    Fut: Future<Output = Result<Option<Bytes>, Error>> + MaybeSend,
{
    fn load(&self, key: &str) -> impl Future<Output = Result<Option<Bytes>, Error>> + MaybeSend {
        self(key.to_owned())
    }
}

/// Loads `GET {base}{key}` through a [`Fetcher`]: `200` is the value, `404` is `None`, anything else is an
/// error. Bodies are read up to `max_body` bytes (default 1 MiB).
#[derive(Debug)]
pub struct FetchLoader<F> {
    fetcher: F,
    base: String,
    max_body: usize,
}

impl<F: Fetcher> FetchLoader<F> {
    /// Loads from `base` (like `http://origin.internal/api/`) plus the key.
    pub fn new(fetcher: F, base: impl Into<String>) -> Self {
        Self {
            fetcher,
            base: base.into(),
            max_body: 1024 * 1024,
        }
    }

    /// Refuses origin bodies larger than `max_body`.
    #[must_use]
    pub fn with_max_body(mut self, max_body: usize) -> Self {
        self.max_body = max_body;
        self
    }
}

impl<F: Fetcher> Loader for FetchLoader<F> {
    async fn load(&self, key: &str) -> Result<Option<Bytes>, Error> {
        let url = format!("{}{key}", self.base);
        let request = http::Request::get(url).body(Body::empty()).map_err(|e| {
            Error::with_source(ErrorKind::InvalidInput, "key does not make a valid url", e)
        })?;
        let response = self.fetcher.fetch(request).await?;
        match response.status() {
            StatusCode::OK => Ok(Some(response.into_body().collect(self.max_body).await?)),
            StatusCode::NOT_FOUND => Ok(None),
            status => Err(Error::new(
                ErrorKind::Backend,
                format!("origin answered {status}"),
            )),
        }
    }
}

/// KV in front of an origin. See the [module docs](super).
///
/// A miss loads from the [`Loader`] once however many callers miss together (through
/// [`Coalescer`]), answers them all, and writes the value to KV with the TTL in the background
/// (through [`WaitUntil`]), so no caller waits for the write. A KV failure is treated as a miss: the origin
/// still answers. An origin failure is returned and KV is left untouched.
///
/// ```
/// use std::time::Duration;
/// use bytes::Bytes;
/// use edge_core::{KvStore, wait_until::QueuedWaitUntil};
/// use edge_kv::{MemoryKv, patterns::ReadThrough};
///
/// # futures::executor::block_on(async {
/// let background = QueuedWaitUntil::new();
/// let products = ReadThrough::new(MemoryKv::new(), |key: String| async move {
///     Ok(Some(Bytes::from(format!("loaded {key} from the origin"))))
/// }, background.clone())
/// .with_ttl(Duration::from_secs(300));
///
/// assert_eq!(products.get("product:1").await?.unwrap(), "loaded product:1 from the origin");
/// background.run_all().await; // the KV write happens after the response
/// assert!(products.store().get("product:1").await?.is_some());
/// # Ok::<_, edge_core::Error>(()) }).unwrap();
/// ```
pub struct ReadThrough<S, L, W> {
    inner: Arc<Inner<S, L, W>>,
    ttl: Duration,
}

struct Inner<S, L, W> {
    store: S,
    loader: L,
    background: W,
    flights: Coalescer<String, Result<Option<Bytes>, Error>>,
}

impl<S, L, W> ReadThrough<S, L, W>
where
    S: KvStore + 'static,
    L: Loader + 'static,
    W: WaitUntil + 'static,
{
    /// Reads `store`, loading misses with `loader` and filling KV through `background`. TTL: 1 hour.
    pub fn new(store: S, loader: L, background: W) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                loader,
                background,
                flights: Coalescer::new(),
            }),
            ttl: Duration::from_secs(3600),
        }
    }

    /// Sets the TTL of values written to KV.
    #[must_use]
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The KV store.
    pub fn store(&self) -> &S {
        &self.inner.store
    }

    /// The value for `key`: from KV, or from the origin on a miss.
    ///
    /// # Errors
    ///
    /// An invalid key, or the origin's failure (shared by every caller coalesced onto that load).
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, Error> {
        match self.inner.store.get(key).await {
            Ok(Some(value)) => return Ok(Some(value)),
            Err(e) if e.is_invalid_key() => return Err(e),
            // A miss, or KV trouble: either way the origin answers.
            Ok(None) | Err(_) => {}
        }
        let inner = Arc::clone(&self.inner);
        let (owned, ttl) = (key.to_owned(), self.ttl);
        self.inner
            .flights
            .run(key.to_owned(), move || async move {
                let loaded = inner.loader.load(&owned).await?;
                if let Some(value) = &loaded {
                    let (writer, value) = (Arc::clone(&inner), value.clone());
                    inner.background.wait_until(async move {
                        let options = PutOptions::new().with_ttl(ttl);
                        // Best effort: a failed fill only means the next read misses again.
                        let _ = writer.store.put(&owned, value, options).await;
                    });
                }
                Ok(loaded)
            })
            .await
    }
}

impl<S, L, W> Clone for ReadThrough<S, L, W> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            ttl: self.ttl,
        }
    }
}

impl<S, L, W> fmt::Debug for ReadThrough<S, L, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadThrough")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}
