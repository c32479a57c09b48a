//! JWT / JWS verification on `ring`, with keys pinned to their algorithm.
//!
//! | type | role |
//! |---|---|
//! | [`VerifyingKey`] | one key, one [`Algorithm`]; weak keys refused at construction |
//! | [`Jwk`], [`JwkSet`] | RFC 7517 keys, RFC 7638 thumbprints |
//! | [`KeySet`], [`KeyLookup`] | find the key a token names by `kid` |
//! | [`Verifier`], [`Validation`] | compact JWS in, [`Verified`] claims or a typed [`Error`](crate::Error) out |
//!
//! What is refused, always: `alg: none`; a header `alg` other than the key's; `crit` extensions; keys from
//! `jku`/`x5u`/`jwk`/`x5c` headers (ignored, never fetched); non-canonical base64url; duplicate JSON member
//! names; registered claims of the wrong JSON type; oversized tokens, headers and claims.
//!
//! The core is sans-IO: the time is passed in (from an injected [`Clock`](edge_core::Clock)), keys come
//! from a [`KeyLookup`], nothing awaits.

mod b64;
mod fused;
mod json;
mod jwk;
mod key;
mod scan;
mod verify;

pub use jwk::{Jwk, JwkSet, MAX_KEYS};

/// Strict base64url without padding, as JWS uses it: for code that builds tokens or JWKs (issuers, tests).
pub mod base64url {
    use crate::error::Error;

    /// Encodes `bytes` (no padding).
    #[must_use]
    pub fn encode(bytes: &[u8]) -> String {
        super::b64::encode(bytes)
    }

    /// Decodes strictly: no padding, no whitespace, canonical trailing bits.
    ///
    /// # Errors
    ///
    /// [`Error::Malformed`] for anything else.
    pub fn decode(text: &str) -> Result<Vec<u8>, Error> {
        super::b64::decode(text.as_bytes()).map_err(|_| Error::Malformed("not strict base64url"))
    }
}
pub use key::{Algorithm, VerifyingKey};
pub use verify::{
    Header, KeyLookup, KeySet, Limits, RegisteredClaims, Validation, Verified, Verifier,
};
