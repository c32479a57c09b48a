//! The public corpora the WAF examples read: BLNS lines by section, sqlmap's payload templates filled in.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// BLNS's section of script injections.
pub(crate) const BLNS_XSS: &str = "Script Injection";
/// BLNS's section of SQL injections.
pub(crate) const BLNS_SQLI: &str = "SQL Injection";

/// BLNS sections that are neither XSS/SQL attacks nor ordinary text (server-side template and shell
/// injection, XXE, known CVE probes, file inclusion).
const BLNS_PROBES: [&str; 6] = [
    "Server Code Injection",
    "Command Injection (Ruby)",
    "XXE Injection (XML)",
    "File Inclusion",
    "Known CVEs and Vulnerabilities",
    "Unwanted Interpolation",
];

/// Whether a BLNS section is ordinary text: blocking its lines is a false positive.
pub(crate) fn blns_ordinary(section: &str) -> bool {
    section != BLNS_XSS && section != BLNS_SQLI && !BLNS_PROBES.contains(&section)
}

/// BLNS, split into (section, line) pairs.
pub(crate) fn blns(path: &Path) -> Result<Vec<(String, String)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut section = String::new();
    let mut out = Vec::new();
    let mut previous_was_title = false;
    for line in text.lines() {
        if let Some(comment) = line.strip_prefix('#') {
            let title = comment.trim();
            // A section starts with `#\tTitle` followed by `#` alone.
            if !title.is_empty() && !previous_was_title && section_title(title) {
                section = title.to_owned();
                previous_was_title = true;
            } else {
                previous_was_title = false;
            }
            continue;
        }
        previous_was_title = false;
        if !line.is_empty() {
            out.push((section.clone(), line.to_owned()));
        }
    }
    Ok(out)
}

fn section_title(title: &str) -> bool {
    !title.starts_with("Strings") && !title.starts_with("String ") && title.len() < 60
}

/// sqlmap's payload templates with placeholders filled in.
pub(crate) fn sqlmap_payloads(data: &Path) -> Result<Vec<String>, String> {
    let dir = data.join("xml").join("payloads");
    let mut out = Vec::new();
    let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    for file in files {
        let text =
            std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        let mut rest = text.as_str();
        while let Some(start) = rest.find("<payload>") {
            let after = &rest[start + "<payload>".len()..];
            let Some(end) = after.find("</payload>") else {
                break;
            };
            let template = unescape_xml(after[..end].trim());
            rest = &after[end..];
            // The files' own documentation mentions `<payload>` too: keep only real templates.
            if template.is_empty() || template.contains('\n') || template.contains("<comment>") {
                continue;
            }
            let filled = fill_placeholders(&template);
            out.push(format!("1' {filled}-- -"));
            out.push(format!("1 {filled}"));
        }
    }
    Ok(out)
}

fn unescape_xml(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// `[RANDNUM]` → `4821`, `[SLEEPTIME]` → `5`, any other `[NAME]` → a plausible literal.
fn fill_placeholders(template: &str) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find(']') {
            Some(close)
                if after[..close]
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b == b'_' || b.is_ascii_digit()) =>
            {
                let name = &after[..close];
                out.push_str(match name {
                    n if n.starts_with("RANDNUM") => "4821",
                    n if n.starts_with("RANDSTR") => "xkqz",
                    "SLEEPTIME" => "5",
                    "DELIMITER_START" => "0x716b6a7171",
                    "DELIMITER_STOP" => "0x7170767171",
                    "INFERENCE" => "4821=4821",
                    "GENERIC_SQL_COMMENT" => "-- -",
                    "ORIGVALUE" | "ORIGINAL" => "1",
                    _ => "1",
                });
                rest = &after[close + 1..];
            }
            _ => {
                out.push('[');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Ordinary text of the shapes WAFs are known to stumble on, written for these measurements: names with
/// apostrophes, prose that mentions SQL words or code, code snippets people paste into support forms,
/// URLs, small JSON documents, measurements and punctuation-heavy text.
pub(crate) const BENIGN_TEXT: &[&str] = &[
    "O'Brien",
    "D'Angelo & Sons",
    "Renée O'Sullivan-Smith",
    "Ngũgĩ wa Thiong'o",
    "It's the customer's order, isn't it?",
    "Please select the union option from the drop-down and then update your profile.",
    "We'll drop the old table from the lobby and insert a new one near the window.",
    "The order by date was wrong; please delete my account and create a new one.",
    "Select all that apply: red, green or blue.",
    "I tried to update the record where the name is null but it didn't work.",
    "Our union meeting is on Friday, and the benchmark results will be shared.",
    "Waitfor the delay in the airport, then sleep at the hotel.",
    "The script tag in my email signature doesn't render.",
    "Can you alert me when the price drops below $50?",
    "Use <b>bold</b> for emphasis in the description.",
    "My password reset link says 'expired' -- can you resend it?",
    "Meeting notes: 1) budget, 2) hiring; 3) roadmap -- see attached.",
    "Call me at +1 (555) 010-0199 or email jane.doe@example.com",
    "The box is 7\" x 5\" x 2\" and weighs 1.5 lbs.",
    "Rating: 4/5 -- good value, would buy again!!!",
    "C:\\Users\\jane\\Documents\\report.docx",
    "~/projects/site/README.md",
    "https://example.com/search?q=shoes&size=42#reviews",
    "https://docs.example.org/guide/getting-started.html",
    "SELECT name, email FROM customers WHERE id = 42;",
    "for (let i = 0; i < items.length; i++) { total += items[i].price; }",
    "if (user.isAdmin()) { return true; }",
    "def greet(name): return f\"Hello, {name}!\"",
    "git commit -m 'Fix the login page'",
    "{\"name\": \"Widget\", \"price\": 9.99, \"tags\": [\"new\", \"sale\"]}",
    "[1, 2, 3, 4]",
    "Total: €1.299,00 (incl. VAT)",
    "50% off -- today only!",
    "#hashtag @mention",
    "Q&A: what's the difference between 'and' and 'or'?",
    "Tom & Jerry's Bar-B-Q",
    "The 1=1 comparison in the textbook example is always true.",
    "Use the -- flag to stop option parsing.",
    "email me: support at example dot com",
    "Dear team, the <3 emoji isn't showing in the chat.",
];
