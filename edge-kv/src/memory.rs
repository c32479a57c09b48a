//! [`MemoryKv`]: a bounded, strongly consistent in-memory [`KvStore`].
//!
//! # Design
//!
//! Keys are spread over a power-of-two number of shards by hash. Each shard holds a hash table for point reads
//! and writes and an ordered set of the same keys (shared `Arc<str>`s, so no key is stored twice) for
//! `list`. A key is hashed once per operation: the same hash picks the shard and probes its table. A read
//! takes one shard's read lock; a write takes one shard's write lock; `list` reads every shard and merges at
//! most `limit + 1` keys from each.
//!
//! # Bounds
//!
//! The store holds at most [`max_entries`](MemoryKvBuilder::max_entries) entries and
//! [`max_bytes`](MemoryKvBuilder::max_bytes) bytes (keys, values, metadata and a fixed per-entry overhead).
//! It is a store, not a cache: when full it does not evict live data. A write that would exceed a bound first
//! purges expired entries, and if that is not enough fails with [`ErrorKind::CapacityExceeded`], changing
//! nothing. Expired entries are invisible at once and their memory is reclaimed by the next write to the same
//! key, by that purge, or by [`MemoryKv::purge_expired`]: no background thread is needed.
//!
//! # Consistency
//!
//! Strong: a write is visible to every later read, from any thread, as soon as `put` returns.
//!
//! # Time
//!
//! Expiry is measured on the wall clock of the store's [`Clock`] ([`SystemClock`] by default), so a test
//! passes a [`ManualClock`](edge_core::ManualClock) and advances it instead of sleeping.

use std::collections::BTreeSet;
use std::fmt;
use std::hash::BuildHasher;
use std::ops::Bound;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use edge_core::kv::{KvEntry, KvLimits, ListKey, ListOptions, ListPage, PutOptions, metadata_len};
use edge_core::{Clock, Error, ErrorKind, KvStore, SystemClock};

use crate::cursor;
use hashbrown::HashTable;
use serde_json::Value;

/// Bytes charged per entry on top of key, value and metadata: map slots, the ordered index, `Arc` headers.
const ENTRY_OVERHEAD: usize = 96;

/// A bounded in-memory key-value store. See the [module docs](self).
///
/// Cheap to clone: clones share the data.
///
/// ```
/// use std::time::Duration;
/// use bytes::Bytes;
/// use edge_core::{KvStore, ManualClock, kv::PutOptions};
/// use edge_kv::MemoryKv;
///
/// # futures::executor::block_on(async {
/// let clock = ManualClock::new();
/// let kv = MemoryKv::builder().clock(clock.clone()).max_entries(10_000).build();
/// kv.put("otp:42", Bytes::from_static(b"913377"), PutOptions::new().with_ttl(Duration::from_secs(300))).await?;
/// clock.advance(Duration::from_secs(300));
/// assert_eq!(kv.get("otp:42").await?, None);
/// # Ok::<_, edge_core::Error>(()) }).unwrap();
/// ```
pub struct MemoryKv<C = SystemClock> {
    inner: Arc<Inner<C>>,
}

struct Inner<C> {
    shards: Box<[RwLock<Shard>]>,
    shard_mask: u64,
    hasher: foldhash::fast::RandomState,
    clock: C,
    limits: KvLimits,
    max_entries: usize,
    max_bytes: usize,
    entries: AtomicUsize,
    bytes: AtomicUsize,
}

#[derive(Default)]
struct Shard {
    table: HashTable<Slot>,
    order: BTreeSet<Arc<str>>,
}

/// Kept small (72 bytes) on purpose: point reads are bound by the cache misses of probing the table.
struct Slot {
    key: Arc<str>,
    entry: Entry,
}

impl Shard {
    fn find(&self, hash: u64, key: &str) -> Option<&Entry> {
        self.table
            .find(hash, |slot| &*slot.key == key)
            .map(|slot| &slot.entry)
    }
}

struct Entry {
    value: Bytes,
    /// Boxed: most entries have none, and the slot stays small.
    metadata: Option<Box<Value>>,
    expiry: Expiry,
    weight: usize,
}

impl Entry {
    fn is_live(&self, now: impl FnOnce() -> SystemTime) -> bool {
        self.expiry.is_never() || self.expiry > Expiry::at(now())
    }

    fn metadata(&self) -> Option<Value> {
        self.metadata.as_deref().cloned()
    }
}

/// An expiry as nanoseconds since the Unix epoch in one word; `u64::MAX` means never. Representable up to
/// the year 2554; later times are kept as 2554, which no TTL check can tell apart from "far future".
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Expiry(u64);

impl Expiry {
    const NEVER: Self = Self(u64::MAX);

    fn at(time: SystemTime) -> Self {
        let nanos = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        Self(
            u64::try_from(nanos)
                .unwrap_or(u64::MAX - 1)
                .min(u64::MAX - 1),
        )
    }

    fn from_option(time: Option<SystemTime>) -> Self {
        time.map_or(Self::NEVER, Self::at)
    }

    fn is_never(self) -> bool {
        self == Self::NEVER
    }

    fn to_option(self) -> Option<SystemTime> {
        (!self.is_never()).then(|| UNIX_EPOCH + Duration::from_nanos(self.0))
    }
}

/// Builds a [`MemoryKv`].
#[derive(Debug)]
#[must_use]
pub struct MemoryKvBuilder<C = SystemClock> {
    clock: C,
    limits: KvLimits,
    max_entries: usize,
    max_bytes: usize,
    shards: usize,
}

impl MemoryKvBuilder<SystemClock> {
    fn new() -> Self {
        Self {
            clock: SystemClock::new(),
            limits: KvLimits::WORKERS,
            max_entries: 1_000_000,
            max_bytes: 256 * 1024 * 1024,
            shards: 16,
        }
    }
}

impl<C: Clock> MemoryKvBuilder<C> {
    /// Measures expiry on `clock` (default: [`SystemClock`]).
    pub fn clock<C2: Clock>(self, clock: C2) -> MemoryKvBuilder<C2> {
        MemoryKvBuilder {
            clock,
            limits: self.limits,
            max_entries: self.max_entries,
            max_bytes: self.max_bytes,
            shards: self.shards,
        }
    }

    /// What the store accepts (default: [`KvLimits::WORKERS`], so code tested here behaves the same on
    /// Workers KV).
    pub fn limits(mut self, limits: KvLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The most entries the store holds (default 1,000,000).
    pub fn max_entries(mut self, max_entries: usize) -> Self {
        self.max_entries = max_entries;
        self
    }

    /// The most bytes the store holds, counting keys, values, metadata and per-entry overhead (default
    /// 256 MiB).
    pub fn max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// How many shards the keys are spread over, rounded up to a power of two (default 16). More shards mean
    /// less lock contention between threads and a little more work per `list`.
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = shards;
        self
    }

    /// The store.
    pub fn build(self) -> MemoryKv<C> {
        let shards = self.shards.clamp(1, 1024).next_power_of_two();
        MemoryKv {
            inner: Arc::new(Inner {
                shards: (0..shards).map(|_| RwLock::new(Shard::default())).collect(),
                shard_mask: (shards - 1) as u64,
                hasher: foldhash::fast::RandomState::default(),
                clock: self.clock,
                limits: self.limits,
                max_entries: self.max_entries,
                max_bytes: self.max_bytes,
                entries: AtomicUsize::new(0),
                bytes: AtomicUsize::new(0),
            }),
        }
    }
}

impl MemoryKv<SystemClock> {
    /// A store on the system clock with the default bounds.
    #[must_use]
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// Configures a store.
    pub fn builder() -> MemoryKvBuilder<SystemClock> {
        MemoryKvBuilder::new()
    }
}

impl Default for MemoryKv<SystemClock> {
    fn default() -> Self {
        Self::new()
    }
}

impl<C> Clone for MemoryKv<C> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<C> fmt::Debug for MemoryKv<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryKv")
            .field("entries", &self.len())
            .field("bytes", &self.used_bytes())
            .field("max_entries", &self.inner.max_entries)
            .field("max_bytes", &self.inner.max_bytes)
            .finish_non_exhaustive()
    }
}

fn read(shard: &RwLock<Shard>) -> RwLockReadGuard<'_, Shard> {
    // A panic cannot leave a shard half-updated: every mutation below completes before anything that could
    // panic runs, so poisoning carries no broken invariant.
    shard
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write(shard: &RwLock<Shard>) -> RwLockWriteGuard<'_, Shard> {
    shard
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl<C> MemoryKv<C> {
    /// Entries held, expired ones not yet purged included.
    #[must_use]
    pub fn len(&self) -> usize {
        self.inner.entries.load(Ordering::Acquire)
    }

    /// `true` if the store holds no entries.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes charged against [`MemoryKvBuilder::max_bytes`].
    #[must_use]
    pub fn used_bytes(&self) -> usize {
        self.inner.bytes.load(Ordering::Acquire)
    }

    /// The key's hash and its shard.
    fn locate(&self, key: &str) -> (u64, &RwLock<Shard>) {
        let hash = self.inner.hasher.hash_one(key);
        // Bits 40.. pick the shard: the table inside uses the low bits (bucket) and the top seven (tag), so
        // the shard choice takes no entropy away from either. `shard_mask` is `shards.len() - 1` for a
        // power-of-two length of at least one (see `build`), so the index is always in bounds.
        let index = usize::try_from((hash >> 40) & self.inner.shard_mask).unwrap_or(0);
        (hash, &self.inner.shards[index])
    }

    /// Releases the capacity held by `entry`.
    fn release(&self, entry: &Entry) {
        self.inner.entries.fetch_sub(1, Ordering::AcqRel);
        self.inner.bytes.fetch_sub(entry.weight, Ordering::AcqRel);
    }

    /// Reserves room for replacing an entry of `old_weight` (none if `None`) with one of `new_weight`.
    fn reserve(&self, old_weight: Option<usize>, new_weight: usize) -> bool {
        let inner = &*self.inner;
        if old_weight.is_none()
            && inner
                .entries
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < inner.max_entries).then_some(n + 1)
                })
                .is_err()
        {
            return false;
        }
        let freed = old_weight.unwrap_or(0);
        if new_weight <= freed {
            // Shrinking (or same-size) replacement: always fits, no compare-and-swap needed.
            if new_weight < freed {
                inner.bytes.fetch_sub(freed - new_weight, Ordering::AcqRel);
            }
            return true;
        }
        let reserved = inner
            .bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                let next = used.saturating_sub(freed).saturating_add(new_weight);
                (next <= inner.max_bytes || next <= used).then_some(next)
            });
        if reserved.is_err() {
            if old_weight.is_none() {
                inner.entries.fetch_sub(1, Ordering::AcqRel);
            }
            return false;
        }
        true
    }
}

impl<C: Clock> MemoryKv<C> {
    /// Removes every expired entry now and returns how many were removed. Writes do this by themselves when
    /// the store is full; call it to reclaim memory sooner.
    pub fn purge_expired(&self) -> usize {
        let now = self.inner.clock.wall_time();
        let mut removed = 0;
        for shard in &*self.inner.shards {
            let mut shard = write(shard);
            let Shard { table, order } = &mut *shard;
            table.retain(|slot| {
                if slot.entry.is_live(|| now) {
                    return true;
                }
                order.remove(&slot.key);
                self.release(&slot.entry);
                removed += 1;
                false
            });
        }
        removed
    }

    fn lookup<T>(
        &self,
        key: &str,
        read_entry: impl FnOnce(&Entry) -> T,
    ) -> Result<Option<T>, Error> {
        self.inner.limits.check_key(key)?;
        let (hash, shard) = self.locate(key);
        let shard = read(shard);
        Ok(shard
            .find(hash, key)
            .filter(|e| e.is_live(|| self.inner.clock.wall_time()))
            .map(read_entry))
    }

    fn insert(&self, key: &str, value: Bytes, options: PutOptions) -> Result<(), Error> {
        let expires_at = self
            .inner
            .limits
            .check_put(key, &value, &options, || self.inner.clock.wall_time())?;
        let metadata_weight = options.metadata.as_ref().map_or(0, metadata_len);
        let weight = key.len() + value.len() + metadata_weight + ENTRY_OVERHEAD;
        let entry = Entry {
            value,
            metadata: options.metadata.map(Box::new),
            expiry: Expiry::from_option(expires_at),
            weight,
        };
        let (hash, lock) = self.locate(key);
        for attempt in 0..2 {
            {
                let mut shard = write(lock);
                if let Some(slot) = shard.table.find_mut(hash, |slot| &*slot.key == key) {
                    if self.reserve(Some(slot.entry.weight), weight) {
                        // The old value is dropped here, under the lock; dropping `Bytes` runs no user code.
                        slot.entry = entry;
                        return Ok(());
                    }
                } else if self.reserve(None, weight) {
                    let key: Arc<str> = Arc::from(key);
                    shard.order.insert(Arc::clone(&key));
                    shard
                        .table
                        .insert_unique(hash, Slot { key, entry }, |slot| {
                            self.inner.hasher.hash_one(&*slot.key)
                        });
                    return Ok(());
                }
            }
            // Full: reclaim expired entries (with no shard lock held) and try once more.
            if attempt == 0 && self.purge_expired() == 0 {
                break;
            }
        }
        Err(Error::new(
            ErrorKind::CapacityExceeded,
            format!(
                "memory kv holds {} entries / {} bytes, bounds are {} / {}",
                self.len(),
                self.used_bytes(),
                self.inner.max_entries,
                self.inner.max_bytes
            ),
        ))
    }

    fn remove(&self, key: &str) -> Result<(), Error> {
        self.inner.limits.check_key(key)?;
        let (hash, shard) = self.locate(key);
        let mut shard = write(shard);
        if let Ok(found) = shard.table.find_entry(hash, |slot| &*slot.key == key) {
            let (slot, _) = found.remove();
            shard.order.remove(key);
            self.release(&slot.entry);
        }
        Ok(())
    }

    fn list_page(&self, options: &ListOptions) -> Result<ListPage, Error> {
        let walk = cursor::Walk::new(CURSOR_TAG, &self.inner.limits, options)?;
        let (start, prefix, limit) = (walk.start(), walk.prefix, walk.limit);
        let now = self.inner.clock.wall_time();
        let mut candidates: Vec<ListKey> = Vec::new();
        for shard in &*self.inner.shards {
            let shard = read(shard);
            let keys = shard
                .order
                .range::<str, _>((start, Bound::Unbounded))
                .take_while(|key| key.starts_with(prefix))
                .filter_map(|key| {
                    let entry = shard.find(self.inner.hasher.hash_one(&**key), key);
                    entry.filter(|e| e.is_live(|| now)).map(|e| (key, e))
                })
                .take(limit + 1)
                .map(|(key, e)| {
                    ListKey::new(&**key)
                        .with_expires_at(e.expiry.to_option())
                        .with_metadata(e.metadata())
                });
            candidates.extend(keys);
        }
        candidates.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        Ok(walk.finish(candidates))
    }
}

/// Tags this store's cursors, so a cursor from another store is refused rather than misread.
const CURSOR_TAG: &str = "mkv1.";

impl<C: Clock> KvStore for MemoryKv<C> {
    fn limits(&self) -> KvLimits {
        self.inner.limits
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, Error> {
        self.lookup(key, |e| e.value.clone())
    }

    async fn get_with_metadata(&self, key: &str) -> Result<Option<KvEntry>, Error> {
        self.lookup(key, |e| {
            KvEntry::new(e.value.clone())
                .with_metadata(e.metadata())
                .with_expires_at(e.expiry.to_option())
        })
    }

    async fn put(&self, key: &str, value: Bytes, options: PutOptions) -> Result<(), Error> {
        self.insert(key, value, options)
    }

    async fn delete(&self, key: &str) -> Result<(), Error> {
        self.remove(key)
    }

    async fn list(&self, options: ListOptions) -> Result<ListPage, Error> {
        self.list_page(&options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_core::ManualClock;
    use futures::executor::block_on;
    use std::time::Duration;

    #[test]
    fn full_store_refuses_writes_without_side_effects() {
        let kv = MemoryKv::builder().max_entries(2).build();
        block_on(async {
            kv.put("a", Bytes::from_static(b"1"), PutOptions::new())
                .await
                .unwrap();
            kv.put("b", Bytes::from_static(b"2"), PutOptions::new())
                .await
                .unwrap();
            let err = kv
                .put("c", Bytes::from_static(b"3"), PutOptions::new())
                .await
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::CapacityExceeded);
            assert_eq!(kv.get("c").await.unwrap(), None);
            assert_eq!(kv.len(), 2);
            // Overwriting an existing key needs no new slot.
            kv.put("a", Bytes::from_static(b"9"), PutOptions::new())
                .await
                .unwrap();
            kv.delete("b").await.unwrap();
            kv.put("c", Bytes::from_static(b"3"), PutOptions::new())
                .await
                .unwrap();
        });
    }

    #[test]
    fn byte_bound_counts_replacements_and_deletes() {
        let kv = MemoryKv::builder()
            .max_bytes(3 * (ENTRY_OVERHEAD + 101))
            .build();
        block_on(async {
            let value = Bytes::from(vec![0u8; 100]);
            for key in ["a", "b", "c"] {
                kv.put(key, value.clone(), PutOptions::new()).await.unwrap();
            }
            assert_eq!(kv.used_bytes(), 3 * (ENTRY_OVERHEAD + 101));
            let err = kv
                .put("a", Bytes::from(vec![0u8; 101]), PutOptions::new())
                .await
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::CapacityExceeded);
            assert_eq!(
                kv.get("a").await.unwrap(),
                Some(value.clone()),
                "refused replacement kept the old value"
            );
            kv.put("a", Bytes::from(vec![0u8; 10]), PutOptions::new())
                .await
                .unwrap();
            kv.delete("b").await.unwrap();
            assert_eq!(
                kv.used_bytes(),
                (ENTRY_OVERHEAD + 11) + (ENTRY_OVERHEAD + 101)
            );
        });
    }

    #[test]
    fn expired_entries_make_room_when_full() {
        let clock = ManualClock::new();
        let kv = MemoryKv::builder()
            .clock(clock.clone())
            .max_entries(2)
            .build();
        block_on(async {
            let ttl = PutOptions::new().with_ttl(Duration::from_secs(60));
            kv.put("a", Bytes::from_static(b"1"), ttl.clone())
                .await
                .unwrap();
            kv.put("b", Bytes::from_static(b"2"), ttl).await.unwrap();
            clock.advance(Duration::from_secs(60));
            kv.put("c", Bytes::from_static(b"3"), PutOptions::new())
                .await
                .unwrap();
            assert_eq!(kv.len(), 1);
            assert_eq!(kv.used_bytes(), 1 + 1 + ENTRY_OVERHEAD);
        });
    }
}
