//! Read-your-writes: a user's own recent writes, served while the local replica catches up.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use edge_core::kv::{KvEntry, KvLimits, ListOptions, ListPage, PutOptions};
use edge_core::{Clock, Error, ErrorKind, KvStore};

/// Recent writes kept per session, at most this many.
const MAX_ENTRIES: usize = 16;
/// Values larger than this are not kept in the overlay (it travels in a cookie).
const MAX_VALUE_LEN: usize = 1024;

/// The writes one session made recently: what [`ReadYourWrites`] overlays on reads.
///
/// It is meant to travel with the user (in a cookie, or a header the client echoes), so that the next
/// request sees the user's own writes whichever PoP it lands on: [`to_token`](Self::to_token) and
/// [`from_token`](Self::from_token) turn it into a compact string and back. It keeps at most 16 writes of
/// values up to 1 KiB; larger values are not overlaid.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecentWrites {
    writes: Vec<RecentWrite>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct RecentWrite {
    key: String,
    /// `None` for a delete.
    value: Option<Bytes>,
    written_at_ms: u64,
}

impl RecentWrites {
    /// No writes.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// How many writes are kept.
    #[must_use]
    pub fn len(&self) -> usize {
        self.writes.len()
    }

    /// `true` if none are kept.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    fn record(&mut self, key: &str, value: Option<Bytes>, written_at_ms: u64) {
        self.writes.retain(|w| w.key != key);
        if value.as_ref().is_some_and(|v| v.len() > MAX_VALUE_LEN) {
            return;
        }
        if self.writes.len() == MAX_ENTRIES {
            self.writes.remove(0);
        }
        self.writes.push(RecentWrite {
            key: key.to_owned(),
            value,
            written_at_ms,
        });
    }

    fn find(&self, key: &str, not_before_ms: u64) -> Option<&RecentWrite> {
        self.writes
            .iter()
            .find(|w| w.key == key && w.written_at_ms >= not_before_ms)
    }

    /// A compact string form: JSON `[[key, hex value or null, unix ms], …]`.
    #[must_use]
    pub fn to_token(&self) -> String {
        let rows: Vec<(&str, Option<String>, u64)> = self
            .writes
            .iter()
            .map(|w| {
                (
                    w.key.as_str(),
                    w.value.as_ref().map(|v| hex(v)),
                    w.written_at_ms,
                )
            })
            .collect();
        serde_json::to_string(&rows).unwrap_or_default()
    }

    /// Reads a token made by [`to_token`](Self::to_token).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Corrupt`] for anything else (a tampered or truncated cookie); the caller should then
    /// start from [`RecentWrites::new`].
    pub fn from_token(token: &str) -> Result<Self, Error> {
        let corrupt = || Error::new(ErrorKind::Corrupt, "not a recent-writes token");
        let rows: Vec<(String, Option<String>, u64)> =
            serde_json::from_str(token).map_err(|_| corrupt())?;
        if rows.len() > MAX_ENTRIES {
            return Err(corrupt());
        }
        let writes = rows
            .into_iter()
            .map(|(key, value, written_at_ms)| {
                let value = value.map(|v| unhex(&v).ok_or_else(corrupt)).transpose()?;
                if value.as_ref().is_some_and(|v| v.len() > MAX_VALUE_LEN) || key.is_empty() {
                    return Err(corrupt());
                }
                Ok(RecentWrite {
                    key,
                    value,
                    written_at_ms,
                })
            })
            .collect::<Result<_, Error>>()?;
        Ok(Self { writes })
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn unhex(text: &str) -> Option<Bytes> {
    if text.len() % 2 != 0 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    text.as_bytes()
        .chunks_exact(2)
        .map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|s| u8::from_str_radix(s, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
        .map(Bytes::from)
}

/// A [`KvStore`] that serves a session's own writes from its [`RecentWrites`] for `window` after making
/// them, and everything else from the store underneath.
///
/// On an eventually consistent KV a user who saves a setting and reloads can land on a PoP whose replica has
/// not caught up and see the old value (the usual fix is stickiness). This overlay makes the user see their
/// own write without pinning them to a PoP. Other users still see the replica's view. `list` is not
/// overlaid, and an overlaid read returns no metadata.
#[derive(Clone)]
pub struct ReadYourWrites<S, C> {
    store: S,
    recent: Arc<Mutex<RecentWrites>>,
    window: Duration,
    clock: C,
}

impl<S: KvStore, C: Clock> ReadYourWrites<S, C> {
    /// Overlays `recent` on `store` for writes younger than `window` on `clock`'s wall time.
    pub fn new(store: S, recent: RecentWrites, window: Duration, clock: C) -> Self {
        Self {
            store,
            recent: Arc::new(Mutex::new(recent)),
            window,
            clock,
        }
    }

    /// The session's recent writes, to hand to the next request (for instance as a cookie).
    #[must_use]
    pub fn recent_writes(&self) -> RecentWrites {
        lock(&self.recent).clone()
    }

    fn now_ms(&self) -> u64 {
        let now = self
            .clock
            .wall_time()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        u64::try_from(now.as_millis()).unwrap_or(u64::MAX)
    }

    fn overlaid(&self, key: &str) -> Overlay {
        let window = u64::try_from(self.window.as_millis()).unwrap_or(u64::MAX);
        let not_before = self.now_ms().saturating_sub(window);
        match lock(&self.recent).find(key, not_before) {
            None => Overlay::NotMine,
            Some(write) => Overlay::Mine(write.value.clone()),
        }
    }
}

/// What the overlay knows of a key.
enum Overlay {
    /// The session has not written it recently: ask the store.
    NotMine,
    /// The session wrote it (`None`: deleted it) within the window.
    Mine(Option<Bytes>),
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Critical sections are plain reads and pushes: poisoning carries no broken invariant.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl<S: KvStore, C: Clock> KvStore for ReadYourWrites<S, C> {
    fn limits(&self) -> KvLimits {
        self.store.limits()
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, Error> {
        self.store.limits().check_key(key)?;
        match self.overlaid(key) {
            Overlay::Mine(mine) => Ok(mine),
            Overlay::NotMine => self.store.get(key).await,
        }
    }

    async fn get_with_metadata(&self, key: &str) -> Result<Option<KvEntry>, Error> {
        self.store.limits().check_key(key)?;
        match self.overlaid(key) {
            Overlay::Mine(mine) => Ok(mine.map(KvEntry::new)),
            Overlay::NotMine => self.store.get_with_metadata(key).await,
        }
    }

    async fn put(&self, key: &str, value: Bytes, options: PutOptions) -> Result<(), Error> {
        self.store.put(key, value.clone(), options).await?;
        let now = self.now_ms();
        lock(&self.recent).record(key, Some(value), now);
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), Error> {
        self.store.delete(key).await?;
        let now = self.now_ms();
        lock(&self.recent).record(key, None, now);
        Ok(())
    }

    async fn list(&self, options: ListOptions) -> Result<ListPage, Error> {
        self.store.list(options).await
    }
}

impl<S, C> fmt::Debug for ReadYourWrites<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadYourWrites")
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_reject_tampering() {
        let mut recent = RecentWrites::new();
        recent.record("profile:name", Some(Bytes::from_static(b"Ada")), 1_000);
        recent.record("profile:old", None, 1_001);
        recent.record("big", Some(Bytes::from(vec![0; MAX_VALUE_LEN + 1])), 1_002);
        assert_eq!(recent.len(), 2, "oversized values are not kept");
        assert_eq!(
            RecentWrites::from_token(&recent.to_token()).unwrap(),
            recent
        );
        for bad in [
            "",
            "{}",
            "[[\"k\",\"zz\",1]]",
            "[[\"k\",\"abc\",1]]",
            "[[\"\",null,1]]",
            "[[1,2,3]]",
        ] {
            assert_eq!(
                RecentWrites::from_token(bad).unwrap_err().kind(),
                ErrorKind::Corrupt,
                "{bad}"
            );
        }
    }

    #[test]
    fn keeps_the_newest_writes_only() {
        let mut recent = RecentWrites::new();
        for i in 0..(MAX_ENTRIES as u64 + 5) {
            recent.record(&format!("k{i}"), Some(Bytes::from_static(b"v")), i);
        }
        assert_eq!(recent.len(), MAX_ENTRIES);
        assert!(recent.find("k0", 0).is_none());
        assert!(recent.find(&format!("k{}", MAX_ENTRIES + 4), 0).is_some());
    }
}
