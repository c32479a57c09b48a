//! The attack suite: every token here must be rejected, each for the stated reason.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use std::time::Duration;

use edge_auth::jwt::Error;
use edge_auth::jwt::{Algorithm, KeySet, Limits, Validation, Verifier, VerifyingKey};
use proptest::prelude::*;
use ring::hmac;
use serde_json::Value;

use crate::support::{Ed, Es256, RSA_2048_N, RSA_TOKENS, b64, hs, signing_input};

const NOW: u64 = 1_767_225_600;
const SECRET: &[u8; 32] = b"0123456789abcdef0123456789abcdef";

fn now() -> Duration {
    Duration::from_secs(NOW)
}

fn claims_valid() -> String {
    format!(
        r#"{{"iss":"https://auth.example","aud":"edge","exp":{},"iat":{NOW}}}"#,
        NOW + 600
    )
}

fn verifier() -> Verifier {
    Verifier::new(
        Validation::new()
            .with_issuer("https://auth.example")
            .with_audience("edge"),
    )
}

fn hmac_keys() -> KeySet {
    KeySet::new().with(
        VerifyingKey::hmac(Algorithm::HS256, SECRET)
            .unwrap()
            .with_kid("hs"),
    )
}

fn hs256(header: &str, claims: &str) -> String {
    hs(hmac::HMAC_SHA256, SECRET, header, claims)
}

fn rejects(token: &str, keys: &KeySet) -> Result<(), Error> {
    match verifier().verify::<Value>(token, keys, now()) {
        Ok(_) => Ok(()),
        Err(e) => Err(e),
    }
}

#[test]
fn a_valid_token_passes_so_the_rejections_below_mean_something() {
    let token = hs256(r#"{"alg":"HS256","kid":"hs"}"#, &claims_valid());
    assert_eq!(rejects(&token, &hmac_keys()), Ok(()));
}

#[test]
fn attack_suite() {
    let keys = hmac_keys();
    let header = r#"{"alg":"HS256","kid":"hs"}"#;
    let good = hs256(header, &claims_valid());
    let (good_input, good_sig) = good.rsplit_once('.').unwrap();
    let claims = |extra: &str| {
        format!(
            r#"{{"iss":"https://auth.example","aud":"edge","exp":{}{extra}}}"#,
            NOW + 600
        )
    };

    let mut cases: Vec<(&str, String, Error)> = Vec::new();
    // alg none, in every spelling, with and without a signature.
    for alg in ["none", "None", "NONE", "nOnE"] {
        let input = signing_input(&format!(r#"{{"alg":"{alg}","kid":"hs"}}"#), &claims_valid());
        cases.push((
            "alg none, no signature",
            format!("{input}."),
            Error::UnsupportedAlgorithm,
        ));
        cases.push((
            "alg none, copied signature",
            format!("{input}.{good_sig}"),
            Error::UnsupportedAlgorithm,
        ));
    }
    cases.push((
        "alg missing",
        hs256(r#"{"kid":"hs"}"#, &claims_valid()),
        Error::Malformed("no `alg` header"),
    ));
    cases.push((
        "alg not a string",
        hs256(r#"{"alg":["HS256"],"kid":"hs"}"#, &claims_valid()),
        Error::Malformed("`alg` is not a string"),
    ));
    cases.push((
        "alg lower case",
        hs256(r#"{"alg":"hs256","kid":"hs"}"#, &claims_valid()),
        Error::UnsupportedAlgorithm,
    ));
    cases.push((
        "header alg differs from the key's",
        hs(
            hmac::HMAC_SHA384,
            &[7; 48],
            r#"{"alg":"HS384","kid":"hs"}"#,
            &claims_valid(),
        ),
        Error::AlgorithmMismatch,
    ));
    // Signatures.
    cases.push((
        "tampered claims",
        format!(
            "{}.{good_sig}",
            signing_input(header, &claims(r#","admin":true"#))
        ),
        Error::BadSignature,
    ));
    cases.push((
        "truncated signature",
        format!("{good_input}.{}", &good_sig[..good_sig.len() - 3]),
        Error::BadSignature,
    ));
    cases.push((
        "signature with an extra byte",
        format!("{good_input}.{good_sig}AAA"),
        Error::BadSignature,
    ));
    cases.push((
        "empty signature",
        format!("{good_input}."),
        Error::Malformed("empty signature"),
    ));
    cases.push((
        "huge signature",
        format!("{good_input}.{}", "A".repeat(2000)),
        Error::BadSignature,
    ));
    cases.push((
        "signature from another secret",
        hs(hmac::HMAC_SHA256, &[9; 32], header, &claims_valid()),
        Error::BadSignature,
    ));
    // Encoding.
    cases.push((
        "padded signature",
        format!("{good}="),
        Error::Malformed("signature is not base64url"),
    ));
    cases.push((
        "padded header",
        format!(
            "{}=.{}",
            b64(header.as_bytes()),
            &good[b64(header.as_bytes()).len() + 1..]
        ),
        Error::Malformed("header is not base64url"),
    ));
    cases.push((
        "standard alphabet",
        good.replacen('-', "+", 1).replacen('_', "/", 1),
        Error::Malformed("signature is not base64url"),
    ));
    // The signature is checked before the claims are decoded, so a broken claims segment is a bad signature.
    cases.push((
        "whitespace in the claims",
        good.replacen('.', ". ", 1),
        Error::BadSignature,
    ));
    cases.push((
        "whitespace in the signature",
        format!("{good_input}. {good_sig}"),
        Error::Malformed("signature is not base64url"),
    ));
    let noncanonical = {
        let mut sig: Vec<char> = good_sig.chars().collect();
        let last = sig.len() - 1;
        // 32-byte signatures end with 2 unused bits in the last character: set one.
        sig[last] = match sig[last] {
            'A' => 'B',
            c => {
                if c == 'B' {
                    'C'
                } else {
                    c
                }
            }
        };
        format!("{good_input}.{}", sig.into_iter().collect::<String>())
    };
    if noncanonical != good {
        cases.push((
            "non-canonical trailing bits",
            noncanonical,
            Error::Malformed("signature is not base64url"),
        ));
    }
    // Structure.
    cases.push((
        "two segments",
        good_input.to_owned(),
        Error::Malformed("a compact JWS has exactly three segments"),
    ));
    cases.push((
        "four segments",
        format!("{good}.x"),
        Error::Malformed("a compact JWS has exactly three segments"),
    ));
    cases.push((
        "JWE (five segments)",
        format!("{good}.x.y"),
        Error::Malformed("a compact JWS has exactly three segments"),
    ));
    cases.push((
        "empty header",
        format!(".{}", &good[good.find('.').unwrap() + 1..]),
        Error::Malformed("empty header"),
    ));
    cases.push((
        "header is an array",
        hs256(r#"["HS256"]"#, &claims_valid()),
        Error::Malformed("header is not a JSON object"),
    ));
    cases.push((
        "duplicate alg",
        hs256(
            r#"{"alg":"HS256","alg":"none","kid":"hs"}"#,
            &claims_valid(),
        ),
        Error::Malformed("header is not a JSON object"),
    ));
    cases.push((
        "deep header",
        hs256(
            &format!(
                r#"{{"alg":"HS256","kid":"hs","x":{}{}}}"#,
                "[".repeat(40),
                "]".repeat(40)
            ),
            &claims_valid(),
        ),
        Error::Malformed("header is not a JSON object"),
    ));
    cases.push((
        "huge header",
        hs256(
            &format!(r#"{{"alg":"HS256","kid":"hs","x":"{}"}}"#, "a".repeat(2000)),
            &claims_valid(),
        ),
        Error::TooLarge("header"),
    ));
    cases.push((
        "huge token",
        format!("{good_input}{}.{good_sig}", "A".repeat(9000)),
        Error::TooLarge("token"),
    ));
    cases.push((
        "huge claims",
        hs256(
            header,
            &claims(&format!(r#","pad":"{}""#, "a".repeat(7000))),
        ),
        Error::TooLarge("token"),
    ));
    cases.push((
        "claims not JSON",
        hs256(header, "not json"),
        Error::Malformed("claims are not a JSON object"),
    ));
    cases.push((
        "claims an array",
        hs256(header, "[1,2]"),
        Error::Malformed("claims are not a JSON object"),
    ));
    cases.push((
        "duplicate exp",
        hs256(header, &claims(&format!(r#","exp":{}"#, NOW + 900))),
        Error::Malformed("claims are not a JSON object"),
    ));
    cases.push((
        "deep claims",
        hs256(
            header,
            &claims(&format!(r#","x":{}{}"#, "[".repeat(40), "]".repeat(40))),
        ),
        Error::Malformed("claims are not a JSON object"),
    ));
    // Keys chosen by the token.
    cases.push((
        "unknown kid",
        hs256(r#"{"alg":"HS256","kid":"other"}"#, &claims_valid()),
        Error::UnknownKey,
    ));
    cases.push((
        "kid not a string",
        hs256(r#"{"alg":"HS256","kid":7}"#, &claims_valid()),
        Error::Malformed("kid"),
    ));
    let attacker_jwk = format!(
        r#"{{"alg":"HS256","kid":"hs","jwk":{{"kty":"oct","k":"{}"}}}}"#,
        b64(&[9; 32])
    );
    cases.push((
        "embedded jwk header ignored",
        hs(hmac::HMAC_SHA256, &[9; 32], &attacker_jwk, &claims_valid()),
        Error::BadSignature,
    ));
    let jku = r#"{"alg":"HS256","kid":"hs","jku":"https://attacker.example/keys","x5u":"https://attacker.example/cert"}"#;
    cases.push((
        "jku and x5u headers ignored",
        hs(hmac::HMAC_SHA256, &[9; 32], jku, &claims_valid()),
        Error::BadSignature,
    ));
    cases.push((
        "crit extension",
        hs256(
            r#"{"alg":"HS256","kid":"hs","crit":["exp"],"exp":1}"#,
            &claims_valid(),
        ),
        Error::UnsupportedCritical,
    ));
    cases.push((
        "crit b64",
        hs256(
            r#"{"alg":"HS256","kid":"hs","crit":["b64"],"b64":false}"#,
            &claims_valid(),
        ),
        Error::UnsupportedCritical,
    ));
    cases.push((
        "crit empty",
        hs256(r#"{"alg":"HS256","kid":"hs","crit":[]}"#, &claims_valid()),
        Error::Malformed("`crit` must be a non-empty array"),
    ));
    // Claim type confusion: a wrong type is an error, never "absent".
    for (claim, value) in [
        ("exp", r#""4102444800""#),
        ("exp", "true"),
        ("exp", "null"),
        ("exp", "[1]"),
        ("nbf", r#""0""#),
        ("iat", "{}"),
        ("sub", "42"),
        ("jti", "false"),
    ] {
        let extra = format!(r#","{claim}":{value}"#);
        let body = if claim == "exp" {
            format!(r#"{{"iss":"https://auth.example","aud":"edge"{extra}}}"#)
        } else {
            claims(&extra)
        };
        let name: &'static str = match claim {
            "exp" => "exp",
            "nbf" => "nbf",
            "iat" => "iat",
            "sub" => "sub",
            _ => "jti",
        };
        cases.push((
            "claim of the wrong type",
            hs256(header, &body),
            Error::InvalidClaim(name),
        ));
    }
    for aud in ["7", r#"["edge",7]"#, r#"{"edge":true}"#, "null"] {
        let body = format!(
            r#"{{"iss":"https://auth.example","aud":{aud},"exp":{}}}"#,
            NOW + 600
        );
        cases.push((
            "aud of the wrong type",
            hs256(header, &body),
            Error::InvalidClaim("aud"),
        ));
    }
    let body = format!(
        r#"{{"iss":["https://auth.example"],"aud":"edge","exp":{}}}"#,
        NOW + 600
    );
    cases.push((
        "iss of the wrong type",
        hs256(header, &body),
        Error::InvalidClaim("iss"),
    ));
    // Issuer, audience, time.
    let with = |iss: &str, aud: &str, exp: u64| format!(r#"{{{iss}{aud}"exp":{exp}}}"#);
    cases.push((
        "wrong issuer",
        hs256(
            header,
            &with(
                r#""iss":"https://evil.example","#,
                r#""aud":"edge","#,
                NOW + 600,
            ),
        ),
        Error::InvalidIssuer,
    ));
    cases.push((
        "issuer differs in case",
        hs256(
            header,
            &with(
                r#""iss":"https://AUTH.example","#,
                r#""aud":"edge","#,
                NOW + 600,
            ),
        ),
        Error::InvalidIssuer,
    ));
    cases.push((
        "missing issuer",
        hs256(header, &with("", r#""aud":"edge","#, NOW + 600)),
        Error::MissingClaim("iss".into()),
    ));
    cases.push((
        "wrong audience",
        hs256(
            header,
            &with(
                r#""iss":"https://auth.example","#,
                r#""aud":"other","#,
                NOW + 600,
            ),
        ),
        Error::InvalidAudience,
    ));
    cases.push((
        "audience list without ours",
        hs256(
            header,
            &with(
                r#""iss":"https://auth.example","#,
                r#""aud":["a","b"],"#,
                NOW + 600,
            ),
        ),
        Error::InvalidAudience,
    ));
    cases.push((
        "empty audience list",
        hs256(
            header,
            &with(
                r#""iss":"https://auth.example","#,
                r#""aud":[],"#,
                NOW + 600,
            ),
        ),
        Error::MissingClaim("aud".into()),
    ));
    cases.push((
        "missing audience",
        hs256(
            header,
            &with(r#""iss":"https://auth.example","#, "", NOW + 600),
        ),
        Error::MissingClaim("aud".into()),
    ));
    cases.push((
        "missing exp",
        hs256(header, r#"{"iss":"https://auth.example","aud":"edge"}"#),
        Error::MissingClaim("exp".into()),
    ));
    cases.push((
        "expired beyond leeway",
        hs256(
            header,
            &with(
                r#""iss":"https://auth.example","#,
                r#""aud":"edge","#,
                NOW - 60,
            ),
        ),
        Error::Expired,
    ));
    cases.push((
        "expired long ago",
        hs256(
            header,
            &with(r#""iss":"https://auth.example","#, r#""aud":"edge","#, 0),
        ),
        Error::Expired,
    ));
    cases.push((
        "not yet valid",
        hs256(header, &claims(&format!(r#","nbf":{}"#, NOW + 61))),
        Error::NotYetValid,
    ));
    cases.push((
        "issued in the future",
        hs256(header, &claims(&format!(r#","iat":{}"#, NOW + 61))),
        Error::IssuedInFuture,
    ));

    for (name, token, expected) in &cases {
        assert_eq!(
            rejects(token, &keys).as_ref().err(),
            Some(expected),
            "{name}: {token}"
        );
    }
    println!("attack suite: {} HMAC cases rejected", cases.len());
    assert!(cases.len() >= 60, "{}", cases.len());
}

#[test]
fn asymmetric_confusions_are_rejected() {
    let rsa_key = VerifyingKey::rsa(Algorithm::RS256, &decode(RSA_2048_N), &[1, 0, 1])
        .unwrap()
        .with_kid("rsa-1");
    let keys = KeySet::new().with(rsa_key);
    // The RSA public key (its modulus, or its JWK text) used as an HMAC secret, header switched to HS256.
    for secret in [
        decode(RSA_2048_N),
        format!(r#"{{"kty":"RSA","n":"{RSA_2048_N}","e":"AQAB"}}"#).into_bytes(),
    ] {
        let token = hs(
            hmac::HMAC_SHA256,
            &secret,
            r#"{"alg":"HS256","kid":"rsa-1"}"#,
            &claims_valid(),
        );
        assert_eq!(rejects(&token, &keys), Err(Error::AlgorithmMismatch));
    }
    // RS256 token presented as PS256 (header rewritten): mismatch with the key.
    let (_, rs256) = RSA_TOKENS[0];
    let (_, rest) = rs256.split_once('.').unwrap();
    let as_ps = format!("{}.{rest}", b64(br#"{"alg":"PS256","kid":"rsa-1"}"#));
    assert_eq!(rejects(&as_ps, &keys), Err(Error::AlgorithmMismatch));

    // ECDSA: DER signatures are not JWS signatures; raw ones verify.
    let es = Es256::generate();
    let (x, y) = es.xy();
    let ec_keys = KeySet::new().with(VerifyingKey::ecdsa(Algorithm::ES256, &x, &y).unwrap());
    let header = r#"{"alg":"ES256"}"#;
    assert_eq!(rejects(&es.sign(header, &claims_valid()), &ec_keys), Ok(()));
    assert_eq!(
        rejects(&es.sign_der(header, &claims_valid()), &ec_keys),
        Err(Error::BadSignature)
    );
    let raw = es.sign(header, &claims_valid());
    let (input, sig) = raw.rsplit_once('.').unwrap();
    let zero = format!("{input}.{}", b64(&[0; 64]));
    assert_eq!(
        rejects(&zero, &ec_keys),
        Err(Error::BadSignature),
        "r = s = 0"
    );
    assert_eq!(
        rejects(&format!("{input}.{}", &sig[..40]), &ec_keys),
        Err(Error::BadSignature),
        "short"
    );
    // An ES256 signature relabelled EdDSA.
    let relabelled = format!(
        "{}.{}",
        b64(br#"{"alg":"EdDSA"}"#),
        raw.split_once('.').unwrap().1
    );
    assert_eq!(
        rejects(&relabelled, &ec_keys),
        Err(Error::AlgorithmMismatch)
    );

    // EdDSA round trip and a flipped bit.
    let ed = Ed::generate();
    let ed_keys = KeySet::new().with(VerifyingKey::ed25519(&ed.public()).unwrap());
    let token = ed.sign(r#"{"alg":"EdDSA"}"#, &claims_valid());
    assert_eq!(rejects(&token, &ed_keys), Ok(()));
    let mut flipped = token.into_bytes();
    let last = flipped.len() - 5;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
    assert_eq!(
        rejects(std::str::from_utf8(&flipped).unwrap(), &ed_keys),
        Err(Error::BadSignature)
    );

    // No kid (RFC 7515 makes it optional): the one key that can verify the token's algorithm is used;
    // the token never picks among keys of its algorithm, and the algorithm stays the key's.
    let two = KeySet::new()
        .with(VerifyingKey::ed25519(&ed.public()).unwrap())
        .with(VerifyingKey::ecdsa(Algorithm::ES256, &x, &y).unwrap());
    assert_eq!(
        rejects(&ed.sign(r#"{"alg":"EdDSA"}"#, &claims_valid()), &two),
        Ok(())
    );
    let other_ed = Ed::generate();
    let same_alg = KeySet::new()
        .with(VerifyingKey::ed25519(&ed.public()).unwrap())
        .with(VerifyingKey::ed25519(&other_ed.public()).unwrap());
    assert_eq!(
        rejects(&ed.sign(r#"{"alg":"EdDSA"}"#, &claims_valid()), &same_alg),
        Err(Error::UnknownKey),
        "two keys fit: the verifier will not guess"
    );
}

#[test]
fn limits_are_settings() {
    let token = hs256(r#"{"alg":"HS256","kid":"hs"}"#, &claims_valid());
    let mut tight = Limits::default();
    tight.max_token_len = 100;
    let verifier = Verifier::new(Validation::new().with_limits(tight));
    assert_eq!(
        verifier
            .verify::<Value>(&token, &hmac_keys(), now())
            .unwrap_err(),
        Error::TooLarge("token")
    );
}

#[test]
fn custom_claims_deserialize_into_the_callers_type() {
    #[derive(serde::Deserialize)]
    struct Claims {
        sub: String,
        roles: Vec<String>,
    }
    let token = hs256(
        r#"{"alg":"HS256","kid":"hs"}"#,
        &format!(r#"{{"sub":"u1","roles":["admin"],"exp":{}}}"#, NOW + 60),
    );
    let verified = Verifier::default()
        .verify::<Claims>(&token, &hmac_keys(), now())
        .unwrap();
    assert_eq!(
        (verified.custom.sub.as_str(), verified.custom.roles.len()),
        ("u1", 1)
    );
    let wrong = hs256(
        r#"{"alg":"HS256","kid":"hs"}"#,
        &format!(r#"{{"sub":"u1","roles":"admin","exp":{}}}"#, NOW + 60),
    );
    assert!(matches!(
        Verifier::default().verify::<Claims>(&wrong, &hmac_keys(), now()),
        Err(Error::CustomClaims(_))
    ));
}

fn decode(text: &str) -> Vec<u8> {
    edge_auth::jwt::base64url::decode(text).unwrap()
}

proptest! {
    /// No byte string panics the verifier; only the untouched token verifies.
    #[test]
    fn arbitrary_input_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = verifier().verify::<Value>(&text, &hmac_keys(), now());
        let _ = Verifier::default().verify_jws(&text, &hmac_keys());
    }

    #[test]
    fn any_mutation_of_a_valid_token_is_rejected(position in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let token = hs256(r#"{"alg":"HS256","kid":"hs"}"#, &claims_valid());
        let mut mutated = token.clone().into_bytes();
        let i = position.index(mutated.len());
        mutated[i] = byte;
        let mutated = String::from_utf8_lossy(&mutated).into_owned();
        if mutated != token {
            prop_assert!(rejects(&mutated, &hmac_keys()).is_err(), "{mutated}");
        }
    }

    /// Every byte string has exactly one encoding: what decodes re-encodes to the same text.
    #[test]
    fn base64url_accepts_only_canonical_text(
        bytes in prop::collection::vec(any::<u8>(), 0..64),
        text in "[A-Za-z0-9_=+/ -]{0,12}",
    ) {
        let encoded = edge_auth::jwt::base64url::encode(&bytes);
        prop_assert_eq!(edge_auth::jwt::base64url::decode(&encoded).unwrap(), bytes);
        if let Ok(decoded) = edge_auth::jwt::base64url::decode(&text) {
            prop_assert_eq!(edge_auth::jwt::base64url::encode(&decoded), text);
        }
    }
}
