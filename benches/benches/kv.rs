//! `MemoryKv` point reads and writes next to the in-memory maps users would otherwise reach for:
//! `quick_cache::sync::Cache` and `dashmap::DashMap`, on the same 10,000 keys and 64-byte values.
//!
//! `MemoryKv` does more per call than either peer (key validation, expiry check, byte and entry accounting,
//! an ordered index for `list`), so the interesting number is how little that costs.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use edge_core::KvStore;
use edge_core::kv::PutOptions;
use edge_kv::MemoryKv;
use futures::FutureExt;

const KEYS: usize = 10_000;

fn keys() -> Vec<String> {
    (0..KEYS)
        .map(|i| {
            format!(
                "session:{:016x}",
                (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
            )
        })
        .collect()
}

fn value() -> Bytes {
    Bytes::from(vec![7u8; 64])
}

fn get(c: &mut Criterion) {
    let keys = keys();
    let value = value();
    let mut group = c.benchmark_group("kv/get");
    group.throughput(Throughput::Elements(KEYS as u64));

    let kv = MemoryKv::new();
    for k in &keys {
        kv.put(k, value.clone(), PutOptions::new())
            .now_or_never()
            .unwrap()
            .unwrap();
    }
    group.bench_function(BenchmarkId::new("edge_kv::MemoryKv", KEYS), |b| {
        b.iter(|| {
            for k in &keys {
                black_box(kv.get(black_box(k)).now_or_never().unwrap().unwrap());
            }
        });
    });

    let qc: quick_cache::sync::Cache<String, Bytes> = quick_cache::sync::Cache::new(KEYS * 2);
    for k in &keys {
        qc.insert(k.clone(), value.clone());
    }
    group.bench_function(BenchmarkId::new("quick_cache::sync::Cache", KEYS), |b| {
        b.iter(|| {
            for k in &keys {
                black_box(qc.get(black_box(k.as_str())));
            }
        });
    });

    let dm: dashmap::DashMap<String, Bytes> = dashmap::DashMap::new();
    for k in &keys {
        dm.insert(k.clone(), value.clone());
    }
    group.bench_function(BenchmarkId::new("dashmap::DashMap", KEYS), |b| {
        b.iter(|| {
            for k in &keys {
                black_box(dm.get(black_box(k.as_str())).map(|v| v.value().clone()));
            }
        });
    });
    group.finish();
}

fn put(c: &mut Criterion) {
    let keys = keys();
    let value = value();
    let mut group = c.benchmark_group("kv/put_overwrite");
    group.throughput(Throughput::Elements(KEYS as u64));

    let kv = MemoryKv::new();
    group.bench_function(BenchmarkId::new("edge_kv::MemoryKv", KEYS), |b| {
        b.iter(|| {
            for k in &keys {
                kv.put(black_box(k), value.clone(), PutOptions::new())
                    .now_or_never()
                    .unwrap()
                    .unwrap();
            }
        });
    });

    let qc: quick_cache::sync::Cache<String, Bytes> = quick_cache::sync::Cache::new(KEYS * 2);
    group.bench_function(BenchmarkId::new("quick_cache::sync::Cache", KEYS), |b| {
        b.iter(|| {
            for k in &keys {
                qc.insert(black_box(k).clone(), value.clone());
            }
        });
    });

    let dm: dashmap::DashMap<String, Bytes> = dashmap::DashMap::new();
    group.bench_function(BenchmarkId::new("dashmap::DashMap", KEYS), |b| {
        b.iter(|| {
            for k in &keys {
                dm.insert(black_box(k).clone(), value.clone());
            }
        });
    });
    group.finish();
}

criterion_group!(benches, get, put);
criterion_main!(benches);
