//! WebSocket connections of in-process objects: [`Sockets`], the [`SocketHub`] an object talks through,
//! and [`Session`], the host's end of one connection.
//!
//! The host (the gateway's axum handler, a test) upgrades the connection itself and calls
//! [`Namespace::connect`](crate::Namespace::connect); from then on it pumps frames both ways: what the
//! client sends goes to [`Session::deliver`] (a turn of the object, under its input gate), and what the
//! object sends comes out of [`Session::next_outgoing`]. The object never sees the transport, so the same
//! object runs behind axum, hyper or Cloudflare's WebSocket API.
//!
//! What an object sends in a turn is held until that turn's writes are durable, like its response.
//! Each connection has a bounded queue ([`DEFAULT_QUEUE`] messages). A send to a connection whose queue is
//! full (a client that stopped reading) or whose host end is gone drops that connection from the hub at
//! once; its session then ends, the host closes it, and the object's `websocket_close` runs with 1006.
//! The other connections never wait for it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use edge_core::durable::{SocketHub, SocketId, SocketMessage};
use futures_channel::mpsc;

/// Messages queued per connection before a slow client is dropped.
pub const DEFAULT_QUEUE: usize = 64;

/// What the host should do on a connection, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outgoing {
    /// Send this message.
    Message(SocketMessage),
    /// Close the connection with this code (the object closed it).
    Close(u16),
}

struct Connection {
    queue: mpsc::Sender<Outgoing>,
    attachment: Bytes,
}

/// Something an object sent during a turn, held until the turn's writes are durable.
enum Held {
    To(SocketId, SocketMessage),
    AllBut(Option<SocketId>, SocketMessage),
    Close(Connection, u16),
}

#[derive(Default)]
struct Hub {
    open: BTreeMap<SocketId, Connection>,
    /// Attachments of connections that are gone but whose close has not run yet.
    closing: BTreeMap<SocketId, Bytes>,
    /// Sent during the current turn.
    held: Vec<Held>,
    /// Sent during ended turns whose commit is not durable yet, oldest first.
    awaiting: VecDeque<(u64, Vec<Held>)>,
    turns: u64,
}

impl Hub {
    /// Drops a dead or slow connection; its attachment stays readable until its close runs.
    fn drop_connection(&mut self, socket: SocketId) {
        if let Some(connection) = self.open.remove(&socket) {
            self.closing.insert(socket, connection.attachment);
        }
    }

    /// Queues `message` on `to`; a connection that cannot take it is dropped.
    fn deliver(&mut self, to: SocketId, message: SocketMessage) {
        if let Some(connection) = self.open.get_mut(&to) {
            if connection
                .queue
                .try_send(Outgoing::Message(message))
                .is_err()
            {
                self.drop_connection(to);
            }
        }
    }
}

/// The open connections of one object instance: its [`SocketHub`]. Cheap to clone.
///
/// Messages the object sends are held until the turn that sent them has committed its writes (the
/// output gate covers WebSocket messages as it covers responses), then queued in the order sent.
#[derive(Clone, Default)]
pub struct Sockets {
    hub: Arc<Mutex<Hub>>,
}

impl std::fmt::Debug for Sockets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sockets")
            .field("open", &self.lock().open.len())
            .finish()
    }
}

static NEXT_SOCKET: AtomicU64 = AtomicU64::new(1);

impl Sockets {
    fn lock(&self) -> MutexGuard<'_, Hub> {
        self.hub.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a connection; the receiver is the host's end of its queue.
    pub(crate) fn add(
        &self,
        attachment: Bytes,
        queue: usize,
    ) -> (SocketId, mpsc::Receiver<Outgoing>) {
        let id = SocketId(NEXT_SOCKET.fetch_add(1, Ordering::Relaxed));
        // A futures channel holds `buffer + 1` messages for its one sender.
        let (tx, rx) = mpsc::channel(queue.saturating_sub(1));
        self.lock().open.insert(
            id,
            Connection {
                queue: tx,
                attachment,
            },
        );
        (id, rx)
    }

    /// Takes a connection out of the hub for its close turn (its attachment stays readable).
    pub(crate) fn begin_close(&self, socket: SocketId) {
        self.lock().drop_connection(socket);
    }

    /// Forgets a connection entirely.
    pub(crate) fn forget(&self, socket: SocketId) {
        let mut hub = self.lock();
        hub.open.remove(&socket);
        hub.closing.remove(&socket);
    }

    /// Ends the current turn's messages: they wait for its commit. Returns the turn's number.
    pub(crate) fn end_turn(&self) -> u64 {
        let mut hub = self.lock();
        hub.turns += 1;
        let turn = hub.turns;
        let held = std::mem::take(&mut hub.held);
        if !held.is_empty() {
            hub.awaiting.push_back((turn, held));
        }
        turn
    }

    /// Sends what turns up to `turn` sent: their writes are durable.
    pub(crate) fn release(&self, turn: u64) {
        let mut hub = self.lock();
        while hub.awaiting.front().is_some_and(|(t, _)| *t <= turn) {
            let Some((_, held)) = hub.awaiting.pop_front() else {
                break;
            };
            for item in held {
                match item {
                    Held::To(to, message) => hub.deliver(to, message),
                    Held::AllBut(except, message) => {
                        let ids: Vec<SocketId> = hub
                            .open
                            .keys()
                            .copied()
                            .filter(|id| Some(*id) != except)
                            .collect();
                        for id in ids {
                            hub.deliver(id, message.clone());
                        }
                    }
                    Held::Close(mut connection, code) => {
                        let _ = connection.queue.try_send(Outgoing::Close(code));
                    }
                }
            }
        }
    }

    /// Forgets what the current turn sent (it was aborted).
    pub(crate) fn discard_turn(&self) {
        self.lock().held.clear();
    }

    /// Drops every connection and every held message (the object was reset or evicted): their
    /// sessions end.
    pub(crate) fn close_all(&self, code: u16) {
        let mut hub = self.lock();
        hub.held.clear();
        hub.awaiting.clear();
        for connection in hub.open.values_mut() {
            let _ = connection.queue.try_send(Outgoing::Close(code));
        }
        hub.open.clear();
    }

    /// How many connections are open.
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().open.len()
    }

    /// Whether none is.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.lock().open.is_empty()
    }
}

impl SocketHub for Sockets {
    fn sockets(&self) -> Vec<SocketId> {
        self.lock().open.keys().copied().collect()
    }

    fn send(&self, to: SocketId, message: SocketMessage) -> bool {
        let mut hub = self.lock();
        if !hub.open.contains_key(&to) {
            return false;
        }
        hub.held.push(Held::To(to, message));
        true
    }

    fn broadcast(&self, message: &SocketMessage, except: Option<SocketId>) -> usize {
        let mut hub = self.lock();
        let reached = hub.open.keys().filter(|id| Some(**id) != except).count();
        hub.held.push(Held::AllBut(except, message.clone()));
        reached
    }

    fn attachment(&self, socket: SocketId) -> Option<Bytes> {
        let hub = self.lock();
        hub.open
            .get(&socket)
            .map(|c| c.attachment.clone())
            .or_else(|| hub.closing.get(&socket).cloned())
    }

    fn set_attachment(&self, socket: SocketId, attachment: Bytes) -> bool {
        self.lock()
            .open
            .get_mut(&socket)
            .map(|c| c.attachment = attachment)
            .is_some()
    }

    fn close(&self, socket: SocketId, code: u16) {
        let mut hub = self.lock();
        if let Some(connection) = hub.open.remove(&socket) {
            hub.closing.insert(socket, connection.attachment.clone());
            hub.held.push(Held::Close(connection, code));
        }
    }
}

/// The host's end of one connection accepted into an object: see the [module docs](self).
pub struct Session<O, P>
where
    P: crate::StorageProvider,
{
    pub(crate) namespace: crate::Namespace<O, P>,
    pub(crate) id: edge_core::durable::ObjectId,
    pub(crate) live: Arc<crate::runtime::Live<O, P::Storage>>,
    pub(crate) socket: SocketId,
    pub(crate) outgoing: mpsc::Receiver<Outgoing>,
    pub(crate) closed: bool,
}

impl<O, P: crate::StorageProvider> std::fmt::Debug for Session<O, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

impl<O, P: crate::StorageProvider> Session<O, P> {
    /// This connection's id in the object's hub.
    #[must_use]
    pub fn socket(&self) -> SocketId {
        self.socket
    }

    /// The next thing to do on the connection; `None` once the object dropped it (closed it, reset, or
    /// found it too slow): the host should then close the connection and call [`Session::close`].
    pub async fn next_outgoing(&mut self) -> Option<Outgoing> {
        use futures_util::StreamExt;
        self.outgoing.next().await
    }
}

impl<O, P: crate::StorageProvider> Drop for Session<O, P> {
    fn drop(&mut self) {
        if !self.closed {
            // Without `close`, the object is not told; at least the hub stops sending to it.
            self.live.sockets.forget(self.socket);
        }
    }
}
