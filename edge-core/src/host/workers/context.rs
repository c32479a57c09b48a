//! Post-response work and timers on the Workers runtime.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use wasm_bindgen::JsValue;
use wasm_bindgen::closure::Closure;

use crate::clock::Timer;
use crate::sync::{BoxFuture, MaybeSend};
use crate::wait_until::WaitUntil;

thread_local! {
    /// The execution context of the request whose future is being polled right now, if any.
    static CURRENT: RefCell<Option<Rc<worker::Context>>> = const { RefCell::new(None) };
    /// The armed doorbells, by number: how a wake from any request reaches the request it is for.
    static DOORBELLS: RefCell<HashMap<u64, js_sys::Function>> = RefCell::new(HashMap::new());
    static NEXT_DOORBELL: Cell<u64> = const { Cell::new(0) };
    /// The doorbell handed to the future being polled right now, and whether it rang during that poll
    /// (before it could be armed).
    static POLLING: Cell<Option<(u64, bool)>> = const { Cell::new(None) };
}

/// A waker that rings a doorbell: it resolves a JS promise made in the waiting request's I/O context, whose
/// continuation (which workerd runs in that context) wakes the real waker.
///
/// Why: the executor polls whichever task is woken from whatever request's microtask did the waking. When
/// one request's fetch completes and wakes another request that waits on the same coalesced result, the
/// woken request would run (and create its JS objects: streams, promises) inside the first request's I/O
/// context, and workerd cancels those once that request is done: the second request hangs. Ringing the
/// doorbell moves the wake into the right context first. Only a number crosses the `Waker` (which must be
/// `Send`); the JS function stays in this thread's table.
struct Doorbell(u64);

impl Wake for Doorbell {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(resolve) = DOORBELLS.with(|bells| bells.borrow_mut().remove(&self.0)) {
            let _ = resolve.call0(&JsValue::UNDEFINED);
            return;
        }
        // Rung during the very poll it was handed to, before it was armed: noted, so that poll wakes
        // its task again itself (it is in the right context already).
        POLLING.with(|polling| {
            if let Some((id, _)) = polling.get() {
                if id == self.0 {
                    polling.set(Some((id, true)));
                }
            }
        });
    }
}

/// The next doorbell's number.
fn next_doorbell() -> u64 {
    NEXT_DOORBELL.with(|next| {
        let id = next.get();
        next.set(id.wrapping_add(1));
        id
    })
}

/// Arms doorbell `id` in the current I/O context: a promise whose continuation is `ring` (which wakes the
/// waiting task).
fn arm(id: u64, ring: &Closure<dyn FnMut(JsValue)>) {
    let mut resolve = None;
    let promise = js_sys::Promise::new(&mut |resolve_fn, _reject| resolve = Some(resolve_fn));
    if let Some(resolve) = resolve {
        DOORBELLS.with(|bells| bells.borrow_mut().insert(id, resolve));
    }
    let _ = promise.then(ring);
}

/// Forgets a doorbell that was not rung (its promise then never resolves and is collected).
fn disarm(id: u64) {
    DOORBELLS.with(|bells| bells.borrow_mut().remove(&id));
}

/// Runs `future` as part of the request whose execution context is `ctx`: while it is polled, work handed
/// to [`WorkersWaitUntil`] is registered with that request's `waitUntil`, so the runtime keeps the isolate
/// alive until the work is done.
///
/// One isolate serves many requests at once, interleaved on one thread; a layer built once and shared by
/// all of them cannot hold any one request's context. This scope is how it finds the right one, the way a
/// task-local would on tokio: polls never nest across requests, so the context set for a poll is exactly
/// the request being served.
///
/// It also makes sure the future is only ever polled in this request's own I/O context, whichever
/// request's event woke it (a request waiting on another's coalesced fetch is woken by that fetch): each
/// wait arms a promise made in this context, and the wake resolves it. See `Doorbell`.
pub fn in_request<F: Future>(ctx: worker::Context, future: F) -> InRequest<F> {
    InRequest::new(Rc::new(ctx), future)
}

/// The future returned by [`in_request`].
pub struct InRequest<F> {
    ctx: Rc<worker::Context>,
    inner: Pin<Box<F>>,
    /// The doorbell of the last wait, if it has not been rung.
    armed: Option<u64>,
    /// The outer task's waker, woken by `ring` in this request's context.
    waiting: Rc<RefCell<Option<Waker>>>,
    /// The doorbells' continuation: one closure for the whole request, made at its first wait (a request
    /// answered without waiting makes none) and freed with it. Only the outer task wakes this future, and
    /// only through `ring`, so no continuation is pending once it is done.
    ring: Option<Closure<dyn FnMut(JsValue)>>,
    /// A timer in this request's context while it waits, so that waiting on another request's work (a
    /// coalesced fetch) is not taken for a hang: workerd cancels a request that has nothing of its own
    /// pending. It ends with the request, or after [`KEEP_ALIVE`] (a real hang is then reported).
    keep_alive: Option<KeepAlive>,
}

/// How long a request may wait on other requests' work before workerd's hang detection may end it.
const KEEP_ALIVE: Duration = Duration::from_secs(60);

struct KeepAlive {
    handle: i32,
    _noop: Closure<dyn FnMut()>,
}

impl KeepAlive {
    fn start() -> Option<Self> {
        let noop = Closure::new(|| {});
        let global: web_sys::WorkerGlobalScope =
            wasm_bindgen::JsCast::unchecked_into(js_sys::global());
        let millis = i32::try_from(KEEP_ALIVE.as_millis()).unwrap_or(i32::MAX);
        let handle = global
            .set_timeout_with_callback_and_timeout_and_arguments_0(
                wasm_bindgen::JsCast::unchecked_ref(noop.as_ref()),
                millis,
            )
            .ok()?;
        Some(Self {
            handle,
            _noop: noop,
        })
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        let global: web_sys::WorkerGlobalScope =
            wasm_bindgen::JsCast::unchecked_into(js_sys::global());
        global.clear_timeout_with_handle(self.handle);
    }
}

impl<F> InRequest<F> {
    fn new(ctx: Rc<worker::Context>, future: F) -> Self {
        Self {
            ctx,
            inner: Box::pin(future),
            armed: None,
            waiting: Rc::default(),
            ring: None,
            keep_alive: None,
        }
    }
}

impl<F: Future> Future for InRequest<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        if let Some(previous) = self.armed.take() {
            disarm(previous);
        }
        // The doorbell is armed only once the future waits: a request answered in one poll (most cache
        // hits, the first request's own build) makes no promise, closure or timer at all.
        let id = next_doorbell();
        let doorbell = Waker::from(Arc::new(Doorbell(id)));
        let previous = CURRENT.with(|current| current.replace(Some(Rc::clone(&self.ctx))));
        let outer_poll = POLLING.with(|polling| polling.replace(Some((id, false))));
        let output = self
            .inner
            .as_mut()
            .poll(&mut Context::from_waker(&doorbell));
        let rung = POLLING
            .with(|polling| polling.replace(outer_poll))
            .is_some_and(|(_, rung)| rung);
        CURRENT.with(|current| *current.borrow_mut() = previous);
        if output.is_ready() {
            self.keep_alive = None;
            return output;
        }
        if rung {
            // Woken while it was being polled: poll again soon, from this context.
            cx.waker().wake_by_ref();
            return output;
        }
        *self.waiting.borrow_mut() = Some(cx.waker().clone());
        let waiting = Rc::clone(&self.waiting);
        let ring = self.ring.get_or_insert_with(|| {
            Closure::new(move |_: JsValue| {
                if let Some(waker) = waiting.borrow_mut().take() {
                    waker.wake();
                }
            })
        });
        arm(id, ring);
        self.armed = Some(id);
        if self.keep_alive.is_none() {
            self.keep_alive = KeepAlive::start();
        }
        output
    }
}

impl<F> Drop for InRequest<F> {
    fn drop(&mut self) {
        if let Some(id) = self.armed.take() {
            disarm(id);
        }
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
                let scoped = InRequest::new(Rc::clone(&ctx), work);
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
