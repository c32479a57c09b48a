//! The hardened HTTP/1.1 accept loop ([`serve`]) both example hosts share.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower_service::Service;

use crate::BoxError;

/// The limits [`serve`] enforces. See [`serve`] for what each guards against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerLimits {
    /// How long a request head may take to arrive, counted from when the connection starts waiting
    /// for it (so also how long a kept-alive connection may sit idle).
    pub header_read_timeout: Duration,
    /// How long a handler may take to produce the response head.
    pub request_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// The largest `Content-Length` accepted.
    pub max_request_body: u64,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(15),
            request_timeout: Duration::from_secs(30),
            max_connections: 1024,
            max_request_body: 16 << 20,
        }
    }
}

impl ServerLimits {
    /// Sets [`ServerLimits::header_read_timeout`].
    #[must_use]
    pub const fn with_header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// Sets [`ServerLimits::request_timeout`].
    #[must_use]
    pub const fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets [`ServerLimits::max_connections`] (at least 1).
    #[must_use]
    pub const fn with_max_connections(mut self, connections: usize) -> Self {
        self.max_connections = if connections == 0 { 1 } else { connections };
        self
    }

    /// Sets [`ServerLimits::max_request_body`].
    #[must_use]
    pub const fn with_max_request_body(mut self, bytes: u64) -> Self {
        self.max_request_body = bytes;
        self
    }
}

/// What [`serve`] answers with: the service's own body, or one of its short refusals.
pub type ServedBody<B> = Either<B, Full<Bytes>>;

/// Serves HTTP/1.1 on `listener` until `shutdown` resolves, then lets the connections finish their
/// current request. Each connection gets its service from `make_service`, called with the peer's
/// address; every request carries it as [`ClientIp`](crate::ClientIp) in its extensions, for per-client
/// limits. WebSocket and other upgrades work.
///
/// It owns the listener and the connections; the host owns the runtime and says when to stop. On
/// top of hyper's HTTP/1.1 server it adds:
///
/// | protection | setting ([`ServerLimits`]) | default | what happens |
/// |---|---|---|---|
/// | slowloris, idle keep-alive | `header_read_timeout` | 15 s | a connection whose next request head has not fully arrived this long after it began waiting for one is closed. hyper starts that timer as soon as a connection waits for a head, so it is also the **idle timeout** of a kept-alive connection |
/// | handlers that never answer | `request_timeout` | 30 s | no response head this long after the request head: `408 Request Timeout`, and the handler's future is dropped |
/// | descriptor exhaustion | `max_connections` | 1024 | past it, new connections wait in the kernel's backlog until one closes; on Linux never more than three quarters of the process's open-file limit, so the origin, storage and logs keep descriptors to work with |
/// | endless uploads | `max_request_body` | 16 MiB | a larger `Content-Length` is answered `413` at once, without reading the body, and the connection closed |
/// | malformed heads | — | — | an HTTP/1.1 request without exactly one `Host` is answered `400` (RFC 9112 §3.2); hyper answers heads it cannot parse with `400` itself |
///
/// Shutdown is graceful: once `shutdown` resolves no connection is accepted, each open one finishes the
/// request it is serving and closes, and [`serve`] returns when the last has.
///
/// ```no_run
/// use std::convert::Infallible;
/// use edge_core::host::tokio::{ServerLimits, serve};
/// use http::{Request, Response};
///
/// # async fn run() -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8787").await?;
/// let hello = tower::service_fn(|_request: Request<hyper::body::Incoming>| async {
///     Ok::<_, Infallible>(Response::new(http_body_util::Full::new(bytes::Bytes::from("hello\n"))))
/// });
/// let limits = ServerLimits::default().with_max_connections(512);
/// serve(listener, limits, move |_peer| hello.clone(), std::future::pending()).await
/// # }
/// ```
///
/// # Errors
///
/// Never in practice: accept errors (running out of descriptors) are waited out, as axum does; the
/// `Result` leaves room for listener failures a future version reports.
pub async fn serve<M, S, B>(
    listener: TcpListener,
    limits: ServerLimits,
    mut make_service: M,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()>
where
    M: FnMut(SocketAddr) -> S,
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let max = limits
        .max_connections
        .min(descriptor_budget().unwrap_or(usize::MAX))
        .max(1);
    let slots = Arc::new(Semaphore::new(max));
    let (stop, stopping) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // A free slot first: past the cap, connections wait in the kernel's backlog.
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break, // the semaphore is never closed
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = Guarded {
            inner: make_service(peer),
            limits,
            peer,
        };
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
            .with_upgrades();
        let mut stopping = stopping.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                // A client that resets its connection is not a server error.
                _ = connection.as_mut() => return,
                _ = stopping.wait_for(|stop| *stop) => {}
            }
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        });
    }
    let _ = stop.send(true);
    // Every connection gives its slot back when it ends.
    let _ = slots
        .acquire_many(u32::try_from(max).unwrap_or(u32::MAX))
        .await;
    Ok(())
}

/// Three quarters of the process's soft limit on open files (Linux, from `/proc/self/limits`): the most
/// connections that leave the rest of the process descriptors to work with. `None` elsewhere.
fn descriptor_budget() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    open_files_soft_limit(&limits).map(|soft| soft / 4 * 3)
}

/// The soft `Max open files` in the text of `/proc/self/limits` (`None` for "unlimited" or garbage).
fn open_files_soft_limit(limits: &str) -> Option<usize> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The per-request checks around the host's service.
#[derive(Clone)]
struct Guarded<S> {
    inner: S,
    limits: ServerLimits,
    peer: SocketAddr,
}

impl<S, B> Service<Request<Incoming>> for Guarded<S>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Send + 'static,
{
    type Response = Response<ServedBody<B>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request<Incoming>) -> Self::Future {
        if let Some(refusal) = refuse(&request, &self.limits) {
            return Box::pin(std::future::ready(Ok(refusal)));
        }
        request
            .extensions_mut()
            .insert(crate::geo::ClientIp(self.peer.ip()));
        let answer = self.inner.call(request);
        let timeout = self.limits.request_timeout;
        Box::pin(async move {
            match tokio::time::timeout(timeout, answer).await {
                Ok(Ok(response)) => Ok(response.map(Either::Left)),
                Ok(Err(error)) => Err(error.into()),
                Err(_) => Ok(short(
                    StatusCode::REQUEST_TIMEOUT,
                    "the request took too long\n",
                )),
            }
        })
    }
}

/// A request refused before the service sees it: a bad `Host`, a body announced too large.
fn refuse<T, B>(request: &Request<T>, limits: &ServerLimits) -> Option<Response<ServedBody<B>>> {
    let hosts = request.headers().get_all(header::HOST).iter().count();
    if request.version() == Version::HTTP_11 && hosts != 1 {
        return Some(short(
            StatusCode::BAD_REQUEST,
            "an HTTP/1.1 request needs exactly one Host header\n",
        ));
    }
    let mut lengths = request.headers().get_all(header::CONTENT_LENGTH).iter();
    if let Some(length) = lengths.next() {
        let declared = length
            .to_str()
            .ok()
            .and_then(|l| l.trim().parse::<u64>().ok());
        // hyper refuses malformed and conflicting lengths itself; a number past u64 lands here.
        if declared.is_none_or(|n| n > limits.max_request_body) {
            let mut response = short(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the request body is larger than this server accepts\n",
            );
            // The body is not read, so the connection cannot be reused.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return Some(response);
        }
    }
    None
}

fn short<B>(status: StatusCode, text: &'static str) -> Response<ServedBody<B>> {
    let mut response = Response::new(Either::Right(Full::new(Bytes::from_static(
        text.as_bytes(),
    ))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::open_files_soft_limit;

    #[test]
    fn the_open_file_limit_is_read_from_proc() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max cpu time              unlimited            unlimited            seconds   \n\
                    Max open files            512                  4096                 files     \n";
        assert_eq!(open_files_soft_limit(text), Some(512));
        assert_eq!(
            open_files_soft_limit("Max open files            unlimited            unlimited files"),
            None
        );
        assert_eq!(open_files_soft_limit("nothing here"), None);
    }
}
