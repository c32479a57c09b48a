//! [`WorkersSockets`]: the hibernatable WebSocket API as a [`SocketHub`](edge_core::durable::SocketHub).

use std::rc::Rc;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use edge_core::durable::{SocketHub, SocketId, SocketMessage};
use serde::{Deserialize, Serialize};
use worker::worker_sys::DurableObjectState;

/// What a connection's Cloudflare attachment holds: its id in the hub and the object's attachment.
#[derive(Serialize, Deserialize)]
pub(super) struct Attachment {
    pub(super) id: String,
    pub(super) data: Vec<u8>,
}

/// An object's WebSockets on Cloudflare's hibernatable WebSocket API, as a [`SocketHub`]. Connections
/// survive the object's hibernation: their ids and attachments live in the platform's per-socket
/// attachment, not in memory.
///
/// Messages sent during a turn are held until the turn's writes are durable, then sent in order (the
/// output gate, as in the in-process [`Sockets`](crate::Sockets)).
#[derive(Clone)]
pub struct WorkersSockets {
    pub(super) state: Rc<DurableObjectState>,
    shared: Arc<Mutex<SocketsState>>,
}

#[derive(Default)]
pub(super) struct SocketsState {
    outbox: Vec<(web_sys::WebSocket, SocketMessage)>,
    /// The connection whose close is being handled: no longer open, its attachment still readable.
    pub(super) closing: Option<web_sys::WebSocket>,
}

impl std::fmt::Debug for WorkersSockets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkersSockets").finish_non_exhaustive()
    }
}

pub(super) fn attachment_of(socket: &web_sys::WebSocket) -> Option<(SocketId, Bytes)> {
    let socket = worker::WebSocket::from(socket.clone());
    let attachment: Attachment = socket.deserialize_attachment().ok()??;
    let id = attachment.id.parse().ok()?;
    Some((SocketId(id), Bytes::from(attachment.data)))
}

pub(super) const OPEN: u16 = 1;

impl WorkersSockets {
    pub(super) fn new(state: DurableObjectState) -> Self {
        Self {
            state: Rc::new(state),
            shared: Arc::default(),
        }
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, SocketsState> {
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

    pub(super) fn release(&self) {
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

    pub(super) fn discard(&self) {
        self.lock().outbox.clear();
    }

    pub(super) fn close_all(&self, code: u16) {
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
