//! OTLP's protobuf encoding, written by hand for the few messages an exporter sends.
//!
//! The OTLP crates generate these types with prost, but they come with opentelemetry's SDK, which does
//! not run on `wasm32-unknown-unknown`; the wire format of two requests is small enough to write out. The
//! tests decode what this writes with `opentelemetry-proto`'s generated types, field by field.
//!
//! Field numbers are those of `opentelemetry/proto/{common,resource,trace,metrics}/v1/*.proto` and
//! `collector/{trace,metrics}/v1/*_service.proto`. proto3 leaves default scalars out; members of a
//! `oneof` and `optional` fields are always written, since there presence is the value.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use edge_core::trace::{Event, Span, SpanKind, Status, Value};

use super::{Resource, SCOPE_NAME, SCOPE_VERSION};
use crate::metrics::{FamilySnapshot, Points};

const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;
const FIXED32: u32 = 5;

#[derive(Default)]
struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            // Truncation keeps the low seven bits, which is the point.
            #[allow(clippy::cast_possible_truncation)]
            self.buf.push((value as u8) | 0x80);
            value >>= 7;
        }
        #[allow(clippy::cast_possible_truncation)]
        self.buf.push(value as u8);
    }

    fn tag(&mut self, field: u32, wire: u32) {
        self.varint(u64::from(field << 3 | wire));
    }

    fn uint(&mut self, field: u32, value: u64) {
        if value != 0 {
            self.tag(field, VARINT);
            self.varint(value);
        }
    }

    fn fixed64(&mut self, field: u32, value: u64) {
        if value != 0 {
            self.fixed64_always(field, value);
        }
    }

    fn fixed64_always(&mut self, field: u32, value: u64) {
        self.tag(field, FIXED64);
        self.buf.extend_from_slice(&value.to_le_bytes());
    }

    fn fixed32(&mut self, field: u32, value: u32) {
        if value != 0 {
            self.tag(field, FIXED32);
            self.buf.extend_from_slice(&value.to_le_bytes());
        }
    }

    fn double_always(&mut self, field: u32, value: f64) {
        self.fixed64_always(field, value.to_bits());
    }

    fn bytes_always(&mut self, field: u32, bytes: &[u8]) {
        self.tag(field, LEN);
        self.varint(bytes.len() as u64);
        self.buf.extend_from_slice(bytes);
    }

    fn bytes(&mut self, field: u32, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.bytes_always(field, bytes);
        }
    }

    fn string(&mut self, field: u32, s: &str) {
        self.bytes(field, s.as_bytes());
    }

    /// A nested message, written in place: its length is only known afterwards, so the length's varint
    /// is inserted in front of it then (one move of the message's bytes, no buffer of its own).
    fn message(&mut self, field: u32, write: impl FnOnce(&mut Self)) {
        self.tag(field, LEN);
        let start = self.buf.len();
        write(self);
        let mut len = (self.buf.len() - start) as u64;
        let mut prefix = [0u8; 10];
        let mut n = 0;
        loop {
            // Truncation keeps the low seven bits, which is the point.
            #[allow(clippy::cast_possible_truncation)]
            let low = (len & 0x7f) as u8;
            len >>= 7;
            if len == 0 {
                prefix[n] = low;
                n += 1;
                break;
            }
            prefix[n] = low | 0x80;
            n += 1;
        }
        self.buf.splice(start..start, prefix[..n].iter().copied());
    }

    fn packed_fixed64(&mut self, field: u32, values: impl ExactSizeIterator<Item = u64>) {
        if values.len() > 0 {
            self.tag(field, LEN);
            self.varint(values.len() as u64 * 8);
            for value in values {
                self.buf.extend_from_slice(&value.to_le_bytes());
            }
        }
    }
}

pub(super) fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn any_value(w: &mut Writer, value: &Value) {
    match value {
        Value::Str(s) => w.bytes_always(1, s.as_bytes()),
        Value::Bool(b) => {
            w.tag(2, VARINT);
            w.varint(u64::from(*b));
        }
        Value::I64(n) => {
            w.tag(3, VARINT);
            // int64 is the two's complement as a 64-bit varint.
            w.varint(u64::from_ne_bytes(n.to_ne_bytes()));
        }
        Value::F64(x) => w.double_always(4, *x),
        // `Value` is non-exhaustive: anything newer travels as its debug text rather than not at all.
        #[allow(unreachable_patterns)]
        other => w.bytes_always(1, format!("{other:?}").as_bytes()),
    }
}

fn key_value(w: &mut Writer, field: u32, key: &str, value: &Value) {
    w.message(field, |kv| {
        kv.string(1, key);
        kv.message(2, |v| any_value(v, value));
    });
}

fn resource(w: &mut Writer, resource: &Resource) {
    w.message(1, |r| {
        for (key, value) in &resource.attributes {
            key_value(r, 1, key, value);
        }
    });
}

fn scope(w: &mut Writer) {
    w.message(1, |s| {
        s.string(1, SCOPE_NAME);
        s.string(2, SCOPE_VERSION);
    });
}

pub(super) fn span_kind(kind: SpanKind) -> u64 {
    match kind {
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        // Internal, and any kind added later.
        _ => 1,
    }
}

pub(super) fn status_code(status: &Status) -> (u64, &str) {
    match status {
        Status::Ok => (1, ""),
        Status::Error(message) => (2, message),
        _ => (0, ""),
    }
}

fn event(w: &mut Writer, event: &Event) {
    w.message(11, |e| {
        e.fixed64(1, unix_nanos(event.at));
        e.string(2, &event.name);
        for (key, value) in &event.attributes {
            key_value(e, 3, key, value);
        }
    });
}

fn span(w: &mut Writer, span: &Span) {
    w.message(2, |s| {
        s.bytes(1, &span.context.trace_id.to_bytes());
        s.bytes(2, &span.context.span_id.to_bytes());
        if let Some(state) = span.context.state.to_header_value() {
            s.bytes(3, state.as_bytes());
        }
        if let Some(parent) = span.context.parent_id {
            s.bytes(4, &parent.to_bytes());
        }
        s.string(5, &span.name);
        s.uint(6, span_kind(span.kind));
        let start = unix_nanos(span.start);
        s.fixed64(7, start);
        let end = span.end.map_or(start, unix_nanos);
        s.fixed64(8, end);
        for (key, value) in &span.attributes {
            key_value(s, 9, key, value);
        }
        s.uint(10, u64::from(span.dropped));
        for e in &span.events {
            event(s, e);
        }
        let (code, message) = status_code(&span.status);
        if code != 0 {
            s.message(15, |st| {
                st.string(2, message);
                st.uint(3, code);
            });
        }
        s.fixed32(16, u32::from(span.context.flags.0));
    });
}

/// An `ExportTraceServiceRequest` carrying `spans` from `resource`.
pub(crate) fn encode_spans(resource_attrs: &Resource, spans: &[Span]) -> Vec<u8> {
    let mut w = Writer::default();
    w.message(1, |rs| {
        resource(rs, resource_attrs);
        rs.message(2, |ss| {
            scope(ss);
            for s in spans {
                span(ss, s);
            }
        });
    });
    w.buf
}

fn labels(w: &mut Writer, field: u32, names: &[String], values: &[String]) {
    for (name, value) in names.iter().zip(values) {
        key_value(w, field, name, &Value::Str(value.clone().into()));
    }
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
    let (start, now) = (unix_nanos(start), unix_nanos(now));
    let mut w = Writer::default();
    w.message(1, |rm| {
        resource(rm, resource_attrs);
        rm.message(2, |sm| {
            scope(sm);
            for family in families {
                sm.message(2, |m| {
                    m.string(1, &family.name);
                    m.string(2, &family.help);
                    match &family.points {
                        Points::Counter(series) => {
                            m.message(7, |sum| {
                                for (values, total) in series {
                                    sum.message(1, |p| {
                                        labels(p, 7, &family.labels, values);
                                        p.fixed64(2, start);
                                        p.fixed64(3, now);
                                        p.tag(6, FIXED64);
                                        p.buf.extend_from_slice(
                                            &i64::try_from(*total)
                                                .unwrap_or(i64::MAX)
                                                .to_le_bytes(),
                                        );
                                    });
                                }
                                sum.uint(2, 2); // cumulative
                                sum.uint(3, 1); // monotonic
                            });
                        }
                        Points::Gauge(series) => {
                            m.message(5, |gauge| {
                                for (values, value) in series {
                                    gauge.message(1, |p| {
                                        labels(p, 7, &family.labels, values);
                                        p.fixed64(3, now);
                                        p.tag(6, FIXED64);
                                        p.buf.extend_from_slice(&value.to_le_bytes());
                                    });
                                }
                            });
                        }
                        Points::Histogram { bounds, series } => {
                            m.string(3, "s");
                            m.message(9, |h| {
                                for (values, point) in series {
                                    h.message(1, |p| {
                                        labels(p, 9, &family.labels, values);
                                        p.fixed64(2, start);
                                        p.fixed64(3, now);
                                        p.fixed64(4, point.count);
                                        p.double_always(5, seconds(point.sum));
                                        p.packed_fixed64(6, point.buckets.iter().copied());
                                        p.packed_fixed64(
                                            7,
                                            bounds.iter().map(|b| seconds(*b).to_bits()),
                                        );
                                    });
                                }
                                h.uint(2, 2); // cumulative
                            });
                        }
                        // Kinds added later are left out rather than sent wrong.
                        #[allow(unreachable_patterns)]
                        _ => {}
                    }
                });
            }
        });
    });
    w.buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_as_the_spec_writes_them() {
        let mut w = Writer::default();
        w.varint(1);
        w.varint(300);
        w.varint(u64::MAX);
        assert_eq!(
            w.buf,
            [
                1, 0xac, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01
            ]
        );
    }
}
