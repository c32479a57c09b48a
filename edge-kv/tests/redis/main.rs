//! `RedisKv` against a real `redis-server` started by the test on a free loopback port: the whole KV kit,
//! two app servers sharing one Redis, foreign data, and a Redis restart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use edge_core::kv::{ListOptions, PutOptions};
use edge_core::{ErrorKind, KvStore, testing};
use edge_kv::redis::RedisKv;
use edge_kv::testing::RedisServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_kit_on_a_real_redis() {
    let server = RedisServer::start().unwrap();
    let kv = RedisKv::connect(&server.url()).await.unwrap();
    let namespaces = AtomicUsize::new(0);
    testing::kv::run_all(|clock| {
        let ns = format!("kit{}", namespaces.fetch_add(1, Ordering::SeqCst));
        kv.clone().with_namespace(&ns).with_clock(clock)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_servers_sharing_a_redis_see_each_others_writes() {
    let server = RedisServer::start().unwrap();
    let server_a = RedisKv::connect(&server.url()).await.unwrap();
    let server_b = RedisKv::connect(&server.url()).await.unwrap();
    server_a
        .put("session:1", Bytes::from_static(b"alice"), PutOptions::new())
        .await
        .unwrap();
    assert_eq!(
        server_b.get("session:1").await.unwrap(),
        Some(Bytes::from_static(b"alice")),
        "strongly consistent"
    );
    let writers = (0..50).map(|i| {
        let kv = if i % 2 == 0 {
            server_a.clone()
        } else {
            server_b.clone()
        };
        tokio::spawn(async move {
            kv.put(
                &format!("w:{i:02}"),
                Bytes::from(vec![i]),
                PutOptions::new(),
            )
            .await
        })
    });
    for writer in writers {
        writer.await.unwrap().unwrap();
    }
    let page = server_a
        .list(ListOptions::new().with_prefix("w:"))
        .await
        .unwrap();
    assert_eq!(page.keys.len(), 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_values_are_typed_errors_and_namespaces_isolate() {
    let server = RedisServer::start().unwrap();
    let kv = RedisKv::connect(&server.url())
        .await
        .unwrap()
        .with_namespace("app");
    let mut raw = kv.connection().clone();
    let _: () = redis::cmd("SET")
        .arg("app:d:planted")
        .arg("written by another program")
        .query_async(&mut raw)
        .await
        .unwrap();
    let _: () = redis::cmd("ZADD")
        .arg("app:i")
        .arg(0)
        .arg("planted")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(
        kv.get("planted").await.unwrap_err().kind(),
        ErrorKind::Corrupt
    );
    assert!(
        kv.list(ListOptions::new()).await.unwrap().keys.is_empty(),
        "list skips what it cannot read"
    );
    kv.put("planted", Bytes::from_static(b"ours"), PutOptions::new())
        .await
        .unwrap();
    assert_eq!(
        kv.get("planted").await.unwrap(),
        Some(Bytes::from_static(b"ours")),
        "a write repairs it"
    );
    let other = kv.clone().with_namespace("other");
    assert_eq!(other.get("planted").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_a_redis_restart() {
    let mut server = RedisServer::start().unwrap();
    let port = server.port();
    let kv = RedisKv::connect(&server.url()).await.unwrap();
    kv.put("before", Bytes::from_static(b"1"), PutOptions::new())
        .await
        .unwrap();

    server.kill();
    let err = kv.get("before").await.unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::Unavailable | ErrorKind::Timeout),
        "typed failure: {err}"
    );

    let _restarted = RedisServer::start_on(port).unwrap();
    let mut recovered = false;
    for _ in 0..50 {
        if kv
            .put("after", Bytes::from_static(b"2"), PutOptions::new())
            .await
            .is_ok()
        {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "later calls succeed once Redis is back");
    assert_eq!(
        kv.get("after").await.unwrap(),
        Some(Bytes::from_static(b"2"))
    );
    assert_eq!(
        kv.get("before").await.unwrap(),
        None,
        "the restarted Redis kept nothing (no persistence)"
    );
}

#[tokio::test]
async fn an_unreachable_redis_is_a_typed_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = RedisKv::connect(&format!("redis://127.0.0.1:{port}/"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert_eq!(
        RedisKv::connect("not a url").await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
}
