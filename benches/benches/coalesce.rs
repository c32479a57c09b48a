//! The request coalescer next to `singleflight-async` and a bare `futures::future::Shared`.
//!
//! - `coalesce/1000_waiters_one_key`: 1,000 callers ask for one key while its load is pending; exactly one
//!   load runs and all 1,000 get its result. Throughput is per waiter.
//! - `coalesce/uncontended`: one caller, one key, a load that is ready at once: the cost the coalescer adds
//!   to every cache miss.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use edge_core::Coalescer;
use futures::FutureExt;
use futures::executor::block_on;
use futures::future::join_all;

const WAITERS: usize = 1000;

/// Pending once, then ready: every waiter joins before the load completes.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

fn many_waiters(c: &mut Criterion) {
    let mut group = c.benchmark_group("coalesce/1000_waiters_one_key");
    group.throughput(Throughput::Elements(WAITERS as u64));

    group.bench_function("edge_core::Coalescer", |b| {
        let coalescer: Coalescer<u64, u64> = Coalescer::new();
        let loads = Arc::new(AtomicUsize::new(0));
        b.iter(|| {
            let before = loads.load(Ordering::Relaxed);
            let waiters = (0..WAITERS).map(|_| {
                let loads = Arc::clone(&loads);
                coalescer.run(black_box(7), move || async move {
                    loads.fetch_add(1, Ordering::Relaxed);
                    YieldOnce(false).await;
                    42
                })
            });
            let results = block_on(join_all(waiters));
            assert_eq!(
                loads.load(Ordering::Relaxed) - before,
                1,
                "exactly one load per 1000 waiters"
            );
            black_box(results);
        });
    });

    group.bench_function("singleflight_async::SingleFlight", |b| {
        let flights: singleflight_async::SingleFlight<u64, u64> =
            singleflight_async::SingleFlight::new();
        let loads = Arc::new(AtomicUsize::new(0));
        b.iter(|| {
            let before = loads.load(Ordering::Relaxed);
            let waiters = (0..WAITERS).map(|_| {
                let loads = Arc::clone(&loads);
                flights.work(black_box(7), move || async move {
                    loads.fetch_add(1, Ordering::Relaxed);
                    YieldOnce(false).await;
                    42
                })
            });
            let results = block_on(join_all(waiters));
            assert_eq!(
                loads.load(Ordering::Relaxed) - before,
                1,
                "exactly one load per 1000 waiters"
            );
            black_box(results);
        });
    });

    group.bench_function("futures::future::Shared (bare, no keying)", |b| {
        let loads = Arc::new(AtomicUsize::new(0));
        b.iter(|| {
            let loads = Arc::clone(&loads);
            let shared = async move {
                loads.fetch_add(1, Ordering::Relaxed);
                YieldOnce(false).await;
                42u64
            }
            .boxed()
            .shared();
            let waiters = (0..WAITERS).map(|_| shared.clone());
            black_box(block_on(join_all(waiters)));
        });
    });
    group.finish();
}

fn uncontended(c: &mut Criterion) {
    let mut group = c.benchmark_group("coalesce/uncontended");
    group.throughput(Throughput::Elements(1));

    let coalescer: Coalescer<u64, u64> = Coalescer::new();
    group.bench_function("edge_core::Coalescer", |b| {
        b.iter(|| black_box(coalescer.run(black_box(7), || async { 42 }).now_or_never()));
    });

    let flights: singleflight_async::SingleFlight<u64, u64> =
        singleflight_async::SingleFlight::new();
    group.bench_function("singleflight_async::SingleFlight", |b| {
        b.iter(|| black_box(flights.work(black_box(7), || async { 42 }).now_or_never()));
    });
    group.finish();
}

criterion_group!(benches, many_waiters, uncontended);
criterion_main!(benches);
