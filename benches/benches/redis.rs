//! `RedisKv::get` next to a bare `GET` through the same redis-rs `ConnectionManager`, against a real
//! `redis-server` on loopback: what the envelope, validation and expiry check cost on top of the round trip.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::num::NonZeroU32;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use edge_core::KvStore;
use edge_core::kv::PutOptions;
use edge_kv::redis::RedisKv;
use edge_kv::testing::RedisServer;
use redis::AsyncCommands;

fn redis_get(c: &mut Criterion) {
    let server =
        RedisServer::start().expect("redis-server must be installed (bash .ci/run installs it)");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let kv = runtime.block_on(RedisKv::connect(&server.url())).unwrap();
    let value = Bytes::from(vec![b'x'; 256]);
    runtime
        .block_on(kv.put("bench:key", value.clone(), PutOptions::new()))
        .unwrap();
    let mut raw = kv.connection().clone();
    runtime
        .block_on(raw.set::<_, _, ()>("bench:raw", value.as_ref()))
        .unwrap();

    let mut group = c.benchmark_group("kv/redis_get_256B");
    group.bench_function("edge_kv::RedisKv::get", |b| {
        b.iter(|| black_box(runtime.block_on(kv.get(black_box("bench:key"))).unwrap()));
    });
    group.bench_function("redis::aio::ConnectionManager GET", |b| {
        b.iter(|| {
            let mut connection = raw.clone();
            black_box(
                runtime
                    .block_on(connection.get::<_, Option<Vec<u8>>>(black_box("bench:raw")))
                    .unwrap(),
            )
        });
    });
    group.finish();
}

/// `RedisLimiter::check` next to the same script run by a bare `EVALSHA` on the same connection.
fn redis_ratelimit(c: &mut Criterion) {
    use edge_auth::ratelimit::{Quota, RedisLimiter};

    let server =
        RedisServer::start().expect("redis-server must be installed (bash .ci/run installs it)");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let quota = Quota::per_second(NonZeroU32::new(1_000_000).unwrap());
    let limiter = runtime
        .block_on(RedisLimiter::connect(&server.url(), quota))
        .unwrap();
    assert!(runtime.block_on(limiter.check("bench")).is_allowed());
    let client = redis::Client::open(server.url()).unwrap();
    let raw = runtime
        .block_on(redis::aio::ConnectionManager::new(client))
        .unwrap();
    let sha = redis::Script::new(RedisLimiter::script_source())
        .get_hash()
        .to_owned();

    let mut group = c.benchmark_group("ratelimit/redis_check");
    group.bench_function("edge_auth::RedisLimiter::check", |b| {
        b.iter(|| {
            black_box(
                runtime
                    .block_on(limiter.check(black_box("bench")))
                    .is_allowed(),
            )
        });
    });
    group.bench_function("bare EVALSHA of the same script", |b| {
        b.iter(|| {
            let mut connection = raw.clone();
            let reply: (i64, i64, i64) = runtime
                .block_on(
                    redis::cmd("EVALSHA")
                        .arg(&sha)
                        .arg(1)
                        .arg("edge-rl:bench-raw")
                        .arg(1)
                        .arg(1_000_000)
                        .arg(1)
                        .query_async(&mut connection),
                )
                .unwrap();
            black_box(reply)
        });
    });
    group.finish();
}

criterion_group!(benches, redis_get, redis_ratelimit);
criterion_main!(benches);
