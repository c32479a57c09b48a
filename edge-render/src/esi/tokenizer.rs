//! The ESI tokenizer: bytes in, in whatever chunks they arrive; ESI tags and the text between them out.
//!
//! Sans-IO and incremental: [`Tokenizer::feed`] takes the next chunk and appends the tokens it completes;
//! [`Tokenizer::finish`] ends the document. Text is emitted as soon as it is known not to start a tag (so
//! bytes before the first include can leave at once) and shares the input's buffers (no copy). A possible
//! tag cut by a chunk boundary is held back, up to [`TokenizerLimits::max_tag_len`] bytes, until the next
//! chunk decides it.
//!
//! However the input is split, the tokens are the same once adjacent [`Token::Text`]s are joined: the
//! tests check that with a proptest over random documents and random splits.
//!
//! Recognised: `<esi:include src alt onerror/>`, `<esi:comment text/>`, `<esi:remove>`, `<esi:try>`,
//! `<esi:attempt>`, `<esi:except>`, `<esi:choose>`, `<esi:when test>`, `<esi:otherwise>`, `<esi:vars>` and
//! their end tags, and `<!--esi … -->` (whose content is processed as ESI). Anything else is text. Attribute
//! values are double- or single-quoted; `&amp;`, `&lt;`, `&gt;`, `&quot;` and `&apos;` in them are
//! decoded.
//!
//! Bad input is an [`EsiError`] naming the byte offset: an unknown `esi:` tag, a malformed or unterminated
//! tag, one longer than the limit, a missing required attribute.

use bytes::{Bytes, BytesMut};

use super::EsiError;

/// Limits of the tokenizer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenizerLimits {
    /// Longest ESI tag, attributes included (default 8 KiB).
    pub max_tag_len: usize,
}

impl Default for TokenizerLimits {
    fn default() -> Self {
        Self {
            max_tag_len: 8 * 1024,
        }
    }
}

/// An `<esi:include>`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct IncludeTag {
    /// The fragment's URL (may hold `$(VARIABLES)`).
    pub src: String,
    /// The URL to try when `src` fails.
    pub alt: Option<String>,
    /// `onerror="continue"`: a failure renders nothing instead of failing the include.
    pub continue_on_error: bool,
}

/// The ESI elements that have content.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Block {
    /// `<esi:remove>`: its content is dropped.
    Remove,
    /// `<esi:try>`.
    Try,
    /// `<esi:attempt>`.
    Attempt,
    /// `<esi:except>`.
    Except,
    /// `<esi:choose>`.
    Choose,
    /// `<esi:when>`.
    When,
    /// `<esi:otherwise>`.
    Otherwise,
    /// `<esi:vars>`: variables in its text are substituted.
    Vars,
}

impl Block {
    fn from_name(name: &[u8]) -> Option<Self> {
        Some(match name {
            b"remove" => Self::Remove,
            b"try" => Self::Try,
            b"attempt" => Self::Attempt,
            b"except" => Self::Except,
            b"choose" => Self::Choose,
            b"when" => Self::When,
            b"otherwise" => Self::Otherwise,
            b"vars" => Self::Vars,
            _ => return None,
        })
    }
}

/// What the tokenizer emits.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Token {
    /// Bytes that are not ESI.
    Text(Bytes),
    /// `<esi:include …/>`.
    Include(IncludeTag),
    /// `<esi:comment …/>` (renders nothing).
    Comment,
    /// A start tag; `test` is set for `<esi:when test="…">`.
    Start {
        /// Which element.
        block: Block,
        /// The `test` attribute of `when`.
        test: Option<String>,
    },
    /// An end tag.
    End(Block),
    /// `<!--esi`: what follows, up to `-->`, is ESI.
    CommentBlockStart,
    /// The `-->` ending an `<!--esi` block.
    CommentBlockEnd,
}

/// The incremental tokenizer. See the [module docs](self).
#[derive(Debug, Default)]
pub struct Tokenizer {
    limits: TokenizerLimits,
    /// A possible tag cut by the end of the last chunk.
    pending: BytesMut,
    /// Inside `<!--esi … -->`.
    in_comment_block: bool,
    /// Bytes consumed before `pending`, for error offsets.
    offset: u64,
}

/// Where a needle was last found in the current chunk.
#[derive(Clone, Copy, Default)]
enum Hit {
    /// Not searched yet.
    #[default]
    Unsearched,
    /// At this position.
    At(usize),
    /// Nowhere after the last search's start.
    Nowhere,
}

/// The last hit of each needle in the current chunk.
#[derive(Default)]
struct Hits {
    tag: Hit,
    comment_close: Hit,
}

static ESI_FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"esi"));
static COMMENT_CLOSE_FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(COMMENT_CLOSE));

/// Whether `bytes` holds anything that could be ESI (a tag or a comment block).
pub(crate) fn may_hold_esi(bytes: &[u8]) -> bool {
    ESI_FINDER.find(bytes).is_some()
}

enum Candidate {
    NotEsi,
    NeedMore,
    Tag,
    CommentOpen,
    CommentClose,
}

const OPEN: &[u8] = b"<esi:";
const CLOSE: &[u8] = b"</esi:";
const COMMENT_OPEN: &[u8] = b"<!--esi";
const COMMENT_CLOSE: &[u8] = b"-->";

/// Whether `rest` starts with `prefix`, could still (it is a prefix of it), or cannot.
fn prefix_state(rest: &[u8], prefix: &[u8]) -> Option<bool> {
    if rest.len() >= prefix.len() {
        (rest[..prefix.len()] == *prefix).then_some(true)
    } else {
        (prefix[..rest.len()] == *rest).then_some(false)
    }
}

impl Tokenizer {
    /// A tokenizer with `limits`.
    #[must_use]
    pub fn new(limits: TokenizerLimits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    fn classify(rest: &[u8]) -> Candidate {
        let mut need_more = false;
        if rest.first() == Some(&b'-') {
            return match prefix_state(rest, COMMENT_CLOSE) {
                Some(true) => Candidate::CommentClose,
                Some(false) => Candidate::NeedMore,
                None => Candidate::NotEsi,
            };
        }
        for (prefix, found) in [
            (OPEN, Candidate::Tag),
            (CLOSE, Candidate::Tag),
            (COMMENT_OPEN, Candidate::CommentOpen),
        ] {
            match prefix_state(rest, prefix) {
                Some(true) => return found,
                Some(false) => need_more = true,
                None => {}
            }
        }
        if need_more {
            Candidate::NeedMore
        } else {
            Candidate::NotEsi
        }
    }

    /// Tokenizes the next chunk, appending completed tokens to `out`.
    ///
    /// # Errors
    ///
    /// The document is not valid ESI at the reported offset. The tokenizer is then in an unspecified
    /// state: stop using it.
    pub fn feed(&mut self, chunk: Bytes, out: &mut Vec<Token>) -> Result<(), EsiError> {
        let data = if self.pending.is_empty() {
            chunk
        } else {
            self.pending.extend_from_slice(&chunk);
            self.pending.split().freeze()
        };
        let mut text_start = 0;
        let mut pos = 0;
        let mut hits = Hits::default();
        let emit_text = |out: &mut Vec<Token>, from: usize, to: usize| {
            if to > from {
                out.push(Token::Text(data.slice(from..to)));
            }
        };
        loop {
            let Some(at) = self.next_candidate(&data, pos, &mut hits) else {
                // No whole opener is left; the chunk's last bytes may still begin one.
                if let Some(at) = self.tail_candidate(&data, pos) {
                    return self.hold(&data, at, text_start, out);
                }
                break;
            };
            let rest = &data[at..];
            match Self::classify(rest) {
                Candidate::NotEsi => pos = at + 1,
                Candidate::NeedMore => return self.hold(&data, at, text_start, out),
                Candidate::CommentOpen => {
                    emit_text(out, text_start, at);
                    out.push(Token::CommentBlockStart);
                    self.in_comment_block = true;
                    pos = at + COMMENT_OPEN.len();
                    text_start = pos;
                }
                Candidate::CommentClose => {
                    emit_text(out, text_start, at);
                    out.push(Token::CommentBlockEnd);
                    self.in_comment_block = false;
                    pos = at + COMMENT_CLOSE.len();
                    text_start = pos;
                }
                Candidate::Tag => match parse_tag(rest, self.limits.max_tag_len) {
                    Ok(Some((len, token))) => {
                        emit_text(out, text_start, at);
                        out.push(token);
                        pos = at + len;
                        text_start = pos;
                    }
                    Ok(None) => return self.hold(&data, at, text_start, out),
                    Err(kind) => {
                        // The text before a bad tag is the document's, whatever the chunking: it goes
                        // out before the error, as it would have had the chunk ended before the tag.
                        emit_text(out, text_start, at);
                        return Err(kind.at(self.offset + at as u64));
                    }
                },
            }
        }
        emit_text(out, text_start, data.len());
        self.offset += data.len() as u64;
        Ok(())
    }

    /// Where the next possible ESI construct at or after `pos` starts. Every tag has `esi:` right after
    /// `<` or `</`, a comment block opens with `<!--esi`, and only inside one does `-->` matter: three SIMD
    /// substring searches for needles with a rare byte (`:`, `!`, `>`) skip the page's other `<`s. Each
    /// search's hit is kept in `hits` until the scan passes it, so every byte is searched once per needle.
    fn next_candidate(&self, data: &[u8], pos: usize, hits: &mut Hits) -> Option<usize> {
        fn refresh(
            hit: &mut Hit,
            finder: &memchr::memmem::Finder<'_>,
            data: &[u8],
            from: usize,
        ) -> Option<usize> {
            match *hit {
                Hit::At(at) if at >= from => return Some(at),
                Hit::Nowhere => return None,
                Hit::At(_) | Hit::Unsearched => {}
            }
            let found = finder.find(&data[from..]).map(|i| from + i);
            *hit = found.map_or(Hit::Nowhere, Hit::At);
            found
        }
        let mut from = pos;
        // Every opener has `esi` right after `<`, `</` or `<!--`: one search finds them all.
        let open = loop {
            let Some(p) = refresh(&mut hits.tag, &ESI_FINDER, data, from) else {
                break None;
            };
            let before = &data[pos..p];
            if before.ends_with(b"<!--") {
                break Some(p - 4);
            }
            if before.ends_with(b"</") {
                break Some(p - 2);
            }
            if before.ends_with(b"<") {
                break Some(p - 1);
            }
            from = p + 1;
        };
        let close = if self.in_comment_block {
            refresh(&mut hits.comment_close, &COMMENT_CLOSE_FINDER, data, pos)
        } else {
            None
        };
        [open, close].into_iter().flatten().min()
    }

    /// A possible opener cut off by the end of the chunk: the earliest of its last bytes from which the
    /// rest could still grow into one.
    fn tail_candidate(&self, data: &[u8], pos: usize) -> Option<usize> {
        let longest = COMMENT_OPEN.len() - 1;
        let from = data.len().saturating_sub(longest).max(pos);
        (from..data.len()).find(|&i| {
            (data[i] == b'<' || (self.in_comment_block && data[i] == b'-'))
                && matches!(Self::classify(&data[i..]), Candidate::NeedMore)
        })
    }

    /// Emits the text before `at` and keeps `data[at..]` for the next chunk.
    fn hold(
        &mut self,
        data: &Bytes,
        at: usize,
        text_start: usize,
        out: &mut Vec<Token>,
    ) -> Result<(), EsiError> {
        if at > text_start {
            out.push(Token::Text(data.slice(text_start..at)));
        }
        let held = &data[at..];
        if held.len() > self.limits.max_tag_len {
            return Err(EsiError::TagTooLong {
                offset: self.offset + at as u64,
            });
        }
        self.offset += at as u64;
        self.pending.extend_from_slice(held);
        Ok(())
    }

    /// Ends the document: a held-back prefix that never became a tag is text.
    ///
    /// # Errors
    ///
    /// An ESI tag was cut off by the end of the document ([`EsiError::Unterminated`]).
    pub fn finish(&mut self, out: &mut Vec<Token>) -> Result<(), EsiError> {
        let held = self.pending.split().freeze();
        if held.is_empty() {
            return Ok(());
        }
        // What was held is a prefix of a tag opener, or a whole opener whose tag never ended.
        let opener = [OPEN, CLOSE, COMMENT_OPEN, COMMENT_CLOSE]
            .iter()
            .any(|prefix| held.len() >= prefix.len() && held.starts_with(prefix));
        if opener {
            return Err(EsiError::Unterminated {
                offset: self.offset,
            });
        }
        out.push(Token::Text(held));
        Ok(())
    }
}

/// What went wrong in a tag, before its offset is known.
enum TagError {
    Malformed,
    Unknown,
    TooLong,
    MissingAttribute(&'static str),
}

impl TagError {
    fn at(self, offset: u64) -> EsiError {
        match self {
            Self::Malformed => EsiError::MalformedTag { offset },
            Self::Unknown => EsiError::UnknownTag { offset },
            Self::TooLong => EsiError::TagTooLong { offset },
            Self::MissingAttribute(name) => EsiError::MissingAttribute { name, offset },
        }
    }
}

fn decode_entities(raw: &[u8]) -> Result<String, TagError> {
    let text = std::str::from_utf8(raw).map_err(|_| TagError::Malformed)?;
    if !text.contains('&') {
        return Ok(text.to_owned());
    }
    Ok(text
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&"))
}

/// Parses the tag at the start of `s` (which starts with `<esi:` or `</esi:`): its length and token, or
/// `None` if `s` ends before the tag does.
fn parse_tag(s: &[u8], max_len: usize) -> Result<Option<(usize, Token)>, TagError> {
    let closing = s.starts_with(CLOSE);
    let mut i = if closing { CLOSE.len() } else { OPEN.len() };
    let name_start = i;
    while i < s.len() && s[i].is_ascii_lowercase() {
        i += 1;
    }
    if i == s.len() {
        return if i > max_len {
            Err(TagError::TooLong)
        } else {
            Ok(None)
        };
    }
    let name = &s[name_start..i];
    let mut attributes: Vec<(&[u8], String)> = Vec::new();
    let mut self_closing = false;
    loop {
        if i > max_len {
            return Err(TagError::TooLong);
        }
        let Some(&b) = s.get(i) else {
            return Ok(None);
        };
        match b {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'>' => {
                i += 1;
                break;
            }
            b'/' => match s.get(i + 1) {
                None => return Ok(None),
                Some(b'>') => {
                    self_closing = true;
                    i += 2;
                    break;
                }
                Some(_) => return Err(TagError::Malformed),
            },
            b if b.is_ascii_alphabetic() && !closing => {
                let attr_start = i;
                while i < s.len() && (s[i].is_ascii_alphanumeric() || s[i] == b'-' || s[i] == b'_')
                {
                    i += 1;
                }
                let attr = &s[attr_start..i];
                if i >= s.len() || i + 1 >= s.len() {
                    return if i > max_len {
                        Err(TagError::TooLong)
                    } else {
                        Ok(None)
                    };
                }
                if s[i] != b'=' {
                    return Err(TagError::Malformed);
                }
                let quote = s[i + 1];
                if quote != b'"' && quote != b'\'' {
                    return Err(TagError::Malformed);
                }
                let value_start = i + 2;
                let Some(len) = memchr::memchr(quote, &s[value_start.min(s.len())..]) else {
                    return if s.len() > max_len {
                        Err(TagError::TooLong)
                    } else {
                        Ok(None)
                    };
                };
                let value = decode_entities(&s[value_start..value_start + len])?;
                attributes.push((attr, value));
                i = value_start + len + 1;
                if i > max_len {
                    return Err(TagError::TooLong);
                }
                // Attributes are separated by whitespace (or end at `/` or `>`).
                match s.get(i) {
                    None => return Ok(None),
                    Some(b' ' | b'\t' | b'\n' | b'\r' | b'/' | b'>') => {}
                    Some(_) => return Err(TagError::Malformed),
                }
            }
            _ => return Err(TagError::Malformed),
        }
    }
    let attribute = |name: &[u8]| {
        attributes
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
    };
    let token = if closing {
        match name {
            // `<esi:include …></esi:include>` and `<esi:comment …></esi:comment>`: the end tag adds nothing.
            b"include" | b"comment" => Token::Comment,
            _ => Token::End(Block::from_name(name).ok_or(TagError::Unknown)?),
        }
    } else {
        match name {
            b"include" => Token::Include(IncludeTag {
                src: attribute(b"src").ok_or(TagError::MissingAttribute("src"))?,
                alt: attribute(b"alt"),
                continue_on_error: attribute(b"onerror").as_deref() == Some("continue"),
            }),
            b"comment" => Token::Comment,
            _ => {
                let block = Block::from_name(name).ok_or(TagError::Unknown)?;
                if self_closing {
                    return Err(TagError::Malformed);
                }
                let test = if block == Block::When {
                    Some(attribute(b"test").ok_or(TagError::MissingAttribute("test"))?)
                } else {
                    None
                };
                Token::Start { block, test }
            }
        }
    };
    Ok(Some((i, token)))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn tokens(chunks: &[&[u8]]) -> Result<Vec<Token>, EsiError> {
        let mut tokenizer = Tokenizer::default();
        let mut out = Vec::new();
        for chunk in chunks {
            tokenizer.feed(Bytes::copy_from_slice(chunk), &mut out)?;
        }
        tokenizer.finish(&mut out)?;
        Ok(joined(out))
    }

    /// Adjacent texts joined: the form in which any split gives the same tokens.
    fn joined(tokens: Vec<Token>) -> Vec<Token> {
        let mut out: Vec<Token> = Vec::new();
        for token in tokens {
            match (out.last_mut(), token) {
                (Some(Token::Text(previous)), Token::Text(next)) => {
                    let mut both = BytesMut::from(&previous[..]);
                    both.extend_from_slice(&next);
                    *previous = both.freeze();
                }
                (_, token) => out.push(token),
            }
        }
        out
    }

    fn text(s: &str) -> Token {
        Token::Text(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn every_tag() {
        let doc = br#"<p>a<esi:include src="/frag?a=1&amp;b=2" alt='/alt' onerror="continue"/>b<esi:remove><a href="/x">x</a></esi:remove><esi:comment text="hi"/><esi:try><esi:attempt>t</esi:attempt><esi:except>e</esi:except></esi:try><esi:choose><esi:when test="$(HTTP_COOKIE{group})=='beta'">w</esi:when><esi:otherwise>o</esi:otherwise></esi:choose><esi:vars>$(HTTP_HOST)</esi:vars><!--esi <esi:include src="/c"/> -->--><esi:include src="/d"></esi:include></p>"#;
        let got = tokens(&[doc]).unwrap();
        let start = |block| Token::Start { block, test: None };
        let expected = vec![
            text("<p>a"),
            Token::Include(IncludeTag {
                src: "/frag?a=1&b=2".into(),
                alt: Some("/alt".into()),
                continue_on_error: true,
            }),
            text("b"),
            start(Block::Remove),
            text(r#"<a href="/x">x</a>"#),
            Token::End(Block::Remove),
            Token::Comment,
            start(Block::Try),
            start(Block::Attempt),
            text("t"),
            Token::End(Block::Attempt),
            start(Block::Except),
            text("e"),
            Token::End(Block::Except),
            Token::End(Block::Try),
            start(Block::Choose),
            Token::Start {
                block: Block::When,
                test: Some("$(HTTP_COOKIE{group})=='beta'".into()),
            },
            text("w"),
            Token::End(Block::When),
            start(Block::Otherwise),
            text("o"),
            Token::End(Block::Otherwise),
            Token::End(Block::Choose),
            start(Block::Vars),
            text("$(HTTP_HOST)"),
            Token::End(Block::Vars),
            Token::CommentBlockStart,
            text(" "),
            Token::Include(IncludeTag {
                src: "/c".into(),
                alt: None,
                continue_on_error: false,
            }),
            text(" "),
            Token::CommentBlockEnd,
            text("-->"),
            Token::Include(IncludeTag {
                src: "/d".into(),
                alt: None,
                continue_on_error: false,
            }),
            Token::Comment,
            text("</p>"),
        ];
        assert_eq!(got, expected);
    }

    #[test]
    fn near_misses_are_text() {
        for doc in [
            "<es",
            "<esx:include/>",
            "< esi:include>",
            "<!--es",
            "<!-- esi -->",
            "a<b>c",
            "<",
            "-->",
            "<!--esinope",
        ] {
            let got = tokens(&[doc.as_bytes()]);
            if doc == "<!--esinope" {
                // `<!--esi` opens a block whatever follows; the document then never closes it (the parser's business).
                assert_eq!(got.unwrap()[0], Token::CommentBlockStart);
                continue;
            }
            assert_eq!(got.unwrap(), vec![text(doc)], "{doc}");
        }
    }

    #[test]
    fn bad_tags_are_typed_errors_with_offsets() {
        let cases: [(&str, EsiError); 7] = [
            ("ab<esi:frobnicate/>", EsiError::UnknownTag { offset: 2 }),
            (
                "<esi:include/>",
                EsiError::MissingAttribute {
                    name: "src",
                    offset: 0,
                },
            ),
            (
                "x<esi:include src=/a/>",
                EsiError::MalformedTag { offset: 1 },
            ),
            (
                "<esi:include src=\"/a\"x=\"1\"/>",
                EsiError::MalformedTag { offset: 0 },
            ),
            (
                "<esi:when>",
                EsiError::MissingAttribute {
                    name: "test",
                    offset: 0,
                },
            ),
            ("<esi:try/>", EsiError::MalformedTag { offset: 0 }),
            (
                "abc<esi:include src=\"/never-closed",
                EsiError::Unterminated { offset: 3 },
            ),
        ];
        for (doc, error) in cases {
            assert_eq!(tokens(&[doc.as_bytes()]), Err(error), "{doc}");
        }
        let huge = format!("<esi:include src=\"{}\"/>", "a".repeat(10_000));
        assert!(matches!(
            tokens(&[huge.as_bytes()]),
            Err(EsiError::TagTooLong { .. })
        ));
        // Also when it arrives a byte at a time: the held-back bytes are bounded.
        let bytes: Vec<&[u8]> = huge.as_bytes().chunks(1).collect();
        assert!(matches!(tokens(&bytes), Err(EsiError::TagTooLong { .. })));
    }

    fn piece() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z <>/!-]{0,12}",
            Just("<esi:include src=\"/f?a=1&amp;b\" alt='/g' onerror=\"continue\"/>".to_owned()),
            Just("<esi:remove>".to_owned()),
            Just("</esi:remove>".to_owned()),
            Just("<esi:when test=\"$(HTTP_HOST)=='a>b'\">".to_owned()),
            Just("</esi:when>".to_owned()),
            Just("<!--esi".to_owned()),
            Just("-->".to_owned()),
            Just("<esi:comment text=\"x\"/>".to_owned()),
            Just("<es".to_owned()),
            Just("<!--".to_owned()),
            Just("--".to_owned()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// The tokens (adjacent texts joined), or the error, never depend on where the chunks split.
        #[test]
        fn any_split_gives_the_same_tokens(
            pieces in proptest::collection::vec(piece(), 0..24),
            cuts in proptest::collection::vec(any::<usize>(), 0..12),
        ) {
            let doc = pieces.concat();
            let whole = tokens(&[doc.as_bytes()]);
            let mut points: Vec<usize> = cuts.iter().map(|c| c % (doc.len() + 1)).collect();
            points.sort_unstable();
            let mut chunks = Vec::new();
            let mut last = 0;
            for p in points {
                chunks.push(&doc.as_bytes()[last..p]);
                last = p;
            }
            chunks.push(&doc.as_bytes()[last..]);
            prop_assert_eq!(tokens(&chunks), whole);
        }

        /// No bytes at all panic it, and the text it passes through is exactly the input's non-ESI bytes.
        #[test]
        fn any_bytes_are_safe(doc in proptest::collection::vec(any::<u8>(), 0..512), split in any::<usize>()) {
            let at = split % (doc.len() + 1);
            let _ = tokens(&[&doc[..at], &doc[at..]]);
        }
    }
}
