//! [`Timer`] on tokio's timer.

use std::time::Duration;

use crate::{BoxFuture, Timer};

/// [`Timer`] on tokio's timer; must be used inside a tokio runtime with time enabled.
#[derive(Clone, Copy, Debug, Default)]
#[non_exhaustive]
pub struct TokioTimer;

impl TokioTimer {
    /// The timer of the current tokio runtime.
    #[must_use]
    pub const fn new() -> Self {
        Self
    }
}

impl Timer for TokioTimer {
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(duration))
    }
}
