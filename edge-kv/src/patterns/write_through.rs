//! Write-through with invalidation: the origin first, then the KV entry goes.

use bytes::Bytes;
use edge_core::{Error, KvStore, MaybeSend, MaybeSync};

/// Where a [`WriteThrough`] writes. Closures `Fn(String, Bytes) -> impl Future<Output = Result<(), Error>>`
/// are writers.
pub trait Writer: MaybeSend + MaybeSync {
    /// Stores `value` for `key` at the origin.
    fn write(&self, key: &str, value: Bytes)
    -> impl Future<Output = Result<(), Error>> + MaybeSend;
}

impl<F, Fut> Writer for F
where
    F: Fn(String, Bytes) -> Fut + MaybeSend + MaybeSync,
    Fut: Future<Output = Result<(), Error>> + MaybeSend,
{
    fn write(
        &self,
        key: &str,
        value: Bytes,
    ) -> impl Future<Output = Result<(), Error>> + MaybeSend {
        self(key.to_owned(), value)
    }
}

/// Writes go to the origin (the source of truth) and then invalidate the KV copy, so the next read loads the
/// new value (for instance through [`ReadThrough`](super::ReadThrough)).
///
/// Invalidating rather than writing the new value into KV avoids racing a concurrent read-through fill
/// with an older value: the worst case is one extra origin read.
///
/// ```
/// use bytes::Bytes;
/// use edge_core::{KvStore, kv::PutOptions};
/// use edge_kv::{MemoryKv, patterns::WriteThrough};
///
/// # futures::executor::block_on(async {
/// let kv = MemoryKv::new();
/// kv.put("user:1", Bytes::from_static(b"old"), PutOptions::new()).await?;
/// let users = WriteThrough::new(kv.clone(), |_key: String, _value: Bytes| async { Ok(()) });
/// users.write("user:1", Bytes::from_static(b"new")).await?;
/// assert_eq!(kv.get("user:1").await?, None); // invalidated; the next read loads "new"
/// # Ok::<_, edge_core::Error>(()) }).unwrap();
/// ```
#[derive(Debug)]
pub struct WriteThrough<S, W> {
    store: S,
    writer: W,
}

impl<S: KvStore, W: Writer> WriteThrough<S, W> {
    /// Writes through `writer`, invalidating `store`.
    pub fn new(store: S, writer: W) -> Self {
        Self { store, writer }
    }

    /// Writes `value` to the origin, then deletes `key` from KV.
    ///
    /// # Errors
    ///
    /// An invalid key (nothing is written anywhere); the origin's failure (KV is left untouched); or the
    /// KV delete's failure after the origin accepted the write (KV may then serve the old value until its
    /// TTL ends, so the error is returned for the caller to retry the invalidation).
    pub async fn write(&self, key: &str, value: Bytes) -> Result<(), Error> {
        self.store.limits().check_key(key)?;
        self.writer.write(key, value).await?;
        self.store.delete(key).await
    }
}
