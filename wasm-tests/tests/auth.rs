//! JWT verification on wasm32: published vectors, pinned algorithms, and the real clock of the host.
#![cfg(target_arch = "wasm32")]
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use edge_auth::jwt::Error;
use edge_auth::jwt::{Algorithm, Jwk, KeySet, Validation, Verifier, VerifyingKey};
use edge_core::{Clock, SystemClock};
use serde_json::Value;
use wasm_bindgen_test::wasm_bindgen_test;

const RFC7515_A1_KEY: [u8; 64] = [
    3, 35, 53, 75, 43, 15, 165, 188, 131, 126, 6, 101, 119, 123, 166, 143, 90, 179, 40, 230, 240,
    84, 201, 40, 169, 15, 132, 178, 210, 80, 46, 191, 211, 251, 90, 146, 210, 6, 71, 239, 150, 138,
    180, 195, 119, 98, 61, 34, 61, 46, 33, 114, 5, 46, 79, 8, 192, 205, 154, 245, 103, 208, 128,
    163,
];
const RFC7515_A1: &str = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

#[wasm_bindgen_test]
fn rfc_7515_hs256_and_es256() {
    let keys = KeySet::new().with(VerifyingKey::hmac(Algorithm::HS256, &RFC7515_A1_KEY).unwrap());
    let verified = Verifier::new(Validation::new().with_issuer("joe"))
        .verify::<Value>(RFC7515_A1, &keys, Duration::from_secs(1_300_819_300))
        .unwrap();
    assert_eq!(verified.custom["http://example.com/is_root"], true);

    let jwk = br#"{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#;
    let key = Jwk::from_json(jwk).unwrap().to_verifying_key().unwrap();
    let token = "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";
    assert!(
        Verifier::default()
            .verify::<Value>(token, &key, Duration::from_secs(1_300_819_000))
            .is_ok()
    );
}

#[wasm_bindgen_test]
fn rfc_8037_ed25519() {
    let jwk = br#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#;
    let key = Jwk::from_json(jwk).unwrap().to_verifying_key().unwrap();
    let token = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";
    let (_, payload) = Verifier::default().verify_jws(token, &key).unwrap();
    assert_eq!(payload, b"Example of Ed25519 signing");
}

#[wasm_bindgen_test]
fn algorithm_confusion_and_none_are_refused() {
    let keys = KeySet::new().with(VerifyingKey::hmac(Algorithm::HS256, &RFC7515_A1_KEY).unwrap());
    let (_, rest) = RFC7515_A1.split_once('.').unwrap();
    // {"alg":"none"} and {"alg":"HS384"} in place of the header.
    for (header, expected) in [
        ("eyJhbGciOiJub25lIn0", Error::UnsupportedAlgorithm),
        ("eyJhbGciOiJIUzM4NCJ9", Error::AlgorithmMismatch),
    ] {
        let token = format!("{header}.{rest}");
        assert_eq!(
            Verifier::default()
                .verify::<Value>(&token, &keys, Duration::ZERO)
                .unwrap_err(),
            expected
        );
    }
}

#[wasm_bindgen_test]
fn the_system_clock_reads_the_host_time() {
    let now = SystemClock::new().unix_time();
    assert!(
        now > Duration::from_secs(1_700_000_000),
        "Date.now() through js-sys, not a trap"
    );
    // The RFC token expired in 2011: verified against the host clock it is rejected as expired.
    let keys = KeySet::new().with(VerifyingKey::hmac(Algorithm::HS256, &RFC7515_A1_KEY).unwrap());
    assert_eq!(
        Verifier::default()
            .verify::<Value>(RFC7515_A1, &keys, now)
            .unwrap_err(),
        Error::Expired
    );
}
