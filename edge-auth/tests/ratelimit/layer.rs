//! `RateLimitLayer` in front of a service: 429s with the IETF fields, per-route quotas, key extractors.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;

use bytes::Bytes;
use edge_auth::ratelimit::{ClientIp, KeyExtractor, KeyedLimiter, Quota, RateLimitLayer, Unkeyed};
use edge_core::{Body, ManualClock};
use http::{HeaderName, Request, Response, StatusCode};
use tower::{Layer, ServiceExt};

async fn ok(_request: Request<Body>) -> Result<Response<Body>, Infallible> {
    Ok(Response::new(Body::from(Bytes::from_static(b"ok"))))
}

fn limiter(per_minute: u32, clock: &ManualClock) -> KeyedLimiter<String, ManualClock> {
    KeyedLimiter::with_clock(
        Quota::per_minute(NonZeroU32::new(per_minute).unwrap()),
        clock.clone(),
    )
}

fn request(path: &str, ip: [u8; 4], headers: &[(&str, &str)]) -> Request<Body> {
    let mut builder = Request::get(path);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let mut request = builder.body(Body::empty()).unwrap();
    request
        .extensions_mut()
        .insert(ClientIp(IpAddr::V4(Ipv4Addr::from(ip))));
    request
}

async fn status<S>(service: &S, request: Request<Body>) -> Response<Body>
where
    S: tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone,
{
    service.clone().oneshot(request).await.unwrap()
}

#[tokio::test]
async fn denies_with_429_and_the_ietf_fields_per_client_and_per_route() {
    let clock = ManualClock::new();
    let layer = RateLimitLayer::new(limiter(2, &clock), KeyExtractor::client_ip())
        .route("/api/", limiter(1, &clock));
    let service = layer.layer(tower::service_fn(ok));

    let first = status(&service, request("/", [192, 0, 2, 1], &[])).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(first.headers()["ratelimit-policy"], "\"default\";q=2;w=60");
    assert_eq!(first.headers()["ratelimit"], "\"default\";r=1;t=30");
    assert_eq!(
        status(&service, request("/", [192, 0, 2, 1], &[]))
            .await
            .status(),
        StatusCode::OK
    );
    let denied = status(&service, request("/", [192, 0, 2, 1], &[])).await;
    assert_eq!(denied.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(denied.headers()["retry-after"], "30");
    assert_eq!(
        denied.headers()["ratelimit"],
        "\"default\";r=0;t=30",
        "t and Retry-After agree on a refusal"
    );
    assert_eq!(denied.headers()["cache-control"], "no-store");
    let body = http_body_util::BodyExt::collect(denied.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(
        &body[..],
        b"{\"error\":\"rate_limited\",\"retry_after_seconds\":30}\n"
    );

    // Another client has its own quota; the /api/ route has its own, smaller one.
    assert_eq!(
        status(&service, request("/", [192, 0, 2, 2], &[]))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        status(&service, request("/api/x", [192, 0, 2, 1], &[]))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        status(&service, request("/api/y", [192, 0, 2, 1], &[]))
            .await
            .status(),
        StatusCode::TOO_MANY_REQUESTS
    );

    clock.advance(std::time::Duration::from_secs(30));
    assert_eq!(
        status(&service, request("/", [192, 0, 2, 1], &[]))
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn forwarded_addresses_are_trusted_only_as_far_as_configured() {
    let clock = ManualClock::new();
    let xff = HeaderName::from_static("x-forwarded-for");
    let key = KeyExtractor::client_ip_behind(xff, 1);
    let service = RateLimitLayer::new(limiter(1, &clock), key).layer(tower::service_fn(ok));
    // The proxy appended 198.51.100.7; the client wrote the spoofed first entries itself.
    let spoofed = |fake: &str| {
        request(
            "/",
            [10, 0, 0, 1],
            &[("x-forwarded-for", &format!("{fake}, 198.51.100.7"))],
        )
    };
    assert_eq!(
        status(&service, spoofed("1.1.1.1")).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        status(&service, spoofed("2.2.2.2")).await.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "changing the client-written part does not give a new key"
    );
    // No header: the connection's address.
    assert_eq!(
        status(&service, request("/", [10, 0, 0, 2], &[]))
            .await
            .status(),
        StatusCode::OK
    );
    // Garbage in the header: the connection's address too, never a panic.
    assert_eq!(
        status(
            &service,
            request("/", [10, 0, 0, 3], &[("x-forwarded-for", "not-an-ip")])
        )
        .await
        .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn keyless_requests_are_refused_or_share_the_named_bucket_the_user_chose() {
    let clock = ManualClock::new();
    let api_key = || KeyExtractor::header(HeaderName::from_static("x-api-key"));

    // The default: refused, loudly (500: the host failed to say who the client is), never unlimited.
    let strict = RateLimitLayer::new(limiter(1, &clock), api_key()).layer(tower::service_fn(ok));
    for key in ["a", "b"] {
        let keyed = status(&strict, request("/", [1, 1, 1, 1], &[("x-api-key", key)])).await;
        assert_eq!(
            keyed.status(),
            StatusCode::OK,
            "each key has its own bucket"
        );
    }
    let keyless = status(&strict, request("/", [1, 1, 1, 1], &[])).await;
    assert_eq!(keyless.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(keyless.headers()["cache-control"], "no-store");
    let body = http_body_util::BodyExt::collect(keyless.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(&body[..], b"{\"error\":\"rate_limit_key_missing\"}\n");

    // Chosen instead: one named bucket for every keyless client, which no client can name itself.
    let shared = RateLimitLayer::new(limiter(1, &clock), api_key())
        .unkeyed(Unkeyed::shared_bucket("no-api-key"))
        .layer(tower::service_fn(ok));
    let first = status(&shared, request("/", [1, 1, 1, 1], &[])).await;
    assert_eq!(first.status(), StatusCode::OK);
    let second = status(&shared, request("/", [2, 2, 2, 2], &[])).await;
    assert_eq!(
        second.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "no key is not unlimited"
    );
    let claims_bucket = [("x-api-key", "unkeyed:no-api-key")];
    let impostor = status(&shared, request("/", [3, 3, 3, 3], &claims_bucket)).await;
    assert_eq!(
        impostor.status(),
        StatusCode::OK,
        "a header value is its own key"
    );

    // Set on a clone, the choice belongs to that clone's services.
    let base = RateLimitLayer::new(limiter(5, &clock), api_key());
    let lenient = base.clone().unkeyed(Unkeyed::shared_bucket("anyone"));
    let from_base = status(
        &base.layer(tower::service_fn(ok)),
        request("/", [4, 4, 4, 4], &[]),
    )
    .await;
    assert_eq!(from_base.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let from_lenient = status(
        &lenient.layer(tower::service_fn(ok)),
        request("/", [4, 4, 4, 4], &[]),
    )
    .await;
    assert_eq!(from_lenient.status(), StatusCode::OK);

    let only_api = RateLimitLayer::routes_only(KeyExtractor::client_ip())
        .route("/api/", limiter(1, &clock))
        .layer(tower::service_fn(ok));
    for _ in 0..3 {
        let r = status(&only_api, request("/", [3, 3, 3, 3], &[])).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert!(
            r.headers().get("ratelimit").is_none(),
            "unlimited routes get no fields"
        );
    }
}

#[test]
fn ipv6_clients_are_keyed_by_their_64() {
    let clock = ManualClock::new();
    let service = RateLimitLayer::new(limiter(1, &clock), KeyExtractor::client_ip())
        .layer(tower::service_fn(ok));
    let v6 = |addr: &str| {
        let mut r = Request::get("/").body(Body::empty()).unwrap();
        r.extensions_mut().insert(ClientIp(addr.parse().unwrap()));
        r
    };
    futures::executor::block_on(async {
        assert_eq!(
            status(&service, v6("2001:db8:1:2::1")).await.status(),
            StatusCode::OK
        );
        assert_eq!(
            status(&service, v6("2001:db8:1:2:ffff::9")).await.status(),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(
            status(&service, v6("2001:db8:1:3::1")).await.status(),
            StatusCode::OK
        );
    });
}

/// The RateLimit fields, read back by an RFC 9651 parser: a list of named members with integer
/// parameters.
fn members(response: &Response<Body>, field: &str) -> Vec<(String, Vec<(String, i64)>)> {
    let text: Vec<&str> = response
        .headers()
        .get_all(field)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    let list = sfv::Parser::parse_list(text.join(", ").as_bytes()).unwrap();
    list.into_iter()
        .map(|member| match member {
            sfv::ListEntry::Item(item) => {
                let name = item.bare_item.as_str().unwrap().to_owned();
                let params = item
                    .params
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_int().unwrap()))
                    .collect();
                (name, params)
            }
            sfv::ListEntry::InnerList(_) => panic!("an inner list in {field}"),
        })
        .collect()
}

/// draft-ietf-httpapi-ratelimit-headers-09 to the letter: the policy states the exact rate and burst
/// (`q` per `w`), `t` agrees with `Retry-After`, and a client that keeps to the policy is never refused.
#[tokio::test]
async fn the_fields_tell_the_truth_and_parse_as_structured_fields() {
    let clock = ManualClock::new();
    let quota = Quota::per_minute(NonZeroU32::new(120).unwrap())
        .with_burst(20)
        .unwrap()
        .with_name("api")
        .unwrap();
    let layer = RateLimitLayer::new(
        KeyedLimiter::<String, _>::with_clock(quota, clock.clone()),
        KeyExtractor::client_ip(),
    );
    let service = layer.layer(tower::service_fn(ok));
    let first = status(&service, request("/", [192, 0, 2, 9], &[])).await;
    let policy = members(&first, "ratelimit-policy");
    assert_eq!(
        policy,
        [(
            "api".to_owned(),
            vec![("q".to_owned(), 20), ("w".to_owned(), 10)]
        )]
    );
    let (q, w) = (policy[0].1[0].1, policy[0].1[1].1);
    assert_eq!(q * 60 / w, 120, "q per w is the real rate: 120 a minute");
    let state = members(&first, "ratelimit");
    assert_eq!(state[0].1, [("r".to_owned(), 19), ("t".to_owned(), 1)]);
    // Use the rest of the burst, then one more: refused, with t = Retry-After.
    for _ in 0..19 {
        let r = status(&service, request("/", [192, 0, 2, 9], &[])).await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    let refused = status(&service, request("/", [192, 0, 2, 9], &[])).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let t = members(&refused, "ratelimit")[0].1[1].1;
    let retry: i64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        (t, retry),
        (1, 1),
        "one request every 500 ms: next in under a second"
    );
    // A client keeping to q per w is never refused.
    for _ in 0..5 {
        clock.advance(std::time::Duration::from_secs(10));
        for _ in 0..20 {
            let r = status(&service, request("/", [192, 0, 2, 9], &[])).await;
            assert_eq!(r.status(), StatusCode::OK);
        }
    }
}

/// Two limiters on one request (a global layer and a per-route one) each report, in order.
#[tokio::test]
async fn stacked_limiters_each_append_their_members() {
    let clock = ManualClock::new();
    let global = RateLimitLayer::new(
        KeyedLimiter::<String, _>::with_clock(
            Quota::per_minute(NonZeroU32::new(600).unwrap())
                .with_name("global")
                .unwrap(),
            clock.clone(),
        ),
        KeyExtractor::client_ip(),
    );
    let per_route = RateLimitLayer::routes_only(KeyExtractor::client_ip()).route(
        "/api/",
        KeyedLimiter::<String, _>::with_clock(
            Quota::per_minute(NonZeroU32::new(10).unwrap())
                .with_name(String::from("api-") + "v1")
                .unwrap(),
            clock.clone(),
        ),
    );
    let service = global.layer(per_route.layer(tower::service_fn(ok)));
    let r = status(&service, request("/api/x", [192, 0, 2, 10], &[])).await;
    let names: Vec<String> = members(&r, "ratelimit-policy")
        .into_iter()
        .map(|m| m.0)
        .collect();
    assert_eq!(
        names,
        ["api-v1", "global"],
        "the inner limiter answers first, the outer appends"
    );
    assert_eq!(members(&r, "ratelimit").len(), 2);
}

/// A route added to a clone of a layer applies to that clone (it once did nothing at all).
#[tokio::test]
async fn a_route_added_after_a_clone_is_not_dropped() {
    let clock = ManualClock::new();
    let base = RateLimitLayer::routes_only(KeyExtractor::client_ip());
    let _kept = base.clone();
    let layer = base.route("/api/", limiter(1, &clock));
    let service = layer.layer(tower::service_fn(ok));
    let codes = [
        status(&service, request("/api/a", [192, 0, 2, 11], &[]))
            .await
            .status(),
        status(&service, request("/api/b", [192, 0, 2, 11], &[]))
            .await
            .status(),
    ];
    assert_eq!(codes, [StatusCode::OK, StatusCode::TOO_MANY_REQUESTS]);
}

/// An in-memory limiter decides at once: the layer calls the service behind it from `call` and clones
/// nothing, and its answers (the fields, the 429) are the same as on the path that waits.
#[tokio::test]
async fn an_in_memory_limiter_calls_the_service_behind_without_cloning_it() {
    use edge_core::testing::CountClones;
    use tower::Service;

    let clock = ManualClock::new();
    let inner = CountClones::new();
    let mut service =
        RateLimitLayer::new(limiter(2, &clock), KeyExtractor::client_ip()).layer(inner.clone());
    let before = inner.clones();
    let first = service
        .call(request("/", [192, 0, 2, 9], &[]))
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(first.headers()["ratelimit"], "\"default\";r=1;t=30");
    assert_eq!(first.headers()["ratelimit-policy"], "\"default\";q=2;w=60");
    assert_eq!(
        service
            .call(request("/", [192, 0, 2, 9], &[]))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let refused = service
        .call(request("/", [192, 0, 2, 9], &[]))
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.headers()["retry-after"], "30");
    assert_eq!(inner.clones(), before);
}
