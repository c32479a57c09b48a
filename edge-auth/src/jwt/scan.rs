//! The verifier's hot path: strict JSON checks and registered-claim extraction in one pass, borrowing from
//! the input, without building a `serde_json::Value`.
//!
//! Same strictness as [`super::json`]: duplicate member names rejected at every level, nesting bounded by
//! [`MAX_DEPTH`](super::json::MAX_DEPTH), no trailing data. Only what the verifier needs is kept: the header
//! parameters and the registered claims. Custom claims are deserialized by the caller's own type, straight
//! from the bytes.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::json::MAX_DEPTH;

/// A JSON string, borrowed when it has no escapes.
#[derive(Debug)]
pub(crate) struct Str<'a>(pub(crate) Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Str<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(V)
    }
}

/// What a member's value turned out to be, for the types the verifier cares about.
#[derive(Debug, Default)]
pub(crate) enum Field<'a> {
    /// The member is absent.
    #[default]
    Absent,
    Str(Cow<'a, str>),
    Number(Number),
    /// An array whose items are all strings.
    Strings(Vec<Cow<'a, str>>),
    /// Anything else (an object, a bool, null, a mixed array): a wrong type for every registered name.
    Other,
}

impl Field<'_> {
    pub(crate) fn is_absent(&self) -> bool {
        matches!(self, Self::Absent)
    }
}

/// A JSON number as the parser read it, so a caller's type can still be handed the exact integer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Number {
    U64(u64),
    I64(i64),
    F64(f64),
}

impl Number {
    /// The value as a float (NumericDate is a JSON number, possibly with a fraction).
    #[allow(clippy::cast_precision_loss)]
    pub(crate) fn to_f64(self) -> f64 {
        match self {
            Self::U64(n) => n as f64,
            Self::I64(n) => n as f64,
            Self::F64(n) => n,
        }
    }
}

/// Checks a value for duplicates and depth, and classifies it.
pub(crate) struct Classify {
    pub(crate) depth: usize,
}

impl<'de> DeserializeSeed<'de> for Classify {
    type Value = Field<'de>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Field<'de>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Classify {
    type Value = Field<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Field<'de>, E> {
        Ok(Field::Other)
    }
    fn visit_unit<E>(self) -> Result<Field<'de>, E> {
        Ok(Field::Other)
    }
    fn visit_i64<E>(self, v: i64) -> Result<Field<'de>, E> {
        Ok(Field::Number(Number::I64(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Field<'de>, E> {
        Ok(Field::Number(Number::U64(v)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Field<'de>, E> {
        Ok(Field::Number(Number::F64(v)))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Field<'de>, E> {
        Ok(Field::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Field<'de>, E> {
        Ok(Field::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Field<'de>, E> {
        Ok(Field::Str(Cow::Owned(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Field<'de>, A::Error> {
        let depth = self
            .depth
            .checked_sub(1)
            .ok_or_else(|| de::Error::custom("nested too deeply"))?;
        let mut strings = Some(Vec::new());
        while let Some(item) = seq.next_element_seed(Classify { depth })? {
            match (item, &mut strings) {
                (Field::Str(s), Some(list)) => list.push(s),
                _ => strings = None,
            }
        }
        Ok(strings.map_or(Field::Other, Field::Strings))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Field<'de>, A::Error> {
        let depth = self
            .depth
            .checked_sub(1)
            .ok_or_else(|| de::Error::custom("nested too deeply"))?;
        let mut seen = Seen::default();
        while let Some(Str(name)) = map.next_key::<Str<'de>>()? {
            seen.insert(name)?;
            map.next_value_seed(Classify { depth })?;
        }
        Ok(Field::Other)
    }
}

/// How many member names [`Seen`] keeps inline before switching to a hash set.
const INLINE_NAMES: usize = 16;

/// Member names seen in one object: a short inline list (no allocation for typical headers and claims
/// sets), then a set once objects get large.
pub(crate) struct Seen<'a> {
    list: [Cow<'a, str>; INLINE_NAMES],
    len: usize,
    set: Option<HashSet<Cow<'a, str>>>,
}

impl Default for Seen<'_> {
    fn default() -> Self {
        Self {
            list: std::array::from_fn(|_| Cow::Borrowed("")),
            len: 0,
            set: None,
        }
    }
}

impl<'a> Seen<'a> {
    pub(crate) fn insert<E: de::Error>(&mut self, name: Cow<'a, str>) -> Result<(), E> {
        let duplicate = if let Some(set) = &mut self.set {
            !set.insert(name)
        } else if self.list[..self.len].contains(&name) {
            true
        } else if let Some(slot) = self.list.get_mut(self.len) {
            *slot = name;
            self.len += 1;
            false
        } else {
            let mut set: HashSet<Cow<'a, str>> = self.list.iter_mut().map(std::mem::take).collect();
            set.insert(name);
            self.set = Some(set);
            false
        };
        if duplicate {
            Err(E::custom("duplicate member name"))
        } else {
            Ok(())
        }
    }
}

/// Parses a JSON object strictly, handing each top-level member to `on_member`.
pub(crate) fn object<'de, F>(bytes: &'de [u8], mut on_member: F) -> Result<(), serde_json::Error>
where
    F: FnMut(&str, Field<'de>),
{
    struct Top<F> {
        on_member: F,
    }
    impl<'de, F> Visitor<'de> for Top<F>
    where
        F: FnMut(&str, Field<'de>),
    {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
            let mut seen = Seen::default();
            while let Some(Str(name)) = map.next_key::<Str<'de>>()? {
                let value = map.next_value_seed(Classify {
                    depth: MAX_DEPTH - 1,
                })?;
                (self.on_member)(&name, value);
                seen.insert(name)?;
            }
            Ok(())
        }
    }
    fn run<'de, R, F>(
        mut deserializer: serde_json::Deserializer<R>,
        on_member: F,
    ) -> Result<(), serde_json::Error>
    where
        R: serde_json::de::Read<'de>,
        F: FnMut(&str, Field<'de>),
    {
        (&mut deserializer).deserialize_map(Top { on_member })?;
        deserializer.end()
    }
    // Valid UTF-8 (the usual case) is checked once up front, so the parser can skip it string by string;
    // anything else goes to the byte parser, which reports where it breaks.
    match std::str::from_utf8(bytes) {
        Ok(text) => run(serde_json::Deserializer::from_str(text), &mut on_member),
        Err(_) => run(serde_json::Deserializer::from_slice(bytes), &mut on_member),
    }
}

/// How many members [`flat_object`] handles before leaving the object to [`object`].
const FLAT_MEMBERS: usize = 8;

/// Parses the common shape of a JOSE header exactly: an object whose members are all strings without
/// escapes, at most [`FLAT_MEMBERS`] of them, names all different. Returns `None` for anything else
/// (which may still be valid JSON: the caller then uses [`object`]), in which case the members already
/// handed to `on_member` must be discarded.
pub(crate) fn flat_object<'a>(
    text: &'a str,
    mut on_member: impl FnMut(&'a str, &'a str),
) -> Option<()> {
    let bytes = text.as_bytes();
    let mut at = skip_whitespace(bytes, 0);
    if bytes.get(at) != Some(&b'{') {
        return None;
    }
    at = skip_whitespace(bytes, at + 1);
    if bytes.get(at) == Some(&b'}') {
        return (skip_whitespace(bytes, at + 1) == bytes.len()).then_some(());
    }
    let mut names = [""; FLAT_MEMBERS];
    let mut count = 0;
    loop {
        let (name, next) = plain_string(text, at)?;
        at = skip_whitespace(bytes, next);
        if bytes.get(at) != Some(&b':') {
            return None;
        }
        let (value, next) = plain_string(text, skip_whitespace(bytes, at + 1))?;
        if names[..count].contains(&name) {
            return None;
        }
        *names.get_mut(count)? = name;
        count += 1;
        on_member(name, value);
        at = skip_whitespace(bytes, next);
        match bytes.get(at) {
            Some(b',') => at = skip_whitespace(bytes, at + 1),
            Some(b'}') => return (skip_whitespace(bytes, at + 1) == bytes.len()).then_some(()),
            _ => return None,
        }
    }
}

/// JSON insignificant whitespace (RFC 8259 §2).
fn skip_whitespace(bytes: &[u8], mut at: usize) -> usize {
    while matches!(bytes.get(at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        at += 1;
    }
    at
}

/// A string starting at `at` with no escapes and no control characters: its contents and the index after it.
fn plain_string(text: &str, at: usize) -> Option<(&str, usize)> {
    let bytes = text.as_bytes();
    if bytes.get(at) != Some(&b'"') {
        return None;
    }
    let start = at + 1;
    let len = bytes
        .get(start..)?
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
    let end = start + len;
    if bytes.get(end) != Some(&b'"') {
        return None;
    }
    Some((text.get(start..end)?, end + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(json: &str) -> Result<Vec<(String, String)>, serde_json::Error> {
        let mut out = Vec::new();
        object(json.as_bytes(), |name, field| {
            out.push((name.to_owned(), format!("{field:?}")))
        })?;
        Ok(out)
    }

    fn flat(json: &str) -> Option<Vec<(String, String)>> {
        let mut out = Vec::new();
        flat_object(json, |n, v| out.push((n.to_owned(), v.to_owned())))?;
        Some(out)
    }

    #[test]
    fn the_flat_header_parser_takes_only_what_it_reads_exactly() {
        assert_eq!(
            flat(r#" { "alg" : "ES256", "kid":"k1" } "#).unwrap(),
            vec![
                ("alg".to_owned(), "ES256".to_owned()),
                ("kid".to_owned(), "k1".to_owned())
            ]
        );
        assert_eq!(flat("{}").unwrap(), vec![]);
        for other in [
            r#"{"alg":"a","alg":"b"}"#,
            r#"{"alg":"a\u0041"}"#,
            r#"{"crit":["b64"]}"#,
            r#"{"alg":"a",}"#,
            r#"{"alg":"a"} x"#,
            r#"{"alg":"a""#,
            r#"{"alg":1}"#,
            "{\"alg\":\"a\u{1}\"}",
            r#"["alg"]"#,
            "",
        ] {
            assert!(flat(other).is_none(), "{other}");
        }
        // Everything the flat parser accepts, the full parser accepts with the same members.
        for ok in [r#"{"alg":"HS256","typ":"JWT"}"#, "\t{\"a\":\"\"}\n"] {
            assert_eq!(flat(ok).unwrap().len(), members(ok).unwrap().len());
        }
    }

    #[test]
    fn same_strictness_as_the_value_parser() {
        assert_eq!(
            members(r#"{"a":1,"b":"x","c":["y","z"],"d":[1,"y"],"e":{"f":null}}"#)
                .unwrap()
                .len(),
            5
        );
        assert!(members(r#"{"a":1,"a":2}"#).is_err());
        assert!(
            members(r#"{"a":{"x":1,"x":2}}"#).is_err(),
            "nested duplicates"
        );
        assert!(
            members(r#"{"a":[{"x":1,"x":2}]}"#).is_err(),
            "duplicates inside arrays"
        );
        assert!(members(r#"{"a":1} x"#).is_err());
        assert!(members("[1]").is_err(), "not an object");
        let deep = format!(
            r#"{{"a":{}{}}}"#,
            "[".repeat(MAX_DEPTH),
            "]".repeat(MAX_DEPTH)
        );
        assert!(members(&deep).is_err());
        let ok = format!(
            r#"{{"a":{}{}}}"#,
            "[".repeat(MAX_DEPTH - 1),
            "]".repeat(MAX_DEPTH - 1)
        );
        assert!(members(&ok).is_ok());
        let many: String = (0..100).map(|i| format!(r#""k{i}":{i},"#)).collect();
        assert!(
            members(&format!("{{{many}\"k5\":0}}")).is_err(),
            "duplicates in large objects too"
        );
        assert!(
            members(r#"{"\u0061":1,"a":2}"#).is_err(),
            "escaped names are compared decoded"
        );
    }
}
