//! Transformations (`t:…`): what a value goes through before an operator sees it, byte for byte as
//! ModSecurity 3 does it (values are bytes, not text: a decoded `%FF` is the byte 0xFF).
//!
//! Each returns its input unchanged (borrowed) when there is nothing to do, so the common case, a value
//! with nothing encoded in it, copies nothing.

use std::borrow::Cow;

/// One transformation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Transform {
    Lowercase,
    UrlDecode,
    UrlDecodeUni,
    HtmlEntityDecode,
    JsDecode,
    CssDecode,
    /// ModSecurity 3's `cssDecode`, whose result ends at the first NUL byte (it copies a C string): a
    /// `\0` hides the rest of the value from the rule. Only for comparing verdicts with ModSecurity
    /// ([`RuleSetBuilder::modsecurity_quirks`](super::RuleSetBuilder::modsecurity_quirks)).
    CssDecodeToNul,
    Utf8ToUnicode,
    RemoveNulls,
    RemoveWhitespace,
    CompressWhitespace,
    ReplaceComments,
    RemoveCommentsChar,
    CmdLine,
    NormalizePath,
    NormalizePathWin,
    EscapeSeqDecode,
    Length,
    Base64Decode,
    Sha1,
    HexEncode,
    Trim,
    TrimLeft,
    TrimRight,
}

impl Transform {
    /// The transformation named `name` (`t:name`); `none` is handled by the caller (it clears the list).
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "lowercase" => Self::Lowercase,
            "urldecode" => Self::UrlDecode,
            "urldecodeuni" => Self::UrlDecodeUni,
            "htmlentitydecode" => Self::HtmlEntityDecode,
            "jsdecode" => Self::JsDecode,
            "cssdecode" => Self::CssDecode,
            "utf8tounicode" => Self::Utf8ToUnicode,
            "removenulls" => Self::RemoveNulls,
            "removewhitespace" => Self::RemoveWhitespace,
            "compresswhitespace" => Self::CompressWhitespace,
            "replacecomments" => Self::ReplaceComments,
            "removecommentschar" => Self::RemoveCommentsChar,
            "cmdline" => Self::CmdLine,
            "normalizepath" | "normalisepath" => Self::NormalizePath,
            "normalizepathwin" | "normalisepathwin" => Self::NormalizePathWin,
            "escapeseqdecode" => Self::EscapeSeqDecode,
            "length" => Self::Length,
            "base64decode" => Self::Base64Decode,
            "sha1" => Self::Sha1,
            "hexencode" => Self::HexEncode,
            "trim" => Self::Trim,
            "trimleft" => Self::TrimLeft,
            "trimright" => Self::TrimRight,
            _ => return None,
        })
    }

    /// `value` transformed.
    pub(crate) fn apply<'a>(self, value: Cow<'a, [u8]>) -> Cow<'a, [u8]> {
        let changed = match self {
            Self::Lowercase => {
                if !value.iter().any(u8::is_ascii_uppercase) {
                    return value;
                }
                Some(value.to_ascii_lowercase())
            }
            Self::UrlDecode => url_decode(&value, false),
            Self::UrlDecodeUni => url_decode(&value, true),
            Self::HtmlEntityDecode => html_entity_decode(&value),
            Self::JsDecode => js_decode(&value),
            Self::CssDecode => css_decode(&value),
            Self::CssDecodeToNul => {
                let decoded = css_decode(&value);
                let bytes: &[u8] = decoded.as_deref().unwrap_or(&value);
                match memchr::memchr(0, bytes) {
                    Some(nul) => Some(bytes[..nul].to_vec()),
                    None => decoded,
                }
            }
            Self::Utf8ToUnicode => utf8_to_unicode(&value),
            Self::RemoveNulls => remove(&value, |b| b == 0),
            Self::RemoveWhitespace => remove(&value, is_space),
            Self::CompressWhitespace => compress_whitespace(&value),
            Self::ReplaceComments => replace_comments(&value),
            Self::RemoveCommentsChar => remove_comment_chars(&value),
            Self::CmdLine => Some(cmd_line(&value)),
            Self::NormalizePath => normalize_path(&value, false),
            Self::NormalizePathWin => normalize_path(&value, true),
            Self::EscapeSeqDecode => escape_seq_decode(&value),
            Self::Length => Some(value.len().to_string().into_bytes()),
            Self::Base64Decode => Some(base64_decode(&value)),
            Self::Sha1 => Some(
                ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &value)
                    .as_ref()
                    .to_vec(),
            ),
            Self::HexEncode => Some(hex_encode(&value)),
            Self::Trim => trim(&value, true, true),
            Self::TrimLeft => trim(&value, true, false),
            Self::TrimRight => trim(&value, false, true),
        };
        match changed {
            Some(bytes) => Cow::Owned(bytes),
            None => value,
        }
    }
}

/// Kinds of bytes a transformation acts on, as bits: a value holding none of a transformation's comes
/// out of it as it went in, ASCII case aside ([`Transform::acts_on`], [`kinds`]). None is a letter, so
/// lowercasing a value leaves its kinds as they were.
pub(crate) mod kind {
    /// `%` and `+` (URL decoding).
    pub(crate) const PERCENT_PLUS: u16 = 1;
    /// `&` (HTML entities).
    pub(crate) const AMPERSAND: u16 = 1 << 1;
    /// `\` (JS, CSS and C escapes; Windows paths).
    pub(crate) const BACKSLASH: u16 = 1 << 2;
    /// NUL.
    pub(crate) const NUL: u16 = 1 << 3;
    /// Bytes above 0x7F (UTF-8 to `%u`).
    pub(crate) const NON_ASCII: u16 = 1 << 4;
    /// Whitespace as [`super::is_space`] reads it (the non-breaking space too).
    pub(crate) const SPACE: u16 = 1 << 5;
    /// `/ * - #` (comments).
    pub(crate) const COMMENT: u16 = 1 << 6;
    /// `" ' ^ , ;` and `\` and whitespace (`cmdLine`).
    pub(crate) const SHELL: u16 = 1 << 7;
    /// `.` and `/` (paths).
    pub(crate) const PATH: u16 = 1 << 8;
    /// In every value, the empty one too: only [`ANY`] holds it.
    pub(crate) const EVERY_VALUE: u16 = 1 << 15;
    /// Every kind: for transformations that change every value (`length`, `sha1`, …).
    pub(crate) const ANY: u16 = u16::MAX;
}

/// The kinds of bytes in `value` (see [`kind`]).
pub(crate) fn kinds(value: &[u8]) -> u16 {
    value.iter().fold(kind::EVERY_VALUE, |found, &b| {
        found
            | match b {
                b'%' | b'+' => kind::PERCENT_PLUS,
                b'&' => kind::AMPERSAND,
                b'\\' => kind::BACKSLASH | kind::SHELL,
                0 => kind::NUL,
                0xa0 => kind::NON_ASCII | kind::SPACE,
                0x80.. => kind::NON_ASCII,
                b' ' | b'\t' | b'\n' | b'\r' => kind::SPACE | kind::SHELL,
                0x0b | 0x0c => kind::SPACE,
                b'*' | b'-' | b'#' => kind::COMMENT,
                b'/' => kind::COMMENT | kind::PATH,
                b'.' => kind::PATH,
                b'"' | b'\'' | b'^' | b',' | b';' => kind::SHELL,
                _ => 0,
            }
    })
}

impl Transform {
    /// The kinds of bytes without which this transformation leaves a value as it is, ASCII case aside
    /// (`lowercase` changes nothing else; `cmdLine` lowercases too).
    pub(crate) const fn acts_on(self) -> u16 {
        match self {
            Self::Lowercase => 0,
            Self::UrlDecode | Self::UrlDecodeUni => kind::PERCENT_PLUS,
            Self::HtmlEntityDecode => kind::AMPERSAND,
            Self::JsDecode | Self::CssDecode | Self::EscapeSeqDecode => kind::BACKSLASH,
            Self::CssDecodeToNul => kind::BACKSLASH | kind::NUL,
            Self::Utf8ToUnicode => kind::NON_ASCII,
            Self::RemoveNulls => kind::NUL,
            Self::RemoveWhitespace
            | Self::CompressWhitespace
            | Self::Trim
            | Self::TrimLeft
            | Self::TrimRight => kind::SPACE,
            Self::ReplaceComments | Self::RemoveCommentsChar => kind::COMMENT,
            Self::CmdLine => kind::SHELL,
            Self::NormalizePath => kind::PATH,
            Self::NormalizePathWin => kind::PATH | kind::BACKSLASH,
            Self::Length | Self::Base64Decode | Self::Sha1 | Self::HexEncode => kind::ANY,
        }
    }
}

/// Whitespace as ModSecurity's transformations see it: C's `isspace` and the non-breaking space.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c | 0xa0)
}

fn hex_value(b: u8) -> Option<u8> {
    (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

fn hex_byte(hi: u8, lo: u8) -> Option<u8> {
    Some(hex_value(hi)? << 4 | hex_value(lo)?)
}

/// The byte a `%uHHHH`/`\uHHHH` escape decodes to without a Unicode map: the low byte, and the full-width
/// ASCII forms (`U+FF01`–`U+FF5E`) folded to ASCII.
fn unicode_low_byte(digits: &[u8]) -> Option<u8> {
    let [h1, h2, h3, h4] = digits else {
        return None;
    };
    let mut byte = hex_byte(*h3, *h4)?;
    hex_byte(*h1, *h2)?;
    if byte > 0 && byte < 0x5f && h1.eq_ignore_ascii_case(&b'f') && h2.eq_ignore_ascii_case(&b'f') {
        byte += 0x20;
    }
    Some(byte)
}

/// `%XX` (and with `uni`, `%uXXXX`) decoded, `+` as a space; malformed escapes kept as they are.
fn url_decode(value: &[u8], uni: bool) -> Option<Vec<u8>> {
    if !value.iter().any(|&b| b == b'%' || b == b'+') {
        return None;
    }
    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    while let Some(&b) = value.get(i) {
        match b {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let next = value.get(i + 1).copied();
                if uni && matches!(next, Some(b'u' | b'U')) {
                    if let Some(byte) = value.get(i + 2..i + 6).and_then(unicode_low_byte) {
                        out.push(byte);
                        i += 6;
                        continue;
                    }
                } else if let Some(byte) =
                    value.get(i + 1..i + 3).and_then(|h| hex_byte(h[0], h[1]))
                {
                    out.push(byte);
                    i += 3;
                    continue;
                }
                out.push(b'%');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(out)
}

/// HTML character references: `&#DD;`, `&#xHH;` (to one byte) and `&quot; &nbsp; &lt; &gt; &amp;`, the
/// `;` optional, as ModSecurity's `htmlEntityDecode` does.
fn html_entity_decode(value: &[u8]) -> Option<Vec<u8>> {
    memchr::memchr(b'&', value)?;
    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    while let Some(&b) = value.get(i) {
        if b == b'&' {
            if let Some((byte, used)) = html_entity(&value[i + 1..]) {
                out.push(byte);
                i += 1 + used;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    Some(out)
}

/// One reference after its `&`: the byte and how many bytes it used (its `;` included).
fn html_entity(rest: &[u8]) -> Option<(u8, usize)> {
    let semicolon = |at: usize| usize::from(rest.get(at) == Some(&b';'));
    if let Some(number) = rest.strip_prefix(b"#") {
        let (hex, digits) = match number.first() {
            Some(b'x' | b'X') => (true, &number[1..]),
            _ => (false, number),
        };
        let len = digits
            .iter()
            .take_while(|b| {
                if hex {
                    b.is_ascii_hexdigit()
                } else {
                    b.is_ascii_digit()
                }
            })
            .count();
        if len == 0 {
            return None;
        }
        let radix = if hex { 16 } else { 10 };
        let value = digits[..len].iter().fold(0u32, |acc, &d| {
            acc.wrapping_mul(radix)
                .wrapping_add((d as char).to_digit(16).unwrap_or(0))
        });
        let used = 1 + usize::from(hex) + len;
        return Some((value.to_le_bytes()[0], used + semicolon(used)));
    }
    for (name, byte) in [
        (&b"quot"[..], b'"'),
        (b"amp", b'&'),
        (b"lt", b'<'),
        (b"gt", b'>'),
        (b"nbsp", 0xa0),
    ] {
        if rest.len() >= name.len() && rest[..name.len()].eq_ignore_ascii_case(name) {
            return Some((byte, name.len() + semicolon(name.len())));
        }
    }
    None
}

/// JavaScript escapes: `\uHHHH` (low byte, full-width folded), `\xHH`, octal `\OOO`, `\n` and friends,
/// and `\c` as `c` for any other character.
fn js_decode(value: &[u8]) -> Option<Vec<u8>> {
    memchr::memchr(b'\\', value)?;
    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    while let Some(&b) = value.get(i) {
        if b != b'\\' {
            out.push(b);
            i += 1;
            continue;
        }
        let next = value.get(i + 1).copied();
        if matches!(next, Some(b'u' | b'U')) {
            if let Some(byte) = value.get(i + 2..i + 6).and_then(unicode_low_byte) {
                out.push(byte);
                i += 6;
                continue;
            }
        }
        if matches!(next, Some(b'x' | b'X')) {
            if let Some(byte) = value.get(i + 2..i + 4).and_then(|h| hex_byte(h[0], h[1])) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        if let Some(d) = next.filter(|d| (b'0'..=b'7').contains(d)) {
            let digits = value[i + 1..]
                .iter()
                .take(3)
                .take_while(|d| (b'0'..=b'7').contains(*d))
                .count();
            // Three digits only while the value fits a byte (`\377`).
            let digits = if digits == 3 && d > b'3' { 2 } else { digits };
            let byte = value[i + 1..i + 1 + digits]
                .iter()
                .fold(0u8, |acc, &o| acc.wrapping_mul(8).wrapping_add(o - b'0'));
            out.push(byte);
            i += 1 + digits;
            continue;
        }
        match next {
            Some(c) => {
                out.push(simple_escape(c));
                i += 2;
            }
            None => {
                out.push(b'\\');
                i += 1;
            }
        }
    }
    Some(out)
}

fn simple_escape(c: u8) -> u8 {
    match c {
        b'a' => 0x07,
        b'b' => 0x08,
        b'f' => 0x0c,
        b'n' => b'\n',
        b'r' => b'\r',
        b't' => b'\t',
        b'v' => 0x0b,
        other => other,
    }
}

/// CSS escapes: `\` and one to six hex digits (low byte, full-width folded; one whitespace after the
/// digits belongs to the escape), `\` and a newline removed, `\` and another character that character.
fn css_decode(value: &[u8]) -> Option<Vec<u8>> {
    memchr::memchr(b'\\', value)?;
    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    while let Some(&b) = value.get(i) {
        if b != b'\\' {
            out.push(b);
            i += 1;
            continue;
        }
        let rest = &value[i + 1..];
        let digits = rest
            .iter()
            .take(6)
            .take_while(|d| d.is_ascii_hexdigit())
            .count();
        if digits > 0 {
            let hex = &rest[..digits];
            let mut byte = if digits >= 2 {
                hex_byte(hex[digits - 2], hex[digits - 1]).unwrap_or(0)
            } else {
                hex_value(hex[0]).unwrap_or(0)
            };
            let full_width = digits >= 4
                && hex[digits - 4].eq_ignore_ascii_case(&b'f')
                && hex[digits - 3].eq_ignore_ascii_case(&b'f')
                && (digits == 4 || hex[..digits - 4].iter().all(|&d| d == b'0'));
            if full_width && byte > 0 && byte < 0x5f {
                byte += 0x20;
            }
            out.push(byte);
            i += 1 + digits;
            if value.get(i).is_some_and(|&w| is_space(w) && w != 0xa0) {
                i += 1;
            }
            continue;
        }
        match rest.first() {
            Some(b'\n') => i += 2,
            Some(&c) => {
                out.push(c);
                i += 2;
            }
            None => i += 1,
        }
    }
    Some(out)
}

/// UTF-8 sequences written as `%uHHHH` (the code point, lowercase hex), other bytes kept.
fn utf8_to_unicode(value: &[u8]) -> Option<Vec<u8>> {
    if value.is_ascii() {
        return None;
    }
    let mut out = Vec::with_capacity(value.len() * 2);
    for chunk in value.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_ascii() {
                out.push(c as u8);
            } else {
                out.extend_from_slice(format!("%u{:04x}", u32::from(c) & 0xffff).as_bytes());
            }
        }
        out.extend_from_slice(chunk.invalid());
    }
    Some(out)
}

fn remove(value: &[u8], drop: impl Fn(u8) -> bool) -> Option<Vec<u8>> {
    if !value.iter().any(|&b| drop(b)) {
        return None;
    }
    Some(value.iter().copied().filter(|&b| !drop(b)).collect())
}

fn compress_whitespace(value: &[u8]) -> Option<Vec<u8>> {
    let needed = value.windows(2).any(|w| is_space(w[0]) && is_space(w[1]))
        || value.iter().any(|&b| is_space(b) && b != b' ');
    if !needed {
        return None;
    }
    let mut out = Vec::with_capacity(value.len());
    let mut in_space = false;
    for &b in value {
        if is_space(b) {
            if !in_space {
                out.push(b' ');
            }
            in_space = true;
        } else {
            out.push(b);
            in_space = false;
        }
    }
    Some(out)
}

/// `/* … */` replaced by one space (an unclosed comment runs to the end).
fn replace_comments(value: &[u8]) -> Option<Vec<u8>> {
    memchr::memmem::find(value, b"/*")?;
    let mut out = Vec::with_capacity(value.len());
    let mut rest = value;
    while let Some(open) = memchr::memmem::find(rest, b"/*") {
        out.extend_from_slice(&rest[..open]);
        out.push(b' ');
        match memchr::memmem::find(&rest[open + 2..], b"*/") {
            Some(close) => rest = &rest[open + 2 + close + 2..],
            None => return Some(out),
        }
    }
    out.extend_from_slice(rest);
    Some(out)
}

/// The comment markers `/*`, `*/`, `--` and `#` removed.
fn remove_comment_chars(value: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    while let Some(&b) = value.get(i) {
        let pair = value.get(i..i + 2);
        if matches!(pair, Some(b"/*" | b"*/" | b"--")) {
            i += 2;
        } else if b == b'#' {
            i += 1;
        } else {
            out.push(b);
            i += 1;
        }
    }
    (out.len() != value.len()).then_some(out)
}

/// ModSecurity's `cmdLine`: `\ " ' ^` deleted, spaces before `/` and `(` deleted, `,` `;` and whitespace
/// runs made one space, lowercase.
fn cmd_line(value: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::with_capacity(value.len());
    let mut space = false;
    for &b in value {
        match b {
            b'"' | b'\'' | b'\\' | b'^' => {}
            b' ' | b',' | b';' | b'\t' | b'\r' | b'\n' => {
                if !space {
                    out.push(b' ');
                    space = true;
                }
            }
            b'/' | b'(' => {
                if space {
                    out.pop();
                }
                space = false;
                out.push(b);
            }
            other => {
                out.push(other.to_ascii_lowercase());
                space = false;
            }
        }
    }
    out
}

/// `.` and `..` segments resolved and repeated `/` collapsed (with `win`, `\` read as `/` first).
fn normalize_path(value: &[u8], win: bool) -> Option<Vec<u8>> {
    let converted: Cow<'_, [u8]> = if win && value.contains(&b'\\') {
        Cow::Owned(
            value
                .iter()
                .map(|&b| if b == b'\\' { b'/' } else { b })
                .collect(),
        )
    } else {
        Cow::Borrowed(value)
    };
    let path: &[u8] = &converted;
    let needs = memchr::memmem::find(path, b"//").is_some()
        || path.split(|&b| b == b'/').any(|s| s == b"." || s == b"..");
    if !needs {
        return matches!(converted, Cow::Owned(_)).then(|| converted.into_owned());
    }
    let absolute = path.first() == Some(&b'/');
    let trailing = path.last() == Some(&b'/')
        || path.ends_with(b"/.")
        || path.ends_with(b"/..")
        || path == b"."
        || path == b"..";
    let mut segments: Vec<&[u8]> = Vec::new();
    for segment in path.split(|&b| b == b'/') {
        match segment {
            b"" | b"." => {}
            b".." => {
                if segments.last().is_some_and(|s| *s != b"..") {
                    segments.pop();
                } else if !absolute {
                    segments.push(segment);
                }
            }
            other => segments.push(other),
        }
    }
    let mut out = Vec::with_capacity(path.len());
    if absolute {
        out.push(b'/');
    }
    out.extend_from_slice(&segments.join(&b'/'));
    if trailing && !segments.is_empty() {
        out.push(b'/');
    }
    Some(out)
}

/// ANSI C escapes: `\n` and friends, `\xHH`, `\OOO`.
fn escape_seq_decode(value: &[u8]) -> Option<Vec<u8>> {
    memchr::memchr(b'\\', value)?;
    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    while let Some(&b) = value.get(i) {
        if b != b'\\' {
            out.push(b);
            i += 1;
            continue;
        }
        match value.get(i + 1).copied() {
            Some(
                c @ (b'a' | b'b' | b'f' | b'n' | b'r' | b't' | b'v' | b'\\' | b'?' | b'\'' | b'"'),
            ) => {
                out.push(simple_escape(c));
                i += 2;
            }
            Some(b'x' | b'X') => match value.get(i + 2..i + 4).and_then(|h| hex_byte(h[0], h[1])) {
                Some(byte) => {
                    out.push(byte);
                    i += 4;
                }
                None => {
                    out.push(b'\\');
                    i += 1;
                }
            },
            Some(b'0'..=b'7') => {
                let digits = value[i + 1..]
                    .iter()
                    .take(3)
                    .take_while(|d| (b'0'..=b'7').contains(*d))
                    .count();
                let byte = value[i + 1..i + 1 + digits]
                    .iter()
                    .fold(0u8, |acc, &o| acc.wrapping_mul(8).wrapping_add(o - b'0'));
                out.push(byte);
                i += 1 + digits;
            }
            _ => {
                out.push(b'\\');
                i += 1;
            }
        }
    }
    Some(out)
}

/// Base64 decoded leniently, as ModSecurity does: decoding stops at the first character outside the
/// alphabet (or `=`), what was decoded so far is the value.
fn base64_decode(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in value {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => break,
        };
        acc = acc << 6 | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits).to_le_bytes()[0]);
        }
    }
    out
}

fn hex_encode(value: &[u8]) -> Vec<u8> {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    value
        .iter()
        .flat_map(|&b| [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 15)]])
        .collect()
}

fn trim(value: &[u8], left: bool, right: bool) -> Option<Vec<u8>> {
    let start = if left {
        value.iter().take_while(|&&b| is_space(b)).count()
    } else {
        0
    };
    let end = if right {
        value.len()
            - value[start..]
                .iter()
                .rev()
                .take_while(|&&b| is_space(b))
                .count()
    } else {
        value.len()
    };
    (start != 0 || end != value.len()).then(|| value[start..end].to_vec())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const ALL: [Transform; 24] = [
        Transform::Lowercase,
        Transform::UrlDecode,
        Transform::UrlDecodeUni,
        Transform::HtmlEntityDecode,
        Transform::JsDecode,
        Transform::CssDecode,
        Transform::CssDecodeToNul,
        Transform::Utf8ToUnicode,
        Transform::RemoveNulls,
        Transform::RemoveWhitespace,
        Transform::CompressWhitespace,
        Transform::ReplaceComments,
        Transform::RemoveCommentsChar,
        Transform::CmdLine,
        Transform::NormalizePath,
        Transform::NormalizePathWin,
        Transform::EscapeSeqDecode,
        Transform::Length,
        Transform::Base64Decode,
        Transform::Sha1,
        Transform::HexEncode,
        Transform::Trim,
        Transform::TrimLeft,
        Transform::TrimRight,
    ];

    /// [`Transform::acts_on`]'s promise, which the CRS prefilter relies on: a value without those kinds
    /// of bytes comes out as it went in, ASCII case aside.
    fn assert_unchanged_without_its_bytes(value: &[u8]) -> Result<(), TestCaseError> {
        for transform in ALL {
            if kinds(value) & transform.acts_on() == 0 {
                let out = transform.apply(Cow::Borrowed(value));
                prop_assert!(
                    out.eq_ignore_ascii_case(value),
                    "{transform:?} changed {value:?} to {out:?}"
                );
            }
        }
        Ok(())
    }

    #[test]
    fn short_values_without_the_bytes_a_transformation_acts_on_pass_unchanged() {
        let alphabet: Vec<u8> = (0..=255u8).collect();
        for a in &alphabet {
            assert_unchanged_without_its_bytes(&[*a]).unwrap();
            for b in &alphabet {
                assert_unchanged_without_its_bytes(&[*a, *b]).unwrap();
            }
        }
        assert_unchanged_without_its_bytes(b"").unwrap();
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]
        /// Longer values mixing letters and digits with every byte some transformation acts on.
        #[test]
        fn values_without_the_bytes_a_transformation_acts_on_pass_unchanged(
            value in proptest::collection::vec(
                prop_oneof![
                    4 => proptest::sample::select(b"aZ09xQuU=<>(){}:!?@$".to_vec()),
                    1 => proptest::sample::select(
                        b"%+&\\\0 \t\n\r\x0b\x0c*-#/.\"'^,;"
                            .iter()
                            .copied()
                            .chain([0x80, 0xa0, 0xe9, 0xff])
                            .collect::<Vec<u8>>()
                    ),
                ],
                0..16,
            ),
        ) {
            assert_unchanged_without_its_bytes(&value)?;
        }
    }

    fn t(transform: Transform, input: &str) -> Vec<u8> {
        transform
            .apply(Cow::Borrowed(input.as_bytes()))
            .into_owned()
    }

    #[test]
    fn decoders() {
        assert_eq!(
            t(Transform::UrlDecodeUni, "a%27+%u0041%uff1c%zz%"),
            b"a' A<%zz%"
        );
        assert_eq!(t(Transform::UrlDecode, "%u0041"), b"%u0041");
        assert_eq!(
            t(Transform::HtmlEntityDecode, "&lt;&#x3c;&#60&QUOT;&bogus;"),
            b"<<<\"&bogus;"
        );
        assert_eq!(t(Transform::JsDecode, r"\x3c\u003c\74\n\q"), b"<<<\nq");
        assert_eq!(t(Transform::CssDecode, "\\3c \\6a\\\nx"), b"<jx");
        assert_eq!(t(Transform::Utf8ToUnicode, "a\u{e9}"), b"a%u00e9");
        assert_eq!(t(Transform::EscapeSeqDecode, r"\x41\101\t"), b"AA\t");
        assert_eq!(t(Transform::Base64Decode, "c2VsZWN0!garbage"), b"select");
    }

    #[test]
    fn shapers() {
        assert_eq!(
            t(Transform::CmdLine, "C^a\"t ,/etc/pa'ss;wd"),
            b"cat/etc/pass wd"
        );
        assert_eq!(t(Transform::CmdLine, "ls  ;  -la"), b"ls -la");
        assert_eq!(t(Transform::CompressWhitespace, "a \t\n b"), b"a b");
        assert_eq!(t(Transform::ReplaceComments, "un/**/ion/* x"), b"un ion ");
        assert_eq!(t(Transform::RemoveCommentsChar, "a/*b*/--#c"), b"abc");
        assert_eq!(
            t(Transform::NormalizePath, "/a/./b/../../../etc//passwd"),
            b"/etc/passwd"
        );
        assert_eq!(
            t(Transform::NormalizePathWin, "..\\..\\win.ini"),
            b"../../win.ini"
        );
        assert_eq!(t(Transform::Length, "abc"), b"3");
        assert_eq!(t(Transform::HexEncode, "A\x01"), b"4101");
        assert_eq!(t(Transform::Trim, " a "), b"a");
        assert!(matches!(
            Transform::Lowercase.apply(Cow::Borrowed(b"abc")),
            Cow::Borrowed(_)
        ));
    }
}
