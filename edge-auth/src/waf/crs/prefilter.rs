//! Rules skipped without listing their values: the regexes of rules that read request values through the
//! same transformations are compiled together, a few at a time, into `RegexSet`s (groups), each run once
//! per request value of the collections its rules read. CRS runs about 300 regexes per phase over the
//! same few dozen values, and on most requests most of them match nothing anywhere.
//!
//! Two questions are answered from a group's scans, both only ever ruling out:
//! - whether a rule's pattern matched any value of the collections its group reads: if not, the rule is
//!   skipped without listing its values (most rules, on most requests);
//! - whether it matched a given value: if not, its own regex is not run on that value.
//!
//! A pattern the set matched is run again on its own (for its captures, and because a rule's own
//! targets, exclusions and chain still decide), so a set never changes a verdict.
//!
//! Measured (benches/README.md): a group of 4 patterns is the sweet spot here. One set per transformation
//! list (up to ~100 patterns) made a diverse corpus three times slower than no sets at all: its lazy DFA
//! spends its time building states for inputs it has not seen.

use std::collections::HashMap;

use regex::bytes::{RegexSet, RegexSetBuilder};

use super::operator::{Operator, Pattern};
use super::rule::{Collection, Compiled, Member, Rule, Step, Target};
use super::transform::{self, Transform};

/// The most patterns in one set.
const GROUP_SIZE: usize = 4;

/// The rules of one transformation list.
#[derive(Debug)]
pub(crate) struct Group {
    /// Their patterns, in the order of the rules' indexes; `None` if the set did not compile.
    pub(crate) set: Option<RegexSet>,
    /// The transformation list.
    pub(crate) transforms: Vec<Transform>,
    /// Every collection any of its rules reads, whole (a superset of what each rule reads).
    pub(crate) targets: Vec<Target>,
}

/// Groups the eligible rules of `compiled` by transformation list and compiles each group's set.
pub(crate) fn build(compiled: &mut Compiled) {
    let mut by_list: HashMap<u64, usize> = HashMap::new();
    let mut groups: Vec<(Vec<Transform>, Vec<Target>, Vec<String>)> = Vec::new();
    for list in [&mut compiled.phase1, &mut compiled.phase2] {
        for step in list.iter_mut() {
            if let Step::Rule(rule) = step {
                let mut link: Option<&mut Rule> = Some(rule);
                while let Some(rule) = link {
                    assign(rule, &mut by_list, &mut groups);
                    link = rule.chain.as_deref_mut();
                }
            }
        }
    }
    compiled.groups = groups
        .into_iter()
        .map(|(transforms, targets, patterns)| Group {
            set: RegexSetBuilder::new(&patterns)
                .unicode(false)
                .dot_matches_new_line(true)
                .multi_line(true)
                .size_limit(256 << 20)
                .dfa_size_limit(64 << 20)
                .build()
                .ok(),
            transforms,
            targets,
        })
        .collect();
}

/// Puts `rule` in its transformation list's group when a set can stand in for its regex: a plain
/// (not negated, not `multiMatch`) linear-time `@rx` over request values only (TX and the matched
/// variables change while rules run; values are cached by their place in the request).
fn assign(
    rule: &mut Rule,
    by_list: &mut HashMap<u64, usize>,
    groups: &mut Vec<(Vec<Transform>, Vec<Target>, Vec<String>)>,
) {
    let Operator::Rx(Pattern::Linear(regex)) = &rule.operator else {
        return;
    };
    let request_only = !rule.targets.is_empty()
        && rule.targets.iter().all(|t| {
            !t.count
                && !matches!(
                    t.collection,
                    Collection::Tx
                        | Collection::MatchedVar
                        | Collection::MatchedVarName
                        | Collection::MatchedVars
                        | Collection::MatchedVarsNames
                )
        });
    let Some(list) = transform::list_key(&rule.transforms) else {
        return;
    };
    if rule.negated || rule.multi_match || !request_only {
        return;
    }
    // A group holds at most GROUP_SIZE patterns: a lazy DFA over the union of many large patterns
    // spends its time building states on inputs it has not seen.
    let mut index = *by_list.entry(list).or_insert_with(|| {
        groups.push((rule.transforms.clone(), Vec::new(), Vec::new()));
        groups.len() - 1
    });
    if groups.get(index).is_some_and(|g| g.2.len() >= GROUP_SIZE) {
        groups.push((rule.transforms.clone(), Vec::new(), Vec::new()));
        index = groups.len() - 1;
        by_list.insert(list, index);
    }
    let Some((_, targets, patterns)) = groups.get_mut(index) else {
        return;
    };
    for target in &rule.targets {
        let whole = Target {
            collection: target.collection,
            member: Member::All,
            count: false,
            xpath: target.xpath.clone(),
        };
        if !targets
            .iter()
            .any(|t| t.collection == whole.collection && t.xpath == whole.xpath)
        {
            targets.push(whole);
        }
    }
    rule.prefilter = Some((index, patterns.len()));
    patterns.push(regex.as_str().to_owned());
}
