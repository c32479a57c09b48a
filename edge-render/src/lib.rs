//! Edge-side rendering: what the response body looks like and when each byte of it leaves.
//!
//! Sans-IO cores with thin async edges, the same on axum, bare hyper and in a Worker:
//!
//! | module | what it decides or does |
//! |---|---|
//! | [`html`] | a streaming HTML writer: the shell at once, sections as their data arrives, every value escaped for its context (text, attribute, URL, JSON in a script); raw markup only through `raw_html_unchecked` |
//! | [`rewrite`] | a streaming body transformer over `lol_html`: inject into `<head>`, remove elements, rewrite attributes and URLs |
//! | [`esi`] | Edge Side Includes: a chunk-split-invariant tokenizer, a streaming parser, variables and `when` tests, and an assembler that fetches includes in parallel (through the `Fetcher`, coalesced, cached via `CacheStore`) and streams the page in document order |
//! | [`hints`] | typed `Link` hints (preload, modulepreload, preconnect, prefetch) chosen for the client's connection, from a bundle manifest; `103 Early Hints` where the host can |
//!
//! Every limit is a setting with a safe default (ESI depth, fragments per page, fragment size and time,
//! the tag and buffer sizes of the parsers, the HTML writer's buffer), and bad input (unclosed or
//! misnested ESI, include loops, fan-out bombs, enormous attributes, invalid UTF-8, CRLF in a `src`) is a
//! typed error or a documented fallback, never a panic or a hang. The ESI tokenizer and assembler have
//! cargo-fuzz targets in `fuzz/`.
//!
//! # In an axum app
//!
//! `EsiLayer` assembles the HTML the app's own routes answer; its fragments can come from the same app
//! through [`ServiceFetcher`](edge_core::host::ServiceFetcher) (edge-core feature `tower`).
//!
//! ```
//! # #[cfg(feature = "tower")]
//! # futures::executor::block_on(async {
//! use axum::{Router, response::Html, routing::get};
//! use edge_core::host::ServiceFetcher;
//! use edge_core::{ManualClock, SystemClock};
//! use edge_render::esi::layer::EsiLayer;
//! use edge_render::esi::Assembler;
//! use tower::ServiceExt;
//!
//! let fragments = Router::new().route("/nav", get(|| async { Html("<nav>home</nav>") }));
//! // A host's timer: TokioTimer, or the Worker's; fragments cached as their Cache-Control allows.
//! let assembler = Assembler::builder(ServiceFetcher::new(fragments), ManualClock::new())
//!     .cache(edge_cache::MemoryCache::new(1 << 20, SystemClock::new()))
//!     .build();
//! let app = Router::new()
//!     .route("/", get(|| async { Html(r#"<body><esi:include src="/nav"/></body>"#) }))
//!     .layer(EsiLayer::new(assembler, ["/"]));
//!
//! let page = app.oneshot(http::Request::get("http://shop.example/").body(axum::body::Body::empty())?).await?;
//! let html = http_body_util::BodyExt::collect(page.into_body()).await?.to_bytes();
//! assert_eq!(html, "<body><nav>home</nav></body>");
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! # Features
//!
//! | feature | adds |
//! |---|---|
//! | `tower` | `esi::layer::EsiLayer` and `hints::layer::HintsLayer` |
//!
//! # MSRV
//!
//! Rust 1.85 (edition 2024).

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod esi;
pub mod hints;
pub mod html;
pub mod rewrite;
