//! The public corpora the WAF examples read: BLNS lines by section, sqlmap's payload templates filled in.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

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
