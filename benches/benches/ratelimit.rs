//! Rate limiting: edge-auth's in-memory GCRA next to governor (direct and keyed, 1 / 10k / 1M keys, one
//! and two threads), each on its own default clock; and the KV token bucket over `MemoryKv`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use edge_auth::ratelimit::{KeyedLimiter, KvTokenBucket, Limiter, Quota};
use edge_kv::MemoryKv;

/// A quota no benchmark run exhausts (every check takes the admit path, which writes).
const RATE: u32 = 1_000_000_000;

fn ours_quota() -> Quota {
    Quota::per_second(NonZeroU32::new(RATE).unwrap())
}

fn governor_quota() -> governor::Quota {
    governor::Quota::per_second(NonZeroU32::new(RATE).unwrap())
}

fn direct(c: &mut Criterion) {
    let mut group = c.benchmark_group("ratelimit/direct");
    let ours = Limiter::new(ours_quota());
    let theirs = governor::RateLimiter::direct(governor_quota());
    group.bench_function("edge_auth (admit)", |b| {
        b.iter(|| black_box(ours.check().is_allowed()))
    });
    group.bench_function("governor (admit)", |b| {
        b.iter(|| black_box(theirs.check().is_ok()))
    });
    // The deny path: no write.
    let ours = Limiter::new(Quota::per_hour(NonZeroU32::new(1).unwrap()));
    let theirs = governor::RateLimiter::direct(governor::Quota::per_hour(NonZeroU32::MIN));
    let _ = (ours.check(), theirs.check());
    group.bench_function("edge_auth (deny)", |b| {
        b.iter(|| black_box(ours.check().is_allowed()))
    });
    group.bench_function("governor (deny)", |b| {
        b.iter(|| black_box(theirs.check().is_ok()))
    });
    group.finish();
}

/// Spreads iterations over `threads` threads checking keys `0..keys` in a scrambled order; returns the
/// wall time (so two threads doing twice the work in the same time show as the same per-iteration time).
fn run_threads(threads: u64, iters: u64, keys: u64, check: &(dyn Fn(u64) + Sync)) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                let mut k = t.wrapping_mul(0x9e37_79b9);
                for _ in 0..iters {
                    k = k.wrapping_add(0x9e37_79b9_7f4a_7c15);
                    check(k % keys);
                }
            });
        }
    });
    start.elapsed()
}

fn keyed(c: &mut Criterion) {
    let mut group = c.benchmark_group("ratelimit/keyed");
    for keys in [1u64, 10_000, 1_000_000] {
        // Many keys: a quota whose state stays live for the whole run (each check moves a key's TAT an
        // hour ahead, far longer than filling the map takes, and the burst of a million is never used up),
        // so neither side can drop idle keys and both hold every key. One key: the huge quota, so the
        // run never reaches a denial.
        let (ours, theirs) = if keys == 1 {
            (
                KeyedLimiter::new(ours_quota()),
                governor::RateLimiter::keyed(governor_quota()),
            )
        } else {
            (
                KeyedLimiter::new(
                    Quota::per_hour(NonZeroU32::new(1).unwrap())
                        .with_burst(1_000_000)
                        .unwrap(),
                ),
                governor::RateLimiter::keyed(
                    governor::Quota::per_hour(NonZeroU32::MIN)
                        .allow_burst(NonZeroU32::new(1_000_000).unwrap()),
                ),
            )
        };
        for k in 0..keys {
            let _ = (ours.check(&k), theirs.check_key(&k));
        }
        assert_eq!(ours.len() as u64, keys, "every key held");
        for threads in [1u64, 2] {
            let id = format!("{keys} keys, {threads} thread(s)");
            group.bench_function(BenchmarkId::new("edge_auth", &id), |b| {
                b.iter_custom(|iters| {
                    run_threads(threads, iters, keys, &|k| {
                        black_box(ours.check(&k).is_allowed());
                    })
                })
            });
            group.bench_function(BenchmarkId::new("governor", &id), |b| {
                b.iter_custom(|iters| {
                    run_threads(threads, iters, keys, &|k| {
                        black_box(theirs.check_key(&k).is_ok());
                    })
                })
            });
        }
    }
    group.finish();
}

/// 10 000 clients under a quota so generous that each is idle again right after its request (the state
/// a sweep may drop), next to the floor of any keyed GCRA: read the clock, find the key's atomic in a
/// `dashmap` with the same hasher, move it with one atomic update. A limiter that swept such keys would
/// make most checks inserts.
fn keyed_idle(c: &mut Criterion) {
    const KEYS: u64 = 10_000;
    let mut group = c.benchmark_group("ratelimit/keyed, idle between requests");
    let ours = KeyedLimiter::new(ours_quota());
    let theirs = governor::RateLimiter::keyed(governor_quota());
    let floor: dashmap::DashMap<u64, std::sync::atomic::AtomicU64, foldhash::fast::RandomState> =
        dashmap::DashMap::with_hasher(foldhash::fast::RandomState::default());
    for k in 0..KEYS {
        let _ = (ours.check(&k), theirs.check_key(&k));
        floor.insert(k, std::sync::atomic::AtomicU64::new(0));
    }
    group.bench_function("edge_auth", |b| {
        b.iter_custom(|iters| {
            run_threads(1, iters, KEYS, &|k| {
                black_box(ours.check(&k).is_allowed());
            })
        })
    });
    group.bench_function("governor", |b| {
        b.iter_custom(|iters| {
            run_threads(1, iters, KEYS, &|k| {
                black_box(theirs.check_key(&k).is_ok());
            })
        })
    });
    let clock = edge_core::SystemClock::new();
    group.bench_function("floor (clock, dashmap lookup, atomic update)", |b| {
        b.iter_custom(|iters| {
            run_threads(1, iters, KEYS, &|k| {
                let now = edge_core::Clock::now_nanos(&clock);
                black_box(
                    floor
                        .get(&k)
                        .map(|cell| cell.fetch_max(now + 1, std::sync::atomic::Ordering::AcqRel)),
                );
            })
        })
    });
    group.finish();
    assert!(
        ours.len() as u64 >= KEYS,
        "no client was swept between its requests"
    );
}

fn kv_bucket(c: &mut Criterion) {
    let limiter = KvTokenBucket::builder(MemoryKv::new(), ours_quota()).build();
    c.bench_function("ratelimit/kv_token_bucket/MemoryKv", |b| {
        b.iter(|| {
            futures::executor::block_on(async {
                black_box(limiter.check("client").await.is_allowed())
            })
        })
    });
}

criterion_group!(benches, direct, keyed, keyed_idle, kv_bucket);
criterion_main!(benches);
