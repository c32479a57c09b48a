//! JWT: verification (published vectors, an attack suite, properties), the JWKS provider and the bearer
//! layer, through the public API.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    unreachable_pub
)]

mod attacks;
#[cfg(not(target_arch = "wasm32"))]
mod jwks;
mod key_sets;
mod keys;
#[cfg(all(feature = "tower", not(target_arch = "wasm32")))]
mod layer;
mod support;
mod vectors;
mod wycheproof_vectors;
