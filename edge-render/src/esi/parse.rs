//! ESI tokens → nodes, streaming: a node is released as soon as it is complete, so text and includes at
//! the top level pass straight through while `try`, `choose` and `vars` are held until they close.
//!
//! Structure is checked as tokens arrive: `attempt`/`except` only directly inside `try` (one each, the
//! attempt required), `when`/`otherwise` only directly inside `choose` (text between them is ignored, as
//! the specification says), every end tag closing the innermost open element, `<!--esi` blocks not nested.
//! Content inside `remove` and `comment` is dropped. Depth and the bytes held inside unfinished elements
//! are bounded ([`ParserLimits`]).

use bytes::Bytes;

use super::EsiError;
use super::tokenizer::{Block, IncludeTag, Token};

/// Limits of the parser.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ParserLimits {
    /// Deepest nesting of `try`/`choose`/`vars`/`remove` and their parts (default 32).
    pub max_depth: usize,
    /// Most text bytes held inside unfinished elements (default 1 MiB).
    pub max_buffered: usize,
}

impl Default for ParserLimits {
    fn default() -> Self {
        Self {
            max_depth: 32,
            max_buffered: 1024 * 1024,
        }
    }
}

/// A piece of an ESI document.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Node {
    /// Bytes to send as they are.
    Text(Bytes),
    /// A fragment to fetch.
    Include(IncludeTag),
    /// `<esi:try>`: `attempt`, and `except` if any include in it fails.
    Try {
        /// The attempt.
        attempt: Vec<Node>,
        /// What renders instead when the attempt fails.
        except: Vec<Node>,
    },
    /// `<esi:choose>`: the first `when` whose test holds, else `otherwise`.
    Choose {
        /// Each `when`: its test and content.
        whens: Vec<(String, Vec<Node>)>,
        /// `otherwise`.
        otherwise: Vec<Node>,
    },
    /// `<esi:vars>`: content whose text has its variables substituted.
    Vars(Vec<Node>),
}

#[derive(Debug)]
struct Frame {
    block: Block,
    test: Option<String>,
    nodes: Vec<Node>,
    /// For `try`: the finished attempt and except. For `choose`: the finished whens and otherwise.
    parts: Vec<(Block, Option<String>, Vec<Node>)>,
}

/// The streaming parser. See the [module docs](self).
#[derive(Debug, Default)]
pub struct Parser {
    limits: ParserLimits,
    stack: Vec<Frame>,
    /// Inside `<!--esi … -->`.
    in_comment_block: bool,
    buffered: usize,
}

impl Parser {
    /// A parser with `limits`.
    #[must_use]
    pub fn new(limits: ParserLimits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// Whether some element is open (its content is being held).
    #[must_use]
    pub fn is_holding(&self) -> bool {
        !self.stack.is_empty()
    }

    fn removing(&self) -> bool {
        self.stack.iter().any(|f| f.block == Block::Remove)
    }

    /// Where a node goes: into the innermost open element, or out.
    fn place(&mut self, node: Node, out: &mut Vec<Node>) -> Result<(), EsiError> {
        match self.stack.last_mut() {
            None => out.push(node),
            Some(frame) => match frame.block {
                Block::Remove => {}
                // Only whitespace may stand between a try's or a choose's parts; it is dropped.
                Block::Try | Block::Choose => match &node {
                    Node::Text(text) if text.iter().all(u8::is_ascii_whitespace) => {}
                    Node::Text(_) if frame.block == Block::Choose => {}
                    _ => return Err(EsiError::Misnested("content directly inside try")),
                },
                _ => {
                    if let Node::Text(text) = &node {
                        self.buffered += text.len();
                        if self.buffered > self.limits.max_buffered {
                            return Err(EsiError::TooLarge);
                        }
                    }
                    frame.nodes.push(node);
                }
            },
        }
        Ok(())
    }

    /// Takes the next token, appending the nodes it completes to `out`.
    ///
    /// # Errors
    ///
    /// The document's structure is wrong, or a limit was passed. Stop using the parser then.
    pub fn push(&mut self, token: Token, out: &mut Vec<Node>) -> Result<(), EsiError> {
        match token {
            Token::Text(text) => self.place(Node::Text(text), out),
            Token::Include(include) => {
                if self.removing() {
                    return Ok(());
                }
                self.place(Node::Include(include), out)
            }
            Token::Comment => Ok(()),
            Token::CommentBlockStart => {
                if self.in_comment_block {
                    return Err(EsiError::Misnested("<!--esi inside <!--esi"));
                }
                self.in_comment_block = true;
                Ok(())
            }
            Token::CommentBlockEnd => {
                self.in_comment_block = false;
                Ok(())
            }
            Token::Start { block, test } => self.start(block, test),
            Token::End(block) => self.end(block, out),
        }
    }

    fn start(&mut self, block: Block, test: Option<String>) -> Result<(), EsiError> {
        if self.stack.len() >= self.limits.max_depth {
            return Err(EsiError::TooDeep);
        }
        let parent = self.stack.last().map(|f| f.block);
        let allowed = match block {
            Block::Attempt | Block::Except => parent == Some(Block::Try),
            Block::When | Block::Otherwise => parent == Some(Block::Choose),
            _ => !matches!(parent, Some(Block::Try | Block::Choose)),
        };
        if !allowed && parent != Some(Block::Remove) {
            return Err(EsiError::Misnested("element where it may not be"));
        }
        self.stack.push(Frame {
            block,
            test,
            nodes: Vec::new(),
            parts: Vec::new(),
        });
        Ok(())
    }

    fn end(&mut self, block: Block, out: &mut Vec<Node>) -> Result<(), EsiError> {
        let frame = match self.stack.pop() {
            Some(frame) if frame.block == block => frame,
            _ => return Err(EsiError::Misnested("end tag without its start")),
        };
        let node = match block {
            Block::Remove => return Ok(()),
            Block::Attempt | Block::Except | Block::When | Block::Otherwise => {
                let Some(parent) = self.stack.last_mut() else {
                    return Err(EsiError::Misnested("part outside its element"));
                };
                let repeated = parent.parts.iter().any(|(b, _, _)| {
                    *b == block
                        && matches!(block, Block::Attempt | Block::Except | Block::Otherwise)
                });
                if repeated {
                    return Err(EsiError::Misnested("a part given twice"));
                }
                parent.parts.push((block, frame.test, frame.nodes));
                return Ok(());
            }
            Block::Try => {
                let mut attempt = None;
                let mut except = Vec::new();
                for (part, _, nodes) in frame.parts {
                    match part {
                        Block::Attempt => attempt = Some(nodes),
                        _ => except = nodes,
                    }
                }
                let attempt = attempt.ok_or(EsiError::Misnested("try without attempt"))?;
                Node::Try { attempt, except }
            }
            Block::Choose => {
                let mut whens = Vec::new();
                let mut otherwise = Vec::new();
                for (part, test, nodes) in frame.parts {
                    match part {
                        Block::When => whens.push((test.unwrap_or_default(), nodes)),
                        _ => otherwise = nodes,
                    }
                }
                Node::Choose { whens, otherwise }
            }
            Block::Vars => Node::Vars(frame.nodes),
        };
        if self.stack.is_empty() {
            self.buffered = 0;
        }
        self.place(node, out)
    }

    /// Ends the document.
    ///
    /// # Errors
    ///
    /// [`EsiError::Misnested`] if an element or an `<!--esi` block is still open.
    pub fn finish(&self) -> Result<(), EsiError> {
        if !self.stack.is_empty() {
            return Err(EsiError::Misnested("elements left open"));
        }
        if self.in_comment_block {
            return Err(EsiError::Misnested("<!--esi never closed"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::esi::Tokenizer;

    fn parse(doc: &str) -> Result<Vec<Node>, EsiError> {
        let mut tokenizer = Tokenizer::default();
        let mut tokens = Vec::new();
        tokenizer.feed(Bytes::copy_from_slice(doc.as_bytes()), &mut tokens)?;
        tokenizer.finish(&mut tokens)?;
        let mut parser = Parser::default();
        let mut nodes = Vec::new();
        for token in tokens {
            parser.push(token, &mut nodes)?;
        }
        parser.finish()?;
        Ok(nodes)
    }

    fn text(s: &str) -> Node {
        Node::Text(Bytes::copy_from_slice(s.as_bytes()))
    }

    fn include(src: &str) -> Node {
        Node::Include(IncludeTag {
            src: src.into(),
            alt: None,
            continue_on_error: false,
        })
    }

    #[test]
    fn structure() {
        let nodes = parse(
            "a<esi:remove><esi:include src=\"/gone\"/>x</esi:remove>\
             <esi:try>\n <esi:attempt><esi:include src=\"/a\"/></esi:attempt>\n<esi:except>sorry</esi:except></esi:try>\
             <esi:choose> ignored <esi:when test=\"1==1\">one</esi:when><esi:otherwise>other</esi:otherwise></esi:choose>\
             <esi:vars>$(HTTP_HOST)</esi:vars><!--esi <esi:include src=\"/c\"/>-->z",
        )
        .unwrap();
        assert_eq!(
            nodes,
            vec![
                text("a"),
                Node::Try {
                    attempt: vec![include("/a")],
                    except: vec![text("sorry")],
                },
                Node::Choose {
                    whens: vec![("1==1".into(), vec![text("one")])],
                    otherwise: vec![text("other")],
                },
                Node::Vars(vec![text("$(HTTP_HOST)")]),
                text(" "),
                include("/c"),
                text("z"),
            ]
        );
    }

    #[test]
    fn completed_nodes_leave_at_once() {
        let mut parser = Parser::default();
        let mut out = Vec::new();
        parser
            .push(Token::Text(Bytes::from_static(b"shell")), &mut out)
            .unwrap();
        assert_eq!(out.len(), 1, "top-level text is not held");
        parser
            .push(
                Token::Start {
                    block: Block::Vars,
                    test: None,
                },
                &mut out,
            )
            .unwrap();
        parser
            .push(Token::Text(Bytes::from_static(b"v")), &mut out)
            .unwrap();
        assert_eq!(out.len(), 1, "held inside vars");
        assert!(parser.is_holding());
        parser.push(Token::End(Block::Vars), &mut out).unwrap();
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn bad_structure_is_refused() {
        for doc in [
            "<esi:attempt>x</esi:attempt>",
            "<esi:try><esi:except>x</esi:except></esi:try>",
            "<esi:try>text<esi:attempt>x</esi:attempt></esi:try>",
            "<esi:try><esi:attempt>a</esi:attempt><esi:attempt>b</esi:attempt></esi:try>",
            "<esi:when test=\"1\">x</esi:when>",
            "<esi:choose><esi:vars>x</esi:vars></esi:choose>",
            "<esi:vars>x",
            "</esi:vars>",
            "<esi:vars><esi:try></esi:vars></esi:try>",
            "<!--esi <!--esi -->",
            "<!--esi x",
        ] {
            assert!(
                matches!(parse(doc), Err(EsiError::Misnested(_))),
                "{doc}: {:?}",
                parse(doc)
            );
        }
        let deep = "<esi:vars>".repeat(100);
        assert_eq!(parse(&deep), Err(EsiError::TooDeep));
        let mut parser = Parser::new(ParserLimits {
            max_depth: 4,
            max_buffered: 10,
        });
        let mut out = Vec::new();
        parser
            .push(
                Token::Start {
                    block: Block::Vars,
                    test: None,
                },
                &mut out,
            )
            .unwrap();
        assert_eq!(
            parser.push(
                Token::Text(Bytes::from_static(b"more than ten bytes")),
                &mut out
            ),
            Err(EsiError::TooLarge)
        );
    }
}
