//! Shared fixtures: a 2048-bit RSA key with tokens signed by OpenSSL, and minting helpers on ring.

use ring::hmac;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair};

/// The modulus of a 2048-bit RSA key (exponent 65537) generated with OpenSSL for these tests.
pub const RSA_2048_N: &str = "i_2fG45keXfKWUhslhTR352W2B1ALCLklVrqXKqMPFqQ-zC0jtfs7ZlhYOQlLiMHDaS2DVY7mYUv7wORpALDixgVkQ7ytbzJoqfrAIBHfWLHjrEPemKXFhqYOfYFpzv0gTmhsKay5CNlDk8Jve3HEIzbpMmWxK74btWeFEAgnjir8-ewtnBiXxYS5Y9yBj2jWjBnucpQUt5K8z8I1YX7jaBHsshudZcAPwaSBs35AOnm8ispBSJjdxVuoLCSpp_JwS9-FkLnUQO9jnofqzuAYjOVvnHqVz-SqvkDVWSK45ZL9KZbA14b_9T-124K-6-jjgHwic4o5-hghCDDfq5kWw";

/// Tokens signed by that key with OpenSSL (header `{"alg":…,"kid":"rsa-1"}`; claims: iss
/// `https://auth.example`, sub `user-42`, aud `edge`, exp 4102444800, iat 1767225600).
pub const RSA_TOKENS: [(&str, &str); 6] = [
    (
        "RS256",
        "eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYS0xIn0.eyJpc3MiOiJodHRwczovL2F1dGguZXhhbXBsZSIsInN1YiI6InVzZXItNDIiLCJhdWQiOiJlZGdlIiwiZXhwIjo0MTAyNDQ0ODAwLCJpYXQiOjE3NjcyMjU2MDB9.CI25_TSkZt0057kgpkR7ssUm5ziI_ALKk7mvmYPrttZ7IRDG7IOPEPC-aame3Gcw-V_Q9JYQkdEFDShpJBlLVGDoOUrpvnsiWLTCqUN7RT0BhwFldpZA2LmWI61rrgJ9F8xr6YHwKFtiMdVvUCcJGROen6ojSIX68-QZt10JOfPKdD_t8TpazC8w9lYQSrhXhrKWXEA4xyU2DfKP8G_FaNWXBztXvt-btRLUQBuYxGeYy4WcN2my59jZgMUGm5oXbL1KB0w-E1RoH99LdD3Mbt4t2yAig34wswJRIOZaQr8pITCkVI8j5pOHFcYU2ibFLkWZlMl8DarnP5nG-vm3NQ",
    ),
    (
        "RS384",
        "eyJhbGciOiJSUzM4NCIsImtpZCI6InJzYS0xIn0.eyJpc3MiOiJodHRwczovL2F1dGguZXhhbXBsZSIsInN1YiI6InVzZXItNDIiLCJhdWQiOiJlZGdlIiwiZXhwIjo0MTAyNDQ0ODAwLCJpYXQiOjE3NjcyMjU2MDB9.Fv2elmAXZtugdnkJ1mZFRCV_K80hvqfWGXoVZUgUFrJObGemGjy02DHI7kZEDKvYiqsi23DeRhtFXy8olyE5IpJ68-OuL6hj4yYGrffFhY130Az_MYDAriYdn_XsJf8fWQ1YrpTeI5WANmI4MyiGV549qMSTCW3zWDjjlxWpinVyL8ru4dviu9SJdnIccNRRauqu5Joac4ZdQP5l31DLRmb98R_u0adNMMmDzDghMt1d-3AN5mIvWqV_WrXh3JE4hRlFpvMxJrNzWukS6a1JE_2igyaHw3vpVwp7-v61RfFPbo01NsjzrfVsY-f_9ZPSwlATryLC1FNOVtjrJccUMA",
    ),
    (
        "RS512",
        "eyJhbGciOiJSUzUxMiIsImtpZCI6InJzYS0xIn0.eyJpc3MiOiJodHRwczovL2F1dGguZXhhbXBsZSIsInN1YiI6InVzZXItNDIiLCJhdWQiOiJlZGdlIiwiZXhwIjo0MTAyNDQ0ODAwLCJpYXQiOjE3NjcyMjU2MDB9.ZjNMdCJW2w0WV6ePIhQLnml2Rb_ZQQoIcnqJ7od-rbKh1XFgMO02BWqkV4o4SO-kjoB1FR2oLwhH6MfTLUUFld8VTgni3BmCTqDikTcEczbfVkq0n9N1xxXQl7oz3be4fALFQEr6wZNFl1DpbaZrdIgbHL519LLjObiYSlh8f-rgm53xfvjcofePQTz0twOVdkOoqw9zdl9I8efzdduktTOZfQDajpeOFJV_Es2MFvRwtKWlNWfKb8DbP7cqeQv9PlB6xSl6z3SgVwNPMpeIH8mHbUcoHmtsHAN-xWAeLm5-esdVq-OqX0tTAOfUuEVvJQ8ajrCW81cL_-l8VGoN2w",
    ),
    (
        "PS256",
        "eyJhbGciOiJQUzI1NiIsImtpZCI6InJzYS0xIn0.eyJpc3MiOiJodHRwczovL2F1dGguZXhhbXBsZSIsInN1YiI6InVzZXItNDIiLCJhdWQiOiJlZGdlIiwiZXhwIjo0MTAyNDQ0ODAwLCJpYXQiOjE3NjcyMjU2MDB9.KrcUfGDsEo8d3WdJpSiGXiheCDZzxieCI3ECOxcZicXJedOM7lLspLf-ldkgs_zR9KRmwKl_E6oh8_QSe4tjW9B1Xi7s-cfbAVFxyYbQD5p4xJM8SW4CoJMlbPeP-b0R6V5bbloBrxPOg1UJM3dQiEiaNLGJ1ffO4hRlgf8bwAX8cWZb8199ZGK4RSp9YmO3VI49MYP-T-r-vIqwUxybJqiNZE_vYZvUdsUKoEyMYNTSl6Jp1zBPyp-QdEI8mesRx5RpqJTLNwWhEf1X1EmpLdl3PurQL8X9qIYaNQWvJDmeS40tJdRiDcsj5kTWI6NN4D3bwJ2pQxreqVicOea3pg",
    ),
    (
        "PS384",
        "eyJhbGciOiJQUzM4NCIsImtpZCI6InJzYS0xIn0.eyJpc3MiOiJodHRwczovL2F1dGguZXhhbXBsZSIsInN1YiI6InVzZXItNDIiLCJhdWQiOiJlZGdlIiwiZXhwIjo0MTAyNDQ0ODAwLCJpYXQiOjE3NjcyMjU2MDB9.RZUBz7bt3eG4ndX-cua90ze3kXLgNxuKDI96DLkHCdiBxYtHF_5wQnEvoDUJo6TWufNOJ-Hr-3CmJ53xbFrEqZi445plYC7CAcf6DpaUf_AqcpXg7KSNzi2m2SgTjZOabmGwkklJaR9S82RA11g0nXuxBKOGSB7dese-cDCd9WxOefpf7FKO_wWN50ALbQZTwI5dlG2crTXIgXOmJmYNosXgYQLtwAWb771gFhdYhVVeBQBpJ-MDebV25y3A_NUW69SBgXdEk8RSdVQ2LYwGlR2_M3VsY05uo5SL4u5KCxEiCsHFJT7t3OYtNLPa-HJk3DbD0DhA03_zDFCXO-8NLg",
    ),
    (
        "PS512",
        "eyJhbGciOiJQUzUxMiIsImtpZCI6InJzYS0xIn0.eyJpc3MiOiJodHRwczovL2F1dGguZXhhbXBsZSIsInN1YiI6InVzZXItNDIiLCJhdWQiOiJlZGdlIiwiZXhwIjo0MTAyNDQ0ODAwLCJpYXQiOjE3NjcyMjU2MDB9.H246lzxn-YgGDQfxohzxVkQegJA16GMy5O4EMccpRn7L-3Wq2qV4pc4ElFdBGCSQo10H5rEIRh-rJXPnjOTazni1J5gP8Sf2dNoSpferZI64rYtltu9sO4KEnJKYLzqlt_W4ToniWXT6ZS_dKDntLcwoA1yQQQ3CdmWoe97xnULuP5wQO_jZdolWmG_pPZzbBbUEWVywO6Z5G2hAah9Hm3dVs51SLC65Cor_ulcs6ApXFxp1QeLVI7wiWcGOOJ7XoJnkklxDH_yHgerc1dp7p1Ns7C2vsVgypY1-1tPSCJNnRlBbe2qyJTIK9xgq2oa1gtD_7RmrFy3h_IHlX52LkA",
    ),
];

/// Base64url without padding.
pub fn b64(bytes: &[u8]) -> String {
    edge_auth::jwt::base64url::encode(bytes)
}

/// The signing input for a header and claims given as JSON text.
pub fn signing_input(header: &str, claims: &str) -> String {
    format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()))
}

/// An HMAC-signed token.
pub fn hs(alg: hmac::Algorithm, secret: &[u8], header: &str, claims: &str) -> String {
    let input = signing_input(header, claims);
    let tag = hmac::sign(&hmac::Key::new(alg, secret), input.as_bytes());
    format!("{input}.{}", b64(tag.as_ref()))
}

/// A fresh P-256 key: its coordinates and a signer producing raw (JWS) or DER signatures.
pub struct Es256 {
    pair: EcdsaKeyPair,
    der_pair: EcdsaKeyPair,
}

impl Es256 {
    pub fn generate() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8.as_ref(),
            &rng,
        )
        .unwrap();
        let der_pair = EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            pkcs8.as_ref(),
            &rng,
        )
        .unwrap();
        Self { pair, der_pair }
    }

    pub fn xy(&self) -> (Vec<u8>, Vec<u8>) {
        let point = self.pair.public_key().as_ref();
        (point[1..33].to_vec(), point[33..65].to_vec())
    }

    pub fn sign(&self, header: &str, claims: &str) -> String {
        let input = signing_input(header, claims);
        let sig = self
            .pair
            .sign(&SystemRandom::new(), input.as_bytes())
            .unwrap();
        format!("{input}.{}", b64(sig.as_ref()))
    }

    pub fn sign_der(&self, header: &str, claims: &str) -> String {
        let input = signing_input(header, claims);
        let sig = self
            .der_pair
            .sign(&SystemRandom::new(), input.as_bytes())
            .unwrap();
        format!("{input}.{}", b64(sig.as_ref()))
    }
}

/// A fresh Ed25519 key.
pub struct Ed {
    pair: Ed25519KeyPair,
}

impl Ed {
    pub fn generate() -> Self {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        Self {
            pair: Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap(),
        }
    }

    pub fn public(&self) -> Vec<u8> {
        self.pair.public_key().as_ref().to_vec()
    }

    pub fn sign(&self, header: &str, claims: &str) -> String {
        let input = signing_input(header, claims);
        format!("{input}.{}", b64(self.pair.sign(input.as_bytes()).as_ref()))
    }
}
