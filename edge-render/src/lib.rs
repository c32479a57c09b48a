//! Edge-side rendering: what the response body looks like and when each byte of it leaves.
//!
//! Sans-IO cores with thin async edges:
//!
//! | module | what it decides or does |
//! |---|---|
//! | [`html`] | a streaming HTML writer: shell first, then sections as their data arrives, escaping chosen by context (built) |
//! | [`rewrite`] | a streaming body transformer over `lol_html`, usable from axum, hyper and a Worker alike (built) |
//! | [`esi`] | a chunk-split-invariant ESI tokenizer and parser, and an assembler that fetches includes in parallel (through `Fetcher`, cached via `CacheStore`, coalesced) and streams in document order (built) |
//! | [`hints`] | `Link` preload headers and 103 Early Hints from a bundle manifest, chosen for the connection (built) |
//!
//! `hints` is planned. The crate builds on native targets and on
//! wasm32.

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod esi;
pub mod hints;
pub mod html;
pub mod rewrite;
