//! A JSON document read from KV on first use, kept in memory, refreshed in the background.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use edge_core::refresh::{Load, Refresh};
use edge_core::{Clock, Error, ErrorKind, KvStore, MaybeSend, MaybeSync, WaitUntil};
use serde::de::DeserializeOwned;

/// A document (configuration, a flag set, a key set) stored as JSON under one KV key.
///
/// The Workers cold-start advice: do no blocking work at start-up. Nothing is read when the document is
/// created; the first [`get`](Self::get) reads and parses it (concurrent first callers share one read), and
/// the parsed value is kept in memory for `ttl`. After that, a call past the TTL returns the value it has at
/// once and refreshes it in the background through [`WaitUntil`], one refresh at a time. If a refresh fails
/// (KV down, the document deleted or corrupted), the last good value keeps being served and the refresh is
/// retried after a quarter of the TTL. (All of that is [`Refresh`]; this type is its KV reader.)
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
pub struct LazyDocument<S, T, C, W>
where
    S: KvStore,
    T: DeserializeOwned + MaybeSend + MaybeSync + 'static,
{
    document: Refresh<Reader<S, T>, C, W>,
}

/// One read of the document: get the key, parse the JSON.
struct Reader<S, T> {
    store: S,
    key: String,
    parses_into: PhantomData<fn() -> T>,
}

impl<S, T> Load for Reader<S, T>
where
    S: KvStore,
    T: DeserializeOwned + MaybeSend + MaybeSync + 'static,
{
    type Value = T;
    type Error = Error;

    async fn load(&self) -> Result<T, Error> {
        let raw = self.store.get(&self.key).await?.ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!("no document at `{}`", self.key),
            )
        })?;
        serde_json::from_slice(&raw).map_err(|e| {
            Error::with_source(
                ErrorKind::Corrupt,
                format!("document at `{}` is not valid", self.key),
                e,
            )
        })
    }
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
        let reader = Reader {
            store,
            key: key.into(),
            parses_into: PhantomData,
        };
        Self {
            document: Refresh::new(reader, Duration::from_secs(60), clock, background),
        }
    }

    /// How long a read value is served without asking KV again (default 60 s).
    #[must_use]
    pub fn with_ttl(self, ttl: Duration) -> Self {
        self.document.set_ttl(ttl);
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
        self.document.get().await
    }
}

impl<S, T, C, W> Clone for LazyDocument<S, T, C, W>
where
    S: KvStore,
    T: DeserializeOwned + MaybeSend + MaybeSync + 'static,
{
    fn clone(&self) -> Self {
        Self {
            document: self.document.clone(),
        }
    }
}

impl<S, T, C, W> fmt::Debug for LazyDocument<S, T, C, W>
where
    S: KvStore,
    T: DeserializeOwned + MaybeSend + MaybeSync + 'static,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LazyDocument")
            .field("key", &self.document.loader().key)
            .field("document", &self.document)
            .finish()
    }
}
