//! [`Room`]: a collaborative room as a durable object — everyone connected to one room id
//! shares presence and a message stream, and the recent history survives the object.
//!
//! The protocol is JSON text frames. The attachment a connection was accepted with is the user's name.
//!
//! | direction | frame |
//! |---|---|
//! | to a new connection | `{"type":"welcome","you":"ana","present":["bo"],"history":[{"seq":1,"from":"bo","text":"hi"}]}` |
//! | to the others, on connect | `{"type":"join","user":"ana"}` |
//! | client → room | any text (at most [`MAX_MESSAGE`] bytes) |
//! | to all but the sender | `{"type":"message","seq":2,"from":"ana","text":"…"}` |
//! | to the sender | `{"type":"ack","seq":2}` (sent once the message is durable) |
//! | to the others, on close | `{"type":"leave","user":"ana"}` |
//! | to the sender of a bad frame | `{"type":"error","reason":"…"}` |
//!
//! `GET` on the room answers `{"present":[…],"messages":N}`.

use bytes::Bytes;
use edge_core::durable::{
    DurableObject, ListRange, SocketHub, SocketId, SocketMessage, Storage, WriteBatch,
};
use edge_core::{Body, Error, ErrorKind};
use http::{Request, Response, header};
use serde_json::json;

/// Longest message text accepted, in bytes.
pub const MAX_MESSAGE: usize = 4096;
/// Messages kept as history for new connections.
pub const HISTORY: u64 = 50;

const SEQ_KEY: &str = "seq";

fn message_key(seq: u64) -> String {
    format!("msg:{seq:020}")
}

/// A chat/collaboration room over any [`Storage`] and [`SocketHub`]: presence, broadcast to all but the
/// sender, and the last [`HISTORY`] messages in storage.
///
/// ```
/// use edge_do::{MemoryStorageProvider, Namespace, Room};
///
/// let rooms = Namespace::new(MemoryStorageProvider::new(), |state| {
///     Room::new(state.storage, state.sockets)
/// });
/// # let _ = rooms;
/// ```
#[derive(Debug)]
pub struct Room<St, H> {
    storage: St,
    hub: H,
}

impl<St: Storage, H: SocketHub> Room<St, H> {
    /// A room keeping its history in `storage`, talking through `hub`.
    pub fn new(storage: St, hub: H) -> Self {
        Self { storage, hub }
    }

    fn user(&self, socket: SocketId) -> String {
        self.hub
            .attachment(socket)
            .map_or_else(String::new, |a| String::from_utf8_lossy(&a).into_owned())
    }

    fn present(&self, except: Option<SocketId>) -> Vec<String> {
        self.hub
            .sockets()
            .into_iter()
            .filter(|s| Some(*s) != except)
            .map(|s| self.user(s))
            .collect()
    }

    async fn last_seq(&self) -> Result<u64, Error> {
        match self.storage.get(SEQ_KEY).await? {
            None => Ok(0),
            Some(bytes) => std::str::from_utf8(&bytes)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| Error::new(ErrorKind::Corrupt, "room sequence is not a number")),
        }
    }

    fn send_json(&self, to: SocketId, value: &serde_json::Value) {
        self.hub.send(to, SocketMessage::Text(value.to_string()));
    }
}

impl<St, H> DurableObject for Room<St, H>
where
    St: Storage + 'static,
    H: SocketHub + 'static,
{
    async fn fetch(&self, _request: Request<Body>) -> Result<Response<Body>, Error> {
        let body = json!({ "present": self.present(None), "messages": self.last_seq().await? });
        let mut response = Response::new(Body::from(body.to_string()));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        );
        Ok(response)
    }

    async fn websocket_open(&self, socket: SocketId) -> Result<(), Error> {
        let user = self.user(socket);
        let history: Vec<serde_json::Value> = self
            .storage
            .list(ListRange::prefix("msg:"))
            .await?
            .into_iter()
            // A history entry that does not decode is skipped rather than failing the connection.
            .filter_map(|(_, v)| serde_json::from_slice(&v).ok())
            .collect();
        self.send_json(
            socket,
            &json!({
                "type": "welcome",
                "you": user,
                "present": self.present(Some(socket)),
                "history": history,
            }),
        );
        let join = json!({ "type": "join", "user": user }).to_string();
        self.hub.broadcast(&SocketMessage::Text(join), Some(socket));
        Ok(())
    }

    async fn websocket_message(
        &self,
        socket: SocketId,
        message: SocketMessage,
    ) -> Result<(), Error> {
        let text = match message {
            SocketMessage::Text(text) if text.len() <= MAX_MESSAGE => text,
            SocketMessage::Text(_) => {
                self.send_json(
                    socket,
                    &json!({"type": "error", "reason": "message too large"}),
                );
                return Ok(());
            }
            SocketMessage::Binary(_) => {
                self.send_json(
                    socket,
                    &json!({"type": "error", "reason": "text frames only"}),
                );
                return Ok(());
            }
        };
        let from = self.user(socket);
        let seq = self.last_seq().await? + 1;
        let entry = json!({ "seq": seq, "from": from, "text": text });
        let mut batch = WriteBatch::new()
            .put(SEQ_KEY, Bytes::from(seq.to_string()))
            .put(message_key(seq), Bytes::from(entry.to_string()));
        if seq > HISTORY {
            batch = batch.delete(message_key(seq - HISTORY));
        }
        self.storage.write(batch).await?;
        let mut broadcast = entry;
        broadcast["type"] = json!("message");
        self.hub
            .broadcast(&SocketMessage::Text(broadcast.to_string()), Some(socket));
        self.send_json(socket, &json!({"type": "ack", "seq": seq}));
        Ok(())
    }

    async fn websocket_close(&self, socket: SocketId, _code: u16) -> Result<(), Error> {
        let leave = json!({ "type": "leave", "user": self.user(socket) }).to_string();
        self.hub.broadcast(&SocketMessage::Text(leave), None);
        Ok(())
    }
}
