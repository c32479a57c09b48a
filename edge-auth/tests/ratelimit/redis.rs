//! `RedisLimiter` against a real `redis-server`: concurrent clients never get more than the quota.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use edge_auth::ratelimit::{OnStoreError, Quota, RedisLimiter};
use edge_kv::testing::RedisServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_clients_never_get_more_than_the_quota() {
    let server = RedisServer::start().expect("redis-server is installed");
    let quota = Quota::per_hour(NonZeroU32::new(100).unwrap());
    let admitted = Arc::new(AtomicU32::new(0));
    let mut tasks = Vec::new();
    // Eight clients, each with its own connection, as eight app servers would have.
    for _ in 0..8 {
        let limiter = RedisLimiter::connect(&server.url(), quota).await.unwrap();
        let admitted = admitted.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..50 {
                if limiter.try_check_n("shared", 1).await.unwrap().is_allowed() {
                    admitted.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(
        admitted.load(Ordering::Relaxed),
        100,
        "exactly the burst, never more"
    );

    let limiter = RedisLimiter::connect(&server.url(), quota).await.unwrap();
    let denied = limiter.check("shared").await;
    assert!(!denied.is_allowed());
    assert_eq!(denied.remaining(), 0);
    let retry = denied.retry_after();
    assert!(
        retry > Duration::from_secs(30) && retry <= Duration::from_secs(36),
        "{retry:?}"
    );

    let fresh = limiter.check("other").await;
    assert!(fresh.is_allowed());
    assert_eq!(fresh.remaining(), 99);
}

#[tokio::test]
async fn garbage_and_long_keys_and_an_unreachable_server() {
    let mut server = RedisServer::start().expect("redis-server is installed");
    let quota = Quota::per_minute(NonZeroU32::new(2).unwrap());
    let limiter = RedisLimiter::connect(&server.url(), quota).await.unwrap();

    let client = redis::Client::open(server.url()).unwrap();
    let mut raw = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("SET")
        .arg("edge-rl:k")
        .arg("not a number")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(
        limiter.check("k").await.is_allowed(),
        "garbage reads as a full quota"
    );
    assert!(limiter.check("k").await.is_allowed());
    assert!(
        !limiter.check("k").await.is_allowed(),
        "and was overwritten with a real TAT"
    );

    let long = "é".repeat(5_000);
    assert!(limiter.check(&long).await.is_allowed());
    assert!(limiter.check(&long).await.is_allowed());
    assert!(!limiter.check(&long).await.is_allowed());

    let closed = limiter.clone().on_store_error(OnStoreError::Deny);
    server.kill();
    assert!(limiter.try_check_n("k", 1).await.is_err());
    assert!(
        limiter.check("k").await.is_allowed(),
        "fail open by default"
    );
    assert!(
        !closed.check("k").await.is_allowed(),
        "fail closed when asked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_sliding_windows_are_exact_under_concurrency_and_shard() {
    use edge_auth::ratelimit::{RedisWindowStore, ShardedLimiter, SlidingWindowLimiter};

    let server = RedisServer::start().expect("redis-server is installed");
    let quota = Quota::per_hour(NonZeroU32::new(100).unwrap());
    let admitted = Arc::new(AtomicU32::new(0));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = RedisWindowStore::connect(&server.url()).await.unwrap();
        let limiter = SlidingWindowLimiter::new(store, quota);
        let admitted = admitted.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..50 {
                if limiter.try_check("shared").await.unwrap().is_allowed() {
                    admitted.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(admitted.load(Ordering::Relaxed), 100);

    // A key holding something else is garbage: replaced by a fresh window.
    let client = redis::Client::open(server.url()).unwrap();
    let mut raw = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("SET")
        .arg("edge-rlw:junk")
        .arg("x")
        .query_async(&mut raw)
        .await
        .unwrap();
    let store = RedisWindowStore::connect(&server.url()).await.unwrap();
    let limiter = SlidingWindowLimiter::new(
        store.clone(),
        Quota::per_minute(NonZeroU32::new(1).unwrap()),
    );
    assert!(limiter.check("junk").await.is_allowed());
    assert!(!limiter.check("junk").await.is_allowed());

    // 64 shards of ⌈1000 / 64⌉ = 16: at most 1024 ≤ 1000 + 63.
    let sharded =
        ShardedLimiter::new(store, Quota::per_hour(NonZeroU32::new(1000).unwrap())).unwrap();
    let mut n = 0;
    for _ in 0..1100 {
        n += u32::from(sharded.check("viral", None).await.is_allowed());
    }
    assert_eq!(n, 1024);
}
