//! Host wiring: what every server that embeds the SDK needs around its layers, so that no adopter copies
//! it out of an example.
//!
//! | item | what it does | feature |
//! |---|---|---|
//! | [`OriginProxy`] | the innermost service of an edge in front of an origin: forwards through a [`Fetcher`](crate::Fetcher), strips hop-by-hop fields, adds `Via` and `Forwarded`, turns failures into 400/502/504 | `tower` |
//! | [`ServiceFetcher`] | any tower service as a [`Fetcher`](crate::Fetcher): ESI fragments, or a shield, served by the same app | `tower` |
//! | [`SetClientIpLayer`] | the client's address as [`ClientIp`](crate::ClientIp): from the connection (hyper, `edge_core::host::tokio`, axum's `ConnectInfo`), through the proxies you trust | `tower` (+ `axum`) |
//! | `tokio` | the tokio host: [`TokioTimer`](self::tokio::TokioTimer), [`TokioWaitUntil`](self::tokio::TokioWaitUntil), [`HyperFetcher`](self::tokio::HyperFetcher), the [`TokioHost`](self::tokio::TokioHost) bundle of them, and [`serve`](self::tokio::serve), the hardened HTTP/1.1 accept loop | `tokio`, `hyper`, `server` (native only) |
//! | `workers` | the Cloudflare Workers host: the `fetch` API as a `Fetcher`, `waitUntil`, `setTimeout`, the `cf` object as `RequestGeo`, request and response glue | `workers` (wasm32 only) |

#[cfg(feature = "tower")]
mod client_ip;
#[cfg(feature = "tower")]
mod proxy;
#[cfg(feature = "tower")]
mod service_fetcher;
#[cfg(all(
    any(feature = "tokio", feature = "hyper", feature = "server"),
    not(target_arch = "wasm32")
))]
#[cfg_attr(
    docsrs,
    doc(cfg(any(feature = "tokio", feature = "hyper", feature = "server")))
)]
pub mod tokio;
#[cfg(all(feature = "workers", target_arch = "wasm32"))]
#[cfg_attr(docsrs, doc(cfg(feature = "workers")))]
pub mod workers;

#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub use client_ip::{SetClientIp, SetClientIpLayer, TrustedProxies};
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub use proxy::{OriginProxy, ProxyFailure};
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub use service_fetcher::ServiceFetcher;
