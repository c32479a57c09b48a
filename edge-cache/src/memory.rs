//! [`MemoryCache`]: the isolate-memory tier — a bounded in-memory [`CacheStore`] that builds for wasm32.
//!
//! Entries live in a [`quick_cache`] (S3-FIFO eviction, sharded, weighed in bytes by
//! [`CachedResponse::weight`]): its hit path is a hash and a shard read lock, the speed the benches
//! compare against. Around it this store adds what HTTP caching needs:
//! - **expiry** at [`CachedResponse::expires_at`] on the injected [`Clock`] (an expired entry is a miss
//!   and is dropped when seen);
//! - **purge by tag**: a tag → keys index, kept in step with evictions (the cache reports them through
//!   its lifecycle hook, and the index is cleaned after the shard lock is released) and with deletes;
//! - [`MemoryCache::get_shared`], a hit that clones an `Arc` instead of the headers, for the layer.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use edge_core::cache::{CacheLimits, CacheStore, CachedResponse};
use edge_core::{Clock, Error};
use quick_cache::sync::Cache;

use crate::policy::Parsed;
use quick_cache::{Lifecycle, Weighter};

type Key = Arc<str>;
/// The entry, its expiry as a [`Clock::now_nanos`] deadline (`u64::MAX`: none) so a hit compares two
/// integers instead of reading the wall clock, and its freshness directives parsed when it was stored.
type Value = (u64, Arc<CachedResponse>, Option<Parsed>);

#[derive(Clone, Copy, Debug, Default)]
struct ByWeight;

impl Weighter<Key, Value> for ByWeight {
    fn weight(&self, key: &Key, value: &Value) -> u64 {
        u64::try_from(key.len() + value.1.weight()).unwrap_or(u64::MAX)
    }
}

/// Collects the tagged entries an operation evicted, to be unindexed once the shard lock is released
/// (an untagged one is in no index: it is simply dropped).
#[derive(Clone, Copy, Debug, Default)]
struct CollectEvicted;

impl Lifecycle<Key, Value> for CollectEvicted {
    type RequestState = Vec<(Key, Value)>;

    fn on_evict(&self, state: &mut Self::RequestState, key: Key, value: Value) {
        if !value.1.tags.is_empty() {
            state.push((key, value));
        }
    }
}

type Entries = Cache<Key, Value, ByWeight, foldhash::fast::RandomState, CollectEvicted>;

/// A bounded in-memory HTTP cache store. Cheap to clone; clones share the entries.
///
/// ```
/// use bytes::Bytes;
/// use edge_cache::memory::MemoryCache;
/// use edge_core::cache::{CacheStore, CachedResponse};
/// use edge_core::{Clock, SystemClock};
/// use http::{HeaderMap, StatusCode};
///
/// # futures::executor::block_on(async {
/// let cache = MemoryCache::new(64 << 20, SystemClock::new()); // 64 MiB
/// let page = CachedResponse::new(StatusCode::OK, HeaderMap::new(), Bytes::from("<h1>hi</h1>"), SystemClock::new().wall_time())
///     .with_tags(["home"]);
/// cache.put("https://shop.example/", page).await?;
/// assert!(cache.get("https://shop.example/").await?.is_some());
/// assert_eq!(cache.purge_tag("home").await?, 1);
/// assert!(cache.get("https://shop.example/").await?.is_none());
/// # Ok::<_, edge_core::Error>(()) }).unwrap();
/// ```
pub struct MemoryCache<C> {
    shared: Arc<Shared<C>>,
}

struct Shared<C> {
    entries: Entries,
    tags: Mutex<HashMap<String, HashSet<Key>>>,
    limits: CacheLimits,
    clock: C,
}

impl<C> Clone for MemoryCache<C> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<C> std::fmt::Debug for MemoryCache<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryCache")
            .field("entries", &self.shared.entries.len())
            .field("weight", &self.shared.entries.weight())
            .field("capacity", &self.shared.entries.capacity())
            .finish()
    }
}

impl<C: Clock> MemoryCache<C> {
    /// A cache holding at most `capacity_bytes` (by [`CachedResponse::weight`]); one entry may use at
    /// most an eighth of it.
    #[must_use]
    pub fn new(capacity_bytes: u64, clock: C) -> Self {
        let max_entry = usize::try_from(capacity_bytes / 8)
            .unwrap_or(usize::MAX)
            .max(1);
        Self::with_limits(capacity_bytes, CacheLimits::new(max_entry), clock)
    }

    /// A cache of `capacity_bytes` with explicit `limits`.
    #[must_use]
    pub fn with_limits(capacity_bytes: u64, limits: CacheLimits, clock: C) -> Self {
        // A guess at the item count, for the table sizes: 4 KiB a response.
        let items = usize::try_from(capacity_bytes / 4096)
            .unwrap_or(usize::MAX)
            .clamp(16, 1 << 20);
        Self {
            shared: Arc::new(Shared {
                entries: Cache::with(
                    items,
                    capacity_bytes.max(1),
                    ByWeight,
                    foldhash::fast::RandomState::default(),
                    CollectEvicted,
                ),
                tags: Mutex::new(HashMap::new()),
                limits,
                clock,
            }),
        }
    }

    /// The live entry under `key`, shared (no copy of its headers or body).
    #[must_use]
    pub fn get_shared(&self, key: &str) -> Option<Arc<CachedResponse>> {
        self.get_parsed(key).map(|(entry, _)| entry)
    }

    /// The live entry under `key` with the parse stored beside it (if it was stored with one).
    #[must_use]
    pub fn get_parsed(&self, key: &str) -> Option<(Arc<CachedResponse>, Option<Parsed>)> {
        let (deadline, entry, parsed) = self.shared.entries.get(key)?;
        if deadline != u64::MAX && deadline <= self.shared.clock.now_nanos() {
            self.remove(key);
            return None;
        }
        Some((entry, parsed))
    }

    /// Stores an already shared entry (see [`CacheStore::put`]).
    ///
    /// # Errors
    ///
    /// Inputs outside the limits; nothing changes then.
    pub fn put_shared(&self, key: &str, response: Arc<CachedResponse>) -> Result<(), Error> {
        self.put_parsed(key, response, None)
    }

    /// Stores an entry with its freshness directives already parsed (from
    /// [`Stored::parsed`](crate::policy::Stored::parsed)), so lookups need not parse them again.
    ///
    /// # Errors
    ///
    /// Inputs outside the limits; nothing changes then.
    pub fn put_parsed(
        &self,
        key: &str,
        response: Arc<CachedResponse>,
        parsed: Option<Parsed>,
    ) -> Result<(), Error> {
        self.shared.limits.check_put(key, &response)?;
        let key: Key = Arc::from(key);
        let tagged = (!response.tags.is_empty()).then(|| Arc::clone(&response));
        let deadline = response.expires_at.map_or(u64::MAX, |at| {
            let left = at
                .duration_since(self.shared.clock.wall_time())
                .unwrap_or_default();
            let left = u64::try_from(left.as_nanos()).unwrap_or(u64::MAX - 1);
            self.shared
                .clock
                .now_nanos()
                .saturating_add(left)
                .min(u64::MAX - 1)
        });
        let mut evicted = Vec::new();
        self.shared.entries.insert_with_lifecycle(
            Arc::clone(&key),
            (deadline, response, parsed),
            &mut evicted,
        );
        // Index after inserting: a purge racing this put either sees the key or ran before it. Most
        // entries have no tags and evict none that have: the index's lock is not taken for them.
        if tagged.is_none() && evicted.is_empty() {
            return Ok(());
        }
        let mut index = self.tags();
        // What was evicted leaves the index first: it may be this key's previous entry, whose tags
        // the new one shares (unindexing it afterwards would take the new entry out of a purge).
        for (key, (_, value, _)) in evicted {
            unindex(&mut index, &key, &value);
        }
        for tag in tagged.iter().flat_map(|response| &response.tags) {
            index
                .entry(tag.clone())
                .or_default()
                .insert(Arc::clone(&key));
        }
        Ok(())
    }

    /// How many entries are held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.shared.entries.len()
    }

    /// Whether none is.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.shared.entries.is_empty()
    }

    fn tags(&self) -> MutexGuard<'_, HashMap<String, HashSet<Key>>> {
        self.shared
            .tags
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn remove(&self, key: &str) -> Option<Arc<CachedResponse>> {
        let (key, (_, value, _)) = self.shared.entries.remove(key)?;
        unindex(&mut self.tags(), &key, &value);
        Some(value)
    }
}

fn unindex(index: &mut HashMap<String, HashSet<Key>>, key: &Key, value: &CachedResponse) {
    for tag in &value.tags {
        if let Some(keys) = index.get_mut(tag) {
            keys.remove(key);
            if keys.is_empty() {
                index.remove(tag);
            }
        }
    }
}

impl<C: Clock> CacheStore for MemoryCache<C> {
    fn limits(&self) -> CacheLimits {
        self.shared.limits
    }

    async fn get(&self, key: &str) -> Result<Option<CachedResponse>, Error> {
        self.shared.limits.check_key(key)?;
        Ok(self.get_shared(key).map(|entry| (*entry).clone()))
    }

    async fn put(&self, key: &str, response: CachedResponse) -> Result<(), Error> {
        self.put_shared(key, Arc::new(response))
    }

    async fn delete(&self, key: &str) -> Result<bool, Error> {
        self.shared.limits.check_key(key)?;
        let now = self.shared.clock.wall_time();
        Ok(self
            .remove(key)
            .is_some_and(|entry| !entry.is_expired_at(now)))
    }

    async fn purge_tag(&self, tag: &str) -> Result<usize, Error> {
        self.shared.limits.check_tag(tag)?;
        let keys = self.tags().remove(tag).unwrap_or_default();
        let now = self.shared.clock.wall_time();
        let mut purged = 0;
        for key in keys {
            // The index may name a key whose entry was since replaced without this tag: check.
            let removed = self
                .shared
                .entries
                .remove_if(&key, |(_, entry, _)| entry.tags.iter().any(|t| t == tag));
            if let Some((key, (_, value, _))) = removed {
                unindex(&mut self.tags(), &key, &value);
                purged += usize::from(!value.is_expired_at(now));
            }
        }
        Ok(purged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_core::ManualClock;

    #[tokio::test]
    async fn memory_cache_passes_the_cache_kit() {
        edge_core::testing::cache::run_all(|clock: ManualClock| MemoryCache::new(1 << 20, clock))
            .await;
    }

    #[tokio::test]
    async fn stays_within_its_capacity_and_keeps_the_tag_index_clean() {
        let clock = ManualClock::new();
        let cache = MemoryCache::new(64 * 1024, clock.clone());
        let body = bytes::Bytes::from(vec![b'x'; 1000]);
        for i in 0..1000 {
            let entry = CachedResponse::new(
                http::StatusCode::OK,
                http::HeaderMap::new(),
                body.clone(),
                clock.wall_time(),
            )
            .with_tags([format!("t{}", i % 10)]);
            cache.put(&format!("k{i}"), entry).await.unwrap();
        }
        assert!(cache.shared.entries.weight() <= 64 * 1024);
        let indexed: usize = cache.tags().values().map(HashSet::len).sum();
        assert_eq!(indexed, cache.len(), "evicted entries leave the tag index");
        let purged: usize = {
            let mut n = 0;
            for t in 0..10 {
                n += cache.purge_tag(&format!("t{t}")).await.unwrap();
            }
            n
        };
        assert!(purged > 0 && cache.is_empty() && cache.tags().is_empty());
    }

    #[tokio::test]
    async fn an_entry_replaced_by_one_with_the_same_tag_is_still_purged() {
        // Found by the property below: the replaced entry left the index after the new one entered
        // it, taking the key out of the tag's set, and the purge missed the new entry.
        let cache = MemoryCache::new(1 << 20, ManualClock::new());
        let entry = || {
            CachedResponse::new(
                http::StatusCode::OK,
                http::HeaderMap::new(),
                bytes::Bytes::from_static(b"x"),
                std::time::SystemTime::UNIX_EPOCH,
            )
            .with_tags(["product-42"])
        };
        cache.put("k", entry()).await.unwrap();
        cache.put("k", entry()).await.unwrap();
        assert_eq!(cache.purge_tag("product-42").await.unwrap(), 1);
        assert!(cache.get("k").await.unwrap().is_none());
    }

    /// One step of the property below: a put (key, tags, body size) or a purge of a tag.
    #[derive(Clone, Debug)]
    enum Op {
        Put(u8, Vec<u8>, usize),
        Purge(u8),
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            4 => (0u8..12, proptest::collection::vec(0u8..3, 0..3), 0usize..900)
                .prop_map(|(k, tags, size)| Op::Put(k, tags, size)),
            1 => (0u8..3).prop_map(Op::Purge),
        ]
    }

    proptest::proptest! {
        /// Whatever the puts, replacements, evictions and purges, purging a tag removes every entry that
        /// has it: the index never loses a present entry's tag.
        #[test]
        fn purging_a_tag_reaches_every_entry_that_has_it(ops in proptest::collection::vec(op(), 1..60)) {
            let clock = ManualClock::new();
            // Room for a handful of entries, so puts evict.
            let cache = MemoryCache::new(8 * 1024, clock.clone());
            for op in ops {
                match op {
                    Op::Put(key, tags, size) => {
                        let entry = CachedResponse::new(
                            http::StatusCode::OK,
                            http::HeaderMap::new(),
                            bytes::Bytes::from(vec![b'x'; size]),
                            clock.wall_time(),
                        )
                        .with_tags(tags.iter().map(|t| format!("t{t}")));
                        cache.put_shared(&format!("k{key}"), Arc::new(entry)).unwrap();
                    }
                    Op::Purge(tag) => {
                        let tag = format!("t{tag}");
                        futures::executor::block_on(cache.purge_tag(&tag)).unwrap();
                        for key in 0..12u8 {
                            let left = cache.get_shared(&format!("k{key}"));
                            proptest::prop_assert!(
                                !left.is_some_and(|e| e.tags.contains(&tag)),
                                "k{key} still has {tag} after the purge"
                            );
                        }
                    }
                }
            }
        }
    }
}
