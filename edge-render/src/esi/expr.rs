//! The `test` expressions of `<esi:when>`: the subset this processor evaluates.
//!
//! ```text
//! expr    := and ( ('|' | '||') and )*
//! and     := not ( ('&' | '&&') not )*
//! not     := '!' not | compare
//! compare := operand ( ('==' | '!=' | '<' | '<=' | '>' | '>=') operand )?
//! operand := '(' expr ')' | 'text' | number | $(VARIABLE{key}|default) | true | false
//! ```
//!
//! Comparisons are numeric when both sides read as numbers (`'12' > 9`, a cookie holding `12`), else by
//! text. An operand alone is true when it is
//! `true`, a non-zero number or non-empty text. A test that does not parse, or nests deeper than 32, is an
//! error ([`ExprError`]); the assembler treats it as false, so a broken `when` never renders.

use super::vars::{VarValue, Variables, reference};

/// Why a test could not be evaluated.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExprError {
    /// Not an expression of the subset, at this byte.
    Syntax(usize),
    /// Nested deeper than 32.
    TooDeep,
}

impl std::fmt::Display for ExprError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Syntax(at) => write!(f, "esi test is not an expression at byte {at}"),
            Self::TooDeep => f.write_str("esi test nested too deep"),
        }
    }
}

impl std::error::Error for ExprError {}

const MAX_DEPTH: usize = 32;

#[derive(Debug, PartialEq)]
enum Value {
    Text(String),
    Number(f64),
    Bool(bool),
}

impl Value {
    fn truthy(&self) -> bool {
        match self {
            Self::Text(t) => !t.is_empty(),
            Self::Number(n) => *n != 0.0,
            Self::Bool(b) => *b,
        }
    }

    fn number(&self) -> Option<f64> {
        match self {
            Self::Number(n) => Some(*n),
            Self::Text(t) => t.trim().parse().ok().filter(|n: &f64| n.is_finite()),
            Self::Bool(_) => None,
        }
    }

    fn text(&self) -> String {
        match self {
            Self::Text(t) => t.clone(),
            Self::Number(n) => n.to_string(),
            Self::Bool(b) => b.to_string(),
        }
    }
}

struct Parser<'a> {
    input: &'a str,
    at: usize,
    vars: &'a Variables,
    depth: usize,
}

/// Evaluates `test` against `vars`.
///
/// # Errors
///
/// [`ExprError`] when `test` is not in the subset.
pub fn evaluate(test: &str, vars: &Variables) -> Result<bool, ExprError> {
    let mut parser = Parser {
        input: test,
        at: 0,
        vars,
        depth: 0,
    };
    let value = parser.or()?;
    parser.skip_space();
    if parser.at != test.len() {
        return Err(ExprError::Syntax(parser.at));
    }
    Ok(value.truthy())
}

impl Parser<'_> {
    fn rest(&self) -> &str {
        &self.input[self.at..]
    }

    fn skip_space(&mut self) {
        let trimmed = self.rest().trim_start();
        self.at = self.input.len() - trimmed.len();
    }

    fn eat(&mut self, token: &str) -> bool {
        self.skip_space();
        if self.rest().starts_with(token) {
            self.at += token.len();
            true
        } else {
            false
        }
    }

    fn nested<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, ExprError>,
    ) -> Result<T, ExprError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ExprError::TooDeep);
        }
        let result = f(self);
        self.depth -= 1;
        result
    }

    fn or(&mut self) -> Result<Value, ExprError> {
        let mut value = self.and()?;
        while self.eat("||") || self.eat("|") {
            let right = self.and()?;
            value = Value::Bool(value.truthy() || right.truthy());
        }
        Ok(value)
    }

    fn and(&mut self) -> Result<Value, ExprError> {
        let mut value = self.not()?;
        while self.eat("&&") || self.eat("&") {
            let right = self.not()?;
            value = Value::Bool(value.truthy() && right.truthy());
        }
        Ok(value)
    }

    fn not(&mut self) -> Result<Value, ExprError> {
        self.skip_space();
        if self.rest().starts_with('!') && !self.rest().starts_with("!=") {
            self.at += 1;
            return self.nested(|p| Ok(Value::Bool(!p.not()?.truthy())));
        }
        self.compare()
    }

    fn compare(&mut self) -> Result<Value, ExprError> {
        let left = self.operand()?;
        for op in ["==", "!=", "<=", ">=", "<", ">"] {
            if self.eat(op) {
                let right = self.operand()?;
                let ordering = match (left.number(), right.number()) {
                    (Some(a), Some(b)) => a.partial_cmp(&b),
                    _ => Some(left.text().cmp(&right.text())),
                };
                let holds = ordering.is_some_and(|o| match op {
                    "==" => o.is_eq(),
                    "!=" => o.is_ne(),
                    "<=" => o.is_le(),
                    ">=" => o.is_ge(),
                    "<" => o.is_lt(),
                    _ => o.is_gt(),
                });
                return Ok(Value::Bool(holds));
            }
        }
        Ok(left)
    }

    fn operand(&mut self) -> Result<Value, ExprError> {
        self.skip_space();
        let start = self.at;
        let input = self.input;
        let rest = &input[start..];
        if rest.starts_with('(') {
            self.at += 1;
            let value = self.nested(Self::or)?;
            if !self.eat(")") {
                return Err(ExprError::Syntax(self.at));
            }
            return Ok(value);
        }
        if let Some(body) = rest.strip_prefix('\'') {
            let end = body.find('\'').ok_or(ExprError::Syntax(start))?;
            self.at += end + 2;
            return Ok(Value::Text(body[..end].to_owned()));
        }
        if rest.starts_with("$(") {
            let (reference, len) = reference(rest).ok_or(ExprError::Syntax(start))?;
            self.at += len;
            return Ok(match self.vars.get(reference.name, reference.key) {
                Some(VarValue::Bool(b)) => Value::Bool(b),
                Some(VarValue::Text(t)) if !t.is_empty() => Value::Text(t.into_owned()),
                _ => Value::Text(reference.default.unwrap_or("").to_owned()),
            });
        }
        for (word, value) in [("true", true), ("false", false)] {
            if rest.starts_with(word) {
                self.at += word.len();
                return Ok(Value::Bool(value));
            }
        }
        let len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..len].parse().map_err(|_| ExprError::Syntax(start))?;
        self.at += len;
        Ok(Value::Number(number))
    }
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue};
    use proptest::prelude::*;

    use super::*;

    fn vars() -> Variables {
        let mut headers = HeaderMap::new();
        headers.insert("cookie", HeaderValue::from_static("group=beta; visits=12"));
        headers.insert("accept-language", HeaderValue::from_static("en-GB"));
        Variables::from_request(&headers, Some("page=3"), None)
    }

    #[test]
    fn the_subset() {
        let v = vars();
        for (test, expected) in [
            ("$(HTTP_COOKIE{group})=='beta'", true),
            ("$(HTTP_COOKIE{group}) != 'beta'", false),
            ("$(HTTP_COOKIE{visits}) > 9", true),
            ("$(HTTP_COOKIE{visits}) > '9'", true),
            ("'12' < '9'", false),
            ("'abc' < 'b'", true),
            (
                "$(QUERY_STRING{page}) >= 3 && $(HTTP_ACCEPT_LANGUAGE{en})",
                true,
            ),
            ("$(HTTP_ACCEPT_LANGUAGE{de}) | $(HTTP_COOKIE{none})", false),
            ("!$(HTTP_COOKIE{none})", true),
            ("!($(HTTP_COOKIE{group})=='beta' & 1==2)", true),
            ("$(HTTP_COOKIE{none}|'x')=='x'", true),
            ("true", true),
            ("0", false),
            ("-1.5 < 0", true),
        ] {
            assert_eq!(evaluate(test, &v), Ok(expected), "{test}");
        }
        for bad in ["", "==", "'open", "(1==1", "1==1)", "$(", "a==b", "1 2"] {
            assert!(
                matches!(evaluate(bad, &v), Err(ExprError::Syntax(_))),
                "{bad}"
            );
        }
        let deep = format!("{}1{}", "(".repeat(100), ")".repeat(100));
        assert_eq!(evaluate(&deep, &v), Err(ExprError::TooDeep));
        assert_eq!(evaluate(&"!".repeat(1000), &v), Err(ExprError::TooDeep));
    }

    proptest! {
        /// Any text evaluates or is refused; nothing panics or recurses without bound.
        #[test]
        fn any_text_is_safe(test in "[ -~]{0,80}") {
            let _ = evaluate(&test, &vars());
        }
    }
}
