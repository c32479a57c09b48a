//! [`WorkersCache`]: the Workers Cache API as a [`CacheStore`] (feature `workers`, wasm32 only).
//!
//! Each entry is one Cache API response whose body is the entry in the [`codec`](crate::codec) format
//! (status, headers, body, stored-at, expiry and tags together) and whose `Cache-Control: max-age` lets the
//! platform free it when it expires. Expiry as reads see it is decided by the store's [`Clock`], as for every
//! store in the SDK. Keys map to URLs under a base (`https://edge-cache.invalid/` unless set; on Cloudflare,
//! use a hostname of your zone).
//!
//! # Tags
//!
//! The Cache API has no purge by tag, so the store keeps one index entry per tag listing the keys stored
//! with it. [`purge_tag`](CacheStore::purge_tag) reads the index, deletes the live entries that still carry
//! the tag, and drops the index. Index updates are read-modify-write: two isolates writing the same tag at
//! the same instant can lose one key from the index (that entry then expires instead of being purged).
//!
//! # What differs from the other stores
//!
//! - **Per data center**: the Cache API is local to the colo that wrote it; a put or purge does not reach
//!   other locations (Cloudflare's zone-wide purge is an API call outside the Worker).
//! - **Eviction**: the platform may evict any entry before its `max-age`, least recently used first.
//! - **Size**: the Cache API takes objects up to 512 MB, but this store reads an entry into isolate memory
//!   (128 MB per isolate), so entries are limited to [`DEFAULT_MAX_ENTRY`] unless set otherwise.
//!
//! A refusal by the Cache API, a JS exception, or an entry another program put under our URL are
//! [`Error`]s, never a trap.

use std::time::SystemTime;

use bytes::Bytes;
use edge_core::cache::{CacheLimits, CachedResponse};
use edge_core::host::workers::js_error;
use edge_core::{CacheStore, Clock, Error, ErrorKind, SystemClock};
use futures_util::future::join_all;
use js_sys::{Reflect, Uint8Array};
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use crate::codec::{self, decode_keys as decode_index, encode_keys as encode_index};

/// The largest entry the store accepts by default: 16 MiB.
pub const DEFAULT_MAX_ENTRY: usize = 16 << 20;

/// How long the platform may keep an entry that has no expiry of its own: one year.
const NO_EXPIRY_MAX_AGE: u64 = 365 * 24 * 3600;

/// The Workers Cache API as a [`CacheStore`]. See the [module docs](self).
pub struct WorkersCache<C = SystemClock> {
    cache: web_sys::Cache,
    base: String,
    clock: C,
    limits: CacheLimits,
}

impl WorkersCache<SystemClock> {
    /// The zone's default cache (`caches.default`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Unavailable`] when the runtime has no Cache API.
    pub fn default_cache() -> Result<Self, Error> {
        let caches = caches()?;
        let cache = Reflect::get(&caches, &"default".into())
            .ok()
            .and_then(|c| c.dyn_into::<web_sys::Cache>().ok())
            .ok_or_else(|| {
                Error::new(ErrorKind::Unavailable, "the runtime has no caches.default")
            })?;
        Ok(Self::new(cache))
    }

    /// The named cache `name` (`caches.open(name)`), kept apart from the default one.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Unavailable`] when the runtime has no Cache API or refuses to open it.
    pub async fn open(name: &str) -> Result<Self, Error> {
        let cache = JsFuture::from(caches()?.open(name))
            .await
            .map_err(|e| js_error(ErrorKind::Unavailable, "caches.open", &e))?
            .dyn_into::<web_sys::Cache>()
            .map_err(|_| Error::new(ErrorKind::Unavailable, "caches.open gave no Cache"))?;
        Ok(Self::new(cache))
    }

    fn new(cache: web_sys::Cache) -> Self {
        Self {
            cache,
            base: "https://edge-cache.invalid/".to_owned(),
            clock: SystemClock::new(),
            limits: CacheLimits::new(DEFAULT_MAX_ENTRY),
        }
    }
}

impl<C: Clock> WorkersCache<C> {
    /// Decides expiry on `clock` (default [`SystemClock`], which reads `Date.now()` here).
    #[must_use]
    pub fn with_clock<C2: Clock>(self, clock: C2) -> WorkersCache<C2> {
        WorkersCache {
            cache: self.cache,
            base: self.base,
            clock,
            limits: self.limits,
        }
    }

    /// Maps keys to URLs under `base` (an absolute `https` URL; a `/` is added if missing). The Cache API
    /// refuses keys under anything else, so every call then fails with [`ErrorKind::Backend`].
    #[must_use]
    pub fn with_base_url(mut self, base: impl Into<String>) -> Self {
        self.base = base.into();
        if !self.base.ends_with('/') {
            self.base.push('/');
        }
        self
    }

    /// Accepts entries up to `max_entry_weight` bytes.
    #[must_use]
    pub fn with_max_entry(mut self, max_entry_weight: usize) -> Self {
        self.limits = CacheLimits::new(max_entry_weight);
        self
    }

    fn entry_url(&self, key: &str) -> String {
        let mut url = String::with_capacity(self.base.len() + 2 + key.len() * 3);
        url.push_str(&self.base);
        url.push_str("e/");
        percent_encode(key, &mut url);
        url
    }

    fn tag_url(&self, tag: &str) -> String {
        let mut url = String::with_capacity(self.base.len() + 2 + tag.len() * 3);
        url.push_str(&self.base);
        url.push_str("t/");
        percent_encode(tag, &mut url);
        url
    }

    async fn read(&self, url: &str) -> Result<Option<Bytes>, Error> {
        let found = JsFuture::from(self.cache.match_with_str(url))
            .await
            .map_err(|e| js_error(ErrorKind::Backend, "Cache API match", &e))?;
        if found.is_undefined() || found.is_null() {
            return Ok(None);
        }
        let response: web_sys::Response = found
            .dyn_into()
            .map_err(|_| Error::new(ErrorKind::Corrupt, "Cache API match gave no Response"))?;
        let buffer = response
            .array_buffer()
            .map_err(|e| js_error(ErrorKind::Backend, "reading a cached body", &e))?;
        let buffer = JsFuture::from(buffer)
            .await
            .map_err(|e| js_error(ErrorKind::Backend, "reading a cached body", &e))?;
        Ok(Some(Bytes::from(Uint8Array::new(&buffer).to_vec())))
    }

    async fn write(&self, url: &str, body: &[u8], max_age: u64) -> Result<(), Error> {
        let headers = web_sys::Headers::new()
            .map_err(|e| js_error(ErrorKind::Backend, "creating Headers", &e))?;
        headers
            .set("cache-control", &format!("max-age={}", max_age.max(1)))
            .and_then(|()| headers.set("content-type", "application/octet-stream"))
            .map_err(|e| js_error(ErrorKind::Backend, "setting a header", &e))?;
        let init = web_sys::ResponseInit::new();
        init.set_status(200);
        init.set_headers(&headers.into());
        let response = web_sys::Response::new_with_opt_buffer_source_and_init(
            Some(&Uint8Array::from(body)),
            &init,
        )
        .map_err(|e| js_error(ErrorKind::Backend, "building a Response", &e))?;
        JsFuture::from(self.cache.put_with_str(url, &response))
            .await
            .map(|_| ())
            .map_err(|e| js_error(ErrorKind::Backend, "Cache API put refused the entry", &e))
    }

    async fn remove(&self, url: &str) -> Result<bool, Error> {
        let deleted = JsFuture::from(self.cache.delete_with_str(url))
            .await
            .map_err(|e| js_error(ErrorKind::Backend, "Cache API delete", &e))?;
        Ok(deleted.as_bool().unwrap_or(false))
    }

    async fn live_entry(
        &self,
        key: &str,
        now: SystemTime,
    ) -> Result<Option<CachedResponse>, Error> {
        let Some(raw) = self.read(&self.entry_url(key)).await? else {
            return Ok(None);
        };
        let entry = codec::decode(&raw)?;
        Ok((!entry.is_expired_at(now)).then_some(entry))
    }

    async fn tag_index(&self, tag: &str) -> Result<Vec<String>, Error> {
        let Some(raw) = self.read(&self.tag_url(tag)).await? else {
            return Ok(Vec::new());
        };
        decode_index(&raw)
    }

    async fn add_to_index(&self, tag: &str, key: &str) -> Result<(), Error> {
        let mut keys = self.tag_index(tag).await.unwrap_or_default();
        if keys.iter().any(|k| k == key) {
            return Ok(());
        }
        keys.push(key.to_owned());
        self.write(&self.tag_url(tag), &encode_index(&keys), NO_EXPIRY_MAX_AGE)
            .await
    }
}

impl<C> std::fmt::Debug for WorkersCache<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkersCache")
            .field("base", &self.base)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

fn caches() -> Result<web_sys::CacheStorage, Error> {
    let global: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
    global
        .caches()
        .map_err(|e| js_error(ErrorKind::Unavailable, "the runtime has no Cache API", &e))
}

/// A URL path segment for any key: unreserved bytes as they are, every other byte `%XX`.
fn percent_encode(text: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 15)]));
        }
    }
}

impl<C: Clock> CacheStore for WorkersCache<C> {
    fn limits(&self) -> CacheLimits {
        self.limits
    }

    async fn get(&self, key: &str) -> Result<Option<CachedResponse>, Error> {
        self.limits.check_key(key)?;
        self.live_entry(key, self.clock.wall_time()).await
    }

    async fn put(&self, key: &str, response: CachedResponse) -> Result<(), Error> {
        self.limits.check_put(key, &response)?;
        let now = self.clock.wall_time();
        let max_age = match response.expires_at {
            Some(at) => {
                let ttl = at.duration_since(now).unwrap_or_default();
                ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0)
            }
            None => NO_EXPIRY_MAX_AGE,
        };
        self.write(&self.entry_url(key), &codec::encode(&response), max_age)
            .await?;
        // The entry is stored; a tag index that cannot be updated leaves the entry unpurgeable by that tag
        // (it still expires), which is reported.
        for tag in &response.tags {
            self.add_to_index(tag, key).await?;
        }
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<bool, Error> {
        self.limits.check_key(key)?;
        let live = self
            .live_entry(key, self.clock.wall_time())
            .await?
            .is_some();
        let removed = self.remove(&self.entry_url(key)).await?;
        Ok(live && removed)
    }

    async fn purge_tag(&self, tag: &str) -> Result<usize, Error> {
        self.limits.check_tag(tag)?;
        let now = self.clock.wall_time();
        let keys = self.tag_index(tag).await?;
        let purged = join_all(keys.iter().map(|key| async move {
            match self.live_entry(key, now).await {
                // Only entries that still carry the tag: an overwrite may have replaced them.
                Ok(Some(entry)) if entry.tags.iter().any(|t| t == tag) => {
                    self.remove(&self.entry_url(key)).await.map(usize::from)
                }
                Ok(_) => Ok(0),
                // An entry another program wrote is not ours to count.
                Err(e) if e.kind() == ErrorKind::Corrupt => Ok(0),
                Err(e) => Err(e),
            }
        }))
        .await
        .into_iter()
        .sum::<Result<usize, Error>>()?;
        self.remove(&self.tag_url(tag)).await?;
        Ok(purged)
    }
}
