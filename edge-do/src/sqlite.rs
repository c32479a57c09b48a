//! [`SqliteStore`]: durable-object storage in SQLite (bundled), the durable default (feature `sqlite`).
//!
//! **One database per namespace**, every object's entries in one table keyed by `(object, key)`: a
//! namespace may hold millions of objects, and a file per object would mean millions of files and file
//! descriptors, each with its own write-ahead log to checkpoint. One file keeps commits, checkpoints and
//! backups whole; an object's rows are contiguous in the primary key, so its reads stay local.
//!
//! The database runs in WAL mode with `synchronous=FULL`: a write is on disk before the call returns, so
//! an acknowledged write survives a crash of the process and of the machine. Calls are synchronous SQLite
//! operations (microseconds, plus the fsync at commit) made under one connection lock; batching the writes
//! of a request into one commit is the runtime's job (the durable-objects issue).

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use edge_core::durable::{ListRange, ObjectId, Storage, WriteBatch, check_write};
use edge_core::{Error, ErrorKind};
use rusqlite::{Connection, OptionalExtension, params};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS entries (
    object TEXT NOT NULL,
    key    TEXT NOT NULL,
    value  BLOB NOT NULL,
    PRIMARY KEY (object, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS alarms (
    object TEXT PRIMARY KEY,
    at_ms  INTEGER NOT NULL
) WITHOUT ROWID;
";

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

/// A namespace's SQLite database. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct SqliteStore {
    connection: Arc<Mutex<Connection>>,
}

impl SqliteStore {
    /// Opens (or creates) the database at `path`, in WAL mode with `synchronous=FULL`.
    ///
    /// # Errors
    ///
    /// The file cannot be opened or is not a database ([`ErrorKind::Corrupt`]).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        let connection = Connection::open(path).map_err(sqlite_error)?;
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(sqlite_error)?;
        Self::prepare(connection)
    }

    /// A database in memory (for tests: as durable as the process).
    ///
    /// # Errors
    ///
    /// SQLite could not allocate it.
    pub fn in_memory() -> Result<Self, Error> {
        Self::prepare(Connection::open_in_memory().map_err(sqlite_error)?)
    }

    fn prepare(connection: Connection) -> Result<Self, Error> {
        connection
            .pragma_update(None, "synchronous", "FULL")
            .map_err(sqlite_error)?;
        connection
            .busy_timeout(Duration::from_secs(5))
            .map_err(sqlite_error)?;
        connection.execute_batch(SCHEMA).map_err(sqlite_error)?;
        Ok(Self {
            connection: Arc::new(Mutex::new(connection)),
        })
    }

    /// The storage of object `id`.
    #[must_use]
    pub fn storage(&self, id: &ObjectId) -> SqliteStorage {
        SqliteStorage {
            connection: Arc::clone(&self.connection),
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
        let connection = self
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
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
        let connection = self
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let at: Option<i64> = connection
            .query_row("SELECT MIN(at_ms) FROM alarms", [], |row| row.get(0))
            .map_err(sqlite_error)?;
        Ok(at.map(from_millis))
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

/// One object's rows in a [`SqliteStore`].
#[derive(Clone)]
pub struct SqliteStorage {
    connection: Arc<Mutex<Connection>>,
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
        self.connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
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
        let connection = self.lock();
        connection
            .prepare_cached(
                "INSERT OR REPLACE INTO entries (object, key, value) VALUES (?1, ?2, ?3)",
            )
            .and_then(|mut s| s.execute(params![&*self.object, key, value.as_ref()]))
            .map(|_| ())
            .map_err(sqlite_error)
    }

    async fn delete(&self, key: &str) -> Result<bool, Error> {
        let connection = self.lock();
        connection
            .prepare_cached("DELETE FROM entries WHERE object = ?1 AND key = ?2")
            .and_then(|mut s| s.execute(params![&*self.object, key]))
            .map(|n| n > 0)
            .map_err(sqlite_error)
    }

    async fn write(&self, batch: WriteBatch) -> Result<(), Error> {
        for (key, value) in &batch.ops {
            check_write(key, value.as_ref())?;
        }
        let mut connection = self.lock();
        let transaction = connection.transaction().map_err(sqlite_error)?;
        for (key, value) in &batch.ops {
            let result = match value {
                Some(value) => transaction.execute(
                    "INSERT OR REPLACE INTO entries (object, key, value) VALUES (?1, ?2, ?3)",
                    params![&*self.object, key, value.as_ref()],
                ),
                None => transaction.execute(
                    "DELETE FROM entries WHERE object = ?1 AND key = ?2",
                    params![&*self.object, key],
                ),
            };
            // Dropping the transaction on error rolls it back: nothing of the batch is applied.
            result.map_err(sqlite_error)?;
        }
        transaction.commit().map_err(sqlite_error)
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
        let mut connection = self.lock();
        let transaction = connection.transaction().map_err(sqlite_error)?;
        transaction
            .execute(
                "DELETE FROM entries WHERE object = ?1",
                params![&*self.object],
            )
            .map_err(sqlite_error)?;
        transaction
            .execute(
                "DELETE FROM alarms WHERE object = ?1",
                params![&*self.object],
            )
            .map_err(sqlite_error)?;
        transaction.commit().map_err(sqlite_error)
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
        let connection = self.lock();
        connection
            .prepare_cached("INSERT OR REPLACE INTO alarms (object, at_ms) VALUES (?1, ?2)")
            .and_then(|mut s| s.execute(params![&*self.object, to_millis(at)]))
            .map(|_| ())
            .map_err(sqlite_error)
    }

    async fn delete_alarm(&self) -> Result<(), Error> {
        let connection = self.lock();
        connection
            .prepare_cached("DELETE FROM alarms WHERE object = ?1")
            .and_then(|mut s| s.execute(params![&*self.object]))
            .map(|_| ())
            .map_err(sqlite_error)
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
