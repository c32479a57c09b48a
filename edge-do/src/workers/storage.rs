//! [`WorkersStorage`]: the DO storage API as a [`Storage`](edge_core::durable::Storage).

use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use edge_core::durable::{ListRange, Storage, WriteBatch, check_write};
use edge_core::host::workers::js_error;
use edge_core::{Error, ErrorKind};
use js_sys::{Object, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use worker::worker_sys::{DurableObjectState, DurableObjectStorage};

/// Most entries the DO storage API takes in one `put`/`delete` call; larger batches are split into
/// calls issued together, which Cloudflare still applies atomically.
const MAX_PER_CALL: usize = 128;

/// One object's storage on the DO storage API. See the [module docs](self).
///
/// Values are stored as `Uint8Array`s. A value of another type under a key (written by JS code sharing the
/// object) reads as [`ErrorKind::Corrupt`].
#[derive(Clone)]
pub struct WorkersStorage {
    // JS handles: `Rc` is enough on wasm32's one thread (and `MaybeSend` asks for nothing there).
    storage: Rc<DurableObjectStorage>,
}

impl std::fmt::Debug for WorkersStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkersStorage").finish_non_exhaustive()
    }
}

async fn settle(what: &str, promise: Result<js_sys::Promise, JsValue>) -> Result<JsValue, Error> {
    let promise = promise.map_err(|e| js_error(ErrorKind::Backend, what, &e))?;
    JsFuture::from(promise)
        .await
        .map_err(|e| js_error(ErrorKind::Backend, what, &e))
}

fn bytes_of(value: JsValue) -> Result<Bytes, Error> {
    value
        .dyn_into::<Uint8Array>()
        .map(|array| Bytes::from(array.to_vec()))
        .map_err(|_| Error::new(ErrorKind::Corrupt, "a stored value that is not bytes"))
}

/// The entries of a JS `Map<string, Uint8Array>`, in key order.
fn entries_of(map: JsValue) -> Result<Vec<(String, Bytes)>, Error> {
    let map: js_sys::Map = map.dyn_into().map_err(|_| {
        Error::new(
            ErrorKind::Backend,
            "storage answered something else than a Map",
        )
    })?;
    let mut entries = Vec::with_capacity(usize::try_from(map.size()).unwrap_or(0));
    let mut failure = None;
    map.for_each(&mut |value, key| {
        if failure.is_some() {
            return;
        }
        match (key.as_string(), bytes_of(value)) {
            (Some(key), Ok(value)) => entries.push((key, value)),
            (None, _) => {
                failure = Some(Error::new(
                    ErrorKind::Corrupt,
                    "a stored key that is not text",
                ))
            }
            (_, Err(e)) => failure = Some(e),
        }
    });
    if let Some(e) = failure {
        return Err(e);
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(entries)
}

impl WorkersStorage {
    /// The storage of the object `state` belongs to.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Unavailable`] when the state has no storage.
    pub fn new(state: &DurableObjectState) -> Result<Self, Error> {
        let storage = state
            .storage()
            .map_err(|e| js_error(ErrorKind::Unavailable, "durable object storage", &e))?;
        Ok(Self {
            storage: Rc::new(storage),
        })
    }

    fn no_options() -> Object {
        Object::new()
    }
}

impl Storage for WorkersStorage {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, Error> {
        check_write(key, None)?;
        let value = settle("storage.get", self.storage.get(key)).await?;
        if value.is_undefined() {
            return Ok(None);
        }
        bytes_of(value).map(Some)
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<(String, Bytes)>, Error> {
        for key in keys {
            check_write(key, None)?;
        }
        let mut found = Vec::new();
        // The storage API reads at most 128 keys per call.
        for chunk in keys.chunks(MAX_PER_CALL) {
            let chunk: Vec<JsValue> = chunk.iter().map(|k| JsValue::from_str(k)).collect();
            let map = settle("storage.get", self.storage.get_multiple(chunk)).await?;
            found.extend(entries_of(map)?);
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found.dedup_by(|a, b| a.0 == b.0);
        Ok(found)
    }

    async fn put(&self, key: &str, value: Bytes) -> Result<(), Error> {
        check_write(key, Some(&value))?;
        let value = Uint8Array::from(&value[..]);
        settle("storage.put", self.storage.put(key, value.into()))
            .await
            .map(|_| ())
    }

    async fn delete(&self, key: &str) -> Result<bool, Error> {
        check_write(key, None)?;
        let existed = settle("storage.delete", self.storage.delete(key)).await?;
        Ok(existed.as_bool().unwrap_or(false))
    }

    async fn write(&self, batch: WriteBatch) -> Result<(), Error> {
        for (key, value) in &batch.ops {
            check_write(key, value.as_ref())?;
        }
        // Later operations on a key win, as if applied in order.
        let mut last: std::collections::BTreeMap<&str, Option<&Bytes>> =
            std::collections::BTreeMap::new();
        for (key, value) in &batch.ops {
            last.insert(key, value.as_ref());
        }
        let puts: Vec<(&str, &Bytes)> = last
            .iter()
            .filter_map(|(k, v)| v.map(|v| (*k, v)))
            .collect();
        let deletes: Vec<JsValue> = last
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| JsValue::from_str(k))
            .collect();
        // Every call is issued before any is awaited: Cloudflare commits writes with no `await` between
        // them as one atomic batch.
        let mut pending = Vec::new();
        for chunk in puts.chunks(MAX_PER_CALL) {
            let entries = Object::new();
            for (key, value) in chunk {
                Reflect::set(
                    &entries,
                    &JsValue::from_str(key),
                    &Uint8Array::from(&value[..]),
                )
                .map_err(|e| js_error(ErrorKind::Backend, "storage.put", &e))?;
            }
            pending.push(self.storage.put_multiple(entries.into()));
        }
        for chunk in deletes.chunks(MAX_PER_CALL) {
            pending.push(self.storage.delete_multiple(chunk.to_vec()));
        }
        for promise in pending {
            settle("storage write batch", promise).await?;
        }
        Ok(())
    }

    async fn list(&self, range: ListRange) -> Result<Vec<(String, Bytes)>, Error> {
        let options = Object::new();
        let set = |name: &str, value: JsValue| {
            Reflect::set(&options, &name.into(), &value)
                .map(|_| ())
                .map_err(|e| js_error(ErrorKind::Backend, "storage.list", &e))
        };
        if let Some(prefix) = &range.prefix {
            set("prefix", JsValue::from_str(prefix))?;
        }
        if let Some(start) = &range.start {
            set("start", JsValue::from_str(start))?;
        }
        if let Some(end) = &range.end {
            set("end", JsValue::from_str(end))?;
        }
        if let Some(limit) = range.limit {
            #[allow(clippy::cast_precision_loss)] // limits are far below 2^53
            set("limit", JsValue::from_f64(limit as f64))?;
        }
        if range.reverse {
            set("reverse", JsValue::TRUE)?;
        }
        let map = settle("storage.list", self.storage.list_with_options(options)).await?;
        let mut entries = entries_of(map)?;
        if range.reverse {
            entries.reverse();
        }
        Ok(entries)
    }

    async fn delete_all(&self) -> Result<(), Error> {
        // `deleteAll` keeps the alarm on Cloudflare; the contract clears it too, in the same batch.
        let entries = self.storage.delete_all();
        let alarm = self.storage.delete_alarm(Self::no_options());
        settle("storage.deleteAll", entries).await?;
        settle("storage.deleteAlarm", alarm).await.map(|_| ())
    }

    async fn get_alarm(&self) -> Result<Option<SystemTime>, Error> {
        let at = settle(
            "storage.getAlarm",
            self.storage.get_alarm(Self::no_options()),
        )
        .await?;
        Ok(at
            .as_f64()
            .filter(|ms| ms.is_finite() && *ms >= 0.0)
            // A finite, non-negative millisecond count; the cast saturates.
            .map(|ms| UNIX_EPOCH + Duration::from_millis(saturating_ms(ms))))
    }

    async fn set_alarm(&self, at: SystemTime) -> Result<(), Error> {
        let ms = at
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        #[allow(clippy::cast_precision_loss)] // milliseconds since 1970 are far below 2^53
        let date = js_sys::Date::new(&JsValue::from_f64(ms as f64));
        settle(
            "storage.setAlarm",
            self.storage.set_alarm(date, Self::no_options()),
        )
        .await
        .map(|_| ())
    }

    async fn delete_alarm(&self) -> Result<(), Error> {
        settle(
            "storage.deleteAlarm",
            self.storage.delete_alarm(Self::no_options()),
        )
        .await
        .map(|_| ())
    }
}

#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
pub(super) fn saturating_ms(ms: f64) -> u64 {
    ms as u64
}
