//! Published and generated test vectors, through the public API.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use std::time::Duration;

use edge_auth::jwt::Error;
use edge_auth::jwt::{Algorithm, Jwk, JwkSet, KeySet, Validation, Verifier, VerifyingKey};
use serde_json::Value;

use crate::support::{RSA_2048_N, RSA_TOKENS, b64};

/// RFC 7515 appendix A.3: ES256 (the token expired in 2011, so it is checked at a time before that).
#[test]
fn rfc_7515_a3_es256() {
    let jwk = br#"{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#;
    let key = Jwk::from_json(jwk).unwrap().to_verifying_key().unwrap();
    assert_eq!(key.algorithm(), Algorithm::ES256, "inferred from the curve");
    let token = "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";
    let verified = Verifier::new(Validation::new().with_issuer("joe"))
        .verify::<Value>(token, &key, Duration::from_secs(1_300_819_000))
        .unwrap();
    assert_eq!(verified.claims.exp, Some(1_300_819_380.0));
    let late = Verifier::default().verify::<Value>(token, &key, Duration::from_secs(1_300_819_441));
    assert_eq!(late.unwrap_err(), Error::Expired);
}

/// RFC 7515 appendix A.4: ES512 over the payload "Payload" (feature `es512`; without it the key is refused
/// at construction, never accepted and then mis-verified).
#[test]
fn rfc_7515_a4_es512() {
    let jwk = br#"{"kty":"EC","crv":"P-521","x":"AekpBQ8ST8a8VcfVOTNl353vSrDCLLJXmPk06wTjxrrjcBpXp5EOnYG_NjFZ6OvLFV1jSfS9tsz4qUxcWceqwQGk","y":"ADSmRA43Z1DSNx_RvcLI87cdL07l6jQyyBXMoxVg_l2Th-x3S1WDhjDly79ajL4Kkd0AZMaZmh9ubmf63e3kyMj2"}"#;
    let key = Jwk::from_json(jwk).unwrap().to_verifying_key();
    if !cfg!(feature = "es512") {
        assert!(matches!(key, Err(Error::InvalidKey(_))), "{key:?}");
        return;
    }
    let key = key.unwrap();
    assert_eq!(key.algorithm(), Algorithm::ES512, "inferred from the curve");
    let token = "eyJhbGciOiJFUzUxMiJ9.UGF5bG9hZA.AdwMgeerwtHoh-l192l60hp9wAHZFVJbLfD_UxMi70cwnZOYaRI1bKPWROc-mZZqwqT2SI-KGDKB34XO0aw_7XdtAG8GaSwFKdCAPZgoXD2YBJZCPEX3xKpRwcdOO8KpEHwJjyqOgzDO7iKvU8vcnwNrmxYbSW9ERBXukOXolLzeO_Jn";
    let (header, payload) = Verifier::default().verify_jws(token, &key).unwrap();
    assert_eq!(header.alg, Algorithm::ES512);
    assert_eq!(payload, b"Payload");
    // The same signature with one bit flipped, or cut to ES384's length, is refused.
    let (input, signature) = token.rsplit_once('.').unwrap();
    let mut bytes = edge_auth::jwt::base64url::decode(signature).unwrap();
    assert_eq!(bytes.len(), 132);
    bytes[70] ^= 1;
    let tampered = format!("{input}.{}", edge_auth::jwt::base64url::encode(&bytes));
    assert!(Verifier::default().verify_jws(&tampered, &key).is_err());
    let short = format!(
        "{input}.{}",
        edge_auth::jwt::base64url::encode(&bytes[..96])
    );
    assert!(Verifier::default().verify_jws(&short, &key).is_err());
}

/// RFC 7515 appendix A.2: RS256 with the RFC's 2048-bit key. RSA keys do not imply one algorithm (RS256 or
/// PS256 …), so the JWK names it; the token's header must agree.
#[test]
fn rfc_7515_a2_rs256() {
    let jwk = br#"{"kty":"RSA","alg":"RS256","e":"AQAB","n":"ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ"}"#;
    let key = Jwk::from_json(jwk).unwrap().to_verifying_key().unwrap();
    let token = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw";
    let verified = Verifier::new(Validation::new().with_issuer("joe"))
        .verify::<Value>(token, &key, Duration::from_secs(1_300_819_000))
        .unwrap();
    assert_eq!(verified.claims.iss.as_deref(), Some("joe"));
    assert_eq!(verified.custom["http://example.com/is_root"], true);
    // One flipped bit anywhere in the signature, and it no longer verifies.
    let (input, signature) = token.rsplit_once('.').unwrap();
    let mut bytes = edge_auth::jwt::base64url::decode(signature).unwrap();
    bytes[100] ^= 1;
    let tampered = format!("{input}.{}", edge_auth::jwt::base64url::encode(&bytes));
    assert_eq!(
        Verifier::default()
            .verify::<Value>(&tampered, &key, Duration::from_secs(1_300_819_000))
            .unwrap_err(),
        Error::BadSignature
    );
}

/// RFC 8037 appendix A.4: Ed25519 over a payload that is not JSON, through the JWS layer.
#[test]
fn rfc_8037_a4_ed25519() {
    let jwk = br#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#;
    let key = Jwk::from_json(jwk).unwrap();
    assert_eq!(
        key.thumbprint().unwrap(),
        "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k",
        "RFC 8037 A.3"
    );
    let key = key.to_verifying_key().unwrap();
    let token = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";
    let (header, payload) = Verifier::default().verify_jws(token, &key).unwrap();
    assert_eq!(header.alg, Algorithm::EdDSA);
    assert_eq!(payload, b"Example of Ed25519 signing");
}

/// RSA PKCS#1 v1.5 and PSS with every hash, on a 2048-bit key (tokens made with OpenSSL).
#[test]
fn rsa_pkcs1_and_pss_with_every_hash() {
    for (alg, token) in RSA_TOKENS {
        let jwk =
            format!(r#"{{"kty":"RSA","alg":"{alg}","kid":"rsa-1","n":"{RSA_2048_N}","e":"AQAB"}}"#);
        let key = Jwk::from_json(jwk.as_bytes())
            .unwrap()
            .to_verifying_key()
            .unwrap();
        let verifier = Verifier::new(
            Validation::new()
                .with_issuer("https://auth.example")
                .with_audience("edge"),
        );
        let verified = verifier
            .verify::<Value>(
                token,
                &KeySet::new().with(key),
                Duration::from_secs(1_767_225_600),
            )
            .unwrap();
        assert_eq!(verified.claims.sub.as_deref(), Some("user-42"), "{alg}");
        // The same key pinned to another RSA algorithm refuses the token.
        let other = if alg.starts_with("RS") {
            "PS256"
        } else {
            "RS256"
        };
        let jwk = format!(
            r#"{{"kty":"RSA","alg":"{other}","kid":"rsa-1","n":"{RSA_2048_N}","e":"AQAB"}}"#
        );
        let key = Jwk::from_json(jwk.as_bytes())
            .unwrap()
            .to_verifying_key()
            .unwrap();
        let err = Verifier::default()
            .verify::<Value>(token, &key, Duration::from_secs(1_767_225_600))
            .unwrap_err();
        assert!(
            matches!(err, Error::AlgorithmMismatch | Error::BadSignature),
            "{alg} under {other}: {err}"
        );
    }
}

#[test]
fn weak_keys_are_refused_at_construction() {
    let n1024 = "s1rWUIvE5TfNRKp9fwUqeSH0j8vQ2K3F3tJ0jUFSoEfFkoyWxkrZW7VXQ2mmMoJCAlymjAr6oe9y5Dkh45sP7oFQdComIPLKPok7PDXAemC9oSlkxxQtcCabL59YSSD-oRSYCtfnRHbqs8uhlxKuDJdkM3vVt8TWS9xSLk3rO0k";
    let jwk = format!(r#"{{"kty":"RSA","alg":"RS256","n":"{n1024}","e":"AQAB"}}"#);
    assert!(matches!(
        Jwk::from_json(jwk.as_bytes()).unwrap().to_verifying_key(),
        Err(Error::InvalidKey(_))
    ));
    for (alg, len) in [
        (Algorithm::HS256, 31),
        (Algorithm::HS384, 47),
        (Algorithm::HS512, 63),
    ] {
        assert!(
            VerifyingKey::hmac(alg, &vec![1; len]).is_err(),
            "{alg} with {len} bytes"
        );
        assert!(VerifyingKey::hmac(alg, &vec![1; len + 1]).is_ok());
    }
    let n = b64(&[0xff; 256]);
    let even_e = format!(r#"{{"kty":"RSA","alg":"RS256","n":"{n}","e":"AQAA"}}"#);
    assert!(
        Jwk::from_json(even_e.as_bytes())
            .unwrap()
            .to_verifying_key()
            .is_err(),
        "even exponent"
    );
}

#[test]
fn jwk_sets_from_providers_parse() {
    let set = format!(
        r#"{{"keys":[{{"kty":"RSA","alg":"RS256","use":"sig","kid":"rsa-1","n":"{RSA_2048_N}","e":"AQAB"}},
        {{"kty":"EC","crv":"P-256","kid":"ec-1","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}},
        {{"kty":"RSA","alg":"RSA-OAEP","use":"enc","kid":"enc-1","n":"{RSA_2048_N}","e":"AQAB"}}]}}"#
    );
    let (keys, skipped) = JwkSet::from_json(set.as_bytes()).unwrap().verifying_keys();
    assert_eq!(keys.keys().len(), 2);
    assert_eq!(skipped.len(), 1, "the encryption key");
    let token = RSA_TOKENS[0].1;
    assert!(
        Verifier::default()
            .verify::<Value>(token, &keys, Duration::from_secs(1_767_225_600))
            .is_ok()
    );
}

/// RFC 7520 §4.4: HMAC-SHA2 (HS256) over the cookbook's non-JSON payload, key from §3.5.
#[test]
fn rfc_7520_4_4_hs256() {
    let jwk = br#"{"kty":"oct","kid":"018c0ae5-4d9b-471b-bfd6-eef314bc7037","use":"sig","alg":"HS256","k":"hJtXIZ2uSN5kbQfbtTNWbpdmhkV8FJG-Onbc6mxCcYg"}"#;
    let key = Jwk::from_json(jwk).unwrap().to_verifying_key().unwrap();
    let token = "eyJhbGciOiJIUzI1NiIsImtpZCI6IjAxOGMwYWU1LTRkOWItNDcxYi1iZmQ2LWVlZjMxNGJjNzAzNyJ9.SXTigJlzIGEgZGFuZ2Vyb3VzIGJ1c2luZXNzLCBGcm9kbywgZ29pbmcgb3V0IHlvdXIgZG9vci4gWW91IHN0ZXAgb250byB0aGUgcm9hZCwgYW5kIGlmIHlvdSBkb24ndCBrZWVwIHlvdXIgZmVldCwgdGhlcmXigJlzIG5vIGtub3dpbmcgd2hlcmUgeW91IG1pZ2h0IGJlIHN3ZXB0IG9mZiB0by4.s0h6KThzkfBBBkLspW1h84VsJZFTsPPqMDA7g1Md7p0";
    let (header, payload) = Verifier::default()
        .verify_jws(token, &KeySet::new().with(key))
        .unwrap();
    assert_eq!(
        header.kid.as_deref(),
        Some("018c0ae5-4d9b-471b-bfd6-eef314bc7037")
    );
    assert!(
        String::from_utf8(payload)
            .unwrap()
            .starts_with("It’s a dangerous business, Frodo")
    );
}
