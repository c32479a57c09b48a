//! Path traversal: `..` segments, well-known sensitive files, NUL bytes, overlong encodings.

/// Files and directories a request has no business naming.
const SENSITIVE: [&str; 12] = [
    "/etc/passwd",
    "/etc/shadow",
    "/etc/hosts",
    "/proc/self/",
    "c:/windows/",
    "c:/boot.ini",
    "win.ini",
    "/.ssh/",
    "/.htpasswd",
    "/.git/",
    "/.env",
    "web-inf/web.xml",
];

/// The first traversal rule `text` (decoded, lowercased) trips, if any; `overlong` is the decoder's
/// overlong-UTF-8 finding.
pub(crate) fn detect(text: &str, overlong: bool) -> Option<&'static str> {
    if overlong {
        return Some("traversal-overlong-encoding");
    }
    if text.contains('\0') {
        return Some("traversal-nul-byte");
    }
    if !text.contains(['.', '/', '\\']) {
        return None;
    }
    let unified = if text.contains('\\') {
        std::borrow::Cow::Owned(text.replace('\\', "/"))
    } else {
        std::borrow::Cow::Borrowed(text)
    };
    // `..` as a whole segment (Tomcat also accepts `..;`).
    if unified
        .split('/')
        .any(|segment| segment == ".." || segment.starts_with("..;"))
    {
        return Some("traversal-dot-dot");
    }
    // Each name as the value holds it, or at its start as if the value were rooted (`etc/passwd`).
    let rooted = || {
        SENSITIVE
            .iter()
            .filter_map(|name| name.strip_prefix('/'))
            .any(|rest| unified.starts_with(rest))
    };
    if super::contains_any(&unified, &SENSITIVE) || rooted() {
        return Some("traversal-sensitive-file");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::detect;

    #[test]
    fn traversal_is_caught_and_dots_in_names_are_not() {
        for attack in [
            "../../etc/passwd",
            "..\\..\\windows\\win.ini",
            "/static/..;/admin",
            "file=/etc/shadow",
            "....//....//etc/hosts",
            "a/b/../../../c",
            "x\0.png",
            ".git/config",
        ] {
            assert!(detect(attack, false).is_some(), "missed: {attack}");
        }
        assert!(detect("anything", true).is_some());
        for text in [
            "report.final.v2.pdf",
            "/docs/getting-started",
            "wait...what",
            "1.2.3",
            "/images/.hidden-but-fine.png",
        ] {
            assert_eq!(detect(text, false), None, "false positive: {text}");
        }
    }
}
