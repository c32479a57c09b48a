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

/// Decodes `input` into the front of `out`, returning how many bytes it wrote.
///
/// `out` must have room for [`decoded_len`] bytes; a shorter buffer is reported as [`B64Error::BadLength`].
pub(crate) fn decode_to_slice(input: &[u8], out: &mut [u8]) -> Result<usize, B64Error> {
    let len = decoded_len(input.len())?;
    let out = out.get_mut(..len).ok_or(B64Error::BadLength)?;
    let full = input.len() / 4;
    // Whole groups of four characters go through base64-simd (SIMD where the CPU has it, 16 to 32
    // characters a step). Any four characters of the alphabet are a canonical group, so its alphabet check
    // is all strictness asks of them; the last, partial group is checked here.
    let (groups, decoded) = (&input[..full * 4], &mut out[..full * 3]);
    if !groups.is_empty() {
        base64_simd::URL_SAFE_NO_PAD
            .decode(groups, base64_simd::Out::from_slice(decoded))
            .map_err(|_| B64Error::BadCharacter)?;
    }
    let rest = &input[full * 4..];
    if rest.is_empty() {
        return Ok(len);
    }
    let mut n: u32 = 0;
    for &c in rest {
        let v = DECODE[usize::from(c)];
        if v == INVALID {
            return Err(B64Error::BadCharacter);
        }
        n = (n << 6) | u32::from(v);
    }
    let tail = &mut out[full * 3..];
    match (rest.len(), tail) {
        (2, [b0]) => {
            // 12 bits, 8 used: the low 4 must be zero.
            if n & 0x0f != 0 {
                return Err(B64Error::NonCanonical);
            }
            *b0 = (n >> 4) as u8;
        }
        (3, [b0, b1]) => {
            // 18 bits, 16 used: the low 2 must be zero.
            if n & 0x03 != 0 {
                return Err(B64Error::NonCanonical);
            }
            *b0 = (n >> 10) as u8;
            *b1 = (n >> 2) as u8;
        }
        _ => return Err(B64Error::BadLength),
    }
    Ok(len)
}

/// Decodes `input` into `out` (cleared first).
pub(crate) fn decode_into(input: &[u8], out: &mut Vec<u8>) -> Result<(), B64Error> {
    out.clear();
    out.resize(decoded_len(input.len())?, 0);
    decode_to_slice(input, out).map(|_| ())
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
        fn one_bad_character_anywhere_is_found(
            bytes in prop::collection::vec(any::<u8>(), 1..400),
            at in any::<prop::sample::Index>(),
            bad in prop::sample::select(&b"=+/ .\n\0\xff"[..]),
        ) {
            let mut encoded = encode(&bytes).into_bytes();
            let at = at.index(encoded.len());
            encoded[at] = bad;
            prop_assert_eq!(decode(&encoded), Err(B64Error::BadCharacter));
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
