//! [`WorkersKv`]: a [`KvStore`] over a Cloudflare Workers KV namespace (feature `workers`, wasm32 only).
//!
//! # Layout
//!
//! The value is stored as it is. Its metadata and expiry travel in the key's KV metadata as a small JSON
//! envelope, `{"v":1,"e":<expiry in Unix ms>,"m":<your metadata>}`, so one `get` reads all three and `list`
//! returns metadata without reading values.
//!
//! # Expiry
//!
//! Decided by the store's [`Clock`] on every read, as for every store in the SDK (so tests drive it with a
//! `ManualClock`), and also handed to KV as `expirationTtl` (rounded up to whole seconds, at least KV's 60)
//! so that KV frees the key on its own.
//!
//! # Consistency and limits (what differs from the other stores)
//!
//! - **Eventual**: a write is visible at once in the data center that made it and elsewhere within about 60
//!   seconds; reads in other locations may serve a cached older value until then. Two writers racing on one
//!   key: the last to reach the central store wins. Use a Durable Object for anything that needs one writer.
//! - **Limits** ([`KvLimits::WORKERS`]): keys up to 512 bytes, values up to 25 MiB, TTLs at least 60 s,
//!   pages of at most 1,000 keys. Metadata gets 1,024 bytes less the envelope's [`ENVELOPE_OVERHEAD`].
//!   A write outside them is refused here, with a typed error, before anything is sent.
//! - **Write rate**: one write per second per key; faster writes to the same key fail with a 429 from the
//!   platform, reported as [`ErrorKind::Unavailable`] (retry later).
//! - **Listing** follows KV's own cursor (wrapped, so a cursor from elsewhere is refused). Expired keys the
//!   platform has not freed yet are left out, so a page may hold fewer keys than asked for.
//!
//! A missing binding, a JS exception inside a KV call, or a value another program wrote under our key all
//! come back as [`Error`]s, never a trap.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use edge_core::host::workers::js_message;
use edge_core::kv::{KvEntry, KvLimits, ListKey, ListOptions, ListPage, PutOptions};
use edge_core::{Clock, Error, ErrorKind, KvStore, SystemClock};
use serde_json::{Map, Value};
use worker::kv::KvError;

use crate::cursor;

const CURSOR_TAG: &str = "wkv1.";
const ENVELOPE_VERSION: u64 = 1;

/// Bytes of KV's 1,024-byte metadata allowance taken by the envelope around your metadata.
pub const ENVELOPE_OVERHEAD: usize = 48;

/// A [`KvStore`] over a Workers KV namespace. See the [module docs](self).
///
/// ```ignore
/// let kv = edge_kv::workers::WorkersKv::from_env(&env, "EDGE_KV")?;
/// kv.put("flag:checkout", Bytes::from_static(b"on"), PutOptions::new()).await?;
/// ```
pub struct WorkersKv<C = SystemClock> {
    namespace: worker::kv::KvStore,
    clock: C,
    limits: KvLimits,
}

impl WorkersKv<SystemClock> {
    /// The namespace bound as `binding` in the Worker's environment.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`] when no KV namespace is bound under that name.
    pub fn from_env(env: &worker::Env, binding: &str) -> Result<Self, Error> {
        let namespace = env.kv(binding).map_err(|e| {
            Error::new(
                ErrorKind::NotFound,
                format!("no KV namespace is bound as `{binding}`: {e}"),
            )
        })?;
        Ok(Self::new(namespace))
    }

    /// Over a workers-rs KV handle.
    #[must_use]
    pub fn new(namespace: worker::kv::KvStore) -> Self {
        Self {
            namespace,
            clock: SystemClock::new(),
            limits: KvLimits::WORKERS
                .with_max_metadata_len(KvLimits::WORKERS.max_metadata_len - ENVELOPE_OVERHEAD),
        }
    }
}

impl<C: Clock> WorkersKv<C> {
    /// Decides expiry on `clock` (default [`SystemClock`], which reads `Date.now()` here).
    #[must_use]
    pub fn with_clock<C2: Clock>(self, clock: C2) -> WorkersKv<C2> {
        WorkersKv {
            namespace: self.namespace,
            clock,
            limits: self.limits,
        }
    }
}

impl<C> std::fmt::Debug for WorkersKv<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkersKv")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// What the store keeps in a key's KV metadata.
struct Envelope {
    expires_at: Option<SystemTime>,
    metadata: Option<Value>,
}

impl Envelope {
    fn to_metadata(metadata: Option<Value>, expires_at: Option<SystemTime>) -> Value {
        let mut object = Map::new();
        object.insert("v".to_owned(), Value::from(ENVELOPE_VERSION));
        if let Some(at) = expires_at {
            let ms = at
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            object.insert("e".to_owned(), Value::from(ms));
        }
        if let Some(metadata) = metadata {
            object.insert("m".to_owned(), metadata);
        }
        Value::Object(object)
    }

    fn from_metadata(metadata: Option<Value>) -> Result<Self, Error> {
        let corrupt = || {
            Error::new(
                ErrorKind::Corrupt,
                "value was not written by edge-kv (no envelope)",
            )
        };
        let Some(Value::Object(mut object)) = metadata else {
            return Err(corrupt());
        };
        if object.get("v").and_then(Value::as_u64) != Some(ENVELOPE_VERSION) {
            return Err(corrupt());
        }
        let expires_at = match object.get("e") {
            None => None,
            Some(ms) => Some(
                ms.as_u64()
                    .map(|ms| UNIX_EPOCH + Duration::from_millis(ms))
                    .ok_or_else(corrupt)?,
            ),
        };
        Ok(Self {
            expires_at,
            metadata: object.remove("m"),
        })
    }

    fn is_live(&self, now: SystemTime) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }
}

fn kv_error(what: &str, error: KvError) -> Error {
    match error {
        KvError::JavaScript(value) => {
            let message = js_message(&value);
            // The platform answers a second write to one key within a second with a 429.
            let kind = if message.contains("429") || message.contains("Too Many Requests") {
                ErrorKind::Unavailable
            } else {
                ErrorKind::Backend
            };
            Error::new(kind, format!("Workers KV {what}: {message}"))
        }
        KvError::Serialization(e) => {
            Error::with_source(ErrorKind::Corrupt, format!("Workers KV {what}"), e)
        }
        KvError::InvalidKvStore(binding) => Error::new(
            ErrorKind::NotFound,
            format!("Workers KV {what}: no namespace bound as `{binding}`"),
        ),
    }
}

impl<C: Clock> KvStore for WorkersKv<C> {
    fn limits(&self) -> KvLimits {
        self.limits
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, Error> {
        Ok(self.get_with_metadata(key).await?.map(|entry| entry.value))
    }

    async fn get_with_metadata(&self, key: &str) -> Result<Option<KvEntry>, Error> {
        self.limits.check_key(key)?;
        let (value, metadata) = self
            .namespace
            .get(key)
            .bytes_with_metadata::<Value>()
            .await
            .map_err(|e| kv_error("get", e))?;
        let Some(value) = value else {
            return Ok(None);
        };
        let envelope = Envelope::from_metadata(metadata)?;
        if !envelope.is_live(self.clock.wall_time()) {
            return Ok(None);
        }
        Ok(Some(
            KvEntry::new(Bytes::from(value))
                .with_metadata(envelope.metadata)
                .with_expires_at(envelope.expires_at),
        ))
    }

    async fn put(&self, key: &str, value: Bytes, options: PutOptions) -> Result<(), Error> {
        let now = self.clock.wall_time();
        let expires_at = self.limits.check_put(key, &value, &options, || now)?;
        let metadata = Envelope::to_metadata(options.metadata, expires_at);
        let mut put = self
            .namespace
            .put_bytes(key, &value)
            .map_err(|e| kv_error("put", e))?
            .metadata(metadata)
            .map_err(|e| kv_error("put", e))?;
        if let Some(at) = expires_at {
            // KV's own expiry only frees the key; ours (on the clock) decides what reads see. Rounded up and
            // at least KV's minimum, so KV never frees a key before we consider it expired.
            let ttl = at.duration_since(now).unwrap_or_default();
            let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
            put = put.expiration_ttl(secs.max(KvLimits::WORKERS.min_ttl.as_secs()));
        }
        put.execute().await.map_err(|e| kv_error("put", e))
    }

    async fn delete(&self, key: &str) -> Result<(), Error> {
        self.limits.check_key(key)?;
        self.namespace
            .delete(key)
            .await
            .map_err(|e| kv_error("delete", e))
    }

    async fn list(&self, options: ListOptions) -> Result<ListPage, Error> {
        let limit = self.limits.check_list_limit(options.limit)?;
        let resume = options
            .cursor
            .as_deref()
            .map(|c| cursor::decode(CURSOR_TAG, c))
            .transpose()?;
        let mut request = self
            .namespace
            .list()
            .limit(u64::try_from(limit).unwrap_or(u64::MAX));
        if let Some(prefix) = options.prefix.filter(|p| !p.is_empty()) {
            request = request.prefix(prefix);
        }
        if let Some(resume) = resume {
            request = request.cursor(resume);
        }
        let page = request.execute().await.map_err(|e| match e {
            // The platform refuses a cursor it did not hand out (ours wraps a real one, but it can be stale).
            KvError::JavaScript(value)
                if js_message(&value).to_ascii_lowercase().contains("cursor") =>
            {
                Error::new(
                    ErrorKind::InvalidCursor,
                    "Workers KV refused the list cursor",
                )
            }
            other => kv_error("list", other),
        })?;
        let now = self.clock.wall_time();
        let mut keys = Vec::with_capacity(page.keys.len());
        for key in page.keys {
            // Another program's key under this namespace has no envelope: listed without metadata.
            let (expires_at, metadata) = match Envelope::from_metadata(key.metadata) {
                Ok(envelope) if !envelope.is_live(now) => continue,
                Ok(envelope) => (envelope.expires_at, envelope.metadata),
                Err(_) => (None, None),
            };
            keys.push(
                ListKey::new(key.name)
                    .with_expires_at(expires_at)
                    .with_metadata(metadata),
            );
        }
        let cursor = match page.cursor {
            Some(next) if !page.list_complete && !next.is_empty() => {
                Some(cursor::encode(CURSOR_TAG, &next))
            }
            _ => None,
        };
        Ok(ListPage::new(keys, cursor))
    }
}
