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
//! - **Failure resets.** If a commit fails (disk full, a corrupt file), the storage is *broken*: every
//!   waiting response gets the error, no later write reaches the backing storage, and the runtime
//!   replaces the instance with a fresh one that reloads from storage.
//! - **No caller owns a commit.** A commit is a task of the storage's own, kept in its state until it
//!   ends; whoever waits for a batch polls it, and a waiter that goes away (its request was dropped)
//!   takes nothing with it: the next waiter carries the same commit on. One client's disconnect can
//!   neither cancel a write other turns wait for nor leave its outcome unknown.
//!
//! [`ObjectStorage::transaction`] scopes a part of a turn (Cloudflare's `transaction()`): its writes
//! join the turn together, or not at all if it fails or calls [`Transaction::rollback`].
//!
//! `delete_all` is a barrier (everything pending is committed first, then the backing storage is
//! cleared). Alarm calls go straight to the backing storage and are durable when they return.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::SystemTime;

use bytes::Bytes;
use edge_core::durable::{ListRange, Storage, WriteBatch, check_write};
use edge_core::{BoxFuture, Error, ErrorKind};
use futures_util::FutureExt;
use futures_util::future::Shared as SharedFuture;

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
    /// In an `Arc` of its own so that a commit task can hold it without holding `Shared` (whose state
    /// holds the task).
    backing: Arc<S>,
    state: Mutex<State>,
}

/// The commit under way: a task no caller owns, polled by whoever waits for it.
type CommitTask = SharedFuture<BoxFuture<'static, ()>>;

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
    /// The commit under way, if one is.
    committing: Option<CommitTask>,
}

/// What the buffer (or a transaction) knows of a key.
enum Pending {
    /// Nothing: ask the backing storage.
    No,
    Put(Bytes),
    Deleted,
}

/// One batch's outcome, set once by the commit that carried it. Waiters read it after polling that
/// commit to its end.
#[derive(Default)]
struct Ticket {
    outcome: OnceLock<Result<(), Error>>,
}

impl Ticket {
    fn resolve(&self, outcome: Result<(), Error>) {
        let _ = self.outcome.set(outcome);
    }
}

impl<S: Storage + 'static> ObjectStorage<S> {
    pub(crate) fn new(backing: S) -> Self {
        Self {
            shared: Arc::new(Shared {
                backing: Arc::new(backing),
                state: Mutex::new(State {
                    overlay: BTreeMap::new(),
                    turn: Vec::new(),
                    turn_seq: 1,
                    open: Vec::new(),
                    open_upto: 0,
                    open_ticket: Arc::default(),
                    newest: None,
                    broken: None,
                    committing: None,
                }),
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

impl<S: Storage + 'static> Shared<S> {
    /// The commit under way, or, if there is none, a new one of the open batch. The batch is taken
    /// out of `state` here, under its lock, so two waiters can never commit the same writes twice.
    fn commit_task(self: &Arc<Self>) -> CommitTask {
        let mut state = self.lock();
        if let Some(task) = &state.committing {
            return task.clone();
        }
        let writes = std::mem::take(&mut state.open);
        let ticket = std::mem::take(&mut state.open_ticket);
        let upto = state.open_upto;
        let broken = state.broken.clone();
        let backing = Arc::clone(&self.backing);
        let shared = Arc::downgrade(self);
        let task: BoxFuture<'static, ()> = Box::pin(async move {
            let result = match broken {
                Some(error) => Err(error),
                None if writes.is_empty() => Ok(()),
                None => backing.write(WriteBatch { ops: writes }).await,
            };
            Self::finish_commit(&shared, upto, &result);
            ticket.resolve(result);
        });
        let task = task.shared();
        state.committing = Some(task.clone());
        task
    }

    /// Records a commit's outcome: committed writes leave the overlay, a failure breaks the storage.
    fn finish_commit(shared: &Weak<Self>, upto: u64, result: &Result<(), Error>) {
        // Gone only if every handle to the storage is: then nobody reads the state again.
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let mut state = shared.lock();
        state.committing = None;
        match result {
            Ok(()) => state.overlay.retain(|_, (seq, _)| *seq > upto),
            Err(error) => state.broken = Some(error.clone()),
        }
    }
}

/// The output gate of one turn: resolves when the turn's writes (and every earlier one) are durable.
#[must_use = "a response may be released only after its commit is durable"]
pub(crate) struct Commit<S> {
    shared: Arc<Shared<S>>,
    ticket: Option<Arc<Ticket>>,
}

impl<S: Storage + 'static> Commit<S> {
    /// Waits until durable. A waiter that finds no commit under way starts one of every batch that has
    /// piled up; every waiter polls the commit under way, so it goes on whichever of them is dropped.
    ///
    /// Cancel safety: dropping this future drops only the wait; the commit carries on with the next
    /// waiter (or the next turn's), and its outcome is the same.
    pub(crate) async fn durable(self) -> Result<(), Error> {
        let Some(ticket) = self.ticket else {
            return Ok(());
        };
        loop {
            if let Some(outcome) = ticket.outcome.get() {
                return outcome.clone();
            }
            // Either the commit under way covers this batch (and its end resolves the ticket), or this
            // batch is still open and goes into the next one once the current one ends.
            self.shared.commit_task().await;
        }
    }
}

impl<S: Storage + 'static> Storage for ObjectStorage<S> {
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

impl<S: Storage + 'static> ObjectStorage<S> {
    /// Runs `body` as a transaction within the current turn (Cloudflare's `transaction()`): through the
    /// [`Transaction`] it is handed, its reads see its own writes; when it returns `Ok` its writes join
    /// the turn all together, and when it returns an error, calls [`Transaction::rollback`], or is
    /// dropped unfinished, none of them does. The turn's other writes are untouched either way.
    ///
    /// A turn already runs alone (the input gate) and commits whole, so a transaction is only needed to
    /// undo part of one.
    ///
    /// ```
    /// # use edge_core::{Error, durable::Storage};
    /// # async fn transfer<S: Storage + 'static>(storage: &edge_do::ObjectStorage<S>) -> Result<(), Error> {
    /// storage
    ///     .transaction(|txn| async move {
    ///         let balance = txn.get("balance").await?.map_or(0, |v| v.len());
    ///         txn.put("balance", vec![b'$'; balance + 1].into()).await?;
    ///         if balance >= 100 {
    ///             txn.rollback(); // nothing of this transaction is kept
    ///         }
    ///         Ok(())
    ///     })
    ///     .await
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// `body`'s error (its writes discarded); the storage's error if it is broken.
    pub async fn transaction<T, F, Fut>(&self, body: F) -> Result<T, Error>
    where
        F: FnOnce(Transaction<S>) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let state = Arc::new(Mutex::new(TransactionState::default()));
        let result = body(Transaction {
            storage: self.clone(),
            state: Arc::clone(&state),
        })
        .await;
        let state = std::mem::take(&mut *state.lock().unwrap_or_else(PoisonError::into_inner));
        let value = result?;
        if !state.rolled_back {
            self.buffer(state.ops)?;
        }
        Ok(value)
    }
}

/// The handle a [`ObjectStorage::transaction`] body works through: a [`Storage`] whose writes are held
/// until the transaction ends.
pub struct Transaction<S> {
    storage: ObjectStorage<S>,
    state: Arc<Mutex<TransactionState>>,
}

#[derive(Default)]
struct TransactionState {
    /// Newest value per key written in the transaction (`None`: deleted).
    writes: BTreeMap<String, Option<Bytes>>,
    /// The writes in order, as they join the turn.
    ops: Vec<Write>,
    rolled_back: bool,
}

impl<S> std::fmt::Debug for Transaction<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("Transaction")
            .field("writes", &state.ops.len())
            .field("rolled_back", &state.rolled_back)
            .finish_non_exhaustive()
    }
}

impl<S> Transaction<S> {
    fn lock(&self) -> MutexGuard<'_, TransactionState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Discards every write of the transaction when it ends; later calls on it fail.
    pub fn rollback(&self) {
        let mut state = self.lock();
        state.rolled_back = true;
        state.writes.clear();
        state.ops.clear();
    }

    fn record(&self, writes: impl IntoIterator<Item = Write>) -> Result<(), Error> {
        let mut state = self.lock();
        if state.rolled_back {
            return Err(rolled_back());
        }
        for (key, value) in writes {
            state.writes.insert(key.clone(), value.clone());
            state.ops.push((key, value));
        }
        Ok(())
    }

    /// What the transaction itself wrote under `key`, if anything.
    fn written(&self, key: &str) -> Result<Pending, Error> {
        let state = self.lock();
        if state.rolled_back {
            return Err(rolled_back());
        }
        Ok(match state.writes.get(key) {
            None => Pending::No,
            Some(None) => Pending::Deleted,
            Some(Some(value)) => Pending::Put(value.clone()),
        })
    }
}

fn rolled_back() -> Error {
    Error::new(
        ErrorKind::InvalidInput,
        "the transaction was rolled back; it takes no more calls",
    )
}

impl<S: Storage + 'static> Storage for Transaction<S> {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, Error> {
        match self.written(key)? {
            Pending::Put(value) => Ok(Some(value)),
            Pending::Deleted => Ok(None),
            Pending::No => self.storage.get(key).await,
        }
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<(String, Bytes)>, Error> {
        let mut found = BTreeMap::new();
        for key in keys {
            if let Some(value) = self.get(key).await? {
                found.insert(key.clone(), value);
            }
        }
        Ok(found.into_iter().collect())
    }

    async fn put(&self, key: &str, value: Bytes) -> Result<(), Error> {
        check_write(key, Some(&value))?;
        self.record([(key.to_owned(), Some(value))])
    }

    async fn delete(&self, key: &str) -> Result<bool, Error> {
        let existed = self.get(key).await?.is_some();
        self.record([(key.to_owned(), None)])?;
        Ok(existed)
    }

    async fn write(&self, batch: WriteBatch) -> Result<(), Error> {
        for (key, value) in &batch.ops {
            check_write(key, value.as_ref())?;
        }
        self.record(batch.ops)
    }

    async fn list(&self, range: ListRange) -> Result<Vec<(String, Bytes)>, Error> {
        let written: Vec<(String, Option<Bytes>)> = {
            let state = self.lock();
            if state.rolled_back {
                return Err(rolled_back());
            }
            state
                .writes
                .iter()
                .filter(|(key, _)| range.contains(key))
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect()
        };
        let limit = range.limit;
        let mut wider = range.clone();
        // The transaction's deletes can hide at most `written.len()` rows: ask for that many more.
        wider.limit = limit.map(|l| l.saturating_add(written.len()));
        let mut merged: BTreeMap<String, Bytes> =
            self.storage.list(wider).await?.into_iter().collect();
        for (key, value) in written {
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

    /// Refused: clearing the storage is a barrier of the whole turn, not something to roll back.
    async fn delete_all(&self) -> Result<(), Error> {
        Err(Error::new(
            ErrorKind::InvalidInput,
            "delete_all is not available inside a transaction",
        ))
    }

    /// The alarm is outside transactions: alarm calls go straight to storage, as everywhere here.
    async fn get_alarm(&self) -> Result<Option<SystemTime>, Error> {
        self.storage.get_alarm().await
    }

    async fn set_alarm(&self, at: SystemTime) -> Result<(), Error> {
        self.storage.set_alarm(at).await
    }

    async fn delete_alarm(&self) -> Result<(), Error> {
        self.storage.delete_alarm().await
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
    async fn a_transaction_joins_the_turn_whole_or_not_at_all() {
        let backing = MemoryStorage::new();
        let storage = ObjectStorage::new(backing.clone());
        storage.put("outside", b("kept")).await.unwrap();
        // Committed: its reads saw its own writes, and its writes joined the turn together.
        let seen = storage
            .transaction(|txn| async move {
                txn.put("a", b("1")).await?;
                txn.write(WriteBatch::new().put("b", b("2")).delete("outside"))
                    .await?;
                let listed = txn.list(ListRange::all()).await?;
                Ok(listed.into_iter().map(|(k, _)| k).collect::<Vec<_>>())
            })
            .await
            .unwrap();
        assert_eq!(seen, ["a", "b"]);
        assert_eq!(storage.get("a").await.unwrap(), Some(b("1")));
        assert_eq!(storage.get("outside").await.unwrap(), None);
        // Failed: none of its writes are kept, the turn's own are.
        let failed = storage
            .transaction(|txn| async move {
                txn.put("a", b("changed")).await?;
                txn.put("c", b("3")).await?;
                Err::<(), _>(Error::new(ErrorKind::InvalidInput, "insufficient funds"))
            })
            .await;
        assert_eq!(failed.unwrap_err().kind(), ErrorKind::InvalidInput);
        assert_eq!(storage.get("a").await.unwrap(), Some(b("1")));
        assert_eq!(storage.get("c").await.unwrap(), None);
        // Rolled back: its value is returned, its writes are not kept, and it takes no more calls.
        let answer = storage
            .transaction(|txn| async move {
                txn.put("a", b("rolled back")).await?;
                txn.rollback();
                assert!(txn.put("d", b("4")).await.is_err());
                assert!(txn.delete_all().await.is_err());
                Ok("declined")
            })
            .await
            .unwrap();
        assert_eq!(answer, "declined");
        assert_eq!(storage.get("a").await.unwrap(), Some(b("1")));
        // A bad write inside fails it without a trace.
        let too_long = "k".repeat(edge_core::durable::MAX_KEY_LEN + 1);
        let bad = storage
            .transaction(|txn| async move {
                txn.put("e", b("5")).await?;
                txn.put(&too_long, b("x")).await
            })
            .await;
        assert_eq!(bad.unwrap_err().kind(), ErrorKind::InvalidKey);
        assert_eq!(storage.get("e").await.unwrap(), None);
        // Nothing reached the backing storage before the turn committed; then all of it did.
        assert_eq!(backing.get("a").await.unwrap(), None);
        storage.end_turn().durable().await.unwrap();
        assert_eq!(backing.get("a").await.unwrap(), Some(b("1")));
        assert_eq!(backing.get("b").await.unwrap(), Some(b("2")));
        assert_eq!(backing.get("outside").await.unwrap(), None);
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

    /// Keys that stress ordering and prefixes: the empty key, SQL `LIKE` wildcards, a NUL, non-ASCII
    /// text, keys that are prefixes of others.
    const KEYS: [&str; 12] = [
        "",
        "a",
        "a%",
        "a_",
        "a\0",
        "ab",
        "abc",
        "a/b",
        "b",
        "é",
        "éa",
        "\u{10ffff}",
    ];

    #[derive(Clone, Debug)]
    enum Op {
        Put(usize, u8),
        Delete(usize),
        Batch(Vec<(usize, Option<u8>)>),
        DeleteAll,
        Get(usize),
        GetMany(Vec<usize>),
        List(
            Option<usize>,
            Option<usize>,
            Option<usize>,
            Option<usize>,
            bool,
        ),
        /// Ends the turn and waits until it is durable (as the runtime does before answering).
        EndTurn,
        /// The turn's handler failed: its writes are dropped and a new instance takes over.
        Discard,
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        let key = 0..KEYS.len();
        let bound = proptest::option::of(0..KEYS.len());
        prop_oneof![
            4 => (key.clone(), any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
            2 => key.clone().prop_map(Op::Delete),
            2 => proptest::collection::vec((key.clone(), proptest::option::of(any::<u8>())), 0..4)
                .prop_map(Op::Batch),
            1 => Just(Op::DeleteAll),
            2 => key.clone().prop_map(Op::Get),
            1 => proptest::collection::vec(key, 0..4).prop_map(Op::GetMany),
            4 => (bound.clone(), bound.clone(), bound, proptest::option::of(0..5usize), any::<bool>())
                .prop_map(|(p, s, e, l, r)| Op::List(p, s, e, l, r)),
            2 => Just(Op::EndTurn),
            1 => Just(Op::Discard),
        ]
    }

    fn range(
        prefix: Option<usize>,
        start: Option<usize>,
        end: Option<usize>,
        limit: Option<usize>,
        reverse: bool,
    ) -> ListRange {
        let mut range = prefix.map_or_else(ListRange::all, |p| ListRange::prefix(KEYS[p]));
        if let Some(s) = start {
            range = range.with_start(KEYS[s]);
        }
        if let Some(e) = end {
            range = range.with_end(KEYS[e]);
        }
        if let Some(l) = limit {
            range = range.with_limit(l);
        }
        if reverse {
            range = range.reversed();
        }
        range
    }

    type Model = BTreeMap<String, Bytes>;

    /// What a list must answer, said plainly: every key in the range in order, reversed if asked, then
    /// cut to the limit.
    fn listed(model: &Model, range: &ListRange) -> Vec<(String, Bytes)> {
        let mut out: Vec<(String, Bytes)> = model
            .iter()
            .filter(|(k, _)| range.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if range.reverse {
            out.reverse();
        }
        out.truncate(range.limit.unwrap_or(usize::MAX));
        out
    }

    /// Runs `ops` through an `ObjectStorage` over `backing` and on a `BTreeMap`, comparing every read;
    /// after each ended turn, `backing` must hold exactly what the ended turns wrote.
    async fn against_the_model<S: Storage + Clone + 'static>(
        backing: S,
        ops: Vec<Op>,
    ) -> Result<(), String> {
        let mut front = ObjectStorage::new(backing.clone());
        let (mut view, mut durable) = (Model::new(), Model::new());
        let value = |v: u8| Bytes::from(vec![v; usize::from(v % 3)]);
        for (at, op) in ops.into_iter().enumerate() {
            let fail = |what: &str| format!("step {at} ({what})");
            match op {
                Op::Put(k, v) => {
                    front
                        .put(KEYS[k], value(v))
                        .await
                        .map_err(|e| fail(&e.to_string()))?;
                    view.insert(KEYS[k].to_owned(), value(v));
                }
                Op::Delete(k) => {
                    let existed = front
                        .delete(KEYS[k])
                        .await
                        .map_err(|e| fail(&e.to_string()))?;
                    if existed != view.remove(KEYS[k]).is_some() {
                        return Err(fail("delete said whether the key existed wrongly"));
                    }
                }
                Op::Batch(writes) => {
                    let mut batch = WriteBatch::new();
                    for (k, v) in &writes {
                        batch = match v {
                            Some(v) => batch.put(KEYS[*k], value(*v)),
                            None => batch.delete(KEYS[*k]),
                        };
                    }
                    front.write(batch).await.map_err(|e| fail(&e.to_string()))?;
                    for (k, v) in writes {
                        match v {
                            Some(v) => view.insert(KEYS[k].to_owned(), value(v)),
                            None => view.remove(KEYS[k]),
                        };
                    }
                }
                Op::DeleteAll => {
                    // A barrier, not part of the turn: what the turn wrote before it is committed, and
                    // the clear is durable at once (a later discard undoes neither).
                    front.delete_all().await.map_err(|e| fail(&e.to_string()))?;
                    view.clear();
                    durable.clear();
                }
                Op::Get(k) => {
                    let got = front.get(KEYS[k]).await.map_err(|e| fail(&e.to_string()))?;
                    if got.as_ref() != view.get(KEYS[k]) {
                        return Err(fail(&format!("get {:?}: {got:?}", KEYS[k])));
                    }
                }
                Op::GetMany(keys) => {
                    let keys: Vec<String> = keys.iter().map(|k| KEYS[*k].to_owned()).collect();
                    let got = front
                        .get_many(&keys)
                        .await
                        .map_err(|e| fail(&e.to_string()))?;
                    let want: Vec<(String, Bytes)> = view
                        .iter()
                        .filter(|(k, _)| keys.contains(k))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    if got != want {
                        return Err(fail(&format!("get_many {keys:?}: {got:?}, want {want:?}")));
                    }
                }
                Op::List(p, s, e, l, r) => {
                    let range = range(p, s, e, l, r);
                    let got = front
                        .list(range.clone())
                        .await
                        .map_err(|e| fail(&e.to_string()))?;
                    let want = listed(&view, &range);
                    if got != want {
                        return Err(fail(&format!("list {range:?}: {got:?}, want {want:?}")));
                    }
                }
                Op::EndTurn => {
                    front
                        .end_turn()
                        .durable()
                        .await
                        .map_err(|e| fail(&e.to_string()))?;
                    durable = view.clone();
                    let stored = backing
                        .list(ListRange::all())
                        .await
                        .map_err(|e| fail(&e.to_string()))?;
                    if stored != listed(&durable, &ListRange::all()) {
                        return Err(fail(&format!("durable: {stored:?}, want {durable:?}")));
                    }
                }
                Op::Discard => {
                    front.discard_turn();
                    front = ObjectStorage::new(backing.clone());
                    view = durable.clone();
                }
            }
        }
        Ok(())
    }

    proptest::proptest! {
        /// Every read through the turn buffer (own writes over the backing storage) and every commit
        /// match a sorted map, over memory and SQLite backing storage.
        #[test]
        fn object_storage_matches_a_sorted_map(ops in proptest::collection::vec(op(), 1..40)) {
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            runtime.block_on(against_the_model(MemoryStorage::new(), ops.clone()))
                .map_err(proptest::test_runner::TestCaseError::fail)?;
            #[cfg(feature = "sqlite")]
            {
                let store = crate::SqliteStore::in_memory().unwrap();
                let sqlite = store.storage(&edge_core::durable::ObjectId::from_name("model"));
                runtime.block_on(against_the_model(sqlite, ops))
                    .map_err(proptest::test_runner::TestCaseError::fail)?;
            }
        }
    }
}
