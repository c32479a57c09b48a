//! The demo's durable objects: an exact counter per name and a collaborative room per name, each
//! namespace in its own SQLite database (in memory by default, files under `--objects-dir` if set).
//!
//! | route | what answers |
//! |---|---|
//! | `POST /api/counter/{name}` | the counter object `name`: adds one, answers `{"name":…,"value":n}`; exact under any concurrency |
//! | `GET /api/counter/{name}` | the same object's value |
//! | `GET /rooms/{name}` (WebSocket upgrade) | the room `name`, [`edge_do::room`]'s protocol (the axum host upgrades) |
//! | `GET /rooms/{name}` (plain) | the room's presence and message count |
//!
//! Both routes sit behind the WAF and the rate limits (the `/api/` quota for counters), like any other
//! request; a bad name is a `400`, a failed object a `503` with a JSON error.
//!
//! The objects ([`ExactCounter`], [`Room`](edge_do::Room)) and the routes ([`ObjectRoutes`], over any two
//! [`ObjectNamespace`]s) are the same on every host; only where the objects live differs: [`Objects`] runs
//! them in process on SQLite (native hosts), the Worker binds Cloudflare Durable Objects.

use std::convert::Infallible;
use std::task::{Context, Poll};

use bytes::Bytes;
use edge_core::durable::{DurableObject, ObjectNamespace, Storage};
use edge_core::{Body, BoxFuture, Error, ErrorKind, MaybeSend};
use http::{Method, Request, Response, StatusCode, header};
use serde_json::json;

#[cfg(not(target_arch = "wasm32"))]
pub use native::{Counters, IDLE_EVICTION, Objects, RoomObject, Rooms};

/// A counter that is exact because it is one object: every increment is a turn of the same instance,
/// committed before it is answered. Over any object [`Storage`].
#[derive(Debug)]
pub struct ExactCounter<St>(pub St);

impl<St: Storage + 'static> DurableObject for ExactCounter<St> {
    async fn fetch(&self, request: Request<Body>) -> Result<Response<Body>, Error> {
        let value = match self.0.get("value").await? {
            None => 0u64,
            Some(bytes) => std::str::from_utf8(&bytes)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| Error::new(ErrorKind::Corrupt, "counter value is not a number"))?,
        };
        let value = if request.method() == Method::POST {
            let next = value.saturating_add(1);
            self.0.put("value", Bytes::from(next.to_string())).await?;
            next
        } else {
            value
        };
        Ok(json_response(StatusCode::OK, &json!({ "value": value })))
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::io;
    use std::path::Path;
    use std::time::Duration;

    use edge_core::host::tokio::TokioTimer;
    use edge_core::host::tokio::TokioWaitUntil;
    use edge_do::{
        Namespace, ObjectState, ObjectStorage, Room, Sockets, SqliteStorage, SqliteStore,
    };

    use super::ExactCounter;

    /// A room object as the demo runs it.
    pub type RoomObject = Room<ObjectStorage<SqliteStorage>, Sockets>;
    /// The demo's rooms.
    pub type Rooms = Namespace<RoomObject, SqliteStore>;
    /// The demo's counters.
    pub type Counters = Namespace<ExactCounter<ObjectStorage<SqliteStorage>>, SqliteStore>;

    /// The demo's object namespaces.
    #[derive(Clone, Debug)]
    pub struct Objects {
        /// Rooms, by name.
        pub rooms: Rooms,
        /// Exact counters, by name.
        pub counters: Counters,
    }

    /// A turn of a demo object may take this long before the object is reset.
    const TURN_LIMIT: Duration = Duration::from_secs(10);

    impl Objects {
        /// Opens the namespaces: in memory, or one SQLite file per namespace in `dir`. Needs a tokio
        /// runtime (turns are timed with tokio's clock); a turn whose client went away runs to its end
        /// on `background`.
        ///
        /// # Errors
        ///
        /// A database could not be opened or created.
        pub fn open(dir: Option<&Path>, background: &TokioWaitUntil) -> io::Result<Self> {
            let store = |name: &str| -> io::Result<SqliteStore> {
                match dir {
                    Some(dir) => {
                        std::fs::create_dir_all(dir)?;
                        SqliteStore::open(dir.join(format!("{name}.db")))
                    }
                    None => SqliteStore::in_memory(),
                }
                .map_err(io::Error::other)
            };
            Ok(Self {
                rooms: Namespace::new(store("rooms")?, |state: ObjectState<_>| {
                    Room::new(state.storage, state.sockets)
                })
                .with_time_limit(TURN_LIMIT, TokioTimer::new())
                .with_wait_until(background.clone()),
                counters: Namespace::new(store("counters")?, |state: ObjectState<_>| {
                    ExactCounter(state.storage)
                })
                .with_time_limit(TURN_LIMIT, TokioTimer::new())
                .with_wait_until(background.clone()),
            })
        }
    }

    /// Objects idle this long are evicted (their state stays in storage), so the live set stays bounded
    /// however many names clients make up.
    pub const IDLE_EVICTION: Duration = Duration::from_secs(60);

    impl Objects {
        /// Starts the housekeeping task: idle eviction every [`IDLE_EVICTION`] / 2, and the alarm drivers.
        /// Abort the handle to stop it.
        #[must_use]
        pub fn start_housekeeping(&self) -> tokio::task::JoinHandle<()> {
            let objects = self.clone();
            tokio::spawn(async move {
                let timer = TokioTimer::new();
                let poll = Duration::from_secs(1);
                let alarms = futures_util::future::join(
                    objects.rooms.drive_alarms(&timer, poll),
                    objects.counters.drive_alarms(&timer, poll),
                );
                let eviction = async {
                    loop {
                        tokio::time::sleep(IDLE_EVICTION / 2).await;
                        objects.rooms.evict_idle(IDLE_EVICTION).await;
                        objects.counters.evict_idle(IDLE_EVICTION).await;
                    }
                };
                futures_util::future::join(alarms, eviction).await;
            })
        }
    }
}

/// Whether `name` may name an object: 1 to 64 of `A-Z a-z 0-9 - _ .`.
#[must_use]
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A JSON response with `status`: what the demo's own endpoints answer (and the Worker's test routes).
#[must_use]
pub fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

/// Routes counter and room requests to their objects (in the namespaces `C` and `R`); everything else to
/// `inner`.
#[derive(Clone, Debug)]
pub struct ObjectRoutes<S, C, R> {
    inner: S,
    counters: C,
    rooms: R,
}

impl<S, C, R> ObjectRoutes<S, C, R> {
    /// Wraps `inner`.
    pub fn new(inner: S, counters: C, rooms: R) -> Self {
        Self {
            inner,
            counters,
            rooms,
        }
    }
}

enum Route {
    Counter(String),
    Room(String),
    Elsewhere,
}

fn route(request: &Request<Body>) -> Route {
    let path = request.uri().path();
    if let Some(name) = path.strip_prefix("/api/counter/") {
        Route::Counter(name.to_owned())
    } else if let Some(name) = path.strip_prefix("/rooms/") {
        Route::Room(name.to_owned())
    } else {
        Route::Elsewhere
    }
}

async fn answer<N: ObjectNamespace>(
    namespace: &N,
    name: &str,
    request: Request<Body>,
    methods: &[Method],
) -> Response<Body> {
    if !valid_name(name) {
        return json_response(
            StatusCode::BAD_REQUEST,
            &json!({"error": "names are 1 to 64 of A-Z a-z 0-9 - _ ."}),
        );
    }
    if !methods.contains(request.method()) {
        return json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({"error": "method not allowed"}),
        );
    }
    let id = namespace.id_from_name(name);
    match namespace.fetch(&id, request).await {
        Ok(response) => response,
        Err(e) => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"error": format!("the object failed: {}", e.kind())}),
        ),
    }
}

impl<S, C, R> tower::Service<Request<Body>> for ObjectRoutes<S, C, R>
where
    S: tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + MaybeSend
        + 'static,
    S::Future: MaybeSend + 'static,
    C: ObjectNamespace + Clone + 'static,
    R: ObjectNamespace + Clone + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        match route(&request) {
            Route::Counter(name) => {
                let counters = self.counters.clone();
                Box::pin(async move {
                    Ok(answer(&counters, &name, request, &[Method::GET, Method::POST]).await)
                })
            }
            Route::Room(name) => {
                let rooms = self.rooms.clone();
                Box::pin(async move { Ok(answer(&rooms, &name, request, &[Method::GET]).await) })
            }
            // Called here, not from a future: nothing behind needs cloning.
            Route::Elsewhere => Box::pin(self.inner.call(request)),
        }
    }
}
