//! Strict base64url (RFC 4648 §5) as JWS requires it (RFC 7515 §2): no padding, no whitespace, and
//! canonical trailing bits, so every byte string has exactly one encoding and a token cannot be altered
//! without changing its signing input.

/// Why a segment is not strict base64url.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum B64Error {
    /// A character outside `A–Z a–z 0–9 - _`, including `=` padding.
    BadCharacter,
    /// A length of 1 mod 4, which no byte string encodes to.
    BadLength,
    /// The last character carries bits that must be zero.
    NonCanonical,
}

const INVALID: u8 = 0xff;

const DECODE: [u8; 256] = {
    let mut table = [INVALID; 256];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut i = 0;
    while i < 64 {
        table[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    table
};

const ENCODE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// The number of bytes `len` characters decode to, or an error for an impossible length.
pub(crate) fn decoded_len(len: usize) -> Result<usize, B64Error> {
    match len % 4 {
        1 => Err(B64Error::BadLength),
        rem => Ok(len / 4 * 3 + rem.saturating_sub(1)),
    }
}

/// Decodes `input` into `out` (cleared first).
pub(crate) fn decode_into(input: &[u8], out: &mut Vec<u8>) -> Result<(), B64Error> {
    out.clear();
    out.reserve(decoded_len(input.len())?);
    let mut chunks = input.chunks_exact(4);
    for chunk in &mut chunks {
        let mut n: u32 = 0;
        for &c in chunk {
            let v = DECODE[usize::from(c)];
            if v == INVALID {
                return Err(B64Error::BadCharacter);
            }
            n = (n << 6) | u32::from(v);
        }
        out.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8]);
    }
    let rest = chunks.remainder();
    if rest.is_empty() {
        return Ok(());
    }
    let mut n: u32 = 0;
    for &c in rest {
        let v = DECODE[usize::from(c)];
        if v == INVALID {
            return Err(B64Error::BadCharacter);
        }
        n = (n << 6) | u32::from(v);
    }
    match rest.len() {
        2 => {
            // 12 bits, 8 used: the low 4 must be zero.
            if n & 0x0f != 0 {
                return Err(B64Error::NonCanonical);
            }
            out.push((n >> 4) as u8);
        }
        3 => {
            // 18 bits, 16 used: the low 2 must be zero.
            if n & 0x03 != 0 {
                return Err(B64Error::NonCanonical);
            }
            out.extend_from_slice(&[(n >> 10) as u8, (n >> 2) as u8]);
        }
        _ => return Err(B64Error::BadLength),
    }
    Ok(())
}

/// Decodes `input` into a new vector.
pub(crate) fn decode(input: &[u8]) -> Result<Vec<u8>, B64Error> {
    let mut out = Vec::new();
    decode_into(input, &mut out)?;
    Ok(out)
}

/// Encodes `input` without padding.
pub(crate) fn encode(input: &[u8]) -> String {
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(char::from(ENCODE[((n >> (18 - 6 * i)) & 0x3f) as usize]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc_4648_vectors_without_padding() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg"),
            ("fo", "Zm8"),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg"),
            ("fooba", "Zm9vYmE"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(encode(plain.as_bytes()), encoded);
            assert_eq!(decode(encoded.as_bytes()).unwrap(), plain.as_bytes());
        }
        assert_eq!(decode(b"-_-_").unwrap(), [0xfb, 0xff, 0xbf]);
    }

    #[test]
    fn rejects_everything_not_strict() {
        assert_eq!(decode(b"Zg=="), Err(B64Error::BadCharacter), "padding");
        assert_eq!(
            decode(b"Zm9v+w"),
            Err(B64Error::BadCharacter),
            "standard alphabet"
        );
        assert_eq!(decode(b"Zm 9"), Err(B64Error::BadCharacter), "whitespace");
        assert_eq!(decode(b"Z"), Err(B64Error::BadLength));
        assert_eq!(
            decode(b"Zh"),
            Err(B64Error::NonCanonical),
            "Zg with a stray low bit"
        );
        assert_eq!(decode(b"Zm9"), Err(B64Error::NonCanonical));
    }

    proptest! {
        #[test]
        fn round_trips_and_encodings_are_unique(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let encoded = encode(&bytes);
            prop_assert_eq!(decode(encoded.as_bytes()).unwrap(), bytes);
        }

        #[test]
        fn never_panics(input in prop::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(decoded) = decode(&input) {
                let again = encode(&decoded);
                prop_assert_eq!(again.as_bytes(), &input[..], "canonical: decoding then encoding gives the input");
            }
        }
    }
}
