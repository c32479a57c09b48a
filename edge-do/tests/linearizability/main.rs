//! Per-object linearizability under concurrent clients: histories of real calls to objects on SQLite
//! storage (group commit, output gate and all) are checked against a sequential counter and register.
//! First, the checker is shown to reject a history recorded from a deliberately racy counter.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use edge_core::durable::{DurableObject, ObjectNamespace, Storage};
use edge_core::{Body, Error};
use edge_do::linearizability::{
    Add, Call, Counter, Register, RegisterOp, Verdict, check, check_partitioned,
};
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

/// A long history over many keys, as the fault run's porcupine checks record them: 50 clients, 8 keys,
/// 20,000 calls with overlapping intervals, generated from a real register map (each call takes effect
/// at a random instant inside its interval). Checked key by key it is linearizable; one stale read planted
/// in it is caught. The fingerprinted memo keeps the search's memory to its visited states.
#[test]
fn long_many_key_histories_are_checked_key_by_key() {
    type Entry = Call<(u8, RegisterOp), Option<u64>>;
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut random = move |below: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % below
    };
    let mut effects: Vec<(u64, usize)> = Vec::new(); // (instant it takes effect, index)
    let mut history: Vec<Entry> = Vec::new();
    let mut clock_of = [0u64; 50];
    for n in 0..20_000usize {
        let client = n % 50;
        let invoked = clock_of[client] + random(5);
        let returned = invoked + 1 + random(40);
        clock_of[client] = returned + 1;
        let key = u8::try_from(random(8)).unwrap();
        let op = if random(2) == 0 {
            RegisterOp::Write(u64::try_from(n).unwrap())
        } else {
            RegisterOp::Read
        };
        effects.push((invoked + random(returned - invoked + 1), n));
        history.push(Call::new(client, invoked, returned, (key, op), None));
    }
    // Apply the calls at their instants to get what each read saw.
    effects.sort_unstable();
    let mut registers = [None; 8];
    for &(_, index) in &effects {
        let (key, op) = history[index].input;
        match op {
            RegisterOp::Write(value) => registers[usize::from(key)] = Some(value),
            RegisterOp::Read => history[index].output = registers[usize::from(key)],
            _ => unreachable!(),
        }
    }
    let by_key = |call: &Entry| call.input.0;
    let per_key = |call: &Entry| {
        Call::new(
            call.client,
            call.invoked,
            call.returned,
            call.input.1,
            call.output,
        )
    };
    let started = Instant::now();
    let verdict = check_partitioned(Register::default(), &history, by_key, per_key);
    let Verdict::Linearizable(witness) = verdict else {
        panic!("a real register map's history was rejected: {verdict:?}");
    };
    assert_eq!(witness.len(), history.len());
    eprintln!(
        "linearizability: 20,000 calls by 50 clients on 8 keys checked in {:?}",
        started.elapsed()
    );

    // A read that returns a value overwritten long before it began: stale.
    let last_write = history
        .iter()
        .rposition(|call| call.input.0 == 3 && matches!(call.input.1, RegisterOp::Write(_)))
        .unwrap();
    let first_write = history
        .iter()
        .position(|call| call.input.0 == 3 && matches!(call.input.1, RegisterOp::Write(_)))
        .unwrap();
    let RegisterOp::Write(stale) = history[first_write].input.1 else {
        unreachable!()
    };
    let after = history[last_write].returned + 1_000;
    history.push(Call::new(
        0,
        after,
        after + 1,
        (3, RegisterOp::Read),
        Some(stale),
    ));
    assert_eq!(
        check_partitioned(Register::default(), &history, by_key, per_key),
        Verdict::NotLinearizable
    );
}
