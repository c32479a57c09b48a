//! Any bytes, split anywhere: the tokenizer never panics, gives the same tokens (texts joined) however
//! the input is split, and the parser takes whatever it produces without panicking.
#![no_main]

use bytes::{Bytes, BytesMut};
use edge_render::esi::{Node, Parser, Token, Tokenizer};
use libfuzzer_sys::fuzz_target;

fn tokens(chunks: &[&[u8]]) -> Result<Vec<Token>, edge_render::esi::EsiError> {
    let mut tokenizer = Tokenizer::default();
    let mut out = Vec::new();
    for chunk in chunks {
        tokenizer.feed(Bytes::copy_from_slice(chunk), &mut out)?;
    }
    tokenizer.finish(&mut out)?;
    let mut joined: Vec<Token> = Vec::new();
    for token in out {
        match (joined.last_mut(), token) {
            (Some(Token::Text(previous)), Token::Text(next)) => {
                let mut both = BytesMut::from(&previous[..]);
                both.extend_from_slice(&next);
                *previous = both.freeze();
            }
            (_, token) => joined.push(token),
        }
    }
    Ok(joined)
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, doc)) = data.split_first() else {
        return;
    };
    let whole = tokens(&[doc]);
    let a = usize::from(seed) % (doc.len() + 1);
    let b = (a + usize::from(seed.rotate_left(3))) % (doc.len() + 1);
    let (lo, hi) = (a.min(b), a.max(b));
    let split = tokens(&[&doc[..lo], &doc[lo..hi], &doc[hi..]]);
    let bytewise: Vec<&[u8]> = doc.chunks(1 + usize::from(seed % 7)).collect();
    assert_eq!(whole, split);
    assert_eq!(whole, tokens(&bytewise));
    if let Ok(tokens) = whole {
        let mut parser = Parser::default();
        let mut nodes: Vec<Node> = Vec::new();
        for token in tokens {
            if parser.push(token, &mut nodes).is_err() {
                return;
            }
        }
        let _ = parser.finish();
    }
});
