//! Rules compiled from directives: targets, transformations, one operator, actions, and the chain.

use std::collections::HashMap;

use super::LoadError;
use super::macros::Expand;
use super::operator::{self, Compare, Operator, Pattern};
use super::prefilter::Prefilter;
use super::seclang::{self, Directive, Selector, VariableText};
use super::transform::Transform;

/// The request collections and variables the engine provides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Collection {
    Args,
    ArgsNames,
    ArgsGet,
    ArgsGetNames,
    ArgsPost,
    ArgsPostNames,
    ArgsCombinedSize,
    RequestHeaders,
    RequestHeadersNames,
    RequestCookies,
    RequestCookiesNames,
    RequestUri,
    RequestUriRaw,
    RequestFilename,
    RequestBasename,
    RequestLine,
    RequestMethod,
    RequestProtocol,
    QueryString,
    RequestBody,
    RequestBodyLength,
    ReqbodyProcessor,
    ReqbodyError,
    Files,
    FilesNames,
    FilesCombinedSize,
    MultipartPartHeaders,
    Xml,
    Tx,
    MatchedVar,
    MatchedVarName,
    MatchedVars,
    MatchedVarsNames,
    RemoteAddr,
    UniqueId,
}

impl Collection {
    /// Whether the collection holds what the request holds, fixed while a phase runs (not the
    /// transaction's own state).
    pub(crate) fn is_request_data(self) -> bool {
        !matches!(
            self,
            Self::Tx
                | Self::MatchedVar
                | Self::MatchedVarName
                | Self::MatchedVars
                | Self::MatchedVarsNames
        )
    }

    pub(crate) fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "ARGS" => Self::Args,
            "ARGS_NAMES" => Self::ArgsNames,
            "ARGS_GET" => Self::ArgsGet,
            "ARGS_GET_NAMES" => Self::ArgsGetNames,
            "ARGS_POST" => Self::ArgsPost,
            "ARGS_POST_NAMES" => Self::ArgsPostNames,
            "ARGS_COMBINED_SIZE" => Self::ArgsCombinedSize,
            "REQUEST_HEADERS" => Self::RequestHeaders,
            "REQUEST_HEADERS_NAMES" => Self::RequestHeadersNames,
            "REQUEST_COOKIES" => Self::RequestCookies,
            "REQUEST_COOKIES_NAMES" => Self::RequestCookiesNames,
            "REQUEST_URI" => Self::RequestUri,
            "REQUEST_URI_RAW" => Self::RequestUriRaw,
            "REQUEST_FILENAME" => Self::RequestFilename,
            "REQUEST_BASENAME" => Self::RequestBasename,
            "REQUEST_LINE" => Self::RequestLine,
            "REQUEST_METHOD" => Self::RequestMethod,
            "REQUEST_PROTOCOL" => Self::RequestProtocol,
            "QUERY_STRING" => Self::QueryString,
            "REQUEST_BODY" => Self::RequestBody,
            "REQUEST_BODY_LENGTH" => Self::RequestBodyLength,
            "REQBODY_PROCESSOR" => Self::ReqbodyProcessor,
            "REQBODY_ERROR" => Self::ReqbodyError,
            "FILES" => Self::Files,
            "FILES_NAMES" => Self::FilesNames,
            "FILES_COMBINED_SIZE" => Self::FilesCombinedSize,
            "MULTIPART_PART_HEADERS" => Self::MultipartPartHeaders,
            "XML" => Self::Xml,
            "TX" => Self::Tx,
            "MATCHED_VAR" => Self::MatchedVar,
            "MATCHED_VAR_NAME" => Self::MatchedVarName,
            "MATCHED_VARS" => Self::MatchedVars,
            "MATCHED_VARS_NAMES" => Self::MatchedVarsNames,
            "REMOTE_ADDR" => Self::RemoteAddr,
            "UNIQUE_ID" => Self::UniqueId,
            _ => return None,
        })
    }

    /// The name ModSecurity gives the collection in `MATCHED_VAR_NAME` and logs.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Args => "ARGS",
            Self::ArgsNames => "ARGS_NAMES",
            Self::ArgsGet => "ARGS_GET",
            Self::ArgsGetNames => "ARGS_GET_NAMES",
            Self::ArgsPost => "ARGS_POST",
            Self::ArgsPostNames => "ARGS_POST_NAMES",
            Self::ArgsCombinedSize => "ARGS_COMBINED_SIZE",
            Self::RequestHeaders => "REQUEST_HEADERS",
            Self::RequestHeadersNames => "REQUEST_HEADERS_NAMES",
            Self::RequestCookies => "REQUEST_COOKIES",
            Self::RequestCookiesNames => "REQUEST_COOKIES_NAMES",
            Self::RequestUri => "REQUEST_URI",
            Self::RequestUriRaw => "REQUEST_URI_RAW",
            Self::RequestFilename => "REQUEST_FILENAME",
            Self::RequestBasename => "REQUEST_BASENAME",
            Self::RequestLine => "REQUEST_LINE",
            Self::RequestMethod => "REQUEST_METHOD",
            Self::RequestProtocol => "REQUEST_PROTOCOL",
            Self::QueryString => "QUERY_STRING",
            Self::RequestBody => "REQUEST_BODY",
            Self::RequestBodyLength => "REQUEST_BODY_LENGTH",
            Self::ReqbodyProcessor => "REQBODY_PROCESSOR",
            Self::ReqbodyError => "REQBODY_ERROR",
            Self::Files => "FILES",
            Self::FilesNames => "FILES_NAMES",
            Self::FilesCombinedSize => "FILES_COMBINED_SIZE",
            Self::MultipartPartHeaders => "MULTIPART_PART_HEADERS",
            Self::Xml => "XML",
            Self::Tx => "TX",
            Self::MatchedVar => "MATCHED_VAR",
            Self::MatchedVarName => "MATCHED_VAR_NAME",
            Self::MatchedVars => "MATCHED_VARS",
            Self::MatchedVarsNames => "MATCHED_VARS_NAMES",
            Self::RemoteAddr => "REMOTE_ADDR",
            Self::UniqueId => "UNIQUE_ID",
        }
    }
}

/// Which members of a collection: by name (lower case), by regex, or all.
#[derive(Clone, Debug)]
pub(crate) enum Member {
    All,
    Name(String),
    Regex(regex::bytes::Regex),
}

impl Member {
    pub(crate) fn matches(&self, name: &[u8]) -> bool {
        match self {
            Self::All => true,
            Self::Name(wanted) => wanted.as_bytes().eq_ignore_ascii_case(name),
            Self::Regex(regex) => regex.is_match(name),
        }
    }

    /// Whether an exclusion `self` covers the target `other` (same name, or an exclusion of all).
    fn same(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::All, Self::All) => true,
            (Self::Name(a), Self::Name(b)) => a.eq_ignore_ascii_case(b),
            (Self::Regex(a), Self::Regex(b)) => a.as_str() == b.as_str(),
            _ => false,
        }
    }
}

/// One variable of a rule's target list.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    pub(crate) collection: Collection,
    pub(crate) member: Member,
    /// `&`: the number of members, not their values.
    pub(crate) count: bool,
    /// For `XML:…`: the XPath as written.
    pub(crate) xpath: Option<String>,
}

/// An exclusion (`!ARGS:password`) on a rule, or one added at run time by `ctl:ruleRemoveTargetById`.
#[derive(Clone, Debug)]
pub(crate) struct Exclusion {
    pub(crate) collection: Collection,
    pub(crate) member: Member,
}

impl Exclusion {
    pub(crate) fn covers(&self, collection: Collection, name: &[u8]) -> bool {
        self.collection == collection && self.member.matches(name)
    }
}

/// What a rule does to the transaction when it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Disruptive {
    Pass,
    /// `block`: whatever the phase's default action says.
    Block,
    Deny,
    Drop,
    Allow,
}

/// `setvar:tx.name=value` and its forms.
#[derive(Clone, Debug)]
pub(crate) struct SetVar {
    pub(crate) name: Expand,
    pub(crate) op: SetOp,
}

#[derive(Clone, Debug)]
pub(crate) enum SetOp {
    Set(Expand),
    Add(Expand),
    Sub(Expand),
    Delete,
}

/// `ctl:…` actions the engine honours per transaction.
#[derive(Clone, Debug)]
pub(crate) enum Ctl {
    /// `ruleRemoveById`, `ruleRemoveByTag`: the rules are skipped for the rest of the transaction.
    Remove(Selects),
    /// `ruleRemoveTargetById`, `ruleRemoveTargetByTag`: the rules no longer read the target.
    RemoveTarget(Selects, Exclusion),
    BodyProcessor(String),
    /// Accepted and without effect here (`auditEngine`, `forceRequestBodyVariable`, …).
    Other,
}

/// One rule, or one link of a chain.
#[derive(Debug)]
pub(crate) struct Rule {
    pub(crate) id: u32,
    pub(crate) phase: u8,
    pub(crate) targets: Vec<Target>,
    pub(crate) exclusions: Vec<Exclusion>,
    pub(crate) operator: Operator,
    pub(crate) negated: bool,
    pub(crate) transforms: Vec<Transform>,
    /// The number of `transforms` among the rule set's distinct lists ([`super::prefilter::index`]).
    pub(crate) list: u16,
    /// The kinds of bytes `transforms` act on ([`super::transform::kind`]): a value without them leaves
    /// the list as it came, ASCII case aside.
    pub(crate) acts_on: u16,
    /// The rule's place in the prefilter, if its regex has required literals.
    pub(crate) prefilter_slot: Option<u32>,
    /// The number of `targets` among the rule set's distinct target lists, if every target is request
    /// data (fixed while a phase runs: not `TX`, not `MATCHED_VARS`, not a count).
    pub(crate) targets_id: Option<u32>,
    pub(crate) disruptive: Disruptive,
    pub(crate) status: Option<u16>,
    pub(crate) setvars: Vec<SetVar>,
    pub(crate) ctls: Vec<Ctl>,
    pub(crate) skip_after: Option<String>,
    pub(crate) capture: bool,
    pub(crate) multi_match: bool,
    pub(crate) log: bool,
    pub(crate) msg: Option<Expand>,
    pub(crate) logdata: Option<Expand>,
    pub(crate) severity: Option<u8>,
    pub(crate) tags: Vec<String>,
    pub(crate) chain: Option<Box<Rule>>,
    /// `SecAction`: matches without looking at anything.
    pub(crate) unconditional: bool,
}

impl Rule {
    /// A rule with no targets and no actions yet (they are applied one by one), logging by default as
    /// ModSecurity's rules do.
    fn new(phase: u8, operator: Operator, negated: bool, unconditional: bool) -> Self {
        Self {
            id: 0,
            phase,
            targets: Vec::new(),
            exclusions: Vec::new(),
            operator,
            negated,
            transforms: Vec::new(),
            list: 0,
            acts_on: 0,
            prefilter_slot: None,
            targets_id: None,
            disruptive: Disruptive::Pass,
            status: None,
            setvars: Vec::new(),
            ctls: Vec::new(),
            skip_after: None,
            capture: false,
            multi_match: false,
            log: true,
            msg: None,
            logdata: None,
            severity: None,
            tags: Vec::new(),
            chain: None,
            unconditional,
        }
    }
}

/// An entry of a phase's rule list.
#[derive(Debug)]
pub(crate) enum Step {
    Rule(Box<Rule>),
    Marker(String),
}

/// The rule lists of the two request phases, in order.
#[derive(Debug, Default)]
pub(crate) struct Compiled {
    pub(crate) phase1: Vec<Step>,
    pub(crate) phase2: Vec<Step>,
    /// Rules of the response phases, read but not run (the edge sees the request).
    pub(crate) response_rules: usize,
    /// The `block` action of each request phase: `deny` or `pass` (CRS's anomaly mode).
    pub(crate) block_denies: [bool; 2],
    /// [`RuleSetBuilder::modsecurity_quirks`](super::RuleSetBuilder::modsecurity_quirks).
    pub(crate) modsecurity_quirks: bool,
    /// The required literals of every rule's regex that has some, in one automaton.
    pub(crate) prefilter: Option<Prefilter>,
}

/// Where data files (`@pmFromFile`) come from.
pub(crate) type DataFiles<'a> = dyn Fn(&str) -> Option<String> + 'a;

/// Compiles the directives of one or more files, in order.
pub(crate) fn compile(
    files: &[(String, Vec<Directive>)],
    data: &DataFiles<'_>,
    modsecurity_quirks: bool,
) -> Result<Compiled, LoadError> {
    let mut compiled = Compiled {
        modsecurity_quirks,
        ..Compiled::default()
    };
    let mut defaults: HashMap<u8, Vec<(String, Option<String>)>> = HashMap::new();
    let mut pending_chain: Vec<Rule> = Vec::new();
    let mut removed: Vec<Selects> = Vec::new();
    // Target and action updates, applied once every rule is read (ModSecurity applies them to the rules
    // read before them; a CRS user writes them after the rules, as CRS documents).
    let mut target_updates: Vec<(Selects, Vec<VariableText>)> = Vec::new();
    let mut action_updates: Vec<(Selects, Vec<(String, Option<String>)>)> = Vec::new();
    for (source, directives) in files {
        for d in directives {
            let at = |why: String| LoadError::at(source, d.line, why);
            let arg = |i: usize| {
                d.args
                    .get(i)
                    .map(String::as_str)
                    .ok_or_else(|| at(format!("`{}` needs more arguments", d.name)))
            };
            match d.name.as_str() {
                "SecRule" | "SecAction" => {
                    let (vars, op, actions) = if d.name == "SecRule" {
                        (
                            Some(arg(0)?),
                            Some(arg(1)?),
                            d.args.get(2).map(String::as_str),
                        )
                    } else {
                        (None, None, Some(arg(0)?))
                    };
                    let actions = seclang::actions(actions.unwrap_or("")).map_err(&at)?;
                    let in_chain = !pending_chain.is_empty();
                    let inherited = pending_chain.last().map(|r| r.phase);
                    let mut rule =
                        rule(vars, op, &actions, &defaults, inherited, data).map_err(&at)?;
                    if modsecurity_quirks {
                        for t in &mut rule.transforms {
                            if *t == Transform::CssDecode {
                                *t = Transform::CssDecodeToNul;
                            }
                        }
                    }
                    let chains = actions.iter().any(|(n, _)| n.eq_ignore_ascii_case("chain"));
                    if !in_chain && rule.id == 0 {
                        return Err(at("a rule without an id".into()));
                    }
                    pending_chain.push(rule);
                    if !chains {
                        let mut link = pending_chain.pop();
                        while let Some(mut parent) = pending_chain.pop() {
                            parent.chain = link.map(Box::new);
                            link = Some(parent);
                        }
                        if let Some(rule) = link {
                            add(&mut compiled, rule);
                        }
                    }
                }
                "SecMarker" => {
                    let name = arg(0)?.to_owned();
                    compiled.phase1.push(Step::Marker(name.clone()));
                    compiled.phase2.push(Step::Marker(name));
                }
                "SecDefaultAction" => {
                    let actions = seclang::actions(arg(0)?).map_err(&at)?;
                    let phase = actions
                        .iter()
                        .find(|(n, _)| n == "phase")
                        .and_then(|(_, v)| v.as_deref())
                        .map_or(Ok(2), parse_phase)
                        .map_err(&at)?;
                    if let Some(slot) = compiled
                        .block_denies
                        .get_mut(usize::from(phase).wrapping_sub(1))
                    {
                        *slot = actions.iter().any(|(n, _)| n == "deny" || n == "drop");
                    }
                    defaults.insert(phase, actions);
                }
                "SecRuleRemoveById" => {
                    for spec in &d.args {
                        removed.push(Selects::Ids(id_ranges(spec).map_err(&at)?));
                    }
                }
                "SecRuleRemoveByTag" => removed.push(Selects::Tag(arg(0)?.to_owned())),
                "SecRuleRemoveByMsg" => removed.push(Selects::Msg(arg(0)?.to_owned())),
                "SecRuleUpdateTargetById"
                | "SecRuleUpdateTargetByTag"
                | "SecRuleUpdateTargetByMsg" => {
                    let which = match d.name.as_str() {
                        "SecRuleUpdateTargetById" => Selects::Ids(id_ranges(arg(0)?).map_err(&at)?),
                        "SecRuleUpdateTargetByTag" => Selects::Tag(arg(0)?.to_owned()),
                        _ => Selects::Msg(arg(0)?.to_owned()),
                    };
                    if d.args.len() > 2 {
                        return Err(at(
                            "replacing a target (a third argument) is not supported".into()
                        ));
                    }
                    target_updates.push((which, seclang::variables(arg(1)?).map_err(&at)?));
                }
                "SecRuleUpdateActionById" => {
                    let ids = id_ranges(arg(0)?).map_err(&at)?;
                    let actions = seclang::actions(arg(1)?).map_err(&at)?;
                    if let Some((name, _)) = actions
                        .iter()
                        .find(|(n, _)| matches!(n.as_str(), "id" | "phase" | "chain"))
                    {
                        return Err(at(format!("`{name}` cannot be updated")));
                    }
                    action_updates.push((Selects::Ids(ids), actions));
                }
                name if ACCEPTED_CONFIG.contains(&name) => {}
                other => return Err(at(format!("unsupported directive `{other}`"))),
            }
        }
    }
    if !pending_chain.is_empty() {
        return Err(LoadError::new(
            "the last rule says `chain` but no rule follows",
        ));
    }
    for list in [&mut compiled.phase1, &mut compiled.phase2] {
        list.retain(|step| match step {
            Step::Rule(rule) => !removed.iter().any(|which| which.covers(rule)),
            Step::Marker(_) => true,
        });
        for step in list.iter_mut() {
            if let Step::Rule(rule) = step {
                for (which, vars) in &target_updates {
                    if which.covers(rule) {
                        update_targets(rule, vars).map_err(LoadError::new)?;
                    }
                }
                for (which, actions) in &action_updates {
                    if which.covers(rule) {
                        for (name, value) in actions {
                            apply_action(rule, name, value.as_deref()).map_err(LoadError::new)?;
                        }
                    }
                }
            }
        }
    }
    super::prefilter::index(&mut compiled).map_err(LoadError::new)?;
    Ok(compiled)
}

/// Which rules a removal or an update names.
#[derive(Clone, Debug)]
pub(crate) enum Selects {
    Ids(Vec<(u32, u32)>),
    Tag(String),
    Msg(String),
}

impl Selects {
    pub(crate) fn covers(&self, rule: &Rule) -> bool {
        match self {
            Self::Ids(ranges) => ranges.iter().any(|(l, h)| (*l..=*h).contains(&rule.id)),
            Self::Tag(tag) => rule.tags.iter().any(|t| t == tag),
            Self::Msg(msg) => rule
                .msg
                .as_ref()
                .and_then(super::macros::Expand::literal)
                .is_some_and(|m| m == msg),
        }
    }
}

/// Configuration directives that are read and need nothing from the engine (body limits are the
/// request model's, audit logging the host's).
const ACCEPTED_CONFIG: &[&str] = &[
    "SecComponentSignature",
    "SecRuleEngine",
    "SecRequestBodyAccess",
    "SecRequestBodyLimit",
    "SecRequestBodyNoFilesLimit",
    "SecRequestBodyLimitAction",
    "SecRequestBodyJsonDepthLimit",
    "SecArgumentsLimit",
    "SecPcreMatchLimit",
    "SecPcreMatchLimitRecursion",
    "SecResponseBodyAccess",
    "SecResponseBodyMimeType",
    "SecResponseBodyLimit",
    "SecResponseBodyLimitAction",
    "SecTmpDir",
    "SecDataDir",
    "SecAuditEngine",
    "SecAuditLog",
    "SecAuditLogParts",
    "SecAuditLogType",
    "SecAuditLogFormat",
    "SecAuditLogRelevantStatus",
    "SecAuditLogStorageDir",
    "SecArgumentSeparator",
    "SecCookieFormat",
    "SecUnicodeMapFile",
    "SecStatusEngine",
    "SecDebugLog",
    "SecDebugLogLevel",
    "SecCollectionTimeout",
    "SecServerSignature",
    "SecUploadDir",
    "SecUploadKeepFiles",
    "SecUploadFileMode",
    "SecUploadFileLimit",
    "SecXmlExternalEntity",
    "SecTmpSaveUploadedFiles",
];

fn add(compiled: &mut Compiled, rule: Rule) {
    match rule.phase {
        1 => compiled.phase1.push(Step::Rule(Box::new(rule))),
        2 => compiled.phase2.push(Step::Rule(Box::new(rule))),
        _ => compiled.response_rules += 1,
    }
}

fn parse_phase(text: &str) -> Result<u8, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "request" => Ok(2),
        "response" => Ok(4),
        "logging" => Ok(5),
        n => n
            .parse::<u8>()
            .ok()
            .filter(|p| (1..=5).contains(p))
            .ok_or_else(|| format!("`{text}` is not a phase")),
    }
}

fn id_ranges(spec: &str) -> Result<Vec<(u32, u32)>, String> {
    spec.split([',', ' '])
        .filter(|s| !s.is_empty())
        .map(|part| {
            let (low, high) = part.split_once('-').unwrap_or((part, part));
            let parse = |n: &str| {
                n.trim()
                    .parse::<u32>()
                    .map_err(|_| format!("`{part}` is not a rule id or range"))
            };
            Ok((parse(low)?, parse(high)?))
        })
        .collect()
}

fn rule(
    vars: Option<&str>,
    op: Option<&str>,
    actions: &[(String, Option<String>)],
    defaults: &HashMap<u8, Vec<(String, Option<String>)>>,
    inherited_phase: Option<u8>,
    data: &DataFiles<'_>,
) -> Result<Rule, String> {
    let phase = match actions.iter().find(|(n, _)| n == "phase") {
        Some((_, Some(p))) => parse_phase(p)?,
        _ => inherited_phase.unwrap_or(2),
    };
    if phase >= 3 {
        // A response rule: read, counted, never run (the edge evaluates requests), so its response
        // variables and operator are not compiled.
        let id = actions
            .iter()
            .find(|(n, _)| n == "id")
            .and_then(|(_, v)| v.as_deref()?.trim().parse().ok())
            .unwrap_or(0);
        return Ok(response_rule(id, phase));
    }
    let (operator, negated, unconditional) = match op {
        Some(op) => {
            let (op, negated) = operator(op, data)?;
            (op, negated, false)
        }
        None => (Operator::Unconditional, false, true),
    };
    let mut rule = Rule::new(phase, operator, negated, unconditional);
    if let Some(vars) = vars {
        update_targets(&mut rule, &seclang::variables(vars)?)?;
    }
    // A chain's links take no defaults; a rule starting one takes its phase's.
    let defaults = match inherited_phase {
        Some(_) => &[][..],
        None => defaults.get(&phase).map_or(&[][..], Vec::as_slice),
    };
    for (name, value) in defaults.iter().chain(actions) {
        apply_action(&mut rule, name, value.as_deref())?;
    }
    Ok(rule)
}

fn response_rule(id: u32, phase: u8) -> Rule {
    let mut rule = Rule::new(phase, Operator::NoMatch, false, false);
    rule.id = id;
    rule.log = false;
    rule
}

fn update_targets(rule: &mut Rule, vars: &[VariableText]) -> Result<(), String> {
    for var in vars {
        let collection = Collection::from_name(&var.collection)
            .ok_or_else(|| format!("unsupported variable `{}`", var.collection))?;
        let (member, xpath) = match (&var.selector, collection) {
            (Some(Selector::Name(xpath)), Collection::Xml) => (Member::All, Some(xpath.clone())),
            (None, _) => (Member::All, None),
            (Some(Selector::Name(name)), _) => (Member::Name(name.to_ascii_lowercase()), None),
            (Some(Selector::Regex(pattern)), _) => (
                Member::Regex(
                    selector_regex(pattern).map_err(|e| format!("selector /{pattern}/: {e}"))?,
                ),
                None,
            ),
        };
        if var.exclude {
            rule.exclusions.push(Exclusion { collection, member });
        } else {
            rule.targets.push(Target {
                collection,
                member,
                count: var.count,
                xpath,
            });
        }
    }
    // An exclusion naming exactly a target removes it (`SecRuleUpdateTargetById 1 !ARGS:x` on `ARGS:x`).
    let exclusions = &rule.exclusions;
    rule.targets.retain(|t| {
        !exclusions.iter().any(|e| {
            e.collection == t.collection
                && !matches!(t.member, Member::All)
                && e.member.same(&t.member)
        })
    });
    Ok(())
}

fn operator(text: &str, data: &DataFiles<'_>) -> Result<(Operator, bool), String> {
    let text = text.trim_start();
    let (negated, text) = match text.strip_prefix('!') {
        Some(rest) => (true, rest.trim_start()),
        None => (false, text),
    };
    let (name, arg) = match text.strip_prefix('@') {
        Some(rest) => rest.split_once(' ').unwrap_or((rest, "")),
        None => ("rx", text),
    };
    let expand = || Expand::parse(arg);
    let op = match name.to_ascii_lowercase().as_str() {
        "rx" => {
            if arg.contains("%{") {
                return Err("a regex with macros is not supported".into());
            }
            Operator::Rx(Pattern::new(arg)?)
        }
        "pm" => operator::phrases(arg.split_whitespace())?,
        "pmfromfile" | "pmf" => {
            let mut phrases = Vec::new();
            for file in arg.split_whitespace() {
                let name = file.rsplit('/').next().unwrap_or(file);
                let contents = data(name).ok_or_else(|| format!("no data file `{file}`"))?;
                phrases.extend(
                    contents
                        .lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty() && !l.starts_with('#'))
                        .map(str::to_owned),
                );
            }
            operator::phrases(phrases.iter().map(String::as_str))?
        }
        "contains" => Operator::Contains(expand()),
        "beginswith" => Operator::BeginsWith(expand()),
        "endswith" => Operator::EndsWith(expand()),
        "streq" => Operator::StrEq(expand()),
        "within" => Operator::Within(expand()),
        "eq" => Operator::Compare(Compare::Eq, expand()),
        "ge" => Operator::Compare(Compare::Ge, expand()),
        "gt" => Operator::Compare(Compare::Gt, expand()),
        "le" => Operator::Compare(Compare::Le, expand()),
        "lt" => Operator::Compare(Compare::Lt, expand()),
        "validatebyterange" => Operator::ValidateByteRange(operator::byte_ranges(arg)?),
        "validateurlencoding" => Operator::ValidateUrlEncoding,
        "validateutf8encoding" => Operator::ValidateUtf8Encoding,
        "ipmatch" => Operator::IpMatch(operator::networks(arg)?),
        "detectsqli" => Operator::DetectSqli,
        "detectxss" => Operator::DetectXss,
        "unconditionalmatch" => Operator::Unconditional,
        "nomatch" => Operator::NoMatch,
        other => return Err(format!("unsupported operator `@{other}`")),
    };
    Ok((op, negated))
}

fn apply_action(rule: &mut Rule, name: &str, value: Option<&str>) -> Result<(), String> {
    let value_of = || value.ok_or_else(|| format!("`{name}` needs a value"));
    match name {
        "id" => {
            rule.id = value_of()?
                .trim()
                .parse()
                .map_err(|_| format!("`{}` is not a rule id", value.unwrap_or_default()))?;
        }
        "phase" | "chain" | "ver" | "rev" | "accuracy" | "maturity" | "auditlog" | "noauditlog"
        | "sanitiseMatched" | "sanitiseArg" | "initcol" | "setenv" | "expirevar" | "setuid"
        | "setsid" | "xmlns" => {}
        "t" => match value_of()? {
            v if v.eq_ignore_ascii_case("none") => rule.transforms.clear(),
            v => rule.transforms.push(
                Transform::from_name(v)
                    .ok_or_else(|| format!("unsupported transformation `{v}`"))?,
            ),
        },
        "pass" => rule.disruptive = Disruptive::Pass,
        "block" => rule.disruptive = Disruptive::Block,
        "deny" => rule.disruptive = Disruptive::Deny,
        "drop" => rule.disruptive = Disruptive::Drop,
        "allow" => rule.disruptive = Disruptive::Allow,
        "status" => rule.status = value_of()?.trim().parse().ok(),
        "log" => rule.log = true,
        "nolog" => rule.log = false,
        "capture" => rule.capture = true,
        "multiMatch" => rule.multi_match = true,
        "msg" => rule.msg = Some(Expand::parse(value_of()?)),
        "logdata" => rule.logdata = Some(Expand::parse(value_of()?)),
        "tag" => rule.tags.push(value_of()?.to_owned()),
        "severity" => rule.severity = Some(severity(value_of()?)?),
        "skipAfter" => rule.skip_after = Some(value_of()?.to_owned()),
        "setvar" => rule.setvars.push(setvar(value_of()?)?),
        "ctl" => rule.ctls.push(ctl(value_of()?)?),
        other => return Err(format!("unsupported action `{other}`")),
    }
    Ok(())
}

fn severity(text: &str) -> Result<u8, String> {
    const NAMES: [&str; 8] = [
        "EMERGENCY",
        "ALERT",
        "CRITICAL",
        "ERROR",
        "WARNING",
        "NOTICE",
        "INFO",
        "DEBUG",
    ];
    let text = text.trim();
    text.parse::<u8>()
        .ok()
        .filter(|n| *n < 8)
        .or_else(|| {
            NAMES
                .iter()
                .position(|n| n.eq_ignore_ascii_case(text))
                .and_then(|p| u8::try_from(p).ok())
        })
        .ok_or_else(|| format!("`{text}` is not a severity"))
}

fn setvar(text: &str) -> Result<SetVar, String> {
    let text = text.trim();
    if let Some(name) = text.strip_prefix('!') {
        return Ok(SetVar {
            name: Expand::parse(name),
            op: SetOp::Delete,
        });
    }
    let (name, op) = match text.split_once('=') {
        None => (text, SetOp::Set(Expand::parse("1"))),
        Some((name, value)) => match value.as_bytes().first() {
            Some(b'+') => (name, SetOp::Add(Expand::parse(&value[1..]))),
            Some(b'-') => (name, SetOp::Sub(Expand::parse(&value[1..]))),
            _ => (name, SetOp::Set(Expand::parse(value))),
        },
    };
    if !name.to_ascii_lowercase().starts_with("tx.") {
        return Err(format!(
            "setvar on `{name}`: only the TX collection is supported"
        ));
    }
    Ok(SetVar {
        name: Expand::parse(&name[3..]),
        op,
    })
}

fn ctl(text: &str) -> Result<Ctl, String> {
    let (name, value) = text.split_once('=').unwrap_or((text, ""));
    let target = |spec: &str| -> Result<Exclusion, String> {
        let vars = seclang::variables(spec)?;
        let [var] = vars.as_slice() else {
            return Err(format!("`{spec}`: one target per ctl"));
        };
        let collection = Collection::from_name(&var.collection)
            .ok_or_else(|| format!("unsupported variable `{}`", var.collection))?;
        let member = match &var.selector {
            None => Member::All,
            Some(Selector::Name(n)) => Member::Name(n.to_ascii_lowercase()),
            Some(Selector::Regex(p)) => {
                Member::Regex(selector_regex(p).map_err(|e| e.to_string())?)
            }
        };
        Ok(Exclusion { collection, member })
    };
    Ok(match name.trim() {
        "ruleRemoveById" => Ctl::Remove(Selects::Ids(id_ranges(value)?)),
        "ruleRemoveByTag" => Ctl::Remove(Selects::Tag(value.trim().to_owned())),
        "ruleRemoveTargetById" | "ruleRemoveTargetByTag" => {
            let (which, spec) = value
                .split_once(';')
                .ok_or_else(|| format!("`{text}` names no target"))?;
            let which = if name.trim() == "ruleRemoveTargetById" {
                Selects::Ids(id_ranges(which)?)
            } else {
                Selects::Tag(which.trim().to_owned())
            };
            Ctl::RemoveTarget(which, target(spec)?)
        }
        "requestBodyProcessor" => Ctl::BodyProcessor(value.trim().to_ascii_uppercase()),
        "auditEngine" | "auditLogParts" | "forceRequestBodyVariable" | "debugLogLevel" => {
            Ctl::Other
        }
        other => return Err(format!("unsupported ctl `{other}`")),
    })
}

/// A selector regex (`ARGS:/^id_/`): names compare without case.
fn selector_regex(pattern: &str) -> Result<regex::bytes::Regex, regex::Error> {
    regex::bytes::RegexBuilder::new(pattern)
        .case_insensitive(true)
        .unicode(false)
        .build()
}
