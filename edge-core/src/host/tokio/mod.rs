//! The tokio host (native only): time, post-response work, outbound HTTP and the server, each behind the
//! feature that pulls in what it needs.
//!
//! | item | what it is | feature |
//! |---|---|---|
//! | [`TokioTimer`] | [`Timer`](crate::Timer) on tokio's timer | `tokio` |
//! | [`TokioWaitUntil`] | [`WaitUntil`](crate::WaitUntil): post-response work spawned on the runtime, drained on shutdown | `tokio` |
//! | [`HyperFetcher`] | [`Fetcher`](crate::Fetcher) over hyper-util's pooled client | `hyper` |
//! | [`TokioHost`] | the four host parts (clock, wait-until, timer, fetcher) in one value, each replaceable | `tokio` + `hyper` |
//! | [`serve`] | HTTP/1.1 on tokio for any tower service, with header-read and request timeouts, a connection cap, a body cap and `Host` checks | `server` |

#[cfg(feature = "hyper")]
mod fetch;
#[cfg(all(feature = "tokio", feature = "hyper"))]
mod host;
#[cfg(feature = "server")]
mod server;
#[cfg(feature = "tokio")]
mod timer;
#[cfg(feature = "tokio")]
mod wait_until;

#[cfg(feature = "hyper")]
#[cfg_attr(docsrs, doc(cfg(feature = "hyper")))]
pub use fetch::HyperFetcher;
#[cfg(all(feature = "tokio", feature = "hyper"))]
#[cfg_attr(docsrs, doc(cfg(all(feature = "tokio", feature = "hyper"))))]
pub use host::TokioHost;
#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub use server::{ServedBody, ServerLimits, serve};
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub use timer::TokioTimer;
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub use wait_until::TokioWaitUntil;
