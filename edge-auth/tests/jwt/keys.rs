//! Keys and JWKs through the public API: RFC 7638 thumbprints, algorithms never left to the token, `use` and
//! `key_ops`, exact algorithm names, and required claims named in order.

use std::time::Duration;

use edge_auth::jwt::{
    Algorithm, Error, Jwk, JwkSet, Validation, Verifier, VerifyingKey, base64url,
};

const RFC7638_N: &str = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";

#[test]
fn rfc_7638_thumbprint() {
    let json =
        format!(r#"{{"kty":"RSA","n":"{RFC7638_N}","e":"AQAB","alg":"RS256","kid":"2011-04-29"}}"#);
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

#[test]
fn algorithm_names_are_exact() {
    for alg in Algorithm::ALL {
        assert_eq!(Algorithm::from_name(alg.as_str()), Some(alg));
    }
    for other in [
        "", "none", "None", "hs256", "HS25", "HS2566", "RS256 ", "ES521", "EdDsa", "ED25519",
    ] {
        assert_eq!(Algorithm::from_name(other), None, "{other:?}");
    }
}

#[test]
fn required_claims_registered_or_custom_are_named_in_order() {
    let secret = b"a secret of thirty-two bytes!!!!";
    let key = VerifyingKey::hmac(Algorithm::HS256, secret).unwrap();
    let verifier = Verifier::new(Validation::new().require("tenant").require("nbf"));
    let check = |claims: &str| {
        let input = format!(
            "{}.{}",
            base64url::encode(br#"{"alg":"HS256"}"#),
            base64url::encode(claims.as_bytes())
        );
        let hmac = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
        let signature = base64url::encode(ring::hmac::sign(&hmac, input.as_bytes()).as_ref());
        verifier
            .verify::<serde_json::Value>(
                &format!("{input}.{signature}"),
                &key,
                Duration::from_secs(1_000),
            )
            .map(|verified| verified.custom)
    };
    assert!(check(r#"{"exp":2000,"nbf":500,"tenant":"t"}"#).is_ok());
    assert_eq!(
        check(r#"{"nbf":500,"tenant":"t"}"#).unwrap_err(),
        Error::MissingClaim("exp".into())
    );
    assert_eq!(
        check(r#"{"exp":2000,"nbf":500}"#).unwrap_err(),
        Error::MissingClaim("tenant".into())
    );
    assert_eq!(
        check(r#"{"exp":2000,"tenant":"t"}"#).unwrap_err(),
        Error::MissingClaim("nbf".into())
    );
    // `exp` is required by default and comes first; a claim inside an object does not count.
    assert_eq!(
        check(r#"{"x":{"tenant":"t"}}"#).unwrap_err(),
        Error::MissingClaim("exp".into())
    );
    assert_eq!(
        check(r#"{"exp":2000,"nbf":500,"x":{"tenant":"t"}}"#).unwrap_err(),
        Error::MissingClaim("tenant".into())
    );
    // Escaped names are the names they spell.
    assert!(check(r#"{"exp":2000,"\u006ebf":500,"tenant":"t"}"#).is_ok());
    assert!(check(r#"{"exp":2000,"nbf":500,"ten\u0061nt":"t"}"#).is_ok());
    // A registered claim of the wrong type is never taken as absent.
    assert_eq!(
        check(r#"{"exp":null,"nbf":500,"tenant":"t"}"#).unwrap_err(),
        Error::InvalidClaim("exp")
    );
    assert_eq!(
        check(r#"{"exp":2000,"nbf":500,"tenant":"t","aud":[1]}"#).unwrap_err(),
        Error::InvalidClaim("aud")
    );
}

/// Every JOSE document (JWKs here; headers and claims in the attack suite) goes through one strict reader:
/// duplicate member names refused at any depth, nesting bounded at 16, nothing after the value.
#[test]
fn the_strict_reader_refuses_duplicates_depth_and_trailing_data() {
    let jwk =
        |extra: &str| Jwk::from_json(format!(r#"{{"kty":"oct","k":"AA"{extra}}}"#).as_bytes());
    assert!(jwk(r#","x":[1,{"b":null}]"#).is_ok());
    assert!(jwk(r#","kty":"RSA""#).is_err());
    assert!(
        jwk(r#","x":{"a":1,"a":2}"#).is_err(),
        "nested duplicates too"
    );
    assert!(Jwk::from_json(br#"{"kty":"oct"} x"#).is_err());
    // The object itself is one level: 15 arrays inside it reach the bound, 16 pass it.
    let nested = |depth: usize| {
        jwk(&format!(
            r#","x":{}{}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        ))
    };
    assert!(nested(15).is_ok());
    assert!(nested(16).is_err());
    assert!(
        Jwk::from_json("[".repeat(100_000).as_bytes()).is_err(),
        "no stack overflow on hostile depth"
    );
}
