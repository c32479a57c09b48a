//! Verification keys, each pinned to one algorithm.

use std::fmt;

use ring::{hmac, signature};

use crate::jwt::Error;

/// The JWS algorithms this crate verifies (RFC 7518 §3, RFC 8037). `none` is not one of them and never will
/// be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// HMAC with SHA-256.
    HS256,
    /// HMAC with SHA-384.
    HS384,
    /// HMAC with SHA-512.
    HS512,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256 and MGF1 with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384 and MGF1 with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512 and MGF1 with SHA-512.
    PS512,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// ECDSA on P-384 with SHA-384.
    ES384,
    /// ECDSA on P-521 with SHA-512 (feature `es512`; without it such keys are refused).
    ES512,
    /// Ed25519 (RFC 8037 `EdDSA` with `crv: Ed25519`).
    EdDSA,
}

impl Algorithm {
    /// Whether this is an RSA algorithm (`RS*`, `PS*`).
    #[must_use]
    pub const fn is_rsa(self) -> bool {
        matches!(
            self,
            Self::RS256 | Self::RS384 | Self::RS512 | Self::PS256 | Self::PS384 | Self::PS512
        )
    }

    /// Whether this is an HMAC algorithm (`HS*`).
    #[must_use]
    pub const fn is_hmac(self) -> bool {
        matches!(self, Self::HS256 | Self::HS384 | Self::HS512)
    }

    /// Every algorithm ([`Algorithm::ES512`] verifies only with the `es512` feature).
    pub const ALL: [Self; 13] = [
        Self::HS256,
        Self::HS384,
        Self::HS512,
        Self::RS256,
        Self::RS384,
        Self::RS512,
        Self::PS256,
        Self::PS384,
        Self::PS512,
        Self::ES256,
        Self::ES384,
        Self::ES512,
        Self::EdDSA,
    ];

    /// The `alg` header value.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::HS256 => "HS256",
            Self::HS384 => "HS384",
            Self::HS512 => "HS512",
            Self::RS256 => "RS256",
            Self::RS384 => "RS384",
            Self::RS512 => "RS512",
            Self::PS256 => "PS256",
            Self::PS384 => "PS384",
            Self::PS512 => "PS512",
            Self::ES256 => "ES256",
            Self::ES384 => "ES384",
            Self::ES512 => "ES512",
            Self::EdDSA => "EdDSA",
        }
    }

    /// The algorithm named by an `alg` value; exact, case-sensitive match. `None` for anything else,
    /// `"none"` included.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|alg| alg.as_str() == name)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A key that verifies signatures of exactly one [`Algorithm`].
///
/// The algorithm is fixed when the key is made, never taken from a token: a token whose header names
/// another algorithm is rejected ([`Error::AlgorithmMismatch`]), which closes the classic confusions (an RSA
/// public key used as an HMAC secret, `alg: none`). Weak keys are refused here: RSA moduli under 2048 bits,
/// HMAC secrets shorter than the hash output.
///
/// ```
/// use edge_auth::jwt::{Algorithm, VerifyingKey};
///
/// let key = VerifyingKey::hmac(Algorithm::HS256, &[7u8; 32]).unwrap().with_kid("2026-01");
/// assert_eq!(key.algorithm(), Algorithm::HS256);
/// assert!(VerifyingKey::hmac(Algorithm::HS256, b"short").is_err());
/// ```
#[derive(Clone)]
pub struct VerifyingKey {
    alg: Algorithm,
    kid: Option<String>,
    material: Material,
}

#[derive(Clone)]
enum Material {
    Hmac(hmac::Key),
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// ECDSA public point (uncompressed) or Ed25519 public key bytes.
    Public(Vec<u8>),
    /// A P-521 public key (ring has no P-521).
    #[cfg(feature = "es512")]
    P521(p521::ecdsa::VerifyingKey),
}

fn invalid(why: impl Into<String>) -> Error {
    Error::InvalidKey(why.into())
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}

impl VerifyingKey {
    /// An HMAC key (`HS256`/`HS384`/`HS512`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] if `alg` is not an HMAC algorithm or `secret` is shorter than the hash output
    /// (RFC 7518 §3.2).
    pub fn hmac(alg: Algorithm, secret: &[u8]) -> Result<Self, Error> {
        let (ring_alg, min) = match alg {
            Algorithm::HS256 => (hmac::HMAC_SHA256, 32),
            Algorithm::HS384 => (hmac::HMAC_SHA384, 48),
            Algorithm::HS512 => (hmac::HMAC_SHA512, 64),
            other => return Err(invalid(format!("{other} is not an HMAC algorithm"))),
        };
        if secret.len() < min {
            return Err(invalid(format!(
                "{alg} secrets must be at least {min} bytes"
            )));
        }
        Ok(Self {
            alg,
            kid: None,
            material: Material::Hmac(hmac::Key::new(ring_alg, secret)),
        })
    }

    /// An RSA public key from its modulus and exponent (big-endian bytes), for `RS*` or `PS*`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] if `alg` is not an RSA algorithm, the modulus is under 2048 or over 8192 bits,
    /// or the exponent is not an odd number of at least 3 that fits in 33 bits.
    pub fn rsa(alg: Algorithm, n: &[u8], e: &[u8]) -> Result<Self, Error> {
        if !alg.is_rsa() {
            return Err(invalid(format!("{alg} is not an RSA algorithm")));
        }
        let n = strip_leading_zeros(n);
        let bits = n.len() * 8 - n.first().map_or(8, |b| b.leading_zeros() as usize);
        if !(2048..=8192).contains(&bits) {
            return Err(invalid(format!(
                "RSA modulus of {bits} bits; 2048 to 8192 are accepted"
            )));
        }
        let e = strip_leading_zeros(e);
        let exponent = if e.len() <= 5 {
            e.iter().fold(0u64, |acc, &b| acc << 8 | u64::from(b))
        } else {
            0
        };
        if exponent < 3 || exponent % 2 == 0 || exponent >= 1 << 33 {
            return Err(invalid(
                "RSA exponent must be odd, at least 3, and below 2^33",
            ));
        }
        Ok(Self {
            alg,
            kid: None,
            material: Material::Rsa {
                n: n.to_vec(),
                e: e.to_vec(),
            },
        })
    }

    /// An ECDSA public key from its affine coordinates (big-endian, `ES256`: 32 bytes each on P-256,
    /// `ES384`: 48 bytes each on P-384). A point that is not on the curve verifies no signature.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] for another algorithm or wrong coordinate lengths.
    pub fn ecdsa(alg: Algorithm, x: &[u8], y: &[u8]) -> Result<Self, Error> {
        let len = match alg {
            Algorithm::ES256 => 32,
            Algorithm::ES384 => 48,
            Algorithm::ES512 => 66,
            other => return Err(invalid(format!("{other} is not an ECDSA algorithm"))),
        };
        if x.len() != len || y.len() != len {
            return Err(invalid(format!(
                "{alg} coordinates must be {len} bytes each"
            )));
        }
        if alg == Algorithm::ES512 {
            return Self::p521(x, y);
        }
        // ring validates the point (on the curve, not the identity) every time it verifies, so a bad point
        // verifies nothing; it exposes no separate check to run here.
        let mut point = Vec::with_capacity(1 + 2 * len);
        point.push(0x04);
        point.extend_from_slice(x);
        point.extend_from_slice(y);
        Ok(Self {
            alg,
            kid: None,
            material: Material::Public(point),
        })
    }

    /// A P-521 key (`ES512`), its point checked to be on the curve here.
    #[cfg(feature = "es512")]
    fn p521(x: &[u8], y: &[u8]) -> Result<Self, Error> {
        let mut point = Vec::with_capacity(133);
        point.push(0x04);
        point.extend_from_slice(x);
        point.extend_from_slice(y);
        let key = p521::ecdsa::VerifyingKey::from_sec1_bytes(&point)
            .map_err(|_| invalid("the P-521 point is not on the curve"))?;
        Ok(Self {
            alg: Algorithm::ES512,
            kid: None,
            material: Material::P521(key),
        })
    }

    #[cfg(not(feature = "es512"))]
    fn p521(_x: &[u8], _y: &[u8]) -> Result<Self, Error> {
        Err(invalid("ES512 keys need the `es512` feature"))
    }

    /// An Ed25519 public key (`EdDSA`), 32 bytes.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] for a key that is not 32 bytes.
    pub fn ed25519(public_key: &[u8]) -> Result<Self, Error> {
        if public_key.len() != 32 {
            return Err(invalid("Ed25519 public keys are 32 bytes"));
        }
        Ok(Self {
            alg: Algorithm::EdDSA,
            kid: None,
            material: Material::Public(public_key.to_vec()),
        })
    }

    /// Sets the key id that tokens name in their `kid` header.
    #[must_use]
    pub fn with_kid(mut self, kid: impl Into<String>) -> Self {
        self.kid = Some(kid.into());
        self
    }

    /// The one algorithm this key verifies.
    #[must_use]
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The key id, if any.
    #[must_use]
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// Verifies `signature` over `message` (the JWS signing input).
    ///
    /// # Errors
    ///
    /// [`Error::BadSignature`].
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), Error> {
        let ok = match &self.material {
            Material::Hmac(key) => hmac::verify(key, message, signature).is_ok(),
            Material::Rsa { n, e } => {
                let components = signature::RsaPublicKeyComponents {
                    n: n.as_slice(),
                    e: e.as_slice(),
                };
                components
                    .verify(rsa_params(self.alg), message, signature)
                    .is_ok()
            }
            #[cfg(feature = "es512")]
            Material::P521(key) => {
                use p521::ecdsa::signature::Verifier as _;
                // JWS ECDSA signatures are the fixed-width `r || s` (RFC 7518 §3.4): 2 × 66 bytes.
                p521::ecdsa::Signature::from_slice(signature)
                    .is_ok_and(|signature| key.verify(message, &signature).is_ok())
            }
            Material::Public(bytes) => {
                let alg: &dyn signature::VerificationAlgorithm = match self.alg {
                    Algorithm::ES256 => &signature::ECDSA_P256_SHA256_FIXED,
                    Algorithm::ES384 => &signature::ECDSA_P384_SHA384_FIXED,
                    _ => &signature::ED25519,
                };
                signature::UnparsedPublicKey::new(alg, bytes)
                    .verify(message, signature)
                    .is_ok()
            }
        };
        if ok { Ok(()) } else { Err(Error::BadSignature) }
    }
}

fn rsa_params(alg: Algorithm) -> &'static signature::RsaParameters {
    match alg {
        Algorithm::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
        _ => &signature::RSA_PKCS1_2048_8192_SHA256,
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material (an HMAC secret is a secret).
        f.debug_struct("VerifyingKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}
