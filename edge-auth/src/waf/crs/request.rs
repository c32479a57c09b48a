//! The request as CRS reads it: ModSecurity's request collections, built once per evaluation.
//!
//! Names and values are bytes: a query parameter `%FF` is the byte 0xFF, not a replacement character.
//! Collections hold `(name, value)` pairs in request order; names compare without case, as ModSecurity 3
//! compares them.

use http::request::Parts;

use super::super::body;

/// A name and a value.
pub(crate) type Pair = (Vec<u8>, Vec<u8>);

/// What the request phases read.
#[derive(Debug, Default)]
pub(crate) struct RequestData {
    pub(crate) method: Vec<u8>,
    pub(crate) protocol: Vec<u8>,
    pub(crate) uri_raw: Vec<u8>,
    pub(crate) uri: Vec<u8>,
    pub(crate) filename: Vec<u8>,
    pub(crate) basename: Vec<u8>,
    pub(crate) query: Vec<u8>,
    pub(crate) line: Vec<u8>,
    pub(crate) args_get: Vec<Pair>,
    pub(crate) args_post: Vec<Pair>,
    pub(crate) headers: Vec<Pair>,
    pub(crate) cookies: Vec<Pair>,
    pub(crate) body: Vec<u8>,
    pub(crate) body_processor: Option<&'static str>,
    pub(crate) body_error: bool,
    /// `FILES`: field name and file name of each upload.
    pub(crate) files: Vec<Pair>,
    /// `FILES_COMBINED_SIZE`: the uploads' bytes.
    pub(crate) files_size: usize,
    /// `MULTIPART_PART_HEADERS`: each part's header lines, by the part's name.
    pub(crate) part_headers: Vec<Pair>,
    /// `XML:/*`: the document's text; `XML://@*`: its attribute values.
    pub(crate) xml_text: Option<Vec<u8>>,
    pub(crate) xml_attributes: Vec<Vec<u8>>,
    pub(crate) remote_addr: Vec<u8>,
}

impl RequestData {
    /// Phase 1's view: the request line and headers.
    pub(crate) fn from_parts(parts: &Parts, remote_addr: Option<std::net::IpAddr>) -> Self {
        let uri_raw = parts
            .uri
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .as_bytes()
            .to_vec();
        let uri = percent_decode(&uri_raw, false);
        let path_end = memchr::memchr(b'?', &uri_raw).unwrap_or(uri_raw.len());
        let filename = percent_decode(&uri_raw[..path_end], false);
        let basename = filename
            .rsplit(|&b| b == b'/')
            .next()
            .unwrap_or_default()
            .to_vec();
        let query = uri_raw.get(path_end + 1..).unwrap_or_default().to_vec();
        let protocol = format!("{:?}", parts.version).into_bytes();
        let method = parts.method.as_str().as_bytes().to_vec();
        let mut line = method.clone();
        line.push(b' ');
        line.extend_from_slice(&uri_raw);
        line.push(b' ');
        line.extend_from_slice(&protocol);
        let headers: Vec<Pair> = parts
            .headers
            .iter()
            .map(|(name, value)| (header_name(name.as_str()), value.as_bytes().to_vec()))
            .collect();
        let cookies = parts
            .headers
            .get_all(http::header::COOKIE)
            .iter()
            .flat_map(|value| cookies(value.as_bytes()))
            .collect();
        Self {
            args_get: arguments(&query),
            method,
            protocol,
            uri_raw,
            uri,
            filename,
            basename,
            query,
            line,
            headers,
            cookies,
            remote_addr: remote_addr
                .map(|a| a.to_string().into_bytes())
                .unwrap_or_default(),
            ..Self::default()
        }
    }

    /// Phase 2's view: the body read by `processor`, or, when no rule chose one, by the content type's:
    /// forms, multipart, JSON and XML.
    pub(crate) fn read_body(&mut self, body: &[u8], processor: Option<&str>, quirks: bool) {
        self.body = body.to_vec();
        if body.is_empty() {
            return;
        }
        // As sent (a multipart boundary is case-sensitive), and in lower case to be compared.
        let content_type = self
            .header(b"content-type")
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default();
        let kind = content_type.to_ascii_lowercase();
        let processor = match processor {
            Some(p) => p.to_owned(),
            None if kind.starts_with("application/x-www-form-urlencoded") => "URLENCODED".into(),
            None if kind.starts_with("multipart/form-data") => "MULTIPART".into(),
            // What ModSecurity's recommended configuration selects by rule (ids 200000 and 200001): a
            // JSON or XML body is read as such without the user having to add those rules.
            None if kind.starts_with("application/json") => "JSON".into(),
            None if kind.contains("xml") => "XML".into(),
            None => return,
        };
        match processor.as_str() {
            "URLENCODED" => {
                self.body_processor = Some("URLENCODED");
                self.args_post = arguments(body);
            }
            "MULTIPART" => {
                self.body_processor = Some("MULTIPART");
                match body::boundary(&content_type) {
                    Some(boundary) => {
                        for part in body::multipart_parts(body, boundary, 1024) {
                            for line in part.head.lines().filter(|l| !l.trim().is_empty()) {
                                let mut line = line.as_bytes().to_vec();
                                // ModSecurity keeps the line's CR (see `modsecurity_quirks`).
                                if quirks {
                                    line.push(b'\r');
                                }
                                self.part_headers
                                    .push((part.name.as_bytes().to_vec(), line));
                            }
                            if part.filename.is_some() {
                                self.files_size += part.len;
                            }
                            match part.filename {
                                Some(file) => self.files.push((
                                    part.name.as_bytes().to_vec(),
                                    file.as_bytes().to_vec(),
                                )),
                                None => self.args_post.push((
                                    part.name.as_bytes().to_vec(),
                                    part.value.unwrap_or_default().to_vec(),
                                )),
                            }
                        }
                    }
                    None => self.body_error = true,
                }
            }
            "JSON" => {
                self.body_processor = Some("JSON");
                match serde_json::from_slice::<serde_json::Value>(body) {
                    Ok(value) => json_arguments(&value, b"json", &mut self.args_post, 0),
                    Err(_) => self.body_error = true,
                }
            }
            "XML" => {
                self.body_processor = Some("XML");
                let document = String::from_utf8_lossy(body);
                let (text, attributes) = body::xml_parts(&document);
                // `XML:/*` is the root element's content: its text nodes, concatenated.
                self.xml_text = Some(text.iter().flat_map(|s| s.bytes()).collect());
                self.xml_attributes = attributes.iter().map(|s| s.as_bytes().to_vec()).collect();
            }
            _ => {}
        }
    }

    pub(crate) fn header(&self, name: &[u8]) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }
}

/// Header names as a client spelled them are gone by the time `http` hands them over (lower case):
/// ModSecurity's rules compare them without case, and its logs show them as sent; `Title-Case` is the
/// usual spelling.
fn header_name(name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len());
    let mut upper = true;
    for b in name.bytes() {
        out.push(if upper { b.to_ascii_uppercase() } else { b });
        upper = b == b'-';
    }
    out
}

/// `%XX` decoded once (and with `plus`, `+` as a space); malformed escapes kept.
fn percent_decode(input: &[u8], plus: bool) -> Vec<u8> {
    super::super::decode::percent_decode_once(input, plus).into_owned()
}

/// `a=1&b=2` as ModSecurity splits it: on `&`, then at the first `=`, both sides decoded (`+` a space).
pub(crate) fn arguments(text: &[u8]) -> Vec<Pair> {
    text.split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = match memchr::memchr(b'=', pair) {
                Some(at) => (&pair[..at], &pair[at + 1..]),
                None => (pair, &[][..]),
            };
            (percent_decode(name, true), percent_decode(value, true))
        })
        .collect()
}

/// `a=1; b=2`: each cookie's name and value, spaces around them trimmed.
fn cookies(header: &[u8]) -> Vec<Pair> {
    header
        .split(|&b| b == b';')
        .map(<[u8]>::trim_ascii)
        .filter(|c| !c.is_empty())
        .map(|cookie| match memchr::memchr(b'=', cookie) {
            Some(at) => (
                cookie[..at].trim_ascii().to_vec(),
                cookie[at + 1..].to_vec(),
            ),
            None => (cookie.to_vec(), Vec::new()),
        })
        .collect()
}

/// JSON members as ModSecurity 3 names them: `json.a.b` for nested members, `json.list.array_0` for array
/// items; scalars as their text (`true`, `12`), `null` as empty. Depth is bounded.
fn json_arguments(value: &serde_json::Value, prefix: &[u8], out: &mut Vec<Pair>, depth: usize) {
    use serde_json::Value;
    if depth > 32 {
        return;
    }
    let child = |key: &[u8]| {
        let mut name = prefix.to_vec();
        name.push(b'.');
        name.extend_from_slice(key);
        name
    };
    match value {
        Value::Object(members) => {
            for (key, value) in members {
                json_arguments(value, &child(key.as_bytes()), out, depth + 1);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                json_arguments(
                    item,
                    &child(format!("array_{i}").as_bytes()),
                    out,
                    depth + 1,
                );
            }
        }
        Value::String(s) => out.push((prefix.to_vec(), s.as_bytes().to_vec())),
        Value::Null => out.push((prefix.to_vec(), Vec::new())),
        other => out.push((prefix.to_vec(), other.to_string().into_bytes())),
    }
}
