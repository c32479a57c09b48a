//! `Cache-Control` (RFC 9111 §5.2), `CDN-Cache-Control` (RFC 9213) and `Surrogate-Control` parsed into
//! one small `Copy` struct, without allocating.
//!
//! Parsing is lenient where RFC 9111 asks for it and conservative where it matters:
//! - directive names are case-insensitive; unknown directives are ignored; lists may span header lines;
//! - a directive given twice keeps its **first** value (§4.2.1);
//! - a freshness directive with a value that is not delta-seconds (`max-age=soon`, `max-age=-1`) makes the
//!   response *stale* rather than being ignored (§4.2.1: "considered stale"), recorded as
//!   [`Directives::malformed`];
//! - delta-seconds above 2³¹ are capped at 2³¹ (§1.2.2);
//! - the qualified forms `no-cache="Set-Cookie"` and `private="Authorization"` are treated like their
//!   unqualified forms, which for a shared cache is the safe reading.

use http::HeaderValue;

/// The largest delta-seconds value kept (RFC 9111 §1.2.2: 2³¹).
pub const MAX_DELTA_SECONDS: u32 = 1 << 31;

/// `max-stale` on a request: any staleness, or at most this many seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MaxStale {
    /// `max-stale` without a value.
    Any,
    /// `max-stale=N`.
    Seconds(u32),
}

/// The directives of one field (request or response; each side reads the ones that apply to it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Directives {
    /// `max-age`.
    pub max_age: Option<u32>,
    /// `s-maxage` (shared caches only).
    pub s_maxage: Option<u32>,
    /// `no-cache`: store, but revalidate before every use (response); do not answer from cache
    /// without revalidating (request).
    pub no_cache: bool,
    /// `no-store`.
    pub no_store: bool,
    /// `private`: a shared cache must not store it.
    pub private: bool,
    /// `public`.
    pub public: bool,
    /// `must-revalidate`: never served stale.
    pub must_revalidate: bool,
    /// `proxy-revalidate`: never served stale by a shared cache.
    pub proxy_revalidate: bool,
    /// `must-understand`: store only if the status code's caching rules are understood.
    pub must_understand: bool,
    /// `immutable` (RFC 8246).
    pub immutable: bool,
    /// `stale-while-revalidate` (RFC 5861).
    pub stale_while_revalidate: Option<u32>,
    /// `stale-if-error` (RFC 5861).
    pub stale_if_error: Option<u32>,
    /// `max-stale` (request).
    pub max_stale: Option<MaxStale>,
    /// `min-fresh` (request).
    pub min_fresh: Option<u32>,
    /// `only-if-cached` (request).
    pub only_if_cached: bool,
    /// A freshness directive had a value that is not delta-seconds: the response counts as stale.
    pub malformed: bool,
    /// Whether any directive at all was present.
    pub present: bool,
}

impl Directives {
    /// Parses every value of a field (all header lines, in order).
    pub fn parse<'a>(values: impl IntoIterator<Item = &'a HeaderValue>) -> Self {
        let mut d = Self::default();
        for value in values {
            d.parse_line(value.as_bytes());
        }
        d
    }

    /// Parses a `Surrogate-Control` field as the surrogate named `device` (Edge Architecture
    /// Specification 1.0): a directive targeted with `;token` applies only when `token` is `device`
    /// (ASCII case-insensitive); an untargeted one applies to every surrogate.
    pub fn parse_surrogate<'a>(
        values: impl IntoIterator<Item = &'a HeaderValue>,
        device: &str,
    ) -> Self {
        let mut d = Self::default();
        for value in values {
            let line = value.as_bytes();
            let mut rest = line;
            while !rest.is_empty() {
                let (element, after) = split_element(rest);
                rest = after;
                match targeted(element) {
                    (directive, Some(token)) => {
                        if token.eq_ignore_ascii_case(device.as_bytes()) {
                            d.element(directive);
                        }
                    }
                    (directive, None) => d.element(directive),
                }
            }
        }
        d
    }

    /// Parses one field line into `self`.
    pub fn parse_line(&mut self, line: &[u8]) {
        if line.contains(&b'"') {
            // Quoted strings may hold commas: split with quote tracking.
            let mut rest = line;
            while !rest.is_empty() {
                let (element, after) = split_element(rest);
                rest = after;
                self.element(element);
            }
        } else {
            for element in line.split(|&b| b == b',') {
                self.element(element);
            }
        }
    }

    fn element(&mut self, element: &[u8]) {
        let element = trim(element);
        if element.is_empty() {
            return;
        }
        self.present = true;
        let (name, value) = match element.iter().position(|&b| b == b'=') {
            Some(eq) => (
                trim(&element[..eq]),
                Some(unquote(trim(&element[eq + 1..]))),
            ),
            None => (element, None),
        };
        self.apply(name, value);
    }

    fn apply(&mut self, name: &[u8], value: Option<&[u8]>) {
        let is = |expected: &str| name.eq_ignore_ascii_case(expected.as_bytes());
        // Numeric directives: the first occurrence wins; a bad value marks freshness as malformed.
        let mut seconds = |slot: &mut Option<u32>, freshness: bool| {
            if slot.is_some() {
                return;
            }
            match value.and_then(delta_seconds) {
                Some(n) => *slot = Some(n),
                None if freshness => {
                    *slot = Some(0);
                    self.malformed = true;
                }
                None => {}
            }
        };
        // Dispatch on the length first: most names are told apart by it alone.
        match name.len() {
            6 if is("public") => self.public = true,
            7 if is("max-age") => seconds(&mut self.max_age, true),
            7 if is("private") => self.private = true,
            8 if is("s-maxage") => seconds(&mut self.s_maxage, true),
            8 if is("no-cache") => self.no_cache = true,
            8 if is("no-store") => self.no_store = true,
            9 if is("immutable") => self.immutable = true,
            9 if is("min-fresh") => seconds(&mut self.min_fresh, false),
            9 if is("max-stale") && self.max_stale.is_none() => {
                self.max_stale = Some(match value {
                    None => MaxStale::Any,
                    Some(v) => delta_seconds(v).map_or(MaxStale::Seconds(0), MaxStale::Seconds),
                });
            }
            14 if is("stale-if-error") => seconds(&mut self.stale_if_error, false),
            14 if is("only-if-cached") => self.only_if_cached = true,
            15 if is("must-revalidate") => self.must_revalidate = true,
            15 if is("must-understand") => self.must_understand = true,
            16 if is("proxy-revalidate") => self.proxy_revalidate = true,
            22 if is("stale-while-revalidate") => seconds(&mut self.stale_while_revalidate, false),
            _ => {}
        }
    }
}

/// A `Surrogate-Control` element and the device token it is targeted at (`max-age=60;edge`), if any:
/// the text after the last `;` outside quotes.
fn targeted(element: &[u8]) -> (&[u8], Option<&[u8]>) {
    let mut quoted = false;
    let mut split = None;
    for (i, &b) in element.iter().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b';' if !quoted => split = Some(i),
            _ => {}
        }
    }
    match split {
        Some(i) => (&element[..i], Some(trim(&element[i + 1..]))),
        None => (element, None),
    }
}

/// Splits off the first list element, honouring quoted strings (a comma inside quotes is not a separator).
fn split_element(input: &[u8]) -> (&[u8], &[u8]) {
    let mut quoted = false;
    let mut escaped = false;
    for (i, &b) in input.iter().enumerate() {
        if escaped {
            escaped = false;
            continue;
        }
        match b {
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b',' if !quoted => return (&input[..i], &input[i + 1..]),
            _ => {}
        }
    }
    (input, &[])
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

fn unquote(s: &[u8]) -> &[u8] {
    match s {
        [b'"', inner @ .., b'"'] => inner,
        _ => s,
    }
}

/// Delta-seconds: ASCII digits only, capped at [`MAX_DELTA_SECONDS`]. `Surrogate-Control`'s
/// `max-age=60+30` form keeps its leading number.
fn delta_seconds(value: &[u8]) -> Option<u32> {
    let digits = value
        .iter()
        .position(|b| !b.is_ascii_digit())
        .map_or(value, |end| {
            if value[end] == b'+' {
                &value[..end]
            } else {
                &[]
            }
        });
    if digits.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &b in digits {
        n = (n * 10 + u64::from(b - b'0')).min(u64::from(MAX_DELTA_SECONDS));
    }
    u32::try_from(n).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Directives {
        let mut d = Directives::default();
        d.parse_line(s.as_bytes());
        d
    }

    #[test]
    fn directives() {
        let d = parse(
            r#"Public, MAX-AGE=60 , s-maxage="120", no-cache="Set-Cookie, X", stale-while-revalidate=30"#,
        );
        assert!(d.public && d.no_cache && d.present);
        assert_eq!(
            (d.max_age, d.s_maxage, d.stale_while_revalidate),
            (Some(60), Some(120), Some(30))
        );
        assert_eq!(
            parse("max-age=5, max-age=500").max_age,
            Some(5),
            "first wins"
        );
        let bad = parse("max-age=soon");
        assert_eq!((bad.max_age, bad.malformed), (Some(0), true));
        assert_eq!(parse("max-age=-1").max_age, Some(0));
        assert_eq!(
            parse("max-age=99999999999999999999").max_age,
            Some(MAX_DELTA_SECONDS)
        );
        assert_eq!(parse("max-age=60+30").max_age, Some(60));
        assert_eq!(parse("max-stale").max_stale, Some(MaxStale::Any));
        assert_eq!(parse("max-stale=7").max_stale, Some(MaxStale::Seconds(7)));
        assert!(!parse(",,, ,").present);
        assert!(parse("private=\"a,b\", immutable").immutable);
        assert_eq!(
            parse("stale-if-error=x").stale_if_error,
            None,
            "only freshness fails closed"
        );
    }
}
