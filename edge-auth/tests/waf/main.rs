//! The WAF over whole requests: the layer, streamed bodies, penalties, and arbitrary input.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;
use std::time::Duration;

use bytes::Bytes;
use edge_auth::ratelimit::{ClientIp, KeyExtractor, KeyedLimiter, Quota};
use edge_auth::waf::{Category, Mode, Verdict, WafLayer, WafRules};
use edge_core::{Body, ManualClock};
use http::{HeaderMap, Request, Response, StatusCode};
use proptest::prelude::*;
use tower::{Layer, ServiceExt};

/// Echoes the body back and says how many WAF matches the request carried.
async fn echo(request: Request<Body>) -> Result<Response<Body>, Infallible> {
    let matches = request
        .extensions()
        .get::<Verdict>()
        .map_or(usize::MAX, |v| v.matches.len());
    let body = request.into_body().collect(1 << 20).await.unwrap();
    let mut response = Response::new(Body::from(body));
    response
        .headers_mut()
        .insert("x-matches", matches.to_string().parse().unwrap());
    Ok(response)
}

fn request(uri: &str, content_type: Option<&str>, body: Body) -> Request<Body> {
    let mut builder = Request::post(uri);
    if let Some(ct) = content_type {
        builder = builder.header("content-type", ct);
    }
    let mut request = builder.body(body).unwrap();
    request
        .extensions_mut()
        .insert(ClientIp(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9))));
    request
}

async fn body_of(response: Response<Body>) -> Bytes {
    response.into_body().collect(1 << 20).await.unwrap()
}

#[tokio::test]
async fn blocks_attacks_passes_benign_requests_and_replays_streamed_bodies() {
    let service = WafLayer::new(WafRules::new()).layer(tower::service_fn(echo));

    let blocked = service
        .clone()
        .oneshot(request(
            "/search?q=%27%20OR%20%271%27%3D%271",
            None,
            Body::empty(),
        ))
        .await
        .unwrap();
    assert_eq!(blocked.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        blocked.extensions().get::<Verdict>().unwrap().matches[0].rule,
        "sqli-tautology"
    );
    assert_eq!(
        &body_of(blocked).await[..],
        b"{\"error\":\"request_blocked\"}\n"
    );

    // A JSON body arriving in small chunks: inspected, then handed on byte for byte.
    let json = r#"{"name":"O'Brien","note":"select your size","tags":["a","b"]}"#;
    let chunks: Vec<Result<Bytes, Infallible>> = json
        .as_bytes()
        .chunks(7)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let streamed = Body::from_stream(futures::stream::iter(chunks));
    let ok = service
        .clone()
        .oneshot(request("/profile", Some("application/json"), streamed))
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.headers()["x-matches"], "0");
    assert_eq!(&body_of(ok).await[..], json.as_bytes());

    let chunks: Vec<Result<Bytes, Infallible>> = vec![
        Ok(Bytes::from_static(b"comment=<img src=x ")),
        Ok(Bytes::from_static(b"onerror=alert(1)>")),
    ];
    let xss = service
        .clone()
        .oneshot(request(
            "/comments",
            Some("application/x-www-form-urlencoded"),
            Body::from_stream(futures::stream::iter(chunks)),
        ))
        .await
        .unwrap();
    assert_eq!(
        xss.status(),
        StatusCode::FORBIDDEN,
        "split across chunks, still seen"
    );

    // A body larger than the inspection limit still reaches the service whole.
    let big = "a".repeat(200_000);
    let chunks: Vec<Result<Bytes, Infallible>> = big
        .as_bytes()
        .chunks(16 * 1024)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let passed = service
        .clone()
        .oneshot(request(
            "/upload",
            Some("text/plain"),
            Body::from_stream(futures::stream::iter(chunks)),
        ))
        .await
        .unwrap();
    assert_eq!(passed.status(), StatusCode::OK);
    assert_eq!(body_of(passed).await.len(), 200_000);
}

#[tokio::test]
async fn log_only_rules_let_requests_through_until_the_penalty_limiter_says_no() {
    let clock = ManualClock::new();
    let offenders = KeyedLimiter::<String, _>::with_clock(
        Quota::per_minute(NonZeroU32::new(2).unwrap()),
        clock.clone(),
    );
    let waf = WafRules::new().with_category_mode(Category::CrossSiteScripting, Mode::LogOnly);
    let service = WafLayer::new(waf)
        .penalize(offenders, KeyExtractor::client_ip())
        .layer(tower::service_fn(echo));
    let probe = || request("/?q=%3Cscript%3Ealert(1)%3C/script%3E", None, Body::empty());
    for _ in 0..2 {
        let r = service.clone().oneshot(probe()).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "log-only");
        assert_eq!(r.headers()["x-matches"], "1");
    }
    let r = service.clone().oneshot(probe()).await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "third strike");
    let clean = service
        .clone()
        .oneshot(request("/?q=hello", None, Body::empty()))
        .await
        .unwrap();
    assert_eq!(
        clean.status(),
        StatusCode::OK,
        "clean requests are never charged"
    );
    clock.advance(Duration::from_secs(60));
    assert_eq!(
        service.clone().oneshot(probe()).await.unwrap().status(),
        StatusCode::OK
    );
}

/// A penalized request without a client key is not silently charged to a made-up client: it is blocked
/// (and logged) unless the user names a shared bucket for such requests.
#[tokio::test]
async fn keyless_offenders_are_blocked_or_share_the_bucket_the_user_named() {
    use edge_auth::ratelimit::Unkeyed;
    let clock = ManualClock::new();
    let waf = || WafRules::new().with_category_mode(Category::CrossSiteScripting, Mode::LogOnly);
    let limiter = || {
        KeyedLimiter::<String, _>::with_clock(
            Quota::per_minute(NonZeroU32::new(2).unwrap()),
            clock.clone(),
        )
    };
    let keyless = || {
        let mut probe = request("/?q=%3Cscript%3Ealert(1)%3C/script%3E", None, Body::empty());
        probe.extensions_mut().remove::<ClientIp>();
        probe
    };
    let strict = WafLayer::new(waf())
        .penalize(limiter(), KeyExtractor::client_ip())
        .layer(tower::service_fn(echo));
    assert_eq!(
        strict.oneshot(keyless()).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    let shared = WafLayer::new(waf())
        .penalize(limiter(), KeyExtractor::client_ip())
        .unkeyed(Unkeyed::shared_bucket("no-address"))
        .layer(tower::service_fn(echo));
    for _ in 0..2 {
        assert_eq!(
            shared.clone().oneshot(keyless()).await.unwrap().status(),
            StatusCode::OK
        );
    }
    assert_eq!(
        shared.oneshot(keyless()).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
}

proptest! {
    /// No URI, header value or body, however malformed, makes the WAF panic.
    #[test]
    fn arbitrary_requests_never_panic(
        path in "/[ -~]{0,64}",
        query in prop::collection::vec(any::<u8>(), 0..128),
        header in prop::collection::vec(32u8..127, 0..128),
        body in prop::collection::vec(any::<u8>(), 0..512),
        content_type in prop::sample::select(vec!["application/json", "application/x-www-form-urlencoded", "text/plain", ""]),
    ) {
        let encoded: String = query.iter().map(|b| format!("%{b:02X}")).collect();
        let uri = format!("{}?q={encoded}", path.replace(['?', '#', ' ', '"', '<', '>', '\\', '^', '`', '{', '|', '}'], "_"));
        let Ok(uri) = uri.parse::<http::Uri>() else { return Ok(()) };
        let mut headers = HeaderMap::new();
        headers.insert("x-anything", http::HeaderValue::from_bytes(&header).unwrap());
        if !content_type.is_empty() {
            headers.insert("content-type", content_type.parse().unwrap());
        }
        let verdict = WafRules::new().inspect(&uri, &headers, Some(&body));
        prop_assert!(verdict.matches.len() <= 1 + 2 + 256 * 2 + 256);
    }
}

/// A request without a body to read and without matches is decided in `call`: the layer calls the service
/// behind it at once and clones nothing. A streamed form body (read first) and a match (charged to the
/// penalty limiter) take the service along into the future.
#[tokio::test]
async fn clean_requests_without_a_body_to_read_clone_nothing() {
    use edge_core::testing::CountClones;
    use futures::stream;
    use tower::Service;

    let inner = CountClones::new();
    let mut service = WafLayer::new(WafRules::new()).layer(inner.clone());
    let before = inner.clones();
    let clean = service
        .call(request("/products?page=2&sort=price", None, Body::empty()))
        .await
        .unwrap();
    assert_eq!(clean.status(), StatusCode::OK);
    let buffered = Body::from("q=shoes&size=42");
    let form = Some("application/x-www-form-urlencoded");
    let status = service
        .call(request("/search", form, buffered))
        .await
        .unwrap()
        .status();
    assert_eq!(
        status,
        StatusCode::OK,
        "a body already in memory is read in `call`"
    );
    let blocked = service
        .call(request("/?id=1'%20or%20'1'='1", None, Body::empty()))
        .await
        .unwrap();
    assert_eq!(blocked.status(), StatusCode::FORBIDDEN);
    assert_eq!(inner.clones(), before + 1, "a match goes the slow way");

    let streamed = Body::from_stream(stream::iter([Ok::<_, std::io::Error>(Bytes::from(
        "q=shoes",
    ))]));
    let status = service
        .call(request("/search", form, streamed))
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        inner.clones(),
        before + 2,
        "a streamed body is read in the future"
    );
}
