//! Feature flags and A/B tests: one JSON document in KV, evaluated at the edge with no origin round trip.
//!
//! # The document
//!
//! ```json
//! {
//!   "flags": {
//!     "home-hero": {
//!       "variants": ["control", "bold"],
//!       "default": "control",
//!       "rules": [ { "countries": ["DE", "AT"], "serve": "bold" },
//!                  { "attributes": { "plan": ["beta"] }, "serve": "bold" } ],
//!       "rollout": [ { "variant": "control", "weight": 5000 }, { "variant": "bold", "weight": 5000 } ]
//!     }
//!   }
//! }
//! ```
//!
//! - `variants`: the names a flag can take; `default` must be one of them.
//! - `rules`, in order: the first whose `countries` (if given) contains the request's country and whose
//!   `attributes` (if given) all match serves its variant.
//! - `rollout`: weights in basis points (summing to 10 000) over variants; a user is placed by a stable hash of
//!   flag name and user id, so the same user always gets the same variant, on every host and every version.
//! - `enabled: false` serves the default.
//!
//! A document that is not valid JSON, names an unknown variant, or has weights that do not sum to 10 000 is
//! refused as a whole ([`ErrorKind::Corrupt`]); [`FlagClient`] then answers every question with the caller's
//! default. Evaluation never fails and never panics.

use std::collections::BTreeMap;
use std::fmt;

use edge_core::{Clock, Error, ErrorKind, KvStore, RequestGeo, WaitUntil};
use serde::Deserialize;

use crate::patterns::LazyDocument;

/// Total of a rollout's weights.
pub const WEIGHT_TOTAL: u32 = 10_000;

/// A validated flag document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlagSet {
    flags: BTreeMap<String, Flag>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Flag {
    #[serde(default = "enabled_default")]
    enabled: bool,
    variants: Vec<String>,
    default: String,
    #[serde(default)]
    rules: Vec<Rule>,
    #[serde(default)]
    rollout: Vec<Split>,
}

fn enabled_default() -> bool {
    true
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    #[serde(default)]
    countries: Vec<String>,
    #[serde(default)]
    attributes: BTreeMap<String, Vec<String>>,
    serve: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Split {
    variant: String,
    weight: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    flags: BTreeMap<String, Flag>,
}

/// Who is asking: the inputs of targeting and bucketing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FlagContext {
    /// A stable identifier for bucketing (user id, or an anonymous id from a cookie).
    pub user_id: Option<String>,
    /// Where the request comes from.
    pub geo: RequestGeo,
    /// Other request attributes rules can match (`plan`, `platform`, …).
    pub attributes: BTreeMap<String, String>,
}

impl FlagContext {
    /// An anonymous context.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the bucketing id.
    #[must_use]
    pub fn with_user(mut self, user_id: impl Into<String>) -> Self {
        self.user_id = Some(user_id.into());
        self
    }

    /// Sets the location.
    #[must_use]
    pub fn with_geo(mut self, geo: RequestGeo) -> Self {
        self.geo = geo;
        self
    }

    /// Adds an attribute.
    #[must_use]
    pub fn with_attribute(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.attributes.insert(name.into(), value.into());
        self
    }
}

/// Why a variant was chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// The flag is disabled: its default.
    Disabled,
    /// The rule at this index matched.
    Rule(usize),
    /// Placed by the rollout's weights.
    Rollout,
    /// No rule matched and no rollout applied (or no user id to bucket): the flag's default.
    Default,
    /// The flag or the document could not be used: the caller's fallback.
    Fallback,
}

/// The outcome of evaluating a flag.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Decision {
    /// The variant to serve.
    pub variant: String,
    /// Why.
    pub reason: Reason,
}

impl FlagSet {
    /// Parses and validates a flag document.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Corrupt`] naming the first problem: invalid JSON, unknown fields, an empty or duplicated
    /// variant list, a default, rule or rollout naming an unknown variant, weights not summing to 10 000, or
    /// a country that is not a two-letter code.
    pub fn from_json(json: &[u8]) -> Result<Self, Error> {
        let document: Document = serde_json::from_slice(json)
            .map_err(|e| Error::with_source(ErrorKind::Corrupt, "flag document is not valid", e))?;
        for (name, flag) in &document.flags {
            flag.validate().map_err(|problem| {
                Error::new(ErrorKind::Corrupt, format!("flag `{name}`: {problem}"))
            })?;
        }
        Ok(Self {
            flags: document.flags,
        })
    }

    /// The names of the flags, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.flags.keys().map(String::as_str)
    }

    /// Evaluates `flag` for `context`; `None` if there is no such flag.
    #[must_use]
    pub fn evaluate(&self, flag: &str, context: &FlagContext) -> Option<Decision> {
        let spec = self.flags.get(flag)?;
        let decide = |variant: &str, reason| {
            Some(Decision {
                variant: variant.to_owned(),
                reason,
            })
        };
        if !spec.enabled {
            return decide(&spec.default, Reason::Disabled);
        }
        for (index, rule) in spec.rules.iter().enumerate() {
            if rule.matches(context) {
                return decide(&rule.serve, Reason::Rule(index));
            }
        }
        if let (false, Some(user)) = (spec.rollout.is_empty(), &context.user_id) {
            let point = bucket(flag, user);
            let mut upper = 0;
            for split in &spec.rollout {
                upper += split.weight;
                if point < upper {
                    return decide(&split.variant, Reason::Rollout);
                }
            }
        }
        decide(&spec.default, Reason::Default)
    }
}

impl Flag {
    fn validate(&self) -> Result<(), String> {
        if self.variants.is_empty() {
            return Err("has no variants".to_owned());
        }
        for (i, v) in self.variants.iter().enumerate() {
            if v.is_empty() || self.variants[..i].contains(v) {
                return Err(format!("variant `{v}` is empty or repeated"));
            }
        }
        let known = |v: &str| self.variants.iter().any(|k| k == v);
        if !known(&self.default) {
            return Err(format!("default `{}` is not a variant", self.default));
        }
        for rule in &self.rules {
            if !known(&rule.serve) {
                return Err(format!("a rule serves unknown variant `{}`", rule.serve));
            }
            if let Some(bad) = rule
                .countries
                .iter()
                .find(|c| c.len() != 2 || !c.bytes().all(|b| b.is_ascii_alphanumeric()))
            {
                return Err(format!("`{bad}` is not a two-letter country code"));
            }
        }
        if !self.rollout.is_empty() {
            if let Some(split) = self.rollout.iter().find(|s| !known(&s.variant)) {
                return Err(format!(
                    "the rollout names unknown variant `{}`",
                    split.variant
                ));
            }
            let total: u64 = self.rollout.iter().map(|s| u64::from(s.weight)).sum();
            if total != u64::from(WEIGHT_TOTAL) {
                return Err(format!(
                    "rollout weights sum to {total}, not {WEIGHT_TOTAL}"
                ));
            }
        }
        Ok(())
    }
}

impl Rule {
    fn matches(&self, context: &FlagContext) -> bool {
        let country_ok = self.countries.is_empty()
            || context
                .geo
                .country
                .as_deref()
                .is_some_and(|c| self.countries.iter().any(|r| r.eq_ignore_ascii_case(c)));
        let attributes_ok = self.attributes.iter().all(|(name, allowed)| {
            context
                .attributes
                .get(name)
                .is_some_and(|v| allowed.contains(v))
        });
        country_ok && attributes_ok
    }
}

/// The stable bucket of `user` for `flag`, in `0..10_000`: FNV-1a over `flag`, a separator and `user`,
/// finished with a SplitMix64 mix. Part of the contract: it must never change, or users would switch
/// variants on upgrade.
#[must_use]
pub fn bucket(flag: &str, user: &str) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in flag
        .bytes()
        .chain(std::iter::once(0xff))
        .chain(user.bytes())
    {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash = (hash ^ (hash >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    hash = (hash ^ (hash >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    hash ^= hash >> 31;
    // The remainder is below 10 000, so it fits.
    u32::try_from(hash % u64::from(WEIGHT_TOTAL)).unwrap_or(0)
}

/// Flags read from one KV key, cached in memory, evaluated with a fallback on any error.
///
/// ```
/// use bytes::Bytes;
/// use edge_core::{KvStore, ManualClock, RequestGeo, kv::PutOptions, wait_until::QueuedWaitUntil};
/// use edge_kv::{MemoryKv, flags::{FlagClient, FlagContext}};
///
/// # futures::executor::block_on(async {
/// let kv = MemoryKv::new();
/// let doc = br#"{"flags":{"checkout":{"variants":["old","new"],"default":"old",
///                 "rules":[{"countries":["NZ"],"serve":"new"}]}}}"#;
/// kv.put("flags", Bytes::from_static(doc), PutOptions::new()).await?;
/// let flags = FlagClient::new(kv, "flags", ManualClock::new(), QueuedWaitUntil::new());
///
/// let kiwi = FlagContext::new().with_geo(RequestGeo::new().with_country("NZ"));
/// assert_eq!(flags.variant("checkout", &kiwi, "old").await, "new");
/// assert_eq!(flags.variant("checkout", &FlagContext::new(), "old").await, "old");
/// assert_eq!(flags.variant("no-such-flag", &kiwi, "off").await, "off");
/// # Ok::<_, edge_core::Error>(()) }).unwrap();
/// ```
pub struct FlagClient<S: KvStore, C, W> {
    document: LazyDocument<S, RawFlagSet, C, W>,
}

/// The document as stored; validated into a [`FlagSet`] when read.
#[derive(Debug)]
struct RawFlagSet(Result<FlagSet, Error>);

impl<'de> Deserialize<'de> for RawFlagSet {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        let bytes = serde_json::to_vec(&value).map_err(serde::de::Error::custom)?;
        Ok(Self(FlagSet::from_json(&bytes)))
    }
}

impl<S, C, W> FlagClient<S, C, W>
where
    S: KvStore + 'static,
    C: Clock + 'static,
    W: WaitUntil + 'static,
{
    /// Flags stored at `key` in `store`, cached for 30 s by `clock`, refreshed through `background`.
    pub fn new(store: S, key: impl Into<String>, clock: C, background: W) -> Self {
        let document = LazyDocument::new(store, key, clock, background)
            .with_ttl(std::time::Duration::from_secs(30));
        Self { document }
    }

    /// The current flag set.
    ///
    /// # Errors
    ///
    /// The document could not be read or is invalid.
    pub async fn flag_set(&self) -> Result<FlagSet, Error> {
        match &self.document.get().await?.0 {
            Ok(set) => Ok(set.clone()),
            Err(e) => Err(e.clone()),
        }
    }

    /// Evaluates `flag`, with `fallback` for any error (KV down, invalid document, unknown flag).
    pub async fn decide(&self, flag: &str, context: &FlagContext, fallback: &str) -> Decision {
        let fallback = || Decision {
            variant: fallback.to_owned(),
            reason: Reason::Fallback,
        };
        match self.document.get().await {
            Ok(raw) => match &raw.0 {
                Ok(set) => set.evaluate(flag, context).unwrap_or_else(fallback),
                Err(_) => fallback(),
            },
            Err(_) => fallback(),
        }
    }

    /// The variant of `flag` for `context`, or `fallback` on any error.
    pub async fn variant(&self, flag: &str, context: &FlagContext, fallback: &str) -> String {
        self.decide(flag, context, fallback).await.variant
    }
}

impl<S: KvStore, C, W> Clone for FlagClient<S, C, W> {
    fn clone(&self) -> Self {
        Self {
            document: self.document.clone(),
        }
    }
}

impl<S: KvStore, C, W> fmt::Debug for FlagClient<S, C, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlagClient")
            .field("document", &self.document)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"{"flags":{
        "hero":{"variants":["control","bold","calm"],"default":"control",
                "rules":[{"countries":["DE"],"serve":"bold"},{"attributes":{"plan":["beta"]},"serve":"calm"}],
                "rollout":[{"variant":"control","weight":5000},{"variant":"bold","weight":3000},{"variant":"calm","weight":2000}]},
        "off":{"enabled":false,"variants":["a","b"],"default":"a","rollout":[{"variant":"b","weight":10000}]}
    }}"#;

    #[test]
    fn rules_then_rollout_then_default() {
        let set = FlagSet::from_json(DOC.as_bytes()).unwrap();
        let german = FlagContext::new()
            .with_geo(RequestGeo::new().with_country("de"))
            .with_user("u1");
        assert_eq!(
            set.evaluate("hero", &german).unwrap(),
            Decision {
                variant: "bold".into(),
                reason: Reason::Rule(0)
            }
        );
        let beta = FlagContext::new().with_attribute("plan", "beta");
        assert_eq!(set.evaluate("hero", &beta).unwrap().reason, Reason::Rule(1));
        let anonymous = FlagContext::new();
        assert_eq!(
            set.evaluate("hero", &anonymous).unwrap(),
            Decision {
                variant: "control".into(),
                reason: Reason::Default
            }
        );
        assert_eq!(
            set.evaluate("off", &german).unwrap().reason,
            Reason::Disabled
        );
        assert!(set.evaluate("missing", &german).is_none());
    }

    #[test]
    fn bucketing_is_stable_and_follows_the_weights() {
        let set = FlagSet::from_json(DOC.as_bytes()).unwrap();
        // Pinned values: changing the hash would move users between variants.
        assert_eq!(bucket("hero", "user-1"), bucket("hero", "user-1"));
        assert_ne!(bucket("hero", "user-1"), bucket("other", "user-1"));
        let mut counts = BTreeMap::<String, u32>::new();
        for i in 0..20_000 {
            let decision = set
                .evaluate("hero", &FlagContext::new().with_user(format!("user-{i}")))
                .unwrap();
            assert_eq!(decision.reason, Reason::Rollout);
            *counts.entry(decision.variant).or_default() += 1;
        }
        let share = |v: &str| f64::from(counts[v]) / 20_000.0;
        assert!((share("control") - 0.5).abs() < 0.02, "{counts:?}");
        assert!((share("bold") - 0.3).abs() < 0.02, "{counts:?}");
        assert!((share("calm") - 0.2).abs() < 0.02, "{counts:?}");
    }

    #[test]
    fn invalid_documents_are_refused_whole() {
        let bad = [
            "not json",
            r#"{"flags":{"f":{"variants":[],"default":"a"}}}"#,
            r#"{"flags":{"f":{"variants":["a","a"],"default":"a"}}}"#,
            r#"{"flags":{"f":{"variants":["a"],"default":"b"}}}"#,
            r#"{"flags":{"f":{"variants":["a"],"default":"a","rules":[{"serve":"z"}]}}}"#,
            r#"{"flags":{"f":{"variants":["a"],"default":"a","rollout":[{"variant":"a","weight":9999}]}}}"#,
            r#"{"flags":{"f":{"variants":["a"],"default":"a","rollout":[{"variant":"q","weight":10000}]}}}"#,
            r#"{"flags":{"f":{"variants":["a"],"default":"a","rules":[{"countries":["Germany"],"serve":"a"}]}}}"#,
            r#"{"flags":{"f":{"variants":["a"],"default":"a","colour":"red"}}}"#,
            r#"{"flags":{"f":{"variants":["a"],"default":"a","rollout":[{"variant":"a","weight":4294967295},{"variant":"a","weight":10001}]}}}"#,
        ];
        for doc in bad {
            assert_eq!(
                FlagSet::from_json(doc.as_bytes()).unwrap_err().kind(),
                ErrorKind::Corrupt,
                "{doc}"
            );
        }
    }
}
