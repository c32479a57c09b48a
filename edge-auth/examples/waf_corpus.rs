//! Measures the WAF on public corpora: detection on attack strings, false positives on ordinary ones.
//!
//! ```text
//! cargo run --release -p edge-auth --example waf_corpus -- \
//!     --blns <big-list-of-naughty-strings>/blns.txt --sqlmap <sqlmap>/data \
//!     [--min-sqli 0.9] [--min-xss 0.9] [--max-false-positives 0.01]
//! ```
//!
//! Corpora (fetched by `.ci/run` from npm and PyPI into a cache outside the repository):
//! - The Big List of Naughty Strings (npm `big-list-of-naughty-strings`): its "Script Injection" and "SQL
//!   Injection" sections as attacks; every section of ordinary text (reserved words, numbers, special
//!   characters, Unicode, quotation marks, emoji, right-to-left text, the Scunthorpe problem, …) as
//!   benign input.
//! - sqlmap's payload templates (PyPI `sqlmap`, `data/xml/payloads/*.xml`), placeholders filled in, each
//!   injected into a string context (`1' … -- -`) and a numeric one (`1 …`), as SQL injection attacks.
//! - sqlmap's `data/txt/user-agents.txt` as benign header values, and its word lists (a password
//!   dictionary, common table, column and parameter names, SQL keywords on their own) as benign values.
//!
//! Every string is sent as a query parameter (percent-encoded), user agents as a `User-Agent` header.
//! Exits non-zero when a rate misses its threshold.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use edge_auth::waf::{Category, WafRules};

#[path = "corpus/mod.rs"]
mod corpus;
use corpus::{
    BENIGN_TEXT, BLNS_SQLI, BLNS_XSS, blns, blns_ordinary, percent_encode, sqlmap_payloads,
};
use http::{HeaderMap, HeaderValue, Uri};

/// BLNS sections that hold attacks, and what kind.
const ATTACK_SECTIONS: [(&str, Category); 2] = [
    (BLNS_XSS, Category::CrossSiteScripting),
    (BLNS_SQLI, Category::SqlInjection),
];

struct Args {
    blns: PathBuf,
    sqlmap: PathBuf,
    min_sqli: f64,
    min_xss: f64,
    max_false_positives: f64,
}

fn args() -> Result<Args, String> {
    let mut args = Args {
        blns: PathBuf::new(),
        sqlmap: PathBuf::new(),
        min_sqli: 0.0,
        min_xss: 0.0,
        max_false_positives: 1.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || value.parse::<f64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--blns" => args.blns = PathBuf::from(&value),
            "--sqlmap" => args.sqlmap = PathBuf::from(&value),
            "--min-sqli" => args.min_sqli = number()?,
            "--min-xss" => args.min_xss = number()?,
            "--max-false-positives" => args.max_false_positives = number()?,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if args.blns.as_os_str().is_empty() || args.sqlmap.as_os_str().is_empty() {
        return Err("--blns and --sqlmap are required".to_owned());
    }
    Ok(args)
}

fn blocked_as_query(waf: &WafRules, value: &str) -> Option<bool> {
    let uri: Uri = format!("/search?q={}", percent_encode(value))
        .parse()
        .ok()?;
    Some(waf.inspect(&uri, &HeaderMap::new(), None).is_blocked())
}

#[derive(Default)]
struct Tally {
    total: usize,
    hits: usize,
    examples: Vec<String>,
}

impl Tally {
    fn add(&mut self, hit: bool, sample: &str, keep_when_hit: bool) {
        self.total += 1;
        if hit {
            self.hits += 1;
        }
        if hit == keep_when_hit && self.examples.len() < 8 {
            self.examples.push(sample.chars().take(100).collect());
        }
    }

    fn rate(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            #[allow(clippy::cast_precision_loss)]
            let rate = self.hits as f64 / self.total as f64;
            rate
        }
    }
}

fn main() -> ExitCode {
    let args = match args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("waf_corpus: {e}");
            return ExitCode::from(2);
        }
    };
    let (strings, payloads) = match (blns(&args.blns), sqlmap_payloads(&args.sqlmap)) {
        (Ok(s), Ok(p)) => (s, p),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("waf_corpus: {e}");
            return ExitCode::from(2);
        }
    };
    let user_agents = std::fs::read_to_string(args.sqlmap.join("txt").join("user-agents.txt"))
        .unwrap_or_default();

    let waf = WafRules::new();
    let mut tallies: BTreeMap<&str, Tally> = BTreeMap::new();
    for (section, line) in &strings {
        let attack = ATTACK_SECTIONS.iter().find(|(name, _)| name == section);
        let Some(blocked) = blocked_as_query(&waf, line) else {
            continue;
        };
        match attack {
            Some((_, Category::SqlInjection)) => tallies
                .entry("sqli: BLNS")
                .or_default()
                .add(blocked, line, false),
            Some(_) => tallies
                .entry("xss: BLNS")
                .or_default()
                .add(blocked, line, false),
            // Neither attacks nor ordinary text: left out of both rates.
            None if !blns_ordinary(section) => {}
            None => tallies
                .entry("benign: BLNS ordinary text")
                .or_default()
                .add(blocked, line, true),
        }
    }
    for line in BENIGN_TEXT {
        if let Some(blocked) = blocked_as_query(&waf, line) {
            tallies
                .entry("benign: hand-written text")
                .or_default()
                .add(blocked, line, true);
        }
    }
    for payload in &payloads {
        if let Some(blocked) = blocked_as_query(&waf, payload) {
            tallies
                .entry("sqli: sqlmap payloads")
                .or_default()
                .add(blocked, payload, false);
        }
    }
    // Ordinary words: a password dictionary, common parameter, table and column names, and SQL's own
    // keywords, each alone (a lone keyword is not an injection).
    for (name, file) in [
        ("benign: sqlmap dictionary", "smalldict.txt"),
        ("benign: sqlmap identifiers", "common-columns.txt"),
        ("benign: sqlmap identifiers", "common-tables.txt"),
        ("benign: sqlmap identifiers", "common-params.txt"),
        ("benign: SQL keywords alone", "keywords.txt"),
    ] {
        let text = std::fs::read_to_string(args.sqlmap.join("txt").join(file)).unwrap_or_default();
        for word in text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        {
            if let Some(blocked) = blocked_as_query(&waf, word) {
                tallies.entry(name).or_default().add(blocked, word, true);
            }
        }
    }
    for agent in user_agents
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        let Ok(value) = HeaderValue::from_str(agent) else {
            continue;
        };
        let mut headers = HeaderMap::new();
        headers.insert(http::header::USER_AGENT, value);
        let blocked = waf
            .inspect(&Uri::from_static("/"), &headers, None)
            .is_blocked();
        tallies
            .entry("benign: sqlmap user agents")
            .or_default()
            .add(blocked, agent, true);
    }

    println!(
        "{:<28} {:>6} {:>7} {:>8}",
        "corpus", "items", "blocked", "rate"
    );
    for (name, t) in &tallies {
        println!(
            "{name:<28} {:>6} {:>7} {:>7.1}%",
            t.total,
            t.hits,
            100.0 * t.rate()
        );
        for example in &t.examples {
            let what = if name.starts_with("benign") {
                "blocked"
            } else {
                "missed"
            };
            println!("    {what}: {example:?}");
        }
    }

    let combined = |prefix: &str| {
        let (hits, total) = tallies
            .iter()
            .filter(|(n, _)| n.starts_with(prefix))
            .fold((0, 0), |(h, t), (_, x)| (h + x.hits, t + x.total));
        #[allow(clippy::cast_precision_loss)]
        let rate = if total == 0 {
            0.0
        } else {
            hits as f64 / total as f64
        };
        rate
    };
    let (sqli, xss, fp) = (combined("sqli"), combined("xss"), combined("benign"));
    println!(
        "\nSQL injection detected {:.1}%, XSS detected {:.1}%, false positives {:.2}%",
        100.0 * sqli,
        100.0 * xss,
        100.0 * fp
    );
    let mut ok = true;
    if sqli < args.min_sqli {
        eprintln!(
            "SQL injection detection {sqli:.3} is below {}",
            args.min_sqli
        );
        ok = false;
    }
    if xss < args.min_xss {
        eprintln!("XSS detection {xss:.3} is below {}", args.min_xss);
        ok = false;
    }
    if fp > args.max_false_positives {
        eprintln!(
            "false positives {fp:.4} are above {}",
            args.max_false_positives
        );
        ok = false;
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
