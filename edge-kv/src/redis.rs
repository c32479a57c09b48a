//! [`RedisKv`]: a [`KvStore`] over Redis (feature `redis`), for KV shared by many app servers.
//!
//! Built on the `redis` crate's `ConnectionManager` (redis-rs is the maintained, most used Rust client;
//! its manager multiplexes one connection for every concurrent caller and reconnects on its own after a
//! failure, which is what "survives a Redis restart" needs).
//!
//! # Layout in Redis
//!
//! For namespace `ns` (default `"edge-kv"`), key `k` is stored at `ns:d:k` as one string holding a small
//! envelope (magic `ekv1`, the expiry in Unix milliseconds, the metadata JSON, the value), so a read is one
//! `GET`. Every key is also a member of the sorted set `ns:i` (all scores zero), which Redis orders
//! lexicographically: `list` is `ZRANGEBYLEX`. A put or delete changes both in one `MULTI`/`EXEC`, so no reader
//! sees one without the other.
//!
//! # Expiry
//!
//! Expiry is decided by the store's [`Clock`] on every read, as for every other store, and also handed to
//! Redis as a relative `PX` so that Redis frees the memory by itself. Index entries whose data has gone are
//! removed lazily by `list`.
//!
//! # Consistency
//!
//! Strong: every app server talking to the same Redis sees a write as soon as `put` returns.
//!
//! # Failures
//!
//! A Redis that is down or restarting gives [`ErrorKind::Unavailable`] (or [`ErrorKind::Timeout`]) for the
//! calls that fail; the manager reconnects in the background and later calls succeed. A value not written by
//! this store (another program's data under the namespace) reads as [`ErrorKind::Corrupt`].

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ::redis::AsyncCommands;
use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use bytes::{BufMut, Bytes, BytesMut};
use edge_core::kv::{KvEntry, KvLimits, ListKey, ListOptions, ListPage, PutOptions};
use edge_core::{Clock, Error, ErrorKind, KvStore, SystemClock};
use serde_json::Value;

use crate::cursor;

const CURSOR_TAG: &str = "rkv1.";
const MAGIC: &[u8; 4] = b"ekv1";
/// Magic, expiry (u64), metadata length (u32).
const HEADER_LEN: usize = 16;

/// A [`KvStore`] over Redis. See the [module docs](self). Cheap to clone; clones share the connection.
///
/// ```no_run
/// use bytes::Bytes;
/// use edge_core::{KvStore, kv::PutOptions};
/// use edge_kv::redis::RedisKv;
///
/// # async fn demo() -> Result<(), edge_core::Error> {
/// let kv = RedisKv::connect("redis://127.0.0.1:6379/").await?.with_namespace("shop");
/// kv.put("flag:checkout", Bytes::from_static(b"on"), PutOptions::new()).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisKv<C = SystemClock> {
    connection: ConnectionManager,
    data_prefix: String,
    index_key: String,
    clock: C,
    limits: KvLimits,
}

impl RedisKv<SystemClock> {
    /// Connects to the Redis at `url` (`redis://host:port/db`), with a 2 s connection and response timeout
    /// and background reconnection.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] for a malformed URL, [`ErrorKind::Unavailable`] if Redis cannot be
    /// reached now.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        let client = ::redis::Client::open(url)
            .map_err(|e| Error::with_source(ErrorKind::InvalidInput, "bad redis url", e))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let connection = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(redis_error)?;
        Ok(Self::with_connection(connection))
    }

    /// A store over an existing connection manager (share one between stores and your own commands).
    #[must_use]
    pub fn with_connection(connection: ConnectionManager) -> Self {
        let mut kv = Self {
            connection,
            data_prefix: String::new(),
            index_key: String::new(),
            clock: SystemClock::new(),
            limits: KvLimits::WORKERS,
        };
        kv.set_namespace("edge-kv");
        kv
    }
}

impl<C: Clock> RedisKv<C> {
    /// Keeps this store's keys under `namespace` (default `"edge-kv"`), so several stores can share a Redis.
    #[must_use]
    pub fn with_namespace(mut self, namespace: &str) -> Self {
        self.set_namespace(namespace);
        self
    }

    fn set_namespace(&mut self, namespace: &str) {
        self.data_prefix = format!("{namespace}:d:");
        self.index_key = format!("{namespace}:i");
    }

    /// Decides expiry on `clock` (default [`SystemClock`]).
    #[must_use]
    pub fn with_clock<C2: Clock>(self, clock: C2) -> RedisKv<C2> {
        RedisKv {
            connection: self.connection,
            data_prefix: self.data_prefix,
            index_key: self.index_key,
            clock,
            limits: self.limits,
        }
    }

    /// What the store accepts (default [`KvLimits::WORKERS`]).
    #[must_use]
    pub fn with_limits(mut self, limits: KvLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The connection, for commands of your own.
    #[must_use]
    pub fn connection(&self) -> &ConnectionManager {
        &self.connection
    }

    fn data_key(&self, key: &str) -> String {
        let mut data_key = String::with_capacity(self.data_prefix.len() + key.len());
        data_key.push_str(&self.data_prefix);
        data_key.push_str(key);
        data_key
    }

    async fn read(&self, key: &str) -> Result<Option<Envelope>, Error> {
        self.limits.check_key(key)?;
        let raw: Option<Vec<u8>> = self
            .connection
            .clone()
            .get(self.data_key(key))
            .await
            .map_err(redis_error)?;
        let Some(raw) = raw else { return Ok(None) };
        let envelope = Envelope::decode(Bytes::from(raw))?;
        Ok(envelope.is_live(self.clock.wall_time()).then_some(envelope))
    }
}

impl<C> fmt::Debug for RedisKv<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisKv")
            .field("index_key", &self.index_key)
            .finish_non_exhaustive()
    }
}

/// What is stored at a data key.
struct Envelope {
    expires_at: Option<SystemTime>,
    metadata: Option<Value>,
    value: Bytes,
}

impl Envelope {
    fn encode(
        value: &[u8],
        metadata: Option<&Value>,
        expires_at: Option<SystemTime>,
    ) -> Result<Bytes, Error> {
        let metadata = match metadata {
            Some(m) => serde_json::to_vec(m).map_err(|e| {
                Error::with_source(ErrorKind::InvalidInput, "metadata is not serialisable", e)
            })?,
            None => Vec::new(),
        };
        let expires_ms = expires_at.map_or(0, |at| {
            at.duration_since(UNIX_EPOCH).map_or(1, |d| {
                u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
            })
        });
        let metadata_len = u32::try_from(metadata.len())
            .map_err(|_| Error::new(ErrorKind::TooLarge, "metadata does not fit the envelope"))?;
        let mut out = BytesMut::with_capacity(HEADER_LEN + metadata.len() + value.len());
        out.put_slice(MAGIC);
        out.put_u64(expires_ms);
        out.put_u32(metadata_len);
        out.put_slice(&metadata);
        out.put_slice(value);
        Ok(out.freeze())
    }

    fn decode(raw: Bytes) -> Result<Self, Error> {
        let corrupt = |what: &'static str| Error::new(ErrorKind::Corrupt, what);
        if raw.len() < HEADER_LEN || &raw[..4] != MAGIC {
            return Err(corrupt("value was not written by edge-kv (bad envelope)"));
        }
        let expires_ms =
            u64::from_be_bytes(raw[4..12].try_into().map_err(|_| corrupt("short header"))?);
        let metadata_len = u32::from_be_bytes(
            raw[12..16]
                .try_into()
                .map_err(|_| corrupt("short header"))?,
        );
        let metadata_end = usize::try_from(metadata_len)
            .ok()
            .and_then(|len| HEADER_LEN.checked_add(len))
            .filter(|end| *end <= raw.len())
            .ok_or_else(|| corrupt("metadata length runs past the value"))?;
        let metadata = if metadata_end == HEADER_LEN {
            None
        } else {
            let json = serde_json::from_slice(&raw[HEADER_LEN..metadata_end])
                .map_err(|e| Error::with_source(ErrorKind::Corrupt, "metadata is not json", e))?;
            Some(json)
        };
        let expires_at = (expires_ms != 0).then(|| UNIX_EPOCH + Duration::from_millis(expires_ms));
        Ok(Self {
            expires_at,
            metadata,
            value: raw.slice(metadata_end..),
        })
    }

    fn is_live(&self, now: SystemTime) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }
}

/// A `redis` error as an [`Error`] of the right kind: [`ErrorKind::Timeout`] for a timeout,
/// [`ErrorKind::Unavailable`] when the connection failed or dropped (the manager reconnects; a later call
/// may succeed), [`ErrorKind::Backend`] for anything Redis itself answered. Every Redis backend of the SDK
/// (this store, `edge-auth`'s Redis limiters) maps errors through it.
#[must_use]
pub fn redis_error(e: ::redis::RedisError) -> Error {
    let kind = if e.is_timeout() {
        ErrorKind::Timeout
    } else if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() {
        ErrorKind::Unavailable
    } else {
        ErrorKind::Backend
    };
    Error::with_source(kind, "redis command failed", e)
}

impl<C: Clock> KvStore for RedisKv<C> {
    fn limits(&self) -> KvLimits {
        self.limits
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, Error> {
        Ok(self.read(key).await?.map(|e| e.value))
    }

    async fn get_with_metadata(&self, key: &str) -> Result<Option<KvEntry>, Error> {
        Ok(self.read(key).await?.map(|e| {
            KvEntry::new(e.value)
                .with_metadata(e.metadata)
                .with_expires_at(e.expires_at)
        }))
    }

    async fn put(&self, key: &str, value: Bytes, options: PutOptions) -> Result<(), Error> {
        let now = self.clock.wall_time();
        let expires_at = self.limits.check_put(key, &value, &options, || now)?;
        let envelope = Envelope::encode(&value, options.metadata.as_ref(), expires_at)?;
        let data_key = self.data_key(key);
        let mut transaction = ::redis::pipe();
        transaction.atomic();
        match expires_at {
            Some(at) => {
                // Relative, so Redis frees the key after the same span on its own clock.
                let ttl_ms = u64::try_from(at.duration_since(now).unwrap_or_default().as_millis())
                    .unwrap_or(u64::MAX);
                transaction
                    .pset_ex(&data_key, envelope.as_ref(), ttl_ms.max(1))
                    .ignore();
            }
            None => {
                transaction.set(&data_key, envelope.as_ref()).ignore();
            }
        }
        transaction.zadd(&self.index_key, key, 0).ignore();
        transaction
            .query_async::<()>(&mut self.connection.clone())
            .await
            .map_err(redis_error)
    }

    async fn delete(&self, key: &str) -> Result<(), Error> {
        self.limits.check_key(key)?;
        let mut transaction = ::redis::pipe();
        transaction
            .atomic()
            .del(self.data_key(key))
            .ignore()
            .zrem(&self.index_key, key)
            .ignore();
        transaction
            .query_async::<()>(&mut self.connection.clone())
            .await
            .map_err(redis_error)
    }

    async fn list(&self, options: ListOptions) -> Result<ListPage, Error> {
        let mut walk = cursor::Walk::new(CURSOR_TAG, &self.limits, &options)?;
        let limit = walk.limit;
        let now = self.clock.wall_time();
        let mut connection = self.connection.clone();
        let mut keys: Vec<ListKey> = Vec::new();
        // Walk the index in batches until a page and one more live key are found (the extra key says whether
        // a cursor is needed), or the prefix runs out.
        'walk: loop {
            let min = match walk.resume_after() {
                Some(after) => format!("({after}"),
                None => format!("[{}", walk.prefix),
            };
            let batch = (limit + 1 - keys.len()).max(16);
            let names: Vec<String> = connection
                .zrangebylex_limit(
                    &self.index_key,
                    &min,
                    "+",
                    0,
                    isize::try_from(batch).unwrap_or(isize::MAX),
                )
                .await
                .map_err(redis_error)?;
            if names.is_empty() {
                break;
            }
            let data_keys: Vec<String> = names.iter().map(|n| self.data_key(n)).collect();
            let values: Vec<Option<Vec<u8>>> = ::redis::cmd("MGET")
                .arg(&data_keys)
                .query_async(&mut connection)
                .await
                .map_err(redis_error)?;
            let mut gone = Vec::new();
            for (name, raw) in names.iter().zip(values) {
                if !name.starts_with(walk.prefix) {
                    break 'walk;
                }
                walk.after = Some(name.clone());
                let Some(raw) = raw else {
                    gone.push(name.clone());
                    continue;
                };
                // Another program's value under our namespace is skipped here and reported by `get`.
                let Ok(envelope) = Envelope::decode(Bytes::from(raw)) else {
                    continue;
                };
                if envelope.is_live(now) {
                    keys.push(
                        ListKey::new(name.as_str())
                            .with_expires_at(envelope.expires_at)
                            .with_metadata(envelope.metadata),
                    );
                    if keys.len() > limit {
                        break 'walk;
                    }
                }
            }
            if !gone.is_empty() {
                // Expired by Redis: drop them from the index. Best effort; a failure is retried next time.
                let _ = connection.zrem::<_, _, ()>(&self.index_key, &gone).await;
            }
            if names.len() < batch {
                break;
            }
        }
        Ok(walk.finish(keys))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip() {
        let at = UNIX_EPOCH + Duration::from_millis(1_800_000_000_123);
        let meta = serde_json::json!({ "etag": "v1" });
        let raw = Envelope::encode(b"value", Some(&meta), Some(at)).unwrap();
        let back = Envelope::decode(raw).unwrap();
        assert_eq!(
            (back.value.as_ref(), back.metadata, back.expires_at),
            (&b"value"[..], Some(meta), Some(at))
        );
        let bare = Envelope::decode(Envelope::encode(b"", None, None).unwrap()).unwrap();
        assert_eq!(
            (bare.value.len(), bare.metadata, bare.expires_at),
            (0, None, None)
        );
    }

    #[test]
    fn foreign_values_are_corrupt_not_panics() {
        for raw in [
            &b""[..],
            b"hello",
            b"ekv1",
            b"ekv1\0\0\0\0\0\0\0\0\xff\xff\xff\xff",
            b"ekv1\0\0\0\0\0\0\0\0\0\0\0\x02{x",
        ] {
            let err = Envelope::decode(Bytes::copy_from_slice(raw))
                .err()
                .map(|e| e.kind());
            assert_eq!(err, Some(ErrorKind::Corrupt), "{raw:?}");
        }
    }
}
