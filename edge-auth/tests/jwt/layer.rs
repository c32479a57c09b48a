//! `JwtAuthLayer` in front of a service: challenges, claims in extensions, unprotected paths.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::convert::Infallible;
use std::num::NonZeroU32;

use bytes::Bytes;
use edge_auth::jwt::JwtAuthLayer;
use edge_auth::jwt::base64url::encode as b64;
use edge_auth::jwt::{JwksProvider, KvKeySource};
use edge_auth::jwt::{Validation, Verified, Verifier};
use edge_core::kv::PutOptions;
use edge_core::wait_until::QueuedWaitUntil;
use edge_core::{Body, Clock, KvStore, ManualClock};
use edge_kv::MemoryKv;
use http::{Request, Response, StatusCode, header};
use ring::hmac;
use serde_json::Value;
use tower::{Layer, ServiceExt};

const SECRET: &[u8; 32] = b"layer-test-secret-of-32-bytes!!!";

fn token(claims: &str) -> String {
    let input = format!(
        "{}.{}",
        b64(br#"{"alg":"HS256","kid":"k1"}"#),
        b64(claims.as_bytes())
    );
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, SECRET), input.as_bytes());
    format!("{input}.{}", b64(tag.as_ref()))
}

/// Keys from a JWK Set in KV holding the test's HMAC secret as `k1`.
async fn provider(
    clock: &ManualClock,
) -> JwksProvider<KvKeySource<MemoryKv<ManualClock>>, ManualClock, QueuedWaitUntil> {
    let kv = MemoryKv::builder().clock(clock.clone()).build();
    let jwks = format!(
        r#"{{"keys":[{{"kty":"oct","alg":"HS256","kid":"k1","k":"{}"}}]}}"#,
        b64(SECRET)
    );
    kv.put("jwks", Bytes::from(jwks), PutOptions::new())
        .await
        .unwrap();
    JwksProvider::new(
        KvKeySource::new(kv, "jwks"),
        clock.clone(),
        QueuedWaitUntil::new(),
    )
}

async fn app(
    clock: &ManualClock,
) -> impl tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone {
    let provider = provider(clock).await;
    let layer = JwtAuthLayer::<Value>::new(
        provider,
        Verifier::new(Validation::new().with_audience("edge")),
    )
    .protect_prefix("/api/");
    layer.layer(tower::service_fn(|request: Request<Body>| async move {
        let who = request
            .extensions()
            .get::<Verified<Value>>()
            .and_then(|v| v.claims.sub.as_deref().map(str::to_owned))
            .unwrap_or_else(|| "anonymous".to_owned());
        Ok::<_, Infallible>(Response::new(Body::from(who)))
    }))
}

async fn call(
    service: impl tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
    path: &str,
    authorization: &[&str],
) -> (StatusCode, String, Bytes) {
    let mut request = Request::get(path);
    for value in authorization {
        request = request.header(header::AUTHORIZATION, *value);
    }
    let response = service
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let challenge = response
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let status = response.status();
    (
        status,
        challenge,
        response.into_body().collect(1 << 16).await.unwrap(),
    )
}

#[tokio::test]
async fn bearer_tokens_become_claims_or_rfc_6750_challenges() {
    let clock = ManualClock::new();
    let exp = clock.unix_time().as_secs() + 60;
    let good = token(&format!(r#"{{"sub":"alice","aud":"edge","exp":{exp}}}"#));

    let (status, _, body) = call(app(&clock).await, "/api/me", &[&format!("Bearer {good}")]).await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"alice"[..]));

    let (status, challenge, _) = call(app(&clock).await, "/api/me", &[]).await;
    assert_eq!(
        (status, challenge.as_str()),
        (StatusCode::UNAUTHORIZED, r#"Bearer realm="edge""#)
    );

    let (status, challenge, body) =
        call(app(&clock).await, "/api/me", &["Basic YWxpY2U6c2VjcmV0"]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(challenge.contains(r#"error="invalid_request""#));
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["error"],
        "invalid_request"
    );

    let two = format!("Bearer {good}");
    let (status, _, _) = call(app(&clock).await, "/api/me", &[&two, &two]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "two Authorization headers");

    let expired = token(&format!(
        r#"{{"sub":"alice","aud":"edge","exp":{}}}"#,
        exp - 3600
    ));
    let (status, challenge, body) = call(
        app(&clock).await,
        "/api/me",
        &[&format!("Bearer {expired}")],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        challenge.contains(r#"error="invalid_token", error_description="token expired""#),
        "{challenge}"
    );
    assert!(
        !String::from_utf8_lossy(&body).contains(&expired),
        "the token is never echoed"
    );

    let wrong_audience = token(&format!(r#"{{"sub":"alice","aud":"other","exp":{exp}}}"#));
    let (status, challenge, _) = call(
        app(&clock).await,
        "/api/me",
        &[&format!("bearer {wrong_audience}")],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(challenge.contains("audience not accepted"));

    let (status, _, body) = call(app(&clock).await, "/public", &[]).await;
    assert_eq!(
        (status, &body[..]),
        (StatusCode::OK, &b"anonymous"[..]),
        "unprotected paths pass untouched"
    );
}

#[tokio::test]
async fn missing_keys_are_a_503_not_the_clients_fault() {
    let clock = ManualClock::new();
    let provider = JwksProvider::new(
        KvKeySource::new(MemoryKv::new(), "jwks"),
        clock.clone(),
        QueuedWaitUntil::new(),
    );
    let service =
        JwtAuthLayer::<Value>::new(provider, Verifier::default()).layer(tower::service_fn(
            |_request: Request<Body>| async { Ok::<_, Infallible>(Response::new(Body::empty())) },
        ));
    let (status, challenge, _) = call(
        service,
        "/api/me",
        &[&format!("Bearer {}", token(r#"{"exp":1}"#))],
    )
    .await;
    assert_eq!(
        (status, challenge.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "")
    );
}

/// The rate limiter keys on the token's subject whatever claims type the JWT layer was given: a typed
/// claims struct must not make `jwt_sub` miss the token and fall back to the (shared) address.
#[tokio::test]
async fn the_rate_limit_keys_on_the_subject_whatever_the_claims_type() {
    use edge_auth::ratelimit::{ClientIp, KeyExtractor, KeyedLimiter, Quota, RateLimitLayer};

    #[derive(Clone, serde::Deserialize)]
    struct Claims {
        #[allow(dead_code)]
        sub: String,
    }

    let clock = ManualClock::new();
    let provider = provider(&clock).await;
    let auth = JwtAuthLayer::<Claims>::new(
        provider,
        Verifier::new(Validation::new().with_audience("edge")),
    );
    let limit = RateLimitLayer::new(
        KeyedLimiter::<String, _>::with_clock(
            Quota::per_minute(NonZeroU32::new(1).unwrap()),
            clock.clone(),
        ),
        KeyExtractor::jwt_sub(),
    );
    let service = auth.layer(limit.layer(tower::service_fn(|_: Request<Body>| async {
        Ok::<_, Infallible>(Response::new(Body::from("ok")))
    })));
    let exp = clock.unix_time().as_secs() + 600;
    let status_for = |sub: &str| {
        let bearer = format!(
            "Bearer {}",
            token(&format!(r#"{{"sub":"{sub}","aud":"edge","exp":{exp}}}"#))
        );
        let mut request = Request::get("/").header(header::AUTHORIZATION, bearer);
        request = request.extension(ClientIp("198.51.100.7".parse().unwrap()));
        let service = service.clone();
        async move {
            service
                .oneshot(request.body(Body::empty()).unwrap())
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(status_for("alice").await, StatusCode::OK);
    assert_eq!(
        status_for("bob").await,
        StatusCode::OK,
        "same address, another subject"
    );
    assert_eq!(status_for("alice").await, StatusCode::TOO_MANY_REQUESTS);
}

/// Each layer's refusals go through the responder the user gave, with the typed reason; the defaults
/// stay one call away.
#[tokio::test]
async fn refusals_are_shaped_by_the_users_responders() {
    use edge_auth::jwt::AuthRejection;
    use edge_auth::ratelimit::{
        ClientIp, KeyExtractor, KeyedLimiter, Quota, RateLimitLayer, RateLimitRejection,
    };
    use edge_auth::waf::{WafLayer, WafRules};

    fn problem(status: StatusCode, title: &str) -> Response<Body> {
        let mut response = Response::new(Body::from(format!(r#"{{"title":"{title}"}}"#)));
        *response.status_mut() = status;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/problem+json"),
        );
        response
    }

    let clock = ManualClock::new();
    let ok = tower::service_fn(|_: Request<Body>| async {
        Ok::<_, Infallible>(Response::new(Body::from("ok")))
    });
    let auth = JwtAuthLayer::<Value>::new(
        provider(&clock).await,
        Verifier::new(Validation::new().with_audience("edge")),
    )
    .respond_with(|rejection: &AuthRejection| {
        let title = match rejection {
            AuthRejection::MissingToken => "sign in",
            AuthRejection::MalformedCredentials => "bad header",
            AuthRejection::InvalidToken(_) => "bad token",
            AuthRejection::KeysUnavailable(_) => "try later",
            _ => "other",
        };
        let mut response = problem(rejection.status(), title);
        let default = rejection.default_response("shop");
        if let Some(challenge) = default.headers().get(header::WWW_AUTHENTICATE) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, challenge.clone());
        }
        response
    });
    let (status, challenge, body) = call(auth.layer(ok), "/", &[]).await;
    assert_eq!(
        (status, body.as_ref()),
        (StatusCode::UNAUTHORIZED, &br#"{"title":"sign in"}"#[..])
    );
    assert_eq!(challenge, r#"Bearer realm="shop""#);
    let (status, _, body) = call(auth.layer(ok), "/", &["Basic abc"]).await;
    assert_eq!(
        (status, body.as_ref()),
        (StatusCode::BAD_REQUEST, &br#"{"title":"bad header"}"#[..])
    );
    let (status, _, body) = call(auth.layer(ok), "/", &["Bearer a.b.c"]).await;
    assert_eq!(
        (status, body.as_ref()),
        (StatusCode::UNAUTHORIZED, &br#"{"title":"bad token"}"#[..])
    );

    let limits = RateLimitLayer::new(
        KeyedLimiter::<String, _>::with_clock(
            Quota::per_minute(NonZeroU32::new(1).unwrap()),
            clock.clone(),
        ),
        KeyExtractor::client_ip(),
    )
    .respond_with(|rejection: &RateLimitRejection| match rejection {
        RateLimitRejection::Limited(decision) => {
            let mut response = problem(StatusCode::TOO_MANY_REQUESTS, "slow down");
            decision.write_headers(response.headers_mut());
            response
        }
        other => other.default_response(),
    });
    let limited = limits.layer(ok);
    let request = || {
        Request::get("/")
            .extension(ClientIp("192.0.2.9".parse().unwrap()))
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(
        limited.clone().oneshot(request()).await.unwrap().status(),
        StatusCode::OK
    );
    let refused = limited.clone().oneshot(request()).await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers().get("ratelimit").is_some());
    assert_eq!(
        refused.into_body().collect(1024).await.unwrap(),
        r#"{"title":"slow down"}"#
    );
    let keyless = limited
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(
        keyless.status(),
        StatusCode::INTERNAL_SERVER_ERROR,
        "the default for the other reason"
    );

    let waf = WafLayer::new(WafRules::new()).respond_with(|verdict| {
        problem(
            StatusCode::FORBIDDEN,
            &format!("blocked by {} rule(s)", verdict.matches.len()),
        )
    });
    let blocked = waf
        .layer(ok)
        .oneshot(
            Request::get("/?q=%3Cscript%3Ealert(1)%3C/script%3E")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(blocked.status(), StatusCode::FORBIDDEN);
    assert!(
        blocked
            .extensions()
            .get::<edge_auth::waf::Verdict>()
            .is_some(),
        "the verdict rides along"
    );
    let body = blocked.into_body().collect(1024).await.unwrap();
    assert!(body.starts_with(b"{\"title\":\"blocked by "), "{body:?}");
}

/// Once the keys are in memory, a verdict needs no I/O: the layer calls the service behind it from `call`,
/// without the per-request clone a future would need. Before that (the first request loads the keys), and
/// for a `kid` the keys do not hold (which may reload them), it takes the service along into the future.
#[tokio::test]
async fn with_the_keys_in_memory_the_service_behind_is_not_cloned() {
    use edge_core::testing::CountClones;
    use tower::Service;

    let clock = ManualClock::new();
    let exp = clock.unix_time().as_secs() + 60;
    let layer = JwtAuthLayer::<Value>::new(provider(&clock).await, Verifier::default());
    let inner = CountClones::new();
    let mut service = layer.layer(inner.clone());
    let before = inner.clones();
    let mut send = |authorization: String| {
        let request = Request::get("/")
            .header(header::AUTHORIZATION, authorization)
            .body(Body::empty())
            .unwrap();
        service.call(request)
    };
    let good = format!("Bearer {}", token(&format!(r#"{{"exp":{exp}}}"#)));

    assert_eq!(send(good.clone()).await.unwrap().status(), StatusCode::OK);
    assert_eq!(
        inner.clones(),
        before + 1,
        "the first request waits for the keys"
    );
    for _ in 0..3 {
        assert_eq!(send(good.clone()).await.unwrap().status(), StatusCode::OK);
    }
    assert_eq!(
        send("Bearer not.a.token".to_owned())
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        inner.clones(),
        before + 1,
        "verdicts from memory clone nothing"
    );

    let unknown_kid = {
        let input = format!(
            "{}.{}",
            b64(br#"{"alg":"HS256","kid":"k2"}"#),
            b64(format!(r#"{{"exp":{exp}}}"#).as_bytes())
        );
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, SECRET), input.as_bytes());
        format!("Bearer {input}.{}", b64(tag.as_ref()))
    };
    let refused = send(unknown_kid).await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        inner.clones(),
        before + 2,
        "an unknown kid may reload: the slow path"
    );
}
