//! A write acknowledged to a client is never lost: a child process runs objects on `SqliteStore`
//! through the runtime (per-turn buffers, group commit, output gate) with 16 concurrent clients, prints
//! each response as it arrives, is killed with SIGKILL mid-stream, and every acknowledged write is
//! found after the database is opened again.
//!
//! An alarm is not lost either when the process dies while its handler runs: a second child fires an
//! alarm whose handler never returns, is killed inside it, and the alarm fires again after the restart,
//! told it is a retry.
//!
//! This file is its own harness (`harness = false`): run plainly it is the check; run with
//! `EDGE_DO_CRASH_CHILD=<database>` it is the child, writing until killed; with
//! `EDGE_DO_ALARM_CHILD=<database>` it is the child killed inside `alarm()`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    missing_docs
)]

#[cfg(all(feature = "sqlite", unix))]
mod crash {
    use std::collections::BTreeSet;
    use std::io::{BufRead, BufReader, Write};
    use std::path::Path;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use edge_core::durable::{DurableObject, ObjectId, ObjectNamespace, Storage};
    use edge_core::{Body, Error};
    use edge_do::{Namespace, ObjectState, ObjectStorage, SqliteStorage, SqliteStore};
    use http::{Request, Response};

    pub(crate) const CHILD_ENV: &str = "EDGE_DO_CRASH_CHILD";
    const OBJECTS: usize = 4;
    const CLIENTS_PER_OBJECT: usize = 4;

    /// Stores the request body under the key named by the path.
    struct Writer(ObjectStorage<SqliteStorage>);

    impl DurableObject for Writer {
        async fn fetch(&self, request: Request<Body>) -> Result<Response<Body>, Error> {
            let key = request.uri().path().trim_start_matches('/').to_owned();
            let value = request.into_body().collect(1024).await?;
            self.0.put(&key, value).await?;
            Ok(Response::new(Body::empty()))
        }
    }

    /// The child: clients write through the runtime (group commit, output gate) to several objects
    /// and print `ack <object> <key>` as each response arrives, until killed.
    pub(crate) fn child(path: &Path) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        runtime.block_on(async {
            let objects =
                Namespace::new(SqliteStore::open(path).unwrap(), |state: ObjectState<_>| {
                    Writer(state.storage)
                });
            let clients = (0..OBJECTS * CLIENTS_PER_OBJECT).map(|client| {
                let objects = objects.clone();
                tokio::spawn(async move {
                    let object = client % OBJECTS;
                    let id = objects.id_from_name(&format!("crash-{object}"));
                    for n in 0u64.. {
                        let key = format!("c{client}-{n}");
                        let request = Request::builder()
                            .uri(format!("/{key}"))
                            .body(Body::from(n.to_string()))
                            .unwrap();
                        objects.fetch(&id, request).await.unwrap();
                        let stdout = std::io::stdout();
                        let mut out = stdout.lock();
                        writeln!(out, "ack {object} {key}").unwrap();
                        out.flush().unwrap();
                    }
                })
            });
            futures::future::join_all(clients).await;
        });
    }

    fn ack(line: &str) -> Option<(usize, String)> {
        let mut words = line.strip_prefix("ack ")?.split(' ');
        Some((words.next()?.parse().ok()?, words.next()?.to_owned()))
    }

    /// The check: start the child, kill it mid-stream, find every acknowledged write.
    pub(crate) fn acknowledged_writes_survive_sigkill() {
        let dir = std::env::temp_dir().join(format!("edge-do-crash-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("objects.db");
        let _ = std::fs::remove_file(&path);
        // Create the schema first, so the child's first write does not race its creation.
        drop(SqliteStore::open(&path).unwrap());

        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(CHILD_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut acked = BTreeSet::new();
        let started = Instant::now();
        // Let it write for a while (2,000 acknowledged writes, or 3 s), then kill it mid-stream.
        for line in lines.by_ref().map_while(Result::ok) {
            acked.extend(ack(&line));
            if acked.len() >= 2_000 || started.elapsed() > Duration::from_secs(3) {
                break;
            }
        }
        child.kill().unwrap(); // SIGKILL on Unix: no destructors, no flushes.
        // Acknowledgements already in the pipe when it died count too.
        for line in lines.map_while(Result::ok) {
            acked.extend(ack(&line));
        }
        let _ = child.wait();
        assert!(
            !acked.is_empty(),
            "the child acknowledged at least one write"
        );

        let store = SqliteStore::open(&path).unwrap();
        futures::executor::block_on(async {
            for (object, key) in &acked {
                let storage = store.storage(&ObjectId::from_name(&format!("crash-{object}")));
                let value = storage.get(key).await.unwrap();
                let n = key.rsplit('-').next().unwrap();
                assert_eq!(
                    value.as_deref(),
                    Some(n.as_bytes()),
                    "acknowledged write {key} to object {object} lost"
                );
            }
        });
        let _ = std::fs::remove_dir_all(&dir);
        eprintln!(
            "crash: all {} acknowledged writes (16 clients, 4 objects) survived SIGKILL",
            acked.len()
        );
    }
}

#[cfg(all(feature = "sqlite", unix))]
mod alarm_crash {
    use std::io::{BufRead, BufReader, Write};
    use std::path::Path;
    use std::process::{Command, Stdio};
    use std::time::{Duration, UNIX_EPOCH};

    use bytes::Bytes;
    use edge_core::durable::{AlarmInfo, DurableObject, ObjectId, Storage};
    use edge_core::{Body, Error, ManualClock};
    use edge_do::{
        AlarmRecord, Namespace, ObjectState, ObjectStorage, SqliteStorage, SqliteStore,
        StorageProvider,
    };
    use http::{Request, Response};

    pub(crate) const CHILD_ENV: &str = "EDGE_DO_ALARM_CHILD";

    /// An object whose alarm handler either never returns (in the child, after saying so on stdout)
    /// or records the retry count it was told.
    struct Sleeper {
        storage: ObjectStorage<SqliteStorage>,
        hang: bool,
    }

    impl DurableObject for Sleeper {
        async fn fetch(&self, _request: Request<Body>) -> Result<Response<Body>, Error> {
            Ok(Response::new(Body::empty()))
        }

        async fn alarm(&self, info: AlarmInfo) -> Result<(), Error> {
            self.storage
                .put("told", Bytes::from(info.retry_count.to_string()))
                .await?;
            if self.hang {
                {
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "alarm running, retry {}", info.retry_count).unwrap();
                    out.flush().unwrap();
                }
                std::future::pending::<()>().await;
            }
            Ok(())
        }
    }

    fn sleepers(store: SqliteStore, hang: bool) -> Namespace<Sleeper, SqliteStore> {
        let clock = ManualClock::new(); // far past the alarm
        clock.advance(Duration::from_secs(2_000_000_000));
        Namespace::new(store, move |state: ObjectState<_>| Sleeper {
            storage: state.storage,
            hang,
        })
        .with_clock(clock)
    }

    fn sleeper() -> ObjectId {
        ObjectId::from_name("sleeper")
    }

    /// The child: fires the due alarm, whose handler hangs until the process is killed.
    pub(crate) fn child(path: &Path) {
        let store = SqliteStore::open(path).unwrap();
        futures::executor::block_on(async {
            let _ = sleepers(store, true).run_due_alarms().await;
        });
    }

    /// The check: set an alarm, kill the child inside its handler, find it set and counted, fire it.
    pub(crate) fn an_alarm_survives_sigkill_inside_its_handler() {
        let dir = std::env::temp_dir().join(format!("edge-do-alarm-crash-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("objects.db");
        let _ = std::fs::remove_file(&path);
        let at = UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        futures::executor::block_on(async {
            let store = SqliteStore::open(&path).unwrap();
            store.storage(&sleeper()).set_alarm(at).await.unwrap();
        });

        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(CHILD_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let said = lines.next().unwrap().unwrap();
        assert_eq!(said, "alarm running, retry 0");
        child.kill().unwrap(); // SIGKILL, inside alarm()
        let _ = child.wait();

        let store = SqliteStore::open(&path).unwrap();
        futures::executor::block_on(async {
            assert_eq!(
                store.alarm_record(&sleeper()).await.unwrap(),
                Some(AlarmRecord::new(at, 1)),
                "the alarm is still set, its interrupted attempt counted"
            );
            let run = sleepers(store.clone(), false)
                .run_due_alarms()
                .await
                .unwrap();
            assert_eq!(run.fired, 1, "it fires again after the restart");
            let storage = store.storage(&sleeper());
            assert_eq!(storage.get("told").await.unwrap().unwrap(), "1");
            assert_eq!(
                storage.get_alarm().await.unwrap(),
                None,
                "deleted once it succeeded"
            );
        });
        let _ = std::fs::remove_dir_all(&dir);
        eprintln!(
            "crash: an alarm killed inside its handler fired again after the restart, as retry 1"
        );
    }
}

fn main() {
    #[cfg(all(feature = "sqlite", unix))]
    {
        if let Some(path) = std::env::var_os(crash::CHILD_ENV) {
            crash::child(std::path::Path::new(&path));
        } else if let Some(path) = std::env::var_os(alarm_crash::CHILD_ENV) {
            alarm_crash::child(std::path::Path::new(&path));
        } else {
            crash::acknowledged_writes_survive_sigkill();
            alarm_crash::an_alarm_survives_sigkill_inside_its_handler();
        }
    }
}
