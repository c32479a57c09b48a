//! The edge pipeline every host example serves, and the demo origin it proxies to.
//!
//! `examples/gateway` (axum) and `examples/hyper-server` (bare hyper) differ only in how they accept
//! connections; `examples/worker` (Cloudflare Workers) differs in what the parts are made of. Everything a
//! request goes through is built here, once, as a tower service over [`edge_core::Body`], by
//! [`pipeline::stack`], so each layer a later part of the SDK adds reaches all three hosts.
//!
//! | module | what it holds | hosts |
//! |---|---|---|
//! | [`pipeline`] | the tower stack in front of the origin, and what it is built from | all |
//! | [`auth`] | the JWT-protected `/api/account`, keys from KV, and a demo issuer at `/_edge/demo-token` | all |
//! | [`flags`] | the demo's A/B test: the edge picks the home page hero from a flag document in KV | all |
//! | [`objects`] | durable objects: an exact counter (`/api/counter/{name}`) and rooms (`/rooms/{name}`) | all (SQLite on native) |
//! | [`render`] | edge-side rendering: the shell-first `/shell` page, ESI for `/esi/`, `Link` preload hints | all |
//! | `host` | `Edge::start`: the parts from tokio, SQLite, memory or Redis KV and hyper | native |
//! | `config` | listen address, origin and timeouts, from flags and environment variables | native |
//! | `origin` | a small demo origin (HTML pages, JSON endpoints, a deliberately slow one) served over loopback | native |
//! | `testkit` | the loopback client and the conversation the host examples' tests hold with each host | native |

pub mod auth;
pub mod flags;
pub mod objects;
pub mod pipeline;
pub mod render;

#[cfg(not(target_arch = "wasm32"))]
pub mod config;
#[cfg(not(target_arch = "wasm32"))]
pub mod host;
#[cfg(not(target_arch = "wasm32"))]
pub mod origin;
#[cfg(not(target_arch = "wasm32"))]
pub mod testkit;

#[cfg(not(target_arch = "wasm32"))]
pub use config::GatewayConfig;
#[cfg(not(target_arch = "wasm32"))]
pub use host::{Edge, EdgeService};
