//! Turns whose caller went away. A turn that has passed its object's input gate always runs to its end:
//! its handler finishes, its writes commit whole, its WebSocket messages go out. The future a caller
//! awaits only *drives* the turn; if it is dropped (hyper drops a request's future when the client
//! disconnects), what is left of the turn is handed on instead of being dropped with it.
//!
//! Where it goes:
//! - to the namespace's [`WaitUntil`](edge_core::WaitUntil) when the host gave one
//!   ([`Namespace::with_wait_until`](crate::Namespace::with_wait_until)): it runs on at once, as
//!   background work of the host's (a tokio task, a Worker's `waitUntil`);
//! - otherwise to the object's orphanage, whose turns the next caller to the object drives before it
//!   passes the input gate, and while it waits there (an orphan that still holds the gate would
//!   otherwise keep everyone out).
//!
//! Either way no other turn of the object runs while the orphan holds the gate, so no other turn sees
//! its writes half-done, and none of them is lost.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use edge_core::BoxFuture;
use edge_core::wait_until::DynWaitUntil;
use futures_channel::oneshot;
use futures_util::FutureExt;
use futures_util::future::{Either, Shared};

/// Where an object's abandoned turns go. One per live instance.
pub(crate) struct Orphans {
    /// The host's background work, if it gave one: abandoned turns run there at once.
    wait_until: Option<Arc<dyn DynWaitUntil>>,
    parked: Mutex<Parked>,
}

struct Parked {
    turns: Vec<BoxFuture<'static, ()>>,
    /// Fired (and replaced) when a turn is parked, to wake callers waiting at the input gate.
    signal: Option<oneshot::Sender<()>>,
    fired: Shared<oneshot::Receiver<()>>,
}

impl Parked {
    fn new() -> Self {
        let (signal, fired) = oneshot::channel();
        Self {
            turns: Vec::new(),
            signal: Some(signal),
            fired: fired.shared(),
        }
    }
}

impl Orphans {
    pub(crate) fn new(wait_until: Option<Arc<dyn DynWaitUntil>>) -> Self {
        Self {
            wait_until,
            parked: Mutex::new(Parked::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Parked> {
        self.parked.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes an abandoned turn in.
    fn adopt(&self, turn: BoxFuture<'static, ()>) {
        if let Some(wait_until) = &self.wait_until {
            wait_until.wait_until_boxed(turn);
            return;
        }
        let mut parked = self.lock();
        parked.turns.push(turn);
        if let Some(signal) = parked.signal.take() {
            let _ = signal.send(());
        }
        let (signal, fired) = oneshot::channel();
        parked.signal = Some(signal);
        parked.fired = fired.shared();
    }

    /// How many abandoned turns wait for a caller to carry them on.
    pub(crate) fn waiting(&self) -> usize {
        self.lock().turns.len()
    }

    /// Runs `turn` to its end, driven by the caller; handed on if the caller stops waiting first.
    pub(crate) fn run_to_end(&self, turn: BoxFuture<'static, ()>) -> RunToEnd<'_> {
        RunToEnd {
            turn: Some(turn),
            home: self,
        }
    }

    /// Carries every parked turn to its end. Cancel safe: a turn being carried when this future is
    /// dropped is parked again.
    pub(crate) async fn carry(&self) {
        loop {
            let Some(turn) = self.lock().turns.pop() else {
                return;
            };
            self.run_to_end(turn).await;
        }
    }

    /// Resolves when a turn is parked (at once if one is).
    pub(crate) fn parked(&self) -> impl Future<Output = ()> + use<> {
        let parked = self.lock();
        if parked.turns.is_empty() {
            Either::Left(parked.fired.clone().map(|_| ()))
        } else {
            Either::Right(std::future::ready(()))
        }
    }
}

/// A turn driven by whoever awaits this; dropped unfinished, the turn goes to its [`Orphans`] instead
/// of being dropped.
#[must_use = "a turn runs only while it is polled"]
pub(crate) struct RunToEnd<'a> {
    turn: Option<BoxFuture<'static, ()>>,
    home: &'a Orphans,
}

impl Future for RunToEnd<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let Some(turn) = this.turn.as_mut() else {
            return Poll::Ready(());
        };
        match turn.as_mut().poll(cx) {
            Poll::Ready(()) => {
                this.turn = None;
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for RunToEnd<'_> {
    fn drop(&mut self) {
        if let Some(turn) = self.turn.take() {
            self.home.adopt(turn);
        }
    }
}

impl std::fmt::Debug for Orphans {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Orphans")
            .field("background", &self.wait_until.is_some())
            .field("waiting", &self.waiting())
            .finish()
    }
}
