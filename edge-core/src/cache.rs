//! The HTTP cache storage contract: responses stored under a cache key, purgeable by tag.
//!
//! This is storage only. Which responses may be stored, for how long they are fresh, and when a stale one may
//! still be served are HTTP decisions made by `edge-cache`; it hands a store a [`CachedResponse`] whose
//! [`expires_at`](CachedResponse::expires_at) says when the store may forget it (the end of the freshness
//! lifetime plus any stale-while-revalidate / stale-if-error window). A store never returns an entry past that
//! time, and may drop entries earlier to stay within its bounds: a cache miss is always a correct answer.
//!
//! # Cancel safety
//!
//! Lookups are cancel-safe. A dropped `put`, `delete` or `purge_tag` may or may not have been applied, but
//! an entry is never visible half-written.
//!
//! ```
//! use bytes::Bytes;
//! use edge_core::cache::{CacheStore, CachedResponse};
//!
//! async fn cached_or_none<S: CacheStore>(cache: &S, url: &str) -> Option<Bytes> {
//!     match cache.get(url).await {
//!         Ok(Some(hit)) => Some(hit.body),
//!         // A broken cache must not break the request: treat errors as misses.
//!         Ok(None) | Err(_) => None,
//!     }
//! }
//! ```

use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};

use crate::error::{Error, ErrorKind};
use crate::sync::{BoxFuture, MaybeSend, MaybeSync};

/// A stored response.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct CachedResponse {
    /// The response status.
    pub status: StatusCode,
    /// The response headers as stored.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
    /// When the response was stored (wall clock); `edge-cache` derives `Age` from it.
    pub stored_at: SystemTime,
    /// When the store may forget the entry; `None` leaves it to the store's eviction.
    pub expires_at: Option<SystemTime>,
    /// Cache tags (as from `Cache-Tag` / `Surrogate-Key`), for [`CacheStore::purge_tag`].
    pub tags: Vec<String>,
}

impl CachedResponse {
    /// A response stored at `stored_at`, with no expiry and no tags.
    #[must_use]
    pub fn new(status: StatusCode, headers: HeaderMap, body: Bytes, stored_at: SystemTime) -> Self {
        Self {
            status,
            headers,
            body,
            stored_at,
            expires_at: None,
            tags: Vec::new(),
        }
    }

    /// Sets when the store may forget the entry.
    #[must_use]
    pub fn with_expires_at(mut self, expires_at: SystemTime) -> Self {
        self.expires_at = Some(expires_at);
        self
    }

    /// Sets the tags.
    #[must_use]
    pub fn with_tags<I, T>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// Approximate memory held by the entry: body, headers and tags.
    #[must_use]
    pub fn weight(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 32)
            .sum();
        let tags: usize = self.tags.iter().map(String::len).sum();
        self.body.len() + headers + tags + 64
    }

    /// `true` if the entry has expired at wall time `now`.
    #[must_use]
    pub fn is_expired_at(&self, now: SystemTime) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// What a cache store accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheLimits {
    /// Longest cache key, in bytes.
    pub max_key_len: usize,
    /// Largest entry, by [`CachedResponse::weight`].
    pub max_entry_weight: usize,
    /// Most tags on one entry.
    pub max_tags: usize,
    /// Longest tag, in bytes.
    pub max_tag_len: usize,
}

impl CacheLimits {
    /// Keys up to 8 KiB, entries up to `max_entry_weight`, up to 64 tags of up to 1 KiB each.
    #[must_use]
    pub const fn new(max_entry_weight: usize) -> Self {
        Self {
            max_key_len: 8 * 1024,
            max_entry_weight,
            max_tags: 64,
            max_tag_len: 1024,
        }
    }

    /// Sets the longest key.
    #[must_use]
    pub const fn with_max_key_len(mut self, len: usize) -> Self {
        self.max_key_len = len;
        self
    }

    /// Checks a cache key.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidKey`] for an empty or overlong key.
    pub fn check_key(&self, key: &str) -> Result<(), Error> {
        if key.is_empty() {
            return Err(Error::invalid_key("cache key must not be empty"));
        }
        if key.len() > self.max_key_len {
            return Err(Error::invalid_key(format!(
                "cache key is {} bytes, the limit is {}",
                key.len(),
                self.max_key_len
            )));
        }
        Ok(())
    }

    /// Checks an entry before it is stored.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidKey`], [`ErrorKind::TooLarge`] for an overweight entry, or
    /// [`ErrorKind::InvalidInput`] for bad tags.
    pub fn check_put(&self, key: &str, response: &CachedResponse) -> Result<(), Error> {
        self.check_key(key)?;
        let weight = response.weight();
        if weight > self.max_entry_weight {
            return Err(Error::too_large(
                "cache entry",
                weight,
                self.max_entry_weight,
            ));
        }
        if response.tags.len() > self.max_tags {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "{} cache tags, the limit is {}",
                    response.tags.len(),
                    self.max_tags
                ),
            ));
        }
        for tag in &response.tags {
            Self::check_tag_len(tag, self.max_tag_len)?;
        }
        Ok(())
    }

    /// Checks a tag given to [`CacheStore::purge_tag`].
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] for an empty or overlong tag.
    pub fn check_tag(&self, tag: &str) -> Result<(), Error> {
        Self::check_tag_len(tag, self.max_tag_len)
    }

    fn check_tag_len(tag: &str, max: usize) -> Result<(), Error> {
        if tag.is_empty() || tag.len() > max {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("cache tag must be 1 to {max} bytes, got {}", tag.len()),
            ));
        }
        Ok(())
    }
}

/// Storage for HTTP responses. See the [module docs](self).
pub trait CacheStore: MaybeSend + MaybeSync {
    /// The store's limits.
    fn limits(&self) -> CacheLimits;

    /// The entry stored under `key`, unless absent or expired.
    ///
    /// # Errors
    ///
    /// An invalid key, or a backend failure (callers usually treat it as a miss).
    fn get(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<CachedResponse>, Error>> + MaybeSend;

    /// Stores `response` under `key`, replacing any entry.
    ///
    /// # Errors
    ///
    /// Inputs outside [`CacheStore::limits`] or a backend failure; on error the previous entry is untouched.
    fn put(
        &self,
        key: &str,
        response: CachedResponse,
    ) -> impl Future<Output = Result<(), Error>> + MaybeSend;

    /// Removes the entry under `key`; `true` if there was a live one.
    ///
    /// # Errors
    ///
    /// An invalid key, or a backend failure.
    fn delete(&self, key: &str) -> impl Future<Output = Result<bool, Error>> + MaybeSend;

    /// Removes every entry tagged `tag`; returns how many were removed, as far as the store can tell.
    ///
    /// # Errors
    ///
    /// An invalid tag, or a backend failure.
    fn purge_tag(&self, tag: &str) -> impl Future<Output = Result<usize, Error>> + MaybeSend;
}

/// The object-safe twin of [`CacheStore`]. Every `CacheStore` is one.
pub trait DynCacheStore: MaybeSend + MaybeSync {
    /// See [`CacheStore::limits`]. (Named apart so that it never clashes with `CacheStore::limits` when
    /// both traits are in scope.)
    fn dyn_limits(&self) -> CacheLimits;
    /// See [`CacheStore::get`].
    fn get_boxed<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<CachedResponse>, Error>>;
    /// See [`CacheStore::put`].
    fn put_boxed<'a>(
        &'a self,
        key: &'a str,
        response: CachedResponse,
    ) -> BoxFuture<'a, Result<(), Error>>;
    /// See [`CacheStore::delete`].
    fn delete_boxed<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, Error>>;
    /// See [`CacheStore::purge_tag`].
    fn purge_tag_boxed<'a>(&'a self, tag: &'a str) -> BoxFuture<'a, Result<usize, Error>>;
}

impl<T: CacheStore> DynCacheStore for T {
    fn dyn_limits(&self) -> CacheLimits {
        CacheStore::limits(self)
    }
    fn get_boxed<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<CachedResponse>, Error>> {
        Box::pin(self.get(key))
    }
    fn put_boxed<'a>(
        &'a self,
        key: &'a str,
        response: CachedResponse,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(self.put(key, response))
    }
    fn delete_boxed<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, Error>> {
        Box::pin(self.delete(key))
    }
    fn purge_tag_boxed<'a>(&'a self, tag: &'a str) -> BoxFuture<'a, Result<usize, Error>> {
        Box::pin(self.purge_tag(tag))
    }
}

/// A `dyn DynCacheStore` is itself a [`CacheStore`].
impl<'d> CacheStore for dyn DynCacheStore + 'd {
    fn limits(&self) -> CacheLimits {
        self.dyn_limits()
    }
    async fn get(&self, key: &str) -> Result<Option<CachedResponse>, Error> {
        self.get_boxed(key).await
    }
    async fn put(&self, key: &str, response: CachedResponse) -> Result<(), Error> {
        self.put_boxed(key, response).await
    }
    async fn delete(&self, key: &str) -> Result<bool, Error> {
        self.delete_boxed(key).await
    }
    async fn purge_tag(&self, tag: &str) -> Result<usize, Error> {
        self.purge_tag_boxed(tag).await
    }
}

impl<S: CacheStore + ?Sized> CacheStore for std::sync::Arc<S> {
    fn limits(&self) -> CacheLimits {
        (**self).limits()
    }
    fn get(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<CachedResponse>, Error>> + MaybeSend {
        (**self).get(key)
    }
    fn put(
        &self,
        key: &str,
        response: CachedResponse,
    ) -> impl Future<Output = Result<(), Error>> + MaybeSend {
        (**self).put(key, response)
    }
    fn delete(&self, key: &str) -> impl Future<Output = Result<bool, Error>> + MaybeSend {
        (**self).delete(key)
    }
    fn purge_tag(&self, tag: &str) -> impl Future<Output = Result<usize, Error>> + MaybeSend {
        (**self).purge_tag(tag)
    }
}
