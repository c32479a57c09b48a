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

use std::fmt::Write as _;
use std::time::Duration;

use http::HeaderValue;

/// Most entries kept (later ones are dropped).
pub const MAX_ENTRIES: usize = 32;

/// The entries of one request's `Server-Timing` header.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerTiming {
    entries: Vec<(String, Duration, Option<String>)>,
}

fn token(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(*c))
        .take(64)
        .collect();
    if cleaned.is_empty() {
        "stage".to_owned()
    } else {
        cleaned
    }
}

impl ServerTiming {
    /// No entries.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a stage: `name` (cut to a token), its duration, an optional description.
    pub fn add(&mut self, name: &str, duration: Duration, description: Option<&str>) {
        if self.entries.len() < MAX_ENTRIES {
            let description = description.map(|d| {
                d.chars()
                    .filter(|c| (' '..='~').contains(c))
                    .take(128)
                    .collect()
            });
            self.entries.push((token(name), duration, description));
        }
    }

    /// The header value; `None` without entries.
    #[must_use]
    pub fn to_header_value(&self) -> Option<HeaderValue> {
        if self.entries.is_empty() {
            return None;
        }
        let mut out = String::new();
        for (i, (name, duration, description)) in self.entries.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            // Milliseconds with up to three decimals, trailing zeros dropped.
            let ms = format!("{:.3}", duration.as_secs_f64() * 1000.0);
            let ms = ms.trim_end_matches('0').trim_end_matches('.');
            let _ = write!(out, "{name};dur={ms}");
            if let Some(description) = description {
                let escaped = description.replace('\\', "\\\\").replace('"', "\\\"");
                let _ = write!(out, ";desc=\"{escaped}\"");
            }
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
}
