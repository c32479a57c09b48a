//! Operators (`@rx`, `@pm`, `@detectSQLi`, …): the test a rule runs on each transformed value.

use std::net::IpAddr;

use aho_corasick::AhoCorasick;

use super::macros::Expand;

/// A compiled operator.
#[derive(Debug)]
pub(crate) enum Operator {
    Rx(Pattern),
    /// `@pm`/`@pmFromFile`: any of the phrases, without case (kept, lowercased, for the prefilter).
    Pm(AhoCorasick, Vec<Vec<u8>>),
    Contains(Expand),
    BeginsWith(Expand),
    EndsWith(Expand),
    StrEq(Expand),
    Within(Expand),
    Compare(Compare, Expand),
    ValidateByteRange(Box<[bool; 256]>),
    ValidateUrlEncoding,
    ValidateUtf8Encoding,
    IpMatch(Vec<(IpAddr, u8)>),
    DetectSqli,
    DetectXss,
    Unconditional,
    NoMatch,
}

/// A numeric comparison (`@eq`, `@ge`, …).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Compare {
    Eq,
    Ge,
    Gt,
    Le,
    Lt,
}

/// A regular expression, on the linear-time engine where the pattern allows it.
#[derive(Debug)]
pub(crate) enum Pattern {
    Linear(regex::bytes::Regex),
    /// Look-around or back-references: a backtracking engine, on the value read as UTF-8 (lossily).
    Backtracking(fancy_regex::Regex),
}

impl Pattern {
    /// Compiles `pattern` as ModSecurity does (PCRE with `DOTALL` and `MULTILINE`, bytes not text).
    pub(crate) fn new(pattern: &str) -> Result<Self, String> {
        match regex::bytes::RegexBuilder::new(&byte_escapes(pattern))
            .unicode(false)
            .dot_matches_new_line(true)
            .multi_line(true)
            .size_limit(64 << 20)
            .build()
        {
            Ok(regex) => Ok(Self::Linear(regex)),
            Err(linear) => fancy_regex::Regex::new(&format!("(?sm){pattern}"))
                .map(Self::Backtracking)
                .map_err(|fancy| format!("{linear}; as a backtracking pattern: {fancy}")),
        }
    }

    /// The match and its groups (0 the whole match), if `value` matches.
    pub(crate) fn captures(&self, value: &[u8]) -> Option<Vec<Vec<u8>>> {
        match self {
            Self::Linear(regex) => regex.captures(value).map(|c| {
                c.iter()
                    .map(|m| m.map(|m| m.as_bytes().to_vec()).unwrap_or_default())
                    .collect()
            }),
            Self::Backtracking(regex) => {
                let text = String::from_utf8_lossy(value);
                // A pattern that runs past the backtracking limit is no match (ModSecurity's PCRE
                // match limit does the same).
                regex.captures(&text).ok().flatten().map(|c| {
                    c.iter()
                        .map(|m| {
                            m.map(|m| m.as_str().as_bytes().to_vec())
                                .unwrap_or_default()
                        })
                        .collect()
                })
            }
        }
    }

    /// Whether `value` matches.
    pub(crate) fn is_match(&self, value: &[u8]) -> bool {
        match self {
            Self::Linear(regex) => regex.is_match(value),
            Self::Backtracking(regex) => regex
                .is_match(&String::from_utf8_lossy(value))
                .unwrap_or(false),
        }
    }
}

/// PCRE without UTF mode reads `\x{ff}` as the byte 0xFF; `regex` without Unicode reads only `\xff` so.
fn byte_escapes(pattern: &str) -> std::borrow::Cow<'_, str> {
    if !pattern.contains("\\x{") {
        return std::borrow::Cow::Borrowed(pattern);
    }
    let mut out = String::with_capacity(pattern.len());
    let mut rest = pattern;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let escape = &rest[at..];
        let short = escape.strip_prefix("\\x{").and_then(|tail| {
            let close = tail.find('}')?;
            let digits = &tail[..close];
            (!digits.is_empty()
                && digits.len() <= 2
                && digits.bytes().all(|b| b.is_ascii_hexdigit()))
            .then_some((digits, close))
        });
        match short {
            Some((digits, close)) => {
                out.push_str(&format!("\\x{digits:0>2}"));
                rest = &escape[4 + close..];
            }
            None => {
                // Any other escape is copied whole, so `\\x{` (a backslash, then text) stays as it is.
                let len = escape.chars().nth(1).map_or(1, |c| 1 + c.len_utf8());
                out.push_str(&escape[..len]);
                rest = &escape[len..];
            }
        }
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
}

/// The phrases of `@pm` (separated by spaces) or of a `@pmFromFile` data file (one per line, `#` lines
/// are comments), as one case-insensitive automaton.
pub(crate) fn phrases<'a>(list: impl Iterator<Item = &'a str>) -> Result<Operator, String> {
    let phrases: Vec<Vec<u8>> = list
        .filter(|p| !p.is_empty())
        .map(|p| p.as_bytes().to_ascii_lowercase())
        .collect();
    let automaton = AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .build(&phrases)
        .map_err(|e| e.to_string())?;
    Ok(Operator::Pm(automaton, phrases))
}

/// `@validateByteRange 1-255,9`: the bytes allowed.
pub(crate) fn byte_ranges(spec: &str) -> Result<Box<[bool; 256]>, String> {
    let mut allowed = Box::new([false; 256]);
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (low, high) = part.split_once('-').unwrap_or((part, part));
        let parse = |n: &str| {
            n.trim()
                .parse::<u8>()
                .map_err(|_| format!("`{part}` is not a byte range"))
        };
        let (low, high) = (parse(low)?, parse(high)?);
        for b in low..=high {
            allowed[usize::from(b)] = true;
        }
    }
    Ok(allowed)
}

/// `@ipMatch 127.0.0.1,10.0.0.0/8,::1`.
pub(crate) fn networks(spec: &str) -> Result<Vec<(IpAddr, u8)>, String> {
    spec.split([',', ' '])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|part| {
            let (addr, bits) = part.split_once('/').unwrap_or((part, ""));
            let addr: IpAddr = addr
                .parse()
                .map_err(|_| format!("`{part}` is not an address"))?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let bits = if bits.is_empty() {
                max
            } else {
                bits.parse::<u8>()
                    .ok()
                    .filter(|b| *b <= max)
                    .ok_or_else(|| format!("`{part}` has a bad prefix length"))?
            };
            Ok((addr, bits))
        })
        .collect()
}

/// Whether `addr` is in the network `net/bits`.
pub(crate) fn in_network(addr: IpAddr, (net, bits): (IpAddr, u8)) -> bool {
    let prefix = |a: &[u8], b: &[u8]| {
        let whole = usize::from(bits / 8);
        let rest = bits % 8;
        a.get(..whole) == b.get(..whole)
            && (rest == 0
                || a.get(whole).zip(b.get(whole)).is_some_and(|(x, y)| {
                    let mask = 0xffu8 << (8 - rest);
                    x & mask == y & mask
                }))
    };
    match (addr, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => prefix(&a.octets(), &n.octets()),
        (IpAddr::V6(a), IpAddr::V6(n)) => prefix(&a.octets(), &n.octets()),
        _ => false,
    }
}

/// C's `atoi`: leading whitespace, a sign, digits; anything else ends the number (none at all is 0).
pub(crate) fn atoi(value: &[u8]) -> i64 {
    let mut rest = value;
    while let [b, tail @ ..] = rest {
        if !b.is_ascii_whitespace() {
            break;
        }
        rest = tail;
    }
    let negative = rest.first() == Some(&b'-');
    if matches!(rest.first(), Some(b'-' | b'+')) {
        rest = &rest[1..];
    }
    let magnitude = rest
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .fold(0i64, |acc, &d| {
            acc.saturating_mul(10).saturating_add(i64::from(d - b'0'))
        });
    if negative { -magnitude } else { magnitude }
}

/// Whether `value` has a `%` not followed by two hex digits.
pub(crate) fn bad_url_encoding(value: &[u8]) -> bool {
    let mut i = 0;
    while let Some(at) = value.get(i..).and_then(|rest| memchr::memchr(b'%', rest)) {
        let at = i + at;
        match value.get(at + 1..at + 3) {
            Some(h) if h.iter().all(u8::is_ascii_hexdigit) => i = at + 3,
            _ => return true,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcre_byte_escapes() {
        assert_eq!(
            byte_escapes(r"[\x7f-\x{ff}]\\x{41}\x{e2}"),
            r"[\x7f-\xff]\\x{41}\xe2"
        );
        assert!(matches!(
            Pattern::new(r"[\x{bc}]").unwrap(),
            Pattern::Linear(_)
        ));
        assert!(Pattern::new(r"(?<=a)b").unwrap().is_match(b"ab"));
        assert_eq!(atoi(b"  -12abc"), -12);
        assert_eq!(atoi(b"x"), 0);
        assert!(bad_url_encoding(b"a%2"));
        assert!(!bad_url_encoding(b"a%20b"));
    }
}
