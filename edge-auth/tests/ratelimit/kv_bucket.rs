//! Rate limiters across PoPs and servers: the KV token bucket on `SimulatedKv`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bytes::Bytes;
use edge_auth::ratelimit::{KvTokenBucket, OnStoreError, Quota};
use edge_core::kv::{KvEntry, KvLimits, ListOptions, ListPage, PutOptions};
use edge_core::{Error, ErrorKind, KvStore, ManualClock};
use edge_kv::{LinkLatency, MemoryKv, SimulatedKv};
use futures::executor::block_on;

/// A store that is down.
struct FailingKv;

fn down() -> Error {
    Error::new(ErrorKind::Unavailable, "store unreachable")
}

impl KvStore for FailingKv {
    fn limits(&self) -> KvLimits {
        KvLimits::WORKERS
    }
    async fn get(&self, _: &str) -> Result<Option<Bytes>, Error> {
        Err(down())
    }
    async fn get_with_metadata(&self, _: &str) -> Result<Option<KvEntry>, Error> {
        Err(down())
    }
    async fn put(&self, _: &str, _: Bytes, _: PutOptions) -> Result<(), Error> {
        Err(down())
    }
    async fn delete(&self, _: &str) -> Result<(), Error> {
        Err(down())
    }
    async fn list(&self, _: ListOptions) -> Result<ListPage, Error> {
        Err(down())
    }
}

/// Every PoP sends `per_pop_rate` requests per second for `seconds` to one key; returns how many were
/// admitted in total.
fn run(pops: usize, lag: Duration, floor: bool, seconds: u64, per_pop_rate: u64) -> u64 {
    let clock = ManualClock::new();
    let names: Vec<String> = (0..pops).map(|i| format!("pop{i}")).collect();
    let kv = SimulatedKv::builder()
        .clock(clock.clone())
        .pops(names.iter().map(String::as_str))
        .latency(LinkLatency::fixed(lag))
        .seed(7)
        .build();
    let quota = Quota::per_second(std::num::NonZeroU32::new(10).unwrap()); // capacity 10, refill 10/s
    let limiters: Vec<_> = names
        .iter()
        .map(|n| {
            KvTokenBucket::builder(kv.pop(n).unwrap(), quota)
                .clock(clock.clone())
                .local_floor(floor)
                .build()
        })
        .collect();
    let tick = Duration::from_micros(1_000_000 / per_pop_rate / pops as u64);
    let mut admitted = 0;
    block_on(async {
        for _ in 0..seconds * per_pop_rate {
            for limiter in &limiters {
                if limiter.check("attacker").await.is_allowed() {
                    admitted += 1;
                }
                clock.advance(tick);
            }
        }
    });
    admitted
}

/// The bound in the `KvTokenBucket` docs, measured: admitted ≤ M · (C + r·w), and exact with one PoP.
#[test]
fn over_admission_across_pops_stays_within_the_documented_bound() {
    let (seconds, rate) = (5, 100);
    let exact = 10 + 10 * seconds; // C + r·w
    let mut table = String::from("M  lag     floor  seeds  exact  bound\n");
    for pops in [1usize, 2, 4, 8] {
        for lag_ms in [50u64, 250] {
            let lag = Duration::from_millis(lag_ms);
            let ours = run(pops, lag, true, seconds, rate);
            let seeds = run(pops, lag, false, seconds, rate);
            let bound = pops as u64 * exact;
            table += &format!(
                "{pops:<2} {lag_ms:>3}ms  {ours:>5}  {seeds:>5}  {exact:>5}  {bound:>5}\n"
            );
            assert!(
                ours <= bound,
                "M={pops} lag={lag_ms}ms: {ours} admitted > bound {bound}"
            );
            assert!(
                ours >= exact.min(seconds * rate * pops as u64) - 1,
                "never stricter than exact"
            );
            if pops == 1 {
                assert!(
                    ours.abs_diff(exact) <= 1,
                    "one PoP is exact: {ours} vs {exact}"
                );
            }
        }
    }
    println!("{table}");
}

/// A PoP drains its bucket; another PoP, not yet seeing that, admits one request and writes a fuller
/// state that replaces the drained one everywhere (last writer wins). The seeds' algorithm then admits
/// almost a whole second burst at the drained PoP; the local floor does not.
#[test]
fn the_local_floor_stops_a_drained_pop_adopting_a_fuller_replica() {
    let second_burst = |floor: bool| {
        let clock = ManualClock::new();
        let kv = SimulatedKv::builder()
            .clock(clock.clone())
            .pops(["a", "b"])
            .latency(LinkLatency::fixed(Duration::from_millis(100)))
            .build();
        let quota = Quota::per_hour(std::num::NonZeroU32::new(10).unwrap());
        let make = |pop: &str| {
            KvTokenBucket::builder(kv.pop(pop).unwrap(), quota)
                .clock(clock.clone())
                .local_floor(floor)
                .build()
        };
        let (a, b) = (make("a"), make("b"));
        block_on(async {
            for _ in 0..10 {
                assert!(a.check("k").await.is_allowed());
            }
            clock.advance(Duration::from_millis(1));
            assert!(
                b.check("k").await.is_allowed(),
                "b has not seen a's writes yet"
            );
            clock.advance(Duration::from_millis(200));
            let mut again = 0;
            for _ in 0..10 {
                again += u32::from(a.check("k").await.is_allowed());
            }
            again
        })
    };
    assert_eq!(
        second_burst(false),
        9,
        "the seeds' algorithm: 9 more at the drained PoP"
    );
    assert_eq!(second_burst(true), 0, "with the floor: none");
}

#[test]
fn garbage_state_restarts_from_a_full_bucket_and_is_overwritten() {
    block_on(async {
        let kv = MemoryKv::new();
        kv.put(
            "rl:k",
            Bytes::from_static(b"not a bucket"),
            PutOptions::new(),
        )
        .await
        .unwrap();
        let limiter = KvTokenBucket::builder(
            kv.clone(),
            Quota::per_minute(std::num::NonZeroU32::new(2).unwrap()),
        )
        .clock(ManualClock::new())
        .build();
        let d = limiter.try_check("k").await.unwrap();
        assert!(d.is_allowed());
        assert_eq!(d.remaining(), 1);
        assert_eq!(
            kv.get("rl:k").await.unwrap().unwrap().len(),
            17,
            "overwritten with a real state"
        );
    });
}

#[test]
fn keys_of_any_length_work_and_store_failures_follow_the_policy() {
    block_on(async {
        let kv = MemoryKv::new();
        let limiter = KvTokenBucket::builder(
            kv.clone(),
            Quota::per_minute(std::num::NonZeroU32::new(1).unwrap()),
        )
        .clock(ManualClock::new())
        .build();
        let long = "x".repeat(10_000);
        assert!(limiter.check(&long).await.is_allowed());
        assert!(!limiter.check(&long).await.is_allowed());
        assert!(
            limiter.check("#").await.is_allowed(),
            "a literal '#' key is its own bucket"
        );

        let open = KvTokenBucket::builder(
            FailingKv,
            Quota::per_minute(std::num::NonZeroU32::new(1).unwrap()),
        )
        .build();
        assert!(open.try_check("k").await.is_err());
        assert!(open.check("k").await.is_allowed(), "fail open by default");
        let closed = KvTokenBucket::builder(
            FailingKv,
            Quota::per_minute(std::num::NonZeroU32::new(1).unwrap()),
        )
        .on_store_error(OnStoreError::Deny)
        .build();
        let d = closed.check("k").await;
        assert!(!d.is_allowed());
        assert!(d.retry_after() > Duration::ZERO);
    });
}

mod windows {
    use std::time::Duration;

    use edge_auth::ratelimit::{
        MemoryWindowStore, Quota, ShardedLimiter, SlidingWindowLimiter, shard_of,
    };
    use edge_core::{Clock, ManualClock};
    use futures::executor::block_on;
    use proptest::prelude::*;

    proptest! {
        /// However requests are spaced, no window of the configured length ever holds more than the limit,
        /// and a request is only refused when the window really is full.
        #[test]
        fn a_sliding_window_never_admits_more_than_its_limit(
            limit in 1u32..20,
            window_ms in 1u64..2_000,
            gaps in prop::collection::vec(0u64..500, 1..200),
        ) {
            let clock = ManualClock::new();
            let window = Duration::from_millis(window_ms);
            let limiter = SlidingWindowLimiter::new(
                MemoryWindowStore::with_clock(clock.clone()),
                Quota::new(limit, window).unwrap(),
            );
            let mut admitted: Vec<Duration> = Vec::new();
            for gap in gaps {
                clock.advance(Duration::from_millis(gap));
                let now = clock.now().since_origin();
                let in_window = admitted.iter().filter(|&&t| now - t < window).count();
                let decision = block_on(limiter.check("k"));
                prop_assert_eq!(decision.is_allowed(), in_window < limit as usize);
                if decision.is_allowed() {
                    admitted.push(now);
                }
            }
        }
    }

    #[test]
    fn a_sweep_judges_each_key_by_its_own_window() {
        use edge_auth::ratelimit::WindowStore;
        // One store, two limits: an hour's for "login", a second's for many other keys.
        let clock = ManualClock::new();
        let store = MemoryWindowStore::with_clock(clock.clone());
        let hour = Duration::from_secs(3600);
        assert!(block_on(store.hit("login", hour, 1)).unwrap().admitted);
        clock.advance(Duration::from_secs(10));
        // Enough short-window keys to make the map grow past its first sweep.
        for i in 0..5_000 {
            let _ = block_on(store.hit(&format!("k{i}"), Duration::from_secs(1), 5));
        }
        assert!(
            !block_on(store.hit("login", hour, 1)).unwrap().admitted,
            "the hour's hit is still in its window"
        );
    }

    #[test]
    fn sharding_stays_within_limit_plus_shards_minus_one() {
        let clock = ManualClock::new();
        let quota = Quota::per_minute(std::num::NonZeroU32::new(20).unwrap());
        let sharded =
            ShardedLimiter::with_shards(MemoryWindowStore::with_clock(clock.clone()), quota, 8)
                .unwrap();
        assert_eq!(sharded.per_shard().limit(), 3, "⌈20 / 8⌉");
        // Round-robin fills every shard: exactly N · ⌈L/N⌉ = 24 ≤ L + N − 1 = 27.
        let admitted = block_on(async {
            let mut n = 0;
            for _ in 0..200 {
                n += u32::from(sharded.check("hot", None).await.is_allowed());
            }
            n
        });
        assert_eq!(admitted, 24);

        // Spread by client: never above the bound, and one client stays on one shard.
        let sharded =
            ShardedLimiter::with_shards(MemoryWindowStore::with_clock(clock.clone()), quota, 8)
                .unwrap();
        let admitted = block_on(async {
            let mut n = 0;
            for client in 0..500 {
                let spread = format!("198.51.100.{}", client % 250);
                n += u32::from(sharded.check("hot", Some(&spread)).await.is_allowed());
            }
            n
        });
        let (limit, shards) = (20, 8);
        assert!(admitted < limit + shards, "{admitted} > limit + shards - 1");
        assert_eq!(
            shard_of("198.51.100.7", 64),
            shard_of("198.51.100.7", 64),
            "stable"
        );
        assert!(
            (0..1000)
                .map(|i| shard_of(&i.to_string(), 64))
                .collect::<std::collections::HashSet<_>>()
                .len()
                == 64,
            "every shard is used"
        );
        assert!(ShardedLimiter::with_shards(MemoryWindowStore::new(), quota, 0).is_err());
    }
}

/// The sliding window as a durable object, on `edge-do`'s in-process runtime: exact under concurrent
/// clients, state kept across eviction, sharded over many objects, bad requests refused.
mod durable_windows {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    use edge_auth::ratelimit::{
        DurableWindowStore, Quota, ShardedLimiter, SlidingWindowLimiter, WindowObject, WindowStore,
    };
    use edge_core::durable::ObjectNamespace;
    use edge_core::{Body, ManualClock};
    use edge_do::{MemoryStorageProvider, Namespace, ObjectState};

    type Windows = Namespace<
        WindowObject<edge_do::ObjectStorage<edge_do::MemoryStorage>, ManualClock>,
        MemoryStorageProvider,
    >;

    fn namespace(clock: &ManualClock) -> Windows {
        let clock = clock.clone();
        Namespace::new(
            MemoryStorageProvider::new(),
            move |state: ObjectState<_>| WindowObject::new(state.storage, clock.clone()),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn exact_under_concurrency_and_survives_eviction() {
        let clock = ManualClock::new();
        let objects = namespace(&clock);
        let limiter = Arc::new(SlidingWindowLimiter::new(
            DurableWindowStore::new(objects.clone()),
            Quota::per_minute(std::num::NonZeroU32::new(100).unwrap()),
        ));
        let admitted = Arc::new(AtomicU32::new(0));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (limiter, admitted) = (Arc::clone(&limiter), Arc::clone(&admitted));
                tokio::spawn(async move {
                    for _ in 0..50 {
                        if limiter.try_check("viral").await.unwrap().is_allowed() {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(admitted.load(Ordering::Relaxed), 100);
        objects.evict(&objects.id_from_name("viral")).await;
        assert!(
            !limiter.check("viral").await.is_allowed(),
            "the log was reloaded from storage"
        );
        clock.advance(Duration::from_secs(61));
        assert!(limiter.check("viral").await.is_allowed());
    }

    #[tokio::test]
    async fn sharded_over_objects_and_bad_requests() {
        let clock = ManualClock::new();
        let objects = namespace(&clock);
        let sharded = ShardedLimiter::with_shards(
            DurableWindowStore::new(objects.clone()),
            Quota::per_minute(std::num::NonZeroU32::new(100).unwrap()),
            8,
        )
        .unwrap();
        let mut n = 0;
        for _ in 0..300 {
            n += u32::from(sharded.check("hot", None).await.is_allowed());
        }
        assert_eq!(n, 8 * 13, "N · ⌈100 / 8⌉");
        assert_eq!(objects.live(), 8, "one object per shard");

        let id = objects.id_from_name("x");
        for body in ["", "1", "a b", "10 0", "0 10", "10 99999", "1 2 3"] {
            let mut request = http::Request::new(Body::from(body));
            *request.method_mut() = http::Method::POST;
            let response = objects.fetch(&id, request).await.unwrap();
            assert_eq!(response.status(), http::StatusCode::BAD_REQUEST, "{body:?}");
        }
        let store = DurableWindowStore::new(objects.clone());
        assert!(
            store
                .hit("k", Duration::from_secs(1), 1_000_000)
                .await
                .is_err(),
            "limit too large"
        );
    }
}

/// The same window object with its log in SQLite (one database for the namespace).
#[tokio::test]
async fn durable_windows_on_sqlite() {
    use edge_auth::ratelimit::{DurableWindowStore, Quota, SlidingWindowLimiter, WindowObject};
    use edge_do::{Namespace, ObjectState, SqliteStore};

    let clock = ManualClock::new();
    let store = SqliteStore::in_memory().unwrap();
    let window_clock = clock.clone();
    let objects = Namespace::new(store, move |state: ObjectState<_>| {
        WindowObject::new(state.storage, window_clock.clone())
    });
    let limiter = SlidingWindowLimiter::new(
        DurableWindowStore::new(objects),
        Quota::per_minute(std::num::NonZeroU32::new(20).unwrap()),
    );
    let mut admitted = 0;
    for _ in 0..30 {
        admitted += u32::from(limiter.check("k").await.is_allowed());
    }
    assert_eq!(admitted, 20);
    clock.advance(Duration::from_secs(60));
    assert!(limiter.check("k").await.is_allowed());
}
