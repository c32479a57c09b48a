//! The key-value contract: what Workers KV, Redis and the in-memory store have in common.
//!
//! Keys are UTF-8 strings, values are bytes, each entry may carry a small JSON metadata document and an
//! expiry. `list` walks keys in lexicographic (byte) order, filtered by prefix, a page at a time, resuming from
//! an opaque cursor.
//!
//! # Consistency
//!
//! The contract promises only what the weakest backend delivers: Workers KV is *eventually consistent*, and a
//! read at one location can miss a write made elsewhere up to a minute earlier. Each implementation documents
//! what it gives (the in-memory store and Redis are strongly consistent). Code that needs one writer per key
//! belongs in a durable object, not in KV.
//!
//! # Limits
//!
//! Each store reports its limits through [`KvStore::limits`]; inputs outside them fail with a typed
//! [`Error`] ([`ErrorKind::InvalidKey`], [`ErrorKind::TooLarge`], [`ErrorKind::InvalidInput`]) and change
//! nothing. [`KvLimits::WORKERS`] are Cloudflare's documented limits, the default for portable code.
//!
//! # Cancel safety
//!
//! Reads are cancel-safe. A write whose future is dropped before it completes may or may not have been
//! applied (as with any network store), but is never applied partially: value, metadata and expiry land
//! together or not at all.
//!
//! ```
//! use bytes::Bytes;
//! use edge_core::kv::{KvStore, PutOptions};
//!
//! async fn remember_session<S: KvStore>(kv: &S, id: &str, user: &str) -> Result<(), edge_core::Error> {
//!     let options = PutOptions::new()
//!         .with_ttl(std::time::Duration::from_secs(3600))
//!         .with_metadata(serde_json::json!({ "user": user }));
//!     kv.put(&format!("session:{id}"), Bytes::from(user.to_owned()), options).await
//! }
//! ```

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde_json::Value;

use crate::error::{Error, ErrorKind};
use crate::sync::{BoxFuture, MaybeSend, MaybeSync};

/// When an entry stops being readable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Expiration {
    /// A time-to-live counted from the moment of the write, on the store's clock.
    Ttl(Duration),
    /// An absolute wall-clock time.
    At(SystemTime),
}

/// Options for [`KvStore::put`].
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct PutOptions {
    /// When the entry expires; `None` keeps it until deleted.
    pub expiration: Option<Expiration>,
    /// A JSON document stored with the value and returned with it and by `list`.
    pub metadata: Option<Value>,
}

impl PutOptions {
    /// No expiry, no metadata.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            expiration: None,
            metadata: None,
        }
    }

    /// Expire `ttl` after the write.
    #[must_use]
    pub const fn with_ttl(mut self, ttl: Duration) -> Self {
        self.expiration = Some(Expiration::Ttl(ttl));
        self
    }

    /// Expire at the wall-clock time `at`.
    #[must_use]
    pub const fn with_expiration(mut self, at: SystemTime) -> Self {
        self.expiration = Some(Expiration::At(at));
        self
    }

    /// Store `metadata` with the value.
    #[must_use]
    pub fn with_metadata(mut self, metadata: Value) -> Self {
        self.metadata = Some(metadata);
        self
    }
}

/// A value with what was stored beside it.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct KvEntry {
    /// The value.
    pub value: Bytes,
    /// The metadata given at write time.
    pub metadata: Option<Value>,
    /// When the entry expires, if it does.
    pub expires_at: Option<SystemTime>,
}

impl KvEntry {
    /// An entry without metadata or expiry.
    #[must_use]
    pub fn new(value: Bytes) -> Self {
        Self {
            value,
            metadata: None,
            expires_at: None,
        }
    }

    /// Sets the metadata.
    #[must_use]
    pub fn with_metadata(mut self, metadata: Option<Value>) -> Self {
        self.metadata = metadata;
        self
    }

    /// Sets the expiry.
    #[must_use]
    pub fn with_expires_at(mut self, expires_at: Option<SystemTime>) -> Self {
        self.expires_at = expires_at;
        self
    }
}

/// Options for [`KvStore::list`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListOptions {
    /// Only keys starting with this prefix.
    pub prefix: Option<String>,
    /// Resume after the page that returned this cursor.
    pub cursor: Option<String>,
    /// At most this many keys per page; `None` means the store's maximum ([`KvLimits::max_list_limit`]).
    pub limit: Option<usize>,
}

impl ListOptions {
    /// All keys, first page, the store's maximum page size.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            prefix: None,
            cursor: None,
            limit: None,
        }
    }

    /// Only keys starting with `prefix`.
    #[must_use]
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// Continue from a cursor returned by an earlier page.
    #[must_use]
    pub fn with_cursor(mut self, cursor: impl Into<String>) -> Self {
        self.cursor = Some(cursor.into());
        self
    }

    /// At most `limit` keys per page.
    #[must_use]
    pub const fn with_limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }
}

/// One key in a [`ListPage`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ListKey {
    /// The key.
    pub name: String,
    /// When it expires, if it does.
    pub expires_at: Option<SystemTime>,
    /// Its metadata.
    pub metadata: Option<Value>,
}

impl ListKey {
    /// A listed key without expiry or metadata.
    #[must_use]
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            expires_at: None,
            metadata: None,
        }
    }

    /// Sets the expiry.
    #[must_use]
    pub fn with_expires_at(mut self, expires_at: Option<SystemTime>) -> Self {
        self.expires_at = expires_at;
        self
    }

    /// Sets the metadata.
    #[must_use]
    pub fn with_metadata(mut self, metadata: Option<Value>) -> Self {
        self.metadata = metadata;
        self
    }
}

/// One page of [`KvStore::list`].
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct ListPage {
    /// Keys in lexicographic byte order.
    pub keys: Vec<ListKey>,
    /// Pass this to [`ListOptions::with_cursor`] for the next page; `None` when the listing is complete.
    pub cursor: Option<String>,
}

impl ListPage {
    /// A page of `keys`, followed by `cursor`.
    #[must_use]
    pub fn new(keys: Vec<ListKey>, cursor: Option<String>) -> Self {
        Self { keys, cursor }
    }

    /// `true` when there are no more pages.
    #[must_use]
    pub fn is_complete(&self) -> bool {
        self.cursor.is_none()
    }
}

/// What a store accepts. Inputs beyond these fail with a typed error and change nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct KvLimits {
    /// Longest key, in bytes.
    pub max_key_len: usize,
    /// Largest value, in bytes.
    pub max_value_len: usize,
    /// Largest metadata document, in bytes of compact JSON.
    pub max_metadata_len: usize,
    /// Shortest TTL accepted (Workers KV refuses TTLs under 60 s).
    pub min_ttl: Duration,
    /// Largest page `list` returns.
    pub max_list_limit: usize,
}

impl KvLimits {
    /// Cloudflare Workers KV's documented limits: keys up to 512 bytes, values up to 25 MiB, metadata up to
    /// 1024 bytes, TTL at least 60 s, pages of at most 1000 keys.
    pub const WORKERS: Self = Self {
        max_key_len: 512,
        max_value_len: 25 * 1024 * 1024,
        max_metadata_len: 1024,
        min_ttl: Duration::from_secs(60),
        max_list_limit: 1000,
    };

    /// Limits with the given maximum key and value sizes, the rest as [`KvLimits::WORKERS`].
    #[must_use]
    pub const fn new(max_key_len: usize, max_value_len: usize) -> Self {
        Self {
            max_key_len,
            max_value_len,
            ..Self::WORKERS
        }
    }

    /// Sets the largest metadata document.
    #[must_use]
    pub const fn with_max_metadata_len(mut self, len: usize) -> Self {
        self.max_metadata_len = len;
        self
    }

    /// Sets the shortest TTL.
    #[must_use]
    pub const fn with_min_ttl(mut self, ttl: Duration) -> Self {
        self.min_ttl = ttl;
        self
    }

    /// Sets the largest page.
    #[must_use]
    pub const fn with_max_list_limit(mut self, limit: usize) -> Self {
        self.max_list_limit = limit;
        self
    }

    /// Checks a key: not empty, not `.` or `..` (Workers KV refuses them), within `max_key_len`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidKey`] describing the problem.
    pub fn check_key(&self, key: &str) -> Result<(), Error> {
        if key.is_empty() {
            return Err(Error::invalid_key("key must not be empty"));
        }
        if key == "." || key == ".." {
            return Err(Error::invalid_key("key must not be `.` or `..`"));
        }
        if key.len() > self.max_key_len {
            return Err(Error::invalid_key(format!(
                "key is {} bytes, the limit is {}",
                key.len(),
                self.max_key_len
            )));
        }
        Ok(())
    }

    /// Checks a write and resolves its expiry against the wall time `now` (read only if the write expires):
    /// key, value size, metadata size, TTL bounds. Returns the absolute expiry, if any.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidKey`], [`ErrorKind::TooLarge`] or [`ErrorKind::InvalidInput`] (TTL below
    /// `min_ttl`, or an expiry that is not at least `min_ttl` in the future).
    pub fn check_put(
        &self,
        key: &str,
        value: &[u8],
        options: &PutOptions,
        now: impl FnOnce() -> SystemTime,
    ) -> Result<Option<SystemTime>, Error> {
        self.check_key(key)?;
        if value.len() > self.max_value_len {
            return Err(Error::too_large("value", value.len(), self.max_value_len));
        }
        if let Some(metadata) = &options.metadata {
            let len = metadata_len(metadata);
            if len > self.max_metadata_len {
                return Err(Error::too_large("metadata", len, self.max_metadata_len));
            }
        }
        match options.expiration {
            None => Ok(None),
            Some(Expiration::Ttl(ttl)) => {
                let now = now();
                if ttl < self.min_ttl {
                    return Err(Error::new(
                        ErrorKind::InvalidInput,
                        format!("ttl of {ttl:?} is below the minimum of {:?}", self.min_ttl),
                    ));
                }
                now.checked_add(ttl).map(Some).ok_or_else(|| {
                    Error::new(ErrorKind::InvalidInput, "ttl overflows the wall clock")
                })
            }
            Some(Expiration::At(at)) => {
                let now = now();
                let earliest = now.checked_add(self.min_ttl).unwrap_or(now);
                if at < earliest {
                    return Err(Error::new(
                        ErrorKind::InvalidInput,
                        format!(
                            "expiration must be at least {:?} in the future",
                            self.min_ttl
                        ),
                    ));
                }
                Ok(Some(at))
            }
        }
    }

    /// Resolves a page size: `None` means `max_list_limit`; zero or more than the maximum is refused.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`].
    pub fn check_list_limit(&self, limit: Option<usize>) -> Result<usize, Error> {
        match limit {
            None => Ok(self.max_list_limit),
            Some(0) => Err(Error::new(
                ErrorKind::InvalidInput,
                "list limit must be at least 1",
            )),
            Some(n) if n > self.max_list_limit => Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "list limit {n} is above the maximum of {}",
                    self.max_list_limit
                ),
            )),
            Some(n) => Ok(n),
        }
    }
}

impl Default for KvLimits {
    fn default() -> Self {
        Self::WORKERS
    }
}

/// Length of a metadata document as compact JSON (what [`KvLimits::max_metadata_len`] limits), computed
/// without allocating the text.
#[must_use]
pub fn metadata_len(value: &Value) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Writing a `Value` to an infallible writer cannot fail (maps have string keys by construction).
    match serde_json::to_writer(&mut counter, value) {
        Ok(()) => counter.0,
        Err(_) => usize::MAX,
    }
}

/// A key-value store.
///
/// See the [module docs](self) for consistency, limits and cancel safety. Implementations write plain
/// `async fn`s; the returned futures are `Send` on native targets (so a tokio host can hold them across
/// `.await`) and unconstrained on `wasm32`.
pub trait KvStore: MaybeSend + MaybeSync {
    /// The store's limits.
    fn limits(&self) -> KvLimits;

    /// The value at `key`, or `None` if absent or expired.
    ///
    /// # Errors
    ///
    /// An invalid key, or a backend failure.
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Bytes>, Error>> + MaybeSend;

    /// The value at `key` with its metadata and expiry.
    ///
    /// # Errors
    ///
    /// An invalid key, or a backend failure.
    fn get_with_metadata(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<KvEntry>, Error>> + MaybeSend;

    /// Stores `value` at `key`, replacing what was there (value, metadata and expiry together).
    ///
    /// # Errors
    ///
    /// Inputs outside [`KvStore::limits`], a full store, or a backend failure; on error nothing changed.
    fn put(
        &self,
        key: &str,
        value: Bytes,
        options: PutOptions,
    ) -> impl Future<Output = Result<(), Error>> + MaybeSend;

    /// Removes `key`. Removing an absent key succeeds.
    ///
    /// # Errors
    ///
    /// An invalid key, or a backend failure.
    fn delete(&self, key: &str) -> impl Future<Output = Result<(), Error>> + MaybeSend;

    /// One page of live keys in lexicographic byte order.
    ///
    /// # Errors
    ///
    /// A cursor this store did not hand out, a limit outside `1..=max_list_limit`, or a backend failure.
    fn list(
        &self,
        options: ListOptions,
    ) -> impl Future<Output = Result<ListPage, Error>> + MaybeSend;
}

/// The object-safe twin of [`KvStore`], for `Arc<dyn DynKvStore>`. Every `KvStore` is one.
pub trait DynKvStore: MaybeSend + MaybeSync {
    /// See [`KvStore::limits`]. (Named apart so that it never clashes with `KvStore::limits` when both
    /// traits are in scope.)
    fn dyn_limits(&self) -> KvLimits;
    /// See [`KvStore::get`].
    fn get_boxed<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>, Error>>;
    /// See [`KvStore::get_with_metadata`].
    fn get_with_metadata_boxed<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<KvEntry>, Error>>;
    /// See [`KvStore::put`].
    fn put_boxed<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        options: PutOptions,
    ) -> BoxFuture<'a, Result<(), Error>>;
    /// See [`KvStore::delete`].
    fn delete_boxed<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), Error>>;
    /// See [`KvStore::list`].
    fn list_boxed(&self, options: ListOptions) -> BoxFuture<'_, Result<ListPage, Error>>;
}

impl<T: KvStore> DynKvStore for T {
    fn dyn_limits(&self) -> KvLimits {
        KvStore::limits(self)
    }
    fn get_boxed<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>, Error>> {
        Box::pin(self.get(key))
    }
    fn get_with_metadata_boxed<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<KvEntry>, Error>> {
        Box::pin(self.get_with_metadata(key))
    }
    fn put_boxed<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        options: PutOptions,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(self.put(key, value, options))
    }
    fn delete_boxed<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(self.delete(key))
    }
    fn list_boxed(&self, options: ListOptions) -> BoxFuture<'_, Result<ListPage, Error>> {
        Box::pin(self.list(options))
    }
}

/// A `dyn DynKvStore` is itself a [`KvStore`], so generic code accepts boxed stores too.
impl<'d> KvStore for dyn DynKvStore + 'd {
    fn limits(&self) -> KvLimits {
        self.dyn_limits()
    }
    async fn get(&self, key: &str) -> Result<Option<Bytes>, Error> {
        self.get_boxed(key).await
    }
    async fn get_with_metadata(&self, key: &str) -> Result<Option<KvEntry>, Error> {
        self.get_with_metadata_boxed(key).await
    }
    async fn put(&self, key: &str, value: Bytes, options: PutOptions) -> Result<(), Error> {
        self.put_boxed(key, value, options).await
    }
    async fn delete(&self, key: &str) -> Result<(), Error> {
        self.delete_boxed(key).await
    }
    async fn list(&self, options: ListOptions) -> Result<ListPage, Error> {
        self.list_boxed(options).await
    }
}

impl<S: KvStore + ?Sized> KvStore for std::sync::Arc<S> {
    fn limits(&self) -> KvLimits {
        (**self).limits()
    }
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Bytes>, Error>> + MaybeSend {
        (**self).get(key)
    }
    fn get_with_metadata(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<KvEntry>, Error>> + MaybeSend {
        (**self).get_with_metadata(key)
    }
    fn put(
        &self,
        key: &str,
        value: Bytes,
        options: PutOptions,
    ) -> impl Future<Output = Result<(), Error>> + MaybeSend {
        (**self).put(key, value, options)
    }
    fn delete(&self, key: &str) -> impl Future<Output = Result<(), Error>> + MaybeSend {
        (**self).delete(key)
    }
    fn list(
        &self,
        options: ListOptions,
    ) -> impl Future<Output = Result<ListPage, Error>> + MaybeSend {
        (**self).list(options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked() {
        let limits = KvLimits::new(4, 10);
        assert!(limits.check_key("abcd").is_ok());
        for bad in ["", ".", "..", "abcde"] {
            assert!(
                limits.check_key(bad).unwrap_err().is_invalid_key(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn puts_are_checked_and_expiry_resolved() {
        let limits = KvLimits::new(16, 4).with_max_metadata_len(8);
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let at = limits.check_put(
            "k",
            b"1234",
            &PutOptions::new().with_ttl(Duration::from_secs(60)),
            || now,
        );
        assert_eq!(at.unwrap(), Some(now + Duration::from_secs(60)));
        assert!(
            limits
                .check_put("k", b"12345", &PutOptions::new(), || now)
                .unwrap_err()
                .is_too_large()
        );
        let big_meta = PutOptions::new().with_metadata(serde_json::json!({"abcdefgh": 1}));
        assert!(
            limits
                .check_put("k", b"", &big_meta, || now)
                .unwrap_err()
                .is_too_large()
        );
        let short = PutOptions::new().with_ttl(Duration::from_secs(59));
        assert_eq!(
            limits
                .check_put("k", b"", &short, || now)
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidInput
        );
        let past = PutOptions::new().with_expiration(now);
        assert_eq!(
            limits
                .check_put("k", b"", &past, || now)
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidInput
        );
        let huge = PutOptions::new().with_ttl(Duration::MAX);
        assert_eq!(
            limits
                .check_put("k", b"", &huge, || now)
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidInput
        );
    }

    #[test]
    fn list_limits_are_checked() {
        let limits = KvLimits::WORKERS;
        assert_eq!(limits.check_list_limit(None).unwrap(), 1000);
        assert_eq!(limits.check_list_limit(Some(7)).unwrap(), 7);
        assert!(limits.check_list_limit(Some(0)).is_err());
        assert!(limits.check_list_limit(Some(1001)).is_err());
    }

    #[test]
    fn json_len_matches_serialisation() {
        let v = serde_json::json!({"a": [1, "two", null], "b": {"c": true}});
        assert_eq!(metadata_len(&v), serde_json::to_string(&v).unwrap().len());
    }
}
