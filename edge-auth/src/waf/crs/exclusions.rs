//! Opt-in exclusion sets for benign shapes CRS is known to flag, as SecLang text to add after the rules
//! ([`RuleSetBuilder::rules`](super::RuleSetBuilder::rules)). CRS's own advice is the same: tune with
//! exclusions for the fields you know, never by lowering the paranoia level for everything.
//!
//! Each set trades detection for quiet on the fields it names: the rules it removes no longer see those
//! fields, injections included. The oracle (`scripts/crs-oracle.sh`) reports both sides of the trade
//! on its corpus: false positives on ordinary text, and attacks still caught, with and without the sets
//! (figures in `benches/README.md`).

/// Rules that fire on ordinary prose at paranoia 1 and 2, measured on BLNS's ordinary text and the
/// hand-written benign set of the oracle's corpus (names with apostrophes, prose mentioning SQL words,
/// code, URLs, prices, punctuation): SQL injection heuristics that key on words and punctuation
/// (942xxx, libinjection's 942100 among them), Unix command signatures that match commands quoted in
/// prose (932236, 932240), the off-domain URL rule (931130) and the printable-bytes check (920271,
/// which refuses every non-ASCII letter at paranoia 2).
pub const FREE_TEXT_RULES: &[u32] = &[
    920_271, 931_130, 932_236, 932_240, 942_100, 942_120, 942_130, 942_131, 942_150, 942_180,
    942_200, 942_260, 942_300, 942_330, 942_370, 942_380, 942_400, 942_410, 942_430, 942_440,
    942_450, 942_480, 942_520,
];

/// The free-text exclusion set: [`FREE_TEXT_RULES`] no longer read the arguments named `fields` (a form
/// field, a query parameter, or a JSON member by its name: `comment` also covers `json.comment`), for
/// comment boxes, messages, reviews and descriptions that people type prose, code and links into.
/// XSS rules keep reading them: free text is where stored XSS lives.
///
/// ```
/// use edge_auth::waf::crs::exclusions::free_text;
///
/// let text = free_text(["comment", "message"]);
/// assert!(text.contains("!ARGS:comment") && text.contains("!ARGS:json.message"));
/// ```
#[must_use]
pub fn free_text<'a>(fields: impl IntoIterator<Item = &'a str>) -> String {
    let mut text = String::from("# edge-auth free-text exclusions\n");
    for field in fields {
        // A name that could end the directive or the variable list is not a field name.
        if field.is_empty() || field.contains(['"', '|', ' ', '\\', '\n', ':', ',']) {
            continue;
        }
        for id in FREE_TEXT_RULES {
            text.push_str(&format!(
                "SecRuleUpdateTargetById {id} \"!ARGS:{field}|!ARGS:json.{field}\"\n"
            ));
        }
    }
    text
}
