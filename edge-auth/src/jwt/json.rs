//! The one strict JSON reader for JOSE documents (headers, claims, JWKs): duplicate member names refused at
//! every level (RFC 7515 §4 lets a parser refuse them; accepting them lets two parsers disagree on what a
//! token says), nesting bounded, no trailing data, valid UTF-8.
//!
//! It reads with serde_json's grammar and keeps only the top-level members the caller names, borrowed from
//! the input and classified as far as the verifier cares. Values a caller wants in its own type are then deserialized by
//! serde_json from the same bytes: the grammar is serde_json's in both passes, and this pass only adds
//! refusals, so the two cannot disagree on what the document says.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// How deep objects and arrays may nest, the top-level object included.
pub(crate) const MAX_DEPTH: usize = 16;

/// A top-level member's value, as far as the verifier cares.
#[derive(Debug)]
pub(crate) enum Field<'a> {
    Str(Cow<'a, str>),
    Number(f64),
    /// An array whose items are all strings.
    Strings(Vec<Cow<'a, str>>),
    /// Anything else: an object, a bool, null, a mixed array.
    Other,
}

/// The top-level members of a strictly read JSON object, in document order.
pub(crate) struct Members<'a>(Vec<(Cow<'a, str>, Field<'a>)>);

impl<'a> Members<'a> {
    /// The value of member `name`, if present.
    pub(crate) fn get(&self, name: &str) -> Option<&Field<'a>> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

/// Reads `bytes` strictly as a JSON object, keeping the top-level members `wanted` names (every member is
/// checked all the same).
pub(crate) fn object(
    bytes: &[u8],
    wanted: impl Fn(&str) -> bool,
) -> Result<Members<'_>, serde_json::Error> {
    fn read<'de, R: serde_json::de::Read<'de>>(
        mut deserializer: serde_json::Deserializer<R>,
        wanted: impl Fn(&str) -> bool,
    ) -> Result<Members<'de>, serde_json::Error> {
        let members = (&mut deserializer).deserialize_map(Top { wanted })?;
        deserializer.end()?;
        Ok(members)
    }
    // UTF-8 checked once up front (the usual case) lets the parser skip it string by string; anything
    // else goes to the byte reader, which refuses it where it breaks.
    match std::str::from_utf8(bytes) {
        Ok(text) => read(serde_json::Deserializer::from_str(text), wanted),
        Err(_) => read(serde_json::Deserializer::from_slice(bytes), wanted),
    }
}

/// The top-level object: the wanted members kept.
struct Top<F> {
    wanted: F,
}

impl<'de, F: Fn(&str) -> bool> Visitor<'de> for Top<F> {
    type Value = Members<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members<'de>, A::Error> {
        let mut members = Vec::new();
        let mut seen = Seen::default();
        while let Some(Name(name)) = map.next_key()? {
            seen.insert(name.clone())?;
            let keep = (self.wanted)(&name);
            let value = map.next_value_seed(Classify {
                depth: MAX_DEPTH - 1,
                keep,
            })?;
            if keep {
                members.push((name, value));
            }
        }
        Ok(Members(members))
    }
}

/// A member name, borrowed when it has no escapes.
struct Name<'a>(Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match deserializer.deserialize_str(Classify {
            depth: 0,
            keep: true,
        })? {
            Field::Str(name) => Ok(Name(name)),
            _ => Err(de::Error::custom("a member name is a string")),
        }
    }
}

/// Checks a value for duplicate names and depth, and classifies it.
struct Classify {
    depth: usize,
    /// Whether the value is kept: an unwanted one is only checked (no list of strings is built for it).
    keep: bool,
}

impl<'de> DeserializeSeed<'de> for Classify {
    type Value = Field<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Field<'de>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl Classify {
    fn nested<E: de::Error>(&self) -> Result<Self, E> {
        let depth = self.depth.checked_sub(1);
        depth
            .map(|depth| Self {
                depth,
                keep: self.keep,
            })
            .ok_or_else(|| E::custom("nested too deeply"))
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
    #[allow(clippy::cast_precision_loss)] // NumericDate is a float; exact integers reach serde as usual
    fn visit_i64<E>(self, v: i64) -> Result<Field<'de>, E> {
        Ok(Field::Number(v as f64))
    }
    #[allow(clippy::cast_precision_loss)]
    fn visit_u64<E>(self, v: u64) -> Result<Field<'de>, E> {
        Ok(Field::Number(v as f64))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Field<'de>, E> {
        Ok(Field::Number(v))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Field<'de>, E> {
        Ok(Field::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Field<'de>, E> {
        // An escaped string is copied only if it is kept.
        Ok(if self.keep {
            Field::Str(Cow::Owned(v.to_owned()))
        } else {
            Field::Other
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Field<'de>, A::Error> {
        let inner = self.nested()?;
        let mut strings = self.keep.then(Vec::new);
        while let Some(item) = seq.next_element_seed(Classify {
            depth: inner.depth,
            keep: inner.keep,
        })? {
            match (item, &mut strings) {
                (Field::Str(s), Some(list)) => list.push(s),
                _ => strings = None,
            }
        }
        Ok(strings.map_or(Field::Other, Field::Strings))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Field<'de>, A::Error> {
        let inner = self.nested()?;
        let mut seen = Seen::default();
        while let Some(Name(name)) = map.next_key()? {
            seen.insert(name)?;
            map.next_value_seed(Classify {
                depth: inner.depth,
                keep: false,
            })?;
        }
        Ok(Field::Other)
    }
}

/// The names seen in one object: the first 16 in place (no allocation for typical JOSE objects), the rest
/// in a hash set, so a hostile object with thousands of members costs linear time. Names are borrowed from
/// the input unless they had escapes.
struct Seen<'a> {
    few: [Cow<'a, str>; 16],
    len: usize,
    many: HashSet<Cow<'a, str>>,
}

impl Default for Seen<'_> {
    fn default() -> Self {
        Self {
            few: std::array::from_fn(|_| Cow::Borrowed("")),
            len: 0,
            many: HashSet::new(),
        }
    }
}

impl<'a> Seen<'a> {
    fn insert<E: de::Error>(&mut self, name: Cow<'a, str>) -> Result<(), E> {
        let fresh = if self.few[..self.len].contains(&name) {
            false
        } else if let Some(slot) = self.few.get_mut(self.len) {
            *slot = name;
            self.len += 1;
            true
        } else {
            self.many.insert(name)
        };
        if fresh {
            Ok(())
        } else {
            Err(E::custom("duplicate member name"))
        }
    }
}
