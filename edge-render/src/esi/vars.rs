//! ESI variables: what `$(NAME)`, `$(NAME{key})` and `$(NAME{key}|default)` read from the request.
//!
//! | variable | value |
//! |---|---|
//! | `HTTP_HOST` | the `Host` field |
//! | `HTTP_COOKIE` / `HTTP_COOKIE{name}` | the `Cookie` field / one cookie's value |
//! | `QUERY_STRING` / `QUERY_STRING{name}` | the query / one parameter's value (percent-decoded) |
//! | `HTTP_ACCEPT_LANGUAGE` / `HTTP_ACCEPT_LANGUAGE{lang}` | the field / whether `lang` is accepted (`en` matches `en-GB`) |
//! | `HTTP_USER_AGENT` / `{browser}` `{os}` `{version}` | the field / `MSIE`, `MOZILLA` or `OTHER`; `WIN`, `MAC`, `UNIX` or `OTHER`; the browser's version |
//! | `HTTP_REFERER` | the `Referer` field |
//! | `REMOTE_ADDR` | the client's address, as the host gives it |
//!
//! An unknown or absent variable is empty (or its default). Where a value lands decides how it is written:
//! in text inside `esi:vars` it is HTML-escaped, in an include's `src` or `alt` it is percent-encoded, so no
//! cookie can inject markup into a page or a header line into a fragment request.

use std::borrow::Cow;
use std::net::IpAddr;

use http::HeaderMap;

/// The request data variables are read from. Build it once per page.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Variables {
    host: Option<String>,
    cookie: Option<String>,
    query: Option<String>,
    accept_language: Option<String>,
    user_agent: Option<String>,
    referer: Option<String>,
    remote_addr: Option<String>,
}

/// A variable's value.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum VarValue<'a> {
    /// Text (possibly empty).
    Text(Cow<'a, str>),
    /// A boolean (`HTTP_ACCEPT_LANGUAGE{lang}`).
    Bool(bool),
}

impl VarValue<'_> {
    /// As text: booleans are `true`/`false`.
    #[must_use]
    pub fn as_text(&self) -> &str {
        match self {
            Self::Text(t) => t,
            Self::Bool(true) => "true",
            Self::Bool(false) => "false",
        }
    }
}

fn header(headers: &HeaderMap, name: http::header::HeaderName) -> Option<String> {
    let values: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}

fn percent_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = |b: u8| char::from(b).to_digit(16);
                match (
                    bytes.get(i + 1).and_then(|b| hex(*b)),
                    bytes.get(i + 2).and_then(|b| hex(*b)),
                ) {
                    (Some(h), Some(l)) => {
                        // Two hex digits make one byte.
                        #[allow(clippy::cast_possible_truncation)]
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Variables {
    /// The variables of a request with `headers` and `query`, from a client at `remote_addr`.
    #[must_use]
    pub fn from_request(
        headers: &HeaderMap,
        query: Option<&str>,
        remote_addr: Option<IpAddr>,
    ) -> Self {
        use http::header;
        Self {
            host: header(headers, header::HOST),
            cookie: header(headers, header::COOKIE).map(|c| c.replace(", ", "; ")),
            query: query.map(str::to_owned),
            accept_language: header(headers, header::ACCEPT_LANGUAGE),
            user_agent: header(headers, header::USER_AGENT),
            referer: header(headers, header::REFERER),
            remote_addr: remote_addr.map(|ip| ip.to_string()),
        }
    }

    /// The value of `name` with its optional `{key}`; `None` when unknown or absent.
    #[must_use]
    pub fn get(&self, name: &str, key: Option<&str>) -> Option<VarValue<'_>> {
        fn text(value: &Option<String>) -> Option<VarValue<'_>> {
            value.as_deref().map(|v| VarValue::Text(Cow::Borrowed(v)))
        }
        match (name, key) {
            ("HTTP_HOST", None) => text(&self.host),
            ("HTTP_REFERER", None) => text(&self.referer),
            ("REMOTE_ADDR", None) => text(&self.remote_addr),
            ("HTTP_COOKIE", None) => text(&self.cookie),
            ("HTTP_COOKIE", Some(key)) => self.cookie.as_deref()?.split(';').find_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                (k.trim() == key).then(|| VarValue::Text(Cow::Borrowed(v.trim())))
            }),
            ("QUERY_STRING", None) => text(&self.query),
            ("QUERY_STRING", Some(key)) => self.query.as_deref()?.split('&').find_map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (percent_decode(k) == key).then(|| VarValue::Text(Cow::Owned(percent_decode(v))))
            }),
            ("HTTP_ACCEPT_LANGUAGE", None) => text(&self.accept_language),
            ("HTTP_ACCEPT_LANGUAGE", Some(lang)) => {
                let accepted = self.accept_language.as_deref().is_some_and(|field| {
                    field.split(',').any(|item| {
                        let tag = item.split(';').next().unwrap_or("").trim();
                        let refused = item
                            .split(';')
                            .any(|p| matches!(p.trim(), "q=0" | "q=0.0" | "q=0.00" | "q=0.000"));
                        !refused
                            && (tag.eq_ignore_ascii_case(lang)
                                || tag.len() > lang.len()
                                    && tag.as_bytes()[lang.len()] == b'-'
                                    && tag[..lang.len()].eq_ignore_ascii_case(lang))
                    })
                });
                Some(VarValue::Bool(accepted))
            }
            ("HTTP_USER_AGENT", None) => text(&self.user_agent),
            ("HTTP_USER_AGENT", Some(part)) => {
                let agent = self.user_agent.as_deref().unwrap_or("");
                let value = match part {
                    "browser" => {
                        if agent.contains("MSIE") || agent.contains("Trident/") {
                            "MSIE"
                        } else if agent.starts_with("Mozilla/") {
                            "MOZILLA"
                        } else {
                            "OTHER"
                        }
                    }
                    "os" => {
                        if agent.contains("Windows") {
                            "WIN"
                        } else if agent.contains("Mac OS") || agent.contains("Macintosh") {
                            "MAC"
                        } else if agent.contains("Linux")
                            || agent.contains("X11")
                            || agent.contains("BSD")
                        {
                            "UNIX"
                        } else {
                            "OTHER"
                        }
                    }
                    "version" => {
                        let version = agent
                            .split_once('/')
                            .map(|(_, rest)| rest.split([' ', ';']).next().unwrap_or(""))
                            .unwrap_or("");
                        return Some(VarValue::Text(Cow::Borrowed(version)));
                    }
                    _ => return None,
                };
                Some(VarValue::Text(Cow::Borrowed(value)))
            }
            _ => None,
        }
    }
}

/// A `$(…)` reference parsed: its name, key and default.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Reference<'a> {
    pub(crate) name: &'a str,
    pub(crate) key: Option<&'a str>,
    pub(crate) default: Option<&'a str>,
}

/// Parses the reference at the start of `s` (which starts with `$(`): the reference and its length.
pub(crate) fn reference(s: &str) -> Option<(Reference<'_>, usize)> {
    let body = s.strip_prefix("$(")?;
    let end = body.find(')')?;
    let inner = &body[..end];
    let (head, default) = match inner.split_once('|') {
        Some((head, default)) => (head, Some(default.trim_matches('\''))),
        None => (inner, None),
    };
    let (name, key) = match head.split_once('{') {
        Some((name, rest)) => (name, Some(rest.strip_suffix('}')?)),
        None => (head, None),
    };
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') {
        return None;
    }
    Some((Reference { name, key, default }, end + 3))
}

/// `input` with every `$(…)` replaced by its value, written by `write` (escaping for where it lands);
/// what is not a well-formed reference stays as it is.
pub(crate) fn substitute(
    input: &str,
    vars: &Variables,
    write: fn(&str, &mut String),
    out: &mut String,
) {
    let mut rest = input;
    while let Some(at) = rest.find("$(") {
        out.push_str(&rest[..at]);
        match reference(&rest[at..]) {
            Some((reference, len)) => {
                match vars.get(reference.name, reference.key) {
                    Some(VarValue::Text(t)) if t.is_empty() => {
                        write(reference.default.unwrap_or(""), out)
                    }
                    Some(value) => write(value.as_text(), out),
                    None => write(reference.default.unwrap_or(""), out),
                }
                rest = &rest[at + len..];
            }
            None => {
                out.push_str("$(");
                rest = &rest[at + 2..];
            }
        }
    }
    out.push_str(rest);
}

/// Writes `value` percent-encoded for a URL: everything but unreserved characters is escaped.
pub(crate) fn percent_encode(value: &str, out: &mut String) {
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn vars() -> Variables {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("shop.example"));
        headers.insert(
            "cookie",
            HeaderValue::from_static("group=beta; theme=dark<b>"),
        );
        headers.insert(
            "accept-language",
            HeaderValue::from_static("de-DE, en;q=0.8, fr;q=0"),
        );
        headers.insert(
            "user-agent",
            HeaderValue::from_static("Mozilla/5.0 (Windows NT 10.0; Win64; x64)"),
        );
        Variables::from_request(
            &headers,
            Some("id=42&q=kettle+blue&x=%3Cscript%3E"),
            Some([10, 0, 0, 1].into()),
        )
    }

    fn sub(input: &str, write: fn(&str, &mut String)) -> String {
        let mut out = String::new();
        substitute(input, &vars(), write, &mut out);
        out
    }

    #[test]
    fn every_variable() {
        let v = vars();
        let text = |name, key| v.get(name, key).map(|value| value.as_text().to_owned());
        assert_eq!(text("HTTP_HOST", None).as_deref(), Some("shop.example"));
        assert_eq!(text("HTTP_COOKIE", Some("group")).as_deref(), Some("beta"));
        assert_eq!(text("HTTP_COOKIE", Some("none")), None);
        assert_eq!(
            text("QUERY_STRING", Some("q")).as_deref(),
            Some("kettle blue")
        );
        assert_eq!(text("QUERY_STRING", Some("x")).as_deref(), Some("<script>"));
        assert_eq!(
            v.get("HTTP_ACCEPT_LANGUAGE", Some("de")),
            Some(VarValue::Bool(true))
        );
        assert_eq!(
            v.get("HTTP_ACCEPT_LANGUAGE", Some("en")),
            Some(VarValue::Bool(true))
        );
        assert_eq!(
            v.get("HTTP_ACCEPT_LANGUAGE", Some("fr")),
            Some(VarValue::Bool(false)),
            "q=0"
        );
        assert_eq!(
            v.get("HTTP_ACCEPT_LANGUAGE", Some("e")),
            Some(VarValue::Bool(false))
        );
        assert_eq!(
            text("HTTP_USER_AGENT", Some("browser")).as_deref(),
            Some("MOZILLA")
        );
        assert_eq!(text("HTTP_USER_AGENT", Some("os")).as_deref(), Some("WIN"));
        assert_eq!(
            text("HTTP_USER_AGENT", Some("version")).as_deref(),
            Some("5.0")
        );
        assert_eq!(text("REMOTE_ADDR", None).as_deref(), Some("10.0.0.1"));
        assert_eq!(text("HTTP_REFERER", None), None);
        assert_eq!(text("NOPE", None), None);
    }

    #[test]
    fn substitution_escapes_for_where_it_lands() {
        assert_eq!(
            sub(
                "Hi from $(HTTP_HOST), theme $(HTTP_COOKIE{theme}) $(HTTP_REFERER|'nowhere') $(",
                crate::html::escape::text
            ),
            "Hi from shop.example, theme dark&lt;b&gt; nowhere $("
        );
        assert_eq!(
            sub(
                "/frag?q=$(QUERY_STRING{q})&t=$(HTTP_COOKIE{theme})",
                percent_encode
            ),
            "/frag?q=kettle%20blue&t=dark%3Cb%3E"
        );
        assert_eq!(
            sub("$(lower) $(A{b) $()", percent_encode),
            "$(lower) $(A{b) $()"
        );
    }
}
