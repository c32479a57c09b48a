//! [`ObjectStorage`]: the storage an object sees inside the runtime, which gives a turn's writes their
//! Cloudflare semantics on top of any [`Storage`]:
//!
//! - **Writes are buffered per turn.** `put`, `delete` and `write` land in an in-memory overlay at once
//!   (later reads in the same object see them) and are committed to the backing storage together when
//!   the turn ends, as one [`WriteBatch`].
//! - **Group commit.** The input gate opens as soon as a handler returns, so the next request can run
//!   while the previous turn's batch is still being committed; batches that pile up meanwhile are merged
//!   into the next commit. One fsync then covers many requests, which is where the throughput of a busy
//!   object comes from.
//! - **Output gate.** A turn's response waits on its commit: it is released only once its own writes
//!   *and every earlier pending write it could have read* are durable.
//! - **Failure resets.** If a commit fails (disk full, a corrupt file, a cancelled commit), the storage
//!   is *broken*: every waiting response gets the error, no later write reaches the backing storage, and
//!   the runtime replaces the instance with a fresh one that reloads from storage.
//!
//! `delete_all` is a barrier (everything pending is committed first, then the backing storage is
//! cleared). Alarm calls go straight to the backing storage and are durable when they return.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::SystemTime;

use bytes::Bytes;
use edge_core::durable::{ListRange, Storage, WriteBatch, check_write};
use edge_core::{Error, ErrorKind};
use futures_channel::oneshot;
use futures_util::FutureExt;
use futures_util::future::{Either, Shared as SharedFuture};
use futures_util::lock::Mutex as AsyncMutex;

type Write = (String, Option<Bytes>);

/// One object's storage as the runtime hands it to the object: a write-buffering, group-committing
/// front of the backing storage `S`. Cheap to clone; clones share the buffer.
pub struct ObjectStorage<S> {
    shared: Arc<Shared<S>>,
}

impl<S> Clone for ObjectStorage<S> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S> std::fmt::Debug for ObjectStorage<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.shared.lock();
        f.debug_struct("ObjectStorage")
            .field("pending", &state.overlay.len())
            .field("broken", &state.broken.is_some())
            .finish_non_exhaustive()
    }
}

struct Shared<S> {
    backing: S,
    state: Mutex<State>,
    /// Held by the one task committing a batch; the others wait on it (group commit's followers).
    committing: AsyncMutex<()>,
}

struct State {
    /// Writes not yet durable, newest value per key, tagged with the turn that wrote it.
    overlay: BTreeMap<String, (u64, Option<Bytes>)>,
    /// The current turn's writes, in order.
    turn: Vec<Write>,
    /// The current turn's number.
    turn_seq: u64,
    /// Writes of ended turns waiting for the next commit.
    open: Vec<Write>,
    /// The last turn whose writes are in `open`.
    open_upto: u64,
    /// Resolved when `open` is committed.
    open_ticket: Arc<Ticket>,
    /// The ticket of the newest batch holding writes (open or being committed), for read-only turns.
    newest: Option<Arc<Ticket>>,
    /// Set when a commit failed: nothing more is committed through this instance.
    broken: Option<Error>,
}

/// What the buffer knows of a key.
enum Pending {
    /// Nothing: ask the backing storage.
    No,
    Put(Bytes),
    Deleted,
}

/// One batch's outcome, and a signal for everyone waiting on it.
struct Ticket {
    outcome: OnceLock<Result<(), Error>>,
    signal: Mutex<Option<oneshot::Sender<()>>>,
    resolved: SharedFuture<oneshot::Receiver<()>>,
}

impl Default for Ticket {
    fn default() -> Self {
        let (signal, resolved) = oneshot::channel();
        Self {
            outcome: OnceLock::new(),
            signal: Mutex::new(Some(signal)),
            resolved: resolved.shared(),
        }
    }
}

impl Ticket {
    fn resolve(&self, outcome: Result<(), Error>) {
        let _ = self.outcome.set(outcome);
        let signal = self
            .signal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(signal) = signal {
            let _ = signal.send(());
        }
    }
}

impl<S: Storage> ObjectStorage<S> {
    pub(crate) fn new(backing: S) -> Self {
        Self {
            shared: Arc::new(Shared {
                backing,
                state: Mutex::new(State {
                    overlay: BTreeMap::new(),
                    turn: Vec::new(),
                    turn_seq: 1,
                    open: Vec::new(),
                    open_upto: 0,
                    open_ticket: Arc::default(),
                    newest: None,
                    broken: None,
                }),
                committing: AsyncMutex::new(()),
            }),
        }
    }

    /// The storage underneath (writes made on it directly bypass the turn buffer).
    #[must_use]
    pub fn backing(&self) -> &S {
        &self.shared.backing
    }

    /// Ends the current turn: its writes join the next commit. The returned [`Commit`] resolves when
    /// they, and every earlier write, are durable.
    pub(crate) fn end_turn(&self) -> Commit<S> {
        let mut state = self.shared.lock();
        let ticket = if state.turn.is_empty() {
            // Read-only turn: it may still have read writes that are not durable yet.
            state.newest.clone().filter(|t| t.outcome.get().is_none())
        } else {
            let turn = std::mem::take(&mut state.turn);
            state.open.extend(turn);
            state.open_upto = state.turn_seq;
            let ticket = Arc::clone(&state.open_ticket);
            state.newest = Some(Arc::clone(&ticket));
            Some(ticket)
        };
        state.turn_seq += 1;
        Commit {
            shared: Arc::clone(&self.shared),
            ticket,
        }
    }

    /// Forgets the current turn's writes (its handler panicked or ran out of time). The overlay is not
    /// repaired: the runtime retires the instance, and a new one reads from the backing storage.
    pub(crate) fn discard_turn(&self) {
        self.shared.lock().turn.clear();
    }

    /// Whether a commit failed, so this instance must be replaced.
    pub(crate) fn is_broken(&self) -> bool {
        self.shared.lock().broken.is_some()
    }

    fn buffer(&self, writes: impl IntoIterator<Item = Write>) -> Result<(), Error> {
        let mut state = self.shared.lock();
        if let Some(error) = &state.broken {
            return Err(error.clone());
        }
        let seq = state.turn_seq;
        for (key, value) in writes {
            state.overlay.insert(key.clone(), (seq, value.clone()));
            state.turn.push((key, value));
        }
        Ok(())
    }

    fn pending(&self, key: &str) -> Result<Pending, Error> {
        let state = self.shared.lock();
        if let Some(error) = &state.broken {
            return Err(error.clone());
        }
        Ok(match state.overlay.get(key) {
            None => Pending::No,
            Some((_, None)) => Pending::Deleted,
            Some((_, Some(value))) => Pending::Put(value.clone()),
        })
    }
}

impl<S> Shared<S> {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<S: Storage> Shared<S> {
    /// Commits the open batch. Called with `committing` held.
    async fn commit_open(&self) {
        let (writes, ticket, upto, broken) = {
            let mut state = self.lock();
            let writes = std::mem::take(&mut state.open);
            let ticket = std::mem::take(&mut state.open_ticket);
            (writes, ticket, state.open_upto, state.broken.clone())
        };
        if let Some(error) = broken {
            ticket.resolve(Err(error));
            return;
        }
        let mut guard = CommitGuard {
            shared: self,
            ticket: &ticket,
            finished: false,
        };
        let result = if writes.is_empty() {
            Ok(())
        } else {
            self.backing.write(WriteBatch { ops: writes }).await
        };
        guard.finished = true;
        {
            let mut state = self.lock();
            match &result {
                Ok(()) => state.overlay.retain(|_, (seq, _)| *seq > upto),
                Err(error) => state.broken = Some(error.clone()),
            }
        }
        ticket.resolve(result);
    }
}

/// If a commit's future is dropped half-way (its caller was cancelled), nobody knows whether the batch
/// reached the storage: the instance is broken (and will be replaced) and the batch's waiters are told.
struct CommitGuard<'a, S> {
    shared: &'a Shared<S>,
    ticket: &'a Ticket,
    finished: bool,
}

impl<S> Drop for CommitGuard<'_, S> {
    fn drop(&mut self) {
        if !self.finished {
            let error = Error::new(
                ErrorKind::Canceled,
                "a durable-object commit was cancelled; its outcome is unknown and the object was reset",
            );
            self.shared.lock().broken = Some(error.clone());
            self.ticket.resolve(Err(error));
        }
    }
}

/// The output gate of one turn: resolves when the turn's writes (and every earlier one) are durable.
#[must_use = "a response may be released only after its commit is durable"]
pub(crate) struct Commit<S> {
    shared: Arc<Shared<S>>,
    ticket: Option<Arc<Ticket>>,
}

impl<S: Storage> Commit<S> {
    /// Waits until durable. The first waiter to find no commit under way commits every batch that has
    /// piled up; the others wait for it.
    pub(crate) async fn durable(self) -> Result<(), Error> {
        let Some(ticket) = self.ticket else {
            return Ok(());
        };
        loop {
            if let Some(outcome) = ticket.outcome.get() {
                return outcome.clone();
            }
            // Either the commit under way covers this batch (and its end wakes us), or we become the
            // committer. Waiting on the lock alone would queue finished waiters behind the next commit.
            let resolved = ticket.resolved.clone();
            let committing = self.shared.committing.lock();
            if let Either::Right((_committing, _)) =
                futures_util::future::select(resolved, committing).await
            {
                if let Some(outcome) = ticket.outcome.get() {
                    return outcome.clone();
                }
                self.shared.commit_open().await;
            }
        }
    }
}

impl<S: Storage> Storage for ObjectStorage<S> {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, Error> {
        match self.pending(key)? {
            Pending::Put(value) => Ok(Some(value)),
            Pending::Deleted => Ok(None),
            Pending::No => self.shared.backing.get(key).await,
        }
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<(String, Bytes)>, Error> {
        let mut found = BTreeMap::new();
        let mut unbuffered = Vec::new();
        for key in keys {
            match self.pending(key)? {
                Pending::Put(value) => {
                    found.insert(key.clone(), value);
                }
                Pending::Deleted => {}
                Pending::No => unbuffered.push(key.clone()),
            }
        }
        if !unbuffered.is_empty() {
            found.extend(self.shared.backing.get_many(&unbuffered).await?);
        }
        Ok(found.into_iter().collect())
    }

    async fn put(&self, key: &str, value: Bytes) -> Result<(), Error> {
        check_write(key, Some(&value))?;
        self.buffer([(key.to_owned(), Some(value))])
    }

    async fn delete(&self, key: &str) -> Result<bool, Error> {
        let existed = self.get(key).await?.is_some();
        self.buffer([(key.to_owned(), None)])?;
        Ok(existed)
    }

    async fn write(&self, batch: WriteBatch) -> Result<(), Error> {
        for (key, value) in &batch.ops {
            check_write(key, value.as_ref())?;
        }
        self.buffer(batch.ops)
    }

    async fn list(&self, range: ListRange) -> Result<Vec<(String, Bytes)>, Error> {
        let buffered: Vec<(String, Option<Bytes>)> = {
            let state = self.shared.lock();
            if let Some(error) = &state.broken {
                return Err(error.clone());
            }
            state
                .overlay
                .iter()
                .filter(|(key, _)| range.contains(key))
                .map(|(key, (_, value))| (key.clone(), value.clone()))
                .collect()
        };
        let limit = range.limit;
        let mut wider = range.clone();
        // Buffered deletes can hide at most `buffered.len()` stored rows: ask for that many more.
        wider.limit = limit.map(|l| l.saturating_add(buffered.len()));
        let mut merged: BTreeMap<String, Bytes> =
            self.shared.backing.list(wider).await?.into_iter().collect();
        for (key, value) in buffered {
            match value {
                Some(value) => merged.insert(key, value),
                None => merged.remove(&key),
            };
        }
        let limit = limit.unwrap_or(usize::MAX);
        Ok(if range.reverse {
            merged.into_iter().rev().take(limit).collect()
        } else {
            merged.into_iter().take(limit).collect()
        })
    }

    async fn delete_all(&self) -> Result<(), Error> {
        // A barrier: what is pending (this turn's writes so far included) is committed first, so the
        // clear is ordered after it.
        self.end_turn().durable().await?;
        self.shared.backing.delete_all().await?;
        self.shared.lock().overlay.clear();
        Ok(())
    }

    async fn get_alarm(&self) -> Result<Option<SystemTime>, Error> {
        self.shared.backing.get_alarm().await
    }

    async fn set_alarm(&self, at: SystemTime) -> Result<(), Error> {
        self.shared.backing.set_alarm(at).await
    }

    async fn delete_alarm(&self) -> Result<(), Error> {
        self.shared.backing.delete_alarm().await
    }
}

#[cfg(test)]
mod tests {
    use edge_core::testing::durable::FullDisk;

    use super::*;
    use crate::MemoryStorage;

    fn b(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    #[tokio::test]
    async fn object_storage_passes_the_storage_kit() {
        edge_core::testing::durable::run_all(|| ObjectStorage::new(MemoryStorage::new())).await;
    }

    #[tokio::test]
    async fn writes_reach_the_backing_storage_only_when_the_turn_commits() {
        let backing = MemoryStorage::new();
        let storage = ObjectStorage::new(backing.clone());
        storage.put("a", b("1")).await.unwrap();
        storage.put("b", b("2")).await.unwrap();
        assert!(storage.delete("b").await.unwrap());
        assert_eq!(
            storage.get("a").await.unwrap(),
            Some(b("1")),
            "read your writes"
        );
        assert_eq!(backing.get("a").await.unwrap(), None, "not committed yet");
        let listed = storage.list(ListRange::all()).await.unwrap();
        assert_eq!(listed, vec![("a".to_owned(), b("1"))]);

        storage.end_turn().durable().await.unwrap();
        assert_eq!(backing.get("a").await.unwrap(), Some(b("1")));
        assert_eq!(backing.get("b").await.unwrap(), None);
        assert_eq!(
            storage.shared.lock().overlay.len(),
            0,
            "committed writes leave the overlay"
        );
    }

    #[tokio::test]
    async fn list_merges_buffered_writes_with_limits_and_order() {
        let backing = MemoryStorage::new();
        for k in ["k1", "k2", "k3", "k4"] {
            backing.put(k, b("old")).await.unwrap();
        }
        let storage = ObjectStorage::new(backing);
        storage.delete("k1").await.unwrap();
        storage.delete("k2").await.unwrap();
        storage.put("k0", b("new")).await.unwrap();
        let keys =
            |rows: Vec<(String, Bytes)>| rows.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        assert_eq!(
            keys(storage.list(ListRange::all().with_limit(2)).await.unwrap()),
            ["k0", "k3"]
        );
        assert_eq!(
            keys(
                storage
                    .list(ListRange::all().with_limit(2).reversed())
                    .await
                    .unwrap()
            ),
            ["k4", "k3"]
        );
    }

    #[tokio::test]
    async fn a_failed_commit_breaks_the_instance_and_fails_every_waiter() {
        let storage = ObjectStorage::new(FullDisk(MemoryStorage::new()));
        storage.put("a", b("1")).await.unwrap();
        let first = storage.end_turn();
        let read_only = storage.end_turn();
        assert_eq!(
            first.durable().await.unwrap_err().kind(),
            ErrorKind::CapacityExceeded
        );
        assert_eq!(
            read_only.durable().await.unwrap_err().kind(),
            ErrorKind::CapacityExceeded,
            "a turn that read the lost write is not released either"
        );
        assert!(storage.is_broken());
        assert!(storage.put("b", b("2")).await.is_err());
        assert!(storage.get("a").await.is_err());
    }
}
