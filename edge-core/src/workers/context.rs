//! Post-response work and timers on the Workers runtime.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use wasm_bindgen::JsValue;

use crate::clock::Timer;
use crate::sync::{BoxFuture, MaybeSend};
use crate::wait_until::WaitUntil;

thread_local! {
    /// The execution context of the request whose future is being polled right now, if any.
    static CURRENT: RefCell<Option<Rc<worker::Context>>> = const { RefCell::new(None) };
}

/// Runs `future` as part of the request whose execution context is `ctx`: while it is polled, work handed
/// to [`WorkersWaitUntil`] is registered with that request's `waitUntil`, so the runtime keeps the isolate
/// alive until the work is done.
///
/// One isolate serves many requests at once, interleaved on one thread; a layer built once and shared by
/// all of them cannot hold any one request's context. This scope is how it finds the right one, the way a
/// task-local would on tokio: polls never nest across requests, so the context set for a poll is exactly
/// the request being served.
pub fn in_request<F: Future>(ctx: worker::Context, future: F) -> InRequest<F> {
    InRequest {
        ctx: Rc::new(ctx),
        inner: Box::pin(future),
    }
}

/// The future returned by [`in_request`].
pub struct InRequest<F> {
    ctx: Rc<worker::Context>,
    inner: Pin<Box<F>>,
}

impl<F: Future> Future for InRequest<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let previous = CURRENT.with(|current| current.replace(Some(Rc::clone(&self.ctx))));
        let output = self.inner.as_mut().poll(cx);
        CURRENT.with(|current| *current.borrow_mut() = previous);
        output
    }
}

impl<F> std::fmt::Debug for InRequest<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InRequest").finish_non_exhaustive()
    }
}

/// [`WaitUntil`] on the Workers runtime: work is started at once and registered with the `waitUntil` of the
/// request being served (see [`in_request`]), so it finishes after the response has gone.
///
/// Work handed over outside any request (from a Durable Object, or from work that is itself running after
/// a response) still runs, spawned on the isolate's event loop, but nothing asks the runtime to wait for it.
/// Work registered inside a request's work inherits that request, so an export that schedules a retry keeps
/// the request's context alive for the retry too.
#[derive(Clone, Copy, Debug, Default)]
#[non_exhaustive]
pub struct WorkersWaitUntil;

impl WorkersWaitUntil {
    /// The handle (it holds nothing: the context comes from the request being polled).
    #[must_use]
    pub const fn new() -> Self {
        Self
    }
}

impl WaitUntil for WorkersWaitUntil {
    fn wait_until<F>(&self, work: F)
    where
        F: Future<Output = ()> + MaybeSend + 'static,
    {
        match CURRENT.with(|current| current.borrow().clone()) {
            Some(ctx) => {
                let scoped = InRequest {
                    ctx: Rc::clone(&ctx),
                    inner: Box::pin(work),
                };
                // `future_to_promise` starts the work now; registering it only extends the request's life.
                let promise = wasm_bindgen_futures::future_to_promise(async move {
                    scoped.await;
                    Ok(JsValue::UNDEFINED)
                });
                // The call throws once the request's event is over; the work runs either way.
                let _ = worker::worker_sys::Context::wait_until(ctx.as_ref().as_ref(), &promise);
            }
            None => wasm_bindgen_futures::spawn_local(work),
        }
    }
}

/// [`Timer`] on the Workers runtime's `setTimeout`. Durations beyond `i32::MAX` milliseconds (24.8 days,
/// the timer's range) are clamped to it.
#[derive(Clone, Copy, Debug, Default)]
#[non_exhaustive]
pub struct WorkersTimer;

impl WorkersTimer {
    /// The timer.
    #[must_use]
    pub const fn new() -> Self {
        Self
    }
}

const MAX_TIMEOUT: Duration = Duration::from_millis(i32::MAX as u64);

impl Timer for WorkersTimer {
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(worker::Delay::from(duration.min(MAX_TIMEOUT)))
    }
}
