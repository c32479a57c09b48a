//! JSON Web Keys (RFC 7517): parsing into [`VerifyingKey`]s, key sets, and RFC 7638 thumbprints.

use serde_json::{Map, Value};

use super::b64;
use super::json;
use super::key::{Algorithm, VerifyingKey};
use super::verify::KeySet;
use crate::error::Error;

/// The most keys a set may hold; a larger document is refused as a whole.
pub const MAX_KEYS: usize = 64;

/// One JSON Web Key, as parsed (public parameters only; private members such as `d` are never kept).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Jwk {
    members: Map<String, Value>,
}

fn bad(why: impl Into<String>) -> Error {
    Error::InvalidKey(why.into())
}

impl Jwk {
    /// Parses one JWK (strict JSON).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] if it is not a JSON object with a string `kty`.
    pub fn from_json(json_bytes: &[u8]) -> Result<Self, Error> {
        match json::parse(json_bytes) {
            Ok(Value::Object(members)) => Self::from_members(members),
            _ => Err(bad("a JWK must be a JSON object")),
        }
    }

    fn from_members(mut members: Map<String, Value>) -> Result<Self, Error> {
        if !matches!(members.get("kty"), Some(Value::String(_))) {
            return Err(bad("a JWK needs a string `kty`"));
        }
        for private in ["d", "p", "q", "dp", "dq", "qi", "oth"] {
            members.remove(private);
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
        b64::decode(self.required(name)?.as_bytes())
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
        let key = match self.kty() {
            "RSA" => {
                let alg = alg.ok_or_else(|| bad("an RSA JWK must name its `alg`"))?;
                VerifyingKey::rsa(alg, &self.bytes("n")?, &self.bytes("e")?)?
            }
            "EC" => {
                let implied = match self.required("crv")? {
                    "P-256" => Algorithm::ES256,
                    "P-384" => Algorithm::ES384,
                    other => return Err(bad(format!("unsupported curve `{other}`"))),
                };
                if alg.is_some_and(|alg| alg != implied) {
                    return Err(bad("`alg` does not match the curve"));
                }
                VerifyingKey::ecdsa(implied, &self.bytes("x")?, &self.bytes("y")?)?
            }
            "OKP" => {
                if self.required("crv")? != "Ed25519" {
                    return Err(bad("only the Ed25519 OKP curve is supported"));
                }
                if alg.is_some_and(|alg| alg != Algorithm::EdDSA) {
                    return Err(bad("`alg` does not match the curve"));
                }
                VerifyingKey::ed25519(&self.bytes("x")?)?
            }
            "oct" => {
                let alg = alg.ok_or_else(|| bad("an oct JWK must name its `alg`"))?;
                VerifyingKey::hmac(alg, &self.bytes("k")?)?
            }
            other => return Err(bad(format!("unsupported `kty` `{other}`"))),
        };
        Ok(match self.kid() {
            Some(kid) => key.with_kid(kid),
            None => key,
        })
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
        Ok(b64::encode(
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
    /// [`Error::InvalidKey`] if the document is not a JWK Set. Individual keys that cannot be used are not
    /// an error here; [`JwkSet::verifying_keys`] skips them.
    pub fn from_json(json_bytes: &[u8]) -> Result<Self, Error> {
        let Ok(Value::Object(mut document)) = json::parse(json_bytes) else {
            return Err(bad("a JWK Set must be a JSON object"));
        };
        let Some(Value::Array(items)) = document.remove("keys") else {
            return Err(bad("a JWK Set needs a `keys` array"));
        };
        if items.len() > MAX_KEYS {
            return Err(bad(format!("more than {MAX_KEYS} keys")));
        }
        let keys = items
            .into_iter()
            .filter_map(|item| match item {
                Value::Object(members) => Jwk::from_members(members).ok(),
                _ => None,
            })
            .collect();
        Ok(Self { keys })
    }

    /// The parsed keys.
    #[must_use]
    pub fn keys(&self) -> &[Jwk] {
        &self.keys
    }

    /// The usable verification keys, and for each skipped key its `kid` (if any) and why.
    #[must_use]
    pub fn verifying_keys(&self) -> (KeySet, Vec<(Option<String>, Error)>) {
        let mut usable = Vec::new();
        let mut skipped = Vec::new();
        for jwk in &self.keys {
            match jwk.to_verifying_key() {
                Ok(key) => usable.push(key),
                Err(e) => skipped.push((jwk.kid().map(str::to_owned), e)),
            }
        }
        (usable.into_iter().collect(), skipped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC7638_N: &str = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";

    #[test]
    fn rfc_7638_thumbprint() {
        let json = format!(
            r#"{{"kty":"RSA","n":"{RFC7638_N}","e":"AQAB","alg":"RS256","kid":"2011-04-29"}}"#
        );
        let jwk = Jwk::from_json(json.as_bytes()).unwrap();
        assert_eq!(
            jwk.thumbprint().unwrap(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
        let key = jwk.to_verifying_key().unwrap();
        assert_eq!(
            (key.algorithm(), key.kid()),
            (Algorithm::RS256, Some("2011-04-29"))
        );
    }

    #[test]
    fn algorithm_is_never_left_to_the_token() {
        let no_alg = format!(r#"{{"kty":"RSA","n":"{RFC7638_N}","e":"AQAB"}}"#);
        assert!(
            Jwk::from_json(no_alg.as_bytes())
                .unwrap()
                .to_verifying_key()
                .is_err()
        );
        let oct = r#"{"kty":"oct","k":"AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow"}"#;
        assert!(
            Jwk::from_json(oct.as_bytes())
                .unwrap()
                .to_verifying_key()
                .is_err()
        );
        let wrong_curve = r#"{"kty":"EC","crv":"P-256","alg":"ES384","x":"AAAA","y":"AAAA"}"#;
        assert!(
            Jwk::from_json(wrong_curve.as_bytes())
                .unwrap()
                .to_verifying_key()
                .is_err()
        );
    }

    #[test]
    fn use_and_key_ops_are_honoured_and_sets_skip_unusable_keys() {
        let enc = format!(
            r#"{{"kty":"RSA","use":"enc","alg":"RS256","n":"{RFC7638_N}","e":"AQAB","kid":"enc"}}"#
        );
        let ops = format!(
            r#"{{"kty":"RSA","key_ops":["sign"],"alg":"RS256","n":"{RFC7638_N}","e":"AQAB","kid":"ops"}}"#
        );
        let good = format!(
            r#"{{"kty":"RSA","key_ops":["verify"],"alg":"PS256","n":"{RFC7638_N}","e":"AQAB","kid":"ok"}}"#
        );
        let set = JwkSet::from_json(
            format!(r#"{{"keys":[{enc},{ops},{good},{{"kty":"XYZ"}},7]}}"#).as_bytes(),
        )
        .unwrap();
        let (usable, skipped) = set.verifying_keys();
        assert_eq!(usable.keys().len(), 1);
        assert_eq!(usable.keys()[0].kid(), Some("ok"));
        assert_eq!(skipped.len(), 3);
        assert!(JwkSet::from_json(br#"{"keys":{}}"#).is_err());
        assert!(
            JwkSet::from_json(br#"{"keys":[],"keys":[]}"#).is_err(),
            "duplicate members"
        );
    }
}
