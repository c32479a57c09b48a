//! Durable objects on Cloudflare (feature `workers`, wasm32 only): an [`edge_core::durable::DurableObject`]
//! run as a real Cloudflare Durable Object, with the same turn semantics as the in-process
//! [`runtime`](crate::runtime).
//!
//! | piece | what it is |
//! |---|---|
//! | [`WorkersStorage`] | the DO storage API as a [`Storage`]: values as bytes, batches atomic, the alarm |
//! | [`WorkersSockets`] | the hibernatable WebSocket API as a [`SocketHub`] |
//! | [`Bridge`] | runs one object: requests, alarms and WebSocket events as turns |
//! | [`durable_object!`](crate::durable_object) | declares the Cloudflare class that hosts your object |
//! | [`WorkersNamespace`] | a DO namespace binding as an [`ObjectNamespace`], for the Worker that calls objects |
//!
//! # Turns, as in the in-process runtime
//!
//! The bridge runs one handler at a time per object, even while it awaits a `fetch` elsewhere (Cloudflare
//! alone would let another event in then), buffers the handler's storage writes in an
//! [`ObjectStorage`], commits them as one batch when it returns (one batch is one atomic write on
//! Cloudflare: every call is issued without an `await` between them), and releases the response and the
//! WebSocket messages it sent only once that batch is durable. So an object tested against the in-process
//! runtime behaves the same here.
//!
//! A handler that returns an error still commits its writes; an alarm handler's error is rethrown, so
//! Cloudflare retries the alarm with backoff. A failed commit answers `503` and closes the object's
//! WebSockets with 1011. A handler that panics traps the isolate (there is no unwinding on wasm32), and
//! Cloudflare resets the object: write objects that return errors.
//!
//! ```ignore
//! // In the Worker crate (which depends on `worker`):
//! edge_do::durable_object!(CounterObject, Counter, |state| Counter::new(state.storage));
//! ```
//! and in `wrangler.toml`: a `[[durable_objects.bindings]]` with `class_name = "CounterObject"`, and a
//! migration that creates the class.

use std::rc::Rc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use edge_core::durable::{
    AlarmInfo, DurableObject, ListRange, LocationHint, ObjectId, ObjectNamespace, SocketHub,
    SocketId, SocketMessage, Storage, WriteBatch, check_write,
};
use edge_core::workers::{
    js_error, request_from_worker, request_to_web_sys, response_from_web_sys, response_to_worker,
};
use edge_core::{Body, Error, ErrorKind};
use futures_util::lock::Mutex as AsyncMutex;
use http::{Request, Response, StatusCode, header};
use js_sys::{Object, Reflect, Uint8Array};
use serde::{Deserialize, Serialize};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use worker::worker_sys::{DurableObjectState, DurableObjectStorage};

use crate::storage::ObjectStorage;

/// The request header a Worker sets on a WebSocket upgrade it forwards to an object: the new connection's
/// attachment (a user name, for a [`Room`](crate::Room)). Visible ASCII; absent means empty.
pub const SOCKET_ATTACHMENT_HEADER: &str = "edge-socket-attachment";

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
fn saturating_ms(ms: f64) -> u64 {
    ms as u64
}

/// What a connection's Cloudflare attachment holds: its id in the hub and the object's attachment.
#[derive(Serialize, Deserialize)]
struct Attachment {
    id: String,
    data: Vec<u8>,
}

/// An object's WebSockets on Cloudflare's hibernatable WebSocket API, as a [`SocketHub`]. Connections
/// survive the object's hibernation: their ids and attachments live in the platform's per-socket
/// attachment, not in memory.
///
/// Messages sent during a turn are held until the turn's writes are durable, then sent in order (the
/// output gate, as in the in-process [`Sockets`](crate::Sockets)).
#[derive(Clone)]
pub struct WorkersSockets {
    state: Rc<DurableObjectState>,
    shared: Arc<Mutex<SocketsState>>,
}

#[derive(Default)]
struct SocketsState {
    outbox: Vec<(web_sys::WebSocket, SocketMessage)>,
    /// The connection whose close is being handled: no longer open, its attachment still readable.
    closing: Option<web_sys::WebSocket>,
}

impl std::fmt::Debug for WorkersSockets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkersSockets").finish_non_exhaustive()
    }
}

fn attachment_of(socket: &web_sys::WebSocket) -> Option<(SocketId, Bytes)> {
    let socket = worker::WebSocket::from(socket.clone());
    let attachment: Attachment = socket.deserialize_attachment().ok()??;
    let id = attachment.id.parse().ok()?;
    Some((SocketId(id), Bytes::from(attachment.data)))
}

const OPEN: u16 = 1;

impl WorkersSockets {
    fn new(state: DurableObjectState) -> Self {
        Self {
            state: Rc::new(state),
            shared: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SocketsState> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn open_sockets(&self) -> Vec<(SocketId, web_sys::WebSocket)> {
        let mut open: Vec<(SocketId, web_sys::WebSocket)> = self
            .state
            .get_websockets()
            .unwrap_or_default()
            .into_iter()
            .filter(|ws| ws.ready_state() == OPEN)
            .filter_map(|ws| attachment_of(&ws).map(|(id, _)| (id, ws)))
            .collect();
        // Ids grow with time, so this is oldest first.
        open.sort_by_key(|(id, _)| *id);
        open
    }

    fn find(&self, socket: SocketId) -> Option<web_sys::WebSocket> {
        let closing = self.lock().closing.clone();
        self.state
            .get_websockets()
            .unwrap_or_default()
            .into_iter()
            .chain(closing)
            .find(|ws| attachment_of(ws).is_some_and(|(id, _)| id == socket))
    }

    fn release(&self) {
        let outbox = std::mem::take(&mut self.lock().outbox);
        for (socket, message) in outbox {
            let sent = match &message {
                SocketMessage::Text(text) => socket.send_with_str(text),
                SocketMessage::Binary(bytes) => socket.send_with_u8_array(bytes),
            };
            // A connection that went away meanwhile gets its close event; the others are not disturbed.
            let _ = sent;
        }
    }

    fn discard(&self) {
        self.lock().outbox.clear();
    }

    fn close_all(&self, code: u16) {
        for (_, socket) in self.open_sockets() {
            let _ = socket.close_with_code(code);
        }
    }
}

impl SocketHub for WorkersSockets {
    fn sockets(&self) -> Vec<SocketId> {
        self.open_sockets().into_iter().map(|(id, _)| id).collect()
    }

    fn send(&self, to: SocketId, message: SocketMessage) -> bool {
        match self.open_sockets().into_iter().find(|(id, _)| *id == to) {
            Some((_, socket)) => {
                self.lock().outbox.push((socket, message));
                true
            }
            None => false,
        }
    }

    fn broadcast(&self, message: &SocketMessage, except: Option<SocketId>) -> usize {
        let targets: Vec<web_sys::WebSocket> = self
            .open_sockets()
            .into_iter()
            .filter(|(id, _)| Some(*id) != except)
            .map(|(_, ws)| ws)
            .collect();
        let reached = targets.len();
        let mut state = self.lock();
        state
            .outbox
            .extend(targets.into_iter().map(|ws| (ws, message.clone())));
        reached
    }

    fn attachment(&self, socket: SocketId) -> Option<Bytes> {
        self.find(socket)
            .and_then(|ws| attachment_of(&ws))
            .map(|(_, data)| data)
    }

    fn set_attachment(&self, socket: SocketId, attachment: Bytes) -> bool {
        let Some(ws) = self.find(socket) else {
            return false;
        };
        worker::WebSocket::from(ws)
            .serialize_attachment(Attachment {
                id: socket.0.to_string(),
                data: attachment.to_vec(),
            })
            .is_ok()
    }

    fn close(&self, socket: SocketId, code: u16) {
        if let Some(ws) = self.find(socket) {
            let _ = ws.close_with_code(code);
        }
    }
}

/// What an object is created with on Cloudflare (the counterpart of [`ObjectState`](crate::ObjectState)).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct WorkersObjectState {
    /// The object's id, as Cloudflare names it (the name it was created from, when it has one).
    pub id: ObjectId,
    /// The object's storage: writes buffered per turn and committed behind the output gate.
    pub storage: ObjectStorage<WorkersStorage>,
    /// The object's WebSocket connections.
    pub sockets: WorkersSockets,
    /// The Worker's environment (bindings, variables, secrets).
    pub env: worker::Env,
}

/// Runs one [`DurableObject`] as a Cloudflare Durable Object. Made by [`durable_object!`](crate::durable_object);
/// see the [module docs](self) for the semantics.
pub struct Bridge<O> {
    object: O,
    storage: ObjectStorage<WorkersStorage>,
    sockets: WorkersSockets,
    /// The input gate: one turn at a time.
    gate: AsyncMutex<()>,
    next_socket: std::sync::atomic::AtomicU64,
}

impl<O> std::fmt::Debug for Bridge<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge").finish_non_exhaustive()
    }
}

/// The error a turn could not even start with (no storage): answered as a `503` by every handler.
fn unavailable(error: &Error) -> worker::Error {
    worker::Error::RustError(format!("durable object unavailable: {error}"))
}

impl<O: DurableObject> Bridge<O> {
    /// Creates the object from Cloudflare's state with `make`.
    ///
    /// # Errors
    ///
    /// The state has no storage.
    pub fn new(
        state: worker::durable::State,
        env: worker::Env,
        make: impl FnOnce(WorkersObjectState) -> O,
    ) -> Result<Self, Error> {
        let raw = state._inner();
        // The name the object was created from (what `WorkersNamespace` sends), else Cloudflare's hex id.
        let id = raw
            .id()
            .ok()
            .and_then(|id| {
                let text = |property: &str| {
                    Reflect::get(&id, &property.into())
                        .ok()
                        .and_then(|v| v.as_string())
                };
                text("name")
                    .or_else(|| js_sys::JsString::from(JsValue::from(id.clone())).as_string())
            })
            .map_or_else(
                || ObjectId::from_name("unnamed"),
                |name| ObjectId::from_name(&name),
            );
        let storage = ObjectStorage::new(WorkersStorage::new(&raw)?);
        let sockets = WorkersSockets::new(raw);
        let object = make(WorkersObjectState {
            id,
            storage: storage.clone(),
            sockets: sockets.clone(),
            env,
        });
        Ok(Self {
            object,
            storage,
            sockets,
            gate: AsyncMutex::new(()),
            next_socket: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Runs `handler` as one turn: alone, then its writes committed, then its messages released.
    async fn turn<T>(&self, handler: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
        let gate = self.gate.lock().await;
        let result = handler.await;
        let commit = self.storage.end_turn();
        drop(gate);
        match commit.durable().await {
            Ok(()) => {
                self.sockets.release();
                result
            }
            Err(error) => {
                self.sockets.discard();
                self.sockets.close_all(1011);
                Err(error)
            }
        }
    }

    /// Handles a request (a WebSocket upgrade accepts the connection into the object).
    ///
    /// # Errors
    ///
    /// Only when a response cannot be built; the object's own errors are answered as JSON `5xx`s.
    pub async fn fetch(&self, request: worker::Request) -> worker::Result<worker::Response> {
        let request = request_from_worker(request).map_err(|e| unavailable(&e))?;
        let is_upgrade = request
            .headers()
            .get(header::UPGRADE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
        if is_upgrade {
            return self.accept(&request).await;
        }
        let response = match self.turn(self.object.fetch(request)).await {
            Ok(response) => response,
            Err(error) => error_response(&error),
        };
        response_to_worker(response).map_err(|e| unavailable(&e))
    }

    async fn accept(&self, request: &Request<Body>) -> worker::Result<worker::Response> {
        let attachment = request
            .headers()
            .get(SOCKET_ATTACHMENT_HEADER)
            .map(|v| v.as_bytes().to_vec())
            .unwrap_or_default();
        let pair = worker::WebSocketPair::new()?;
        let id = self.new_socket_id();
        let server: &web_sys::WebSocket = pair.server.as_ref();
        self.sockets
            .state
            .accept_websocket(server)
            .map_err(|e| unavailable(&js_error(ErrorKind::Backend, "acceptWebSocket", &e)))?;
        pair.server.serialize_attachment(Attachment {
            id: id.0.to_string(),
            data: attachment,
        })?;
        if let Err(error) = self.turn(self.object.websocket_open(id)).await {
            let _ = server.close_with_code_and_reason(1011, error.kind().as_str());
        }
        worker::Response::from_websocket(pair.client)
    }

    /// A new socket id: milliseconds since the epoch, times 1024, plus a counter, so ids stay unique and
    /// ordered across hibernation (which resets memory).
    fn new_socket_id(&self) -> SocketId {
        let n = self
            .next_socket
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let ms = saturating_ms(js_sys::Date::now());
        SocketId(ms.saturating_mul(1024).saturating_add(n % 1024))
    }

    /// Runs the object's alarm handler. An error is rethrown so that Cloudflare retries.
    ///
    /// workers-rs (0.8) does not pass Cloudflare's `alarmInfo` on to Rust, so the handler is told
    /// [`AlarmInfo::default()`] (retry count 0) on every attempt here; Cloudflare still retries.
    ///
    /// # Errors
    ///
    /// The handler's error.
    pub async fn alarm(&self) -> worker::Result<worker::Response> {
        self.turn(self.object.alarm(AlarmInfo::default()))
            .await
            .map_err(|e| worker::Error::RustError(format!("alarm failed: {e}")))?;
        worker::Response::empty()
    }

    /// Delivers a message from one of the object's connections.
    ///
    /// # Errors
    ///
    /// Never: an error from the object closes that connection with 1011.
    pub async fn websocket_message(
        &self,
        ws: worker::WebSocket,
        message: worker::WebSocketIncomingMessage,
    ) -> worker::Result<()> {
        let Some((id, _)) = attachment_of(ws.as_ref()) else {
            return Ok(());
        };
        let message = match message {
            worker::WebSocketIncomingMessage::String(text) => SocketMessage::Text(text),
            worker::WebSocketIncomingMessage::Binary(bytes) => {
                SocketMessage::Binary(Bytes::from(bytes))
            }
        };
        if let Err(error) = self.turn(self.object.websocket_message(id, message)).await {
            let _ = ws
                .as_ref()
                .close_with_code_and_reason(1011, error.kind().as_str());
        }
        Ok(())
    }

    /// A connection closed (by the client, or dropped with 1006).
    ///
    /// # Errors
    ///
    /// Never: the object's error is dropped with the connection.
    pub async fn websocket_close(&self, ws: worker::WebSocket, code: usize) -> worker::Result<()> {
        let raw: &web_sys::WebSocket = ws.as_ref();
        let Some((id, _)) = attachment_of(raw) else {
            return Ok(());
        };
        // Complete the closing handshake (newer compatibility dates do it on their own; then this is a no-op).
        let code = u16::try_from(code).unwrap_or(1006);
        let _ = raw.close_with_code(if code == 1005 || code == 1006 {
            1000
        } else {
            code
        });
        self.sockets.lock().closing = Some(raw.clone());
        let _ = self.turn(self.object.websocket_close(id, code)).await;
        self.sockets.lock().closing = None;
        Ok(())
    }
}

fn error_response(error: &Error) -> Response<Body> {
    let status = match error.kind() {
        ErrorKind::InvalidInput | ErrorKind::InvalidKey | ErrorKind::TooLarge => {
            StatusCode::BAD_REQUEST
        }
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    let body = serde_json::json!({ "error": error.kind().as_str(), "detail": error.detail() });
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// Declares the Cloudflare Durable Object class `$class` that runs the [`DurableObject`] `$object`,
/// created by `$make` (a closure from [`WorkersObjectState`] to the object). The Worker crate must depend on
/// `worker`; the class name is what `wrangler.toml` binds.
///
/// ```ignore
/// edge_do::durable_object!(RoomObject, Room<ObjectStorage<WorkersStorage>, WorkersSockets>,
///     |state| Room::new(state.storage, state.sockets));
/// ```
#[macro_export]
macro_rules! durable_object {
    ($class:ident, $object:ty, $make:expr) => {
        #[::worker::durable_object]
        pub struct $class {
            bridge: ::core::result::Result<$crate::workers::Bridge<$object>, ::std::string::String>,
        }

        impl ::worker::DurableObject for $class {
            fn new(state: ::worker::State, env: ::worker::Env) -> Self {
                Self {
                    bridge: $crate::workers::Bridge::new(state, env, $make)
                        .map_err(|e| e.to_string()),
                }
            }

            async fn fetch(&self, req: ::worker::Request) -> ::worker::Result<::worker::Response> {
                match &self.bridge {
                    Ok(bridge) => bridge.fetch(req).await,
                    Err(e) => ::worker::Response::error(e.as_str(), 503),
                }
            }

            async fn alarm(&self) -> ::worker::Result<::worker::Response> {
                match &self.bridge {
                    Ok(bridge) => bridge.alarm().await,
                    Err(e) => Err(::worker::Error::RustError(e.clone())),
                }
            }

            async fn websocket_message(
                &self,
                ws: ::worker::WebSocket,
                message: ::worker::WebSocketIncomingMessage,
            ) -> ::worker::Result<()> {
                match &self.bridge {
                    Ok(bridge) => bridge.websocket_message(ws, message).await,
                    Err(_) => Ok(()),
                }
            }

            async fn websocket_close(
                &self,
                ws: ::worker::WebSocket,
                code: usize,
                _reason: ::std::string::String,
                _was_clean: bool,
            ) -> ::worker::Result<()> {
                match &self.bridge {
                    Ok(bridge) => bridge.websocket_close(ws, code).await,
                    Err(_) => Ok(()),
                }
            }
        }
    };
}

/// A Durable Object namespace binding as an [`ObjectNamespace`]: the Worker side of calling objects.
///
/// Ids map by name: [`ObjectId`]s the SDK makes from names go to Cloudflare's `idFromName` of the same
/// name; other ids (unique ones) go to `idFromName` of their text, which is stable too.
#[derive(Clone)]
pub struct WorkersNamespace {
    namespace: worker::ObjectNamespace,
    hint: Option<LocationHint>,
}

impl std::fmt::Debug for WorkersNamespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkersNamespace")
            .field("hint", &self.hint)
            .finish_non_exhaustive()
    }
}

impl WorkersNamespace {
    /// The namespace bound as `binding`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`] when no Durable Object namespace is bound under that name.
    pub fn from_env(env: &worker::Env, binding: &str) -> Result<Self, Error> {
        let namespace = env.durable_object(binding).map_err(|e| {
            Error::new(
                ErrorKind::NotFound,
                format!("no Durable Object namespace is bound as `{binding}`: {e}"),
            )
        })?;
        Ok(Self {
            namespace,
            hint: None,
        })
    }

    /// Creates new objects near `hint` (Cloudflare's `locationHint`; objects that exist stay where they are).
    #[must_use]
    pub fn with_location_hint(mut self, hint: LocationHint) -> Self {
        self.hint = Some(hint);
        self
    }
}

impl ObjectNamespace for WorkersNamespace {
    async fn fetch(&self, id: &ObjectId, request: Request<Body>) -> Result<Response<Body>, Error> {
        let name = id.name().unwrap_or(id.as_str());
        let cf_id = self
            .namespace
            .id_from_name(name)
            .map_err(|e| Error::new(ErrorKind::InvalidInput, format!("durable object id: {e}")))?;
        let stub = match self.hint {
            Some(hint) => cf_id.get_stub_with_location_hint(hint.code()),
            None => cf_id.get_stub(),
        }
        .map_err(|e| Error::new(ErrorKind::Unavailable, format!("durable object stub: {e}")))?;
        let request = request_to_web_sys(absolute(request)?)?;
        let response = stub
            .fetch_with_request(worker::Request::from(request))
            .await
            .map_err(|e| Error::new(ErrorKind::Unavailable, format!("durable object call: {e}")))?;
        let response: web_sys::Response = response.into();
        response_from_web_sys(response)
    }
}

/// Stubs need absolute URLs; a path alone gets a placeholder origin (objects see only the path).
fn absolute(mut request: Request<Body>) -> Result<Request<Body>, Error> {
    if request.uri().scheme().is_none() {
        let path = request
            .uri()
            .path_and_query()
            .map_or("/", http::uri::PathAndQuery::as_str);
        *request.uri_mut() = format!("https://durable-object.invalid{path}")
            .parse()
            .map_err(|_| Error::new(ErrorKind::InvalidInput, "durable object request URL"))?;
    }
    Ok(request)
}
