//! JWT verification: edge-auth next to jsonwebtoken (aws-lc-rs backend) and jwt-simple (pure-rust
//! backend), and next to the floor: ring verifying the same signature over the same signing input with no
//! parsing at all. Realistic tokens: a ~300-byte claims set deserialized into a struct by every verifier.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use criterion::{Criterion, criterion_group, criterion_main};
use edge_auth::jwt::{Algorithm, KeySet, Validation, Verifier, VerifyingKey};
use jwt_simple::prelude::MACLike;
use jwt_simple::prelude::{ECDSAP256PublicKeyLike, EdDSAPublicKeyLike, RSAPublicKeyLike};
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use serde::Deserialize;

/// A 2048-bit RSA test key (PKCS#8), generated with OpenSSL for these benches only.
const RSA_PKCS8: &str = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCL/Z8bjmR5d8pZSGyWFNHfnZbYHUAsIuSVWupcqow8WpD7MLSO1+ztmWFg5CUuIwcNpLYNVjuZhS/vA5GkAsOLGBWRDvK1vMmip+sAgEd9YseOsQ96YpcWGpg59gWnO/SBOaGwprLkI2UOTwm97ccQjNukyZbErvhu1Z4UQCCeOKvz57C2cGJfFhLlj3IGPaNaMGe5ylBS3krzPwjVhfuNoEeyyG51lwA/BpIGzfkA6ebyKykFImN3FW6gsJKmn8nBL34WQudRA72Oeh+rO4BiM5W+cepXP5Kq+QNVZIrjlkv0plsDXhv/1P7Xbgr7r6OOAfCJzijn6GCEIMN+rmRbAgMBAAECggEAAaQGx0Ef360G+DfOh8bjzX0HrliIh62tA/OPKvY0T6zGuuWdy7EE2Gx/5R9gTRHLzl3oZMWfaIkbo7a6cF44Xn6j4S4i5IsQre2xO03wQXNmmOnfdK3dIlmFOTmS1kcMnSBzdbB1ly5Br4Kw+KZXkGH7le68sxPhdxTdMnEeaaNp9gpf6QBSYmSc9n7RiHMpnmoBPueug73trmA4UbTDvuyI2WlLNnC5ixsS49XoMzu3+Th4cYkDnEiA3cnzPAaMa93CZQz24qAdO4qPLubRh6RjKj+XbBJRCZzFRD5DoWs5l2gyGGgz5tgW3BgdCmpChl2Pg5s0YuhIx9Xb1cJtaQKBgQDEAY9gV4FAmsCPtudGPlxqDcpH/xQtF3WkmIK3VeLnflEUx4JuYc9/emmtxkLSAw21ZkIlp5fyqQvi0VlmIpDk838bsdcLVNubMGmNIAe1Ub1PiuW5NNmG0IVzcfW8Gf1sQa6+28tuY9K8COL9GFVa0qwhFgDUUEHwgAAYS4bCvQKBgQC21t3d2s1EfJFGJ6gf4NRZ152Gjy+4jP1zQqkzV6bj39C8u2F99mWiOiGA46llMfQofnfFaNTAb1irhdHaIOK20eyotGayPSXGRf1L9LR7jUlO1wywyKWX5M9naH71Z/SsA7Fz4qsziZHudihR4yQzalGEjkMq7nN5kUOzERKA9wKBgQCtXa/iiCOD8B0oQKA5qkj1aTMlEUJYS+q7ZkYgQTBMj5bJ6Vm9pnfxCmZU1QsfVKIYc9VIFv+4G7uuqHsJcsN0LsebyGYr2KfRkTWbJNyMjTsEExf0BAHvU5rmLMMs2FQmH8affCtofZTUyotzT8WXasXjEeIz6LUaMy1iT9NnhQKBgFwGxeEWcd6YvB4Nc8enx/n4VmcVxrUi8aaD1Nnssilby5pSzf0yeXEvxRE0hVxTykpfbTVFUGATKxQZ5MffaX0PKAi51D6+HDcxnw4N+pF9SXqPLuoD86UCG4o2xEAMtM+nhDeJzRXBllvpyN1+cAgY6TLIz/HZ1vFHNkX4v9F9AoGANAkH7jhQRo68R2hq8FDpMtPtdVWREf2mHyN3yDQ4foff4cG2NH7xbPyMKzdoF3nTdYUuYeNsHDnbmpj2QPa0v6+YT2q+IE9aDX/InBimp37tzH2mUJ1wRyRKoxeWlBTBwcYWfYfrwhKeM+03dktW1jHtixVOc6GHdITQc+yGvHE=";

const NOW: u64 = 1_767_225_600;

#[derive(Deserialize)]
#[allow(dead_code)]
struct Claims {
    iss: String,
    sub: String,
    aud: String,
    exp: u64,
    iat: u64,
    scope: String,
    roles: Vec<String>,
    tenant: String,
    email: String,
}

fn claims_json() -> String {
    let claims = serde_json::json!({
        "iss": "https://auth.example.com/",
        "sub": "user_2b1f7c9e4d8a4f0e9c3b",
        "aud": "https://api.example.com",
        "exp": NOW + 3600,
        "iat": NOW,
        "scope": "openid profile email orders:read orders:write",
        "roles": ["customer", "beta-tester"],
        "tenant": "eu-central-shop-042",
        "email": "ada.lovelace@example.com",
    });
    claims.to_string()
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

struct Case {
    name: &'static str,
    token: String,
    ours: VerifyingKey,
    floor: Box<dyn Fn(&[u8], &[u8]) -> bool>,
    jsonwebtoken: (jsonwebtoken::DecodingKey, jsonwebtoken::Algorithm),
    jwt_simple: Box<dyn Fn(&str) -> bool>,
}

fn signed(alg: &str, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let input = format!(
        "{}.{}",
        b64(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#).as_bytes()),
        b64(claims_json().as_bytes())
    );
    let sig = sign(input.as_bytes());
    format!("{input}.{}", b64(&sig))
}

fn options() -> jwt_simple::prelude::VerificationOptions {
    jwt_simple::prelude::VerificationOptions {
        allowed_issuers: Some(std::iter::once("https://auth.example.com/".to_owned()).collect()),
        allowed_audiences: Some(std::iter::once("https://api.example.com".to_owned()).collect()),
        time_tolerance: Some(jwt_simple::prelude::Duration::from_secs(60)),
        ..Default::default()
    }
}

fn cases() -> Vec<Case> {
    let rng = SystemRandom::new();
    let mut cases = Vec::new();

    let secret = *b"bench-secret-0123456789abcdefghi";
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret);
    let floor_key = key.clone();
    let hs_simple = jwt_simple::prelude::HS256Key::from_bytes(&secret);
    cases.push(Case {
        name: "HS256",
        token: signed("HS256", |input| {
            ring::hmac::sign(&key, input).as_ref().to_vec()
        }),
        ours: VerifyingKey::hmac(Algorithm::HS256, &secret).unwrap(),
        floor: Box::new(move |input, sig| ring::hmac::verify(&floor_key, input, sig).is_ok()),
        jsonwebtoken: (
            jsonwebtoken::DecodingKey::from_secret(&secret),
            jsonwebtoken::Algorithm::HS256,
        ),
        jwt_simple: Box::new(move |t| {
            hs_simple
                .verify_token::<serde_json::Value>(t, Some(options()))
                .is_ok()
        }),
    });

    let pkcs8 = STANDARD.decode(RSA_PKCS8).unwrap();
    let rsa = RsaKeyPair::from_pkcs8(&pkcs8).unwrap();
    let components = signature::RsaPublicKeyComponents::<Vec<u8>>::from(rsa.public());
    let (n, e) = (components.n, components.e);
    let token = signed("RS256", |input| {
        let mut sig = vec![0; rsa.public().modulus_len()];
        rsa.sign(
            &signature::RSA_PKCS1_SHA256,
            &SystemRandom::new(),
            input,
            &mut sig,
        )
        .unwrap();
        sig
    });
    let (fn_, fe) = (n.clone(), e.clone());
    let rs_simple = jwt_simple::prelude::RS256PublicKey::from_components(&n, &e).unwrap();
    cases.push(Case {
        name: "RS256",
        token,
        ours: VerifyingKey::rsa(Algorithm::RS256, &n, &e).unwrap(),
        floor: Box::new(move |input, sig| {
            signature::RsaPublicKeyComponents { n: &fn_, e: &fe }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, input, sig)
                .is_ok()
        }),
        jsonwebtoken: (
            jsonwebtoken::DecodingKey::from_rsa_components(&b64(&n), &b64(&e)).unwrap(),
            jsonwebtoken::Algorithm::RS256,
        ),
        jwt_simple: Box::new(move |t| {
            rs_simple
                .verify_token::<serde_json::Value>(t, Some(options()))
                .is_ok()
        }),
    });

    let es_pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let es = EcdsaKeyPair::from_pkcs8(
        &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        es_pkcs8.as_ref(),
        &rng,
    )
    .unwrap();
    let point = es.public_key().as_ref().to_vec();
    let token = signed("ES256", |input| {
        es.sign(&SystemRandom::new(), input)
            .unwrap()
            .as_ref()
            .to_vec()
    });
    let floor_point = point.clone();
    let es_simple = jwt_simple::prelude::ES256PublicKey::from_bytes(&point).unwrap();
    cases.push(Case {
        name: "ES256",
        token,
        ours: VerifyingKey::ecdsa(Algorithm::ES256, &point[1..33], &point[33..]).unwrap(),
        floor: Box::new(move |input, sig| {
            signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, &floor_point)
                .verify(input, sig)
                .is_ok()
        }),
        jsonwebtoken: (
            jsonwebtoken::DecodingKey::from_ec_components(&b64(&point[1..33]), &b64(&point[33..]))
                .unwrap(),
            jsonwebtoken::Algorithm::ES256,
        ),
        jwt_simple: Box::new(move |t| {
            es_simple
                .verify_token::<serde_json::Value>(t, Some(options()))
                .is_ok()
        }),
    });

    let ed_pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let ed = Ed25519KeyPair::from_pkcs8(ed_pkcs8.as_ref()).unwrap();
    let public = ed.public_key().as_ref().to_vec();
    let token = signed("EdDSA", |input| ed.sign(input).as_ref().to_vec());
    let floor_public = public.clone();
    let ed_simple = jwt_simple::prelude::Ed25519PublicKey::from_bytes(&public).unwrap();
    cases.push(Case {
        name: "EdDSA",
        token,
        ours: VerifyingKey::ed25519(&public).unwrap(),
        floor: Box::new(move |input, sig| {
            signature::UnparsedPublicKey::new(&signature::ED25519, &floor_public)
                .verify(input, sig)
                .is_ok()
        }),
        jsonwebtoken: (
            jsonwebtoken::DecodingKey::from_ed_components(&b64(&public)).unwrap(),
            jsonwebtoken::Algorithm::EdDSA,
        ),
        jwt_simple: Box::new(move |t| {
            ed_simple
                .verify_token::<serde_json::Value>(t, Some(options()))
                .is_ok()
        }),
    });
    cases
}

fn verify(c: &mut Criterion) {
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    let ours = Verifier::new(
        Validation::new()
            .with_issuer("https://auth.example.com/")
            .with_audience("https://api.example.com"),
    );
    for case in cases() {
        let keys = KeySet::new().with(case.ours.clone());
        let mut validation = jsonwebtoken::Validation::new(case.jsonwebtoken.1);
        validation.set_issuer(&["https://auth.example.com/"]);
        validation.set_audience(&["https://api.example.com"]);
        validation.validate_exp = false; // the bench token's exp is in 2026; jsonwebtoken reads the real clock
        let (input, sig) = case.token.rsplit_once('.').unwrap();
        let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
        let now = Duration::from_secs(NOW);

        // Every verifier must accept the token, or the comparison means nothing.
        assert!(
            ours.verify::<Claims>(&case.token, &keys, now).is_ok(),
            "{}",
            case.name
        );
        assert!((case.floor)(input.as_bytes(), &sig), "{}", case.name);
        jsonwebtoken::decode::<Claims>(&case.token, &case.jsonwebtoken.0, &validation).unwrap();

        // The four contenders, each one verification.
        let floor = || {
            black_box((case.floor)(black_box(input.as_bytes()), &sig));
        };
        let full = || {
            black_box(
                ours.verify::<Claims>(black_box(&case.token), &keys, now)
                    .is_ok(),
            );
        };
        let jsonwebtoken = || {
            black_box(
                jsonwebtoken::decode::<Claims>(
                    black_box(&case.token),
                    &case.jsonwebtoken.0,
                    &validation,
                )
                .is_ok(),
            );
        };
        let jwt_simple = || {
            black_box((case.jwt_simple)(black_box(&case.token)));
        };

        let mut group = c.benchmark_group(format!("jwt/verify/{}", case.name));
        group.bench_function("ring signature only (floor)", |b| b.iter(floor));
        group.bench_function("edge_auth", |b| b.iter(full));
        group.bench_function("jsonwebtoken (aws-lc-rs)", |b| b.iter(jsonwebtoken));
        group.bench_function("jwt-simple (pure-rust)", |b| b.iter(jwt_simple));
        group.finish();

        // The floor ratio, measured interleaved: each iteration times the floor and the full verification
        // back to back (alternating which goes first), and the overhead reported is the *median* of the
        // per-iteration differences. Both run under the same machine state, so drift on a shared machine
        // cancels out, and the median drops the iterations an interrupt or a neighbour hit on one side
        // only (a mean would count them, in either direction). Ratio to the floor = 1 + overhead / floor.
        // The same measurement is made for serde_json parsing the bench's claims type on its own (the part
        // of the overhead every serde-based verifier pays) and for each peer, so that every ratio is taken
        // against one floor measured alongside it: a peer's time is the floor plus its difference. A
        // difference can be negative (aws-lc-rs verifies some signatures faster than ring); criterion then
        // shows the 1 ns clamp, and the peer is faster than the floor. (Asymmetric algorithms only: the
        // HMAC comparison with the peers is in the group above.)
        // HMAC is too cheap for a floor ratio to mean much; what matters is the ratio to jsonwebtoken, so
        // that is measured the same interleaved way: both medians from one alternating run.
        if case.name == "HS256" {
            let mut group = c.benchmark_group("jwt/interleaved/HS256");
            group.bench_function("jsonwebtoken", |b| {
                b.iter_custom(|n| interleaved(n, &jsonwebtoken, &full, Report::Floor))
            });
            group.bench_function("edge_auth", |b| {
                b.iter_custom(|n| interleaved(n, &jsonwebtoken, &full, Report::Second))
            });
            group.finish();
        }
        if case.name != "HS256" {
            let mut group = c.benchmark_group(format!("jwt/overhead/{}", case.name));
            let payload = claims_json();
            let floor_and_serde = || {
                floor();
                black_box(serde_json::from_str::<Claims>(black_box(&payload)).is_ok());
            };
            group.bench_function("ring signature only (floor)", |b| {
                b.iter_custom(|n| interleaved(n, &floor, &full, Report::Floor))
            });
            group.bench_function("edge_auth minus the floor (overhead)", |b| {
                b.iter_custom(|n| interleaved(n, &floor, &full, Report::Difference))
            });
            group.bench_function("serde_json parsing the claims alone", |b| {
                b.iter_custom(|n| interleaved(n, &floor, &floor_and_serde, Report::Difference))
            });
            group.bench_function("jsonwebtoken minus the floor", |b| {
                b.iter_custom(|n| interleaved(n, &floor, &jsonwebtoken, Report::Difference))
            });
            group.bench_function("jwt-simple minus the floor", |b| {
                b.iter_custom(|n| interleaved(n, &floor, &jwt_simple, Report::Difference))
            });
            group.finish();
        }
    }
}

/// What [`interleaved`] reports.
enum Report {
    /// The median time of the first function.
    Floor,
    /// The median time of the second function.
    Second,
    /// The median of the second function's time minus the first's.
    Difference,
}

/// Times `first` and `second` alternately `n` times and reports `n` times the median of what `report`
/// names (at least 1 ns per iteration: criterion refuses zero).
fn interleaved(n: u64, first: &dyn Fn(), second: &dyn Fn(), report: Report) -> Duration {
    let time = |f: &dyn Fn()| {
        let start = std::time::Instant::now();
        f();
        i64::try_from(start.elapsed().as_nanos()).unwrap()
    };
    let mut firsts = Vec::with_capacity(n as usize);
    let mut seconds = Vec::with_capacity(n as usize);
    let mut differences = Vec::with_capacity(n as usize);
    for i in 0..n {
        let (a, b) = if i % 2 == 0 {
            let a = time(first);
            (a, time(second))
        } else {
            let b = time(second);
            (time(first), b)
        };
        firsts.push(a);
        seconds.push(b);
        differences.push(b - a);
    }
    let values = match report {
        Report::Floor => &mut firsts,
        Report::Second => &mut seconds,
        Report::Difference => &mut differences,
    };
    values.sort_unstable();
    let median = values[values.len() / 2].max(1);
    Duration::from_nanos(u64::try_from(median).unwrap() * n)
}

criterion_group!(benches, verify);
criterion_main!(benches);
