//! Property test: `MemoryKv` behaves like a `BTreeMap` with expiry, whatever the sequence of operations.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use edge_core::kv::{KvLimits, ListOptions, PutOptions};
use edge_core::{Clock, ErrorKind, KvStore, ManualClock};
use edge_kv::MemoryKv;
use futures::executor::block_on;
use proptest::prelude::*;
use serde_json::json;

#[derive(Clone, Debug)]
enum Op {
    Put {
        key: String,
        value: Vec<u8>,
        ttl_secs: Option<u64>,
        tag: Option<u8>,
    },
    Delete(String),
    Get(String),
    Advance(u64),
    List {
        prefix: String,
        limit: usize,
    },
}

fn key() -> impl Strategy<Value = String> {
    // A small alphabet so operations collide on keys and prefixes; the empty key and `..` are invalid.
    prop_oneof![
        8 => "[ab/é]{1,4}",
        1 => Just(String::new()),
        1 => Just("..".to_owned()),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (key(), prop::collection::vec(any::<u8>(), 0..8), prop::option::of(0u64..200), prop::option::of(any::<u8>()))
            .prop_map(|(key, value, ttl_secs, tag)| Op::Put { key, value, ttl_secs, tag }),
        2 => key().prop_map(Op::Delete),
        3 => key().prop_map(Op::Get),
        2 => (0u64..120).prop_map(Op::Advance),
        1 => ("[ab/é]{0,2}", 1usize..5).prop_map(|(prefix, limit)| Op::List { prefix, limit }),
    ]
}

#[derive(Clone, Debug, PartialEq)]
struct ModelEntry {
    value: Bytes,
    tag: Option<u8>,
    expires_at: Option<SystemTime>,
}

fn valid_key(key: &str) -> bool {
    !key.is_empty() && key != "." && key != ".."
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn memory_kv_matches_a_btreemap_with_expiry(ops in prop::collection::vec(op(), 1..60), shards in 1usize..5) {
        let clock = ManualClock::new();
        let limits = KvLimits::WORKERS.with_min_ttl(Duration::from_secs(1));
        let kv = MemoryKv::builder().clock(clock.clone()).limits(limits).shards(shards).build();
        let mut model: BTreeMap<String, ModelEntry> = BTreeMap::new();
        block_on(async {
            for op in ops {
                let now = clock.wall_time();
                model.retain(|_, e| e.expires_at.is_none_or(|at| at > now));
                match op {
                    Op::Put { key, value, ttl_secs, tag } => {
                        let mut options = PutOptions::new();
                        if let Some(ttl) = ttl_secs {
                            options = options.with_ttl(Duration::from_secs(ttl));
                        }
                        if let Some(tag) = tag {
                            options = options.with_metadata(json!({ "tag": tag }));
                        }
                        let result = kv.put(&key, Bytes::from(value.clone()), options).await;
                        if !valid_key(&key) {
                            prop_assert_eq!(result.unwrap_err().kind(), ErrorKind::InvalidKey);
                        } else if ttl_secs == Some(0) {
                            prop_assert_eq!(result.unwrap_err().kind(), ErrorKind::InvalidInput);
                        } else {
                            prop_assert!(result.is_ok());
                            let expires_at = ttl_secs.map(|s| now + Duration::from_secs(s));
                            model.insert(key, ModelEntry { value: Bytes::from(value), tag, expires_at });
                        }
                    }
                    Op::Delete(key) => {
                        let result = kv.delete(&key).await;
                        prop_assert_eq!(result.is_ok(), valid_key(&key));
                        model.remove(&key);
                    }
                    Op::Get(key) => {
                        let got = kv.get_with_metadata(&key).await;
                        if valid_key(&key) {
                            let got = got.unwrap().map(|e| {
                                let tag = e.metadata.and_then(|m| m["tag"].as_u64()).and_then(|t| u8::try_from(t).ok());
                                ModelEntry { value: e.value, tag, expires_at: e.expires_at }
                            });
                            prop_assert_eq!(got.as_ref(), model.get(&key));
                        } else {
                            prop_assert_eq!(got.unwrap_err().kind(), ErrorKind::InvalidKey);
                        }
                    }
                    Op::Advance(secs) => clock.advance(Duration::from_secs(secs)),
                    Op::List { prefix, limit } => {
                        let mut listed = Vec::new();
                        let mut options = ListOptions::new().with_prefix(prefix.clone()).with_limit(limit);
                        loop {
                            let page = kv.list(options).await.unwrap();
                            prop_assert!(page.keys.len() <= limit);
                            listed.extend(page.keys.into_iter().map(|k| k.name));
                            match page.cursor {
                                Some(c) => options = ListOptions::new().with_prefix(prefix.clone()).with_limit(limit).with_cursor(c),
                                None => break,
                            }
                        }
                        let expected: Vec<String> = model.keys().filter(|k| k.starts_with(&prefix)).cloned().collect();
                        prop_assert_eq!(listed, expected);
                    }
                }
            }
            // What was never purged is still accounted for exactly.
            let now = clock.wall_time();
            model.retain(|_, e| e.expires_at.is_none_or(|at| at > now));
            kv.purge_expired();
            prop_assert_eq!(kv.len(), model.len());
            Ok(())
        })?;
    }
}

proptest! {
    /// Any key, value size, TTL or cursor a client can send gets an answer or a typed error, never a panic,
    /// and a refused write changes nothing.
    #[test]
    fn hostile_input_gets_typed_errors(
        key in prop_oneof![".{0,40}", "[a-z]{500,520}", Just(String::new()), Just("..".to_owned())],
        value_len in prop_oneof![0usize..64, Just(1025usize)],
        ttl_ms in prop::option::of(any::<u64>()),
        cursor in prop_oneof![".{0,24}", "mkv1\\.[0-9a-f]{0,16}", "mkv1\\.[0-9a-zA-Z%]{1,8}"],
        limit in prop::option::of(any::<usize>()),
    ) {
        let clock = ManualClock::new();
        let kv = MemoryKv::builder().clock(clock.clone()).limits(KvLimits::new(512, 1024)).build();
        block_on(async {
            kv.put("witness", Bytes::from_static(b"w"), PutOptions::new()).await.unwrap();
            let mut options = PutOptions::new();
            if let Some(ms) = ttl_ms {
                options = options.with_ttl(Duration::from_millis(ms));
            }
            match kv.put(&key, Bytes::from(vec![0u8; value_len]), options).await {
                Ok(()) => prop_assert!(kv.get(&key).await.unwrap().is_some()),
                Err(e) => {
                    prop_assert!(matches!(e.kind(), ErrorKind::InvalidKey | ErrorKind::TooLarge | ErrorKind::InvalidInput), "{e}");
                    if key != "witness" {
                        prop_assert!(!matches!(kv.get(&key).await, Ok(Some(_))), "a refused write left data");
                    }
                }
            }
            let mut list = ListOptions::new().with_cursor(cursor);
            list.limit = limit;
            match kv.list(list).await {
                Ok(page) => prop_assert!(page.keys.len() <= KvLimits::WORKERS.max_list_limit),
                Err(e) => prop_assert!(matches!(e.kind(), ErrorKind::InvalidCursor | ErrorKind::InvalidInput), "{e}"),
            }
            prop_assert_eq!(kv.get("witness").await.unwrap(), Some(Bytes::from_static(b"w")));
            Ok(())
        })?;
    }
}
