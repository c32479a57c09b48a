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

mod bridge;
mod namespace;
mod sockets;
mod storage;

pub use bridge::{Bridge, WorkersObjectState};
pub use namespace::WorkersNamespace;
pub use sockets::WorkersSockets;
pub use storage::WorkersStorage;

/// The request header a Worker sets on a WebSocket upgrade it forwards to an object: the new connection's
/// attachment (a user name, for a [`Room`](crate::Room)). Visible ASCII; absent means empty.
pub const SOCKET_ATTACHMENT_HEADER: &str = "edge-socket-attachment";
