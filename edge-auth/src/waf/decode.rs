//! Decoding done once, in one place, before any rule looks at a value.
//!
//! Rules must see what the application will see. A WAF that matches on raw input misses `%27` (a
//! quote); one that decodes once misses `%2527` (a quote encoded twice, which a second decoding layer in
//! the application or a proxy turns back into one). So values are percent-decoded until they stop
//! changing (at most [`MAX_ROUNDS`] times), and whether that took more than one round is reported: in a
//! path, double encoding has no honest use.

use std::borrow::Cow;

/// Most percent-decoding rounds applied to one value.
pub const MAX_ROUNDS: usize = 3;

/// A value as the rules see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// Fully decoded, invalid UTF-8 replaced, ASCII lowercased.
    pub text: String,
    /// More than one decoding round changed the value.
    pub double_encoded: bool,
    /// A decoding round produced an overlong UTF-8 form of `.`, `/` or `\` (`%c0%ae`, `%c0%af`, `%c1%9c`,
    /// `%e0%80%ae`), an old trick for smuggling `../` past filters.
    pub overlong: bool,
}

/// Percent-decodes `input` once (`+` as space when `plus_is_space`, as in query strings and forms).
/// Escapes that are not `%` plus two hex digits are kept as they are.
#[must_use]
pub fn percent_decode_once(input: &[u8], plus_is_space: bool) -> Cow<'_, [u8]> {
    if !input
        .iter()
        .any(|&b| b == b'%' || (plus_is_space && b == b'+'))
    {
        return Cow::Borrowed(input);
    }
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while let Some(&b) = input.get(i) {
        match b {
            b'%' => match (
                input.get(i + 1).and_then(hex),
                input.get(i + 2).and_then(hex),
            ) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' if plus_is_space => out.push(b' '),
            _ => out.push(b),
        }
        i += 1;
    }
    Cow::Owned(out)
}

fn hex(b: &u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes `input` until stable and normalises it for matching.
#[must_use]
pub fn decode(input: &[u8], plus_is_space: bool) -> Decoded {
    let mut text = String::new();
    let (double_encoded, overlong) = decode_into(input, plus_is_space, &mut text);
    Decoded {
        text,
        double_encoded,
        overlong,
    }
}

/// [`decode`] into `text` (cleared first), so one buffer serves every value of a request; returns
/// [`Decoded::double_encoded`] and [`Decoded::overlong`].
pub(crate) fn decode_into(input: &[u8], plus_is_space: bool, text: &mut String) -> (bool, bool) {
    let mut current: Cow<'_, [u8]> = Cow::Borrowed(input);
    let mut rounds = 0;
    let mut overlong = false;
    while rounds < MAX_ROUNDS {
        let next = percent_decode_once(&current, plus_is_space && rounds == 0);
        if let Cow::Borrowed(_) = next {
            break; // nothing to decode: no `%` (nor `+` in the first round of a form)
        }
        if next.as_ref() == current.as_ref() {
            break;
        }
        overlong |= has_overlong(&next);
        current = Cow::Owned(next.into_owned());
        rounds += 1;
    }
    text.clear();
    match std::str::from_utf8(&current) {
        Ok(valid) => text.push_str(valid),
        Err(_) => text.push_str(&String::from_utf8_lossy(&current)),
    }
    text.make_ascii_lowercase();
    (rounds > 1, overlong)
}

fn has_overlong(bytes: &[u8]) -> bool {
    bytes
        .windows(2)
        .any(|w| matches!(w, [0xc0, 0xae | 0xaf] | [0xc1, 0x9c | 0x81]))
        || bytes
            .windows(3)
            .any(|w| matches!(w, [0xe0, 0x80, 0xae | 0xaf]))
}

/// Decodes the HTML character references a browser would in an attribute or text (`&#106;`, `&#x6a;`,
/// `&lt;`, `&colon;` …), then drops the characters browsers ignore inside URL schemes (tab, newline,
/// NUL): what an XSS rule must look at.
#[must_use]
pub fn html_normalize(text: &str) -> Cow<'_, str> {
    // `\xef` starts the fullwidth `<` and `>`.
    const REWRITTEN: super::ByteSet = super::ByteSet::new(b"&\t\n\r\0\xef");
    if !REWRITTEN.any_in(text.as_bytes()) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if c == '&' {
            if let Some((decoded, used)) = entity(rest) {
                if !matches!(decoded, '\t' | '\n' | '\r' | '\0') {
                    out.push(decoded.to_ascii_lowercase());
                }
                rest = rest.get(used..).unwrap_or_default();
                continue;
            }
        }
        match c {
            '\t' | '\n' | '\r' | '\0' => {}
            // Fullwidth angle brackets: Unicode normalisation (NFKC) downstream turns them into tags.
            '\u{ff1c}' => out.push('<'),
            '\u{ff1e}' => out.push('>'),
            _ => out.push(c),
        }
        rest = rest.get(c.len_utf8()..).unwrap_or_default();
    }
    Cow::Owned(out)
}

/// One character reference at the start of `s` (which starts with `&`): the character and bytes used.
pub(crate) fn entity(s: &str) -> Option<(char, usize)> {
    let body = s.get(1..)?;
    if let Some(num) = body.strip_prefix('#') {
        let (digits, radix, skip) = match num.strip_prefix(['x', 'X']) {
            Some(hex) => (hex, 16, 3),
            None => (num, 10, 2),
        };
        let len = digits
            .bytes()
            .take(16)
            .take_while(|b| char::from(*b).is_digit(radix))
            .count();
        // No code point needs more than seven digits; longer runs are not a reference a rule cares about.
        if len == 0 || len > 7 {
            return None;
        }
        let value = u32::from_str_radix(digits.get(..len)?, radix).ok()?;
        let used = skip + len + usize::from(digits.as_bytes().get(len) == Some(&b';'));
        return Some((char::from_u32(value).unwrap_or('\u{fffd}'), used));
    }
    const NAMED: [(&str, char); 9] = [
        ("lt", '<'),
        ("gt", '>'),
        ("quot", '"'),
        ("apos", '\''),
        ("amp", '&'),
        ("colon", ':'),
        ("tab", '\t'),
        ("newline", '\n'),
        ("lpar", '('),
    ];
    NAMED.iter().find_map(|(name, c)| {
        let after = body.get(..name.len())?;
        after.eq_ignore_ascii_case(name).then(|| {
            (
                *c,
                1 + name.len() + usize::from(body.as_bytes().get(name.len()) == Some(&b';')),
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_until_stable_and_says_so() {
        let once = decode(b"%27%20OR%201%3D1", false);
        assert_eq!(once.text, "' or 1=1");
        assert!(!once.double_encoded);
        let twice = decode(b"%2527", false);
        assert_eq!(twice.text, "'");
        assert!(twice.double_encoded);
        assert_eq!(
            decode(b"a+b%2Bc", true).text,
            "a b+c",
            "plus is space only in the first round"
        );
        assert_eq!(
            decode(b"100%", false).text,
            "100%",
            "a stray percent is kept"
        );
        assert_eq!(decode(b"%zz%4", false).text, "%zz%4");
        assert!(decode(b"%c0%ae%c0%ae/", false).overlong);
    }

    #[test]
    fn html_references_and_ignored_characters() {
        assert_eq!(html_normalize("&#106;ava&#x73;cript&colon;"), "javascript:");
        assert_eq!(html_normalize("java\tscr\nipt:"), "javascript:");
        assert_eq!(html_normalize("&lt;script&gt;"), "<script>");
        assert_eq!(html_normalize("fish &amp chips"), "fish & chips");
        assert_eq!(
            html_normalize("&#99999999999;"),
            "&#99999999999;",
            "too long: left alone"
        );
        assert_eq!(html_normalize("&unknown;"), "&unknown;");
    }
}
