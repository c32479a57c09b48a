//! The fast path for claims: one parse that deserializes the caller's type *and* picks out the registered
//! claims, with the same strictness as [`super::scan`] (duplicate member names at every level, bounded
//! depth, no trailing data).
//!
//! It wraps `serde_json`'s deserializer: every map the caller's type walks goes through a [`StrictMap`]
//! that rejects duplicate names, every value is nested under a depth budget, values the caller ignores are
//! still checked rather than skipped, and top-level members with a registered name (`exp`, `aud`, …) are
//! classified for the verifier before being handed on to the caller's type.
//!
//! This path may only be *less* accepting than the reference (scan, then `serde_json::from_slice`), never
//! more: when it fails for any reason the verifier reruns the reference path, which decides the outcome and
//! names the precise error. So an input shape this wrapper does not handle (say, a map with integer keys)
//! costs a second parse, never a wrong answer. A property test checks both paths agree.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::value::BorrowedStrDeserializer;
use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, IntoDeserializer, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};

use super::json::MAX_DEPTH;
use super::scan::{Classify, Field, Number, Str};

/// Where the fused pass leaves what the verifier needs from the claims.
pub(crate) trait ClaimSink<'de> {
    /// What the sink calls the members it wants.
    type Slot: Copy;
    /// Whether a top-level member name is one the verifier wants the value of, and where it goes.
    fn wants(&self, name: &str) -> Option<Self::Slot>;
    /// Records a top-level member name (for required claims).
    fn saw(&mut self, name: &str);
    /// Receives the classified value of a wanted member.
    fn take(&mut self, slot: Self::Slot, field: Field<'de>);
}

/// Parses `bytes` into `C`, feeding the sink on the way.
pub(crate) fn claims<'de, C, S>(bytes: &'de [u8], sink: &mut S) -> Result<C, serde_json::Error>
where
    C: de::Deserialize<'de>,
    S: ClaimSink<'de>,
{
    // Checking UTF-8 once for the whole payload lets the parser skip the check string by string.
    let text = std::str::from_utf8(bytes).map_err(|_| de::Error::custom("claims are not UTF-8"))?;
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value = C::deserialize(Top {
        inner: &mut deserializer,
        sink,
    })?;
    deserializer.end()?;
    Ok(value)
}

/// The top level: always an object, whatever the caller's type asks for.
struct Top<'s, D, S> {
    inner: D,
    sink: &'s mut S,
}

impl<'de, D: Deserializer<'de>, S: ClaimSink<'de>> Deserializer<'de> for Top<'_, D, S> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.inner.deserialize_map(TopVisitor {
            visitor,
            sink: self.sink,
        })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
        unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}

struct TopVisitor<'s, V, S> {
    visitor: V,
    sink: &'s mut S,
}

impl<'de, V: Visitor<'de>, S: ClaimSink<'de>> Visitor<'de> for TopVisitor<'_, V, S> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_map(TopMap {
            map,
            sink: self.sink,
            seen: Names::default(),
            pending: None,
        })
    }
}

struct TopMap<'s, 'de, A, S: ClaimSink<'de>> {
    map: A,
    sink: &'s mut S,
    seen: Names,
    /// Where the member whose value comes next goes, when the sink wants it.
    pending: Option<S::Slot>,
}

impl<'de, A: MapAccess<'de>, S: ClaimSink<'de>> MapAccess<'de> for TopMap<'_, 'de, A, S> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let Some(Str(name)) = self.map.next_key::<Str<'de>>()? else {
            return Ok(None);
        };
        self.seen.insert(&name)?;
        self.sink.saw(&name);
        let key = seed.deserialize(StrDe::<A::Error>::new(&name))?;
        self.pending = self.sink.wants(&name);
        Ok(Some(key))
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        let depth = MAX_DEPTH - 1;
        match self.pending.take() {
            Some(slot) => {
                let field = self.map.next_value_seed(Classify { depth })?;
                let value = seed.deserialize(FieldDe::<A::Error>::new(&field))?;
                self.sink.take(slot, field);
                Ok(value)
            }
            None => self.map.next_value_seed(StrictSeed { seed, depth }),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        self.map.size_hint()
    }
}

/// How many member names [`Names`] keeps inline before it spills to the heap.
const INLINE_NAMES: usize = 16;

/// The member names seen in one object, as 64-bit keys ([`name_key`]): no names are kept and none are
/// compared, which is most of what duplicate detection costs. Two different names with the same key count as
/// duplicates; that only sends the token to the reference path, which compares names exactly.
#[derive(Default)]
struct Names {
    inline: [u64; INLINE_NAMES],
    len: usize,
    spilled: Vec<u64>,
}

impl Names {
    fn insert<E: de::Error>(&mut self, name: &str) -> Result<(), E> {
        let key = name_key(name.as_bytes());
        let (inline, spilled) = (&self.inline[..self.len], &self.spilled);
        if inline.contains(&key) || spilled.contains(&key) {
            return Err(E::custom("duplicate member name"));
        }
        match self.inline.get_mut(self.len) {
            Some(slot) => {
                *slot = key;
                self.len += 1;
            }
            None => self.spilled.push(key),
        }
        Ok(())
    }
}

/// A 64-bit key for a member name. Names of up to eight bytes (nearly all of them) are their own key: a few
/// loads and shifts, no arithmetic. Longer ones are hashed eight bytes at a time. The keys are not
/// collision-resistant, and need not be: a collision costs a second parse, never a wrong answer.
fn name_key(bytes: &[u8]) -> u64 {
    let len = bytes.len();
    let length = (len as u64) << 58;
    match len {
        0 => 0,
        // Up to three bytes: the first, middle and last (overlapping for shorter names) are all of them.
        1..=3 => {
            u64::from(bytes[0])
                | u64::from(bytes[len / 2]) << 8
                | u64::from(bytes[len - 1]) << 16
                | length
        }
        // Four to eight bytes: the first four and the last four (overlapping), which with the length fix
        // the name.
        4..=8 => {
            (u64::from(word32(&bytes[..4])) | u64::from(word32(&bytes[len - 4..])) << 32) ^ length
        }
        // Longer: FxHash's multiply-rotate over eight bytes at a time, the last eight overlapping.
        _ => {
            const K: u64 = 0x517c_c1b7_2722_0a95;
            let mix = |hash: u64, word: u64| (hash.rotate_left(5) ^ word).wrapping_mul(K);
            let mut hash = length;
            let mut at = 0;
            while at + 8 < len {
                hash = mix(hash, word64(&bytes[at..at + 8]));
                at += 8;
            }
            mix(hash, word64(&bytes[len - 8..]))
        }
    }
}

fn word32(bytes: &[u8]) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(bytes);
    u32::from_le_bytes(word)
}

fn word64(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(bytes);
    u64::from_le_bytes(word)
}

/// A string already read, handed to the caller's type (borrowed when the input had no escapes).
struct StrDe<'a, 'de, E> {
    value: &'a Cow<'de, str>,
    error: PhantomData<E>,
}

impl<'a, 'de, E> StrDe<'a, 'de, E> {
    fn new(value: &'a Cow<'de, str>) -> Self {
        Self {
            value,
            error: PhantomData,
        }
    }
}

impl<'de, E: de::Error> Deserializer<'de> for StrDe<'_, 'de, E> {
    type Error = E;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, E> {
        match self.value {
            Cow::Borrowed(s) => visitor.visit_borrowed_str(s),
            Cow::Owned(s) => visitor.visit_str(s),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, E> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, E> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, E> {
        match self.value {
            Cow::Borrowed(s) => {
                BorrowedStrDeserializer::new(s).deserialize_enum(name, variants, visitor)
            }
            Cow::Owned(s) => s
                .as_str()
                .into_deserializer()
                .deserialize_enum(name, variants, visitor),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf unit
        unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

/// A registered claim's value, already classified, handed to the caller's type.
struct FieldDe<'a, 'de, E> {
    field: &'a Field<'de>,
    error: PhantomData<E>,
}

impl<'a, 'de, E> FieldDe<'a, 'de, E> {
    fn new(field: &'a Field<'de>) -> Self {
        Self {
            field,
            error: PhantomData,
        }
    }
}

impl<'de, E: de::Error> Deserializer<'de> for FieldDe<'_, 'de, E> {
    type Error = E;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, E> {
        match self.field {
            Field::Str(s) => StrDe::new(s).deserialize_any(visitor),
            Field::Number(Number::U64(n)) => visitor.visit_u64(*n),
            Field::Number(Number::I64(n)) => visitor.visit_i64(*n),
            Field::Number(Number::F64(n)) => visitor.visit_f64(*n),
            Field::Strings(list) => visitor.visit_seq(StrSeq {
                items: list.iter(),
                error: PhantomData,
            }),
            // A registered claim of any other type is an error anyway; the reference path names it.
            Field::Absent | Field::Other => Err(E::custom("registered claim of the wrong type")),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, E> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, E> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, E> {
        match self.field {
            Field::Str(s) => StrDe::new(s).deserialize_enum(name, variants, visitor),
            _ => self.deserialize_any(visitor),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf unit
        unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

struct StrSeq<'a, 'de, E> {
    items: std::slice::Iter<'a, Cow<'de, str>>,
    error: PhantomData<E>,
}

impl<'de, E: de::Error> SeqAccess<'de> for StrSeq<'_, 'de, E> {
    type Error = E;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, E> {
        self.items
            .next()
            .map(|s| seed.deserialize(StrDe::new(s)))
            .transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

/// A seed whose deserializer is wrapped in [`StrictDe`].
struct StrictSeed<S> {
    seed: S,
    depth: usize,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for StrictSeed<S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<S::Value, D::Error> {
        self.seed.deserialize(StrictDe {
            inner: deserializer,
            depth: self.depth,
        })
    }
}

/// A deserializer whose every map checks for duplicate names and whose nesting is bounded; values the
/// caller ignores are checked the same way instead of skipped.
struct StrictDe<D> {
    inner: D,
    /// How many more levels of arrays and objects may open below this value.
    depth: usize,
}

macro_rules! strict_methods {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
                self.inner.$method($($arg,)* StrictVisitor { visitor, depth: self.depth })
            }
        )*
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for StrictDe<D> {
    type Error = D::Error;

    strict_methods! {
        deserialize_any();
        deserialize_bool();
        deserialize_i8();
        deserialize_i16();
        deserialize_i32();
        deserialize_i64();
        deserialize_i128();
        deserialize_u8();
        deserialize_u16();
        deserialize_u32();
        deserialize_u64();
        deserialize_u128();
        deserialize_f32();
        deserialize_f64();
        deserialize_char();
        deserialize_str();
        deserialize_string();
        deserialize_bytes();
        deserialize_byte_buf();
        deserialize_option();
        deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_seq();
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map();
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier();
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.inner.deserialize_any(Ignore {
            visitor,
            depth: self.depth,
        })
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

fn descend<E: de::Error>(depth: usize) -> Result<usize, E> {
    depth
        .checked_sub(1)
        .ok_or_else(|| E::custom("nested too deeply"))
}

struct StrictVisitor<V> {
    visitor: V,
    depth: usize,
}

macro_rules! forward_visits {
    ($($method:ident($ty:ty);)*) => {
        $(
            fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
                self.visitor.$method(v)
            }
        )*
    };
}

impl<'de, V: Visitor<'de>> Visitor<'de> for StrictVisitor<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.visitor.expecting(f)
    }

    forward_visits! {
        visit_bool(bool);
        visit_i8(i8);
        visit_i16(i16);
        visit_i32(i32);
        visit_i64(i64);
        visit_i128(i128);
        visit_u8(u8);
        visit_u16(u16);
        visit_u32(u32);
        visit_u64(u64);
        visit_u128(u128);
        visit_f32(f32);
        visit_f64(f64);
        visit_char(char);
        visit_str(&str);
        visit_borrowed_str(&'de str);
        visit_string(String);
        visit_bytes(&[u8]);
        visit_borrowed_bytes(&'de [u8]);
        visit_byte_buf(Vec<u8>);
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.visitor.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.visitor.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<V::Value, D::Error> {
        self.visitor.visit_some(StrictDe {
            inner: deserializer,
            depth: self.depth,
        })
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<V::Value, D::Error> {
        self.visitor.visit_newtype_struct(StrictDe {
            inner: deserializer,
            depth: self.depth,
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        let depth = descend(self.depth)?;
        self.visitor.visit_seq(StrictSeq { seq, depth })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        let depth = descend(self.depth)?;
        self.visitor.visit_map(StrictMap {
            map,
            depth,
            seen: Names::default(),
        })
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        // An externally tagged enum is `"Variant"` or `{"Variant": content}`: count it as an object level.
        let depth = descend(self.depth)?;
        self.visitor.visit_enum(StrictEnum { data, depth })
    }
}

struct StrictSeq<A> {
    seq: A,
    depth: usize,
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for StrictSeq<A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        self.seq.next_element_seed(StrictSeed {
            seed,
            depth: self.depth,
        })
    }

    fn size_hint(&self) -> Option<usize> {
        self.seq.size_hint()
    }
}

struct StrictMap<A> {
    map: A,
    depth: usize,
    seen: Names,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for StrictMap<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let Some(Str(name)) = self.map.next_key::<Str<'de>>()? else {
            return Ok(None);
        };
        self.seen.insert(&name)?;
        seed.deserialize(StrDe::<A::Error>::new(&name)).map(Some)
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        self.map.next_value_seed(StrictSeed {
            seed,
            depth: self.depth,
        })
    }

    fn size_hint(&self) -> Option<usize> {
        self.map.size_hint()
    }
}

struct StrictEnum<A> {
    data: A,
    depth: usize,
}

impl<'de, A: EnumAccess<'de>> EnumAccess<'de> for StrictEnum<A> {
    type Error = A::Error;
    type Variant = StrictVariant<A::Variant>;

    fn variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<(T::Value, Self::Variant), A::Error> {
        let (value, variant) = self.data.variant_seed(seed)?;
        Ok((
            value,
            StrictVariant {
                variant,
                depth: self.depth,
            },
        ))
    }
}

struct StrictVariant<A> {
    variant: A,
    depth: usize,
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for StrictVariant<A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.variant.unit_variant()
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        self.variant.newtype_variant_seed(StrictSeed {
            seed,
            depth: self.depth,
        })
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.variant.tuple_variant(
            len,
            StrictVisitor {
                visitor,
                depth: self.depth,
            },
        )
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.variant.struct_variant(
            fields,
            StrictVisitor {
                visitor,
                depth: self.depth,
            },
        )
    }
}

/// A value the caller ignores: still checked for duplicates and depth, then reported as unit.
struct Ignore<V> {
    visitor: V,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Ignore<de::IgnoredAny> {
    type Value = de::IgnoredAny;

    fn deserialize<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<de::IgnoredAny, D::Error> {
        deserializer.deserialize_any(self)
    }
}

macro_rules! ignore_visits {
    ($($method:ident($ty:ty);)*) => {
        $(
            fn $method<E: de::Error>(self, _: $ty) -> Result<V::Value, E> {
                self.visitor.visit_unit()
            }
        )*
    };
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Ignore<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    ignore_visits! {
        visit_bool(bool);
        visit_i64(i64);
        visit_u64(u64);
        visit_f64(f64);
        visit_str(&str);
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.visitor.visit_unit()
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<V::Value, A::Error> {
        let depth = descend(self.depth)?;
        while seq
            .next_element_seed(Ignore {
                visitor: de::IgnoredAny,
                depth,
            })?
            .is_some()
        {}
        self.visitor.visit_unit()
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<V::Value, A::Error> {
        let depth = descend(self.depth)?;
        let mut seen = Names::default();
        while let Some(Str(name)) = map.next_key::<Str<'de>>()? {
            seen.insert(&name)?;
            map.next_value_seed(Ignore {
                visitor: de::IgnoredAny,
                depth,
            })?;
        }
        self.visitor.visit_unit()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use serde::Deserialize;

    use super::*;

    /// Records what the fused pass hands the verifier, for comparison with the reference scan.
    #[derive(Default)]
    struct Record(BTreeMap<String, String>);

    impl<'de> ClaimSink<'de> for Record {
        type Slot = &'static str;
        fn wants(&self, name: &str) -> Option<&'static str> {
            ["iss", "sub", "aud", "exp", "nbf", "iat", "jti"]
                .into_iter()
                .find(|registered| *registered == name)
        }
        fn saw(&mut self, _: &str) {}
        fn take(&mut self, name: &'static str, field: Field<'de>) {
            self.0.insert(name.to_owned(), format!("{field:?}"));
        }
    }

    fn reference(json: &str) -> Option<BTreeMap<String, String>> {
        let mut seen = BTreeMap::new();
        super::super::scan::object(json.as_bytes(), |name, field| {
            if Record::default().wants(name).is_some() {
                seen.insert(name.to_owned(), format!("{field:?}"));
            }
        })
        .ok()?;
        Some(seen)
    }

    /// A caller type that reads some members, ignores the rest and borrows nothing.
    #[derive(Debug, Deserialize, PartialEq)]
    struct Typed {
        iss: Option<String>,
        exp: Option<f64>,
        aud: Option<serde_json::Value>,
        a: Option<serde_json::Value>,
        b: Option<Vec<serde_json::Value>>,
    }

    /// Soundness: whenever the fast path accepts, the reference accepts too, with the same result.
    fn agrees<C>(json: &str) -> Result<(), TestCaseError>
    where
        C: serde::de::DeserializeOwned + PartialEq + fmt::Debug,
    {
        let mut record = Record::default();
        if let Ok(fast) = claims::<C, _>(json.as_bytes(), &mut record) {
            let scanned = reference(json);
            prop_assert!(
                scanned.is_some(),
                "fast path accepted what the scan rejects: {json}"
            );
            prop_assert_eq!(Some(record.0), scanned);
            let slow: C =
                serde_json::from_str(json).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(fast, slow);
        }
        Ok(())
    }

    fn value() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just("null".to_owned()),
            Just("true".to_owned()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<u64>().prop_map(|n| n.to_string()),
            Just("1.5e3".to_owned()),
            "[a-z\\u{e9}]{0,4}".prop_map(|s| format!("\"{s}\"")),
            Just(r#""esc\"aped\u00e9""#.to_owned()),
        ];
        leaf.prop_recursive(20, 64, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4)
                    .prop_map(|items| format!("[{}]", items.join(","))),
                prop::collection::vec((key(), inner), 0..4).prop_map(|members| object(&members)),
            ]
        })
    }

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("iss"),
            Just("sub"),
            Just("aud"),
            Just("exp"),
            Just("nbf"),
            Just("jti"),
            Just("a"),
            Just("b"),
            Just("\\u0061"),
            Just("\\u0065xp"),
        ]
        .prop_map(str::to_owned)
    }

    fn object(members: &[(String, String)]) -> String {
        let body: Vec<String> = members
            .iter()
            .map(|(k, v)| format!("\"{k}\":{v}"))
            .collect();
        format!("{{{}}}", body.join(","))
    }

    proptest! {
        #[test]
        fn the_fast_path_never_accepts_more_than_the_reference(
            members in prop::collection::vec((key(), value()), 0..6)
        ) {
            let json = object(&members);
            agrees::<serde_json::Value>(&json)?;
            agrees::<Typed>(&json)?;
            agrees::<serde::de::IgnoredAny>(&json)?;
        }
    }

    #[test]
    fn ignored_and_nested_values_are_still_strict() {
        let deep = format!(
            r#"{{"zz":{}{}}}"#,
            "[".repeat(MAX_DEPTH),
            "]".repeat(MAX_DEPTH)
        );
        for bad in [
            r#"{"zz":{"x":1,"x":2}}"#.to_owned(),
            r#"{"a":{"x":1,"\u0078":2}}"#.to_owned(),
            r#"{"b":[{"x":1,"x":2}]}"#.to_owned(),
            r#"{"exp":1,"\u0065xp":2}"#.to_owned(),
            r#"{"a":1} x"#.to_owned(),
            deep,
        ] {
            let mut record = Record::default();
            assert!(
                claims::<Typed, _>(bad.as_bytes(), &mut record).is_err(),
                "{bad}"
            );
            let mut record = Record::default();
            assert!(
                claims::<serde_json::Value, _>(bad.as_bytes(), &mut record).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn duplicates_are_found_among_many_names_and_long_names() {
        // More names than are kept inline, names longer than eight bytes, and names that share their
        // first and last four bytes.
        let names: Vec<String> = (0..40)
            .map(|i| format!("name_{i:02}_with_a_long_tail"))
            .chain(["abcdXYZefgh", "abcdxyzefgh", "ab", "ba", "a", "abc", "acb"].map(str::to_owned))
            .collect();
        let object = |names: &[String]| {
            let members: Vec<String> = names.iter().map(|n| format!(r#""{n}":1"#)).collect();
            format!("{{{}}}", members.join(","))
        };
        let distinct = object(&names);
        let value: serde_json::Value = claims(distinct.as_bytes(), &mut Record::default()).unwrap();
        assert_eq!(
            value.as_object().map(serde_json::Map::len),
            Some(names.len())
        );
        for twice in [3, 20, 39, 42, 46] {
            let mut repeated = names.clone();
            repeated.push(names[twice].clone());
            let json = object(&repeated);
            assert!(
                claims::<serde_json::Value, _>(json.as_bytes(), &mut Record::default()).is_err(),
                "{}",
                names[twice]
            );
            let nested = format!(r#"{{"outer":{json}}}"#);
            assert!(
                claims::<serde::de::IgnoredAny, _>(nested.as_bytes(), &mut Record::default())
                    .is_err()
            );
        }
    }

    #[test]
    fn registered_claims_reach_both_the_verifier_and_the_callers_type() {
        let json = r#"{"iss":"me","exp":1700000000,"aud":["x","y"],"a":{"k":[1,2]},"other":{"deep":[{}]}}"#;
        let mut record = Record::default();
        let typed: Typed = claims(json.as_bytes(), &mut record).unwrap();
        assert_eq!(typed.iss.as_deref(), Some("me"));
        assert_eq!(typed.exp, Some(1_700_000_000.0));
        assert_eq!(typed.aud, Some(serde_json::json!(["x", "y"])));
        assert_eq!(record.0.len(), 3);
        assert!(record.0["exp"].contains("U64(1700000000)"));
    }
}
