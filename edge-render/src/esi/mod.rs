//! Edge Side Includes: a page assembled at the edge from fragments, streamed in document order.
//!
//! | module | what it does |
//! |---|---|
//! | [`tokenizer`] | bytes in any chunks → ESI tags and text; the same tokens however the input is split |
//! | [`parse`] | tokens → nodes (`include`, `try`, `choose`, `vars`, text), nesting checked, completed nodes released at once |
//! | [`vars`] | the request's variables (`HTTP_COOKIE{name}`, `QUERY_STRING{name}`, …), substituted escaped for where they land |
//! | [`expr`] | the `when` test subset: comparisons, `&`, `|`, `!`, parentheses |
//! | `layer` (feature `tower`) | `EsiLayer`: assembly of the HTML responses under some paths, as a tower layer |
//! | [`assemble`] | [`Assembler`]: includes fetched in parallel through the `Fetcher`, coalesced and cached through `CacheStore`, nested, limited, streamed in document order |

pub mod assemble;
pub mod expr;
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub mod layer;
pub mod parse;
pub mod tokenizer;
pub mod vars;

pub use self::assemble::{Assembler, AssemblerBuilder, EsiSettings, NoFragmentCache, OnFailure};
pub use self::parse::{Node, Parser, ParserLimits};
pub use self::tokenizer::{Block, IncludeTag, Token, Tokenizer, TokenizerLimits};
pub use self::vars::Variables;

/// Why an ESI document was refused. Offsets count bytes from the start of the document.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EsiError {
    /// An `esi:` tag this processor does not know.
    UnknownTag {
        /// Where the tag starts.
        offset: u64,
    },
    /// A tag that is not well formed (bad attribute syntax, a self-closed block, …).
    MalformedTag {
        /// Where the tag starts.
        offset: u64,
    },
    /// A tag longer than [`TokenizerLimits::max_tag_len`].
    TagTooLong {
        /// Where the tag starts.
        offset: u64,
    },
    /// A required attribute is missing (`src` of `include`, `test` of `when`).
    MissingAttribute {
        /// The attribute.
        name: &'static str,
        /// Where the tag starts.
        offset: u64,
    },
    /// The document ended inside a tag.
    Unterminated {
        /// Where the tag starts.
        offset: u64,
    },
    /// An end tag that does not close the innermost open element, an element where it may not be (an
    /// `attempt` outside a `try`, …), or elements left open at the end.
    Misnested(&'static str),
    /// Elements nested deeper than [`ParserLimits::max_depth`].
    TooDeep,
    /// More content buffered inside unfinished elements than [`ParserLimits::max_buffered`].
    TooLarge,
}

impl std::fmt::Display for EsiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::UnknownTag { offset } => write!(f, "unknown esi tag at byte {offset}"),
            Self::MalformedTag { offset } => write!(f, "malformed esi tag at byte {offset}"),
            Self::TagTooLong { offset } => write!(f, "esi tag too long at byte {offset}"),
            Self::MissingAttribute { name, offset } => {
                write!(f, "esi tag at byte {offset} lacks its {name} attribute")
            }
            Self::Unterminated { offset } => write!(f, "esi tag at byte {offset} never ends"),
            Self::Misnested(what) => write!(f, "misnested esi: {what}"),
            Self::TooDeep => f.write_str("esi elements nested too deep"),
            Self::TooLarge => f.write_str("too much content inside unfinished esi elements"),
        }
    }
}

impl std::error::Error for EsiError {}
