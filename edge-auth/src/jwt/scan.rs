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
    Number(f64),
    /// An array whose items are all strings.
    Strings(Vec<Cow<'a, str>>),
    /// Anything else (an object, a bool, null, a mixed array): a wrong type for every registered name.
    Other,
}

/// Checks a value for duplicates and depth, and classifies it.
struct Classify {
    depth: usize,
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
    #[allow(clippy::cast_precision_loss)]
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

/// Member names seen in one object: a short list, then a set once objects get large.
struct Seen<'a> {
    list: Vec<Cow<'a, str>>,
    set: Option<HashSet<Cow<'a, str>>>,
}

impl Default for Seen<'_> {
    fn default() -> Self {
        // Room for a typical claims set, so it does not grow while parsing one.
        Self {
            list: Vec::with_capacity(16),
            set: None,
        }
    }
}

impl<'a> Seen<'a> {
    fn insert<E: de::Error>(&mut self, name: Cow<'a, str>) -> Result<(), E> {
        let duplicate = match &mut self.set {
            Some(set) => !set.insert(name),
            None if self.list.contains(&name) => true,
            None => {
                self.list.push(name);
                if self.list.len() > 16 {
                    self.set = Some(self.list.drain(..).collect());
                }
                false
            }
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
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    deserializer.deserialize_map(Top {
        on_member: &mut on_member,
    })?;
    deserializer.end()
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
