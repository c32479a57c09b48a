//! OTLP's JSON encoding (the protobuf JSON mapping, with OTLP's exceptions): ids as lowercase hex, enums
//! as integers, 64-bit integers as decimal strings, field names in lowerCamelCase.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use edge_core::trace::{Span, Value};
use serde_json::{Map, Value as Json, json};

use super::proto::{span_kind, status_code, unix_nanos};
use super::{Resource, SCOPE_NAME, SCOPE_VERSION};
use crate::metrics::{FamilySnapshot, Points};

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

fn double(x: f64) -> Json {
    if x.is_finite() {
        json!(x)
    } else if x.is_nan() {
        json!("NaN")
    } else if x > 0.0 {
        json!("Infinity")
    } else {
        json!("-Infinity")
    }
}

fn any_value(value: &Value) -> Json {
    match value {
        Value::Str(s) => json!({ "stringValue": s }),
        Value::Bool(b) => json!({ "boolValue": b }),
        Value::I64(n) => json!({ "intValue": n.to_string() }),
        Value::F64(x) => json!({ "doubleValue": double(*x) }),
        #[allow(unreachable_patterns)]
        other => json!({ "stringValue": format!("{other:?}") }),
    }
}

fn attributes<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a Value)>) -> Json {
    Json::Array(
        pairs
            .into_iter()
            .map(|(key, value)| json!({ "key": key, "value": any_value(value) }))
            .collect(),
    )
}

fn resource(resource: &Resource) -> Json {
    json!({ "attributes": attributes(resource.attributes.iter().map(|(k, v)| (&**k, v))) })
}

fn scope() -> Json {
    json!({ "name": SCOPE_NAME, "version": SCOPE_VERSION })
}

fn span(span: &Span) -> Json {
    let mut out = Map::new();
    out.insert(
        "traceId".into(),
        json!(hex(&span.context.trace_id.to_bytes())),
    );
    out.insert(
        "spanId".into(),
        json!(hex(&span.context.span_id.to_bytes())),
    );
    if let Some(state) = span.context.state.to_header_value() {
        if let Ok(state) = state.to_str() {
            out.insert("traceState".into(), json!(state));
        }
    }
    if let Some(parent) = span.context.parent_id {
        out.insert("parentSpanId".into(), json!(hex(&parent.to_bytes())));
    }
    out.insert("flags".into(), json!(span.context.flags.0));
    out.insert("name".into(), json!(span.name));
    out.insert("kind".into(), json!(span_kind(span.kind)));
    let start = unix_nanos(span.start);
    out.insert("startTimeUnixNano".into(), json!(start.to_string()));
    let end = span.end.map_or(start, unix_nanos);
    out.insert("endTimeUnixNano".into(), json!(end.to_string()));
    out.insert(
        "attributes".into(),
        attributes(span.attributes.iter().map(|(k, v)| (&**k, v))),
    );
    if span.dropped > 0 {
        out.insert("droppedAttributesCount".into(), json!(span.dropped));
    }
    if !span.events.is_empty() {
        let events = span
            .events
            .iter()
            .map(|e| {
                json!({
                    "timeUnixNano": unix_nanos(e.at).to_string(),
                    "name": e.name,
                    "attributes": attributes(e.attributes.iter().map(|(k, v)| (&**k, v))),
                })
            })
            .collect();
        out.insert("events".into(), Json::Array(events));
    }
    let (code, message) = status_code(&span.status);
    if code != 0 {
        out.insert("status".into(), json!({ "code": code, "message": message }));
    }
    Json::Object(out)
}

/// An `ExportTraceServiceRequest` carrying `spans` from `resource`.
pub(crate) fn encode_spans(resource_attrs: &Resource, spans: &[Span]) -> Vec<u8> {
    let body = json!({
        "resourceSpans": [{
            "resource": resource(resource_attrs),
            "scopeSpans": [{ "scope": scope(), "spans": spans.iter().map(span).collect::<Vec<_>>() }],
        }]
    });
    body.to_string().into_bytes()
}

fn labels(names: &[String], values: &[String]) -> Json {
    Json::Array(
        names
            .iter()
            .zip(values)
            .map(|(k, v)| json!({ "key": k, "value": { "stringValue": v } }))
            .collect(),
    )
}

fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// An `ExportMetricsServiceRequest` of `families`, cumulative since `start`, read at `now`.
pub(crate) fn encode_metrics(
    resource_attrs: &Resource,
    families: &[FamilySnapshot],
    start: SystemTime,
    now: SystemTime,
) -> Vec<u8> {
    let (start, now) = (unix_nanos(start).to_string(), unix_nanos(now).to_string());
    let metrics: Vec<Json> = families
        .iter()
        .filter_map(|family| {
            let data = match &family.points {
                Points::Counter(series) => {
                    let points: Vec<Json> = series
                        .iter()
                        .map(|(values, total)| {
                            json!({
                                "attributes": labels(&family.labels, values),
                                "startTimeUnixNano": start,
                                "timeUnixNano": now,
                                "asInt": total.to_string(),
                            })
                        })
                        .collect();
                    (
                        "sum",
                        json!({ "dataPoints": points, "aggregationTemporality": 2, "isMonotonic": true }),
                    )
                }
                Points::Gauge(series) => {
                    let points: Vec<Json> = series
                        .iter()
                        .map(|(values, value)| {
                            json!({
                                "attributes": labels(&family.labels, values),
                                "timeUnixNano": now,
                                "asInt": value.to_string(),
                            })
                        })
                        .collect();
                    ("gauge", json!({ "dataPoints": points }))
                }
                Points::Histogram { bounds, series } => {
                    let bounds: Vec<Json> = bounds.iter().map(|b| double(seconds(*b))).collect();
                    let points: Vec<Json> = series
                        .iter()
                        .map(|(values, point)| {
                            json!({
                                "attributes": labels(&family.labels, values),
                                "startTimeUnixNano": start,
                                "timeUnixNano": now,
                                "count": point.count.to_string(),
                                "sum": seconds(point.sum),
                                "bucketCounts": point.buckets.iter().map(u64::to_string).collect::<Vec<_>>(),
                                "explicitBounds": bounds,
                            })
                        })
                        .collect();
                    (
                        "histogram",
                        json!({ "dataPoints": points, "aggregationTemporality": 2 }),
                    )
                }
                #[allow(unreachable_patterns)]
                _ => return None,
            };
            let mut metric = Map::new();
            metric.insert("name".into(), json!(family.name));
            metric.insert("description".into(), json!(family.help));
            if data.0 == "histogram" {
                metric.insert("unit".into(), json!("s"));
            }
            metric.insert(data.0.into(), data.1);
            Some(Json::Object(metric))
        })
        .collect();
    let body = json!({
        "resourceMetrics": [{
            "resource": resource(resource_attrs),
            "scopeMetrics": [{ "scope": scope(), "metrics": metrics }],
        }]
    });
    body.to_string().into_bytes()
}
