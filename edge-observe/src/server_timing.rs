//! The `Server-Timing` response header (W3C Server Timing): the stages of one request and how long each
//! took, for the browser's devtools.
//!
//! ```
//! use std::time::Duration;
//! use edge_observe::ServerTiming;
//!
//! let mut timing = ServerTiming::new();
//! timing.add("waf", Duration::from_micros(80), None);
//! timing.add("cache", Duration::from_micros(40), Some("HIT"));
//! assert_eq!(timing.to_header_value().unwrap(), r#"waf;dur=0.08, cache;dur=0.04;desc="HIT""#);
//! ```

use std::borrow::Cow;
use std::time::Duration;

use http::{HeaderName, HeaderValue};

/// Most entries kept (later ones are dropped).
pub const MAX_ENTRIES: usize = 32;

/// The `Server-Timing` field name, made once (a `&str` name is parsed on every use).
pub const SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");

/// The entries of one request's `Server-Timing` header.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerTiming {
    entries: Vec<(String, Duration, Option<String>)>,
}

fn token(name: &str) -> Cow<'_, str> {
    let is_token_char = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if !name.is_empty() && name.len() <= 64 && name.chars().all(is_token_char) {
        return Cow::Borrowed(name);
    }
    let cleaned: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(*c))
        .take(64)
        .collect();
    if cleaned.is_empty() {
        Cow::Borrowed("stage")
    } else {
        Cow::Owned(cleaned)
    }
}

/// `;dur=` and the duration in milliseconds with up to three decimals (rounded to the microsecond),
/// trailing zeros dropped.
fn write_duration(out: &mut String, duration: Duration) {
    let micros = duration.as_micros() + u128::from(duration.subsec_nanos() % 1000 >= 500);
    out.push_str(";dur=");
    push_decimal(out, u64::try_from(micros / 1000).unwrap_or(u64::MAX), 1);
    let mut fraction = u64::try_from(micros % 1000).unwrap_or(0);
    if fraction > 0 {
        let mut digits = 3;
        while fraction % 10 == 0 {
            fraction /= 10;
            digits -= 1;
        }
        out.push('.');
        push_decimal(out, fraction, digits);
    }
}

/// `n` in decimal, zero-padded to `min_digits`: what `write!` gives, without its formatting machinery
/// (this runs for every stage of every request).
fn push_decimal(out: &mut String, mut n: u64, min_digits: usize) {
    let mut digits = [b'0'; 20];
    let mut start = digits.len();
    while n > 0 || digits.len() - start < min_digits {
        start -= 1;
        digits[start] = b'0' + u8::try_from(n % 10).unwrap_or(0);
        n /= 10;
    }
    out.extend(digits[start..].iter().map(|&digit| char::from(digit)));
}

impl ServerTiming {
    /// No entries.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a stage: `name` (cut to a token), its duration, an optional description (both are made safe
    /// for the header when it is written, in [`header_value_of`](Self::header_value_of)).
    pub fn add(&mut self, name: &str, duration: Duration, description: Option<&str>) {
        if self.entries.len() < MAX_ENTRIES {
            self.entries
                .push((name.to_owned(), duration, description.map(str::to_owned)));
        }
    }

    /// The header value of one entry, `name` (a token) and its duration: what a layer that times the
    /// whole request adds, without building a list.
    #[must_use]
    pub fn single(name: &'static str, duration: Duration) -> Option<HeaderValue> {
        Self::header_value_of([(name, duration, None)])
    }

    /// The header value; `None` without entries.
    #[must_use]
    pub fn to_header_value(&self) -> Option<HeaderValue> {
        Self::header_value_of(self.entries.iter().map(|(name, duration, description)| {
            (name.as_str(), *duration, description.as_deref())
        }))
    }

    /// The header value of `entries` (name, duration, description), the same as adding each to a
    /// `ServerTiming` and calling [`to_header_value`](Self::to_header_value), written straight into the
    /// value: for a caller that holds its stages already (the trace layer), one allocation in all.
    #[must_use]
    pub fn header_value_of<'a>(
        entries: impl IntoIterator<Item = (&'a str, Duration, Option<&'a str>)>,
    ) -> Option<HeaderValue> {
        let mut out = String::new();
        for (i, (name, duration, description)) in entries.into_iter().take(MAX_ENTRIES).enumerate()
        {
            if i > 0 {
                out.push_str(", ");
            } else {
                out.reserve(128);
            }
            out.push_str(&token(name));
            write_duration(&mut out, duration);
            if let Some(description) = description {
                out.push_str(";desc=\"");
                for c in description
                    .chars()
                    .filter(|c| (' '..='~').contains(c))
                    .take(128)
                {
                    if c == '\\' || c == '"' {
                        out.push('\\');
                    }
                    out.push(c);
                }
                out.push('"');
            }
        }
        if out.is_empty() {
            return None;
        }
        HeaderValue::try_from(out).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_descriptions_cannot_break_the_header() {
        let mut timing = ServerTiming::new();
        timing.add("a b;c", Duration::from_millis(1), Some("say \"hi\"\r\n\\"));
        timing.add("", Duration::ZERO, None);
        let value = timing.to_header_value().unwrap();
        assert_eq!(value, r#"abc;dur=1;desc="say \"hi\"\\", stage;dur=0"#);
        for _ in 0..100 {
            timing.add("x", Duration::from_millis(1), None);
        }
        assert_eq!(timing.entries.len(), MAX_ENTRIES);
        assert_eq!(ServerTiming::new().to_header_value(), None);
    }

    #[test]
    fn durations_in_milliseconds_to_the_microsecond() {
        for (duration, text) in [
            (Duration::ZERO, "0"),
            (Duration::from_micros(80), "0.08"),
            (Duration::from_micros(1_500), "1.5"),
            (Duration::from_nanos(1_234_567), "1.235"),
            (Duration::from_nanos(999_999_600), "1000"),
            (Duration::from_secs(30), "30000"),
        ] {
            let mut timing = ServerTiming::new();
            timing.add("s", duration, None);
            assert_eq!(
                timing.to_header_value().unwrap(),
                format!("s;dur={text}").as_str()
            );
        }
    }
}
