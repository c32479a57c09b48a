//! [`SqliteStore`]: durable-object storage in SQLite (bundled), the durable default (feature `sqlite`).
//!
//! **One database per namespace**, every object's entries in one table keyed by `(object, key)`: a
//! namespace may hold millions of objects, and a file per object would mean millions of files and file
//! descriptors, each with its own write-ahead log to checkpoint. One file keeps commits, checkpoints and
//! backups whole; an object's rows are contiguous in the primary key, so its reads stay local.
//!
//! The database runs in WAL mode with `synchronous=FULL`: a write is on disk before the call returns, so
//! an acknowledged write survives a crash of the process and of the machine.
//!
//! **Writes go through one writer thread**, which is SQLite's own model (one writer at a time) made
//! explicit: every write call sends its command to the thread and awaits the answer, so no async worker
//! ever blocks on an fsync. The thread takes every command that is waiting, applies each inside a
//! savepoint (one failing command fails alone) and commits them all in one transaction: **group commit
//! across objects**, one fsync for everything queued meanwhile. Reads run on a second connection, which
//! WAL lets proceed while the writer commits, and see every write whose call has returned.
//!
//! An in-memory database (tests) has one connection and applies writes inline.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use edge_core::durable::{ListRange, ObjectId, Storage, WriteBatch, check_write};
use edge_core::{Error, ErrorKind};
use futures_channel::oneshot;
use rusqlite::{Connection, OptionalExtension, params};

use crate::runtime::AlarmRecord;
use std::sync::mpsc;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS entries (
    object TEXT NOT NULL,
    key    TEXT NOT NULL,
    value  BLOB NOT NULL,
    PRIMARY KEY (object, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS alarms (
    object   TEXT PRIMARY KEY,
    at_ms    INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
";

/// Databases written before alarms counted their attempts get the column (an alarm set then has had none).
const ADD_ATTEMPTS: &str = "ALTER TABLE alarms ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0";

fn sqlite_error(e: rusqlite::Error) -> Error {
    use rusqlite::ErrorCode;
    let kind = match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => ErrorKind::Unavailable,
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => ErrorKind::Corrupt,
        Some(ErrorCode::DiskFull) => ErrorKind::CapacityExceeded,
        _ => ErrorKind::Backend,
    };
    Error::with_source(kind, "sqlite", e)
}

/// A namespace's SQLite database. Cheap to clone; clones share the connections and the writer thread,
/// which ends when the last clone (and the last [`SqliteStorage`]) is dropped.
#[derive(Clone)]
pub struct SqliteStore {
    shared: Arc<Shared>,
}

struct Shared {
    /// Reads (and, in memory, writes too).
    reader: Mutex<Connection>,
    writes: Writes,
}

enum Writes {
    /// To the writer thread.
    Thread(mpsc::Sender<Command>),
    /// On `reader`, inline (an in-memory database has only the one connection).
    Inline,
}

/// One write call, for the writer.
struct Command {
    object: Arc<str>,
    change: Change,
    reply: oneshot::Sender<Result<usize, Error>>,
}

enum Change {
    /// Puts and deletes, in order; answers the rows changed.
    Entries(Vec<(String, Option<Bytes>)>),
    /// Every entry and the alarm.
    Clear,
    /// Sets (`Some`) or deletes the alarm; either way its attempt count starts again from 0.
    Alarm(Option<i64>),
    /// Sets the alarm with an attempt count (the runtime's bookkeeping, see [`AlarmRecord`]).
    AlarmRecord(i64, u32),
}

/// Applies one change on the writer's connection (inside the caller's savepoint).
fn apply(connection: &Connection, object: &str, change: &Change) -> rusqlite::Result<usize> {
    let mut changed = 0;
    match change {
        Change::Entries(ops) => {
            for (key, value) in ops {
                changed += match value {
                    Some(value) => connection
                        .prepare_cached(
                            "INSERT OR REPLACE INTO entries (object, key, value) VALUES (?1, ?2, ?3)",
                        )?
                        .execute(params![object, key, value.as_ref()])?,
                    None => connection
                        .prepare_cached("DELETE FROM entries WHERE object = ?1 AND key = ?2")?
                        .execute(params![object, key])?,
                };
            }
        }
        Change::Clear => {
            changed += connection
                .prepare_cached("DELETE FROM entries WHERE object = ?1")?
                .execute(params![object])?;
            connection
                .prepare_cached("DELETE FROM alarms WHERE object = ?1")?
                .execute(params![object])?;
        }
        Change::Alarm(Some(at)) => {
            changed += connection
                .prepare_cached(
                    "INSERT OR REPLACE INTO alarms (object, at_ms, attempts) VALUES (?1, ?2, 0)",
                )?
                .execute(params![object, at])?;
        }
        Change::AlarmRecord(at, attempts) => {
            changed += connection
                .prepare_cached(
                    "INSERT OR REPLACE INTO alarms (object, at_ms, attempts) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![object, at, attempts])?;
        }
        Change::Alarm(None) => {
            changed += connection
                .prepare_cached("DELETE FROM alarms WHERE object = ?1")?
                .execute(params![object])?;
        }
    }
    Ok(changed)
}

/// Applies `commands` in one transaction, each in its own savepoint, and answers each once the
/// transaction is committed (or failed).
fn commit_group(connection: &Connection, commands: Vec<Command>) {
    let outcome = (|| -> rusqlite::Result<Vec<Result<usize, Error>>> {
        connection.execute_batch("BEGIN IMMEDIATE")?;
        let mut results = Vec::with_capacity(commands.len());
        for command in &commands {
            connection.execute_batch("SAVEPOINT command")?;
            match apply(connection, &command.object, &command.change) {
                Ok(changed) => {
                    connection.execute_batch("RELEASE command")?;
                    results.push(Ok(changed));
                }
                Err(e) => {
                    connection.execute_batch("ROLLBACK TO command; RELEASE command")?;
                    results.push(Err(sqlite_error(e)));
                }
            }
        }
        connection.execute_batch("COMMIT")?;
        Ok(results)
    })();
    match outcome {
        Ok(results) => {
            for (command, result) in commands.into_iter().zip(results) {
                let _ = command.reply.send(result);
            }
        }
        Err(e) => {
            // Nothing of the group is committed: roll back whatever is open, fail everyone.
            let _ = connection.execute_batch("ROLLBACK");
            let error = sqlite_error(e);
            for command in commands {
                let _ = command.reply.send(Err(error.clone()));
            }
        }
    }
}

/// The writer thread: waits for a command, takes every other one waiting (up to a bound), commits them
/// together; ends when every sender is gone.
fn writer(connection: Connection, commands: mpsc::Receiver<Command>) {
    const MAX_GROUP: usize = 4096;
    while let Ok(first) = commands.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match commands.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        commit_group(&connection, group);
    }
}

impl SqliteStore {
    /// Opens (or creates) the database at `path`, in WAL mode with `synchronous=FULL`.
    ///
    /// # Errors
    ///
    /// The file cannot be opened or is not a database ([`ErrorKind::Corrupt`]).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let connect = || -> Result<Connection, Error> {
            let connection = Connection::open(path).map_err(sqlite_error)?;
            connection
                .pragma_update(None, "journal_mode", "WAL")
                .map_err(sqlite_error)?;
            prepare(&connection)?;
            Ok(connection)
        };
        let (reader, writer_connection) = (connect()?, connect()?);
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("edge-do-sqlite-writer".into())
            .spawn(move || writer(writer_connection, rx))
            .map_err(|e| {
                Error::with_source(ErrorKind::Unavailable, "spawning the sqlite writer", e)
            })?;
        Ok(Self {
            shared: Arc::new(Shared {
                reader: Mutex::new(reader),
                writes: Writes::Thread(tx),
            }),
        })
    }

    /// A database in memory (for tests: as durable as the process).
    ///
    /// # Errors
    ///
    /// SQLite could not allocate it.
    pub fn in_memory() -> Result<Self, Error> {
        let connection = Connection::open_in_memory().map_err(sqlite_error)?;
        prepare(&connection)?;
        Ok(Self {
            shared: Arc::new(Shared {
                reader: Mutex::new(connection),
                writes: Writes::Inline,
            }),
        })
    }

    /// The storage of object `id`.
    #[must_use]
    pub fn storage(&self, id: &ObjectId) -> SqliteStorage {
        SqliteStorage {
            shared: Arc::clone(&self.shared),
            object: Arc::from(id.as_str()),
        }
    }
}

impl crate::StorageProvider for SqliteStore {
    type Storage = SqliteStorage;

    fn storage(&self, id: &ObjectId) -> SqliteStorage {
        Self::storage(self, id)
    }

    fn due_alarms(&self, now: SystemTime) -> Result<Vec<ObjectId>, Error> {
        let connection = self.shared.read();
        let mut statement = connection
            .prepare_cached("SELECT object FROM alarms WHERE at_ms <= ?1 ORDER BY at_ms")
            .map_err(sqlite_error)?;
        let rows = statement
            .query_map(params![to_millis(now)], |row| row.get::<_, String>(0))
            .map_err(sqlite_error)?;
        let mut due = Vec::new();
        for row in rows {
            let text = row.map_err(sqlite_error)?;
            // A row no id could have written is skipped, not fatal: the others still fire.
            due.extend(ObjectId::parse(&text));
        }
        Ok(due)
    }

    fn next_alarm(&self) -> Result<Option<SystemTime>, Error> {
        let connection = self.shared.read();
        let at: Option<i64> = connection
            .query_row("SELECT MIN(at_ms) FROM alarms", [], |row| row.get(0))
            .map_err(sqlite_error)?;
        Ok(at.map(from_millis))
    }

    async fn alarm_record(&self, id: &ObjectId) -> Result<Option<AlarmRecord>, Error> {
        let connection = self.shared.read();
        let row: Option<(i64, u32)> = connection
            .prepare_cached("SELECT at_ms, attempts FROM alarms WHERE object = ?1")
            .and_then(|mut s| {
                s.query_row(params![id.as_str()], |row| Ok((row.get(0)?, row.get(1)?)))
                    .optional()
            })
            .map_err(sqlite_error)?;
        Ok(row.map(|(at, attempts)| AlarmRecord::new(from_millis(at), attempts)))
    }

    async fn set_alarm_record(&self, id: &ObjectId, record: AlarmRecord) -> Result<(), Error> {
        let change = Change::AlarmRecord(to_millis(record.at), record.attempts);
        let object: Arc<str> = Arc::from(id.as_str());
        self.shared.submit(&object, change).await.map(|_| ())
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

fn prepare(connection: &Connection) -> Result<(), Error> {
    connection
        .pragma_update(None, "synchronous", "FULL")
        .map_err(sqlite_error)?;
    connection
        .busy_timeout(Duration::from_secs(5))
        .map_err(sqlite_error)?;
    connection.execute_batch(SCHEMA).map_err(sqlite_error)?;
    let has_attempts = connection
        .prepare("SELECT 1 FROM pragma_table_info('alarms') WHERE name = 'attempts'")
        .and_then(|mut s| s.exists([]))
        .map_err(sqlite_error)?;
    if !has_attempts {
        connection
            .execute_batch(ADD_ATTEMPTS)
            .map_err(sqlite_error)?;
    }
    Ok(())
}

impl Shared {
    fn read(&self) -> MutexGuard<'_, Connection> {
        self.reader.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `change` to `object` through the writer (or inline), durable when it returns.
    async fn submit(&self, object: &Arc<str>, change: Change) -> Result<usize, Error> {
        let (reply, answer) = oneshot::channel();
        let command = Command {
            object: Arc::clone(object),
            change,
            reply,
        };
        match &self.writes {
            Writes::Inline => commit_group(&self.read(), vec![command]),
            Writes::Thread(sender) => {
                if sender.send(command).is_err() {
                    return Err(writer_gone());
                }
            }
        }
        answer.await.unwrap_or_else(|_| Err(writer_gone()))
    }
}

fn writer_gone() -> Error {
    Error::new(
        ErrorKind::Unavailable,
        "the sqlite writer thread has stopped",
    )
}

/// One object's rows in a [`SqliteStore`].
#[derive(Clone)]
pub struct SqliteStorage {
    shared: Arc<Shared>,
    object: Arc<str>,
}

impl std::fmt::Debug for SqliteStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStorage")
            .field("object", &self.object)
            .finish_non_exhaustive()
    }
}

impl SqliteStorage {
    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.shared.read()
    }
}

fn from_millis(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

fn to_millis(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Storage for SqliteStorage {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, Error> {
        let connection = self.lock();
        connection
            .prepare_cached("SELECT value FROM entries WHERE object = ?1 AND key = ?2")
            .and_then(|mut s| {
                s.query_row(params![&*self.object, key], |row| row.get::<_, Vec<u8>>(0))
                    .optional()
            })
            .map(|v| v.map(Bytes::from))
            .map_err(sqlite_error)
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<(String, Bytes)>, Error> {
        let connection = self.lock();
        let mut statement = connection
            .prepare_cached("SELECT value FROM entries WHERE object = ?1 AND key = ?2")
            .map_err(sqlite_error)?;
        let mut sorted: Vec<&String> = keys.iter().collect();
        sorted.sort();
        sorted.dedup();
        let mut found = Vec::new();
        for key in sorted {
            let value = statement
                .query_row(params![&*self.object, key], |row| row.get::<_, Vec<u8>>(0))
                .optional()
                .map_err(sqlite_error)?;
            if let Some(value) = value {
                found.push((key.clone(), Bytes::from(value)));
            }
        }
        Ok(found)
    }

    async fn put(&self, key: &str, value: Bytes) -> Result<(), Error> {
        check_write(key, Some(&value))?;
        let change = Change::Entries(vec![(key.to_owned(), Some(value))]);
        self.shared.submit(&self.object, change).await.map(|_| ())
    }

    async fn delete(&self, key: &str) -> Result<bool, Error> {
        let change = Change::Entries(vec![(key.to_owned(), None)]);
        Ok(self.shared.submit(&self.object, change).await? > 0)
    }

    async fn write(&self, batch: WriteBatch) -> Result<(), Error> {
        for (key, value) in &batch.ops {
            check_write(key, value.as_ref())?;
        }
        if batch.ops.is_empty() {
            return Ok(());
        }
        // One savepoint in the writer's transaction: the batch is applied whole or not at all.
        let change = Change::Entries(batch.ops);
        self.shared.submit(&self.object, change).await.map(|_| ())
    }

    async fn list(&self, range: ListRange) -> Result<Vec<(String, Bytes)>, Error> {
        // The index narrows the scan to the lower bound (start or prefix, whichever is greater) and the
        // end; the prefix itself is checked on each row, so any key text works.
        let lower = match (&range.start, &range.prefix) {
            (Some(s), Some(p)) => Some(s.max(p).clone()),
            (s, p) => s.clone().or_else(|| p.clone()),
        };
        let order = if range.reverse { "DESC" } else { "ASC" };
        let sql = format!(
            "SELECT key, value FROM entries WHERE object = ?1 AND key >= ?2 AND (?3 IS NULL OR key < ?3) \
             ORDER BY key {order}"
        );
        let connection = self.lock();
        let mut statement = connection.prepare_cached(&sql).map_err(sqlite_error)?;
        let rows = statement
            .query_map(
                params![
                    &*self.object,
                    lower.as_deref().unwrap_or(""),
                    range.end.as_deref()
                ],
                |row| Ok((row.get::<_, String>(0)?, row.get::<_, Vec<u8>>(1)?)),
            )
            .map_err(sqlite_error)?;
        let limit = range.limit.unwrap_or(usize::MAX);
        let mut out = Vec::new();
        for row in rows {
            if out.len() >= limit {
                break;
            }
            let (key, value) = row.map_err(sqlite_error)?;
            if range.contains(&key) {
                out.push((key, Bytes::from(value)));
            } else if !range.reverse && range.prefix.as_deref().is_some_and(|p| key.as_str() > p) {
                // Ascending and past the prefix: nothing further can match.
                break;
            }
        }
        Ok(out)
    }

    async fn delete_all(&self) -> Result<(), Error> {
        self.shared
            .submit(&self.object, Change::Clear)
            .await
            .map(|_| ())
    }

    async fn get_alarm(&self) -> Result<Option<SystemTime>, Error> {
        let connection = self.lock();
        let at = connection
            .prepare_cached("SELECT at_ms FROM alarms WHERE object = ?1")
            .and_then(|mut s| {
                s.query_row(params![&*self.object], |row| row.get::<_, i64>(0))
                    .optional()
            })
            .map_err(sqlite_error)?;
        Ok(at.map(from_millis))
    }

    async fn set_alarm(&self, at: SystemTime) -> Result<(), Error> {
        let change = Change::Alarm(Some(to_millis(at)));
        self.shared.submit(&self.object, change).await.map(|_| ())
    }

    async fn delete_alarm(&self) -> Result<(), Error> {
        let change = Change::Alarm(None);
        self.shared.submit(&self.object, change).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(name: &str) -> ObjectId {
        ObjectId::from_name(name)
    }

    #[tokio::test]
    async fn sqlite_storage_passes_the_storage_kit() {
        edge_core::testing::durable::run_all(|| {
            SqliteStore::in_memory()
                .map(|store| store.storage(&object("kit")))
                .unwrap_or_else(|e| panic!("in-memory sqlite: {e}"))
        })
        .await;
    }

    #[tokio::test]
    async fn objects_are_isolated_and_writes_survive_reopening() {
        let dir = std::env::temp_dir().join(format!("edge-do-sqlite-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("namespace.db");
        let _ = std::fs::remove_file(&path);
        {
            let store = SqliteStore::open(&path).unwrap();
            let (a, b) = (store.storage(&object("a")), store.storage(&object("b")));
            a.put("k", Bytes::from_static(b"from a")).await.unwrap();
            b.put("k", Bytes::from_static(b"from b")).await.unwrap();
            a.set_alarm(UNIX_EPOCH + Duration::from_secs(2_000_000_000))
                .await
                .unwrap();
            b.delete_all().await.unwrap();
            assert_eq!(a.get("k").await.unwrap().unwrap(), "from a");
        }
        let store = SqliteStore::open(&path).unwrap();
        let (a, b) = (store.storage(&object("a")), store.storage(&object("b")));
        assert_eq!(
            a.get("k").await.unwrap().unwrap(),
            "from a",
            "durable across reopening"
        );
        assert_eq!(b.get("k").await.unwrap(), None);
        assert_eq!(
            a.get_alarm().await.unwrap(),
            Some(UNIX_EPOCH + Duration::from_secs(2_000_000_000))
        );
        std::fs::write(dir.join("junk.db"), b"this is not a database, not at all").unwrap();
        let junk = SqliteStore::open(dir.join("junk.db"));
        assert_eq!(junk.err().map(|e| e.kind()), Some(ErrorKind::Corrupt));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
