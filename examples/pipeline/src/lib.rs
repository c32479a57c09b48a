//! The edge pipeline both host examples serve, and the demo origin it proxies to.
//!
//! `examples/gateway` (axum) and `examples/hyper-server` (bare hyper) differ only in how they accept
//! connections. Everything a request goes through is built here, once, as a tower service over
//! [`edge_core::Body`], so each layer a later part of the SDK adds (WAF, JWT, rate limit, cache, ESI, tracing)
//! reaches both hosts by being added in [`pipeline::build`].
//!
//! | module | what it holds |
//! |---|---|
//! | [`auth`] | the JWT-protected `/api/account`, keys from KV, and a demo issuer at `/_edge/demo-token` |
//! | [`config`] | listen address, origin and timeouts, from flags and environment variables |
//! | [`flags`] | the demo's A/B test: the edge picks the home page hero from a flag document in KV |
//! | [`objects`] | durable objects: an exact counter (`/api/counter/{name}`) and rooms (`/rooms/{name}`) on SQLite |
//! | [`origin`] | a small demo origin (HTML pages, JSON endpoints, a deliberately slow one) served over loopback |
//! | [`pipeline`] | the tower stack in front of the origin |
//! | [`render`] | edge-side rendering: the shell-first `/shell` page, ESI for `/esi/`, `Link` preload hints |
//! | [`proxy`] | the innermost service: forwards a request to the origin through a [`Fetcher`](edge_core::Fetcher) |
//! | [`testkit`] | the loopback client and the conversation the host examples' tests hold with each host |

pub mod auth;
pub mod config;
pub mod flags;
pub mod objects;
pub mod origin;
pub mod pipeline;
pub mod proxy;
pub mod render;
pub mod testkit;

pub use config::GatewayConfig;
pub use pipeline::EdgeService;
