use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;

use super::context::{MAX_TRACESTATE_LEN, MAX_TRACESTATE_MEMBERS};
use super::*;
use crate::ManualClock;

const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[test]
fn traceparent_follows_the_spec() {
    let parent = TraceParent::parse(VALID).unwrap();
    assert_eq!(parent.to_string(), VALID);
    assert_eq!(&parent.encode()[..], VALID.as_bytes());
    for bad in [
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0", // short
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-", // v00 with more
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // version ff
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01", // zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", // zero parent id
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", // uppercase
        "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // separator
        "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // not hex
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x", // v01, no dash at 55
    ] {
        assert_eq!(TraceParent::parse(bad), None, "{bad}");
    }
    // A future version may append fields after a dash.
    let future = TraceParent::parse(
        "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds",
    )
    .unwrap();
    assert_eq!(
        future.to_string(),
        VALID,
        "re-emitted as the version this code knows"
    );
    let mut headers = HeaderMap::new();
    headers.append("traceparent", HeaderValue::from_static(VALID));
    assert!(TraceParent::from_headers(&headers).is_some());
    headers.append("traceparent", HeaderValue::from_static(VALID));
    assert!(
        TraceParent::from_headers(&headers).is_none(),
        "two traceparent fields"
    );
}

#[test]
fn tracestate_follows_the_spec() {
    let state = TraceState::parse([
        "rojo=00f067aa0ba902b7,, congo=t61rcWkgMzE",
        "tenant@vendor=x",
    ])
    .unwrap();
    assert_eq!(state.iter().count(), 3);
    assert_eq!(state.get("tenant@vendor"), Some("x"));
    for bad in [
        "Rojo=1",
        "rojo=1,rojo=2",
        "rojo",
        "rojo=",
        "rojo=a\tb",
        "rojo=a=b",
        "@v=1",
        "t@V=1",
        "1abc=2",
    ] {
        assert_eq!(TraceState::parse([bad]), None, "{bad}");
    }
    let many: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
    assert_eq!(
        TraceState::parse([many.join(",").as_str()]),
        None,
        "33 members"
    );
    let mut state = TraceState::parse(["a=1,b=2"]).unwrap();
    assert!(state.insert("b", "3"));
    assert_eq!(
        state.to_header_value().unwrap(),
        "b=3,a=1",
        "an update moves to the front"
    );
    assert!(!state.insert("B", "x"));
    // Propagation is cut to 512 bytes, large members first.
    let mut big = TraceState::default();
    for i in 0..10 {
        big.insert(&format!("k{i}"), &"v".repeat(60));
    }
    big.insert("huge", &"h".repeat(200));
    let value = big.to_header_value().unwrap();
    assert!(value.len() <= MAX_TRACESTATE_LEN);
    assert!(!value.to_str().unwrap().contains("huge="));
}

#[test]
fn contexts_propagate_and_sample() {
    let ids = SplitMix::new(7);
    let mut incoming = HeaderMap::new();
    incoming.insert("traceparent", HeaderValue::from_static(VALID));
    incoming.insert(
        "tracestate",
        HeaderValue::from_static("rojo=00f067aa0ba902b7"),
    );
    let sampler = Sampler::ParentBased(Box::new(Sampler::AlwaysOff));
    let ctx = TraceContext::from_request(&incoming, &ids, &sampler);
    assert_eq!(ctx.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(ctx.parent_id.unwrap().to_string(), "00f067aa0ba902b7");
    assert!(ctx.flags.sampled(), "the parent's decision");
    let child = ctx.child(&ids);
    let mut outgoing = HeaderMap::new();
    child.inject(&mut outgoing);
    let sent = TraceParent::from_headers(&outgoing).unwrap();
    assert_eq!(
        (sent.trace_id, sent.parent_id),
        (ctx.trace_id, child.span_id)
    );
    assert_eq!(outgoing["tracestate"], "rojo=00f067aa0ba902b7");

    // No (valid) caller: a new root, decided by the root sampler.
    incoming.insert("traceparent", HeaderValue::from_static("garbage"));
    let root = TraceContext::from_request(&incoming, &ids, &sampler);
    assert!(root.parent_id.is_none() && !root.flags.sampled());
    assert_ne!(root.trace_id, ctx.trace_id);

    let ratio = Sampler::Ratio(0.25);
    let sampled = (0..10_000)
        .filter(|_| ratio.sample(ids.trace_id(), None))
        .count();
    assert!(
        (2_000..3_000).contains(&sampled),
        "{sampled} of 10000 at 25 %"
    );
    assert!(!Sampler::Ratio(f64::NAN).sample(ids.trace_id(), None));
    assert!(Sampler::Ratio(1.0).sample(ids.trace_id(), None));
}

#[test]
fn spans_are_timed_and_bounded() {
    let clock = ManualClock::new();
    let ids = SplitMix::new(1);
    let ctx = TraceContext::from_request(&HeaderMap::new(), &ids, &Sampler::AlwaysOn);
    let mut span = Span::start("GET /", SpanKind::Server, ctx, &clock);
    span.set("http.request.method", "GET");
    span.set("http.response.status_code", 200u16);
    span.set("http.response.status_code", 404u16);
    span.set("big", "x".repeat(10_000));
    for i in 0..200 {
        span.set(format!("k{i}"), true);
    }
    span.event("cache.miss", &clock);
    clock.advance(Duration::from_millis(25));
    span.end(&clock);
    clock.advance(Duration::from_millis(25));
    span.end(&clock);
    assert_eq!(span.duration, Duration::from_millis(25));
    assert_eq!(span.attributes.len(), MAX_ATTRIBUTES);
    assert_eq!(span.attributes[1].1, Value::I64(404));
    assert!(matches!(&span.attributes[2].1, Value::Str(s) if s.len() == MAX_VALUE_LEN));
    assert_eq!(span.dropped, 200 + 3 - MAX_ATTRIBUTES as u32);
}

#[test]
fn event_names_and_error_texts_are_bounded_too() {
    let clock = ManualClock::new();
    let context =
        TraceContext::from_request(&HeaderMap::new(), &SplitMix::new(1), &Sampler::AlwaysOn);
    let mut span = Span::start("work", SpanKind::Internal, context, &clock);
    span.event("é".repeat(5_000), &clock);
    span.set_status(Status::Error("é".repeat(5_000).into()));
    assert!(
        span.events[0].name.len() <= MAX_VALUE_LEN && span.events[0].name.len() > MAX_VALUE_LEN - 2
    );
    assert!(matches!(&span.status, Status::Error(text) if text.len() <= MAX_VALUE_LEN));
}

proptest! {
    #[test]
    fn any_traceparent_bytes_parse_or_refuse_and_valid_ones_round_trip(s in "[ -~]{0,80}", trace in any::<[u8; 16]>(), span in any::<[u8; 8]>(), flags in any::<u8>()) {
        if let Some(parent) = TraceParent::parse(&s) {
            prop_assert!(TraceParent::parse(&parent.to_string()).is_some());
        }
        if let (Some(t), Some(p)) = (TraceId::from_bytes(trace), SpanId::from_bytes(span)) {
            let parent = TraceParent::new(t, p, TraceFlags(flags));
            prop_assert_eq!(TraceParent::parse(&parent.to_string()), Some(parent));
        }
    }

    #[test]
    fn any_tracestate_bytes_parse_or_refuse(s in "[ -~]{0,600}") {
        if let Some(state) = TraceState::parse([s.as_str()]) {
            prop_assert!(state.iter().count() <= MAX_TRACESTATE_MEMBERS);
            if let Some(value) = state.to_header_value() {
                prop_assert!(value.len() <= MAX_TRACESTATE_LEN);
                prop_assert!(TraceState::parse([value.to_str().unwrap()]).is_some());
            }
        }
    }
}
