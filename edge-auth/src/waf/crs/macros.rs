//! Macro expansion: `%{tx.inbound_anomaly_score_threshold}`, `%{MATCHED_VAR}`, `%{rule.id}` in action
//! values and operator arguments, resolved against the transaction when the rule runs.

use std::borrow::Cow;

/// A text with `%{…}` references, split once at load time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Expand {
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Text(String),
    /// A reference: the collection (upper case) and the member (lower case), if any.
    Var(String, Option<String>),
}

impl Expand {
    pub(crate) fn parse(text: &str) -> Self {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("%{") {
            let Some(close) = rest[open..].find('}') else {
                break;
            };
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let name = &rest[open + 2..open + close];
            let (collection, member) = match name.split_once(['.', ':']) {
                Some((c, m)) => (c, Some(m.to_ascii_lowercase())),
                None => (name, None),
            };
            parts.push(Part::Var(collection.trim().to_ascii_uppercase(), member));
            rest = &rest[open + close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Self { parts }
    }

    /// The text, when it references nothing.
    pub(crate) fn literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [Part::Text(text)] => Some(text),
            _ => None,
        }
    }

    /// The text with each reference replaced by what `lookup` says it holds (nothing, if unset).
    pub(crate) fn expand<'s>(
        &'s self,
        lookup: &dyn Fn(&str, Option<&str>) -> Option<Vec<u8>>,
    ) -> Cow<'s, [u8]> {
        if let Some(text) = self.literal() {
            return Cow::Borrowed(text.as_bytes());
        }
        let mut out = Vec::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.extend_from_slice(text.as_bytes()),
                Part::Var(collection, member) => {
                    if let Some(value) = lookup(collection, member.as_deref()) {
                        out.extend_from_slice(&value);
                    }
                }
            }
        }
        Cow::Owned(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_resolved() {
        let e = Expand::parse("+%{tx.critical_anomaly_score} in %{MATCHED_VAR_NAME}%{");
        let out = e.expand(&|c, m| match (c, m) {
            ("TX", Some("critical_anomaly_score")) => Some(b"5".to_vec()),
            ("MATCHED_VAR_NAME", None) => Some(b"ARGS:q".to_vec()),
            _ => None,
        });
        assert_eq!(&*out, b"+5 in ARGS:q%{");
        assert_eq!(Expand::parse("plain").literal(), Some("plain"));
    }
}
