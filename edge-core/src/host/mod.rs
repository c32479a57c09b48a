//! Host wiring: what every server that embeds the SDK needs around its layers, so that no adopter copies
//! it out of an example.
//!
//! | item | what it does | feature |
//! |---|---|---|
//! | [`OriginProxy`] | the innermost service of an edge in front of an origin: forwards through a [`Fetcher`](crate::Fetcher), strips hop-by-hop fields, adds `Via` and `Forwarded`, turns failures into 400/502/504 | `tower` |
//! | [`ServiceFetcher`] | any tower service as a [`Fetcher`](crate::Fetcher): ESI fragments, or a shield, served by the same app | `tower` |
//! | [`ClientIpLayer`] | the client's address as [`ClientIp`](crate::ClientIp): from the connection (hyper, `edge_core::server`, axum's `ConnectInfo`), through the proxies you trust | `tower` (+ `axum`) |
//! | [`TokioHost`] | the tokio host bundle: clock, post-response work, timer and outbound HTTP, one constructor, every part replaceable | `tokio` + `hyper` |
//!
//! The Worker's counterparts (the `fetch` API as a `Fetcher`, `waitUntil`, `setTimeout`, the `cf` object)
//! are in `edge_core::workers`.

#[cfg(feature = "tower")]
mod client_ip;
#[cfg(feature = "tower")]
mod proxy;
#[cfg(feature = "tower")]
mod service_fetcher;
#[cfg(all(feature = "tokio", feature = "hyper", not(target_arch = "wasm32")))]
mod tokio_host;

#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub use client_ip::{ClientIpLayer, ClientIpService, TrustedProxies};
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub use proxy::{OriginProxy, ProxyFailure};
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub use service_fetcher::ServiceFetcher;
#[cfg(all(feature = "tokio", feature = "hyper", not(target_arch = "wasm32")))]
#[cfg_attr(docsrs, doc(cfg(all(feature = "tokio", feature = "hyper"))))]
pub use tokio_host::TokioHost;
