//! The strings inside XML and `multipart/form-data` bodies, for the rules to read one by one.
//!
//! Both readers are forgiving scanners, not validating parsers: what they cannot make sense of (a tag
//! that never closes, a part without headers) they hand over as text, so malformed input is inspected
//! rather than waved through. Neither allocates for the document as a whole, and neither yields more than
//! the caller's field limit.

use std::borrow::Cow;

use super::decode;

/// The text nodes, CDATA sections and attribute values of an XML document, with the five predefined
/// entities and character references decoded (what an XML parser hands the application). Comments,
/// processing instructions and the DOCTYPE are skipped; element and attribute names are not values.
pub(crate) fn xml_strings(document: &str) -> Vec<Cow<'_, str>> {
    let mut strings = Vec::new();
    scan_xml(document, |_, s| strings.push(s));
    strings
}

/// [`xml_strings`] apart: the text (text nodes and CDATA sections, in document order) and the attribute
/// values, as CRS's `XML:/*` and `XML://@*` read them.
#[cfg(feature = "crs")]
pub(crate) fn xml_parts(document: &str) -> (Vec<Cow<'_, str>>, Vec<Cow<'_, str>>) {
    let (mut text, mut attributes) = (Vec::new(), Vec::new());
    scan_xml(document, |attribute, s| {
        if attribute {
            attributes.push(s);
        } else {
            text.push(s);
        }
    });
    (text, attributes)
}

/// Hands each string of `document` to `sink`, with whether it is an attribute value.
fn scan_xml<'a>(document: &'a str, mut sink: impl FnMut(bool, Cow<'a, str>)) {
    let mut rest = document;
    while !rest.is_empty() {
        let Some(open) = rest.find('<') else {
            push_text(&mut sink, false, rest);
            break;
        };
        push_text(&mut sink, false, rest.get(..open).unwrap_or_default());
        rest = rest.get(open..).unwrap_or_default();
        let (skip_to, cdata) = if rest.starts_with("<!--") {
            ("-->", false)
        } else if rest.starts_with("<![CDATA[") {
            ("]]>", true)
        } else if rest.starts_with("<?") {
            ("?>", false)
        } else {
            (">", false)
        };
        let Some(end) = rest.find(skip_to) else {
            // Never closed: the rest is read as text.
            push_text(&mut sink, false, rest);
            break;
        };
        let inside = rest.get(..end).unwrap_or_default();
        if cdata {
            let text = inside.get("<![CDATA[".len()..).unwrap_or_default();
            if !text.trim().is_empty() {
                sink(false, Cow::Borrowed(text));
            }
        } else if !inside.starts_with("<!") && !inside.starts_with("<?") {
            attribute_values(&mut sink, inside);
        }
        rest = rest.get(end + skip_to.len()..).unwrap_or_default();
    }
}

fn push_text<'a>(sink: &mut impl FnMut(bool, Cow<'a, str>), attribute: bool, text: &'a str) {
    if !text.trim().is_empty() {
        sink(attribute, unescape(text));
    }
}

/// The quoted values inside a tag (`<a href="…" title='…'>`).
fn attribute_values<'a>(sink: &mut impl FnMut(bool, Cow<'a, str>), tag: &'a str) {
    let mut rest = tag;
    while let Some(eq) = rest.find('=') {
        let after = rest.get(eq + 1..).unwrap_or_default().trim_start();
        let Some(quote) = after.chars().next().filter(|c| matches!(c, '"' | '\'')) else {
            rest = after;
            continue;
        };
        let value = after.get(1..).unwrap_or_default();
        let end = value.find(quote).unwrap_or(value.len());
        push_text(sink, true, value.get(..end).unwrap_or_default());
        rest = value.get(end + 1..).unwrap_or_default();
    }
}

/// XML's predefined entities and character references, decoded (by the one reference reader,
/// [`decode::entity`], taking only references closed by `;`, as XML writes them); anything else is left
/// as it is.
fn unescape(text: &str) -> Cow<'_, str> {
    if !text.contains('&') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(rest.get(..amp).unwrap_or_default());
        rest = rest.get(amp..).unwrap_or_default();
        let closed =
            |&(_, used): &(char, usize)| rest.as_bytes().get(used.wrapping_sub(1)) == Some(&b';');
        match decode::entity(rest).filter(closed) {
            Some((c, used)) => {
                out.push(c);
                rest = rest.get(used..).unwrap_or_default();
            }
            None => {
                out.push('&');
                rest = rest.get(1..).unwrap_or_default();
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// One part of a `multipart/form-data` body.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Part<'a> {
    /// The field's name (`Content-Disposition: form-data; name="…"`), empty without one.
    pub(crate) name: &'a str,
    /// The uploaded file's name, for a file part.
    pub(crate) filename: Option<&'a str>,
    /// The content, when it is text to read: a field, or a file whose type is text; `None` for a binary
    /// upload (its name is still read).
    pub(crate) value: Option<&'a [u8]>,
    /// The part's header lines, as sent.
    pub(crate) head: &'a str,
    /// The content's length, binary or not.
    pub(crate) len: usize,
}

/// The `boundary` parameter of a `multipart/form-data` content type (RFC 2046: 1 to 70 characters).
pub(crate) fn boundary(content_type: &str) -> Option<&str> {
    parameter(content_type, "boundary").filter(|value| !value.is_empty() && value.len() <= 70)
}

/// The parts of a multipart body delimited by `boundary` (RFC 7578), at most `max` of them. A part that
/// has no blank line after its headers is read whole, as a value.
pub(crate) fn multipart_parts<'a>(body: &'a [u8], boundary: &str, max: usize) -> Vec<Part<'a>> {
    let delimiter = format!("--{boundary}");
    let delimiter = delimiter.as_bytes();
    let mut parts = Vec::new();
    let mut pieces = split_on(body, delimiter).skip(1);
    while let (Some(piece), true) = (pieces.next(), parts.len() < max) {
        // `--boundary--` ends the body.
        if piece.starts_with(b"--") {
            break;
        }
        let piece = piece
            .strip_prefix(b"\r\n")
            .or_else(|| piece.strip_prefix(b"\n"))
            .unwrap_or(piece);
        let piece = piece
            .strip_suffix(b"\r\n")
            .or_else(|| piece.strip_suffix(b"\n"))
            .unwrap_or(piece);
        let (head, content) = match find(piece, b"\r\n\r\n")
            .map(|at| (at, 4))
            .or_else(|| find(piece, b"\n\n").map(|at| (at, 2)))
        {
            Some((at, len)) => (&piece[..at], &piece[at + len..]),
            None => (&[][..], piece),
        };
        let head = std::str::from_utf8(head).unwrap_or_default();
        let mut part = Part {
            name: "",
            filename: None,
            value: Some(content),
            head,
            len: content.len(),
        };
        let mut binary = false;
        for line in head.lines() {
            let Some((field, value)) = line.split_once(':') else {
                continue;
            };
            if field.trim().eq_ignore_ascii_case("content-disposition") {
                part.name = parameter(value, "name").unwrap_or_default();
                part.filename = parameter(value, "filename");
            } else if field.trim().eq_ignore_ascii_case("content-type") {
                let kind = value.trim().to_ascii_lowercase();
                binary = !(kind.starts_with("text/")
                    || kind.contains("json")
                    || kind.contains("xml")
                    || kind.starts_with("application/x-www-form-urlencoded"));
            }
        }
        if part.filename.is_some() && binary {
            part.value = None;
        }
        parts.push(part);
    }
    parts
}

/// A `name="value"` parameter of a header value (quotes optional).
fn parameter<'a>(header: &'a str, wanted: &str) -> Option<&'a str> {
    header.split(';').skip(1).find_map(|parameter| {
        let (name, value) = parameter.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case(wanted)
            .then(|| value.trim().trim_matches('"'))
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// `haystack` cut at each occurrence of `delimiter`.
fn split_on<'a, 'd>(
    haystack: &'a [u8],
    delimiter: &'d [u8],
) -> impl Iterator<Item = &'a [u8]> + use<'a, 'd> {
    let mut rest = Some(haystack);
    std::iter::from_fn(move || {
        let current = rest?;
        match find(current, delimiter) {
            Some(at) => {
                rest = current.get(at + delimiter.len()..);
                Some(&current[..at])
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use proptest::strategy::Strategy as _;

    use super::*;

    proptest::proptest! {
        /// Any document, well-formed or not, is scanned without a panic, and nothing is yielded that was
        /// not in it (less what unescaping shortens).
        #[test]
        fn any_xml_is_scanned(document in "[<>!?\\[\\]/=\"'&#;a-c0-9 -]{0,200}") {
            let strings = xml_strings(&document);
            let total: usize = strings.iter().map(|s| s.len()).sum();
            proptest::prop_assert!(total <= document.len());
        }

        /// Any body is split without a panic, into at most `max` parts whose contents come from it.
        #[test]
        fn any_multipart_body_is_split(
            body in proptest::collection::vec(proptest::prop_oneof![
                proptest::strategy::Just(b"--b\r\n".to_vec()),
                proptest::strategy::Just(b"Content-Disposition: form-data; name=\"x\"\r\n\r\n".to_vec()),
                proptest::collection::vec(proptest::num::u8::ANY, 0..8),
            ], 0..12).prop_map(|pieces: Vec<Vec<u8>>| pieces.concat()),
            max in 0usize..5,
        ) {
            let parts = multipart_parts(&body, "b", max);
            proptest::prop_assert!(parts.len() <= max);
            for part in parts {
                if let Some(value) = part.value {
                    proptest::prop_assert!(value.len() <= body.len());
                }
            }
        }
    }

    #[test]
    fn xml_text_cdata_and_attributes_decoded() {
        let document = r#"<?xml version="1.0"?><!DOCTYPE a><!-- <script>not this</script> -->
<order id="7" note='it&apos;s &lt;b&gt;'><item>O&#39;Brien</item><![CDATA[<raw> & text]]><empty/></order>"#;
        let strings: Vec<String> = xml_strings(document)
            .into_iter()
            .map(Cow::into_owned)
            .collect();
        assert_eq!(strings, ["7", "it's <b>", "O'Brien", "<raw> & text"]);
        assert_eq!(xml_strings("<a>unclosed <b"), ["unclosed ", "<b"]);
        #[cfg(feature = "crs")]
        {
            let (text, attributes) = super::xml_parts(document);
            assert_eq!(text, ["O'Brien", "<raw> & text"]);
            assert_eq!(attributes, ["7", "it's <b>"]);
        }
        assert_eq!(
            unescape("fish &amp chips &#x41;&bogus;"),
            "fish &amp chips A&bogus;"
        );
    }

    #[test]
    fn multipart_fields_files_and_their_names() {
        let body = b"preamble\r\n--XyZ\r\nContent-Disposition: form-data; name=\"comment\"\r\n\r\nhello there\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"upload\"; filename=\"../../etc/passwd\"\r\nContent-Type: image/png\r\n\r\n\x89PNG\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"notes\"; filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\nplain text\r\n--XyZ--\r\n";
        assert_eq!(boundary("multipart/form-data; boundary=XyZ"), Some("XyZ"));
        assert_eq!(
            boundary("multipart/form-data; charset=utf-8; Boundary=\"a b\""),
            Some("a b")
        );
        assert_eq!(boundary("multipart/form-data"), None);
        let parts = multipart_parts(body, "XyZ", 10);
        let read: Vec<_> = parts
            .iter()
            .map(|p| (p.name, p.filename, p.value, p.len))
            .collect();
        assert_eq!(
            read,
            [
                ("comment", None, Some(&b"hello there"[..]), 11),
                ("upload", Some("../../etc/passwd"), None, 4),
                ("notes", Some("a.txt"), Some(&b"plain text"[..]), 10),
            ]
        );
        assert!(parts[2].head.contains("Content-Type: text/plain"));
        assert_eq!(multipart_parts(body, "XyZ", 1).len(), 1, "bounded");
        assert_eq!(multipart_parts(b"no delimiter at all", "XyZ", 10), []);
    }
}
