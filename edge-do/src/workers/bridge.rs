//! [`Bridge`]: one [`DurableObject`](edge_core::durable::DurableObject) run as a Cloudflare Durable Object, and
//! [`durable_object!`](crate::durable_object), which declares the class that hosts it.

use bytes::Bytes;
use edge_core::durable::{AlarmInfo, DurableObject, ObjectId, SocketId, SocketMessage};
use edge_core::host::workers::{js_error, request_from_worker, response_to_worker};
use edge_core::{Body, Error, ErrorKind};
use futures_util::lock::Mutex as AsyncMutex;
use http::{Request, Response, StatusCode, header};
use js_sys::Reflect;
use wasm_bindgen::JsValue;

use crate::storage::ObjectStorage;

use super::SOCKET_ATTACHMENT_HEADER;
use super::sockets::{Attachment, WorkersSockets, attachment_of};
use super::storage::{WorkersStorage, saturating_ms};

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
