//! [`TestFetcher`]: a [`Fetcher`] that answers from a script, for tests of code that calls origins.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri};

use crate::body::Body;
use crate::clock::ManualClock;
use crate::error::{Error, ErrorKind};
use crate::fetch::Fetcher;
use crate::sync::lock;

/// A scripted answer of a [`TestFetcher`].
#[derive(Clone, Debug)]
pub struct Reply {
    outcome: Outcome,
    latency: Duration,
}

#[derive(Clone, Debug)]
enum Outcome {
    Respond {
        status: StatusCode,
        headers: HeaderMap,
        chunks: Vec<Bytes>,
    },
    Fail(ErrorKind),
}

impl Reply {
    /// `200 OK` with `body`.
    #[must_use]
    pub fn ok(body: impl Into<Bytes>) -> Self {
        Self::status(StatusCode::OK).with_body(body)
    }

    /// An empty response with `status`.
    #[must_use]
    pub fn status(status: StatusCode) -> Self {
        Self {
            outcome: Outcome::Respond {
                status,
                headers: HeaderMap::new(),
                chunks: Vec::new(),
            },
            latency: Duration::ZERO,
        }
    }

    /// No response: the fetch fails with an error of `kind` (`Unavailable` for a refused connection,
    /// `Timeout`, …).
    #[must_use]
    pub fn fail(kind: ErrorKind) -> Self {
        Self {
            outcome: Outcome::Fail(kind),
            latency: Duration::ZERO,
        }
    }

    /// Replaces the body with one buffer.
    #[must_use]
    pub fn with_body(self, body: impl Into<Bytes>) -> Self {
        self.with_chunks([body.into()])
    }

    /// Replaces the body with a stream of these chunks.
    #[must_use]
    pub fn with_chunks(mut self, body: impl IntoIterator<Item = Bytes>) -> Self {
        if let Outcome::Respond { chunks, .. } = &mut self.outcome {
            *chunks = body.into_iter().collect();
        }
        self
    }

    /// Adds a header.
    #[must_use]
    pub fn with_header(mut self, name: HeaderName, value: &'static str) -> Self {
        if let Outcome::Respond { headers, .. } = &mut self.outcome {
            headers.append(name, HeaderValue::from_static(value));
        }
        self
    }

    /// Delays the answer until the fetcher's [`ManualClock`] has advanced by `latency`.
    #[must_use]
    pub fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    fn into_response(self) -> Result<Response<Body>, Error> {
        match self.outcome {
            Outcome::Fail(kind) => Err(Error::new(kind, "scripted failure")),
            Outcome::Respond {
                status,
                headers,
                chunks,
            } => {
                let body = match chunks.len() {
                    0 => Body::empty(),
                    1 => Body::from_bytes(chunks.into_iter().next().unwrap_or_default()),
                    _ => Body::from_stream(futures_util::stream::iter(
                        chunks.into_iter().map(Ok::<_, Error>),
                    )),
                };
                let mut response = Response::new(body);
                *response.status_mut() = status;
                *response.headers_mut() = headers;
                Ok(response)
            }
        }
    }
}

/// A request the [`TestFetcher`] received.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RecordedRequest {
    /// The method.
    pub method: Method,
    /// The full URI.
    pub uri: Uri,
    /// The headers.
    pub headers: HeaderMap,
}

/// A [`Fetcher`] that answers from a script, counts what it was asked, and simulates latency on a
/// [`ManualClock`] (so a test decides exactly when a slow origin answers).
///
/// Requests are matched on their path and query first, then on their path alone. One-shot replies queued with
/// [`enqueue`](Self::enqueue) are used before the standing reply set with [`route`](Self::route); a request
/// that matches nothing gets `404 Not Found`, as from a real origin.
///
/// ```
/// use std::time::Duration;
/// use edge_core::{Body, ErrorKind, Fetcher, ManualClock, testing::{Reply, TestFetcher}};
/// use futures_util::FutureExt;
///
/// let clock = ManualClock::new();
/// let origin = TestFetcher::new().with_clock(clock.clone());
/// origin.route("/slow", Reply::ok("done").with_latency(Duration::from_secs(2)));
/// origin.enqueue("/flaky", Reply::fail(ErrorKind::Unavailable));
/// origin.route("/flaky", Reply::ok("recovered"));
///
/// let get = |path: &str| http::Request::get(format!("http://origin{path}")).body(Body::empty()).unwrap();
/// let mut slow = Box::pin(origin.fetch(get("/slow")));
/// assert!(slow.as_mut().now_or_never().is_none()); // still waiting for the clock
/// clock.advance(Duration::from_secs(2));
/// assert_eq!(slow.now_or_never().unwrap().unwrap().status(), 200);
///
/// assert!(origin.fetch(get("/flaky")).now_or_never().unwrap().is_err());
/// assert!(origin.fetch(get("/flaky")).now_or_never().unwrap().is_ok());
/// assert_eq!(origin.hits("/flaky"), 2);
/// ```
#[derive(Clone, Default)]
pub struct TestFetcher {
    state: Arc<Mutex<State>>,
    clock: ManualClock,
}

#[derive(Default)]
struct State {
    routes: HashMap<String, Route>,
    requests: Vec<RecordedRequest>,
}

#[derive(Default)]
struct Route {
    queued: VecDeque<Reply>,
    standing: Option<Reply>,
    hits: usize,
}

impl TestFetcher {
    /// A fetcher with no routes and its own clock.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Uses `clock` for simulated latency.
    #[must_use]
    pub fn with_clock(mut self, clock: ManualClock) -> Self {
        self.clock = clock;
        self
    }

    /// Answers every request for `path` with `reply` (after any queued one-shot replies).
    pub fn route(&self, path: &str, reply: Reply) {
        lock(&self.state)
            .routes
            .entry(path.to_owned())
            .or_default()
            .standing = Some(reply);
    }

    /// Answers the next request for `path` with `reply`, once.
    pub fn enqueue(&self, path: &str, reply: Reply) {
        lock(&self.state)
            .routes
            .entry(path.to_owned())
            .or_default()
            .queued
            .push_back(reply);
    }

    /// How many requests matched `path`.
    #[must_use]
    pub fn hits(&self, path: &str) -> usize {
        lock(&self.state).routes.get(path).map_or(0, |r| r.hits)
    }

    /// Every request received, in order.
    #[must_use]
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.state).requests.clone()
    }

    fn answer(&self, request: &Request<Body>) -> Reply {
        let mut state = lock(&self.state);
        state.requests.push(RecordedRequest {
            method: request.method().clone(),
            uri: request.uri().clone(),
            headers: request.headers().clone(),
        });
        let path_and_query = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
        let key = if state.routes.contains_key(path_and_query) {
            path_and_query
        } else {
            request.uri().path()
        };
        match state.routes.get_mut(key) {
            Some(route) => {
                route.hits += 1;
                route
                    .queued
                    .pop_front()
                    .or_else(|| route.standing.clone())
                    .unwrap_or_else(|| Reply::status(StatusCode::NOT_FOUND))
            }
            None => Reply::status(StatusCode::NOT_FOUND),
        }
    }
}

impl fmt::Debug for TestFetcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = lock(&self.state);
        f.debug_struct("TestFetcher")
            .field("routes", &state.routes.keys().collect::<Vec<_>>())
            .field("requests", &state.requests.len())
            .finish_non_exhaustive()
    }
}

impl Fetcher for TestFetcher {
    async fn fetch(&self, request: Request<Body>) -> Result<Response<Body>, Error> {
        let reply = self.answer(&request);
        if !reply.latency.is_zero() {
            self.clock.sleep(reply.latency).await;
        }
        reply.into_response()
    }
}
