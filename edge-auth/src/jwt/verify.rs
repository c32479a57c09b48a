//! The verifier: compact JWS in, verified claims or a typed rejection out. Sans-IO: keys and time are
//! inputs.

use std::borrow::Cow;
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::base64url;
use super::json::{self, Field, Members};
use super::key::{Algorithm, VerifyingKey};
use crate::jwt::Error;

/// Finds the key for a token. Implemented by [`KeySet`] and by the JWKS provider's snapshots.
pub trait KeyLookup {
    /// The key for a token naming `kid` (if it names one) and algorithm `alg`: with a `kid`, that key
    /// (the one bound to `alg` when the `kid` has several); without, the one key that fits `alg`, if
    /// exactly one does (RFC 7515 makes `kid` optional).
    fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<&VerifyingKey>;
}

/// A fixed set of keys.
#[derive(Clone, Debug, Default)]
pub struct KeySet {
    keys: Vec<VerifyingKey>,
}

impl KeySet {
    /// An empty set.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a key.
    #[must_use]
    pub fn with(mut self, key: VerifyingKey) -> Self {
        self.keys.push(key);
        self
    }

    /// The keys.
    #[must_use]
    pub fn keys(&self) -> &[VerifyingKey] {
        &self.keys
    }
}

impl FromIterator<VerifyingKey> for KeySet {
    fn from_iter<I: IntoIterator<Item = VerifyingKey>>(iter: I) -> Self {
        Self {
            keys: iter.into_iter().collect(),
        }
    }
}

impl KeyLookup for KeySet {
    fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<&VerifyingKey> {
        match kid {
            Some(kid) => {
                let mut named = self.keys.iter().filter(|k| k.kid() == Some(kid));
                let first = named.next()?;
                // The key bound to the token's algorithm, else the first (which then mismatches).
                Some(
                    std::iter::once(first)
                        .chain(named)
                        .find(|k| k.algorithm() == alg)
                        .unwrap_or(first),
                )
            }
            None => {
                let mut fitting = self.keys.iter().filter(|k| k.algorithm() == alg);
                match (fitting.next(), fitting.next()) {
                    (Some(only), None) => Some(only),
                    _ if self.keys.len() == 1 => self.keys.first(),
                    _ => None,
                }
            }
        }
    }
}

impl KeyLookup for VerifyingKey {
    fn find(&self, kid: Option<&str>, _alg: Algorithm) -> Option<&VerifyingKey> {
        match (kid, self.kid()) {
            (Some(wanted), Some(own)) if wanted != own => None,
            _ => Some(self),
        }
    }
}

/// Size limits on what a verifier reads before it has checked anything (set a field of the default).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// The whole compact token, in bytes (default 8 KiB).
    pub max_token_len: usize,
    /// The decoded header (default 1 KiB).
    pub max_header_len: usize,
    /// The decoded claims (default 6 KiB).
    pub max_claims_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_token_len: 8 * 1024,
            max_header_len: 1024,
            max_claims_len: 6 * 1024,
        }
    }
}

/// What a token must satisfy beyond its signature.
///
/// Defaults: 60 s of leeway, `exp` required, any issuer, any audience (set [`Validation::with_issuer`] and
/// [`Validation::with_audience`] in production).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Validation {
    /// Tolerance for clock differences in `exp`, `nbf` and `iat`.
    pub leeway: Duration,
    /// Accepted issuers; empty accepts any (and does not require `iss`).
    pub issuers: Vec<String>,
    /// Accepted audiences; empty accepts any (and does not require `aud`).
    pub audiences: Vec<String>,
    /// Claims that must be present.
    pub required: Vec<Cow<'static, str>>,
    /// The `typ` header tokens must carry (e.g. `at+jwt`, RFC 9068), if any.
    pub typ: Option<String>,
    /// Refuse an `iat` after now even within the leeway.
    pub strict_iat: bool,
    /// Input size limits.
    pub limits: Limits,
}

impl Default for Validation {
    fn default() -> Self {
        Self {
            leeway: Duration::from_secs(60),
            issuers: Vec::new(),
            audiences: Vec::new(),
            required: vec![Cow::Borrowed("exp")],
            typ: None,
            strict_iat: false,
            limits: Limits::default(),
        }
    }
}

impl Validation {
    /// The defaults.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the leeway.
    #[must_use]
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Accepts tokens from `issuer` (call again for more); `iss` becomes required.
    #[must_use]
    pub fn with_issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuers.push(issuer.into());
        self
    }

    /// Accepts tokens for `audience` (call again for more); `aud` becomes required.
    #[must_use]
    pub fn with_audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// Requires `claim` to be present (a `&'static str`, or a `String` read from configuration).
    #[must_use]
    pub fn require(mut self, claim: impl Into<Cow<'static, str>>) -> Self {
        self.required.push(claim.into());
        self
    }

    /// Requires the header's `typ` to be `typ` (RFC 7515 §4.1.9: compared without case, and with or
    /// without the `application/` prefix), as RFC 9068 asks of access tokens (`at+jwt`).
    #[must_use]
    pub fn with_typ(mut self, typ: impl Into<String>) -> Self {
        self.typ = Some(typ.into());
        self
    }

    /// With `strict`, a token whose `iat` is after now is refused even within the leeway (the leeway
    /// still applies to `exp` and `nbf`). Off by default: clocks differ.
    #[must_use]
    pub fn with_strict_iat(mut self, strict: bool) -> Self {
        self.strict_iat = strict;
        self
    }

    /// Sets the size limits.
    #[must_use]
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }
}

/// The protected header of a verified token.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Header {
    /// The algorithm (equal to the key's).
    pub alg: Algorithm,
    /// The key id, if the token named one.
    pub kid: Option<String>,
    /// The `typ` header, if any.
    pub typ: Option<String>,
}

/// The registered claims of a verified token (RFC 7519 §4.1), type-checked.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct RegisteredClaims {
    /// `iss`: who issued the token.
    pub iss: Option<String>,
    /// `sub`: whom the token is about.
    pub sub: Option<String>,
    /// `jti`: the token's unique id.
    pub jti: Option<String>,
    /// `aud`, normalised to a list (a single string is a list of one).
    pub aud: Vec<String>,
    /// `exp`, seconds since the Unix epoch.
    pub exp: Option<f64>,
    /// `nbf`, seconds since the Unix epoch.
    pub nbf: Option<f64>,
    /// `iat`, seconds since the Unix epoch.
    pub iat: Option<f64>,
}

/// A token whose signature and claims have been checked.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Verified<C> {
    /// Its header.
    pub header: Header,
    /// Its registered claims.
    pub claims: RegisteredClaims,
    /// The whole claims set in the caller's type (registered claims included, if the type asks for them).
    pub custom: C,
}

/// Verifies compact JWS tokens. See the [module docs](super).
///
/// One path for every token: split, header through the strict JSON reader, key by `kid` and `alg`,
/// signature, then the claims through the same reader, the registered ones checked, the caller's type
/// filled from the parsed value by serde. No second parser can disagree with the first.
///
/// ```
/// use std::time::Duration;
/// use edge_auth::jwt::{Algorithm, KeySet, Validation, Verifier, VerifyingKey};
///
/// let key = VerifyingKey::hmac(Algorithm::HS256, b"a very secret key of 32 bytes!!!").unwrap();
/// let verifier = Verifier::new(Validation::new().with_issuer("https://auth.example"));
/// let token = "eyJhbGciOiJub25lIn0.eyJleHAiOjF9.";
/// let rejected = verifier.verify::<serde_json::Value>(token, &KeySet::new().with(key), Duration::from_secs(0));
/// assert_eq!(rejected.unwrap_err(), edge_auth::jwt::Error::UnsupportedAlgorithm);
/// ```
#[derive(Clone, Debug, Default)]
pub struct Verifier {
    validation: Validation,
}

impl Verifier {
    /// A verifier applying `validation`.
    #[must_use]
    pub fn new(validation: Validation) -> Self {
        Self { validation }
    }

    /// The validation settings.
    #[must_use]
    pub fn validation(&self) -> &Validation {
        &self.validation
    }

    /// Verifies `token` with a key from `keys` at `now` (time since the Unix epoch, from the caller's
    /// [`Clock`](edge_core::Clock)), and deserializes its claims into `C`.
    ///
    /// The signature is checked before the claims are even decoded: nothing an attacker controls beyond the
    /// header is parsed for an invalid token.
    ///
    /// # Errors
    ///
    /// The [`Error`] naming the first check that failed.
    pub fn verify<C: DeserializeOwned>(
        &self,
        token: &str,
        keys: &impl KeyLookup,
        now: Duration,
    ) -> Result<Verified<C>, Error> {
        self.verify_signed(token, keys, |header, payload| {
            let members = json::object(payload, |name| self.wants_claim(name))
                .map_err(|_| Error::Malformed("claims are not a JSON object"))?;
            let claims = self.check_claims(&members, now)?;
            // The strict read passed, so the payload is UTF-8: serde_json need not check it string by
            // string.
            let custom = match std::str::from_utf8(payload) {
                Ok(text) => serde_json::from_str(text),
                Err(_) => serde_json::from_slice(payload),
            }
            .map_err(|e| Error::CustomClaims(e.to_string()))?;
            Ok(Verified {
                header,
                claims,
                custom,
            })
        })
    }

    /// Verifies the JWS layer only (size, segments, header, key, signature) and returns the header and the
    /// decoded payload, for payloads that are not JWT claims.
    ///
    /// # Errors
    ///
    /// The [`Error`] naming the first check that failed.
    pub fn verify_jws(
        &self,
        token: &str,
        keys: &impl KeyLookup,
    ) -> Result<(Header, Vec<u8>), Error> {
        self.verify_signed(token, keys, |header, payload| {
            Ok((header, payload.to_vec()))
        })
    }

    /// Checks the token's signature, then hands its header and decoded payload to `then`.
    fn verify_signed<R>(
        &self,
        token: &str,
        keys: &impl KeyLookup,
        then: impl FnOnce(Header, &[u8]) -> Result<R, Error>,
    ) -> Result<R, Error> {
        let limits = &self.validation.limits;
        if token.len() > limits.max_token_len {
            return Err(Error::TooLarge("token"));
        }
        let (header_b64, payload_b64, signature_b64) = split(token)?;
        let header = parse_header(header_b64, limits)?;
        if let Some(wanted) = &self.validation.typ {
            if !same_typ(header.typ.as_deref(), wanted) {
                return Err(Error::InvalidType);
            }
        }
        let key = keys
            .find(header.kid.as_deref(), header.alg)
            .ok_or(Error::UnknownKey)?;
        if key.algorithm() != header.alg {
            return Err(Error::AlgorithmMismatch);
        }
        if signature_b64.is_empty() {
            return Err(Error::Malformed("empty signature"));
        }
        // Enough for RSA-8192; anything longer is not a signature of any supported algorithm.
        if signature_b64.len() > 1366 {
            return Err(Error::BadSignature);
        }
        // On the stack: 1,366 characters decode to at most 1,024 bytes.
        let mut signature = [0u8; 1024];
        let signature = base64url::decode_into(signature_b64, &mut signature)
            .map_err(|_| Error::Malformed("signature is not base64url"))?;
        let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];
        key.verify(signing_input.as_bytes(), signature)?;
        if decoded_len(payload_b64) > limits.max_claims_len {
            return Err(Error::TooLarge("claims"));
        }
        let mut stack = [0u8; 2048];
        with_decoded(payload_b64, &mut stack, |payload| then(header, payload))
            .map_err(|_| Error::Malformed("claims are not base64url"))?
    }

    /// Whether the claims check reads member `name`: a registered claim, or one required to be present.
    fn wants_claim(&self, name: &str) -> bool {
        matches!(name, "iss" | "sub" | "aud" | "exp" | "nbf" | "iat" | "jti")
            || self.validation.required.iter().any(|r| r == name)
    }

    /// Checks the registered claims (types, required ones, times, issuer, audience) and keeps them.
    fn check_claims(
        &self,
        members: &Members<'_>,
        now: Duration,
    ) -> Result<RegisteredClaims, Error> {
        let v = &self.validation;
        if let Some(missing) = v.required.iter().find(|name| members.get(name).is_none()) {
            return Err(Error::MissingClaim(missing.clone()));
        }
        let text = |name: &'static str| match members.get(name) {
            None => Ok(None),
            Some(Field::Str(s)) => Ok(Some(s.clone().into_owned())),
            Some(_) => Err(Error::InvalidClaim(name)),
        };
        let date = |name: &'static str| match members.get(name) {
            None => Ok(None),
            Some(Field::Number(n)) => Ok(Some(*n)),
            Some(_) => Err(Error::InvalidClaim(name)),
        };
        let aud = match members.get("aud") {
            None => Vec::new(),
            Some(Field::Str(one)) => vec![one.clone().into_owned()],
            Some(Field::Strings(list)) => list.iter().map(|a| a.clone().into_owned()).collect(),
            Some(_) => return Err(Error::InvalidClaim("aud")),
        };
        let claims = RegisteredClaims {
            iss: text("iss")?,
            sub: text("sub")?,
            jti: text("jti")?,
            aud,
            exp: date("exp")?,
            nbf: date("nbf")?,
            iat: date("iat")?,
        };
        let now = now.as_secs_f64();
        let leeway = v.leeway.as_secs_f64();
        if claims.exp.is_some_and(|exp| now >= exp + leeway) {
            return Err(Error::Expired);
        }
        if claims.nbf.is_some_and(|nbf| now + leeway < nbf) {
            return Err(Error::NotYetValid);
        }
        let iat_leeway = if v.strict_iat { 0.0 } else { leeway };
        if claims.iat.is_some_and(|iat| now + iat_leeway < iat) {
            return Err(Error::IssuedInFuture);
        }
        if !v.issuers.is_empty() {
            match claims.iss.as_deref() {
                None => return Err(Error::MissingClaim("iss".into())),
                Some(iss) if !v.issuers.iter().any(|i| i == iss) => {
                    return Err(Error::InvalidIssuer);
                }
                Some(_) => {}
            }
        }
        if !v.audiences.is_empty() {
            if claims.aud.is_empty() {
                return Err(Error::MissingClaim("aud".into()));
            }
            if !claims
                .aud
                .iter()
                .any(|a| v.audiences.iter().any(|want| want == a))
            {
                return Err(Error::InvalidAudience);
            }
        }
        Ok(claims)
    }
}

/// RFC 7515 §4.1.9: media types compare without case, and `application/` may be left out.
fn same_typ(typ: Option<&str>, wanted: &str) -> bool {
    let bare = |t: &str| {
        let lower = t.trim().to_ascii_lowercase();
        match lower.strip_prefix("application/") {
            Some(rest) => rest.to_owned(),
            None => lower,
        }
    };
    typ.is_some_and(|typ| bare(typ) == bare(wanted))
}

/// Splits a compact JWS into its three segments.
fn split(token: &str) -> Result<(&str, &str, &str), Error> {
    let mut segments = token.split('.');
    match (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) {
        (Some(""), Some(_), Some(_), None) => Err(Error::Malformed("empty header")),
        (Some(header), Some(payload), Some(signature), None) => Ok((header, payload, signature)),
        _ => Err(Error::Malformed("a compact JWS has exactly three segments")),
    }
}

/// Decodes `encoded` into `stack` when it fits (the usual case: no allocation), else onto the heap, and
/// hands the bytes to `then`.
fn with_decoded<R>(
    encoded: &str,
    stack: &mut [u8],
    then: impl FnOnce(&[u8]) -> R,
) -> Result<R, Error> {
    if base64url::decoded_len(encoded)? <= stack.len() {
        return Ok(then(base64url::decode_into(encoded, stack)?));
    }
    Ok(then(&base64url::decode(encoded)?))
}

/// The length `encoded` decodes to, for the size limits before decoding (a length no encoding has counts
/// as zero here; decoding then refuses it).
fn decoded_len(encoded: &str) -> usize {
    base64url::decoded_len(encoded).unwrap_or(0)
}

/// Header parameters this verifier understands when listed in `crit`: none. RFC 7515 §4.1.11 requires
/// rejecting a token whose `crit` names an extension the recipient does not process.
const UNDERSTOOD_CRITICAL: [&str; 0] = [];

/// The protected header of a token, within the size limit. `jku`, `x5u`, `jwk` and `x5c` are deliberately
/// ignored: keys come from the verifier's own key set, never from the token.
fn parse_header(encoded: &str, limits: &Limits) -> Result<Header, Error> {
    if decoded_len(encoded) > limits.max_header_len {
        return Err(Error::TooLarge("header"));
    }
    let mut stack = [0u8; 512];
    with_decoded(encoded, &mut stack, parse_header_json)
        .map_err(|_| Error::Malformed("header is not base64url"))?
}

/// The header's parameters, from its decoded JSON.
fn parse_header_json(bytes: &[u8]) -> Result<Header, Error> {
    let params = json::object(bytes, |name| matches!(name, "alg" | "kid" | "typ" | "crit"))
        .map_err(|_| Error::Malformed("header is not a JSON object"))?;
    let alg = match params.get("alg") {
        Some(Field::Str(name)) => Algorithm::from_name(name).ok_or(Error::UnsupportedAlgorithm)?,
        Some(_) => return Err(Error::Malformed("`alg` is not a string")),
        None => return Err(Error::Malformed("no `alg` header")),
    };
    let text = |name: &'static str| match params.get(name) {
        None => Ok(None),
        Some(Field::Str(s)) => Ok(Some(s.clone().into_owned())),
        Some(_) => Err(Error::Malformed(name)),
    };
    let (kid, typ) = (text("kid")?, text("typ")?);
    match params.get("crit") {
        None => {}
        Some(Field::Strings(names)) if !names.is_empty() => {
            let understood = |n: &Cow<'_, str>| UNDERSTOOD_CRITICAL.contains(&n.as_ref());
            if !names.iter().all(understood) {
                return Err(Error::UnsupportedCritical);
            }
        }
        Some(_) => return Err(Error::Malformed("`crit` must be a non-empty array")),
    }
    Ok(Header { alg, kid, typ })
}
