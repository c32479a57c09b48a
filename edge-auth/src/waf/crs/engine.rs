//! One transaction through the compiled rules: phase 1 on the request line and headers, the body read by
//! the processor phase 1 chose, phase 2 on everything.
//!
//! The semantics are ModSecurity 3's, which CRS is written against: a rule's `setvar`s run once for each
//! value that matches (so a rule matching two arguments adds its score twice), the `setvar`s of a chain's
//! links run as each link matches, the chain starter's message, `ctl`s, `skipAfter` and disruptive
//! action run when the whole chain has matched, and `MATCHED_VARS` is emptied only by a rule that does
//! not match.

use std::borrow::Cow;
use std::collections::HashMap;
use std::rc::Rc;

use super::operator::{self, Compare, Operator};
use super::prefilter;
use super::request::RequestData;
use super::rule::{
    Collection, Compiled, Ctl, Disruptive, Exclusion, Member, Rule, Selects, SetOp, Step, Target,
};
use super::transform::{self, Transform};
use super::{Outcome, RuleMatch};

/// The state of one request's evaluation. The request itself is passed to each phase (it is read, never
/// written, while rules run), so values are borrowed from it, not copied.
pub(crate) struct Transaction<'r> {
    rules: &'r Compiled,
    tx: HashMap<String, Vec<u8>>,
    matched_var: Option<(Vec<u8>, Vec<u8>)>,
    matched_vars: Vec<(Vec<u8>, Vec<u8>)>,
    /// Rules a `ctl` removed for the rest of the transaction.
    removed: Vec<Selects>,
    removed_targets: Vec<(Selects, Exclusion)>,
    pub(crate) body_processor: Option<String>,
    pub(crate) matches: Vec<RuleMatch>,
    /// Transformed request values, by the value's place in the request and the transformation list
    /// ([`Rule::list`]): CRS runs the same few lists over the same values in hundreds of rules.
    transformed: HashMap<(usize, usize, u16), Cached, foldhash::fast::RandomState>,
    /// Per target list and transformation list ([`Rule::targets_id`], [`Rule::list`]), the rules the
    /// prefilter found worth running on any of the targets' values.
    unions: HashMap<(u32, u16), prefilter::Candidates, foldhash::fast::RandomState>,
    /// Request values as they came, by their place in the request: the kinds of bytes in them and the
    /// prefilter's candidates on them.
    raw_candidates:
        HashMap<(usize, usize), (u16, Option<prefilter::Candidates>), foldhash::fast::RandomState>,
    /// libinjection's verdicts in this transaction by value: `@detectXSS`'s, then `@detectSQLi`'s.
    injections: [HashMap<Box<[u8]>, Option<Vec<Vec<u8>>>, foldhash::fast::RandomState>; 2],
}

/// A request value after one transformation list.
struct Cached {
    /// `None`: unchanged.
    transformed: Option<Rc<[u8]>>,
    /// The rules whose regexes may match the result; `None` when they are those of the value as it
    /// came (unchanged, or changed in ASCII case only), kept once in `raw_candidates`.
    candidates: Option<prefilter::Candidates>,
}

/// A value a target yields: its collection, its member name (empty for a scalar) and its bytes, borrowed
/// from the request where they live there.
struct Value<'a> {
    collection: Collection,
    member: Cow<'a, [u8]>,
    bytes: Cow<'a, [u8]>,
}

impl Value<'_> {
    /// `ARGS:q`, `REQUEST_URI`: the name `MATCHED_VAR_NAME` and logs show.
    fn name(&self) -> Vec<u8> {
        let mut name = self.collection.name().as_bytes().to_vec();
        if !self.member.is_empty() {
            name.push(b':');
            name.extend_from_slice(&self.member);
        }
        name
    }
}

/// libinjection's verdict for `op` (`@detectSQLi`, with its fingerprint, or `@detectXSS`) on `value`.
fn detect_injection(op: &Operator, value: &[u8]) -> Option<Vec<Vec<u8>>> {
    if matches!(op, Operator::DetectSqli) {
        let result = libinjectionrs::detect_sqli(value);
        result.is_injection().then(|| {
            vec![
                result
                    .fingerprint
                    .map(|f| f.as_bytes().to_vec())
                    .unwrap_or_default(),
            ]
        })
    } else {
        libinjectionrs::detect_xss(value)
            .is_injection()
            .then(Vec::new)
    }
}

/// `bytes` through `transforms`.
fn apply<'v>(transforms: &[Transform], bytes: &'v [u8]) -> Transformed<'v> {
    let mut current = Cow::Borrowed(bytes);
    for t in transforms {
        current = t.apply(current);
    }
    match current {
        Cow::Borrowed(same) => Transformed::Same(same),
        Cow::Owned(new) => Transformed::New(Rc::from(new)),
    }
}

/// A value after its rule's transformations: the value itself, or a new one (shared with the cache).
enum Transformed<'a> {
    Same(&'a [u8]),
    New(Rc<[u8]>),
}

impl std::ops::Deref for Transformed<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Self::Same(bytes) => bytes,
            Self::New(bytes) => bytes,
        }
    }
}

impl<'r> Transaction<'r> {
    pub(crate) fn new(rules: &'r Compiled, tx: &[(String, String)]) -> Self {
        Self {
            rules,
            tx: tx
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.as_bytes().to_vec()))
                .collect(),
            matched_var: None,
            matched_vars: Vec::new(),
            removed: Vec::new(),
            removed_targets: Vec::new(),
            body_processor: None,
            matches: Vec::new(),
            transformed: HashMap::default(),
            unions: HashMap::default(),
            raw_candidates: HashMap::default(),
            injections: Default::default(),
        }
    }

    /// A TX variable, as text.
    pub(crate) fn tx(&self, name: &str) -> Option<&[u8]> {
        self.tx.get(&name.to_ascii_lowercase()).map(Vec::as_slice)
    }

    /// Runs one request phase (1 or 2) over `request`; `Some` when a rule ended the transaction.
    pub(crate) fn run_phase(&mut self, request: &RequestData, phase: u8) -> Option<Outcome> {
        // The request grows between phases (the body is read): cached places may be reused.
        self.transformed.clear();
        self.unions.clear();
        self.raw_candidates.clear();
        let rules = self.rules;
        let steps = if phase == 1 {
            &rules.phase1
        } else {
            &rules.phase2
        };
        let block_denies = rules
            .block_denies
            .get(usize::from(phase) - 1)
            .copied()
            .unwrap_or(false);
        let mut skip_to: Option<&str> = None;
        for step in steps {
            let rule = match step {
                Step::Marker(name) => {
                    if skip_to == Some(name.as_str()) {
                        skip_to = None;
                    }
                    continue;
                }
                Step::Rule(rule) => rule,
            };
            if skip_to.is_some() || self.is_removed(rule) {
                continue;
            }
            if !self.run_chain(request, rule, rule) {
                continue;
            }
            for ctl in &rule.ctls {
                self.apply_ctl(ctl);
            }
            if rule.log {
                self.log_match(request, rule);
            }
            if let Some(marker) = &rule.skip_after {
                skip_to = Some(marker);
            }
            let disruptive = match rule.disruptive {
                Disruptive::Block if block_denies => Disruptive::Deny,
                other => other,
            };
            match disruptive {
                Disruptive::Deny | Disruptive::Drop => {
                    return Some(Outcome::Blocked {
                        rule: rule.id,
                        status: rule.status.unwrap_or(403),
                    });
                }
                Disruptive::Allow => return Some(Outcome::Allowed { rule: rule.id }),
                Disruptive::Pass | Disruptive::Block => {}
            }
        }
        None
    }

    /// Reports `rule` as matched, its message and data expanded now.
    fn log_match(&mut self, request: &RequestData, rule: &Rule) {
        let message = |e: &Option<super::macros::Expand>| {
            e.as_ref()
                .map(|e| {
                    String::from_utf8_lossy(&e.expand(&|c, m| self.lookup(request, rule, c, m)))
                        .into_owned()
                })
                .unwrap_or_default()
        };
        let (message, data) = (message(&rule.msg), message(&rule.logdata));
        self.matches.push(RuleMatch {
            id: rule.id,
            message,
            data,
            severity: rule.severity,
            tags: rule.tags.clone(),
        });
    }

    fn is_removed(&self, rule: &Rule) -> bool {
        self.removed.iter().any(|which| which.covers(rule))
    }

    /// Runs a rule and, while its links match, the rest of its chain.
    fn run_chain(&mut self, request: &RequestData, link: &Rule, top: &Rule) -> bool {
        if !self.run_link(request, link, top) {
            return false;
        }
        match &link.chain {
            Some(next) => self.run_chain(request, next, top),
            None => true,
        }
    }

    /// `value` through `link`'s transformations (from the cache when another rule did the same), and
    /// whether `link`'s operator may match it: `false` when its regex's required literals are not in it.
    fn transform<'v>(&mut self, link: &Rule, value: &'v Value<'_>) -> (Transformed<'v>, bool) {
        let Cow::Borrowed(bytes) = &value.bytes else {
            // Made for this rule (a count, a TX variable): nothing to share.
            let transformed = apply(&link.transforms, &value.bytes);
            let may_match = match (link.prefilter_slot, &self.rules.prefilter) {
                (Some(slot), Some(p)) => prefilter::has(&p.candidates(&transformed), slot),
                _ => true,
            };
            return (transformed, may_match);
        };
        if link.transforms.is_empty() && link.prefilter_slot.is_none() {
            return (Transformed::Same(bytes), true);
        }
        let (transformed, candidates) = self.cached(link, bytes);
        let transformed = match transformed {
            None => Transformed::Same(bytes),
            Some(new) => Transformed::New(new),
        };
        let may_match = match (link.prefilter_slot, candidates) {
            (Some(slot), Some(candidates)) => prefilter::has(&candidates, slot),
            _ => true,
        };
        (transformed, may_match)
    }

    /// A request value through `link`'s transformation list (`None`: unchanged), once per value and
    /// list, and the rules the prefilter found worth running on the result.
    fn cached(
        &mut self,
        link: &Rule,
        bytes: &[u8],
    ) -> (Option<Rc<[u8]>>, Option<prefilter::Candidates>) {
        let prefilter = self.rules.prefilter.as_ref();
        let cached = self
            .transformed
            .entry((bytes.as_ptr() as usize, bytes.len(), link.list))
            .or_insert_with(|| match apply(&link.transforms, bytes) {
                Transformed::Same(_) => Cached {
                    transformed: None,
                    candidates: None,
                },
                Transformed::New(new) => Cached {
                    // The prefilter ignores ASCII case: a value the list only lowercased has the
                    // candidates of the value as it came.
                    candidates: (!new.eq_ignore_ascii_case(bytes))
                        .then(|| prefilter.map(|p| p.candidates(&new)))
                        .flatten(),
                    transformed: Some(new),
                },
            });
        let transformed = cached.transformed.clone();
        let candidates = match &cached.candidates {
            Some(candidates) => Some(Rc::clone(candidates)),
            None => self.as_it_came(bytes).1,
        };
        (transformed, candidates)
    }

    /// A request value as it came: the kinds of bytes in it ([`transform::kinds`]) and the prefilter's
    /// candidates on it, once per value.
    fn as_it_came(&mut self, bytes: &[u8]) -> (u16, Option<prefilter::Candidates>) {
        let prefilter = self.rules.prefilter.as_ref();
        let (kinds, candidates) = self
            .raw_candidates
            .entry((bytes.as_ptr() as usize, bytes.len()))
            .or_insert_with(|| {
                (
                    transform::kinds(bytes),
                    prefilter.map(|p| p.candidates(bytes)),
                )
            });
        (*kinds, candidates.clone())
    }

    /// Whether the prefilter shows that `link` matches none of its targets' values: its regex's
    /// required literals are in none of them (exclusions aside: without them the values are a
    /// superset). Known once per phase for each target list and transformation list, so most of CRS's
    /// regex rules cost one lookup on a request that holds nothing they look for.
    fn matches_nothing(&mut self, request: &RequestData, link: &Rule) -> bool {
        let (Some(slot), Some(targets)) = (link.prefilter_slot, link.targets_id) else {
            return false;
        };
        // A negated operator matches what the regex does not; `multiMatch` tests the values part way
        // through the transformations too.
        if link.negated || link.multi_match {
            return false;
        }
        let key = (targets, link.list);
        if !self.unions.contains_key(&key) {
            let union = self.union(request, link);
            self.unions.insert(key, union);
        }
        self.unions
            .get(&key)
            .is_some_and(|union| !prefilter::has(union, slot))
    }

    /// The rules of `link`'s transformation list worth running on any of the values of its targets.
    fn union(&mut self, request: &RequestData, link: &Rule) -> prefilter::Candidates {
        let mut union: Vec<u64> = Vec::new();
        let mut add = |candidates: &[u64]| {
            if union.len() < candidates.len() {
                union.resize(candidates.len(), 0);
            }
            for (word, more) in union.iter_mut().zip(candidates) {
                *word |= more;
            }
        };
        let mut values = Vec::new();
        for target in &link.targets {
            self.collect(request, target, &mut values);
        }
        for value in &values {
            match &value.bytes {
                Cow::Borrowed(bytes) => {
                    // Most values hold nothing the list's transformations act on: their candidates
                    // are those of the value as it came, and the list need not run here.
                    let (kinds, as_it_came) = self.as_it_came(bytes);
                    let candidates = if kinds & link.acts_on == 0 {
                        as_it_came
                    } else {
                        self.cached(link, bytes).1
                    };
                    if let Some(candidates) = candidates {
                        add(&candidates);
                    }
                }
                Cow::Owned(bytes) => {
                    if let Some(p) = &self.rules.prefilter {
                        add(&p.candidates(&apply(&link.transforms, bytes)));
                    }
                }
            }
        }
        union.into()
    }

    /// One link: its operator on each of its targets' values.
    fn run_link(&mut self, request: &RequestData, link: &Rule, top: &Rule) -> bool {
        if link.unconditional && link.targets.is_empty() {
            self.set_vars(request, link, top);
            return true;
        }
        if self.matches_nothing(request, link) {
            self.matched_var = None;
            self.matched_vars.clear();
            return false;
        }
        let values = self.values(request, link, top);
        let mut matched = false;
        for value in &values {
            let mut candidates: Vec<Transformed<'_>> = Vec::new();
            if link.multi_match {
                // The value, then each transformation's result that differs from the one before.
                candidates.push(Transformed::Same(&value.bytes));
                let mut current = Cow::Borrowed(&*value.bytes);
                for t in &link.transforms {
                    let next = t.apply(current.clone());
                    if next != current {
                        candidates.push(Transformed::New(Rc::from(&*next)));
                    }
                    current = next;
                }
            }
            // The transformed value, unless the prefilter says the operator cannot match it (then the
            // test is known to fail: a negated operator matches).
            let mut known_miss = false;
            let single = (!link.multi_match).then(|| {
                let (transformed, may_match) = self.transform(link, value);
                known_miss = !may_match;
                transformed
            });
            for candidate in single.into_iter().chain(candidates) {
                let captures = if known_miss {
                    None
                } else if let Operator::DetectSqli | Operator::DetectXss = link.operator {
                    self.detect_injection(&link.operator, &candidate)
                } else {
                    self.test(request, &link.operator, &candidate, top, link.capture)
                };
                let hit = captures.is_some() != link.negated;
                if !hit {
                    continue;
                }
                matched = true;
                if link.capture {
                    if let Some(groups) = captures.filter(|_| !link.negated) {
                        for (i, group) in groups.into_iter().take(10).enumerate() {
                            self.tx.insert(i.to_string(), group);
                        }
                    }
                }
                let name = value.name();
                self.matched_var = Some((name.clone(), candidate.to_vec()));
                self.matched_vars.push((name, candidate.to_vec()));
                self.set_vars(request, link, top);
            }
        }
        // As ModSecurity 3 does: the matched variables are forgotten when a rule (or a link) does not
        // match, and kept, accumulating, while rules match, so a chain reading `MATCHED_VARS` sees the
        // matches of the rules that matched just before it too.
        if !matched {
            self.matched_var = None;
            self.matched_vars.clear();
        } else if self.rules.modsecurity_quirks
            && link.multi_match
            && link.chain.is_some()
            && top.log
            && std::ptr::eq(link, top)
        {
            self.log_match(request, top);
        }
        matched
    }

    /// The operator on one value: `Some` (with captures for `capture`) when it matches.
    fn test(
        &self,
        request: &RequestData,
        op: &Operator,
        value: &[u8],
        top: &Rule,
        capture: bool,
    ) -> Option<Vec<Vec<u8>>> {
        // A literal argument (`@eq 0`, most of CRS's) is borrowed, not copied per value.
        let lookup = |c: &str, m: Option<&str>| self.lookup(request, top, c, m);
        let found = |yes: bool| yes.then(Vec::new);
        match op {
            // Most values match nothing: the groups are only worth building for a match.
            Operator::Rx(pattern) if capture => {
                if pattern.is_match(value) {
                    pattern.captures(value)
                } else {
                    None
                }
            }
            Operator::Rx(pattern) => found(pattern.is_match(value)),
            Operator::Pm(automaton, _) => automaton
                .find(value)
                .map(|m| vec![value[m.start()..m.end()].to_vec()]),
            Operator::Contains(arg) => {
                found(memchr::memmem::find(value, &arg.expand(&lookup)).is_some())
            }
            Operator::BeginsWith(arg) => found(value.starts_with(&arg.expand(&lookup))),
            Operator::EndsWith(arg) => found(value.ends_with(&arg.expand(&lookup))),
            Operator::StrEq(arg) => found(value == &*arg.expand(&lookup)),
            Operator::Within(arg) => {
                found(memchr::memmem::find(&arg.expand(&lookup), value).is_some())
            }
            Operator::Compare(compare, arg) => {
                let (a, b) = (operator::atoi(value), operator::atoi(&arg.expand(&lookup)));
                found(match compare {
                    Compare::Eq => a == b,
                    Compare::Ge => a >= b,
                    Compare::Gt => a > b,
                    Compare::Le => a <= b,
                    Compare::Lt => a < b,
                })
            }
            Operator::ValidateByteRange(allowed) => {
                found(value.iter().any(|&b| !allowed[usize::from(b)]))
            }
            Operator::ValidateUrlEncoding => found(operator::bad_url_encoding(value)),
            Operator::ValidateUtf8Encoding => found(std::str::from_utf8(value).is_err()),
            Operator::IpMatch(networks) => {
                let addr = std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.trim().parse().ok());
                found(
                    addr.is_some_and(|addr| {
                        networks.iter().any(|n| operator::in_network(addr, *n))
                    }),
                )
            }
            Operator::DetectSqli | Operator::DetectXss => detect_injection(op, value),
            Operator::Unconditional => Some(Vec::new()),
            Operator::NoMatch => None,
        }
    }

    /// `@detectSQLi` or `@detectXSS` on `value`, once per distinct value in a transaction: the slowest
    /// operators CRS runs on every argument, and arguments often repeat (a JSON array's items).
    fn detect_injection(&mut self, op: &Operator, value: &[u8]) -> Option<Vec<Vec<u8>>> {
        let known = &mut self.injections[usize::from(matches!(op, Operator::DetectSqli))];
        if let Some(found) = known.get(value) {
            return found.clone();
        }
        let found = detect_injection(op, value);
        known.insert(value.into(), found.clone());
        found
    }

    /// The values a link's targets yield, exclusions applied.
    fn values<'a>(&self, request: &'a RequestData, link: &Rule, top: &Rule) -> Vec<Value<'a>> {
        let mut out = Vec::new();
        for target in &link.targets {
            let excluded = |name: &[u8]| {
                link.exclusions
                    .iter()
                    .any(|e| e.covers(target.collection, name))
                    || self
                        .removed_targets
                        .iter()
                        .any(|(which, e)| which.covers(top) && e.covers(target.collection, name))
            };
            let first = out.len();
            self.collect(request, target, &mut out);
            // Exclusions name a collection: most of a rule's targets have none.
            let may_exclude = link
                .exclusions
                .iter()
                .any(|e| e.collection == target.collection)
                || self
                    .removed_targets
                    .iter()
                    .any(|(_, e)| e.collection == target.collection);
            if may_exclude {
                let mut index = 0;
                out.retain(|v| {
                    let keep = index < first || !excluded(&v.member);
                    index += 1;
                    keep
                });
            }
            if target.count {
                let count = out.len() - first;
                out.truncate(first);
                out.push(Value {
                    collection: target.collection,
                    member: Cow::Borrowed(b""),
                    bytes: Cow::Owned(count.to_string().into_bytes()),
                });
            }
        }
        out
    }

    /// The members of a target's collection; scalars have an empty member name.
    fn collect<'a>(&self, r: &'a RequestData, target: &Target, out: &mut Vec<Value<'a>>) {
        let collection = target.collection;
        let member = &target.member;
        let value = |m: &'a [u8], v: &'a [u8]| Value {
            collection,
            member: Cow::Borrowed(m),
            bytes: Cow::Borrowed(v),
        };
        let pairs = |list: &'a [(Vec<u8>, Vec<u8>)], out: &mut Vec<Value<'a>>| {
            out.extend(
                list.iter()
                    .filter(|(n, _)| member.matches(n))
                    .map(|(n, v)| value(n, v)),
            );
        };
        let names = |list: &'a [(Vec<u8>, Vec<u8>)], out: &mut Vec<Value<'a>>| {
            out.extend(
                list.iter()
                    .filter(|(n, _)| member.matches(n))
                    .map(|(n, _)| value(n, n)),
            );
        };
        let scalar = |v: &'a [u8], out: &mut Vec<Value<'a>>| out.push(value(b"", v));
        let owned = |v: Vec<u8>, out: &mut Vec<Value<'a>>| {
            out.push(Value {
                collection,
                member: Cow::Borrowed(b""),
                bytes: Cow::Owned(v),
            });
        };
        let size = |n: usize, out: &mut Vec<Value<'a>>| owned(n.to_string().into_bytes(), out);
        let state = |list: &[(Vec<u8>, Vec<u8>)], name_as_value: bool, out: &mut Vec<Value<'a>>| {
            out.extend(
                list.iter()
                    .filter(|(n, _)| member.matches(n))
                    .map(|(n, v)| Value {
                        collection,
                        member: Cow::Owned(n.clone()),
                        bytes: Cow::Owned(if name_as_value { n.clone() } else { v.clone() }),
                    }),
            );
        };
        match collection {
            Collection::Args => {
                pairs(&r.args_get, out);
                pairs(&r.args_post, out);
            }
            Collection::ArgsNames => {
                names(&r.args_get, out);
                names(&r.args_post, out);
            }
            Collection::ArgsGet => pairs(&r.args_get, out),
            Collection::ArgsGetNames => names(&r.args_get, out),
            Collection::ArgsPost => pairs(&r.args_post, out),
            Collection::ArgsPostNames => names(&r.args_post, out),
            Collection::ArgsCombinedSize => size(
                r.args_get
                    .iter()
                    .chain(&r.args_post)
                    .map(|(n, v)| n.len() + v.len())
                    .sum(),
                out,
            ),
            Collection::RequestHeaders => pairs(&r.headers, out),
            Collection::RequestHeadersNames => names(&r.headers, out),
            Collection::RequestCookies => pairs(&r.cookies, out),
            Collection::RequestCookiesNames => names(&r.cookies, out),
            Collection::RequestUri => scalar(&r.uri, out),
            Collection::RequestUriRaw => scalar(&r.uri_raw, out),
            Collection::RequestFilename => scalar(&r.filename, out),
            Collection::RequestBasename => scalar(&r.basename, out),
            Collection::RequestLine => scalar(&r.line, out),
            Collection::RequestMethod => scalar(&r.method, out),
            Collection::RequestProtocol => scalar(&r.protocol, out),
            Collection::QueryString => scalar(&r.query, out),
            Collection::RequestBody => {
                if !r.body.is_empty() {
                    scalar(&r.body, out);
                }
            }
            Collection::RequestBodyLength => size(r.body.len(), out),
            Collection::ReqbodyProcessor => {
                if let Some(p) = r.body_processor {
                    scalar(p.as_bytes(), out);
                }
            }
            Collection::ReqbodyError => scalar(if r.body_error { b"1" } else { b"0" }, out),
            Collection::Files => pairs(&r.files, out),
            Collection::FilesNames => names(&r.files, out),
            Collection::FilesCombinedSize => size(r.files_size, out),
            Collection::MultipartPartHeaders => pairs(&r.part_headers, out),
            Collection::Xml => match target.xpath.as_deref() {
                Some("/*") => {
                    if let Some(text) = &r.xml_text {
                        scalar(text, out);
                    }
                }
                _ => out.extend(r.xml_attributes.iter().map(|v| value(b"", v))),
            },
            Collection::Tx => {
                let tx_value = |(name, v): (&String, &Vec<u8>)| Value {
                    collection,
                    member: Cow::Owned(name.as_bytes().to_vec()),
                    bytes: Cow::Owned(v.clone()),
                };
                match member {
                    // TX names are kept in lower case, as selectors are: one lookup, not a scan.
                    Member::Name(name) => out.extend(self.tx.get_key_value(name).map(tx_value)),
                    _ => out.extend(
                        self.tx
                            .iter()
                            .filter(|(name, _)| member.matches(name.as_bytes()))
                            .map(tx_value),
                    ),
                }
            }
            Collection::MatchedVar => {
                if let Some((_, v)) = &self.matched_var {
                    owned(v.clone(), out);
                }
            }
            Collection::MatchedVarName => {
                if let Some((name, _)) = &self.matched_var {
                    owned(name.clone(), out);
                }
            }
            Collection::MatchedVars => state(&self.matched_vars, false, out),
            Collection::MatchedVarsNames => state(&self.matched_vars, true, out),
            Collection::RemoteAddr => scalar(&r.remote_addr, out),
            Collection::UniqueId => {}
        }
    }

    /// What `%{collection.member}` holds.
    fn lookup(
        &self,
        request: &RequestData,
        rule: &Rule,
        collection: &str,
        member: Option<&str>,
    ) -> Option<Vec<u8>> {
        match (collection, member) {
            ("TX", Some(name)) => self.tx.get(name).cloned(),
            ("RULE", Some("id")) => Some(rule.id.to_string().into_bytes()),
            ("RULE", Some("msg")) => rule
                .msg
                .as_ref()
                .and_then(|m| m.literal().map(|s| s.as_bytes().to_vec())),
            ("RULE", Some("severity")) => rule.severity.map(|s| s.to_string().into_bytes()),
            (name, member) => {
                let collection = Collection::from_name(name)?;
                let target = Target {
                    collection,
                    member: member.map_or(Member::All, |m| Member::Name(m.to_owned())),
                    count: false,
                    xpath: None,
                };
                let mut values = Vec::new();
                self.collect(request, &target, &mut values);
                values.into_iter().next().map(|v| v.bytes.into_owned())
            }
        }
    }

    fn set_vars(&mut self, request: &RequestData, link: &Rule, top: &Rule) {
        for setvar in &link.setvars {
            let lookup = |c: &str, m: Option<&str>| self.lookup(request, top, c, m);
            let name = String::from_utf8_lossy(&setvar.name.expand(&lookup)).to_ascii_lowercase();
            let value = match &setvar.op {
                SetOp::Delete => None,
                SetOp::Set(v) => Some(v.expand(&lookup).into_owned()),
                SetOp::Add(v) | SetOp::Sub(v) => {
                    let current = self.tx.get(&name).map_or(0, |c| operator::atoi(c));
                    let delta = operator::atoi(&v.expand(&lookup));
                    let sum = if matches!(setvar.op, SetOp::Add(_)) {
                        current.saturating_add(delta)
                    } else {
                        current.saturating_sub(delta)
                    };
                    Some(sum.to_string().into_bytes())
                }
            };
            match value {
                Some(value) => {
                    self.tx.insert(name, value);
                }
                None => {
                    self.tx.remove(&name);
                }
            }
        }
    }

    fn apply_ctl(&mut self, ctl: &Ctl) {
        match ctl {
            Ctl::Remove(which) => self.removed.push(which.clone()),
            Ctl::RemoveTarget(which, target) => {
                self.removed_targets.push((which.clone(), target.clone()));
            }
            Ctl::BodyProcessor(name) => self.body_processor = Some(name.clone()),
            Ctl::Other => {}
        }
    }
}
