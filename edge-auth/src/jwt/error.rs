//! The one error type of token verification.

use std::borrow::Cow;
use std::fmt;

/// Why a token was rejected, or a key refused. Each variant says what failed without echoing secrets or the
/// token itself, so it is safe to log; the `WWW-Authenticate` response uses only its RFC 6750 code.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Error {
    /// The token is not a compact JWS: wrong number of segments, bad base64url, bad JSON, wrong types in
    /// the header. The detail names the part.
    Malformed(&'static str),
    /// The token, its header or its claims exceed the configured limits.
    TooLarge(&'static str),
    /// The header names an algorithm this verifier does not implement, including `none`.
    UnsupportedAlgorithm,
    /// The header's `alg` differs from the algorithm the key is pinned to.
    AlgorithmMismatch,
    /// No key matches the token's `kid` (or the token has none and there is not exactly one key).
    UnknownKey,
    /// The signature does not verify.
    BadSignature,
    /// The header lists `crit` extensions this verifier does not understand.
    UnsupportedCritical,
    /// `exp` has passed (beyond the leeway).
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    NotYetValid,
    /// `iat` is in the future (beyond the leeway, or at all under [`Validation::with_strict_iat`]).
    ///
    /// [`Validation::with_strict_iat`]: crate::jwt::Validation::with_strict_iat
    IssuedInFuture,
    /// The header's `typ` is not the one required ([`Validation::with_typ`]).
    ///
    /// [`Validation::with_typ`]: crate::jwt::Validation::with_typ
    InvalidType,
    /// `iss` is not an accepted issuer.
    InvalidIssuer,
    /// `aud` names none of the accepted audiences.
    InvalidAudience,
    /// A required claim is absent.
    MissingClaim(Cow<'static, str>),
    /// A registered claim has the wrong JSON type (never treated as absent).
    InvalidClaim(&'static str),
    /// The claims do not deserialize into the caller's type.
    CustomClaims(String),
    /// A key was refused at construction: malformed, weak (RSA under 2048 bits, an HMAC secret shorter
    /// than its hash), or unusable for verification.
    InvalidKey(String),
    /// Keys could not be fetched or read from their source.
    KeySource(edge_core::Error),
}

impl Error {
    /// `true` if the failure is the server's (keys unavailable), not the token's: answer 503, not 401.
    #[must_use]
    pub fn is_server_side(&self) -> bool {
        matches!(self, Self::KeySource(_))
    }

    /// A short, stable name of the failure (`expired`, `bad_signature`, …), for span attributes
    /// (`edge.jwt.outcome`), metrics and logs. It names the check, never the token's content.
    #[must_use]
    pub const fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::TooLarge(_) => "too_large",
            Self::UnsupportedAlgorithm => "unsupported_algorithm",
            Self::AlgorithmMismatch => "algorithm_mismatch",
            Self::UnknownKey => "unknown_key",
            Self::BadSignature => "bad_signature",
            Self::UnsupportedCritical => "unsupported_critical",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::IssuedInFuture => "issued_in_future",
            Self::InvalidType => "invalid_type",
            Self::InvalidIssuer => "invalid_issuer",
            Self::InvalidAudience => "invalid_audience",
            Self::MissingClaim(_) => "missing_claim",
            Self::InvalidClaim(_) => "invalid_claim",
            Self::CustomClaims(_) => "custom_claims",
            Self::InvalidKey(_) => "invalid_key",
            Self::KeySource(_) => "key_source",
        }
    }
}

/// Equal when the same check failed for the same reason; key-source errors compare by kind.
impl PartialEq for Error {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::KeySource(a), Self::KeySource(b)) => a.kind() == b.kind(),
            (Self::Malformed(a), Self::Malformed(b))
            | (Self::TooLarge(a), Self::TooLarge(b))
            | (Self::InvalidClaim(a), Self::InvalidClaim(b)) => a == b,
            (Self::MissingClaim(a), Self::MissingClaim(b)) => a == b,
            (Self::CustomClaims(a), Self::CustomClaims(b))
            | (Self::InvalidKey(a), Self::InvalidKey(b)) => a == b,
            _ => std::mem::discriminant(self) == std::mem::discriminant(other),
        }
    }
}

impl Eq for Error {}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(what) => write!(f, "malformed token: {what}"),
            Self::TooLarge(what) => write!(f, "token too large: {what}"),
            Self::UnsupportedAlgorithm => f.write_str("algorithm not supported"),
            Self::AlgorithmMismatch => f.write_str("algorithm does not match the key"),
            Self::UnknownKey => f.write_str("unknown signing key"),
            Self::BadSignature => f.write_str("bad signature"),
            Self::UnsupportedCritical => f.write_str("unsupported critical header"),
            Self::Expired => f.write_str("token expired"),
            Self::NotYetValid => f.write_str("token not yet valid"),
            Self::IssuedInFuture => f.write_str("token issued in the future"),
            Self::InvalidType => f.write_str("token type (`typ`) not accepted"),
            Self::InvalidIssuer => f.write_str("issuer not accepted"),
            Self::InvalidAudience => f.write_str("audience not accepted"),
            Self::MissingClaim(name) => write!(f, "missing claim `{name}`"),
            Self::InvalidClaim(name) => write!(f, "claim `{name}` has the wrong type"),
            Self::CustomClaims(why) => write!(f, "claims do not match the expected shape: {why}"),
            Self::InvalidKey(why) => write!(f, "invalid key: {why}"),
            Self::KeySource(e) => write!(f, "keys unavailable: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::KeySource(e) => Some(e),
            _ => None,
        }
    }
}
