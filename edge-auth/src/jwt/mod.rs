//! JWT / JWS verification on `ring`, with keys pinned to their algorithm.
//!
//! | type | role |
//! |---|---|
//! | [`VerifyingKey`] | one key, one [`Algorithm`]; weak keys refused at construction |
//! | [`Jwk`], [`JwkSet`] | RFC 7517 keys, RFC 7638 thumbprints |
//! | [`KeySet`], [`KeyLookup`] | find the key a token names by `kid` |
//! | [`Verifier`], [`Validation`] | compact JWS in, [`Verified`] claims or a typed [`Error`] out |
//!
//! What is refused, always: `alg: none`; a header `alg` other than the key's; `crit` extensions; keys from
//! `jku`/`x5u`/`jwk`/`x5c` headers (ignored, never fetched); non-canonical base64url; duplicate JSON member
//! names; registered claims of the wrong JSON type; oversized tokens, headers and claims.
//!
//! The core is sans-IO: the time is passed in (from an injected [`Clock`](edge_core::Clock)), keys come
//! from a [`KeyLookup`], nothing awaits.

mod error;
mod json;
mod jwk;
pub mod jwks;
mod key;
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub mod layer;
mod verify;

pub use error::Error;
pub use jwk::{Jwk, JwkSet, MAX_KEYS};
pub use jwks::{
    JwksHealth, JwksProvider, KeySource, KvKeySource, OriginKeySource, StaticKeySource,
};
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub use layer::{AuthRejection, JwtAuth, JwtAuthLayer};

/// Strict base64url without padding (RFC 7515 §2), as the verifier reads every segment, for code that builds
/// tokens or JWKs (issuers, tests).
///
/// Strict means every byte string has exactly one encoding, so a token cannot be altered without changing
/// its signing input: no padding, no whitespace, no length of 1 mod 4 (base64-simd refuses those), and the
/// bits the last character carries beyond the data zero (checked here).
pub mod base64url {
    use crate::jwt::Error;

    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    /// Encodes `bytes` (no padding).
    #[must_use]
    pub fn encode(bytes: &[u8]) -> String {
        base64_simd::URL_SAFE_NO_PAD.encode_type(bytes)
    }

    /// Decodes strictly.
    ///
    /// # Errors
    ///
    /// [`Error::Malformed`] for anything but the one canonical encoding of some bytes.
    pub fn decode(text: &str) -> Result<Vec<u8>, Error> {
        let mut out = vec![0; decoded_len(text)?];
        decode_into(text, &mut out)?;
        Ok(out)
    }

    /// How many bytes `text` decodes to (base64-simd's count, the one its decoder checks `out` against).
    pub(crate) fn decoded_len(text: &str) -> Result<usize, Error> {
        base64_simd::URL_SAFE_NO_PAD
            .decoded_length(text.as_bytes())
            .map_err(|_| Error::Malformed("not strict base64url"))
    }

    /// Decodes strictly into the front of `out`, returning the decoded part; `out` shorter than
    /// [`decoded_len`] is refused, never a panic.
    pub(crate) fn decode_into<'o>(text: &str, out: &'o mut [u8]) -> Result<&'o mut [u8], Error> {
        let not_strict = || Error::Malformed("not strict base64url");
        // A last group of 2 characters carries 4 unused bits, one of 3 carries 2.
        let unused = match text.len() % 4 {
            2 => 0b1111,
            3 => 0b11,
            _ => 0,
        };
        let canonical = text.bytes().next_back().is_none_or(|last| {
            ALPHABET
                .iter()
                .position(|&c| c == last)
                .is_some_and(|value| value & unused == 0)
        });
        let out = out.get_mut(..decoded_len(text)?).ok_or_else(not_strict)?;
        match base64_simd::URL_SAFE_NO_PAD
            .decode(text.as_bytes(), base64_simd::Out::from_slice(out))
        {
            Ok(bytes) if canonical => Ok(bytes),
            _ => Err(not_strict()),
        }
    }
}

pub use key::{Algorithm, VerifyingKey};
pub use verify::{
    Header, KeyLookup, KeySet, Limits, RegisteredClaims, Validation, Verified, Verifier,
};

#[cfg(test)]
mod tests {
    use super::base64url::decode_into;

    #[test]
    fn a_short_buffer_is_refused_not_a_panic() {
        assert!(decode_into("AAAA", &mut [0u8; 2]).is_err());
        assert_eq!(decode_into("AAAA", &mut [9u8; 4]).unwrap(), &[0, 0, 0]);
        assert!(
            decode_into("AAAAA", &mut [0u8; 8]).is_err(),
            "no length 1 mod 4"
        );
    }
}
