//! Work that runs after the response has been sent: span export, cache writes, background revalidation.
//!
//! The host decides how such work is kept alive. On tokio it is a spawned task ([`TokioWaitUntil`](crate::host::tokio::TokioWaitUntil), feature
//! `tokio`); in a Worker it is handed to the execution context's `waitUntil`, which keeps the isolate alive
//! until it settles (the `workers` adapter). Tests use [`QueuedWaitUntil`] and run the queued work when they
//! choose.
//!
//! # Cancel safety
//!
//! Handing work off is synchronous and cannot be cancelled; the work itself runs to completion unless the host
//! shuts down (a Worker's `waitUntil` has a platform time limit).
//!
//! ```
//! use edge_core::{WaitUntil, wait_until::QueuedWaitUntil};
//!
//! # futures_util::FutureExt::now_or_never(async {
//! let background = QueuedWaitUntil::new();
//! background.wait_until(async { /* export spans */ });
//! assert_eq!(background.pending(), 1);
//! background.run_all().await;
//! assert_eq!(background.pending(), 0);
//! # }).unwrap();
//! ```

use std::fmt;
use std::sync::{Arc, Mutex};

use crate::sync::{BoxFuture, MaybeSend, MaybeSync, lock};

/// Runs work after the response. See the [module docs](self).
pub trait WaitUntil: MaybeSend + MaybeSync {
    /// Keeps `work` running after the current request has been answered.
    fn wait_until<F>(&self, work: F)
    where
        F: Future<Output = ()> + MaybeSend + 'static;
}

/// The object-safe twin of [`WaitUntil`]. Every `WaitUntil` is one.
pub trait DynWaitUntil: MaybeSend + MaybeSync {
    /// See [`WaitUntil::wait_until`].
    fn wait_until_boxed(&self, work: BoxFuture<'static, ()>);
}

impl<T: WaitUntil> DynWaitUntil for T {
    fn wait_until_boxed(&self, work: BoxFuture<'static, ()>) {
        self.wait_until(work);
    }
}

/// A `dyn DynWaitUntil` is itself a [`WaitUntil`].
impl<'d> WaitUntil for dyn DynWaitUntil + 'd {
    fn wait_until<F>(&self, work: F)
    where
        F: Future<Output = ()> + MaybeSend + 'static,
    {
        self.wait_until_boxed(Box::pin(work));
    }
}

impl<T: WaitUntil + ?Sized> WaitUntil for Arc<T> {
    fn wait_until<F>(&self, work: F)
    where
        F: Future<Output = ()> + MaybeSend + 'static,
    {
        (**self).wait_until(work);
    }
}

/// A [`WaitUntil`] that queues work until [`run_all`](Self::run_all) is awaited. For tests and for hosts
/// that drive background work themselves. Clones share the queue.
#[derive(Clone, Default)]
pub struct QueuedWaitUntil {
    queue: Arc<Mutex<Vec<BoxFuture<'static, ()>>>>,
}

impl QueuedWaitUntil {
    /// An empty queue.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// How many pieces of work are waiting.
    #[must_use]
    pub fn pending(&self) -> usize {
        lock(&self.queue).len()
    }

    /// Runs the queued work concurrently until the queue is empty, including work queued while running.
    pub async fn run_all(&self) {
        loop {
            let batch = std::mem::take(&mut *lock(&self.queue));
            if batch.is_empty() {
                return;
            }
            futures_util::future::join_all(batch).await;
        }
    }
}

impl WaitUntil for QueuedWaitUntil {
    fn wait_until<F>(&self, work: F)
    where
        F: Future<Output = ()> + MaybeSend + 'static,
    {
        lock(&self.queue).push(Box::pin(work));
    }
}

impl fmt::Debug for QueuedWaitUntil {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueuedWaitUntil")
            .field("pending", &self.pending())
            .finish()
    }
}
