//! JSON Web Keys (RFC 7517): parsing into [`VerifyingKey`]s, key sets, and RFC 7638 thumbprints.

use serde_json::{Map, Value};

use super::base64url;
use super::json;
use super::key::{Algorithm, VerifyingKey};
use super::verify::KeySet;
use crate::jwt::Error;

/// The most keys a set may hold; a larger document is refused as a whole.
pub const MAX_KEYS: usize = 64;

/// JWK members that only a private key has (RFC 7518 §6.2.2, §6.3.2).
const PRIVATE_MEMBERS: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "oth"];

/// One JSON Web Key, as parsed. A key carrying private members (`d`, `p`, `q`, …) is refused: a
/// verifier handed a private key is looking at a leak, which it should surface, not quietly strip.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Jwk {
    members: Map<String, Value>,
}

fn bad(why: impl Into<String>) -> Error {
    Error::InvalidKey(why.into())
}

/// A JSON object read by the strict reader, then as a `serde_json` map.
fn strict_object(bytes: &[u8]) -> Option<Map<String, Value>> {
    json::object(bytes, |_| false).ok()?;
    serde_json::from_slice(bytes).ok()
}

impl Jwk {
    /// Parses one JWK (strict JSON).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] if it is not a JSON object with a string `kty`.
    pub fn from_json(json_bytes: &[u8]) -> Result<Self, Error> {
        let members =
            strict_object(json_bytes).ok_or_else(|| bad("a JWK must be a JSON object"))?;
        Self::from_members(members)
    }

    fn from_members(members: Map<String, Value>) -> Result<Self, Error> {
        if !matches!(members.get("kty"), Some(Value::String(_))) {
            return Err(bad("a JWK needs a string `kty`"));
        }
        if let Some(private) = PRIVATE_MEMBERS.iter().find(|m| members.contains_key(**m)) {
            return Err(bad(format!(
                "the key carries the private member `{private}`: a JWK Set publishes public keys only"
            )));
        }
        Ok(Self { members })
    }

    fn text(&self, name: &str) -> Result<Option<&str>, Error> {
        match self.members.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(bad(format!("`{name}` must be a string"))),
        }
    }

    fn required(&self, name: &str) -> Result<&str, Error> {
        self.text(name)?
            .ok_or_else(|| bad(format!("missing `{name}`")))
    }

    fn bytes(&self, name: &str) -> Result<Vec<u8>, Error> {
        base64url::decode(self.required(name)?)
            .map_err(|_| bad(format!("`{name}` is not base64url")))
    }

    /// `kty`.
    #[must_use]
    pub fn kty(&self) -> &str {
        self.members
            .get("kty")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// `kid`, if a string.
    #[must_use]
    pub fn kid(&self) -> Option<&str> {
        self.members.get("kid").and_then(Value::as_str)
    }

    /// The key as a [`VerifyingKey`].
    ///
    /// The algorithm is the JWK's `alg`. Where `alg` is absent it is inferred only when the key admits one
    /// algorithm (`EC` P-256 → ES256, P-384 → ES384, `OKP` Ed25519 → EdDSA); an `RSA` or `oct` key without
    /// `alg` is refused rather than trusting the token to choose (the algorithm-confusion CVEs).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`]: unsupported `kty`/`crv`, an `alg` that does not fit the key, `use` other than
    /// `sig`, `key_ops` without `verify`, malformed or weak key material.
    pub fn to_verifying_key(&self) -> Result<VerifyingKey, Error> {
        let mut keys = self.to_verifying_keys(&[])?;
        keys.pop().ok_or_else(|| bad("the key names no algorithm"))
    }

    /// The verification keys of this JWK. With an `alg`, or a curve that implies one, that one key.
    /// Without (as several identity providers publish their RSA keys), one key per algorithm of
    /// `bind` that fits the key type: the caller, not the token, decides which algorithms such a key
    /// may verify (RFC 8725 §3.1). With `bind` empty, an RSA or `oct` key without `alg` is refused.
    ///
    /// # Errors
    ///
    /// As [`Jwk::to_verifying_key`].
    pub fn to_verifying_keys(&self, bind: &[Algorithm]) -> Result<Vec<VerifyingKey>, Error> {
        if let Some(usage) = self.text("use")? {
            if usage != "sig" {
                return Err(bad(format!("`use` is `{usage}`, not `sig`")));
            }
        }
        match self.members.get("key_ops") {
            None => {}
            Some(Value::Array(ops)) if ops.iter().any(|op| op.as_str() == Some("verify")) => {}
            Some(_) => return Err(bad("`key_ops` does not allow `verify`")),
        }
        let alg = match self.text("alg")? {
            Some(name) => Some(
                Algorithm::from_name(name)
                    .ok_or_else(|| bad(format!("unsupported `alg` `{name}`")))?,
            ),
            None => None,
        };
        let bound = |family: fn(Algorithm) -> bool, kty: &str| -> Result<Vec<Algorithm>, Error> {
            match alg {
                Some(alg) => Ok(vec![alg]),
                None => {
                    let algs: Vec<Algorithm> =
                        bind.iter().copied().filter(|a| family(*a)).collect();
                    if algs.is_empty() {
                        Err(bad(format!(
                            "an {kty} JWK without `alg` needs an algorithm allowed for it"
                        )))
                    } else {
                        Ok(algs)
                    }
                }
            }
        };
        let keys = match self.kty() {
            "RSA" => {
                let (n, e) = (self.bytes("n")?, self.bytes("e")?);
                bound(Algorithm::is_rsa, "RSA")?
                    .into_iter()
                    .map(|alg| VerifyingKey::rsa(alg, &n, &e))
                    .collect::<Result<Vec<_>, _>>()?
            }
            "EC" => {
                let implied = match self.required("crv")? {
                    "P-256" => Algorithm::ES256,
                    "P-384" => Algorithm::ES384,
                    "P-521" => Algorithm::ES512,
                    other => return Err(bad(format!("unsupported curve `{other}`"))),
                };
                if alg.is_some_and(|alg| alg != implied) {
                    return Err(bad("`alg` does not match the curve"));
                }
                vec![VerifyingKey::ecdsa(
                    implied,
                    &self.bytes("x")?,
                    &self.bytes("y")?,
                )?]
            }
            "OKP" => {
                if self.required("crv")? != "Ed25519" {
                    return Err(bad("only the Ed25519 OKP curve is supported"));
                }
                if alg.is_some_and(|alg| alg != Algorithm::EdDSA) {
                    return Err(bad("`alg` does not match the curve"));
                }
                vec![VerifyingKey::ed25519(&self.bytes("x")?)?]
            }
            "oct" => {
                let k = self.bytes("k")?;
                bound(Algorithm::is_hmac, "oct")?
                    .into_iter()
                    .map(|alg| VerifyingKey::hmac(alg, &k))
                    .collect::<Result<Vec<_>, _>>()?
            }
            other => return Err(bad(format!("unsupported `kty` `{other}`"))),
        };
        Ok(keys
            .into_iter()
            .map(|key| match self.kid() {
                Some(kid) => key.with_kid(kid),
                None => key,
            })
            .collect())
    }

    /// The RFC 7638 SHA-256 thumbprint, base64url-encoded.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] if a required member is missing or the `kty` is unknown.
    pub fn thumbprint(&self) -> Result<String, Error> {
        let names: &[&str] = match self.kty() {
            "RSA" => &["e", "kty", "n"],
            "EC" => &["crv", "kty", "x", "y"],
            "OKP" => &["crv", "kty", "x"],
            "oct" => &["k", "kty"],
            other => return Err(bad(format!("no thumbprint for `kty` `{other}`"))),
        };
        // Members in lexicographic order, no whitespace; values are JSON strings.
        let mut canonical = String::from("{");
        for (i, name) in names.iter().enumerate() {
            if i > 0 {
                canonical.push(',');
            }
            let value = Value::String(self.required(name)?.to_owned());
            canonical.push_str(&format!("\"{name}\":{value}"));
        }
        canonical.push('}');
        Ok(base64url::encode(
            ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes()).as_ref(),
        ))
    }
}

/// A JWK Set (`{"keys": [...]}`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JwkSet {
    keys: Vec<Jwk>,
}

impl JwkSet {
    /// Parses a JWK Set (strict JSON, at most [`MAX_KEYS`] keys).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] if the document is not a JWK Set, or if any key in it carries private key
    /// material (the whole set is refused: a published private key is an incident to surface). Keys
    /// that cannot be used otherwise are not an error here; [`JwkSet::verifying_keys`] skips them and
    /// says why.
    pub fn from_json(json_bytes: &[u8]) -> Result<Self, Error> {
        let mut document =
            strict_object(json_bytes).ok_or_else(|| bad("a JWK Set must be a JSON object"))?;
        let Some(Value::Array(items)) = document.remove("keys") else {
            return Err(bad("a JWK Set needs a `keys` array"));
        };
        if items.len() > MAX_KEYS {
            return Err(bad(format!("more than {MAX_KEYS} keys")));
        }
        let mut keys = Vec::with_capacity(items.len());
        for item in items {
            let Value::Object(members) = item else {
                continue;
            };
            if PRIVATE_MEMBERS.iter().any(|m| members.contains_key(*m)) {
                return Err(bad(
                    "the JWK Set carries private key material; refusing all of it",
                ));
            }
            if let Ok(jwk) = Jwk::from_members(members) {
                keys.push(jwk);
            }
        }
        Ok(Self { keys })
    }

    /// Whether the set holds a symmetric (`oct`) key: a shared secret, which has no business in a set
    /// fetched from a URL.
    #[must_use]
    pub fn has_symmetric_keys(&self) -> bool {
        self.keys.iter().any(|k| k.kty() == "oct")
    }

    /// The parsed keys.
    #[must_use]
    pub fn keys(&self) -> &[Jwk] {
        &self.keys
    }

    /// The usable verification keys, and for each skipped key its `kid` (if any) and why.
    #[must_use]
    pub fn verifying_keys(&self) -> (KeySet, Vec<(Option<String>, Error)>) {
        self.verifying_keys_with(&[])
    }

    /// [`JwkSet::verifying_keys`], binding keys that name no `alg` to the algorithms of `bind` that fit
    /// them ([`Jwk::to_verifying_keys`]). Keys sharing a `kid` with another key of the set are all
    /// skipped (RFC 7517 §4.5: a `kid` tells keys apart), so a token naming that `kid` verifies against
    /// none of them.
    #[must_use]
    pub fn verifying_keys_with(
        &self,
        bind: &[Algorithm],
    ) -> (KeySet, Vec<(Option<String>, Error)>) {
        let mut usable = Vec::new();
        let mut skipped = Vec::new();
        for jwk in &self.keys {
            let shared_kid = jwk.kid().is_some_and(|kid| {
                self.keys
                    .iter()
                    .filter(|other| other.kid() == Some(kid))
                    .count()
                    > 1
            });
            if shared_kid {
                skipped.push((
                    jwk.kid().map(str::to_owned),
                    bad("another key in the set has the same `kid`"),
                ));
                continue;
            }
            match jwk.to_verifying_keys(bind) {
                Ok(keys) => usable.extend(keys),
                Err(e) => skipped.push((jwk.kid().map(str::to_owned), e)),
            }
        }
        (usable.into_iter().collect(), skipped)
    }
}
