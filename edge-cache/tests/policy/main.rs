//! RFC 9111 / 5861 / 9213 scenarios for the shared-cache policy, one directive at a time, plus property
//! tests: never fresh past the lifetime, never stored with `no-store`, no panic on any header bytes.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, SystemTime};

use edge_cache::policy::{self, CachePolicy, Lookup, NotStored};
use edge_core::cache::CachedResponse;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use proptest::prelude::*;

fn t(s: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + s)
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

/// Stores a 200 with `response` headers received at `t(0)` for a request with `request` headers.
fn stored(
    request: &[(&str, &str)],
    response: &[(&str, &str)],
) -> Result<CachedResponse, NotStored> {
    stored_status(StatusCode::OK, request, response)
}

fn stored_status(
    status: StatusCode,
    request: &[(&str, &str)],
    response: &[(&str, &str)],
) -> Result<CachedResponse, NotStored> {
    let mut response = headers(response);
    CachePolicy::new().store(
        &Method::GET,
        &headers(request),
        status,
        &mut response,
        t(0),
        t(0),
    )?;
    Ok(CachedResponse::new(status, response, "body".into(), t(0)))
}

fn lookup(entry: &CachedResponse, request: &[(&str, &str)], at: u64) -> Lookup {
    CachePolicy::new().lookup(&Method::GET, &headers(request), entry, t(at))
}

fn is_fresh(l: &Lookup) -> bool {
    matches!(l, Lookup::Fresh { .. })
}

fn is_revalidate(l: &Lookup) -> bool {
    matches!(l, Lookup::Revalidate(_))
}

#[test]
fn max_age_and_s_maxage() {
    let e = stored(&[], &[("cache-control", "max-age=60")]).unwrap();
    assert_eq!(lookup(&e, &[], 59), Lookup::Fresh { age: 59 });
    assert!(is_revalidate(&lookup(&e, &[], 60)));
    let e = stored(&[], &[("cache-control", "max-age=10, s-maxage=100")]).unwrap();
    assert!(
        is_fresh(&lookup(&e, &[], 99)),
        "s-maxage wins for a shared cache"
    );
}

#[test]
fn expires_date_and_age() {
    let date = httpdate::fmt_http_date(t(0));
    let expires = httpdate::fmt_http_date(t(30));
    let e = stored(&[], &[("date", &date), ("expires", &expires)]).unwrap();
    assert!(is_fresh(&lookup(&e, &[], 29)) && !is_fresh(&lookup(&e, &[], 30)));
    // An upstream Age counts: 50 of 60 seconds are already used.
    let e = stored(&[], &[("cache-control", "max-age=60"), ("age", "50")]).unwrap();
    assert_eq!(lookup(&e, &[], 5), Lookup::Fresh { age: 55 });
    assert!(!is_fresh(&lookup(&e, &[], 10)));
    // Garbage Expires means "already expired"; a garbage Date is ignored; a garbage Age makes the
    // response stale (see an_age_that_is_not_one_integer_makes_the_response_stale).
    let e = stored(&[], &[("expires", "0"), ("etag", "\"v1\"")]).unwrap();
    assert!(is_revalidate(&lookup(&e, &[], 0)));
    let e = stored(
        &[],
        &[("cache-control", "max-age=60"), ("date", "yesterday")],
    )
    .unwrap();
    assert_eq!(lookup(&e, &[], 1), Lookup::Fresh { age: 1 });
    // A Date in the past makes the response older on arrival.
    let e = stored(
        &[],
        &[
            ("cache-control", "max-age=60"),
            (
                "date",
                &httpdate::fmt_http_date(t(0) - Duration::from_secs(40)),
            ),
        ],
    )
    .unwrap();
    assert_eq!(lookup(&e, &[], 0), Lookup::Fresh { age: 40 });
}

#[test]
fn heuristic_freshness() {
    let modified = httpdate::fmt_http_date(t(0) - Duration::from_secs(1000));
    let e = stored(&[], &[("last-modified", &modified)]).unwrap();
    assert!(
        is_fresh(&lookup(&e, &[], 99)) && !is_fresh(&lookup(&e, &[], 100)),
        "10 % of 1000 s"
    );
    let ancient = httpdate::fmt_http_date(t(0) - Duration::from_secs(100 * 86_400));
    let e = stored(&[], &[("last-modified", &ancient)]).unwrap();
    assert!(!is_fresh(&lookup(&e, &[], 86_400)), "capped at a day");
    assert_eq!(
        stored_status(StatusCode::CREATED, &[], &[("last-modified", &modified)]).unwrap_err(),
        NotStored::Status,
        "201 is not heuristically cacheable"
    );
    assert!(
        stored_status(
            StatusCode::NOT_FOUND,
            &[],
            &[("cache-control", "max-age=5")]
        )
        .is_ok()
    );
    assert_eq!(
        stored(&[], &[("content-type", "text/plain")]).unwrap_err(),
        NotStored::NotReusable
    );
}

#[test]
fn no_store_private_set_cookie_and_authorization() {
    assert_eq!(
        stored(&[], &[("cache-control", "no-store, max-age=60")]).unwrap_err(),
        NotStored::NoStore
    );
    assert_eq!(
        stored(
            &[("cache-control", "no-store")],
            &[("cache-control", "max-age=60")]
        )
        .unwrap_err(),
        NotStored::NoStore
    );
    assert_eq!(
        stored(&[], &[("cache-control", "private, max-age=60")]).unwrap_err(),
        NotStored::Private
    );
    assert_eq!(
        stored(
            &[],
            &[("cache-control", "max-age=60"), ("set-cookie", "s=1")]
        )
        .unwrap_err(),
        NotStored::SetCookie
    );
    let auth = [("authorization", "Bearer x")];
    assert_eq!(
        stored(&auth, &[("cache-control", "max-age=60")]).unwrap_err(),
        NotStored::Authorization
    );
    for ok in [
        "public, max-age=60",
        "s-maxage=60",
        "must-revalidate, max-age=60",
    ] {
        assert!(stored(&auth, &[("cache-control", ok)]).is_ok(), "{ok}");
    }
    // RFC 9111 §3.5 names exactly those three: `proxy-revalidate` only forbids serving stale, it does
    // not make one user's answer another's.
    for not_shareable in [
        "proxy-revalidate, max-age=60",
        "max-age=60, proxy-revalidate, stale-while-revalidate=60",
        "no-cache, max-age=60",
        "max-age=60, immutable",
    ] {
        assert_eq!(
            stored(&auth, &[("cache-control", not_shareable)]).unwrap_err(),
            NotStored::Authorization,
            "{not_shareable}"
        );
    }
    assert_eq!(
        stored(
            &auth,
            &[("cdn-cache-control", "max-age=60, proxy-revalidate")]
        )
        .unwrap_err(),
        NotStored::Authorization,
        "a targeted field is held to the same rule"
    );
    let mut h = headers(&[("cache-control", "max-age=60")]);
    assert_eq!(
        CachePolicy::new().store(
            &Method::POST,
            &HeaderMap::new(),
            StatusCode::OK,
            &mut h,
            t(0),
            t(0)
        ),
        Err(NotStored::Method)
    );
    assert!(
        stored_status(
            StatusCode::PARTIAL_CONTENT,
            &[],
            &[("cache-control", "max-age=60")]
        )
        .is_err()
    );
}

#[test]
fn no_cache_must_revalidate_and_validators() {
    let e = stored(&[], &[("cache-control", "no-cache"), ("etag", "\"v1\"")]).unwrap();
    match lookup(&e, &[], 0) {
        Lookup::Revalidate(r) => assert_eq!(
            r.conditional.unwrap(),
            (
                http::header::IF_NONE_MATCH,
                HeaderValue::from_static("\"v1\"")
            )
        ),
        other => panic!("{other:?}"),
    }
    let lm = httpdate::fmt_http_date(t(0));
    let e = stored(
        &[],
        &[("cache-control", "max-age=1"), ("last-modified", &lm)],
    )
    .unwrap();
    match lookup(&e, &[], 5) {
        Lookup::Revalidate(r) => {
            assert_eq!(r.conditional.unwrap().1, lm.as_str())
        }
        other => panic!("{other:?}"),
    }
    // must-revalidate: stale is never served, not even with max-stale or stale-if-error.
    let e = stored(
        &[],
        &[(
            "cache-control",
            "max-age=10, must-revalidate, stale-if-error=600",
        )],
    )
    .unwrap();
    match lookup(&e, &[("cache-control", "max-stale")], 20) {
        Lookup::Revalidate(r) => assert_eq!(r.stale_if_error_until, None),
        other => panic!("{other:?}"),
    }
    let e = stored(&[], &[("cache-control", "max-age=10, proxy-revalidate")]).unwrap();
    assert!(is_revalidate(&lookup(
        &e,
        &[("cache-control", "max-stale")],
        20
    )));
}

#[test]
fn request_directives() {
    let e = stored(&[], &[("cache-control", "max-age=100")]).unwrap();
    assert!(is_revalidate(&lookup(
        &e,
        &[("cache-control", "no-cache")],
        1
    )));
    assert!(is_revalidate(&lookup(&e, &[("pragma", "no-cache")], 1)));
    assert!(
        is_fresh(&lookup(
            &e,
            &[("pragma", "no-cache"), ("cache-control", "max-stale=1")],
            1
        )),
        "Pragma only without Cache-Control"
    );
    assert!(is_revalidate(&lookup(
        &e,
        &[("cache-control", "max-age=10")],
        11
    )));
    assert!(is_fresh(&lookup(
        &e,
        &[("cache-control", "max-age=10")],
        10
    )));
    assert!(is_revalidate(&lookup(
        &e,
        &[("cache-control", "min-fresh=50")],
        60
    )));
    assert!(is_fresh(&lookup(
        &e,
        &[("cache-control", "min-fresh=50")],
        40
    )));
    assert!(is_fresh(&lookup(
        &e,
        &[("cache-control", "max-stale=30")],
        120
    )));
    assert!(is_revalidate(&lookup(
        &e,
        &[("cache-control", "max-stale=30")],
        140
    )));
    assert!(is_fresh(&lookup(
        &e,
        &[("cache-control", "max-stale")],
        100_000
    )));
    assert_eq!(
        lookup(&e, &[("cache-control", "only-if-cached")], 500),
        Lookup::GatewayTimeout
    );
    assert!(is_fresh(&lookup(
        &e,
        &[("cache-control", "only-if-cached")],
        5
    )));
    let immutable = stored(&[], &[("cache-control", "max-age=100, immutable")]).unwrap();
    assert!(
        is_fresh(&lookup(&immutable, &[("cache-control", "no-cache")], 5)),
        "a reload does not revalidate immutable"
    );
}

#[test]
fn stale_while_revalidate_and_stale_if_error() {
    let e = stored(
        &[],
        &[(
            "cache-control",
            "max-age=60, stale-while-revalidate=30, stale-if-error=300",
        )],
    )
    .unwrap();
    assert_eq!(
        lookup(&e, &[], 70),
        Lookup::StaleWhileRevalidate { age: 70 }
    );
    match lookup(&e, &[], 100) {
        Lookup::Revalidate(r) => assert_eq!(r.stale_if_error_until, Some(t(360))),
        other => panic!("{other:?}"),
    }
    let stored_policy = stored(
        &[],
        &[("cache-control", "max-age=60, stale-while-revalidate=30")],
    )
    .unwrap();
    let mut h = headers(&[(
        "cache-control",
        "max-age=60, stale-while-revalidate=30, stale-if-error=300",
    )]);
    let s = CachePolicy::new()
        .store(
            &Method::GET,
            &HeaderMap::new(),
            StatusCode::OK,
            &mut h,
            t(0),
            t(0),
        )
        .unwrap();
    assert_eq!(
        s.keep_for,
        Duration::from_secs(360 + 600),
        "kept for the longer stale window, then keep_stale"
    );
    assert!(
        is_revalidate(&lookup(
            &stored_policy,
            &[("cache-control", "max-age=5")],
            70
        )),
        "a request max-age turns swr off"
    );
}

#[test]
fn must_understand_stores_only_understood_statuses() {
    let directives = [("cache-control", "must-understand, no-store, max-age=60")];
    let e = stored(&[], &directives).unwrap();
    assert!(
        is_fresh(&lookup(&e, &[], 10)),
        "understood: no-store is overridden"
    );
    let unknown = stored_status(StatusCode::from_u16(599).unwrap(), &[], &directives);
    assert_eq!(unknown.unwrap_err(), NotStored::Status);
    let without = stored(&[], &[("cache-control", "no-store, max-age=60")]);
    assert_eq!(without.unwrap_err(), NotStored::NoStore);
}

#[test]
fn an_invalid_targeted_field_is_ignored() {
    // RFC 9213 §2.2: a targeted field that fails to parse is ignored; Cache-Control decides.
    for invalid in ["max-age=soon", "max-age=-1", "max-age=1.5"] {
        let e = stored(
            &[],
            &[
                ("cache-control", "max-age=600"),
                ("cdn-cache-control", invalid),
            ],
        )
        .unwrap();
        assert!(is_fresh(&lookup(&e, &[], 500)), "{invalid}");
        let e = stored(
            &[],
            &[
                ("cache-control", "no-store"),
                ("cdn-cache-control", invalid),
            ],
        );
        assert_eq!(e.unwrap_err(), NotStored::NoStore, "{invalid}");
    }
    // The next valid targeted field is taken when the first is invalid.
    let e = stored(
        &[],
        &[
            ("cache-control", "max-age=5"),
            ("cdn-cache-control", "max-age=soon"),
            ("surrogate-control", "max-age=300"),
        ],
    )
    .unwrap();
    assert!(is_fresh(&lookup(&e, &[], 200)));
}

#[test]
fn a_valid_targeted_field_without_max_age_silences_expires() {
    // RFC 9213 §2.2: once a targeted field is used, Cache-Control *and Expires* are ignored.
    let e = stored(
        &[],
        &[
            ("date", "Thu, 15 Jan 2027 08:00:00 GMT"),
            ("expires", "Thu, 15 Jan 2027 09:00:00 GMT"),
            ("last-modified", "Thu, 15 Jan 2027 08:00:00 GMT"),
            ("cdn-cache-control", "stale-while-revalidate=30"),
        ],
    )
    .unwrap();
    assert!(
        !is_fresh(&lookup(&e, &[], 60)),
        "an hour of Expires is not read past a valid CDN-Cache-Control"
    );
    let e = stored(
        &[],
        &[
            ("date", "Thu, 15 Jan 2027 08:00:00 GMT"),
            ("expires", "Thu, 15 Jan 2027 09:00:00 GMT"),
        ],
    )
    .unwrap();
    assert!(
        is_fresh(&lookup(&e, &[], 60)),
        "without a targeted field Expires counts"
    );
}

#[test]
fn an_age_that_is_not_one_integer_makes_the_response_stale() {
    // `Age: 7200, 0` once read as 0 served a two-hour-old response as fresh.
    for age in [
        "7200, 0", "0, 7200", "0, 0", "10,7200", "soon", "-10", "7.5", "10;a=b", "",
    ] {
        let e = stored(&[], &[("cache-control", "max-age=3600"), ("age", age)]).unwrap();
        assert!(!is_fresh(&lookup(&e, &[], 0)), "Age: {age:?}");
    }
    let e = stored(
        &[],
        &[
            ("cache-control", "max-age=3600"),
            ("age", "0"),
            ("age", "0"),
        ],
    )
    .unwrap();
    assert!(!is_fresh(&lookup(&e, &[], 0)), "two Age lines");
    let e = stored(&[], &[("cache-control", "max-age=3600"), ("age", " 10 ")]).unwrap();
    assert!(is_fresh(&lookup(&e, &[], 0)), "one integer is read");
    let e = stored(
        &[],
        &[
            ("cache-control", "max-age=3600"),
            ("age", "99999999999999999999999"),
        ],
    )
    .unwrap();
    assert!(
        !is_fresh(&lookup(&e, &[], 0)),
        "an overflowing Age is very old"
    );
}

#[test]
fn targeted_fields_take_precedence_and_are_stripped() {
    let e = stored(
        &[],
        &[
            ("cache-control", "no-store"),
            ("cdn-cache-control", "max-age=600"),
        ],
    )
    .unwrap();
    assert!(
        is_fresh(&lookup(&e, &[], 500)),
        "CDN-Cache-Control replaces Cache-Control at the edge"
    );
    let e = stored(
        &[],
        &[
            ("cache-control", "max-age=5"),
            ("surrogate-control", "max-age=300"),
            ("cache-tag", "product-1, catalog"),
        ],
    )
    .unwrap();
    assert!(is_fresh(&lookup(&e, &[], 200)));
    assert_eq!(policy::tags(&e.headers), ["product-1", "catalog"]);
    let out = policy::serve_headers(&e.headers, 200);
    assert!(out.get("surrogate-control").is_none() && out.get("cache-tag").is_none());
    assert_eq!(
        out.get("cache-control").unwrap(),
        "max-age=5",
        "the browser still gets its own"
    );
    assert_eq!(out.get("age").unwrap(), "200");
    let e = stored(
        &[],
        &[
            ("cdn-cache-control", "private"),
            ("cache-control", "max-age=60"),
        ],
    );
    assert_eq!(e.unwrap_err(), NotStored::Private);
}

#[test]
fn vary() {
    let e = stored(
        &[("accept-language", "de")],
        &[("cache-control", "max-age=60"), ("vary", "Accept-Language")],
    )
    .unwrap();
    assert!(is_fresh(&lookup(&e, &[("accept-language", "de")], 1)));
    assert_eq!(
        lookup(&e, &[("accept-language", "fr")], 1),
        Lookup::Unusable
    );
    assert_eq!(lookup(&e, &[], 1), Lookup::Unusable);
    assert!(
        policy::serve_headers(&e.headers, 1)
            .keys()
            .all(|k| !k.as_str().starts_with("x-edge-vary"))
    );
    assert_eq!(
        stored(&[], &[("cache-control", "max-age=60"), ("vary", "*")]).unwrap_err(),
        NotStored::Vary
    );
    let many = "a,b,c,d,e,f,g,h,i";
    assert_eq!(
        stored(&[], &[("cache-control", "max-age=60"), ("vary", many)]).unwrap_err(),
        NotStored::Vary
    );
}

#[test]
fn freshening_with_a_304() {
    let mut e = stored(
        &[],
        &[
            ("cache-control", "max-age=10"),
            ("etag", "\"v1\""),
            ("x-kept", "yes"),
        ],
    )
    .unwrap();
    assert!(is_revalidate(&lookup(&e, &[], 20)));
    let not_modified = headers(&[("cache-control", "max-age=100"), ("etag", "\"v1\"")]);
    let s = CachePolicy::new().freshen(&mut e, &not_modified, t(20), t(20));
    assert_eq!(s.lifetime, Duration::from_secs(100));
    assert!(is_fresh(&lookup(&e, &[], 119)) && !is_fresh(&lookup(&e, &[], 120)));
    assert_eq!(e.headers.get("x-kept").unwrap(), "yes");
}

#[test]
fn unsafe_methods_invalidate() {
    assert!(policy::invalidates(&Method::POST, StatusCode::OK));
    assert!(policy::invalidates(&Method::DELETE, StatusCode::NO_CONTENT));
    assert!(!policy::invalidates(
        &Method::POST,
        StatusCode::INTERNAL_SERVER_ERROR
    ));
    assert!(!policy::invalidates(&Method::GET, StatusCode::OK));
}

#[test]
fn malformed_and_duplicated_cache_control() {
    let e = stored(
        &[],
        &[("cache-control", "max-age=banana"), ("etag", "\"x\"")],
    )
    .unwrap();
    assert!(
        is_revalidate(&lookup(&e, &[], 0)),
        "malformed max-age: stale"
    );
    let e = stored(
        &[],
        &[
            ("cache-control", "max-age=5"),
            ("cache-control", "max-age=500"),
        ],
    )
    .unwrap();
    assert!(!is_fresh(&lookup(&e, &[], 6)), "the first value counts");
    let e = stored(&[], &[("cache-control", "max-age=99999999999999999999999")]).unwrap();
    assert!(is_fresh(&lookup(&e, &[], 86_400 * 365 * 50)));
}

proptest! {
    /// Without max-stale, Fresh means age < lifetime; with no-store nothing is stored.
    #[test]
    fn never_fresh_past_the_lifetime(max_age in 0u32..100_000, upstream_age in 0u64..200_000, at in 0u64..300_000, swr in 0u32..1_000) {
        let cc = format!("max-age={max_age}, stale-while-revalidate={swr}");
        let age = upstream_age.to_string();
        if let Ok(e) = stored(&[], &[("cache-control", &cc), ("age", &age), ("etag", "\"e\"")]) {
            let policy = CachePolicy::new();
            let parsed = policy.parse(&e);
            prop_assert_eq!(
                policy.lookup_parsed(&Method::GET, &HeaderMap::new(), &e, &parsed, t(at)),
                lookup(&e, &[], at),
                "a kept parse answers as a fresh one"
            );
            match lookup(&e, &[], at) {
                Lookup::Fresh { age } => prop_assert!(age < u64::from(max_age)),
                Lookup::StaleWhileRevalidate { age } => prop_assert!(age < u64::from(max_age) + u64::from(swr)),
                _ => {}
            }
        }
    }

    #[test]
    fn no_store_is_never_stored(before in "[a-z=0-9, -]{0,30}", after in "[a-z=0-9, -]{0,30}") {
        let cc = format!("{before}, no-store, {after}");
        prop_assert_eq!(stored(&[], &[("cache-control", &cc), ("etag", "\"e\"")]).unwrap_err(), NotStored::NoStore);
    }

    #[test]
    fn any_header_bytes_are_handled(cc in proptest::collection::vec(any::<u8>(), 0..200), age in proptest::collection::vec(any::<u8>(), 0..20), vary in "[ -~]{0,40}") {
        let mut response = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_bytes(&cc) { response.insert("cache-control", v); }
        if let Ok(v) = HeaderValue::from_bytes(&age) { response.insert("age", v.clone()); response.insert("expires", v.clone()); response.insert("date", v); }
        if let Ok(v) = HeaderValue::from_str(&vary) { response.insert("vary", v); }
        response.insert("etag", HeaderValue::from_static("\"e\""));
        let policy = CachePolicy::new();
        let before = response.clone();
        match policy.store(&Method::GET, &HeaderMap::new(), StatusCode::OK, &mut response, t(0), t(0)) {
            Ok(_) => {
                let e = CachedResponse::new(StatusCode::OK, response, "b".into(), t(0));
                let _ = policy.lookup(&Method::GET, &HeaderMap::new(), &e, t(10));
            }
            Err(_) => prop_assert_eq!(response, before, "a refusal leaves the headers alone"),
        }
    }
}
