//! JWT verification: published vectors, an attack suite, and properties, through the public API.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    unreachable_pub
)]

mod attacks;
mod key_sets;
mod keys;
mod support;
mod vectors;
mod wycheproof_vectors;
