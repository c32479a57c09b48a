//! [`TokioHost`]: the parts a tokio server (axum, hyper) hands the SDK, made once.

use super::{HyperFetcher, TokioTimer, TokioWaitUntil};
use crate::{Clock, Error, SystemClock};

/// The host services of a tokio server in one value: the [clock](SystemClock), post-response work
/// ([`TokioWaitUntil`], spawned on the runtime and drained at shutdown), a [timer](TokioTimer) and
/// outbound HTTP ([`HyperFetcher`], pooled). Every layer's constructor takes some of these; build them
/// once here and hand out clones (all are cheap to clone and share their state). Each part can be
/// replaced: another fetcher (TLS, a proxy, a [`ServiceFetcher`](crate::host::ServiceFetcher)), a
/// [`ManualClock`](crate::ManualClock) in tests.
///
/// ```
/// use edge_core::host::tokio::TokioHost;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), edge_core::Error> {
/// let host = TokioHost::new()?;
/// let fetcher = host.fetcher().clone().with_timeout(std::time::Duration::from_secs(5));
/// let host = host.with_fetcher(fetcher);
/// // … build layers with host.clock(), host.background(), host.timer(), host.fetcher() …
/// host.drain().await; // at shutdown: post-response work (exports, cache writes) finishes first
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct TokioHost<F = HyperFetcher, C = SystemClock> {
    clock: C,
    background: TokioWaitUntil,
    timer: TokioTimer,
    fetcher: F,
}

impl TokioHost {
    /// The defaults, on the current tokio runtime.
    ///
    /// # Errors
    ///
    /// Not called inside a tokio runtime.
    pub fn new() -> Result<Self, Error> {
        Ok(Self {
            clock: SystemClock::new(),
            background: TokioWaitUntil::current()?,
            timer: TokioTimer::new(),
            fetcher: HyperFetcher::new(),
        })
    }
}

impl<F, C: Clock + Clone> TokioHost<F, C> {
    /// The same host with `fetcher` for outbound HTTP.
    #[must_use]
    pub fn with_fetcher<G>(self, fetcher: G) -> TokioHost<G, C> {
        TokioHost {
            clock: self.clock,
            background: self.background,
            timer: self.timer,
            fetcher,
        }
    }

    /// The same host reading time from `clock`.
    #[must_use]
    pub fn with_clock<D: Clock + Clone>(self, clock: D) -> TokioHost<F, D> {
        TokioHost {
            clock,
            background: self.background,
            timer: self.timer,
            fetcher: self.fetcher,
        }
    }

    /// The same host running post-response work on `background` (another runtime's handle, say).
    #[must_use]
    pub fn with_background(mut self, background: TokioWaitUntil) -> Self {
        self.background = background;
        self
    }

    /// The clock.
    pub fn clock(&self) -> C {
        self.clock.clone()
    }

    /// Post-response work.
    pub fn background(&self) -> TokioWaitUntil {
        self.background.clone()
    }

    /// The timer.
    pub fn timer(&self) -> TokioTimer {
        self.timer
    }

    /// Outbound HTTP.
    pub fn fetcher(&self) -> &F {
        &self.fetcher
    }

    /// Waits for the post-response work started so far (and any it starts) to finish.
    pub async fn drain(&self) {
        self.background.drain().await;
    }
}
