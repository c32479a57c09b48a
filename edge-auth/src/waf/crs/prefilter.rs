//! Which rules' regexes (and phrase lists) are worth running on a value, found in one search.
//!
//! CRS runs ~90 regexes at paranoia 1 over every argument, header and cookie, and most request values
//! hold none of the keywords or punctuation they look for. Each regex's *required literals* (one of which
//! starts, or ends, every match) are found when the rules compile, by `regex-syntax`'s extractor on the
//! parsed pattern; with each `@pm`'s phrases they go into one Aho-Corasick automaton, each literal
//! naming the rules (their slots) that require it. The engine runs it once per request value as it came,
//! and again on a value only where a rule's transformations changed it, and keeps the slots whose
//! literals occur ([`Prefilter::candidates`]): a rule outside them cannot match that value, and a rule
//! outside them for every value its targets hold is skipped without reading them. Sound by
//! construction: a literal set is only used when it is finite and none of its literals is empty.

use std::collections::HashMap;
use std::rc::Rc;

use aho_corasick::AhoCorasick;
use regex_syntax::hir::literal::{ExtractKind, Extractor};
use regex_syntax::hir::{self, Class, Hir, HirKind};

use super::operator::{Operator, Pattern};
use super::rule::{Compiled, Rule, Step};
use super::transform::Transform;

/// The required literals of every rule's regex, in one automaton.
#[derive(Debug)]
pub(crate) struct Prefilter {
    searcher: AhoCorasick,
    /// For each literal of the automaton, the rules (their slots) that require it.
    owners: Vec<Vec<u32>>,
    slots: usize,
}

/// The rules a [`Prefilter`] found worth running on one value, as a bit per slot.
pub(crate) type Candidates = Rc<[u64]>;

impl Prefilter {
    /// The slots of the rules whose required literals occur in `value`.
    pub(crate) fn candidates(&self, value: &[u8]) -> Candidates {
        // Built in place: one allocation (a `Vec` turned into an `Rc` would be two).
        let mut candidates: Candidates = std::iter::repeat_n(0, self.slots.div_ceil(64)).collect();
        if let Some(bits) = Rc::get_mut(&mut candidates) {
            for found in self.searcher.find_overlapping_iter(value) {
                for &slot in &self.owners[found.pattern().as_usize()] {
                    let slot = slot as usize;
                    bits[slot / 64] |= 1 << (slot % 64);
                }
            }
        }
        candidates
    }
}

/// Whether `slot` is among `candidates`.
pub(crate) fn has(candidates: &[u64], slot: u32) -> bool {
    let slot = slot as usize;
    candidates
        .get(slot / 64)
        .is_some_and(|word| word >> (slot % 64) & 1 == 1)
}

/// Numbers every rule's transformation list (the engine's cache of transformed values is keyed by it)
/// and target list (the engine keeps, per phase, what the prefilter found in each list's values), and
/// builds the prefilter from the required literals of every rule's regex.
pub(crate) fn index(compiled: &mut Compiled) -> Result<(), String> {
    let mut lists: Vec<Vec<Transform>> = Vec::new();
    let mut target_lists: Vec<String> = Vec::new();
    let mut literals: HashMap<Vec<u8>, Vec<u32>> = HashMap::new();
    let mut slots = 0u32;
    let mut visit = |rule: &mut Rule| {
        let list = lists
            .iter()
            .position(|l| *l == rule.transforms)
            .unwrap_or_else(|| {
                lists.push(rule.transforms.clone());
                lists.len() - 1
            });
        rule.list = u16::try_from(list).unwrap_or(u16::MAX);
        rule.acts_on = rule.transforms.iter().fold(0, |all, t| all | t.acts_on());
        let request_data = rule
            .targets
            .iter()
            .all(|t| t.collection.is_request_data() && !t.count);
        rule.targets_id = request_data.then(|| {
            // Members by regex have no equality of their own: lists are told apart as written.
            let key = format!("{:?}", rule.targets);
            let at = target_lists
                .iter()
                .position(|k| *k == key)
                .unwrap_or_else(|| {
                    target_lists.push(key);
                    target_lists.len() - 1
                });
            u32::try_from(at).unwrap_or(u32::MAX)
        });
        rule.prefilter_slot = None;
        let required = match &rule.operator {
            Operator::Rx(Pattern::Linear(regex)) => required(regex.as_str()),
            // `@pm` is exactly the question the prefilter asks.
            Operator::Pm(_, phrases) if !phrases.is_empty() => Some(minimal(phrases.clone())),
            _ => None,
        };
        let Some(required) = required else {
            return;
        };
        rule.prefilter_slot = Some(slots);
        for literal in required {
            literals.entry(literal).or_default().push(slots);
        }
        slots += 1;
    };
    for step in compiled.phase1.iter_mut().chain(compiled.phase2.iter_mut()) {
        let Step::Rule(rule) = step else { continue };
        let mut link: Option<&mut Rule> = Some(rule);
        while let Some(rule) = link {
            visit(rule);
            link = rule.chain.as_deref_mut();
        }
    }
    if lists.len() > usize::from(u16::MAX) {
        return Err("more than 65535 distinct transformation lists".into());
    }
    if slots == 0 {
        compiled.prefilter = None;
        return Ok(());
    }
    let (patterns, owners): (Vec<_>, Vec<_>) = literals.into_iter().unzip();
    let searcher = AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .build(patterns)
        .map_err(|e| format!("the prefilter's automaton: {e}"))?;
    compiled.prefilter = Some(Prefilter {
        searcher,
        owners,
        slots: slots as usize,
    });
    Ok(())
}

/// The literals, lowercased, one of which occurs (ASCII case aside) in every value `pattern` matches;
/// `None` when there is no such finite set, or one of its literals is empty (matches anywhere).
///
/// The pattern is read as the engine compiles it (bytes, `s` and `m` flags). A case-insensitive letter
/// (`[Aa]`, what `(?i)` makes of `a`) is read as the lower-case letter first, so `(?i)select` gives one
/// literal rather than 64 case variants; the search for them then ignores ASCII case, so every match
/// of the pattern still contains one of them.
pub(crate) fn required(pattern: &str) -> Option<Vec<Vec<u8>>> {
    let parsed = parse(pattern)?;
    let folded = fold_case(&parsed);
    [ExtractKind::Prefix, ExtractKind::Suffix]
        .into_iter()
        .filter_map(|kind| {
            let seq = Extractor::new().kind(kind).extract(&folded);
            let literals = seq.literals()?;
            if literals.is_empty() || literals.iter().any(|l| l.as_bytes().is_empty()) {
                return None;
            }
            Some(minimal(
                literals
                    .iter()
                    .map(|l| l.as_bytes().to_ascii_lowercase())
                    .collect(),
            ))
        })
        // The set whose shortest literal is longest says the most; then the smaller set.
        .max_by_key(|set| {
            let shortest = set.iter().map(Vec::len).min().unwrap_or(0);
            (shortest, std::cmp::Reverse(set.len()))
        })
}

/// `pattern` parsed as the engine compiles it: bytes, not text; `s` and `m` flags.
fn parse(pattern: &str) -> Option<Hir> {
    regex_syntax::ParserBuilder::new()
        .unicode(false)
        .utf8(false)
        .dot_matches_new_line(true)
        .multi_line(true)
        .build()
        .parse(pattern)
        .ok()
}

/// `literals` without those that contain another of them: a value holding the longer one holds the
/// shorter, so it adds nothing to the question "does the value hold one of them?".
fn minimal(mut literals: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    literals.sort_unstable_by_key(Vec::len);
    let mut kept: Vec<Vec<u8>> = Vec::with_capacity(literals.len());
    for literal in literals {
        if !kept
            .iter()
            .any(|k| memchr::memmem::find(&literal, k).is_some())
        {
            kept.push(literal);
        }
    }
    kept.sort_unstable();
    kept
}

/// `hir` with each class of exactly one ASCII letter in both cases replaced by the lower-case letter.
fn fold_case(hir: &Hir) -> Hir {
    match hir.kind() {
        HirKind::Class(Class::Bytes(class)) => match class.ranges() {
            [upper, lower]
                if upper.start() == upper.end()
                    && lower.start() == lower.end()
                    && upper.start().is_ascii_uppercase()
                    && upper.start().to_ascii_lowercase() == lower.start() =>
            {
                Hir::literal([lower.start()])
            }
            _ => hir.clone(),
        },
        HirKind::Concat(subs) => Hir::concat(subs.iter().map(fold_case).collect()),
        HirKind::Alternation(subs) => Hir::alternation(subs.iter().map(fold_case).collect()),
        HirKind::Repetition(repetition) => Hir::repetition(hir::Repetition {
            sub: Box::new(fold_case(&repetition.sub)),
            ..repetition.clone()
        }),
        HirKind::Capture(capture) => Hir::capture(hir::Capture {
            sub: Box::new(fold_case(&capture.sub)),
            ..capture.clone()
        }),
        HirKind::Empty | HirKind::Literal(_) | HirKind::Class(_) | HirKind::Look(_) => hir.clone(),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use regex_syntax::hir::{Hir, HirKind};

    use super::required;

    fn words(list: &[&str]) -> Option<Vec<Vec<u8>>> {
        Some(list.iter().map(|w| w.as_bytes().to_vec()).collect())
    }

    #[test]
    fn keywords_without_case_are_one_literal_each() {
        assert_eq!(
            required(r"(?i)\b(?:union|select)\b"),
            words(&["select", "union"])
        );
    }

    #[test]
    fn a_literal_that_holds_another_is_left_out() {
        assert_eq!(required(r"(?:sel|xselx)"), words(&["sel"]));
    }

    #[test]
    fn a_pattern_that_can_start_anywhere_is_read_from_its_end() {
        assert_eq!(required(r"[a-z]+\.php"), words(&[".php"]));
    }

    #[test]
    fn no_set_when_a_match_needs_no_literal() {
        assert_eq!(required(r"[a-z]+[0-9]*"), None);
        assert_eq!(required(r"(?:abc)?"), None);
        assert_eq!(required(r"^"), None);
        // Starts with any byte but `\`, ends with one of 20: no set worth searching for.
        assert_eq!(required(r"(?:^|[^\\])\\[cdeghijklmpqwxyz123456789]"), None);
        assert_eq!(required(r"a(?=b)"), None, "look-around: not this engine's");
    }

    /// Patterns of CRS's shapes (several taken from its rules, shortened): case-insensitive keyword
    /// alternations, optional parts, classes, repetitions, anchors and word boundaries.
    const PATTERNS: &[&str] = &[
        r"(?i)\b(?:union|select)\b[\s\x0b]*(?:all|distinct)?[\s\x0b]*\(",
        r"(?i)<script[^>]*>[\s\S]*?",
        r"(?i)(?:\b(?:f(?:rom|or)|in(?:to)?)\b|[\s\x0b]*@@)[\s\x0b]*[a-z]{1,3}",
        r"(?i)(?:\$\{|%\{)[a-z_]+\}",
        r#"['"`]\s*(?:or|and)\s+['"`]?\d"#,
        r"(?i)\.(?:php[0-9s]?|phtml|pht)$",
        r"(?i)(?:/|\\)\.\.(?:/|\\)",
        r"(?i)on(?:error|load|click)[\s\x0b]*=",
        r"[a-z0-9]{2,}(?:\.cgi|\.pl)",
        r"(?i)%(?:0[ad]|2e|5c)",
    ];

    /// `hir` without its look-arounds (`\b`, `^`): proptest cannot generate for them; the values it
    /// generates are then kept only where the pattern itself matches.
    fn without_looks(hir: &Hir) -> Hir {
        match hir.kind() {
            HirKind::Look(_) => Hir::empty(),
            HirKind::Concat(subs) => Hir::concat(subs.iter().map(without_looks).collect()),
            HirKind::Alternation(subs) => {
                Hir::alternation(subs.iter().map(without_looks).collect())
            }
            HirKind::Repetition(r) => Hir::repetition(regex_syntax::hir::Repetition {
                sub: Box::new(without_looks(&r.sub)),
                ..r.clone()
            }),
            HirKind::Capture(c) => Hir::capture(regex_syntax::hir::Capture {
                sub: Box::new(without_looks(&c.sub)),
                ..c.clone()
            }),
            _ => hir.clone(),
        }
    }

    fn matching(pattern: &'static str) -> impl Strategy<Value = (usize, Vec<u8>)> {
        let parsed = super::parse(pattern).unwrap();
        let index = PATTERNS.iter().position(|p| *p == pattern).unwrap();
        proptest::string::bytes_regex_parsed(&without_looks(&parsed))
            .unwrap()
            .prop_map(move |value| (index, value))
    }

    proptest! {
        /// The prefilter's promise: every value a pattern matches holds one of its required literals
        /// (ASCII case aside). Values are generated from the pattern itself, with text around them.
        #[test]
        fn every_match_holds_a_required_literal(
            (index, value) in proptest::strategy::Union::new(PATTERNS.iter().map(|p| matching(p).boxed())),
            before in proptest::collection::vec(any::<u8>(), 0..8),
            after in proptest::collection::vec(any::<u8>(), 0..8),
        ) {
            let pattern = PATTERNS[index];
            let regex = regex::bytes::RegexBuilder::new(pattern)
                .unicode(false)
                .dot_matches_new_line(true)
                .multi_line(true)
                .build()
                .unwrap();
            let value = [before, value, after].concat();
            prop_assume!(regex.is_match(&value));
            let literals = required(pattern).expect("each of these patterns has required literals");
            let lowered = value.to_ascii_lowercase();
            prop_assert!(
                literals.iter().any(|l| memchr::memmem::find(&lowered, l).is_some()),
                "{pattern} matches {:?}, which holds none of {literals:?}",
                String::from_utf8_lossy(&value)
            );
        }
    }
}
