//! Per-object linearizability under concurrent clients: histories of real calls to objects on SQLite
//! storage (group commit, output gate and all) are checked against a sequential counter and register.
//! First, the checker is shown to reject a history recorded from a deliberately racy counter.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use edge_core::durable::{DurableObject, ObjectNamespace, Storage};
use edge_core::{Body, Error};
use edge_do::linearizability::{Add, Call, Counter, Register, RegisterOp, Verdict, check};
use edge_do::{MemoryStorage, Namespace, ObjectState, ObjectStorage, SqliteStorage, SqliteStore};
use http::{Request, Response};

fn number(bytes: Option<Bytes>) -> u64 {
    bytes.map_or(0, |b| String::from_utf8_lossy(&b).parse().unwrap())
}

/// `POST n` adds n to `total` and answers the new total; `PUT v` sets `reg`; `GET` answers `reg`.
struct Cell(ObjectStorage<SqliteStorage>);

impl DurableObject for Cell {
    async fn fetch(&self, request: Request<Body>) -> Result<Response<Body>, Error> {
        let method = request.method().clone();
        let body = request.into_body().collect(64).await?;
        let arg: u64 = String::from_utf8_lossy(&body).parse().unwrap_or(0);
        let answer = match method {
            http::Method::POST => {
                let total = number(self.0.get("total").await?) + arg;
                tokio::task::yield_now().await; // invite interleaving: the input gate must stop it
                self.0.put("total", Bytes::from(total.to_string())).await?;
                total.to_string()
            }
            http::Method::PUT => {
                self.0.put("reg", Bytes::from(arg.to_string())).await?;
                String::new()
            }
            _ => self.0.get("reg").await?.map_or_else(
                || "-".to_owned(),
                |v| String::from_utf8_lossy(&v).into_owned(),
            ),
        };
        Ok(Response::new(Body::from(answer)))
    }
}

/// A tiny deterministic generator, so a failure replays.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }
}

#[tokio::test(flavor = "current_thread")]
async fn the_checker_rejects_a_history_with_lost_updates() {
    // Read-modify-write on shared storage with no input gate: two clients interleave.
    let storage = MemoryStorage::new();
    let start = Instant::now();
    let history = Arc::new(Mutex::new(Vec::new()));
    let clients = (0..2).map(|client| {
        let (storage, history) = (storage.clone(), Arc::clone(&history));
        async move {
            let invoked = start.elapsed().as_nanos() as u64;
            let total = number(storage.get("total").await.unwrap()) + 1;
            tokio::task::yield_now().await;
            storage
                .put("total", Bytes::from(total.to_string()))
                .await
                .unwrap();
            let returned = start.elapsed().as_nanos() as u64;
            history
                .lock()
                .unwrap()
                .push(Call::new(client, invoked, returned, Add(1), total));
        }
    });
    futures::future::join_all(clients).await;
    let history = history.lock().unwrap().clone();
    assert_eq!(
        history.iter().map(|c| c.output).collect::<Vec<_>>(),
        [1, 1],
        "the race happened"
    );
    assert_eq!(check(Counter(0), &history), Verdict::NotLinearizable);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_clients_see_linearizable_objects_on_sqlite() {
    let dir = std::env::temp_dir().join(format!("edge-do-linear-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("objects.db");
    let _ = std::fs::remove_file(&path);
    let objects = Namespace::new(
        SqliteStore::open(&path).unwrap(),
        |state: ObjectState<_>| Cell(state.storage),
    );
    let start = Instant::now();
    const OBJECTS: usize = 3;
    const CLIENTS: usize = 8;
    const CALLS: usize = 60;

    type Counted = Vec<Call<Add, u64>>;
    type Registered = Vec<Call<RegisterOp, Option<u64>>>;
    let counters: Arc<Mutex<Vec<Counted>>> = Arc::new(Mutex::new(vec![Vec::new(); OBJECTS]));
    let registers: Arc<Mutex<Vec<Registered>>> = Arc::new(Mutex::new(vec![Vec::new(); OBJECTS]));
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let (objects, counters, registers) = (
                objects.clone(),
                Arc::clone(&counters),
                Arc::clone(&registers),
            );
            tokio::spawn(async move {
                let mut rng = Lcg(client as u64 + 1);
                for _ in 0..CALLS {
                    let object = rng.next(OBJECTS as u64) as usize;
                    let id = objects.id_from_name(&format!("cell-{object}"));
                    let (method, arg) = match rng.next(4) {
                        0 => (http::Method::POST, rng.next(3)), // add 0 (a read), 1 or 2
                        1 => (http::Method::POST, 1),
                        2 => (http::Method::PUT, rng.next(1000)),
                        _ => (http::Method::GET, 0),
                    };
                    let mut request = Request::new(Body::from(arg.to_string()));
                    *request.method_mut() = method.clone();
                    let invoked = start.elapsed().as_nanos() as u64;
                    let response = objects.fetch(&id, request).await.unwrap();
                    let body = response.into_body().collect(64).await.unwrap();
                    let returned = start.elapsed().as_nanos() as u64;
                    let answer = String::from_utf8_lossy(&body).into_owned();
                    match method {
                        http::Method::POST => counters.lock().unwrap()[object].push(Call::new(
                            client,
                            invoked,
                            returned,
                            Add(arg),
                            answer.parse().unwrap(),
                        )),
                        http::Method::PUT => registers.lock().unwrap()[object].push(Call::new(
                            client,
                            invoked,
                            returned,
                            RegisterOp::Write(arg),
                            None,
                        )),
                        _ => registers.lock().unwrap()[object].push(Call::new(
                            client,
                            invoked,
                            returned,
                            RegisterOp::Read,
                            answer.parse().ok(),
                        )),
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let counters = counters.lock().unwrap().clone();
    let registers = registers.lock().unwrap().clone();
    let mut calls = 0;
    for object in 0..OBJECTS {
        calls += counters[object].len() + registers[object].len();
        let verdict = check(Counter(0), &counters[object]);
        assert!(
            matches!(verdict, Verdict::Linearizable(_)),
            "counter {object}: {verdict:?}"
        );
        let verdict = check(Register(None), &registers[object]);
        assert!(
            matches!(verdict, Verdict::Linearizable(_)),
            "register {object}: {verdict:?}"
        );
    }
    assert_eq!(calls, CLIENTS * CALLS);
    let _ = std::fs::remove_dir_all(&dir);
}
