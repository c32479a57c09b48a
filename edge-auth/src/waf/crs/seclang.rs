//! SecLang, ModSecurity's rule language, read as text: directives, action lists and variable lists.
//!
//! This layer only splits text; what the pieces mean is [`super::rule`]'s business. The grammar is the one
//! ModSecurity 3 reads: `#` starts a comment line, a `\` at the end of a line joins the next, arguments are
//! separated by whitespace and grouped by double quotes (inside which `\"` is a quote and every other
//! backslash is kept for the regex engine), actions are separated by commas and grouped by single quotes.

use super::LoadError;

/// One directive: its name and arguments, and the line it started on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Directive {
    pub(crate) name: String,
    pub(crate) args: Vec<String>,
    pub(crate) line: usize,
}

/// The directives of one configuration text.
pub(crate) fn directives(source: &str, text: &str) -> Result<Vec<Directive>, LoadError> {
    let mut out = Vec::new();
    let mut logical = String::new();
    let mut start = 0;
    for (index, raw) in text.lines().enumerate() {
        if logical.is_empty() {
            start = index + 1;
            if raw.trim_start().starts_with('#') {
                continue;
            }
        }
        match raw.trim_end().strip_suffix('\\') {
            Some(continued) => logical.push_str(continued),
            None => {
                logical.push_str(raw);
                let line = std::mem::take(&mut logical);
                if !line.trim().is_empty() {
                    out.push(directive(source, start, &line)?);
                }
            }
        }
    }
    if !logical.trim().is_empty() {
        out.push(directive(source, start, &logical)?);
    }
    Ok(out)
}

fn directive(source: &str, line: usize, text: &str) -> Result<Directive, LoadError> {
    let mut words = arguments(text).map_err(|why| LoadError::at(source, line, why))?;
    if words.is_empty() {
        return Err(LoadError::at(source, line, "an empty directive"));
    }
    let name = words.remove(0);
    Ok(Directive {
        name,
        args: words,
        line,
    })
}

/// Whitespace-separated words, double quotes grouping (`\"` is a quote inside them).
fn arguments(text: &str) -> Result<Vec<String>, &'static str> {
    let mut words = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let Some(first) = chars.next() else {
            return Ok(words);
        };
        let mut word = String::new();
        if first == '"' {
            loop {
                match chars.next() {
                    None => return Err("a quoted argument is not closed"),
                    Some('"') => break,
                    Some('\\') if chars.peek() == Some(&'"') => {
                        chars.next();
                        word.push('"');
                    }
                    Some(c) => word.push(c),
                }
            }
        } else {
            word.push(first);
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                word.push(c);
            }
        }
        words.push(word);
    }
}

/// The actions of an action list, `name` or `name:value` each (`'…'` groups a value; `\'` is a quote
/// inside).
pub(crate) fn actions(text: &str) -> Result<Vec<(String, Option<String>)>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace() || *c == ',').is_some() {}
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut name = String::new();
        while let Some(c) = chars.next_if(|c| *c != ':' && *c != ',') {
            name.push(c);
        }
        let name = name.trim().to_owned();
        if chars.next_if_eq(&':').is_none() {
            out.push((name, None));
            continue;
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    None => return Err(format!("the value of `{name}` is not closed")),
                    Some('\'') => break,
                    Some('\\') if chars.peek() == Some(&'\'') => {
                        chars.next();
                        value.push('\'');
                    }
                    Some(c) => value.push(c),
                }
            }
            // Anything between the closing quote and the next comma is not part of the value.
            while chars.next_if(|c| *c != ',').is_some() {}
        } else {
            while let Some(c) = chars.next_if(|c| *c != ',') {
                value.push(c);
            }
            value = value.trim().to_owned();
        }
        out.push((name, Some(value)));
    }
}

/// One entry of a variable list, as written: `!` (exclusion), `&` (count), the collection and its
/// selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct VariableText {
    pub(crate) exclude: bool,
    pub(crate) count: bool,
    pub(crate) collection: String,
    pub(crate) selector: Option<Selector>,
}

/// Which members of a collection a variable names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Selector {
    /// A member by name (compared without case).
    Name(String),
    /// Members whose names match a regular expression (`/…/`).
    Regex(String),
}

/// The entries of a `|`-separated variable list.
pub(crate) fn variables(text: &str) -> Result<Vec<VariableText>, String> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let mut entry = VariableText {
            exclude: false,
            count: false,
            collection: String::new(),
            selector: None,
        };
        if let Some(r) = rest.strip_prefix('!') {
            entry.exclude = true;
            rest = r;
        }
        if let Some(r) = rest.strip_prefix('&') {
            entry.count = true;
            rest = r;
        }
        let end = rest.find([':', '|']).unwrap_or(rest.len());
        entry.collection = rest[..end].trim().to_ascii_uppercase();
        if entry.collection.is_empty() {
            return Err(format!("an empty variable in `{text}`"));
        }
        rest = &rest[end..];
        if let Some(r) = rest.strip_prefix(':') {
            let (selector, after) = selector(&entry.collection, r)?;
            entry.selector = Some(selector);
            rest = after;
        }
        out.push(entry);
        rest = rest.trim_start();
        match rest.strip_prefix('|') {
            Some(r) => rest = r.trim_start(),
            None if rest.is_empty() => {}
            None => return Err(format!("unexpected `{rest}` in a variable list")),
        }
    }
    Ok(out)
}

/// A selector and the text after it. XPath selectors (`XML:/*`) are names, not regexes.
fn selector<'a>(collection: &str, text: &'a str) -> Result<(Selector, &'a str), String> {
    if collection != "XML" {
        if let Some(body) = text.strip_prefix('/') {
            // A regex runs to the `/` that ends the entry; a `\/` inside does not end it.
            let bytes = body.as_bytes();
            let mut at = 0;
            while at < bytes.len() {
                match bytes[at] {
                    b'\\' => at += 2,
                    b'/' if matches!(bytes.get(at + 1), None | Some(b'|')) => {
                        return Ok((Selector::Regex(body[..at].to_owned()), &body[at + 1..]));
                    }
                    _ => at += 1,
                }
            }
            return Err(format!("a regex selector is not closed: `/{body}`"));
        }
        if let Some(body) = text.strip_prefix('\'') {
            let end = body
                .find('\'')
                .ok_or_else(|| format!("a quoted selector is not closed: `'{body}`"))?;
            return Ok((Selector::Name(body[..end].to_owned()), &body[end + 1..]));
        }
    }
    let end = text.find('|').unwrap_or(text.len());
    Ok((Selector::Name(text[..end].trim().to_owned()), &text[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continued_lines_and_quotes() {
        let text = "# a comment\nSecRule ARGS \"@rx a\\\"b\" \\\n    \"id:1,\\\n    phase:2\"\n\nSecMarker END\n";
        let d = directives("t", text).unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].name, "SecRule");
        assert_eq!(d[0].args, ["ARGS", "@rx a\"b", "id:1,    phase:2"]);
        assert_eq!(d[0].line, 2);
        assert_eq!(d[1].args, ["END"]);
        assert!(directives("t", "SecRule \"open").is_err());
    }

    #[test]
    fn action_lists() {
        let a = actions("id:1, t:none,msg:'a, b \\'c\\'',setvar:tx.x=+%{tx.y},chain").unwrap();
        assert_eq!(
            a,
            [
                ("id".into(), Some("1".into())),
                ("t".into(), Some("none".into())),
                ("msg".into(), Some("a, b 'c'".into())),
                ("setvar".into(), Some("tx.x=+%{tx.y}".into())),
                ("chain".into(), None),
            ]
        );
        assert!(actions("msg:'open").is_err());
    }

    #[test]
    fn variable_lists() {
        let v = variables(
            "ARGS|!REQUEST_COOKIES:/^_ga(?:_\\w+)?$/|&TX:x|XML://@*|REQUEST_HEADERS:User-Agent",
        )
        .unwrap();
        assert_eq!(v.len(), 5);
        assert!(v[1].exclude);
        assert_eq!(
            v[1].selector,
            Some(Selector::Regex("^_ga(?:_\\w+)?$".into()))
        );
        assert!(v[2].count);
        assert_eq!(v[3].selector, Some(Selector::Name("//@*".into())));
        assert_eq!(v[4].selector, Some(Selector::Name("User-Agent".into())));
        assert!(variables("ARGS:/open").is_err());
        assert!(variables("ARGS||").is_err());
    }
}
