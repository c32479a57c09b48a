//! [`TokioWaitUntil`]: post-response work as tokio tasks, with a drain for graceful shutdown.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::runtime::Handle;
use tokio::sync::Notify;

use crate::WaitUntil;
use crate::error::{Error, ErrorKind};

/// Spawns post-response work on a tokio runtime and keeps count, so a server can
/// [`drain`](Self::drain) it before exiting. Cheap to clone; clones share the count.
///
/// ```
/// use edge_core::{WaitUntil, host::tokio::TokioWaitUntil};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let background = TokioWaitUntil::current().unwrap();
/// background.wait_until(async { /* write to the cache */ });
/// background.drain().await;
/// assert_eq!(background.in_flight(), 0);
/// # }
/// ```
#[derive(Clone)]
pub struct TokioWaitUntil {
    handle: Handle,
    tracker: Arc<Tracker>,
}

#[derive(Default)]
struct Tracker {
    in_flight: AtomicUsize,
    idle: Notify,
}

/// Decrements the count when a task ends, however it ends (completion, panic, runtime shutdown).
struct TaskGuard(Arc<Tracker>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl TokioWaitUntil {
    /// Spawns on the runtime of the calling task.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Unavailable`] when called outside a tokio runtime.
    pub fn current() -> Result<Self, Error> {
        Handle::try_current()
            .map(Self::with_handle)
            .map_err(|e| Error::with_source(ErrorKind::Unavailable, "no tokio runtime", e))
    }

    /// Spawns on the runtime behind `handle`.
    #[must_use]
    pub fn with_handle(handle: Handle) -> Self {
        Self {
            handle,
            tracker: Arc::default(),
        }
    }

    /// Work handed off and not yet finished.
    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.tracker.in_flight.load(Ordering::Acquire)
    }

    /// Waits until no work is in flight. Work handed off while draining is waited for too.
    pub async fn drain(&self) {
        loop {
            // Created before the check so that a notification between the check and the await is not lost.
            let idle = self.tracker.idle.notified();
            if self.in_flight() == 0 {
                return;
            }
            idle.await;
        }
    }
}

impl WaitUntil for TokioWaitUntil {
    fn wait_until<F>(&self, work: F)
    where
        F: Future<Output = ()> + crate::sync::MaybeSend + 'static,
    {
        self.tracker.in_flight.fetch_add(1, Ordering::AcqRel);
        let guard = TaskGuard(Arc::clone(&self.tracker));
        self.handle.spawn(async move {
            let _guard = guard;
            work.await;
        });
    }
}

impl fmt::Debug for TokioWaitUntil {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokioWaitUntil")
            .field("in_flight", &self.in_flight())
            .finish_non_exhaustive()
    }
}
