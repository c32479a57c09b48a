//! Durable objects on SQLite (WAL, `synchronous=FULL`, a real file): requests per second to one object
//! (read-only and write-heavy) and to many objects, through the whole runtime (input gate, per-turn
//! buffer, group commit, output gate); next to the naive design, one rusqlite autocommit insert per
//! request on the same settings.
//!
//! Each iteration is one request; criterion's throughput line reads as requests per second.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use edge_core::durable::{DurableObject, ObjectId, ObjectNamespace, Storage};
use edge_core::{Body, Error};
use edge_do::{Namespace, ObjectState, ObjectStorage, SqliteStorage, SqliteStore};
use http::{Method, Request, Response};

/// `POST` adds one to its counter and answers the total; `GET` answers it.
struct Counter(ObjectStorage<SqliteStorage>);

impl DurableObject for Counter {
    async fn fetch(&self, request: Request<Body>) -> Result<Response<Body>, Error> {
        let n = match self.0.get("n").await? {
            Some(v) => std::str::from_utf8(&v)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0u64),
            None => 0,
        };
        if request.method() == Method::POST {
            self.0.put("n", Bytes::from((n + 1).to_string())).await?;
        }
        Ok(Response::new(Body::from((n + 1).to_string())))
    }
}

type Counters = Namespace<Counter, SqliteStore>;

fn database(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("edge-bench-durable-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    path
}

/// Sends `iters` requests from `clients` concurrent clients, spread over `ids`; the wall time.
fn drive(
    runtime: &tokio::runtime::Runtime,
    counters: &Counters,
    ids: &[ObjectId],
    clients: u64,
    iters: u64,
    method: &Method,
) -> Duration {
    runtime.block_on(async {
        let start = Instant::now();
        let tasks: Vec<_> = (0..clients)
            .map(|client| {
                let (counters, ids, method) = (counters.clone(), ids.to_vec(), method.clone());
                let share = iters / clients + u64::from(client < iters % clients);
                tokio::spawn(async move {
                    for i in 0..share {
                        let id = &ids[((client + i * clients) % ids.len() as u64) as usize];
                        let mut request = Request::new(Body::empty());
                        *request.method_mut() = method.clone();
                        counters.fetch(id, request).await.unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        start.elapsed()
    })
}

fn durable(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let store = SqliteStore::open(database("objects.db")).unwrap();
    let counters: Counters = Namespace::new(store, |state: ObjectState<_>| Counter(state.storage));
    let one = [ObjectId::from_name("hot")];
    let many: Vec<ObjectId> = (0..1_000)
        .map(|i| ObjectId::from_name(&format!("counter-{i}")))
        .collect();

    let mut group = c.benchmark_group("durable/requests");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("one object, read-only, 64 clients", |b| {
        b.iter_custom(|iters| drive(&runtime, &counters, &one, 64, iters, &Method::GET))
    });
    group.bench_function("one object, write-heavy, 64 clients", |b| {
        b.iter_custom(|iters| drive(&runtime, &counters, &one, 64, iters, &Method::POST))
    });
    group.bench_function("one object, write-heavy, 1 client", |b| {
        b.iter_custom(|iters| drive(&runtime, &counters, &one, 1, iters, &Method::POST))
    });
    group.bench_function("1,000 objects, write-heavy, 64 clients", |b| {
        b.iter_custom(|iters| drive(&runtime, &counters, &many, 64, iters, &Method::POST))
    });

    // The naive design: each request one autocommit statement (one fsync), same pragmas.
    let connection = rusqlite::Connection::open(database("autocommit.db")).unwrap();
    connection
        .pragma_update(None, "journal_mode", "WAL")
        .unwrap();
    connection
        .pragma_update(None, "synchronous", "FULL")
        .unwrap();
    connection
        .execute_batch(
            "CREATE TABLE IF NOT EXISTS entries (object TEXT, key TEXT, value BLOB, \
             PRIMARY KEY (object, key)) WITHOUT ROWID",
        )
        .unwrap();
    let mut n = 0u64;
    group.bench_function("rusqlite autocommit insert per request", |b| {
        b.iter(|| {
            n += 1;
            connection
                .prepare_cached("INSERT OR REPLACE INTO entries VALUES ('hot', 'n', ?1)")
                .unwrap()
                .execute([n.to_string()])
                .unwrap();
        })
    });
    group.finish();
    let _ = std::fs::remove_dir_all(
        std::env::temp_dir().join(format!("edge-bench-durable-{}", std::process::id())),
    );
}

criterion_group!(benches, durable);
criterion_main!(benches);
