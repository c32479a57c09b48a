//! Escaping by context: what a piece of data must become so that it stays data where it lands.
//!
//! | context | function | what it guarantees |
//! |---|---|---|
//! | text between tags | [`text`] | `&`, `<`, `>` become references: no tag, comment or reference can start |
//! | a double-quoted attribute value | [`attribute`] | also `"` and `'`: the value cannot end early, whatever quote a later edit uses |
//! | a URL attribute (`href`, `src`, …) | [`url`] | only `http`, `https`, `mailto`, `tel` or relative URLs survive; anything else (`javascript:`, `data:`, `vbscript:`, obfuscated with tabs, newlines, entities or case) becomes [`UNSAFE_URL`]; then attribute-escaped |
//! | JSON inside `<script type="application/json">` | [`json_for_script`] | `<`, `>`, `&`, U+2028 and U+2029 become `\u` escapes: `</script>` and `<!--` cannot appear, the JSON still parses to the same value |
//!
//! Each scans for the next byte that needs work (`memchr`'s SIMD search for text) and copies the runs in
//! between whole.
//!
//! ```
//! use edge_render::html::escape;
//!
//! let mut out = String::new();
//! escape::text("<script>alert(1)</script> & more", &mut out);
//! assert_eq!(out, "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more");
//!
//! out.clear();
//! escape::url("  java\tscript:alert(1)", &mut out);
//! assert_eq!(out, escape::UNSAFE_URL);
//! ```

/// What an unsafe URL is replaced with: inert, and easy to find in a page.
pub const UNSAFE_URL: &str = "about:invalid#edge-unsafe-url";

/// Appends `input` escaped for text between tags.
pub fn text(input: &str, out: &mut String) {
    let bytes = input.as_bytes();
    let mut start = 0;
    for at in memchr::memchr3_iter(b'&', b'<', b'>', bytes) {
        out.push_str(&input[start..at]);
        out.push_str(match bytes[at] {
            b'&' => "&amp;",
            b'<' => "&lt;",
            _ => "&gt;",
        });
        start = at + 1;
    }
    out.push_str(&input[start..]);
}

/// Appends `input` escaped for a double-quoted attribute value (the quotes are the caller's).
pub fn attribute(input: &str, out: &mut String) {
    let bytes = input.as_bytes();
    let mut start = 0;
    for (at, &b) in bytes.iter().enumerate() {
        let replacement = match b {
            b'&' => "&amp;",
            b'"' => "&quot;",
            b'\'' => "&#39;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            _ => continue,
        };
        out.push_str(&input[start..at]);
        out.push_str(replacement);
        start = at + 1;
    }
    out.push_str(&input[start..]);
}

/// Whether `input` is a URL a page may link to: `http`, `https`, `mailto`, `tel`, or no scheme at all
/// (relative). Read as a browser reads it: leading spaces and control characters are skipped, tabs and
/// newlines anywhere are ignored, the scheme is case-insensitive.
#[must_use]
pub fn is_safe_url(input: &str) -> bool {
    let trimmed = input.trim_start_matches(|c: char| c <= ' ');
    let mut scheme = String::new();
    for c in trimmed.chars() {
        match c {
            '\t' | '\n' | '\r' => {}
            ':' => {
                return matches!(scheme.as_str(), "http" | "https" | "mailto" | "tel");
            }
            // A `/`, `?` or `#` before any `:` means a relative URL.
            '/' | '?' | '#' => return true,
            c if c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.') => {
                if scheme.len() > 32 {
                    // No scheme is this long: a relative path that happens to contain a colon later.
                    return true;
                }
                scheme.push(c.to_ascii_lowercase());
            }
            // Anything else cannot be in a scheme, so this is a relative URL. (A character reference
            // hiding a colon, `javascript&colon;`, is harmless here: the value is attribute-escaped, so the
            // browser decodes `&amp;colon;` back to the text `&colon;`, not to `:`.)
            _ => return true,
        }
    }
    true
}

/// Appends `input` for a URL attribute: the URL itself if [`is_safe_url`], else [`UNSAFE_URL`]; then
/// escaped as an attribute value.
pub fn url(input: &str, out: &mut String) {
    if is_safe_url(input) {
        attribute(input, out);
    } else {
        out.push_str(UNSAFE_URL);
    }
}

/// Appends serialized JSON made safe inside `<script type="application/json">`: `<`, `>`, `&`, U+2028 and
/// U+2029 become `\u` escapes. Outside strings JSON has none of these, so the value parses unchanged.
pub fn json_for_script(json: &str, out: &mut String) {
    let mut start = 0;
    for (at, c) in json.char_indices() {
        let replacement = match c {
            '<' => "\\u003c",
            '>' => "\\u003e",
            '&' => "\\u0026",
            '\u{2028}' => "\\u2028",
            '\u{2029}' => "\\u2029",
            _ => continue,
        };
        out.push_str(&json[start..at]);
        out.push_str(replacement);
        start = at + c.len_utf8();
    }
    out.push_str(&json[start..]);
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn escaped(f: fn(&str, &mut String), input: &str) -> String {
        let mut out = String::new();
        f(input, &mut out);
        out
    }

    #[test]
    fn each_context() {
        assert_eq!(
            escaped(text, "a < b && c > d"),
            "a &lt; b &amp;&amp; c &gt; d"
        );
        assert_eq!(escaped(text, "plain"), "plain");
        assert_eq!(
            escaped(attribute, r#"" onload="x' <>&"#),
            "&quot; onload=&quot;x&#39; &lt;&gt;&amp;"
        );
        assert_eq!(
            escaped(json_for_script, r#"{"a":"</script><!--\u2028&"}"#),
            r#"{"a":"\u003c/script\u003e\u003c!--\u2028\u0026"}"#
        );
        assert_eq!(
            escaped(json_for_script, "\"\u{2028}\u{2029}\""),
            "\"\\u2028\\u2029\""
        );
    }

    #[test]
    fn urls_as_a_browser_reads_them() {
        for safe in [
            "https://shop.example/p?q=1",
            "HTTP://x",
            "/relative/path:with-colon",
            "relative?x=a:b",
            "#top",
            "mailto:ada@example.com",
            "tel:+491234",
            "",
            "page.html",
            "./a:b",
        ] {
            assert!(is_safe_url(safe), "{safe}");
        }
        for unsafe_url in [
            "javascript:alert(1)",
            "JavaScript:alert(1)",
            "  javascript:alert(1)",
            "\u{1}javascript:alert(1)",
            "java\tscript:alert(1)",
            "java\nscript:alert(1)",
            "data:text/html,<script>",
            "vbscript:msgbox",
            "file:///etc/passwd",
        ] {
            assert!(!is_safe_url(unsafe_url), "{unsafe_url}");
            assert_eq!(escaped(url, unsafe_url), UNSAFE_URL);
        }
        assert_eq!(escaped(url, "/a?b=\"c\""), "/a?b=&quot;c&quot;");
        assert_eq!(
            escaped(url, "javascript&colon;alert(1)"),
            "javascript&amp;colon;alert(1)",
            "a relative URL once the browser decodes the attribute"
        );
    }

    proptest! {
        /// Escaped text never holds a raw `<`, `>` or an `&` that does not start one of our references;
        /// attribute values never hold a quote; and unescaping gives the input back.
        #[test]
        fn escaping_cannot_break_out_and_loses_nothing(input in any::<String>()) {
            let t = escaped(text, &input);
            prop_assert!(!t.contains('<') && !t.contains('>'));
            let a = escaped(attribute, &input);
            prop_assert!(!a.contains('"') && !a.contains('\'') && !a.contains('<'));
            let unescape = |s: &str| s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&#39;", "'").replace("&amp;", "&");
            prop_assert_eq!(unescape(&t), input.clone());
            prop_assert_eq!(unescape(&a), input.clone());
        }

        /// Any string serialized as JSON and escaped for a script still parses to the same string, and no
        /// `</script` or `<!--` appears.
        #[test]
        fn json_stays_json(input in any::<String>()) {
            let json = serde_json::to_string(&input).unwrap();
            let safe = escaped(json_for_script, &json);
            prop_assert!(!safe.to_ascii_lowercase().contains("</script") && !safe.contains("<!--"));
            let back: String = serde_json::from_str(&safe).unwrap();
            prop_assert_eq!(back, input);
        }
    }
}
