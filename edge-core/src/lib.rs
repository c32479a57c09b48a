//! The contracts every `edge-*` crate is written against, and the one primitive they all share.
//!
//! `edge` is an SDK for the thin, hot slice of a web service that runs at the edge: auth, rate limiting,
//! caching with request coalescing, edge-side rendering, durable-object state and tracing. The same code runs
//! in an axum app, in a bare hyper server and in a Cloudflare Worker. This crate is what makes that possible:
//! each capability is a trait here, with an embedded default and platform backends in the sibling crates.
//!
//! # Map
//!
//! | module | what it holds |
//! |---|---|
//! | [`sync`] | [`MaybeSend`] / [`MaybeSync`] / [`BoxFuture`]: `Send` on native hosts, nothing on wasm32 |
//! | [`clock`] | [`Clock`], [`SystemClock`] (reads `Date.now()` in a Worker), [`ManualClock`] for tests; [`Timer`] for sleeping |
//! | [`kv`] | [`KvStore`]: get, metadata, TTL, list by prefix with a cursor |
//! | [`cache`] | [`CacheStore`]: stored HTTP responses by key, purge by tag |
//! | [`fetch`] | [`Fetcher`]: outbound HTTP |
//! | [`wait_until`] | [`WaitUntil`]: work after the response |
//! | [`body`] | [`Body`]: buffered or streamed, an `http_body::Body` for axum and hyper |
//! | [`durable`] | [`DurableObject`](durable::DurableObject), its [`Storage`](durable::Storage) and [`ObjectNamespace`](durable::ObjectNamespace): one writer per key, hosted in process (`edge-do`) or on Cloudflare |
//! | [`coalesce`] | [`Coalescer`]: one load per key for any number of concurrent callers |
//! | [`refresh`] | [`Refresh`](refresh::Refresh): a value loaded on first use, kept for a TTL, refreshed in the background, the last good one kept through failures (JWKS, flags, configuration) |
//! | [`error`] | [`Error`] and [`ErrorKind`], shared by every contract |
//! | [`host`] | every host part in one place: `OriginProxy`, `ServiceFetcher`, `SetClientIpLayer` (feature `tower`); `host::tokio` (`TokioTimer`, `TokioWaitUntil`, `HyperFetcher`, `TokioHost`, `serve`); `host::workers` (the Cloudflare Workers adapters) |
//! | [`hop`] | hop-by-hop fields (RFC 9110 §7.6.1): the list, `Connection`'s options, their removal |
//! | [`respond`] | [`Responder`](respond::Responder): a layer's typed refusal turned into a response, replaceable |
//! | [`geo`] | [`ClientIp`]; [`RequestGeo`]: country, region, city, colo, from CDN headers (or `cf` on Workers) |
//! | [`trace`] | W3C Trace Context, ids, sampling, spans, the exporter trait; [`RequestSpan`](trace::RequestSpan), the request's span every layer records into; the attribute names ([`trace::attr`]) |
//! | [`testing`] | conformance kits and [`TestFetcher`](testing::TestFetcher) (feature `testing`) |
//!
//! # Writing against the contracts
//!
//! Trait methods return `impl Future<Output = …> + MaybeSend`; implementations write `async fn`. Generic code
//! is then provably `Send` on tokio, and `!Send` JS handles compile on Workers without `unsafe impl Send`.
//! Where a trait object is wanted, each contract has a `Dyn…` twin (`DynKvStore`, `DynFetcher`, …) with a
//! blanket impl; `dyn DynKvStore` implements `KvStore` again, so boxed and generic code mix freely.
//!
//! ```
//! use bytes::Bytes;
//! use edge_core::{Clock, Error, KvStore, kv::PutOptions};
//!
//! /// Counts visits in KV: works with the in-memory store, Redis, or Workers KV.
//! async fn count_visit<S: KvStore, C: Clock>(kv: &S, clock: &C, page: &str) -> Result<u64, Error> {
//!     let key = format!("visits:{page}");
//!     let seen: u64 = match kv.get(&key).await? {
//!         Some(raw) => std::str::from_utf8(&raw).ok().and_then(|s| s.parse().ok()).unwrap_or(0),
//!         None => 0,
//!     };
//!     let _ = clock.wall_time(); // time is always injected, never read from std
//!     kv.put(&key, Bytes::from((seen + 1).to_string()), PutOptions::new()).await?;
//!     Ok(seen + 1)
//! }
//! ```
//!
//! # In an axum app
//!
//! [`host`] holds what a server adds around the SDK's layers: the client's address through the proxies
//! you trust, and a proxy to an origin for whatever the app does not route itself.
//!
//! ```
//! # #[cfg(all(feature = "tower", feature = "testing"))]
//! # futures::executor::block_on(async {
//! use axum::{Router, routing::get};
//! use edge_core::ClientIp;
//! use edge_core::host::{SetClientIpLayer, OriginProxy, TrustedProxies};
//! use edge_core::testing::{Reply, TestFetcher};
//! use tower::ServiceExt;
//!
//! let origin = TestFetcher::new(); // a host's: HyperFetcher, or the Worker's fetch
//! origin.route("/legacy/page", Reply::ok("from the origin"));
//! let app = Router::new()
//!     .route("/whoami", get(|axum::Extension(ip): axum::Extension<ClientIp>| async move { ip.0.to_string() }))
//!     .fallback_service(OriginProxy::new(origin.clone(), "http://origin.internal".parse()?))
//!     .layer(SetClientIpLayer::new().trust(TrustedProxies::private_networks()));
//!
//! // Behind a load balancer at 10.0.0.2 (axum's ConnectInfo gives the same with feature `axum`).
//! let request = |uri: &str| {
//!     http::Request::get(uri)
//!         .header("x-forwarded-for", "203.0.113.9")
//!         .extension(ClientIp([10, 0, 0, 2].into()))
//!         .body(axum::body::Body::empty())
//!         .unwrap()
//! };
//! let me = app.clone().oneshot(request("/whoami")).await?;
//! assert_eq!(http_body_util::BodyExt::collect(me.into_body()).await?.to_bytes(), "203.0.113.9");
//! let proxied = app.oneshot(request("/legacy/page")).await?;
//! assert_eq!(proxied.headers()["via"], "1.1 edge");
//! assert_eq!(origin.requests()[0].headers["forwarded"], "for=203.0.113.9;proto=http");
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! # Features
//!
//! | feature | adds |
//! |---|---|
//! | `hyper` | `host::tokio::HyperFetcher` (native only) |
//! | `tokio` | `host::tokio::{TokioWaitUntil, TokioTimer}`; with `hyper`, `TokioHost` (native only) |
//! | `server` | `host::tokio::serve`, the hardened HTTP/1.1 accept loop (native only) |
//! | `tower` | [`host`]: `OriginProxy`, `ServiceFetcher`, `SetClientIpLayer` (every target) |
//! | `axum` | `SetClientIpLayer` reads axum's `ConnectInfo<SocketAddr>` (native only) |
//! | `testing` | [`testing`]: conformance kits, `TestFetcher` |
//! | `workers` | `host::workers`: the Cloudflare Workers adapters (wasm32 only; nothing elsewhere) |
//! | `full` | all of the above |
//!
//! Features are additive and never change behaviour. The default build has no runtime dependency and builds
//! for `wasm32-unknown-unknown`.
//!
//! # MSRV
//!
//! Rust 1.85 (edition 2024).
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod body;
pub mod cache;
pub mod clock;
pub mod coalesce;
pub mod durable;
pub mod error;
pub mod fetch;
pub mod geo;
pub mod hop;
pub mod host;
pub mod kv;
pub mod refresh;
pub mod respond;
pub mod sync;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
pub mod trace;
pub mod wait_until;

pub use body::Body;
pub use cache::CacheStore;
pub use clock::{Clock, Instant, ManualClock, SystemClock, Timer};
pub use coalesce::Coalescer;
pub use error::{BoxError, Error, ErrorKind};
pub use fetch::Fetcher;
pub use geo::{ClientIp, RequestGeo};
pub use kv::KvStore;
pub use sync::{BoxFuture, BoxStream, MaybeSend, MaybeSync};
pub use wait_until::WaitUntil;
