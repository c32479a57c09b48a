//! JWK Sets as identity providers publish them (issue 20, items 11–14): RSA keys without `alg`, bound by
//! the caller; duplicate `kid`s; private key material; tokens without `kid`.

use std::time::Duration;

use edge_auth::jwt::{Algorithm, JwkSet, KeyLookup, Validation, Verifier};
use serde_json::Value;

use crate::support::{Ed, RSA_2048_N, RSA_TOKENS, b64};

const NOW: Duration = Duration::from_secs(1_767_225_600);

fn verifier() -> Verifier {
    Verifier::new(
        Validation::new()
            .with_issuer("https://auth.example")
            .with_audience("edge"),
    )
}

/// Several providers publish RSA keys with no `alg`: skipped (saying why) unless the caller binds them.
#[test]
fn rsa_keys_without_alg_verify_only_the_algorithms_the_caller_binds() {
    let set =
        format!(r#"{{"keys":[{{"kty":"RSA","kid":"rsa-1","n":"{RSA_2048_N}","e":"AQAB"}}]}}"#);
    let set = JwkSet::from_json(set.as_bytes()).unwrap();
    let (unbound, skipped) = set.verifying_keys();
    assert!(unbound.keys().is_empty());
    assert_eq!(skipped[0].0.as_deref(), Some("rsa-1"));
    assert!(
        skipped[0].1.to_string().contains("without `alg`"),
        "{}",
        skipped[0].1
    );

    let (bound, skipped) = set.verifying_keys_with(&[Algorithm::RS256, Algorithm::ES256]);
    assert!(skipped.is_empty());
    assert_eq!(
        bound.keys().len(),
        1,
        "one key per fitting algorithm: RS256 only"
    );
    for (alg, token) in RSA_TOKENS {
        let result = verifier().verify::<Value>(token, &bound, NOW);
        if alg == "RS256" {
            assert_eq!(result.unwrap().claims.sub.as_deref(), Some("user-42"));
        } else {
            assert!(
                result.is_err(),
                "{alg} was not bound: the token cannot choose it"
            );
        }
    }
    let (both, _) = set.verifying_keys_with(&[Algorithm::RS256, Algorithm::PS256]);
    for (alg, token) in RSA_TOKENS {
        let verified = verifier().verify::<Value>(token, &both, NOW);
        assert_eq!(verified.is_ok(), alg == "RS256" || alg == "PS256", "{alg}");
    }
}

/// RFC 7517 §4.5: a `kid` tells keys apart. Two keys sharing one are both skipped, so a token naming it
/// verifies against neither (first-match would let the wrong key decide).
#[test]
fn a_duplicate_kid_is_used_by_no_token() {
    let (a, b) = (Ed::generate(), Ed::generate());
    let set = format!(
        r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","kid":"k","x":"{}"}},{{"kty":"OKP","crv":"Ed25519","kid":"k","x":"{}"}},{{"kty":"OKP","crv":"Ed25519","kid":"other","x":"{}"}}]}}"#,
        b64(&a.public()),
        b64(&b.public()),
        b64(&b.public())
    );
    let (keys, skipped) = JwkSet::from_json(set.as_bytes()).unwrap().verifying_keys();
    assert_eq!(keys.keys().len(), 1);
    assert_eq!(skipped.len(), 2);
    let claims = r#"{"iss":"https://auth.example","aud":"edge","exp":4102444800}"#;
    let token = a.sign(r#"{"alg":"EdDSA","kid":"k"}"#, claims);
    assert!(verifier().verify::<Value>(&token, &keys, NOW).is_err());
    let token = b.sign(r#"{"alg":"EdDSA","kid":"other"}"#, claims);
    assert!(verifier().verify::<Value>(&token, &keys, NOW).is_ok());
}

/// A set carrying private key members is refused whole: a published private key is an incident.
#[test]
fn private_key_material_refuses_the_whole_set() {
    let ed = Ed::generate();
    for private in ["d", "p", "q", "dp", "dq", "qi"] {
        let set = format!(
            r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","kid":"ok","x":"{x}"}},{{"kty":"OKP","crv":"Ed25519","kid":"leak","x":"{x}","{private}":"AAAA"}}]}}"#,
            x = b64(&ed.public())
        );
        let error = JwkSet::from_json(set.as_bytes()).unwrap_err();
        assert!(error.to_string().contains("private"), "{private}: {error}");
    }
}

/// RFC 7515 makes `kid` optional: a token without one verifies against the one key that fits its
/// algorithm, and against none when several do.
#[test]
fn a_token_without_kid_uses_the_single_key_for_its_algorithm() {
    let (ed, other_ed) = (Ed::generate(), Ed::generate());
    let rsa =
        format!(r#"{{"kty":"RSA","alg":"RS256","kid":"rsa-1","n":"{RSA_2048_N}","e":"AQAB"}}"#);
    let set = format!(
        r#"{{"keys":[{rsa},{{"kty":"OKP","crv":"Ed25519","kid":"ed","x":"{}"}}]}}"#,
        b64(&ed.public())
    );
    let (keys, _) = JwkSet::from_json(set.as_bytes()).unwrap().verifying_keys();
    let claims = r#"{"iss":"https://auth.example","aud":"edge","exp":4102444800}"#;
    let token = ed.sign(r#"{"alg":"EdDSA"}"#, claims);
    assert!(verifier().verify::<Value>(&token, &keys, NOW).is_ok());
    assert!(
        keys.find(None, Algorithm::ES256).is_none(),
        "no key fits ES256"
    );

    let two = format!(
        r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","kid":"a","x":"{}"}},{{"kty":"OKP","crv":"Ed25519","kid":"b","x":"{}"}}]}}"#,
        b64(&ed.public()),
        b64(&other_ed.public())
    );
    let (keys, _) = JwkSet::from_json(two.as_bytes()).unwrap().verifying_keys();
    assert!(
        verifier().verify::<Value>(&token, &keys, NOW).is_err(),
        "two keys fit: the token must say which"
    );
}

/// The policy knobs of issue 20 item 16: a required `typ`, `iat` in the future refused outright, and
/// required claims named at run time.
#[test]
fn typ_strict_iat_and_run_time_required_claims() {
    use edge_auth::jwt::Error;
    use edge_auth::jwt::VerifyingKey;
    use ring::hmac;

    let secret = b"0123456789abcdef0123456789abcdef";
    let keys =
        edge_auth::jwt::KeySet::new().with(VerifyingKey::hmac(Algorithm::HS256, secret).unwrap());
    let sign =
        |header: &str, claims: &str| crate::support::hs(hmac::HMAC_SHA256, secret, header, claims);
    let now = NOW.as_secs();
    let claims = format!(
        r#"{{"exp":{},"iat":{},"tenant":"t1"}}"#,
        now + 300,
        now + 30
    );

    // typ: compared without case, with or without `application/`.
    let access = Verifier::new(Validation::new().with_typ("at+jwt"));
    for typ in ["at+jwt", "AT+JWT", "application/at+jwt"] {
        let token = sign(&format!(r#"{{"alg":"HS256","typ":"{typ}"}}"#), &claims);
        assert!(access.verify::<Value>(&token, &keys, NOW).is_ok(), "{typ}");
    }
    for header in [r#"{"alg":"HS256","typ":"JWT"}"#, r#"{"alg":"HS256"}"#] {
        let token = sign(header, &claims);
        assert_eq!(
            access.verify::<Value>(&token, &keys, NOW).unwrap_err(),
            Error::InvalidType,
            "{header}"
        );
    }

    // iat 30 s ahead: inside the default 60 s leeway, refused when strict.
    let token = sign(r#"{"alg":"HS256"}"#, &claims);
    assert!(
        Verifier::new(Validation::new())
            .verify::<Value>(&token, &keys, NOW)
            .is_ok()
    );
    let strict = Verifier::new(Validation::new().with_strict_iat(true));
    assert_eq!(
        strict.verify::<Value>(&token, &keys, NOW).unwrap_err(),
        Error::IssuedInFuture
    );

    // A required claim named by configuration read at run time.
    let from_config = String::from("tenant");
    let tenant = Verifier::new(Validation::new().require(from_config));
    assert!(tenant.verify::<Value>(&token, &keys, NOW).is_ok());
    let other = Verifier::new(Validation::new().require(String::from("region")));
    assert_eq!(
        other.verify::<Value>(&token, &keys, NOW).unwrap_err(),
        Error::MissingClaim("region".into())
    );
}
