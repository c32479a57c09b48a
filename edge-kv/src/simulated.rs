//! [`SimulatedKv`]: an eventually consistent KV replicated over many PoPs, on a [`ManualClock`].
//!
//! Edge KV is eventually consistent: a read at one PoP can miss a write made a few hundred milliseconds
//! earlier at another, and an attacker spread over M PoPs gets M × N requests through a limit of N that each
//! PoP checks against its own replica. Local emulators keep KV strongly consistent, so code that is wrong in
//! production passes its tests. This simulator makes the race reproducible.
//!
//! # Model
//!
//! - Each PoP holds a full replica. A [`SimPop`] handle is a [`KvStore`] reading and writing its PoP's
//!   replica; a write is visible at its own PoP at once.
//! - Every write (a put, or a delete as a tombstone) is sent to every other PoP and lands after a delay drawn
//!   from that link's [`LinkLatency`] with a seeded random generator.
//! - Partitions between chosen PoPs either **hold** replication (messages wait and are delivered when the
//!   partition heals) or **drop** it (messages are lost: the replicas stay apart until the key is written
//!   again).
//! - **Conflicts: last writer wins** by write timestamp (the shared clock's instant at the write). Writes at the
//!   same instant are ordered by the order in which the simulation made them (a global sequence number), so
//!   the outcome never depends on PoP names. A replica applies an incoming write only if it is newer than
//!   what it holds; deletes are tombstones and follow the same rule.
//! - Expiry is evaluated on read against the clock's wall time, identically at every PoP.
//! - Time moves only when the test advances the [`ManualClock`]; replication due by the current instant is
//!   applied before every operation and every inspection. Nothing sleeps, and the same seed with the same
//!   operations gives the same history, bit for bit.
//!
//! What the model leaves out: clock skew between PoPs (all share one perfect clock), per-PoP caching of reads
//! (Workers KV caches reads for up to 60 s), and storage limits beyond [`KvLimits`].
//!
//! ```
//! use std::time::Duration;
//! use bytes::Bytes;
//! use edge_core::{KvStore, ManualClock, kv::PutOptions};
//! use edge_kv::{LinkLatency, SimulatedKv};
//!
//! # futures::executor::block_on(async {
//! let clock = ManualClock::new();
//! let kv = SimulatedKv::builder()
//!     .clock(clock.clone())
//!     .pops(["iad", "fra"])
//!     .latency(LinkLatency::fixed(Duration::from_millis(80)))
//!     .build();
//! let (iad, fra) = (kv.pop("iad").unwrap(), kv.pop("fra").unwrap());
//!
//! iad.put("flag", Bytes::from_static(b"on"), PutOptions::new()).await?;
//! assert_eq!(fra.get("flag").await?, None); // not replicated yet
//! clock.advance(Duration::from_millis(80));
//! assert_eq!(fra.get("flag").await?, Some(Bytes::from_static(b"on")));
//! assert!(kv.divergent_keys().is_empty());
//! # Ok::<_, edge_core::Error>(()) }).unwrap();
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use edge_core::clock::Instant;
use edge_core::kv::{KvEntry, KvLimits, ListKey, ListOptions, ListPage, PutOptions};
use edge_core::{Clock, Error, KvStore, ManualClock};
use serde_json::Value;

use crate::cursor;

const CURSOR_TAG: &str = "sim1.";

/// How long replication takes on a link: `base`, plus a uniform draw in `[0, jitter]`, plus, with a small
/// probability, a `tail` delay (the slow replication Workers KV warns about).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkLatency {
    base: Duration,
    jitter: Duration,
    tail_per_million: u32,
    tail: Duration,
}

impl LinkLatency {
    /// Within a continent: 40 ms + up to 20 ms, and 1 % of messages 250 ms later.
    pub const IN_CONTINENT: Self = Self::new(Duration::from_millis(40), Duration::from_millis(20))
        .with_tail(10_000, Duration::from_millis(250));

    /// Across the globe: 200 ms + up to 100 ms, and 1 % of messages 1 s later.
    pub const GLOBAL: Self = Self::new(Duration::from_millis(200), Duration::from_millis(100))
        .with_tail(10_000, Duration::from_secs(1));

    /// `base` plus a uniform draw in `[0, jitter]`, no tail.
    #[must_use]
    pub const fn new(base: Duration, jitter: Duration) -> Self {
        Self {
            base,
            jitter,
            tail_per_million: 0,
            tail: Duration::ZERO,
        }
    }

    /// Exactly `delay`, every time.
    #[must_use]
    pub const fn fixed(delay: Duration) -> Self {
        Self::new(delay, Duration::ZERO)
    }

    /// Adds `extra` to `per_million` out of every million messages (clamped to a million).
    #[must_use]
    pub const fn with_tail(mut self, per_million: u32, extra: Duration) -> Self {
        self.tail_per_million = if per_million > 1_000_000 {
            1_000_000
        } else {
            per_million
        };
        self.tail = extra;
        self
    }

    fn sample(&self, rng: &mut SplitMix64) -> Duration {
        let jitter_nanos = u64::try_from(self.jitter.as_nanos()).unwrap_or(u64::MAX);
        let jitter = if jitter_nanos == 0 {
            0
        } else {
            rng.next() % jitter_nanos.saturating_add(1)
        };
        let mut delay = self.base.saturating_add(Duration::from_nanos(jitter));
        if self.tail_per_million > 0 && rng.next() % 1_000_000 < u64::from(self.tail_per_million) {
            delay = delay.saturating_add(self.tail);
        }
        delay
    }
}

/// What a partition does to replication between the PoPs it separates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PartitionMode {
    /// Messages wait; they are delivered when the partition heals.
    Hold,
    /// Messages are lost; the replicas stay apart until the key is written again.
    Drop,
}

/// Configures a [`SimulatedKv`].
#[derive(Debug)]
#[must_use]
pub struct SimulatedKvBuilder {
    seed: u64,
    clock: ManualClock,
    pops: Vec<String>,
    latency: LinkLatency,
    links: Vec<(String, String, LinkLatency)>,
    limits: KvLimits,
}

impl SimulatedKvBuilder {
    /// The random seed for replication delays (default 0). Same seed, same history.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The clock the simulation runs on (default: a fresh [`ManualClock`]).
    pub fn clock(mut self, clock: ManualClock) -> Self {
        self.clock = clock;
        self
    }

    /// The PoPs, by name (default: one PoP named `"local"`). Duplicate names are merged.
    pub fn pops<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.pops.clear();
        for name in names {
            let name = name.into();
            if !self.pops.contains(&name) {
                self.pops.push(name);
            }
        }
        self
    }

    /// The latency of every link without its own setting (default [`LinkLatency::IN_CONTINENT`]).
    pub fn latency(mut self, latency: LinkLatency) -> Self {
        self.latency = latency;
        self
    }

    /// The latency between PoPs `a` and `b`, both ways. Unknown names are ignored.
    pub fn link(mut self, a: &str, b: &str, latency: LinkLatency) -> Self {
        self.links.push((a.to_owned(), b.to_owned(), latency));
        self
    }

    /// What every PoP accepts (default [`KvLimits::WORKERS`]).
    pub fn limits(mut self, limits: KvLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The simulation.
    pub fn build(self) -> SimulatedKv {
        let mut pops = self.pops;
        if pops.is_empty() {
            pops.push("local".to_owned());
        }
        let n = pops.len();
        let mut latency = vec![vec![self.latency; n]; n];
        for (a, b, link) in &self.links {
            if let (Some(i), Some(j)) = (
                pops.iter().position(|p| p == a),
                pops.iter().position(|p| p == b),
            ) {
                latency[i][j] = *link;
                latency[j][i] = *link;
            }
        }
        let world = World {
            rng: SplitMix64(self.seed),
            replicas: vec![BTreeMap::new(); n],
            latency,
            queue: BTreeMap::new(),
            held: Vec::new(),
            partitions: HashMap::new(),
            next_seq: 0,
        };
        SimulatedKv {
            world: Arc::new(Mutex::new(world)),
            clock: self.clock,
            names: pops.into(),
            limits: self.limits,
        }
    }
}

/// A KV replicated over simulated PoPs. See the [module docs](self).
///
/// Cheap to clone; clones and [`SimPop`] handles share the simulation.
#[derive(Clone)]
pub struct SimulatedKv {
    world: Arc<Mutex<World>>,
    clock: ManualClock,
    names: Arc<[String]>,
    limits: KvLimits,
}

/// The KV at one PoP of a [`SimulatedKv`]. Implements [`KvStore`].
#[derive(Clone)]
pub struct SimPop {
    kv: SimulatedKv,
    index: usize,
}

#[derive(Clone)]
struct World {
    rng: SplitMix64,
    replicas: Vec<BTreeMap<String, Version>>,
    latency: Vec<Vec<LinkLatency>>,
    /// Replication in flight, in delivery order: (arrival, sequence) → message.
    queue: BTreeMap<(Instant, u64), Message>,
    /// Replication waiting for a partition to heal, in sending order.
    held: Vec<(u64, Message)>,
    /// Directed links that are cut.
    partitions: HashMap<(usize, usize), PartitionMode>,
    next_seq: u64,
}

#[derive(Clone)]
struct Message {
    from: usize,
    to: usize,
    arrive_at: Instant,
    key: String,
    version: Version,
}

/// One write of one key: a record, or a tombstone for a delete.
#[derive(Clone, Debug, PartialEq)]
struct Version {
    stamp: Stamp,
    record: Option<Record>,
}

/// Orders writes: last writer wins, ties by the simulation's write order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Stamp {
    at: Instant,
    seq: u64,
}

#[derive(Clone, Debug, PartialEq)]
struct Record {
    value: Bytes,
    metadata: Option<Value>,
    expires_at: Option<SystemTime>,
}

impl Record {
    fn is_live(&self, now: SystemTime) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }
}

/// A small, fast, seedable generator (SplitMix64): deterministic on every target, no dependency.
#[derive(Clone, Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

impl World {
    /// Applies every message due by `now`, in arrival order.
    fn deliver_due(&mut self, now: Instant) {
        while let Some(entry) = self.queue.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let ((_, seq), message) = entry.remove_entry();
            match self.partitions.get(&(message.from, message.to)) {
                Some(PartitionMode::Hold) => self.held.push((seq, message)),
                Some(PartitionMode::Drop) => {}
                None => Self::apply(&mut self.replicas[message.to], message.key, message.version),
            }
        }
    }

    /// Last writer wins: keep `version` only if it is newer than what the replica holds.
    fn apply(replica: &mut BTreeMap<String, Version>, key: String, version: Version) {
        match replica.get(&key) {
            Some(current) if current.stamp >= version.stamp => {}
            _ => {
                replica.insert(key, version);
            }
        }
    }

    fn write(&mut self, at: usize, key: &str, record: Option<Record>, now: Instant) {
        self.deliver_due(now);
        self.next_seq += 1;
        let version = Version {
            stamp: Stamp {
                at: now,
                seq: self.next_seq,
            },
            record,
        };
        Self::apply(&mut self.replicas[at], key.to_owned(), version.clone());
        for to in 0..self.replicas.len() {
            if to == at {
                continue;
            }
            let delay = self.latency[at][to].sample(&mut self.rng);
            self.next_seq += 1;
            let arrive_at = now + delay;
            let message = Message {
                from: at,
                to,
                arrive_at,
                key: key.to_owned(),
                version: version.clone(),
            };
            self.queue.insert((arrive_at, self.next_seq), message);
        }
    }

    /// What a read at `pop` sees for `key`.
    fn visible(&self, pop: usize, key: &str, wall: SystemTime) -> Option<&Record> {
        self.replicas[pop]
            .get(key)
            .and_then(|v| v.record.as_ref())
            .filter(|r| r.is_live(wall))
    }

    fn divergent_keys(&self, wall: SystemTime) -> Vec<String> {
        let keys: BTreeSet<&String> = self.replicas.iter().flat_map(BTreeMap::keys).collect();
        keys.into_iter()
            .filter(|key| {
                let first = self.visible(0, key, wall);
                (1..self.replicas.len()).any(|pop| self.visible(pop, key, wall) != first)
            })
            .cloned()
            .collect()
    }
}

impl SimulatedKv {
    /// Configures a simulation.
    pub fn builder() -> SimulatedKvBuilder {
        SimulatedKvBuilder {
            seed: 0,
            clock: ManualClock::new(),
            pops: vec!["local".to_owned()],
            latency: LinkLatency::IN_CONTINENT,
            links: Vec::new(),
            limits: KvLimits::WORKERS,
        }
    }

    fn world(&self) -> MutexGuard<'_, World> {
        // Every mutation of the world completes before anything that could panic, so a poisoned lock
        // carries no broken invariant.
        let mut world = self
            .world
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        world.deliver_due(self.clock.now());
        world
    }

    /// The handle of PoP `name`, or `None` if there is no such PoP.
    #[must_use]
    pub fn pop(&self, name: &str) -> Option<SimPop> {
        let index = self.names.iter().position(|n| n == name)?;
        Some(SimPop {
            kv: self.clone(),
            index,
        })
    }

    /// Every PoP's handle, in the order they were configured.
    #[must_use]
    pub fn all_pops(&self) -> Vec<SimPop> {
        (0..self.names.len())
            .map(|index| SimPop {
                kv: self.clone(),
                index,
            })
            .collect()
    }

    /// The PoP names, in the order they were configured.
    #[must_use]
    pub fn pop_names(&self) -> &[String] {
        &self.names
    }

    /// The simulation's clock.
    #[must_use]
    pub fn clock(&self) -> &ManualClock {
        &self.clock
    }

    fn indices(&self, names: &[&str]) -> Vec<usize> {
        names
            .iter()
            .filter_map(|name| self.names.iter().position(|n| n == name))
            .collect()
    }

    /// Cuts replication between every PoP in `side_a` and every PoP in `side_b`, both ways. Unknown names
    /// are ignored.
    pub fn partition(&self, side_a: &[&str], side_b: &[&str], mode: PartitionMode) {
        let (a, b) = (self.indices(side_a), self.indices(side_b));
        let mut world = self.world();
        for &i in &a {
            for &j in &b {
                if i != j {
                    world.partitions.insert((i, j), mode);
                    world.partitions.insert((j, i), mode);
                }
            }
        }
    }

    /// Restores replication between `side_a` and `side_b`. Held messages are delivered at their original
    /// arrival time or now, whichever is later.
    pub fn heal(&self, side_a: &[&str], side_b: &[&str]) {
        let (a, b) = (self.indices(side_a), self.indices(side_b));
        let mut world = self.world();
        for &i in &a {
            for &j in &b {
                world.partitions.remove(&(i, j));
                world.partitions.remove(&(j, i));
            }
        }
        self.release_held(&mut world);
    }

    /// Restores every link.
    pub fn heal_all(&self) {
        let mut world = self.world();
        world.partitions.clear();
        self.release_held(&mut world);
    }

    fn release_held(&self, world: &mut World) {
        let now = self.clock.now();
        let held = std::mem::take(&mut world.held);
        for (seq, message) in held {
            if world.partitions.contains_key(&(message.from, message.to)) {
                world.held.push((seq, message));
            } else {
                let arrive_at = message.arrive_at.max(now);
                world.queue.insert((arrive_at, seq), message);
            }
        }
        world.deliver_due(now);
    }

    /// Replication messages not yet applied: in flight plus held by partitions.
    #[must_use]
    pub fn pending_replications(&self) -> usize {
        let world = self.world();
        world.queue.len() + world.held.len()
    }

    /// Keys whose visible value or metadata differs between at least two PoPs right now, in order.
    #[must_use]
    pub fn divergent_keys(&self) -> Vec<String> {
        self.world().divergent_keys(self.clock.wall_time())
    }

    /// How long, from now, until every replica agrees if no more writes are made: `Some(ZERO)` if they
    /// agree now, `None` if they never will without intervention (replication held by a partition, or lost to
    /// a dropping one).
    #[must_use]
    pub fn time_to_convergence(&self) -> Option<Duration> {
        let now = self.clock.now();
        let world = self.world();
        if !world.held.is_empty() {
            return None;
        }
        let last_arrival = world.queue.keys().next_back().map(|(at, _)| *at);
        // Play the rest of the replication on a copy, with the wall clock where it will be then.
        let mut future = world.clone();
        drop(world);
        let done_at = last_arrival.unwrap_or(now).max(now);
        future.deliver_due(done_at);
        if !future.held.is_empty() {
            return None;
        }
        let wall = self.clock.wall_time() + done_at.duration_since(now);
        if future.divergent_keys(wall).is_empty() {
            Some(done_at.duration_since(now))
        } else {
            None
        }
    }
}

impl fmt::Debug for SimulatedKv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimulatedKv")
            .field("pops", &self.names)
            .field("pending_replications", &self.pending_replications())
            .finish_non_exhaustive()
    }
}

impl SimPop {
    /// This PoP's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.kv.names[self.index]
    }

    /// The simulation this PoP belongs to.
    #[must_use]
    pub fn simulation(&self) -> &SimulatedKv {
        &self.kv
    }

    fn read<T>(&self, key: &str, f: impl FnOnce(&Record) -> T) -> Result<Option<T>, Error> {
        self.kv.limits.check_key(key)?;
        let world = self.kv.world();
        Ok(world
            .visible(self.index, key, self.kv.clock.wall_time())
            .map(f))
    }

    fn list_page(&self, options: &ListOptions) -> Result<ListPage, Error> {
        let walk = cursor::Walk::new(CURSOR_TAG, &self.kv.limits, options)?;
        let (start, prefix, limit) = (walk.start(), walk.prefix, walk.limit);
        let wall = self.kv.clock.wall_time();
        let world = self.kv.world();
        let keys: Vec<ListKey> = world.replicas[self.index]
            .range::<str, _>((start, Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
            .filter_map(|(key, version)| {
                version
                    .record
                    .as_ref()
                    .filter(|r| r.is_live(wall))
                    .map(|r| (key, r))
            })
            .take(limit + 1)
            .map(|(key, r)| {
                ListKey::new(key.as_str())
                    .with_expires_at(r.expires_at)
                    .with_metadata(r.metadata.clone())
            })
            .collect();
        Ok(walk.finish(keys))
    }
}

impl fmt::Debug for SimPop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimPop")
            .field("name", &self.name())
            .finish_non_exhaustive()
    }
}

impl KvStore for SimPop {
    fn limits(&self) -> KvLimits {
        self.kv.limits
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, Error> {
        self.read(key, |r| r.value.clone())
    }

    async fn get_with_metadata(&self, key: &str) -> Result<Option<KvEntry>, Error> {
        self.read(key, |r| {
            KvEntry::new(r.value.clone())
                .with_metadata(r.metadata.clone())
                .with_expires_at(r.expires_at)
        })
    }

    async fn put(&self, key: &str, value: Bytes, options: PutOptions) -> Result<(), Error> {
        let expires_at = self
            .kv
            .limits
            .check_put(key, &value, &options, || self.kv.clock.wall_time())?;
        let record = Record {
            value,
            metadata: options.metadata,
            expires_at,
        };
        self.kv
            .world()
            .write(self.index, key, Some(record), self.kv.clock.now());
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), Error> {
        self.kv.limits.check_key(key)?;
        self.kv
            .world()
            .write(self.index, key, None, self.kv.clock.now());
        Ok(())
    }

    async fn list(&self, options: ListOptions) -> Result<ListPage, Error> {
        self.list_page(&options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;

    #[test]
    fn latency_draws_stay_within_bounds_and_tails_appear() {
        let link = LinkLatency::new(Duration::from_millis(50), Duration::from_millis(10))
            .with_tail(500_000, Duration::from_millis(500));
        let mut rng = SplitMix64(7);
        let draws: Vec<Duration> = (0..1000).map(|_| link.sample(&mut rng)).collect();
        assert!(draws.iter().all(|d| {
            let ms = d.as_millis();
            (50..=60).contains(&ms) || (550..=560).contains(&ms)
        }));
        let tails = draws.iter().filter(|d| d.as_millis() >= 550).count();
        assert!((400..600).contains(&tails), "about half are tails: {tails}");
    }

    #[test]
    fn last_writer_wins_everywhere() {
        let clock = ManualClock::new();
        let kv = SimulatedKv::builder()
            .clock(clock.clone())
            .pops(["a", "b"])
            .latency(LinkLatency::fixed(Duration::from_millis(100)))
            .build();
        let (a, b) = (kv.pop("a").unwrap(), kv.pop("b").unwrap());
        block_on(async {
            a.put("k", Bytes::from_static(b"first"), PutOptions::new())
                .await
                .unwrap();
            clock.advance(Duration::from_millis(10));
            b.put("k", Bytes::from_static(b"second"), PutOptions::new())
                .await
                .unwrap();
            assert_eq!(kv.divergent_keys(), ["k"]);
            assert_eq!(kv.time_to_convergence(), Some(Duration::from_millis(100)));
            clock.advance(Duration::from_millis(100));
            assert_eq!(
                a.get("k").await.unwrap(),
                Some(Bytes::from_static(b"second"))
            );
            assert_eq!(
                b.get("k").await.unwrap(),
                Some(Bytes::from_static(b"second"))
            );
            assert!(kv.divergent_keys().is_empty());
            // A delete is a write too.
            a.delete("k").await.unwrap();
            clock.advance(Duration::from_millis(100));
            assert_eq!(b.get("k").await.unwrap(), None);
        });
    }
}
