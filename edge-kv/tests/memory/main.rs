//! `MemoryKv` against the KV conformance kit, a model `BTreeMap` (proptest), and many threads.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod model;

use std::sync::Arc;

use bytes::Bytes;
use edge_core::kv::{ListOptions, PutOptions};
use edge_core::{KvStore, testing};
use edge_kv::MemoryKv;

#[tokio::test]
async fn conformance_kit() {
    testing::kv::run_all(|clock| MemoryKv::builder().clock(clock).build()).await;
}

#[tokio::test]
async fn conformance_kit_with_one_shard() {
    testing::kv::run_all(|clock| MemoryKv::builder().clock(clock).shards(1).build()).await;
}

#[tokio::test]
async fn conformance_kit_through_a_trait_object() {
    testing::kv::run_all(|clock| {
        let store: Arc<dyn edge_core::kv::DynKvStore> =
            Arc::new(MemoryKv::builder().clock(clock).build());
        store
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threads_writing_and_listing_at_once_lose_nothing() {
    let kv = MemoryKv::builder().max_entries(10_000).build();
    let mut tasks = Vec::new();
    for t in 0..8 {
        let kv = kv.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..500 {
                let key = format!("t{t}/{i:04}");
                kv.put(&key, Bytes::from(key.clone()), PutOptions::new())
                    .await
                    .unwrap();
                if i % 3 == 0 {
                    kv.delete(&key).await.unwrap();
                }
                if i % 100 == 0 {
                    kv.list(
                        ListOptions::new()
                            .with_prefix(format!("t{t}/"))
                            .with_limit(50),
                    )
                    .await
                    .unwrap();
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let mut listed = 0;
    let mut options = ListOptions::new();
    loop {
        let page = kv.list(options).await.unwrap();
        listed += page.keys.len();
        match page.cursor {
            Some(cursor) => options = ListOptions::new().with_cursor(cursor),
            None => break,
        }
    }
    let expected = 8 * (500 - 500_usize.div_ceil(3));
    assert_eq!(listed, expected);
    assert_eq!(kv.len(), expected, "entry count matches what is stored");
}
