//! A write acknowledged by `SqliteStore` is never lost: a child process writes and acknowledges keys
//! as fast as it can, is killed with SIGKILL mid-stream, and every key it acknowledged is found after
//! the database is opened again.
//!
//! This file is its own harness (`harness = false`): run plainly it is the check; run with
//! `EDGE_DO_CRASH_CHILD=<database>` it is the child, writing until killed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    missing_docs
)]

#[cfg(all(feature = "sqlite", unix))]
mod crash {
    use std::io::{BufRead, BufReader, Write};
    use std::path::Path;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use bytes::Bytes;
    use edge_core::durable::{ObjectId, Storage};
    use edge_do::SqliteStore;

    pub(crate) const CHILD_ENV: &str = "EDGE_DO_CRASH_CHILD";

    /// The child: put `key-N` for N = 0, 1, 2 … and print `ack N` after each put returns.
    pub(crate) fn child(path: &Path) {
        let store = SqliteStore::open(path).unwrap();
        let storage = store.storage(&ObjectId::from_name("crash"));
        let stdout = std::io::stdout();
        futures::executor::block_on(async {
            for n in 0u64.. {
                storage
                    .put(&format!("key-{n}"), Bytes::from(n.to_string()))
                    .await
                    .unwrap();
                let mut out = stdout.lock();
                writeln!(out, "ack {n}").unwrap();
                out.flush().unwrap();
            }
        });
    }

    fn ack(line: &str) -> Option<u64> {
        line.strip_prefix("ack ")?.parse().ok()
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
        let mut acked = None;
        let started = Instant::now();
        // Let it write for a while (200 acknowledged puts, or 3 s), then kill it mid-stream.
        for line in lines.by_ref().map_while(Result::ok) {
            acked = ack(&line).or(acked);
            if acked.is_some_and(|n| n >= 200) || started.elapsed() > Duration::from_secs(3) {
                break;
            }
        }
        child.kill().unwrap(); // SIGKILL on Unix: no destructors, no flushes.
        // Acknowledgements already in the pipe when it died count too.
        for line in lines.map_while(Result::ok) {
            acked = ack(&line).or(acked);
        }
        let _ = child.wait();
        let last = acked.expect("the child acknowledged at least one write");

        let store = SqliteStore::open(&path).unwrap();
        let storage = store.storage(&ObjectId::from_name("crash"));
        futures::executor::block_on(async {
            for n in 0..=last {
                let value = storage.get(&format!("key-{n}")).await.unwrap();
                assert_eq!(
                    value.as_deref(),
                    Some(n.to_string().as_bytes()),
                    "acknowledged write {n} of 0..={last} lost"
                );
            }
        });
        let _ = std::fs::remove_dir_all(&dir);
        eprintln!(
            "crash: all {} acknowledged writes survived SIGKILL",
            last + 1
        );
    }
}

fn main() {
    #[cfg(all(feature = "sqlite", unix))]
    match std::env::var_os(crash::CHILD_ENV) {
        Some(path) => crash::child(std::path::Path::new(&path)),
        None => crash::acknowledged_writes_survive_sigkill(),
    }
}
