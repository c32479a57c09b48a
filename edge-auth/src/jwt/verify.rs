//! The verifier: compact JWS in, verified claims or a typed rejection out. Sans-IO: keys and time are
//! inputs.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::b64;
use super::fused;
use super::key::{Algorithm, VerifyingKey};
use super::scan::{self, Field};
use crate::error::Error;

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

/// Size limits on what a verifier reads before it has checked anything.
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

impl Limits {
    /// Sets the largest token.
    #[must_use]
    pub const fn with_max_token_len(mut self, len: usize) -> Self {
        self.max_token_len = len;
        self
    }

    /// Sets the largest decoded header.
    #[must_use]
    pub const fn with_max_header_len(mut self, len: usize) -> Self {
        self.max_header_len = len;
        self
    }

    /// Sets the largest decoded claims set.
    #[must_use]
    pub const fn with_max_claims_len(mut self, len: usize) -> Self {
        self.max_claims_len = len;
        self
    }
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
    pub required: Vec<&'static str>,
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
            required: vec!["exp"],
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

    /// Requires `claim` to be present. A name read at run time (from configuration) is taken as a
    /// `String` and kept once for the life of the process (names past a few thousand distinct ones are
    /// refused: [`Validation::try_require`] says so).
    ///
    /// Fails closed: should a name not be keepable, the verifier requires a claim no token has, so
    /// every token is refused rather than the requirement silently dropped.
    #[must_use]
    pub fn require(self, claim: impl Into<Cow<'static, str>>) -> Self {
        let claim = claim.into();
        let mut unkept = self.clone();
        match self.try_require(claim) {
            Ok(validation) => validation,
            Err(_) => {
                unkept.required.push("\u{0}unkeepable required claim");
                unkept
            }
        }
    }

    /// [`Validation::require`], saying whether the name could be kept.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidClaim`] when too many distinct run-time names are already kept.
    pub fn try_require(mut self, claim: impl Into<Cow<'static, str>>) -> Result<Self, Error> {
        let name = match claim.into() {
            Cow::Borrowed(name) => name,
            Cow::Owned(name) => crate::intern::intern(name)
                .ok_or(Error::InvalidClaim("too many required claim names"))?,
        };
        self.required.push(name);
        Ok(self)
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
    pub typ: Option<Cow<'static, str>>,
}

/// The registered claims of a verified token (RFC 7519 §4.1), type-checked.
///
/// The string claims share one buffer, inline when they fit (no allocation for a typical token: this is on
/// every request's path), hence accessors rather than fields.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RegisteredClaims {
    /// `iss`, `sub`, `jti` and the audiences, end to end.
    text: ClaimText,
    iss: Option<Span>,
    sub: Option<Span>,
    jti: Option<Span>,
    /// The first audience, kept apart so the usual single audience needs no list.
    aud_first: Option<Span>,
    aud_rest: Vec<Span>,
    exp: Option<f64>,
    nbf: Option<f64>,
    iat: Option<f64>,
}

/// Where one string claim sits in [`RegisteredClaims::text`].
type Span = std::ops::Range<usize>;

/// How many bytes of string claims [`ClaimText`] holds without allocating.
const INLINE_TEXT: usize = 126;

/// The string claims end to end: inline when they fit (a typical `iss`, `sub` and `aud` do), on the heap
/// otherwise.
#[derive(Clone)]
enum ClaimText {
    Inline { len: u8, bytes: [u8; INLINE_TEXT] },
    Heap(String),
}

impl Default for ClaimText {
    fn default() -> Self {
        Self::Inline {
            len: 0,
            bytes: [0; INLINE_TEXT],
        }
    }
}

impl ClaimText {
    /// Room for `len` bytes.
    fn with_capacity(len: usize) -> Self {
        if len <= INLINE_TEXT {
            Self::default()
        } else {
            Self::Heap(String::with_capacity(len))
        }
    }

    /// Appends `text` and says where it went.
    fn push(&mut self, text: &str) -> Span {
        match self {
            Self::Inline { len, bytes } => {
                let start = usize::from(*len);
                let end = start + text.len();
                match (bytes.get_mut(start..end), u8::try_from(end)) {
                    (Some(room), Ok(new_len)) => {
                        room.copy_from_slice(text.as_bytes());
                        *len = new_len;
                    }
                    // More than was announced: move to the heap (not reached through `with_capacity`).
                    _ => {
                        let mut heap = String::from(self.as_str());
                        heap.push_str(text);
                        *self = Self::Heap(heap);
                    }
                }
                start..end
            }
            Self::Heap(heap) => {
                let start = heap.len();
                heap.push_str(text);
                start..heap.len()
            }
        }
    }

    fn get(&self, span: Span) -> Option<&str> {
        match self {
            // Only whole `&str`s are pushed, so every span is valid UTF-8; checking it keeps this safe code.
            Self::Inline { bytes, .. } => std::str::from_utf8(bytes.get(span)?).ok(),
            Self::Heap(heap) => heap.get(span),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            Self::Inline { len, .. } => self.get(0..usize::from(*len)).unwrap_or_default(),
            Self::Heap(heap) => heap,
        }
    }
}

/// Equal when the text is, wherever it is kept.
impl PartialEq for ClaimText {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl fmt::Debug for ClaimText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// Payloads up to this many bytes are decoded into a stack buffer instead of the heap. The buffer holds the
/// signature first, so it must be at least 1024 bytes (RSA-8192).
const STACK_PAYLOAD: usize = 1536;
const _: () = assert!(STACK_PAYLOAD >= 1024);

impl RegisteredClaims {
    fn new(
        iss: Option<&str>,
        sub: Option<&str>,
        aud: &[Cow<'_, str>],
        jti: Option<&str>,
        [exp, nbf, iat]: [Option<f64>; 3],
    ) -> Self {
        let len = [iss, sub, jti]
            .iter()
            .flatten()
            .map(|s| s.len())
            .sum::<usize>()
            + aud.iter().map(|a| a.len()).sum::<usize>();
        let mut text = ClaimText::with_capacity(len);
        let mut push = |s: &str| text.push(s);
        let iss = iss.map(&mut push);
        let sub = sub.map(&mut push);
        let jti = jti.map(&mut push);
        let (aud_first, aud_rest) = match aud {
            [] => (None, Vec::new()),
            [first, rest @ ..] => (Some(push(first)), rest.iter().map(|a| push(a)).collect()),
        };
        Self {
            text,
            iss,
            sub,
            jti,
            aud_first,
            aud_rest,
            exp,
            nbf,
            iat,
        }
    }

    fn get(&self, span: Option<&Span>) -> Option<&str> {
        span.and_then(|s| self.text.get(s.clone()))
    }

    /// `iss`: who issued the token.
    #[must_use]
    pub fn iss(&self) -> Option<&str> {
        self.get(self.iss.as_ref())
    }

    /// `sub`: whom the token is about.
    #[must_use]
    pub fn sub(&self) -> Option<&str> {
        self.get(self.sub.as_ref())
    }

    /// `jti`: the token's unique id.
    #[must_use]
    pub fn jti(&self) -> Option<&str> {
        self.get(self.jti.as_ref())
    }

    /// `aud`, normalised to a list (a single string is a list of one).
    pub fn aud(&self) -> impl Iterator<Item = &str> + '_ {
        self.aud_first
            .iter()
            .chain(&self.aud_rest)
            .map(|s| self.text.get(s.clone()).unwrap_or_default())
    }

    /// `exp`, seconds since the Unix epoch.
    #[must_use]
    pub fn exp(&self) -> Option<f64> {
        self.exp
    }

    /// `nbf`, seconds since the Unix epoch.
    #[must_use]
    pub fn nbf(&self) -> Option<f64> {
        self.nbf
    }

    /// `iat`, seconds since the Unix epoch.
    #[must_use]
    pub fn iat(&self) -> Option<f64> {
        self.iat
    }
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
/// ```
/// use std::time::Duration;
/// use edge_auth::jwt::{Algorithm, KeySet, Validation, Verifier, VerifyingKey};
///
/// let key = VerifyingKey::hmac(Algorithm::HS256, b"a very secret key of 32 bytes!!!").unwrap();
/// let verifier = Verifier::new(Validation::new().with_issuer("https://auth.example"));
/// let token = "eyJhbGciOiJub25lIn0.eyJleHAiOjF9.";
/// let rejected = verifier.verify::<serde_json::Value>(token, &KeySet::new().with(key), Duration::from_secs(0));
/// assert_eq!(rejected.unwrap_err(), edge_auth::Error::UnsupportedAlgorithm);
/// ```
#[derive(Clone, Debug)]
pub struct Verifier {
    validation: Validation,
    /// `validation.required`, each name resolved once here rather than compared on every token.
    required: Vec<Required>,
    /// The required names that are not registered claims (most verifiers have none).
    required_custom: Vec<&'static str>,
}

/// A required claim, resolved.
#[derive(Clone, Copy, Debug)]
enum Required {
    Registered(Registered),
    Custom(&'static str),
}

impl Default for Verifier {
    fn default() -> Self {
        Self::new(Validation::default())
    }
}

impl Verifier {
    /// A verifier applying `validation`.
    #[must_use]
    pub fn new(validation: Validation) -> Self {
        let required: Vec<Required> = validation
            .required
            .iter()
            .map(|&name| {
                Registered::from_name(name).map_or(Required::Custom(name), Required::Registered)
            })
            .collect();
        let required_custom = required
            .iter()
            .filter_map(|r| match r {
                Required::Custom(name) => Some(*name),
                Required::Registered(_) => None,
            })
            .collect();
        Self {
            validation,
            required,
            required_custom,
        }
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
            self.claims(header, payload, now)
        })
    }

    /// The claims of a verified token's `payload`.
    fn claims<C: DeserializeOwned>(
        &self,
        header: Header,
        payload: &[u8],
        now: Duration,
    ) -> Result<Verified<C>, Error> {
        // Fast path: one strict pass deserializes `C` and picks out the registered claims.
        let mut registered = RawClaims::new(&self.required_custom);
        if let Ok(custom) = fused::claims::<C, _>(payload, &mut registered) {
            let claims = self.check_claims(&registered, now)?;
            return Ok(Verified {
                header,
                claims,
                custom,
            });
        }
        // The fast path gives up on anything unusual; the reference path decides, and names the error.
        let mut registered = RawClaims::new(&self.required_custom);
        scan::object(payload, |name, field| registered.take_named(name, field))
            .map_err(|_| Error::Malformed("claims are not a JSON object"))?;
        let claims = self.check_claims(&registered, now)?;
        let custom =
            serde_json::from_slice(payload).map_err(|e| Error::CustomClaims(e.to_string()))?;
        Ok(Verified {
            header,
            claims,
            custom,
        })
    }

    /// Verifies the JWS layer only (size, segments, header, key, signature) and returns the header and the
    /// raw payload, for payloads that are not JWT claims.
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

    /// Checks the token's signature, then hands its header and decoded payload to `then`. The payload is
    /// decoded on the stack when it is small (most are), so verifying allocates only what the claims need.
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
        // One stack buffer holds the signature, then (once it has been checked) the payload.
        let mut buffer = [0u8; STACK_PAYLOAD];
        let len = b64::decode_to_slice(signature_b64.as_bytes(), &mut buffer)
            .map_err(|_| Error::Malformed("signature is not base64url"))?;
        let signing_input = &token.as_bytes()[..header_b64.len() + 1 + payload_b64.len()];
        key.verify(signing_input, &buffer[..len])?;

        let not_b64 = || Error::Malformed("claims are not base64url");
        if b64::decoded_len(payload_b64.len()).map_err(|_| not_b64())? > limits.max_claims_len {
            return Err(Error::TooLarge("claims"));
        }
        if payload_b64.len() <= STACK_PAYLOAD / 3 * 4 {
            let len =
                b64::decode_to_slice(payload_b64.as_bytes(), &mut buffer).map_err(|_| not_b64())?;
            return then(header, &buffer[..len]);
        }
        let payload = b64::decode(payload_b64.as_bytes()).map_err(|_| not_b64())?;
        then(header, &payload)
    }

    fn check_claims(&self, raw: &RawClaims<'_>, now: Duration) -> Result<RegisteredClaims, Error> {
        let v = &self.validation;
        let date = |name: &'static str, field: &Field<'_>| match field {
            Field::Absent => Ok(None),
            Field::Number(n) if n.to_f64().is_finite() => Ok(Some(n.to_f64())),
            _ => Err(Error::InvalidClaim(name)),
        };
        for required in &self.required {
            match *required {
                Required::Registered(claim) if raw.field(claim).is_absent() => {
                    return Err(Error::MissingClaim(claim.name()));
                }
                Required::Custom(name) if !raw.found.contains(&name) => {
                    return Err(Error::MissingClaim(name));
                }
                Required::Registered(_) | Required::Custom(_) => {}
            }
        }
        fn text<'f>(name: &'static str, field: &'f Field<'_>) -> Result<Option<&'f str>, Error> {
            match field {
                Field::Absent => Ok(None),
                Field::Str(s) => Ok(Some(s.as_ref())),
                _ => Err(Error::InvalidClaim(name)),
            }
        }
        let iss = text("iss", &raw.iss)?;
        let sub = text("sub", &raw.sub)?;
        let jti = text("jti", &raw.jti)?;
        let aud: &[Cow<'_, str>] = match &raw.aud {
            Field::Absent => &[],
            Field::Str(s) => std::slice::from_ref(s),
            Field::Strings(list) => list,
            _ => return Err(Error::InvalidClaim("aud")),
        };
        let exp = date("exp", &raw.exp)?;
        let nbf = date("nbf", &raw.nbf)?;
        let iat = date("iat", &raw.iat)?;
        let now = now.as_secs_f64();
        let leeway = v.leeway.as_secs_f64();
        if exp.is_some_and(|exp| now >= exp + leeway) {
            return Err(Error::Expired);
        }
        if nbf.is_some_and(|nbf| now + leeway < nbf) {
            return Err(Error::NotYetValid);
        }
        let iat_leeway = if v.strict_iat { 0.0 } else { leeway };
        if iat.is_some_and(|iat| now + iat_leeway < iat) {
            return Err(Error::IssuedInFuture);
        }
        if !v.issuers.is_empty() {
            match iss {
                None => return Err(Error::MissingClaim("iss")),
                Some(iss) if !v.issuers.iter().any(|i| i == iss) => {
                    return Err(Error::InvalidIssuer);
                }
                Some(_) => {}
            }
        }
        if !v.audiences.is_empty() {
            if aud.is_empty() {
                return Err(Error::MissingClaim("aud"));
            }
            if !aud.iter().any(|a| v.audiences.iter().any(|want| want == a)) {
                return Err(Error::InvalidAudience);
            }
        }
        Ok(RegisteredClaims::new(iss, sub, aud, jti, [exp, nbf, iat]))
    }
}

/// RFC 7515 §4.1.9: media types compare without case, and `application/` may be left out.
fn same_typ(typ: Option<&str>, wanted: &str) -> bool {
    let bare = |t: &str| -> String {
        let lower = t.trim().to_ascii_lowercase();
        lower
            .strip_prefix("application/")
            .map_or(lower.clone(), str::to_owned)
    };
    typ.is_some_and(|typ| bare(typ) == bare(wanted))
}

/// The registered claims the verifier checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Registered {
    Iss,
    Sub,
    Aud,
    Exp,
    Nbf,
    Iat,
    Jti,
}

impl Registered {
    /// Called for every top-level member name: all seven are three bytes, so one length check turns
    /// away nearly every other name, and the rest are fixed-size compares.
    #[inline]
    fn from_name(name: &str) -> Option<Self> {
        let name: &[u8; 3] = name.as_bytes().try_into().ok()?;
        Some(match name {
            b"iss" => Self::Iss,
            b"sub" => Self::Sub,
            b"aud" => Self::Aud,
            b"exp" => Self::Exp,
            b"nbf" => Self::Nbf,
            b"iat" => Self::Iat,
            b"jti" => Self::Jti,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Iss => "iss",
            Self::Sub => "sub",
            Self::Aud => "aud",
            Self::Exp => "exp",
            Self::Nbf => "nbf",
            Self::Iat => "iat",
            Self::Jti => "jti",
        }
    }
}

/// The registered claims as found in the payload, before type checks.
#[derive(Default)]
struct RawClaims<'a> {
    iss: Field<'a>,
    sub: Field<'a>,
    aud: Field<'a>,
    exp: Field<'a>,
    nbf: Field<'a>,
    iat: Field<'a>,
    jti: Field<'a>,
    /// The required names that are not registered claims…
    required_custom: &'a [&'static str],
    /// …and those of them that are present.
    found: Vec<&'static str>,
}

impl<'a> RawClaims<'a> {
    fn new(required_custom: &'a [&'static str]) -> Self {
        Self {
            required_custom,
            ..Self::default()
        }
    }

    fn field(&self, claim: Registered) -> &Field<'a> {
        match claim {
            Registered::Iss => &self.iss,
            Registered::Sub => &self.sub,
            Registered::Aud => &self.aud,
            Registered::Exp => &self.exp,
            Registered::Nbf => &self.nbf,
            Registered::Iat => &self.iat,
            Registered::Jti => &self.jti,
        }
    }

    fn take(&mut self, claim: Registered, field: Field<'a>) {
        let slot = match claim {
            Registered::Iss => &mut self.iss,
            Registered::Sub => &mut self.sub,
            Registered::Aud => &mut self.aud,
            Registered::Exp => &mut self.exp,
            Registered::Nbf => &mut self.nbf,
            Registered::Iat => &mut self.iat,
            Registered::Jti => &mut self.jti,
        };
        *slot = field;
    }

    /// Records a required custom claim's presence.
    fn saw_name(&mut self, name: &str) {
        if let Some(name) = self.required_custom.iter().find(|r| **r == name) {
            self.found.push(name);
        }
    }

    /// For the reference path, which hands over every top-level member.
    fn take_named(&mut self, name: &str, field: Field<'a>) {
        match Registered::from_name(name) {
            Some(claim) => self.take(claim, field),
            None => self.saw_name(name),
        }
    }
}

impl<'a> fused::ClaimSink<'a> for RawClaims<'a> {
    type Slot = Registered;

    fn wants(&self, name: &str) -> Option<Registered> {
        Registered::from_name(name)
    }

    fn saw(&mut self, name: &str) {
        if !self.required_custom.is_empty() {
            self.saw_name(name);
        }
    }

    fn take(&mut self, claim: Registered, field: Field<'a>) {
        RawClaims::take(self, claim, field);
    }
}

/// Splits a compact JWS into its three segments.
fn split(token: &str) -> Result<(&str, &str, &str), Error> {
    let three = || Error::Malformed("a compact JWS has exactly three segments");
    // The first dot ends the short header and the last begins the signature; the payload between them
    // must hold no other. memchr scans each part once, a vector at a time.
    let bytes = token.as_bytes();
    let first = memchr::memchr(b'.', bytes).ok_or_else(three)?;
    let last = memchr::memrchr(b'.', bytes).ok_or_else(three)?;
    if last == first {
        return Err(three());
    }
    // Dots are ASCII, so these are character boundaries.
    let (header, payload, signature) =
        (&token[..first], &token[first + 1..last], &token[last + 1..]);
    if memchr::memchr(b'.', payload.as_bytes()).is_some() {
        return Err(three());
    }
    if header.is_empty() {
        return Err(Error::Malformed("empty header"));
    }
    Ok((header, payload, signature))
}

/// Header parameters this verifier understands when listed in `crit`: none. RFC 7515 §4.1.11 requires
/// rejecting a token whose `crit` names an extension the recipient does not process.
const UNDERSTOOD_CRITICAL: [&str; 0] = [];

/// The header parameters the verifier reads.
#[derive(Default)]
struct HeaderParams<'a> {
    alg: Field<'a>,
    kid: Field<'a>,
    typ: Field<'a>,
    crit: Field<'a>,
}

impl<'a> HeaderParams<'a> {
    fn take(&mut self, name: &str, field: Field<'a>) {
        match name {
            "alg" => self.alg = field,
            "kid" => self.kid = field,
            "typ" => self.typ = field,
            "crit" => self.crit = field,
            // `jku`, `x5u`, `jwk` and `x5c` are deliberately ignored: keys come from the verifier's own key
            // set, never from the token.
            _ => {}
        }
    }
}

/// Header segments up to this long are remembered by [`parse_header`].
const MEMO_HEADER: usize = 256;

thread_local! {
    /// The last header segment this thread parsed, and its header. An issuer writes the same header on
    /// every token it signs with one key, so consecutive tokens nearly always share it.
    static LAST_HEADER: std::cell::RefCell<Option<(String, Header)>> =
        const { std::cell::RefCell::new(None) };
}

/// The header of a token, within the size limit. Decoding ([`decode_header`]) is skipped when the segment is
/// the one this thread decoded last: it is a pure function of the segment, so the remembered header is
/// exactly what decoding it again would give. The limit is checked first, on every call.
fn parse_header(encoded: &str, limits: &Limits) -> Result<Header, Error> {
    let len =
        b64::decoded_len(encoded.len()).map_err(|_| Error::Malformed("header is not base64url"))?;
    if len > limits.max_header_len {
        return Err(Error::TooLarge("header"));
    }
    if encoded.len() > MEMO_HEADER {
        return decode_header(encoded.as_bytes(), len);
    }
    LAST_HEADER.with(|last| {
        if let Ok(last) = last.try_borrow() {
            if let Some((segment, header)) = last.as_ref() {
                if segment == encoded {
                    return Ok(header.clone());
                }
            }
        }
        let header = decode_header(encoded.as_bytes(), len)?;
        if let Ok(mut last) = last.try_borrow_mut() {
            match last.as_mut() {
                Some((segment, remembered)) => {
                    segment.clear();
                    segment.push_str(encoded);
                    remembered.clone_from(&header);
                }
                None => *last = Some((encoded.to_owned(), header.clone())),
            }
        }
        Ok(header)
    })
}

/// Decodes and parses a header segment whose decoded length `len` is already known to be within the limit.
fn decode_header(encoded: &[u8], len: usize) -> Result<Header, Error> {
    // Typical headers fit on the stack; only unusually large ones (within the limit) allocate.
    let mut stack = [0u8; 512];
    let mut heap = Vec::new();
    let buffer: &mut [u8] = if len <= stack.len() {
        &mut stack
    } else {
        heap.resize(len, 0);
        &mut heap
    };
    let len = b64::decode_to_slice(encoded, buffer)
        .map_err(|_| Error::Malformed("header is not base64url"))?;
    let raw = &buffer[..len];
    let mut params = HeaderParams::default();
    // Most headers are a flat object of plain strings (`{"alg":"ES256","kid":"…","typ":"JWT"}`), read by a
    // small exact parser; anything else (escapes, arrays such as `crit`, duplicates) takes the full one.
    let flat = std::str::from_utf8(raw).ok().and_then(|text| {
        scan::flat_object(text, |name, value| {
            params.take(name, Field::Str(Cow::Borrowed(value)))
        })
    });
    if flat.is_none() {
        params = HeaderParams::default();
        scan::object(raw, |name, field| params.take(name, field))
            .map_err(|_| Error::Malformed("header is not a JSON object"))?;
    }
    let HeaderParams {
        alg,
        kid,
        typ,
        crit,
    } = params;
    let alg = match alg {
        Field::Str(name) => Algorithm::from_name(&name).ok_or(Error::UnsupportedAlgorithm)?,
        Field::Absent => return Err(Error::Malformed("no `alg` header")),
        _ => return Err(Error::Malformed("`alg` is not a string")),
    };
    let text = |name: &'static str, field: Field<'_>| match field {
        Field::Absent => Ok(None),
        Field::Str(s) => Ok(Some(s.into_owned())),
        _ => Err(Error::Malformed(name)),
    };
    let kid = text("kid", kid)?;
    // Nearly every token says `"typ":"JWT"`: no allocation for that one.
    let typ = match typ {
        Field::Str(s) if s == "JWT" => Some(Cow::Borrowed("JWT")),
        other => text("typ", other)?.map(Cow::Owned),
    };
    match crit {
        Field::Absent => {}
        Field::Strings(names) if !names.is_empty() => {
            if !names
                .iter()
                .all(|n| UNDERSTOOD_CRITICAL.contains(&n.as_ref()))
            {
                return Err(Error::UnsupportedCritical);
            }
        }
        _ => return Err(Error::Malformed("`crit` must be a non-empty array")),
    }
    Ok(Header { alg, kid, typ })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hs256(claims: &str) -> (String, VerifyingKey) {
        let secret = b"a secret of thirty-two bytes!!!!";
        let input = format!(
            "{}.{}",
            b64::encode(br#"{"alg":"HS256"}"#),
            b64::encode(claims.as_bytes())
        );
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
        let signature = b64::encode(ring::hmac::sign(&key, input.as_bytes()).as_ref());
        let token = format!("{input}.{signature}");
        (token, VerifyingKey::hmac(Algorithm::HS256, secret).unwrap())
    }

    #[test]
    fn required_claims_registered_or_custom_are_named_in_order() {
        let verifier = Verifier::new(Validation::new().require("tenant").require("nbf"));
        let now = Duration::from_secs(1_000);
        let check = |claims: &str| {
            let (token, key) = hs256(claims);
            verifier
                .verify::<serde_json::Value>(&token, &key, now)
                .map(|verified| verified.custom)
        };
        assert!(check(r#"{"exp":2000,"nbf":500,"tenant":"t"}"#).is_ok());
        assert_eq!(
            check(r#"{"nbf":500,"tenant":"t"}"#).unwrap_err(),
            Error::MissingClaim("exp")
        );
        assert_eq!(
            check(r#"{"exp":2000,"nbf":500}"#).unwrap_err(),
            Error::MissingClaim("tenant")
        );
        assert_eq!(
            check(r#"{"exp":2000,"tenant":"t"}"#).unwrap_err(),
            Error::MissingClaim("nbf")
        );
        // `exp` is required by default and comes first; a custom claim inside an object does not count.
        assert_eq!(
            check(r#"{"x":{"tenant":"t"}}"#).unwrap_err(),
            Error::MissingClaim("exp")
        );
        assert_eq!(
            check(r#"{"exp":2000,"nbf":500,"x":{"tenant":"t"}}"#).unwrap_err(),
            Error::MissingClaim("tenant")
        );
        // Escaped names are the names they spell, on the fast path and the reference path alike.
        assert!(check(r#"{"exp":2000,"\u006ebf":500,"tenant":"t"}"#).is_ok());
        assert!(check(r#"{"exp":2000,"nbf":500,"ten\u0061nt":"t"}"#).is_ok());
    }

    #[test]
    fn string_claims_read_back_inline_or_on_the_heap() {
        let long = "x".repeat(200);
        let cases: [(&str, &str, &[&str]); 3] = [
            ("https://issuer.example/", "user-1", &["api", "é-ünïcode"]),
            (&long, "user-2", &["api"]),
            ("", "", &[]),
        ];
        for (iss, sub, aud) in cases {
            let aud: Vec<Cow<'_, str>> = aud.iter().map(|a| Cow::Borrowed(*a)).collect();
            let claims = RegisteredClaims::new(Some(iss), Some(sub), &aud, None, [None; 3]);
            assert_eq!(claims.iss(), Some(iss));
            assert_eq!(claims.sub(), Some(sub));
            assert_eq!(claims.jti(), None);
            assert!(claims.aud().eq(aud.iter().map(|a| a.as_ref())));
            assert_eq!(claims.clone(), claims);
        }
        // Pushing past what was announced moves the text to the heap, keeping what was there.
        let mut text = ClaimText::with_capacity(4);
        let first = text.push("abcd");
        let second = text.push(&long);
        assert!(matches!(text, ClaimText::Heap(_)));
        assert_eq!(text.get(first), Some("abcd"));
        assert_eq!(text.get(second), Some(long.as_str()));
        let (mut inline, mut heap) = (ClaimText::with_capacity(4), ClaimText::with_capacity(500));
        inline.push("abcd");
        heap.push("abcd");
        assert!(matches!(inline, ClaimText::Inline { .. }));
        assert_eq!(inline, heap, "the same text, wherever it is kept");
    }

    #[test]
    fn split_finds_exactly_three_segments() {
        assert_eq!(split("h.p.s").unwrap(), ("h", "p", "s"));
        assert_eq!(split("h..").unwrap(), ("h", "", ""));
        let three = Error::Malformed("a compact JWS has exactly three segments");
        for bad in ["", "h", "h.p", "h.p.s.x", "h.p.q.s", "...", "h.p..s"] {
            assert_eq!(split(bad).unwrap_err(), three, "{bad:?}");
        }
        assert_eq!(split(".p.s").unwrap_err(), Error::Malformed("empty header"));
    }

    #[test]
    fn the_remembered_header_is_exactly_the_parsed_one() {
        let limits = Limits::default();
        let segment = |json: &str| b64::encode(json.as_bytes());
        let first = segment(r#"{"alg":"ES256","kid":"a"}"#);
        let second = segment(r#"{"alg":"RS256","typ":"at+jwt"}"#);
        let decoded = |encoded: &str| {
            decode_header(encoded.as_bytes(), b64::decoded_len(encoded.len()).unwrap())
        };
        for _ in 0..2 {
            for encoded in [&first, &second, &first] {
                assert_eq!(
                    parse_header(encoded, &limits).unwrap(),
                    decoded(encoded).unwrap()
                );
            }
        }
        // A remembered segment still obeys the limits of the verifier asking.
        parse_header(&first, &limits).unwrap();
        let tight = limits.with_max_header_len(8);
        assert_eq!(
            parse_header(&first, &tight).unwrap_err(),
            Error::TooLarge("header")
        );
        // Errors are not remembered.
        let bad = segment(r#"{"alg":"none"}"#);
        assert_eq!(
            parse_header(&bad, &limits).unwrap_err(),
            Error::UnsupportedAlgorithm
        );
        assert_eq!(
            parse_header(&first, &limits).unwrap().kid.as_deref(),
            Some("a")
        );
    }
}
