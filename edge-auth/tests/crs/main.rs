//! The CRS engine on the OWASP Core Rule Set 4 as published (`../shared/crs`, or `EDGE_CRS_DIR`).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::PathBuf;
use std::sync::OnceLock;

use edge_auth::waf::crs::{Evaluation, RuleSet};

/// Where CRS is: `EDGE_CRS_DIR`, else `shared/crs` beside the project. Missing is a failure, not a skip.
fn crs_dir() -> PathBuf {
    std::env::var_os("EDGE_CRS_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/crs"),
        PathBuf::from,
    )
}

fn crs() -> &'static RuleSet {
    static CRS: OnceLock<RuleSet> = OnceLock::new();
    CRS.get_or_init(|| {
        RuleSet::builder()
            .crs_dir(crs_dir())
            .unwrap()
            .paranoia(1)
            .build()
            .unwrap_or_else(|e| panic!("CRS does not load: {e}"))
    })
}

fn get(uri: &str) -> Evaluation {
    let (parts, ()) = http::Request::get(uri)
        .header("host", "example.com")
        .header("user-agent", "Mozilla/5.0 (X11; Linux x86_64)")
        .header("accept", "text/html")
        .body(())
        .unwrap()
        .into_parts();
    crs().evaluate(&parts, b"", None)
}

fn ids(e: &Evaluation) -> Vec<u32> {
    e.matches.iter().map(|m| m.id).collect()
}

#[test]
fn the_whole_rule_set_loads() {
    let (request, response) = crs().rule_counts();
    assert!(request > 300, "{request} request rules");
    assert!(response > 0);
}

#[test]
fn attacks_are_blocked_and_benign_requests_pass() {
    let benign = get("/search?q=hello+world&page=2");
    assert!(!benign.is_blocked(), "{benign:?}");
    assert_eq!(benign.anomaly_score, 0, "{:?}", ids(&benign));
    let sqli = get("/search?q=1%27%20or%20%271%27%3D%271");
    assert!(sqli.is_blocked(), "{:?}", ids(&sqli));
    assert!(ids(&sqli).contains(&942100), "{:?}", ids(&sqli));
    let xss = get("/search?q=%3Cscript%3Ealert(1)%3C/script%3E");
    assert!(xss.is_blocked(), "{:?}", ids(&xss));
    let lfi = get("/download?file=../../../../etc/passwd");
    assert!(lfi.is_blocked(), "{:?}", ids(&lfi));
}

fn post(content_type: &str, body: &[u8]) -> Evaluation {
    let (parts, ()) = http::Request::post("/submit")
        .header("host", "example.com")
        .header("user-agent", "Mozilla/5.0 (X11; Linux x86_64)")
        .header("accept", "text/html")
        .header("content-type", content_type)
        .header("content-length", body.len().to_string())
        .body(())
        .unwrap()
        .into_parts();
    crs().evaluate(&parts, body, None)
}

#[test]
fn bodies_are_read_by_their_processor() {
    // The same injection in a form, a JSON member and a multipart field.
    let payload = "1' union select password from users-- -";
    let form = post(
        "application/x-www-form-urlencoded",
        format!("q={}", payload.replace(' ', "+")).as_bytes(),
    );
    assert!(form.is_blocked(), "{:?}", ids(&form));
    let json = post(
        "application/json",
        format!("{{\"a\":{{\"q\":[\"{payload}\"]}}}}").as_bytes(),
    );
    assert!(json.is_blocked(), "{:?}", ids(&json));
    let multipart = post(
        "multipart/form-data; boundary=xyz",
        format!(
            "--xyz\r\nContent-Disposition: form-data; name=\"q\"\r\n\r\n{payload}\r\n--xyz--\r\n"
        )
        .as_bytes(),
    );
    assert!(multipart.is_blocked(), "{:?}", ids(&multipart));
    let prose = post(
        "application/json",
        br#"{"comment":"I'd like to select a union rep from the list, please."}"#,
    );
    assert!(!prose.is_blocked(), "{:?}", ids(&prose));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Any bytes in a query, a cookie or a body of any processor give a verdict, never a panic.
    #[test]
    fn arbitrary_input_gets_a_verdict(
        value in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
        kind in 0usize..5,
    ) {
        let encoded: String = value.iter().map(|b| format!("%{b:02X}")).collect();
        let _ = get(&format!("/p?q={encoded}"));
        let content_type = ["application/x-www-form-urlencoded", "application/json", "text/xml",
            "multipart/form-data; boundary=b", "text/plain"][kind];
        let _ = post(content_type, &value);
    }
}

/// The CRS profile as a tower layer: verdicts with the evaluation, oversize bodies refused.
#[cfg(feature = "tower")]
mod layer {
    use std::convert::Infallible;

    use edge_auth::waf::{Verdict, WafLayer};
    use edge_core::Body;
    use http::{Request, Response, StatusCode};
    use tower::{Layer, ServiceExt};

    use super::crs;

    /// Says whether the request arrived with a clean verdict, and echoes the body's length.
    async fn app(request: Request<Body>) -> Result<Response<Body>, Infallible> {
        let clean = request.extensions().get::<Verdict>().map(Verdict::is_clean);
        let body = request.into_body().collect(1 << 20).await.unwrap();
        Ok(Response::new(Body::from(format!(
            "{clean:?} {}",
            body.len()
        ))))
    }

    fn rule_set() -> edge_auth::waf::crs::RuleSet {
        edge_auth::waf::crs::RuleSet::builder()
            .crs_dir(super::crs_dir())
            .unwrap()
            .build()
            .unwrap()
    }

    fn request(uri: &str, body: Body) -> Request<Body> {
        Request::post(uri)
            .header("host", "example.com")
            .header("user-agent", "Mozilla/5.0")
            .header("accept", "*/*")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .unwrap()
    }

    #[tokio::test]
    async fn attacks_get_403_with_the_evaluation_and_the_rest_pass_with_their_body() {
        let _ = crs();
        let service = WafLayer::crs(rule_set()).layer(tower::service_fn(app));

        let blocked = service
            .clone()
            .oneshot(request("/login", Body::from("user=admin'+or+'1'='1")))
            .await
            .unwrap();
        assert_eq!(blocked.status(), StatusCode::FORBIDDEN);
        let verdict = blocked.extensions().get::<Verdict>().unwrap();
        let evaluation = verdict.crs.as_ref().unwrap();
        assert!(evaluation.anomaly_score >= 5);
        assert!(evaluation.matches.iter().any(|m| m.id == 949_110));
        assert!(
            evaluation
                .matches
                .iter()
                .any(|m| m.id == 942_100 && !m.message.is_empty())
        );

        // A streamed body is read ahead and handed on whole.
        let chunks = futures::stream::iter(
            ["comment=hello", "+there"].map(|c| Ok::<_, std::io::Error>(bytes::Bytes::from(c))),
        );
        let mut streamed = request("/comment", Body::from_stream(chunks));
        // Without a length or a transfer coding, CRS notes the POST (rule 920180).
        streamed.headers_mut().insert(
            "transfer-encoding",
            http::HeaderValue::from_static("chunked"),
        );
        let passed = service.clone().oneshot(streamed).await.unwrap();
        assert_eq!(passed.status(), StatusCode::OK);
        let text = passed.into_body().collect(1024).await.unwrap();
        assert_eq!(&text[..], b"Some(true) 19");

        // Past 128 KiB the body is refused, not inspected in part.
        let big = format!("a={}", "x".repeat(200 * 1024));
        let refused = service
            .oneshot(request(
                "/upload",
                Body::from_stream(futures::stream::iter([Ok::<_, std::io::Error>(
                    bytes::Bytes::from(big),
                )])),
            ))
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        assert!(refused.extensions().get::<Verdict>().unwrap().oversize);
    }
}

/// With CRS, the offenders' limiter is charged by attack signatures, not by mere oddities: CRS in
/// detection (a threshold nothing reaches) with a penalty of one offence an hour refuses a client's
/// second attack, and never a request that only has a numeric `Host`.
#[cfg(feature = "tower")]
#[tokio::test]
async fn repeat_offenders_are_refused_and_oddities_do_not_count() {
    use std::time::Duration;

    use edge_auth::ratelimit::{KeyExtractor, KeyedLimiter, Quota};
    use edge_auth::waf::WafLayer;
    use edge_core::{Body, ManualClock};
    use http::{Request, Response, StatusCode};
    use tower::{Layer, ServiceExt};

    let rules = RuleSet::builder()
        .crs_dir(crs_dir())
        .unwrap()
        .tx("inbound_anomaly_score_threshold", "10000")
        .build()
        .unwrap();
    let quota = Quota::new(1, Duration::from_secs(3600)).unwrap();
    let service = WafLayer::crs(rules)
        .penalize(
            KeyedLimiter::<String, _>::with_clock(quota, ManualClock::new()),
            KeyExtractor::client_ip(),
        )
        .layer(tower::service_fn(|_: Request<Body>| async {
            Ok::<_, std::convert::Infallible>(Response::new(Body::empty()))
        }));
    let send = |uri: &str, host: &str| {
        let mut request = Request::get(uri)
            .header("host", host)
            .header("user-agent", "Mozilla/5.0")
            .header("accept", "*/*")
            .body(Body::empty())
            .unwrap();
        request
            .extensions_mut()
            .insert(edge_core::ClientIp([192, 0, 2, 7].into()));
        service.clone().oneshot(request)
    };
    for _ in 0..3 {
        let odd = send("/", "192.0.2.1").await.unwrap();
        assert_eq!(odd.status(), StatusCode::OK);
    }
    let attack = "/?q=1%27%20or%20%271%27%3D%271";
    assert_eq!(
        send(attack, "example.com").await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        send(attack, "example.com").await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        send("/", "192.0.2.1").await.unwrap().status(),
        StatusCode::OK
    );
}

/// A user's own `.conf` after CRS: a run-time target removal for one path, a target removal by tag, a
/// removal by message, an action update; each takes effect, and nowhere else.
#[test]
fn a_users_exclusions_and_overrides_apply() {
    const USER: &str = r#"
SecRule REQUEST_FILENAME "@beginsWith /admin/notes" \
    "id:1000,phase:1,pass,nolog,ctl:ruleRemoveTargetById=942100;ARGS:note"
SecRuleUpdateTargetByTag "attack-sqli" "!ARGS:essay"
SecRuleUpdateActionById 941100 "nolog"
"#;
    // An injection only libinjection (942100) sees.
    let payload = "1%20AND%204821%3D4821";
    let with_user = RuleSet::builder()
        .crs_dir(crs_dir())
        .unwrap()
        .rules("user.conf", USER)
        .build()
        .unwrap();
    let get_with = |rules: &RuleSet, uri: &str| {
        let (parts, ()) = http::Request::get(uri)
            .header("host", "example.com")
            .header("user-agent", "Mozilla/5.0")
            .header("accept", "*/*")
            .body(())
            .unwrap()
            .into_parts();
        rules.evaluate(&parts, b"", None)
    };
    assert!(get(&format!("/admin/notes?note={payload}")).is_blocked());
    assert!(!get_with(&with_user, &format!("/admin/notes?note={payload}")).is_blocked());
    assert!(get_with(&with_user, &format!("/search?note={payload}")).is_blocked());
    assert!(!get_with(&with_user, &format!("/search?essay={payload}")).is_blocked());
    // 941100 still scores, but is no longer logged.
    let xss = get_with(&with_user, "/search?q=%3Cscript%3Ealert(1)%3C/script%3E");
    assert!(xss.is_blocked());
    assert!(!ids(&xss).contains(&941_100), "{:?}", ids(&xss));
    assert!(ids(&get("/search?q=%3Cscript%3Ealert(1)%3C/script%3E")).contains(&941_100));

    let removed = RuleSet::builder()
        .crs_dir(crs_dir())
        .unwrap()
        .rules(
            "user.conf",
            "SecRuleRemoveByMsg \"SQL Injection Attack Detected via libinjection\"\n",
        )
        .build()
        .unwrap();
    assert!(!get_with(&removed, &format!("/search?note={payload}")).is_blocked());

    // Directives this engine does not support are refused with their place, not ignored.
    let error = RuleSet::builder()
        .rules(
            "bad.conf",
            "\n\nSecRuleUpdateActionById 942100 \"phase:1\"\n",
        )
        .build()
        .unwrap_err();
    assert!(error.to_string().starts_with("bad.conf:3:"), "{error}");
    assert!(
        RuleSet::builder()
            .rules("x", "SecNoSuchThing On")
            .build()
            .is_err()
    );
}

/// The prefilter (rules skipped when their regex's or phrase list's literals are in no value) changes
/// no verdict: a literal that appears only once the rule's transformations ran still finds its rule, a
/// negated rule matches where its literal is absent, `@pm` finds its phrases in any case, and a chain
/// that reads `MATCHED_VAR` still sees what its first link matched.
#[test]
fn rules_the_prefilter_skips_are_exactly_those_that_cannot_match() {
    const RULES: &str = r#"
SecRule ARGS "@rx (?i)select\s+\w" "id:1,phase:2,pass,log,t:none,t:urlDecodeUni"
SecRule ARGS:x "!@rx admin" "id:2,phase:2,pass,log"
SecRule ARGS "@pm evil wicked" "id:3,phase:2,pass,log,t:none,t:lowercase"
SecRule ARGS "@rx foo" "id:4,phase:2,pass,log,chain"
    SecRule MATCHED_VAR "@rx foobar" "t:none"
SecRule REQUEST_HEADERS:User-Agent "@rx (?i)curl/" "id:5,phase:1,pass,log"
"#;
    let rules = RuleSet::builder().rules("t.conf", RULES).build().unwrap();
    let ids_for = |uri: &str, agent: &str| {
        let (parts, ()) = http::Request::get(uri)
            .header("user-agent", agent)
            .body(())
            .unwrap()
            .into_parts();
        ids(&rules.evaluate(&parts, b"", None))
    };
    // `%2573elect` is `%73elect` as an argument: `select` only after t:urlDecodeUni.
    assert_eq!(ids_for("/?a=%2573elect%2520x&x=admin", "Mozilla"), [1]);
    assert_eq!(ids_for("/?a=selec&x=admin", "Mozilla"), Vec::<u32>::new());
    assert_eq!(ids_for("/?x=user", "Mozilla"), [2]);
    assert_eq!(ids_for("/?x=admin&b=WiCkEd", "Mozilla"), [3]);
    assert_eq!(ids_for("/?x=admin&c=foobar", "Mozilla"), [4]);
    assert_eq!(ids_for("/?x=admin&c=food", "Mozilla"), Vec::<u32>::new());
    assert_eq!(ids_for("/?x=admin", "CURL/8.1"), [5]);
}
