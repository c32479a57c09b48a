//! W3C Trace Context (Level 1, with Level 2's random flag): `traceparent` and `tracestate`, parsed strictly
//! and formatted canonically, without allocating for `traceparent`.
//!
//! Strictness follows the specification:
//! - `traceparent`: lowercase hex only; version `ff` is invalid; version `00` is exactly 55 characters;
//!   a higher version may carry more after a `-` at position 55 (it is read as version `00` and the rest
//!   ignored); an all-zero trace id or parent id is invalid; more than one `traceparent` field is invalid.
//! - `tracestate`: at most [`MAX_TRACESTATE_MEMBERS`] members, keys as the grammar says (simple or
//!   `tenant@system`), values of printable ASCII without `,` or `=` and not ending in a space, no
//!   duplicate keys; empty list members are skipped; several header lines are one list. An invalid
//!   `tracestate` is dropped whole (the `traceparent` still counts). When propagated, it is cut to
//!   [`MAX_TRACESTATE_LEN`] bytes by dropping members from the end, members over 128 bytes first.
//!
//! ```
//! use edge_core::trace::{TraceParent, TraceState};
//!
//! let parent = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
//! assert!(parent.flags.sampled());
//! assert_eq!(parent.to_string(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
//! assert!(TraceParent::parse("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01").is_none());
//!
//! let state = TraceState::parse(["congo=t61rcWkgMzE, rojo=00f067aa0ba902b7"]).unwrap();
//! assert_eq!(state.get("rojo"), Some("00f067aa0ba902b7"));
//! ```

use std::fmt::{self, Write as _};

/// Most `tracestate` members kept.
pub const MAX_TRACESTATE_MEMBERS: usize = 32;
/// Longest `tracestate` propagated, in bytes.
pub const MAX_TRACESTATE_LEN: usize = 512;
/// Longest `traceparent` or `tracestate` line read; longer ones are ignored unread.
pub const MAX_HEADER_LEN: usize = 4096;

/// A 16-byte trace id (never all zeros).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId([u8; 16]);

/// An 8-byte span id (never all zeros).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpanId([u8; 8]);

impl TraceId {
    /// The id of these bytes; `None` for all zeros.
    #[must_use]
    pub fn from_bytes(bytes: [u8; 16]) -> Option<Self> {
        (bytes != [0; 16]).then_some(Self(bytes))
    }

    /// The bytes.
    #[must_use]
    pub fn to_bytes(self) -> [u8; 16] {
        self.0
    }
}

impl SpanId {
    /// The id of these bytes; `None` for all zeros.
    #[must_use]
    pub fn from_bytes(bytes: [u8; 8]) -> Option<Self> {
        (bytes != [0; 8]).then_some(Self(bytes))
    }

    /// The bytes.
    #[must_use]
    pub fn to_bytes(self) -> [u8; 8] {
        self.0
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn write_hex(f: &mut impl fmt::Write, bytes: &[u8]) -> fmt::Result {
    for &b in bytes {
        f.write_char(char::from(HEX[usize::from(b >> 4)]))?;
        f.write_char(char::from(HEX[usize::from(b & 0x0f)]))?;
    }
    Ok(())
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpanId({self})")
    }
}

/// The `trace-flags` byte.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TraceFlags(pub u8);

impl TraceFlags {
    /// Bit 0: the caller may have recorded this trace.
    pub const SAMPLED: u8 = 0x01;
    /// Bit 1 (Level 2): the trace id's rightmost 7 bytes are random.
    pub const RANDOM: u8 = 0x02;

    /// Whether `sampled` is set.
    #[must_use]
    pub fn sampled(self) -> bool {
        self.0 & Self::SAMPLED != 0
    }

    /// These flags with `sampled` set or cleared.
    #[must_use]
    pub fn with_sampled(self, sampled: bool) -> Self {
        if sampled {
            Self(self.0 | Self::SAMPLED)
        } else {
            Self(self.0 & !Self::SAMPLED)
        }
    }
}

/// A parsed `traceparent`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct TraceParent {
    /// The trace.
    pub trace_id: TraceId,
    /// The caller's span.
    pub parent_id: SpanId,
    /// The flags.
    pub flags: TraceFlags,
}

fn hex_nibble(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

fn hex_into(input: &[u8], out: &mut [u8]) -> Option<()> {
    if input.len() != out.len() * 2 {
        return None;
    }
    for (pair, byte) in input.chunks_exact(2).zip(out.iter_mut()) {
        *byte = (hex_nibble(pair[0])? << 4) | hex_nibble(pair[1])?;
    }
    Some(())
}

impl TraceParent {
    /// A `traceparent` for these ids.
    #[must_use]
    pub fn new(trace_id: TraceId, parent_id: SpanId, flags: TraceFlags) -> Self {
        Self {
            trace_id,
            parent_id,
            flags,
        }
    }

    /// Parses one `traceparent` value; `None` if it is not valid.
    #[must_use]
    pub fn parse(value: &str) -> Option<Self> {
        let b = value.as_bytes();
        if b.len() < 55 || b.len() > MAX_HEADER_LEN {
            return None;
        }
        let mut version = [0u8; 1];
        hex_into(&b[0..2], &mut version)?;
        match version[0] {
            0xff => return None,
            0x00 if b.len() != 55 => return None,
            _ if b.len() > 55 && b[55] != b'-' => return None,
            _ => {}
        }
        if b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
            return None;
        }
        let mut trace = [0u8; 16];
        hex_into(&b[3..35], &mut trace)?;
        let mut parent = [0u8; 8];
        hex_into(&b[36..52], &mut parent)?;
        let mut flags = [0u8; 1];
        hex_into(&b[53..55], &mut flags)?;
        Some(Self {
            trace_id: TraceId::from_bytes(trace)?,
            parent_id: SpanId::from_bytes(parent)?,
            flags: TraceFlags(flags[0]),
        })
    }

    /// The `traceparent` of a request's headers: exactly one valid field, or `None`.
    #[must_use]
    pub fn from_headers(headers: &http::HeaderMap) -> Option<Self> {
        let mut values = headers.get_all("traceparent").iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return None;
        };
        Self::parse(value.to_str().ok()?)
    }

    /// The canonical form, always version `00`, as a fixed-size buffer (no allocation).
    #[must_use]
    pub fn encode(&self) -> [u8; 55] {
        let mut out = [0u8; 55];
        out[0] = b'0';
        out[1] = b'0';
        out[2] = b'-';
        let mut at = 3;
        for &byte in self.trace_id.0.iter() {
            out[at] = HEX[usize::from(byte >> 4)];
            out[at + 1] = HEX[usize::from(byte & 0x0f)];
            at += 2;
        }
        out[at] = b'-';
        at += 1;
        for &byte in self.parent_id.0.iter() {
            out[at] = HEX[usize::from(byte >> 4)];
            out[at + 1] = HEX[usize::from(byte & 0x0f)];
            at += 2;
        }
        out[at] = b'-';
        out[at + 1] = HEX[usize::from(self.flags.0 >> 4)];
        out[at + 2] = HEX[usize::from(self.flags.0 & 0x0f)];
        out
    }

    /// The canonical form as a header value.
    #[must_use]
    pub fn to_header_value(&self) -> http::HeaderValue {
        let encoded = self.encode();
        // Always valid: lowercase hex and dashes.
        http::HeaderValue::from_bytes(&encoded).unwrap_or_else(|_| {
            http::HeaderValue::from_static(
                "00-00000000000000000000000000000000-0000000000000000-00",
            )
        })
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("00-")?;
        write_hex(f, &self.trace_id.0)?;
        f.write_char('-')?;
        write_hex(f, &self.parent_id.0)?;
        write!(f, "-{:02x}", self.flags.0)
    }
}

/// A parsed `tracestate`: vendor entries, most recent first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceState {
    members: Vec<(String, String)>,
}

fn key_chars_ok(s: &[u8]) -> bool {
    s.iter()
        .all(|&c| matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'*' | b'/'))
}

fn valid_key(key: &str) -> bool {
    let k = key.as_bytes();
    match key.split_once('@') {
        None => !k.is_empty() && k.len() <= 256 && k[0].is_ascii_lowercase() && key_chars_ok(k),
        Some((tenant, system)) => {
            let (t, s) = (tenant.as_bytes(), system.as_bytes());
            !t.is_empty()
                && t.len() <= 241
                && (t[0].is_ascii_lowercase() || t[0].is_ascii_digit())
                && key_chars_ok(t)
                && !s.is_empty()
                && s.len() <= 14
                && s[0].is_ascii_lowercase()
                && key_chars_ok(s)
        }
    }
}

fn valid_value(value: &str) -> bool {
    let v = value.as_bytes();
    !v.is_empty()
        && v.len() <= 256
        && v.iter()
            .all(|&c| (0x20..=0x7e).contains(&c) && c != b',' && c != b'=')
        && v.last() != Some(&b' ')
}

impl TraceState {
    /// Parses the `tracestate` lines of a request (in order); `None` if the list is invalid.
    pub fn parse<'a>(lines: impl IntoIterator<Item = &'a str>) -> Option<Self> {
        let mut members: Vec<(String, String)> = Vec::new();
        for line in lines {
            if line.len() > MAX_HEADER_LEN {
                return None;
            }
            for member in line.split(',') {
                let member = member.trim_matches([' ', '\t']);
                if member.is_empty() {
                    continue;
                }
                let (key, value) = member.split_once('=')?;
                if !valid_key(key) || !valid_value(value) {
                    return None;
                }
                if members.iter().any(|(k, _)| k == key) || members.len() == MAX_TRACESTATE_MEMBERS
                {
                    return None;
                }
                members.push((key.to_owned(), value.to_owned()));
            }
        }
        Some(Self { members })
    }

    /// The `tracestate` of a request's headers (empty when absent or invalid).
    #[must_use]
    pub fn from_headers(headers: &http::HeaderMap) -> Self {
        let lines: Option<Vec<&str>> = headers
            .get_all("tracestate")
            .iter()
            .map(|v| v.to_str().ok())
            .collect();
        lines.and_then(Self::parse).unwrap_or_default()
    }

    /// The value of `key`.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&str> {
        self.members
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Puts `key=value` first (replacing an earlier entry of `key`), as a vendor updating its entry
    /// must; refused (`false`) if either is invalid.
    pub fn insert(&mut self, key: &str, value: &str) -> bool {
        if !valid_key(key) || !valid_value(value) {
            return false;
        }
        self.members.retain(|(k, _)| k != key);
        self.members.insert(0, (key.to_owned(), value.to_owned()));
        self.members.truncate(MAX_TRACESTATE_MEMBERS);
        true
    }

    /// The members, most recent first.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.members.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The header value to propagate, at most [`MAX_TRACESTATE_LEN`] bytes: members over 128 bytes go
    /// first, then members from the end; `None` when nothing is left.
    #[must_use]
    pub fn to_header_value(&self) -> Option<http::HeaderValue> {
        let entry_len = |(k, v): &(String, String)| k.len() + 1 + v.len();
        let mut kept: Vec<&(String, String)> = self.members.iter().collect();
        let total = |kept: &[&(String, String)]| {
            kept.iter().map(|m| entry_len(m)).sum::<usize>() + kept.len().saturating_sub(1)
        };
        while total(&kept) > MAX_TRACESTATE_LEN {
            match kept.iter().rposition(|m| entry_len(m) > 128) {
                Some(large) => {
                    kept.remove(large);
                }
                None => {
                    kept.pop();
                }
            }
        }
        if kept.is_empty() {
            return None;
        }
        let mut out = String::with_capacity(total(&kept));
        for (i, (k, v)) in kept.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{k}={v}");
        }
        http::HeaderValue::try_from(out).ok()
    }
}
