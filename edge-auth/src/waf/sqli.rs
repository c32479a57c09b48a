//! SQL injection: a small SQL tokenizer and a few readable rules over its tokens.
//!
//! A value is tokenized three ways, as libinjection does: as it stands, and as if it landed inside a
//! single- or double-quoted SQL string (so an attacker's closing quote is seen for what it is). The rules
//! then look for shapes that ordinary text does not have: a boolean operator followed by a comparison of
//! two literals (`' OR 'a'='a`, `1 AND 5=5`), `UNION SELECT`, a statement after `;`, a string closed and
//! the rest commented out, sleep and error functions, schema probes.

use super::{ByteSet, Needles, contains_any};

/// One SQL-ish token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Token<'a> {
    Word(&'a str),
    /// A word immediately followed by `(`: a function call.
    Call(&'a str),
    Number,
    /// A complete or unterminated quoted string.
    Str,
    Op(&'a str),
    Comment,
    Semicolon,
    Open,
    Close,
    Comma,
}

const MAX_TOKENS: usize = 512;

/// Tokenizes `text` into `tokens` (cleared first: one buffer serves the three readings of a value).
fn tokenize<'a>(text: &'a str, quote_context: Option<u8>, tokens: &mut Vec<Token<'a>>) {
    let bytes = text.as_bytes();
    tokens.clear();
    let mut i = 0;
    // Inside a quoted context, the text up to the first matching quote is the tail of a string.
    if let Some(q) = quote_context {
        match bytes.iter().position(|&b| b == q) {
            Some(end) => {
                tokens.push(Token::Str);
                i = end + 1;
            }
            None => return,
        }
    }
    while let Some(&b) = bytes.get(i) {
        if tokens.len() >= MAX_TOKENS {
            break;
        }
        match b {
            b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c => i += 1,
            b'\'' | b'"' | b'`' => {
                let end = bytes
                    .get(i + 1..)
                    .and_then(|rest| rest.iter().position(|&c| c == b))
                    .map_or(bytes.len(), |p| i + 1 + p + 1);
                tokens.push(Token::Str);
                i = end;
            }
            // `--` and `#` comment out the rest of the line, not of the value: SQL goes on after a
            // newline (`1'--%0aunion select …`).
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                tokens.push(Token::Comment);
                i = next_line(bytes, i);
            }
            b'#' => {
                tokens.push(Token::Comment);
                i = next_line(bytes, i);
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                // MySQL's `/*!50000 UNION*/` runs its contents: treat it as whitespace, not a comment.
                let close = bytes
                    .get(i + 2..)
                    .and_then(|rest| rest.windows(2).position(|w| w == b"*/"));
                match close {
                    Some(_) if bytes.get(i + 2) == Some(&b'!') => {
                        i += 3;
                        while bytes.get(i).is_some_and(u8::is_ascii_digit) {
                            i += 1;
                        }
                    }
                    Some(p) => i += 2 + p + 2,
                    None => {
                        tokens.push(Token::Comment);
                        break;
                    }
                }
            }
            b'*' if bytes.get(i + 1) == Some(&b'/') => i += 2,
            b';' => {
                tokens.push(Token::Semicolon);
                i += 1;
            }
            b'(' => {
                tokens.push(Token::Open);
                i += 1;
            }
            b')' => {
                tokens.push(Token::Close);
                i += 1;
            }
            b',' => {
                tokens.push(Token::Comma);
                i += 1;
            }
            b'0'..=b'9' => {
                let len = bytes[i..]
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric() || **c == b'.')
                    .count();
                tokens.push(Token::Number);
                i += len;
            }
            b'=' | b'<' | b'>' | b'!' | b'|' | b'&' | b'^' | b'~' | b'%' | b'-' | b'*' | b'/'
            | b'+' => {
                let len = bytes[i..]
                    .iter()
                    .take(3)
                    .take_while(|c| matches!(c, b'=' | b'<' | b'>' | b'!' | b'|' | b'&'))
                    .count()
                    .max(1);
                tokens.push(Token::Op(text.get(i..i + len).unwrap_or("")));
                i += len;
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b'@' || c == b'$' => {
                let len = bytes[i..]
                    .iter()
                    .take_while(|c| {
                        c.is_ascii_alphanumeric() || matches!(c, b'_' | b'@' | b'$' | b'.')
                    })
                    .count();
                let word = text.get(i..i + len).unwrap_or("");
                i += len;
                if bytes.get(i) == Some(&b'(') {
                    tokens.push(Token::Call(word));
                } else {
                    tokens.push(Token::Word(word));
                }
            }
            _ => {
                // Anything else (non-ASCII text, punctuation) separates tokens.
                i += text
                    .get(i..)
                    .and_then(|r| r.chars().next())
                    .map_or(1, char::len_utf8);
            }
        }
    }
}

/// Where tokenizing resumes after a line comment starting at `at`: past the next newline, or the end.
fn next_line(bytes: &[u8], at: usize) -> usize {
    bytes
        .get(at..)
        .and_then(|rest| rest.iter().position(|&b| b == b'\n'))
        .map_or(bytes.len(), |newline| at + newline + 1)
}

fn is_literal(t: Option<&Token<'_>>) -> bool {
    matches!(t, Some(Token::Number | Token::Str))
}

fn is_comparison(t: Option<&Token<'_>>) -> bool {
    match t {
        Some(Token::Op(op)) => matches!(*op, "=" | "<>" | "!=" | "<" | ">" | "<=" | ">=" | "<=>"),
        Some(Token::Word(w)) => matches!(*w, "like" | "rlike" | "regexp" | "is" | "between"),
        _ => false,
    }
}

fn is_boolean(t: Option<&Token<'_>>) -> bool {
    match t {
        Some(Token::Word(w)) => matches!(*w, "or" | "and" | "xor" | "div"),
        Some(Token::Op(op)) => matches!(*op, "||" | "&&"),
        _ => false,
    }
}

/// Functions whose only everyday use is in injection payloads (sleeps, error oracles, file access).
const ATTACK_FUNCTIONS: [&str; 21] = [
    "generate_series",
    "sleep",
    "benchmark",
    "pg_sleep",
    "extractvalue",
    "updatexml",
    "load_file",
    "dbms_pipe.receive_message",
    "utl_inaddr.get_host_address",
    "ctxsys.drithsx.sn",
    "dbms_utility.sqlid_to_sqlhash",
    "xmltype",
    "randomblob",
    "json_keys",
    "gtid_subset",
    "exp",
    "geometrycollection",
    "multipoint",
    "polygon",
    "linestring",
    "procedure",
];

/// Functions that turn a boolean test into a blind-injection oracle when they follow `AND`/`OR`.
const ORACLE_FUNCTIONS: [&str; 16] = [
    "ascii",
    "substring",
    "substr",
    "mid",
    "ord",
    "length",
    "char",
    "chr",
    "if",
    "iif",
    "exists",
    "elt",
    "make_set",
    "unicode",
    "hex",
    "select",
];

const SCHEMA_WORDS: [&str; 9] = [
    "information_schema",
    "information_schema.tables",
    "information_schema.columns",
    "sysobjects",
    "syscolumns",
    "pg_catalog",
    "sqlite_master",
    "mysql.user",
    "@@version",
];

const STATEMENTS: [&str; 13] = [
    "drop", "delete", "insert", "update", "alter", "create", "truncate", "exec", "execute",
    "shutdown", "declare", "call", "begin",
];

/// What one token stream shows. `quoted` says the stream was read as if inside a quoted string, so a
/// leading string token is the input closing that string; `prose`, that what closes it and the
/// "comment" right after read as text (see [`detect`]).
fn rules_on(tokens: &[Token<'_>], quoted: bool, prose: bool) -> Option<&'static str> {
    for (i, t) in tokens.iter().enumerate() {
        let next = |k: usize| tokens.get(i + k);
        match t {
            // Most words are none of the keywords below: one match rules them out.
            Token::Word(w) if !is_keyword(w) => {}
            // `union(select …)` tokenizes as a call.
            Token::Word("union") | Token::Call("union") => {
                let mut k = 1;
                while matches!(next(k), Some(Token::Word("all" | "distinct") | Token::Open)) {
                    k += 1;
                }
                if matches!(next(k), Some(Token::Word("select") | Token::Call("select"))) {
                    return Some("sqli-union-select");
                }
            }
            Token::Semicolon => {
                if let Some(Token::Word(w) | Token::Call(w)) = next(1) {
                    // `; call proc(…)`, not `; call me later`.
                    let statement = STATEMENTS.contains(w)
                        && (*w != "call" || matches!(next(2), Some(Token::Call(_))));
                    if statement || (*w == "select" && stacked_select(&tokens[i + 1..])) {
                        return Some("sqli-stacked-query");
                    }
                }
            }
            Token::Call(f) if f.ends_with(".sleep") => return Some("sqli-attack-function"),
            // `and sleep (5)`: a timing call written with a space (PostgreSQL and MySQL's IGNORE_SPACE
            // take it), a number alone between the parentheses, after a boolean operator or `=`, so
            // prose (`sleep (8 hours)`, `i need sleep (5)`) is left alone.
            Token::Word("sleep" | "pg_sleep" | "benchmark")
                if i > 0
                    && matches!(
                        tokens.get(i - 1),
                        Some(Token::Word("and" | "or" | "xor" | "select") | Token::Op(_))
                    )
                    && matches!(next(1), Some(Token::Open))
                    && matches!(next(2), Some(Token::Number))
                    && matches!(next(3), Some(Token::Close | Token::Comma)) =>
            {
                return Some("sqli-attack-function");
            }
            Token::Word("having" | "where")
                if is_literal(next(1)) && is_comparison(next(2)) && is_literal(next(3)) =>
            {
                return Some("sqli-tautology");
            }
            Token::Call(f) if ATTACK_FUNCTIONS.contains(f) => {
                // `exp(` and the geometry names also occur in ordinary text: only count them in SQL.
                let common = matches!(
                    *f,
                    "exp" | "polygon" | "multipoint" | "linestring" | "procedure"
                );
                if !common || tokens.len() > 4 {
                    return Some("sqli-attack-function");
                }
            }
            // `waitfor delay '0:0:5'`: the time is a string or a variable (`@x`), not `waitfor delay in
            // the airport`.
            Token::Word("waitfor")
                if matches!(next(1), Some(Token::Word("delay" | "time")))
                    && (matches!(next(2), Some(Token::Str))
                        || matches!(next(2), Some(Token::Word(w)) if w.starts_with('@'))) =>
            {
                return Some("sqli-attack-function");
            }
            Token::Word(w) if SCHEMA_WORDS.contains(w) || w.starts_with("information_schema.") => {
                return Some("sqli-schema-probe");
            }
            Token::Word("into") if matches!(next(1), Some(Token::Word("outfile" | "dumpfile"))) => {
                return Some("sqli-schema-probe");
            }
            _ if is_boolean(Some(t)) => {
                let mut k = 1;
                // Also past a unary sign: `OR+1=1`, `AND -1=-1`.
                while matches!(
                    next(k),
                    Some(Token::Open | Token::Op("!" | "+" | "-") | Token::Word("not"))
                ) {
                    k += 1;
                }
                // `OR 1=1`, `AND 'a'='a'`, `OR 2>1`, `AND -1=-1`.
                let right = k + 2 + usize::from(matches!(next(k + 2), Some(Token::Op("+" | "-"))));
                if is_literal(next(k)) && is_comparison(next(k + 1)) && is_literal(next(right)) {
                    return Some("sqli-tautology");
                }
                // `AND ASCII(SUBSTRING(…))>64`, `OR EXISTS(SELECT …)`, `AND (SELECT …)`.
                if let Some(Token::Call(f)) = next(k) {
                    if ORACLE_FUNCTIONS.contains(f) {
                        return Some("sqli-blind-oracle");
                    }
                }
                if matches!(next(k), Some(Token::Word("case")))
                    || (matches!(next(k), Some(Token::Word("select"))) && k > 1)
                {
                    return Some("sqli-blind-oracle");
                }
            }
            // `CASE WHEN 1=1 THEN …`: a literal comparison as a condition.
            Token::Word("when") => {
                let k = 1 + tokens[i + 1..]
                    .iter()
                    .take_while(|t| matches!(t, Token::Open))
                    .count();
                if is_literal(next(k)) && is_comparison(next(k + 1)) && is_literal(next(k + 2)) {
                    return Some("sqli-tautology");
                }
            }
            // `(5=5)`: a parenthesised literal comparison.
            Token::Open
                if is_literal(next(1))
                    && is_comparison(next(2))
                    && is_literal(next(3))
                    && matches!(next(4), Some(Token::Close)) =>
            {
                return Some("sqli-tautology");
            }
            // `RLIKE (SELECT …)`, `= (SELECT …)`: a subquery as the other side of a comparison.
            _ if matches!(next(1), Some(Token::Open))
                && is_comparison(Some(t))
                && matches!(next(2), Some(Token::Word("select") | Token::Call("select"))) =>
            {
                return Some("sqli-blind-oracle");
            }
            // `MAKE_SET(5=5,…)`, `IF(1=1,…)`: a function fed a literal comparison.
            Token::Call(_)
                if matches!(next(1), Some(Token::Open))
                    && is_literal(next(2))
                    && is_comparison(next(3))
                    && is_literal(next(4)) =>
            {
                return Some("sqli-tautology");
            }
            // A string closed by the input, then the rest commented out: `admin'--`, `admin') #`,
            // `1' and 'a'=f(…)-- -`. Only where the input starts inside a string and closes it, with
            // nothing or SQL between: prose that quotes a word or ends a number before a dash (`says
            // 'expired' -- can you…`, `4/5 -- good`, `size=42#reviews`) is not breaking out of anything.
            Token::Str | Token::Number | Token::Close
                if matches!(next(1), Some(Token::Comment))
                    && quoted
                    && tokens.first() == Some(&Token::Str)
                    && tokens.get(1..=i).is_some_and(|between| {
                        between.iter().all(|t| *t == Token::Close) || between.iter().any(is_sql)
                    })
                    && !(i == 0 && prose) =>
            {
                return Some("sqli-comment-breakout");
            }
            _ => {}
        }
    }
    None
}

/// Whether a word is one the arms of [`rules_on`] look for where it stands (the rest pass in one match).
/// The arms that take a word by a list ([`is_boolean`], [`is_comparison`], [`SCHEMA_WORDS`]) share it.
fn is_keyword(word: &str) -> bool {
    let token = Some(&Token::Word(word));
    matches!(
        word,
        "union"
            | "sleep"
            | "pg_sleep"
            | "benchmark"
            | "having"
            | "where"
            | "waitfor"
            | "into"
            | "when"
    ) || is_boolean(token)
        || is_comparison(token)
        || SCHEMA_WORDS.contains(&word)
        || word.starts_with("information_schema.")
}

/// An operator, a function call or a clause keyword: what SQL between a closed string and a comment has
/// and prose does not.
fn is_sql(token: &Token<'_>) -> bool {
    matches!(
        token,
        Token::Op(_)
            | Token::Call(_)
            | Token::Word(
                "and"
                    | "or"
                    | "xor"
                    | "union"
                    | "select"
                    | "having"
                    | "where"
                    | "order"
                    | "group"
                    | "like"
                    | "rlike"
                    | "regexp"
            )
    )
}

/// `; select …` is a stacked query when it reads like SQL (a `FROM` or a function call soon after).
fn stacked_select(tokens: &[Token<'_>]) -> bool {
    tokens
        .iter()
        .skip(1)
        .take(6)
        .any(|t| matches!(t, Token::Word("from") | Token::Call(_)))
}

/// Plain words and digits cannot inject, unless they are the few keywords that work without punctuation:
/// the common case costs one scan.
fn might_inject(text: &str) -> bool {
    const PUNCTUATION: ByteSet = ByteSet::new(b"'\"`(;=<>-#/|&@*");
    const BARE_KEYWORDS: Needles<'static> = Needles::new(&[
        "union",
        "information_schema",
        "waitfor",
        "outfile",
        "dumpfile",
        "sysobjects",
        "pg_catalog",
        "sqlite_master",
    ]);
    PUNCTUATION.any_in(text.as_bytes()) || contains_any(text, &BARE_KEYWORDS)
}

/// The first SQL injection rule `text` (decoded, lowercased) trips, if any.
pub(crate) fn detect(text: &str) -> Option<&'static str> {
    if !might_inject(text) {
        return None;
    }
    // Most values tokenize to a handful: one allocation, not a doubling from one.
    let mut tokens = Vec::with_capacity(16);
    [None, Some(b'\''), Some(b'"')]
        .into_iter()
        // Read as if inside a string only when the input has the quote that would close it.
        .filter(|context| context.is_none_or(|quote| text.as_bytes().contains(&quote)))
        .find_map(|context| {
            tokenize(text, context, &mut tokens);
            let prose = context.is_some_and(|quote| closes_prose(text, quote));
            rules_on(&tokens, context.is_some(), prose)
        })
}

/// Whether the first `quote` in `text`, read as the input closing a string, and a `--` or `#` right
/// after it read as text rather than a breakout: a measurement (`a 7" #2 pencil`), a sentence before
/// the quote (`from if '--long' flag is set`: an injected value is one word, `admin'--`), a run of
/// dashes after it (`'-----BEGIN CERTIFICATE-----'`), or a name glued to the marker: a command-line
/// option (`'--cov'`: MySQL needs a space after `--`), a selector or key (`$('#main')`, `'#text'`),
/// an arrow (`'-->'`). Injections put a space, a dash or nothing after the marker.
fn closes_prose(text: &str, quote: u8) -> bool {
    let Some((before, after)) = text.split_once(char::from(quote)) else {
        return false;
    };
    let inch_mark = quote == b'"' && before.trim_end().ends_with(|c: char| c.is_ascii_digit());
    let glued = |rest: &str| rest.starts_with(|c: char| c.is_ascii_alphabetic() || c == '>');
    let option =
        after.strip_prefix("--").is_some_and(glued) || after.strip_prefix('#').is_some_and(glued);
    inch_mark
        || option
        || before.split_whitespace().count() >= 3
        || after.trim_start().starts_with("---")
}

#[cfg(test)]
mod tests {
    use super::detect;

    #[test]
    fn classic_injections_are_caught() {
        for attack in [
            "' or '1'='1",
            "1' or 1=1-- -",
            "admin'--",
            "admin' #",
            "admin') --",
            "1')) #",
            "1 and 5678=5678",
            "1) or (1=1",
            "' union select username, password from users--",
            "1 union all select null,null,null",
            "1/**/union/**/select/**/1,2",
            "1 /*!50000union*/ /*!50000select*/ 1",
            "1; drop table users",
            "1'; exec xp_cmdshell('dir')--",
            "1 and sleep(5)",
            "1' and (select 1 from (select(sleep(5)))a)-- -",
            "1; waitfor delay '0:0:5'--",
            "1 and extractvalue(1,concat(0x7e,version()))",
            "1 and ascii(substring((select database()),1,1))>64",
            "' and 1=convert(int,@@version)--",
            "1 or exists(select * from users)",
            "select * from information_schema.tables",
            "' or ''='",
            "\" or \"\"=\"",
            // Unary signs, `union(`, and SQL that goes on after a line comment.
            "1 or+1=1",
            "1 and -1=-1",
            "1 union(select 1,2)",
            "1--\nunion select 1,2",
            "1#\nunion all select null",
            "1; waitfor delay @x",
            "1 and sleep (5)",
            "1' or pg_sleep (5)--",
            "1 and benchmark (5000000,md5(1))",
            // Each keyword the rules read where it stands.
            "1 having 1=1",
            "1 where 2>1",
            "1 and case when 1=1 then 1 else 0 end",
            "1 into outfile '/tmp/x'",
            "1 rlike (select 1)",
            "1 xor 1=1",
            "1 div 1=1",
            "select * from sysobjects",
            "1 union select @@version",
            "select * from information_schema.columns",
            "1 or 1 like 1-- -",
            "1 and 2 between 1 and 3--",
            "1; waitfor time '00:00:05'",
            "case when 1=1 then 1 else 0 end",
            "select pg_sleep (5)",
        ] {
            assert!(detect(attack).is_some(), "missed: {attack}");
        }
    }

    #[test]
    fn ordinary_text_is_left_alone() {
        for text in [
            "o'brien",
            // A sentence before the quote, a run of dashes after it (README prose and PEM blocks).
            "returns integrity and from if '--long' flag is set.",
            "tap_flags='--cov' npm run test:code",
            "$('#main').hide()",
            "print(f\"{'-->' if line.is_current else '   '}\")",
            "cert: '-----begin certificate-----\\nxxxx\\n-----end certificate-----'",
            "select your size",
            "select your size from the list below",
            "tom & jerry",
            "rock 'n' roll",
            "it's 5 o'clock - time for tea",
            "sizes: s, m, l; colours: red/blue",
            "i'd like to union with my select few friends",
            "2 + 2 = 4",
            "a <b> c",
            "price >= 10 and <= 20",
            "john.doe@example.com",
            "the floor (second)",
            "please drop me a line",
            "\"quoted\" -- said she",
            "c++ or c#",
            "100% cotton; machine wash",
            "length (cm): 20",
            "{\"name\":\"o'brien\",\"size\":\"m\"}",
            "i need sleep (8 hours at least)",
            "i need sleep (5)",
            // Quoted words and numbers before a dash or a hash, in prose and URLs.
            "my password reset link says 'expired' -- can you resend it?",
            "rating: 4/5 -- good value, would buy again!!!",
            "https://example.com/search?q=shoes&size=42#reviews",
            // Inch marks, an airport, a phone call.
            "a 7\" #2 pencil",
            "7\" #2",
            "we had a waitfor delay in the airport",
            "hi; call me later",
        ] {
            assert_eq!(detect(text), None, "false positive: {text}");
        }
    }
}
