//! Durable objects: the contracts an object, its storage and the namespace that routes to it meet.
//!
//! A durable object is one live instance per [`ObjectId`], handling the requests sent to that id one at
//! a time, with a [`Storage`] of its own. The same object code runs in-process (`edge-do`'s runtime,
//! for servers and tests) and on Cloudflare (the workers bridge), because it is written against these
//! traits only:
//!
//! | trait | implemented by | role |
//! |---|---|---|
//! | [`DurableObject`] | your object | handles requests (fetch-style), alarms, WebSocket messages |
//! | [`Storage`] | the host (SQLite, memory, Cloudflare's storage API) | the object's own transactional key-value store and alarm |
//! | [`ObjectNamespace`] | the host | ids from names, and routing a request to the one instance for an id |
//!
//! Futures are [`MaybeSend`]: `Send` on native hosts, unconstrained on wasm32, so a workers-rs
//! implementation fits without `unsafe impl Send`.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::{Request, Response};

use crate::{Body, BoxFuture, Error, MaybeSend, MaybeSync};

/// Identifies one durable object within a namespace: either derived from a name (the same name always
/// reaches the same object) or unique (from random bits the host supplies).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId(Arc<str>);

impl ObjectId {
    /// The id every caller using `name` reaches.
    #[must_use]
    pub fn from_name(name: &str) -> Self {
        Self(Arc::from(format!("name:{name}")))
    }

    /// A unique id from 128 random bits (the host draws them).
    #[must_use]
    pub fn unique(bits: u128) -> Self {
        Self(Arc::from(format!("uid:{bits:032x}")))
    }

    /// The name the id was derived from, if it was.
    #[must_use]
    pub fn name(&self) -> Option<&str> {
        self.0.strip_prefix("name:")
    }

    /// A stable text form (for storage paths and logs).
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id whose [`ObjectId::as_str`] is `text` (a host reading ids back from its storage); `None` for
    /// text no id has.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        let valid = text.starts_with("name:")
            || text.strip_prefix("uid:").is_some_and(|hex| {
                hex.len() == 32 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            });
        valid.then(|| Self(Arc::from(text)))
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectId({})", self.0)
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which keys [`Storage::list`] returns: a prefix, a `[start, end)` range, a limit, an order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListRange {
    /// Only keys starting with this.
    pub prefix: Option<String>,
    /// Only keys `>= start`.
    pub start: Option<String>,
    /// Only keys `< end`.
    pub end: Option<String>,
    /// At most this many entries.
    pub limit: Option<usize>,
    /// Descending key order.
    pub reverse: bool,
}

impl ListRange {
    /// Every key, ascending.
    #[must_use]
    pub fn all() -> Self {
        Self::default()
    }

    /// Keys starting with `prefix`.
    #[must_use]
    pub fn prefix(prefix: impl Into<String>) -> Self {
        Self {
            prefix: Some(prefix.into()),
            ..Self::default()
        }
    }

    /// Also bounded below by `start` (inclusive).
    #[must_use]
    pub fn with_start(mut self, start: impl Into<String>) -> Self {
        self.start = Some(start.into());
        self
    }

    /// Also bounded above by `end` (exclusive).
    #[must_use]
    pub fn with_end(mut self, end: impl Into<String>) -> Self {
        self.end = Some(end.into());
        self
    }

    /// At most `limit` entries.
    #[must_use]
    pub fn with_limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Descending order.
    #[must_use]
    pub fn reversed(mut self) -> Self {
        self.reverse = true;
        self
    }

    /// Whether `key` is in the range (prefix and bounds; not the limit).
    #[must_use]
    pub fn contains(&self, key: &str) -> bool {
        self.prefix.as_deref().is_none_or(|p| key.starts_with(p))
            && self.start.as_deref().is_none_or(|s| key >= s)
            && self.end.as_deref().is_none_or(|e| key < e)
    }
}

/// Writes applied together or not at all: the transaction primitive of [`Storage`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBatch {
    /// `(key, Some(value))` puts, `(key, None)` deletes, applied in order.
    pub ops: Vec<(String, Option<Bytes>)>,
}

impl WriteBatch {
    /// An empty batch.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a put.
    #[must_use]
    pub fn put(mut self, key: impl Into<String>, value: Bytes) -> Self {
        self.ops.push((key.into(), Some(value)));
        self
    }

    /// Adds a delete.
    #[must_use]
    pub fn delete(mut self, key: impl Into<String>) -> Self {
        self.ops.push((key.into(), None));
        self
    }
}

/// A durable object's own storage: strongly consistent, private to one object, with an alarm.
///
/// Every method is atomic on its own; [`Storage::write`] applies many writes atomically. Keys are at most
/// [`MAX_KEY_LEN`] bytes (the empty key is a key, as on Cloudflare) and values at most [`MAX_VALUE_LEN`]
/// (Cloudflare's limits); larger ones are refused with [`ErrorKind::InvalidKey`](crate::ErrorKind::InvalidKey) /
/// [`ErrorKind::TooLarge`](crate::ErrorKind::TooLarge) and change nothing.
pub trait Storage: MaybeSend + MaybeSync {
    /// The value under `key`.
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Bytes>, Error>> + MaybeSend;

    /// The values under `keys` that exist, in key order.
    fn get_many(
        &self,
        keys: &[String],
    ) -> impl Future<Output = Result<Vec<(String, Bytes)>, Error>> + MaybeSend;

    /// Stores `value` under `key`.
    fn put(&self, key: &str, value: Bytes) -> impl Future<Output = Result<(), Error>> + MaybeSend;

    /// Deletes `key`; whether it existed.
    fn delete(&self, key: &str) -> impl Future<Output = Result<bool, Error>> + MaybeSend;

    /// Applies every write in `batch`, or none (a batch that fails validation changes nothing).
    fn write(&self, batch: WriteBatch) -> impl Future<Output = Result<(), Error>> + MaybeSend;

    /// The entries in `range`, in key order (descending if asked).
    fn list(
        &self,
        range: ListRange,
    ) -> impl Future<Output = Result<Vec<(String, Bytes)>, Error>> + MaybeSend;

    /// Deletes every key (the alarm too).
    fn delete_all(&self) -> impl Future<Output = Result<(), Error>> + MaybeSend;

    /// When the alarm is set for.
    fn get_alarm(&self) -> impl Future<Output = Result<Option<SystemTime>, Error>> + MaybeSend;

    /// Sets the alarm (replacing any other).
    fn set_alarm(&self, at: SystemTime) -> impl Future<Output = Result<(), Error>> + MaybeSend;

    /// Cancels the alarm.
    fn delete_alarm(&self) -> impl Future<Output = Result<(), Error>> + MaybeSend;
}

/// Longest storage key, in bytes (Cloudflare: 2 KiB).
pub const MAX_KEY_LEN: usize = 2048;
/// Largest storage value, in bytes (Cloudflare: 128 KiB per value).
pub const MAX_VALUE_LEN: usize = 128 * 1024;

/// Checks a write against [`MAX_KEY_LEN`] and [`MAX_VALUE_LEN`]: the validation every [`Storage`] shares.
///
/// # Errors
///
/// [`ErrorKind::InvalidKey`](crate::ErrorKind::InvalidKey) for a long key,
/// [`ErrorKind::TooLarge`](crate::ErrorKind::TooLarge) for a long value. The empty key is allowed, as
/// Cloudflare allows it.
pub fn check_write(key: &str, value: Option<&Bytes>) -> Result<(), Error> {
    if key.len() > MAX_KEY_LEN {
        return Err(Error::invalid_key(format!(
            "durable object keys are at most {MAX_KEY_LEN} bytes"
        )));
    }
    if value.is_some_and(|v| v.len() > MAX_VALUE_LEN) {
        return Err(Error::new(
            crate::ErrorKind::TooLarge,
            format!("durable object values are at most {MAX_VALUE_LEN} bytes"),
        ));
    }
    Ok(())
}

/// A durable object: your code. The host creates one instance per id and hands it requests one at a
/// time (no request starts while another is awaiting), so `&self` state behind a lock is never contended.
///
/// Every handler is one *turn*: the storage writes it makes are committed together when it returns, and
/// what it answers is released only once they are durable.
pub trait DurableObject: MaybeSend + MaybeSync + 'static {
    /// Handles a request sent to this object.
    fn fetch(
        &self,
        request: Request<Body>,
    ) -> impl Future<Output = Result<Response<Body>, Error>> + MaybeSend;

    /// Runs when the object's alarm fires. An error makes the host retry with backoff; `info` says how
    /// many earlier attempts of this alarm did not succeed (Cloudflare's `alarmInfo.retryCount`).
    ///
    /// Alarms fire at least once: an attempt that was interrupted (the process died, the handler
    /// panicked or overran its time limit) is retried, so a handler must tolerate running again.
    fn alarm(&self, info: AlarmInfo) -> impl Future<Output = Result<(), Error>> + MaybeSend {
        let _ = info;
        async { Ok(()) }
    }

    /// A WebSocket connection was accepted into this object (its attachment is already readable
    /// through the host's [`SocketHub`]). An error closes the connection again.
    fn websocket_open(
        &self,
        socket: SocketId,
    ) -> impl Future<Output = Result<(), Error>> + MaybeSend {
        let _ = socket;
        async { Ok(()) }
    }

    /// A message arrived on one of the object's WebSocket connections.
    fn websocket_message(
        &self,
        socket: SocketId,
        message: SocketMessage,
    ) -> impl Future<Output = Result<(), Error>> + MaybeSend {
        let _ = (socket, message);
        async { Ok(()) }
    }

    /// A connection closed: by the client (with its close code), or dropped by the host because it died
    /// or could not keep up (code 1006). The socket is no longer among the hub's sockets when this runs,
    /// but its attachment is still readable.
    fn websocket_close(
        &self,
        socket: SocketId,
        code: u16,
    ) -> impl Future<Output = Result<(), Error>> + MaybeSend {
        let _ = (socket, code);
        async { Ok(()) }
    }
}

/// What an alarm handler is told about the invocation: Cloudflare's `AlarmInvocationInfo`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AlarmInfo {
    /// How many earlier attempts of this alarm did not succeed (failed, panicked, overran, or were cut
    /// short by a crash); 0 on the first attempt.
    pub retry_count: u32,
}

impl AlarmInfo {
    /// The info of an attempt after `retry_count` unsuccessful ones.
    #[must_use]
    pub const fn new(retry_count: u32) -> Self {
        Self { retry_count }
    }

    /// Whether this attempt is a retry.
    #[must_use]
    pub const fn is_retry(&self) -> bool {
        self.retry_count > 0
    }
}

/// Names one WebSocket connection accepted into an object, unique within the host process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SocketId(pub u64);

impl fmt::Display for SocketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ws-{}", self.0)
    }
}

/// One WebSocket message, either way. Exhaustive on purpose: RFC 6455 has exactly these two kinds of
/// data frame (control frames are the host's business).
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(clippy::exhaustive_enums)]
pub enum SocketMessage {
    /// A text frame.
    Text(String),
    /// A binary frame.
    Binary(Bytes),
}

/// The WebSocket connections of one object, as the host keeps them: what an object uses to talk to its
/// clients. Sends never wait: a connection that is closed or cannot keep up is dropped from the hub
/// (and its [`DurableObject::websocket_close`] runs later), the others are not disturbed.
pub trait SocketHub: MaybeSend + MaybeSync {
    /// The open connections, oldest first.
    fn sockets(&self) -> Vec<SocketId>;

    /// Sends `message` to `to`; `false` if that connection is gone (it is dropped from the hub).
    fn send(&self, to: SocketId, message: SocketMessage) -> bool;

    /// Sends `message` to every connection except `except`; how many it reached.
    fn broadcast(&self, message: &SocketMessage, except: Option<SocketId>) -> usize;

    /// The attachment of a connection: small state that lives as long as it (a user name, a cursor).
    fn attachment(&self, socket: SocketId) -> Option<Bytes>;

    /// Replaces the attachment of a connection; `false` if it is gone.
    fn set_attachment(&self, socket: SocketId, attachment: Bytes) -> bool;

    /// Closes a connection from the object's side with `code`.
    fn close(&self, socket: SocketId, code: u16);
}

/// The default number of shards a hot key is spread over.
pub const DEFAULT_SHARDS: u32 = 64;

/// The shard (`0..shards`) a key maps to: stable across processes, platforms and releases (64-bit
/// FNV-1a), so every server and every Worker sends a key to the same shard. `shards` of 0 counts as 1.
///
/// A key too hot for one object (one writer, ~1,000 requests/s on Cloudflare) is split over `N` objects
/// named `"{key}#{shard}"`, chosen by a second, spreading value (a client address, a request id); see
/// [`Shards`].
///
/// ```
/// use edge_core::durable::shard_of;
/// assert_eq!(shard_of("198.51.100.7", 64), shard_of("198.51.100.7", 64));
/// assert!(shard_of("anything", 64) < 64);
/// ```
#[must_use]
pub fn shard_of(value: &str, shards: u32) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in value.as_bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    u32::try_from(hash % u64::from(shards.max(1))).unwrap_or(0)
}

/// A hot key split over `count` objects: which object a request goes to.
///
/// ```
/// use edge_core::durable::{ObjectId, Shards};
///
/// let shards = Shards::default(); // 64
/// let id = shards.object_for("counter:home", "198.51.100.7");
/// assert_eq!(id, shards.object_for("counter:home", "198.51.100.7"));
/// assert_eq!(shards.all("counter:home").len(), 64);
/// assert!(shards.all("counter:home").contains(&id));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shards {
    count: u32,
}

impl Default for Shards {
    fn default() -> Self {
        Self {
            count: DEFAULT_SHARDS,
        }
    }
}

impl Shards {
    /// `count` shards (at least one).
    #[must_use]
    pub fn new(count: u32) -> Self {
        Self {
            count: count.max(1),
        }
    }

    /// How many.
    #[must_use]
    pub fn count(self) -> u32 {
        self.count
    }

    /// The object of `key`'s shard for `spread` (the value that picks the shard).
    #[must_use]
    pub fn object_for(self, key: &str, spread: &str) -> ObjectId {
        ObjectId::from_name(&format!("{key}#{}", shard_of(spread, self.count)))
    }

    /// Every shard object of `key` (to read a sharded counter, sum over these).
    #[must_use]
    pub fn all(self, key: &str) -> Vec<ObjectId> {
        (0..self.count)
            .map(|shard| ObjectId::from_name(&format!("{key}#{shard}")))
            .collect()
    }
}

/// Where an object should live, asked for when it is first created (Cloudflare's location hints).
/// A hint, not a promise: the host's placement policy decides, and may ignore it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LocationHint {
    /// Western North America.
    WesternNorthAmerica,
    /// Eastern North America.
    EasternNorthAmerica,
    /// South America.
    SouthAmerica,
    /// Western Europe.
    WesternEurope,
    /// Eastern Europe.
    EasternEurope,
    /// Asia-Pacific.
    AsiaPacific,
    /// Oceania.
    Oceania,
    /// Africa.
    Africa,
    /// The Middle East.
    MiddleEast,
}

impl LocationHint {
    /// Cloudflare's code for the region (`"wnam"`, `"weur"`, …).
    #[must_use]
    pub fn code(self) -> &'static str {
        match self {
            Self::WesternNorthAmerica => "wnam",
            Self::EasternNorthAmerica => "enam",
            Self::SouthAmerica => "sam",
            Self::WesternEurope => "weur",
            Self::EasternEurope => "eeur",
            Self::AsiaPacific => "apac",
            Self::Oceania => "oc",
            Self::Africa => "afr",
            Self::MiddleEast => "me",
        }
    }

    /// The hint for one of Cloudflare's codes; `None` for anything else.
    #[must_use]
    pub fn from_code(code: &str) -> Option<Self> {
        [
            Self::WesternNorthAmerica,
            Self::EasternNorthAmerica,
            Self::SouthAmerica,
            Self::WesternEurope,
            Self::EasternEurope,
            Self::AsiaPacific,
            Self::Oceania,
            Self::Africa,
            Self::MiddleEast,
        ]
        .into_iter()
        .find(|hint| hint.code() == code)
    }
}

/// A namespace of objects of one kind: ids from names, and a request routed to the one live instance of
/// an id (created on first use).
pub trait ObjectNamespace: MaybeSend + MaybeSync {
    /// The id for `name` (always the same one).
    fn id_from_name(&self, name: &str) -> ObjectId {
        ObjectId::from_name(name)
    }

    /// Sends `request` to the object `id`.
    fn fetch(
        &self,
        id: &ObjectId,
        request: Request<Body>,
    ) -> impl Future<Output = Result<Response<Body>, Error>> + MaybeSend;
}

/// [`ObjectNamespace`] with boxed futures, for `dyn` use.
pub trait DynObjectNamespace: MaybeSend + MaybeSync {
    /// See [`ObjectNamespace::fetch`].
    fn fetch_boxed<'a>(
        &'a self,
        id: &'a ObjectId,
        request: Request<Body>,
    ) -> BoxFuture<'a, Result<Response<Body>, Error>>;
}

impl<N: ObjectNamespace> DynObjectNamespace for N {
    fn fetch_boxed<'a>(
        &'a self,
        id: &'a ObjectId,
        request: Request<Body>,
    ) -> BoxFuture<'a, Result<Response<Body>, Error>> {
        Box::pin(self.fetch(id, request))
    }
}

impl<N: ObjectNamespace + ?Sized> ObjectNamespace for Arc<N> {
    fn id_from_name(&self, name: &str) -> ObjectId {
        (**self).id_from_name(name)
    }

    fn fetch(
        &self,
        id: &ObjectId,
        request: Request<Body>,
    ) -> impl Future<Output = Result<Response<Body>, Error>> + MaybeSend {
        (**self).fetch(id, request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_ranges() {
        assert_eq!(ObjectId::from_name("room-1"), ObjectId::from_name("room-1"));
        assert_eq!(ObjectId::from_name("room-1").name(), Some("room-1"));
        assert_ne!(
            ObjectId::unique(1),
            ObjectId::from_name("00000000000000000000000000000001")
        );
        assert_eq!(ObjectId::unique(1).name(), None);
        for id in [ObjectId::unique(7), ObjectId::from_name("a:b")] {
            assert_eq!(ObjectId::parse(id.as_str()), Some(id));
        }
        assert_eq!(ObjectId::parse("uid:12"), None);
        assert_eq!(ObjectId::parse("room"), None);
        assert_eq!(
            LocationHint::from_code("weur"),
            Some(LocationHint::WesternEurope)
        );
        assert_eq!(LocationHint::from_code("mars"), None);
        let range = ListRange::prefix("a:").with_start("a:b").with_end("a:d");
        assert!(range.contains("a:b") && range.contains("a:c9"));
        assert!(!range.contains("a:d") && !range.contains("a:a") && !range.contains("b:c"));
        assert!(check_write("k", Some(&Bytes::from(vec![0; MAX_VALUE_LEN]))).is_ok());
        assert!(check_write("k", Some(&Bytes::from(vec![0; MAX_VALUE_LEN + 1]))).is_err());
        assert!(
            check_write("", None).is_ok(),
            "the empty key is a key, as on Cloudflare"
        );
        assert!(check_write(&"k".repeat(MAX_KEY_LEN + 1), None).is_err());
    }
}
