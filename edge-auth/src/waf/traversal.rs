//! Path traversal: `..` segments, well-known sensitive files, NUL bytes, overlong encodings.

/// Files and directories a request has no business naming.
const SENSITIVE: super::Needles<'static> = super::Needles::new(&[
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
]);

/// The first traversal rule `text` (decoded, lowercased) trips, if any; `overlong` is the decoder's
/// overlong-UTF-8 finding; `in_path` says `text` is the request's path, where any `..` is an attack.
pub(crate) fn detect(text: &str, overlong: bool, in_path: bool) -> Option<&'static str> {
    if overlong {
        return Some("traversal-overlong-encoding");
    }
    const PATH: super::ByteSet = super::ByteSet::new(b"./\\");
    if text.as_bytes().contains(&0) {
        return Some("traversal-nul-byte");
    }
    if !PATH.any_in(text.as_bytes()) {
        return None;
    }
    let unified = if text.contains('\\') {
        std::borrow::Cow::Owned(text.replace('\\', "/"))
    } else {
        std::borrow::Cow::Borrowed(text)
    };
    // `..` as a whole segment (Tomcat also accepts `..;`, always an attack). In the request path (which
    // clients normalise before sending) and in an absolute path, any `..` is one; in other values only a
    // `..` that climbs above where the value starts (`../../etc/passwd`), not prose that mentions
    // `~/projects/../notes.txt`.
    let absolute = unified.starts_with('/') || unified.get(1..3) == Some(":/");
    let mut depth = 0i64;
    for segment in unified.split('/') {
        match segment {
            ".." => {
                depth -= 1;
                if depth < 0 || in_path || absolute {
                    return Some("traversal-dot-dot");
                }
            }
            _ if segment.starts_with("..;") => return Some("traversal-dot-dot"),
            "" | "." => {}
            _ => depth += 1,
        }
    }
    // Each name as the value holds it, or at its start as if the value were rooted (`etc/passwd`).
    let rooted = || {
        SENSITIVE
            .words()
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
            "app/..;/manager/html",
            "file=/etc/shadow",
            "....//....//etc/hosts",
            "a/b/../../../c",
            "/var/www/images/../../config.php",
            "c:\\inetpub\\..\\secret",
            "x\0.png",
            ".git/config",
        ] {
            assert!(detect(attack, false, false).is_some(), "missed: {attack}");
        }
        assert!(detect("anything", true, false).is_some());
        assert!(
            detect("/images/../index.html", false, true).is_some(),
            "in the request path, any `..`"
        );
        for text in [
            "report.final.v2.pdf",
            "/docs/getting-started",
            "wait...what",
            "1.2.3",
            "/images/.hidden-but-fine.png",
            "see ~/projects/../notes.txt for details",
            "src/../README.md",
        ] {
            assert_eq!(detect(text, false, false), None, "false positive: {text}");
        }
    }
}
