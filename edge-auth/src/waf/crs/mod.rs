//! The OWASP Core Rule Set on a SecLang engine of our own (feature `crs`): CRS 4 as published, loaded from
//! its `.conf` files, evaluated per request with ModSecurity 3's semantics and anomaly scoring.
//!
//! | file | role |
//! |---|---|
//! | `seclang.rs` | the rule language as text: directives, action lists, variable lists |
//! | `rule.rs` | rules compiled from directives: targets, transformations, operator, actions, chains |
//! | `transform.rs` | `t:urlDecodeUni`, `t:htmlEntityDecode`, `t:cmdLine`, … on bytes |
//! | `operator.rs` | `@rx` (linear-time where the pattern allows), `@pm`, `@detectSQLi`, `@within`, … |
//! | `prefilter.rs` | which rules' regexes and phrase lists can match a value, from their required literals |
//! | `macros.rs` | `%{tx.score}` and friends in action values and operator arguments |
//! | `request.rs` | the request as ModSecurity's collections (`ARGS`, `REQUEST_HEADERS`, `FILES`, …) |
//! | `engine.rs` | one transaction: phases 1 and 2, `setvar`, chains, `skipAfter`, `ctl` |
//! | [`exclusions`] | opt-in exclusion sets for benign shapes (free-text fields) |
//!
//! The edge sees requests, so the request phases (1 and 2) run; response rules are read and counted, not
//! run. Users bring their own copy of CRS (a release of the CRS project) and point the builder at it;
//! on wasm32, where there are no files, the rules and data files are given as strings.
//!
//! ```no_run
//! # fn main() -> Result<(), edge_auth::waf::crs::LoadError> {
//! use edge_auth::waf::crs::RuleSet;
//!
//! let crs = RuleSet::builder().crs_dir("/etc/crs4")?.paranoia(1).build()?;
//! let (parts, ()) = http::Request::get("/search?q=1'+or+'1'='1").body(()).unwrap().into_parts();
//! let verdict = crs.evaluate(&parts, b"", None);
//! assert!(verdict.is_blocked());
//! # Ok(()) }
//! ```

mod engine;
pub mod exclusions;
mod macros;
mod operator;
mod prefilter;
mod request;
mod rule;
mod seclang;
mod transform;

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

use http::request::Parts;

/// A rule file that could not be loaded: where, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadError {
    source: String,
    line: usize,
    message: String,
}

impl LoadError {
    pub(crate) fn at(source: &str, line: usize, message: impl Into<String>) -> Self {
        Self {
            source: source.to_owned(),
            line,
            message: message.into(),
        }
    }

    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self::at("", 0, message)
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.source.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}:{}: {}", self.source, self.line, self.message)
        }
    }
}

impl std::error::Error for LoadError {}

/// How a transaction ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// No rule stopped it.
    Passed,
    /// A rule denied it (`deny`, `drop`, or `block` where the phase's default denies).
    Blocked {
        /// The rule that denied it (CRS: 949110, inbound anomaly score exceeded).
        rule: u32,
        /// The status the rule asks for (403 unless it says otherwise).
        status: u16,
    },
    /// A rule allowed it (`allow`): no later rule ran.
    Allowed {
        /// The rule that allowed it.
        rule: u32,
    },
}

/// A rule that matched and logs (`nolog` rules are not listed).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RuleMatch {
    /// The rule's id.
    pub id: u32,
    /// Its `msg`, macros expanded.
    pub message: String,
    /// Its `logdata`, macros expanded.
    pub data: String,
    /// Its severity (0 emergency … 7 debug).
    pub severity: Option<u8>,
    /// Its tags.
    pub tags: Vec<String>,
}

/// The result of evaluating one request.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Evaluation {
    /// How it ended.
    pub outcome: Outcome,
    /// The rules that matched, in order.
    pub matches: Vec<RuleMatch>,
    /// CRS's inbound anomaly score at the blocking paranoia level (`tx.blocking_inbound_anomaly_score`).
    pub anomaly_score: i64,
}

impl Evaluation {
    /// Whether a rule denied the request.
    #[must_use]
    pub fn is_blocked(&self) -> bool {
        matches!(self.outcome, Outcome::Blocked { .. })
    }
}

/// A compiled rule set. Build it once ([`RuleSet::builder`]) and share it: evaluation takes `&self`.
pub struct RuleSet {
    compiled: rule::Compiled,
    tx: Vec<(String, String)>,
}

impl RuleSet {
    /// A builder.
    #[must_use]
    pub fn builder() -> RuleSetBuilder {
        RuleSetBuilder::default()
    }

    /// The number of request rules (chains count once), and of response rules read but not run.
    #[must_use]
    pub fn rule_counts(&self) -> (usize, usize) {
        let rules = |steps: &[rule::Step]| {
            steps
                .iter()
                .filter(|s| matches!(s, rule::Step::Rule(_)))
                .count()
        };
        (
            rules(&self.compiled.phase1) + rules(&self.compiled.phase2),
            self.compiled.response_rules,
        )
    }

    /// Evaluates a request: phase 1 on its line and headers, then its `body` (as read by the body
    /// processor the content type, or a rule's `ctl:requestBodyProcessor`, chose) and phase 2.
    #[must_use]
    pub fn evaluate(&self, parts: &Parts, body: &[u8], remote_addr: Option<IpAddr>) -> Evaluation {
        let mut request = request::RequestData::from_parts(parts, remote_addr);
        let mut transaction = engine::Transaction::new(&self.compiled, &self.tx);
        let mut outcome = transaction.run_phase(&request, 1);
        if outcome.is_none() {
            request.read_body(
                body,
                transaction.body_processor.as_deref(),
                self.compiled.modsecurity_quirks,
            );
            outcome = transaction.run_phase(&request, 2);
        }
        Evaluation {
            outcome: outcome.unwrap_or(Outcome::Passed),
            anomaly_score: transaction
                .tx("blocking_inbound_anomaly_score")
                .map_or(0, operator::atoi),
            matches: std::mem::take(&mut transaction.matches),
        }
    }
}

impl fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Hundreds of compiled rules say nothing in a log line: their numbers do.
        let (request, response) = self.rule_counts();
        f.debug_struct("RuleSet")
            .field("request_rules", &request)
            .field("response_rules", &response)
            .field("tx", &self.tx)
            .finish_non_exhaustive()
    }
}

/// Builds a [`RuleSet`] from configuration texts, in the order given (as ModSecurity's `Include`s).
#[derive(Default)]
pub struct RuleSetBuilder {
    texts: Vec<(String, String)>,
    data: HashMap<String, String>,
    /// Directories of the files added, where data files not given as strings are looked for.
    dirs: Vec<std::path::PathBuf>,
    tx: Vec<(String, String)>,
    modsecurity_quirks: bool,
}

impl fmt::Debug for RuleSetBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names =
            |list: &[(String, String)]| list.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        f.debug_struct("RuleSetBuilder")
            .field("files", &names(&self.texts))
            .field("data_files", &self.data.keys().collect::<Vec<_>>())
            .field("tx", &self.tx)
            .finish_non_exhaustive()
    }
}

impl RuleSetBuilder {
    /// Adds a configuration text (`name` is for error messages).
    #[must_use]
    pub fn rules(mut self, name: impl Into<String>, text: impl Into<String>) -> Self {
        self.texts.push((name.into(), text.into()));
        self
    }

    /// Provides a data file that `@pmFromFile` names (by its file name).
    #[must_use]
    pub fn data_file(mut self, name: impl Into<String>, contents: impl Into<String>) -> Self {
        self.data.insert(name.into(), contents.into());
        self
    }

    /// Sets a TX variable before the first rule runs, as a `SecAction` in `crs-setup.conf` would.
    #[must_use]
    pub fn tx(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.tx.push((name.into(), value.into()));
        self
    }

    /// Reproduces three defects of ModSecurity 3 that CRS does not intend, for comparing verdicts with it
    /// (the differential oracle turns this on to show they are the reason for the differences left).
    /// Off by default:
    ///
    /// - `t:cssDecode` ends the value at the first NUL byte (ModSecurity copies a C string), so a `\0`
    ///   hides what follows from every rule that decodes CSS;
    /// - a `multiMatch` rule whose first link matched is reported as matched (logged, not scored) even
    ///   when the rest of its chain did not match;
    /// - a multipart part's header lines keep their carriage return, so CRS's check of a part's
    ///   `Content-Type` (922110) refuses every one with parameters (`text/plain; charset=utf-8`).
    #[must_use]
    pub fn modsecurity_quirks(mut self, on: bool) -> Self {
        self.modsecurity_quirks = on;
        self
    }

    /// CRS's blocking paranoia level (1 to 4; CRS's default is 1).
    #[must_use]
    pub fn paranoia(self, level: u8) -> Self {
        self.tx("blocking_paranoia_level", level.clamp(1, 4).to_string())
    }

    /// Adds a configuration file; `@pmFromFile` data files are then also looked for beside it.
    ///
    /// # Errors
    ///
    /// A [`LoadError`] if the file cannot be read.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn file(mut self, path: impl AsRef<std::path::Path>) -> Result<Self, LoadError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| LoadError::new(format!("{}: {e}", path.display())))?;
        self.texts.push((path.display().to_string(), text));
        if let Some(dir) = path.parent() {
            if !self.dirs.iter().any(|d| d == dir) {
                self.dirs.push(dir.to_owned());
            }
        }
        Ok(self)
    }

    /// Adds a CRS installation as published: `crs-setup.conf` (or, without one, `crs-setup.conf.example`)
    /// and then every `rules/*.conf` in name order, with the `rules/*.data` files.
    ///
    /// # Errors
    ///
    /// A [`LoadError`] if the directory or a file cannot be read.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn crs_dir(mut self, dir: impl AsRef<std::path::Path>) -> Result<Self, LoadError> {
        let dir = dir.as_ref();
        let setup = dir.join("crs-setup.conf");
        let setup = if setup.exists() {
            setup
        } else {
            dir.join("crs-setup.conf.example")
        };
        self = self.file(setup)?;
        let rules = dir.join("rules");
        let mut files: Vec<_> = std::fs::read_dir(&rules)
            .map_err(|e| LoadError::new(format!("{}: {e}", rules.display())))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "conf"))
            .collect();
        files.sort();
        for file in files {
            self = self.file(file)?;
        }
        Ok(self)
    }

    /// Compiles the rules.
    ///
    /// # Errors
    ///
    /// A [`LoadError`] naming the file and line of the first directive, operator, transformation, action
    /// or variable this engine does not support, or a regex that does not compile.
    pub fn build(self) -> Result<RuleSet, LoadError> {
        let mut files = Vec::with_capacity(self.texts.len());
        for (name, text) in &self.texts {
            files.push((name.clone(), seclang::directives(name, text)?));
        }
        let data = |name: &str| {
            self.data.get(name).cloned().or_else(|| {
                self.dirs
                    .iter()
                    .find_map(|dir| std::fs::read_to_string(dir.join(name)).ok())
            })
        };
        let compiled = rule::compile(&files, &data, self.modsecurity_quirks)?;
        Ok(RuleSet {
            compiled,
            tx: self.tx,
        })
    }
}
