//! A stored response as bytes, for tiers that hold bytes (KV): a small versioned binary format, decoded
//! strictly — a value that is truncated, overlong or not ours is [`ErrorKind::Corrupt`], never a panic
//! and never a half-built response.
//!
//! Layout (integers big-endian): `"EDGEC1"`, status `u16`, stored-at seconds `u64` + nanos `u32`,
//! expires-at flag `u8` (+ seconds `u64` + nanos `u32`), header count `u16` × (name length `u16`, name,
//! value length `u32`, value), tag count `u16` × (length `u16`, tag), body length `u32`, body.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use edge_core::cache::CachedResponse;
use edge_core::{Error, ErrorKind};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

const MAGIC: &[u8] = b"EDGEC1";

fn put_time(out: &mut BytesMut, t: SystemTime) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    out.put_u64(d.as_secs());
    out.put_u32(d.subsec_nanos());
}

/// Encodes `entry`. Fields too long for the format (over 64 KiB names or 4 GiB values) are dropped;
/// such entries never pass a store's limits anyway.
#[must_use]
pub fn encode(entry: &CachedResponse) -> Bytes {
    let mut out = BytesMut::with_capacity(entry.weight() + 64);
    out.put_slice(MAGIC);
    out.put_u16(entry.status.as_u16());
    put_time(&mut out, entry.stored_at);
    match entry.expires_at {
        Some(at) => {
            out.put_u8(1);
            put_time(&mut out, at);
        }
        None => out.put_u8(0),
    }
    let headers: Vec<(&HeaderName, &HeaderValue)> = entry
        .headers
        .iter()
        .filter(|(n, v)| u16::try_from(n.as_str().len()).is_ok() && u32::try_from(v.len()).is_ok())
        .take(usize::from(u16::MAX))
        .collect();
    out.put_u16(u16::try_from(headers.len()).unwrap_or(u16::MAX));
    for (name, value) in headers {
        out.put_u16(u16::try_from(name.as_str().len()).unwrap_or(0));
        out.put_slice(name.as_str().as_bytes());
        out.put_u32(u32::try_from(value.len()).unwrap_or(0));
        out.put_slice(value.as_bytes());
    }
    let tags: Vec<&String> = entry
        .tags
        .iter()
        .filter(|t| u16::try_from(t.len()).is_ok())
        .take(usize::from(u16::MAX))
        .collect();
    out.put_u16(u16::try_from(tags.len()).unwrap_or(u16::MAX));
    for tag in tags {
        out.put_u16(u16::try_from(tag.len()).unwrap_or(0));
        out.put_slice(tag.as_bytes());
    }
    let body = &entry.body[..entry.body.len().min(u32::MAX as usize)];
    out.put_u32(u32::try_from(body.len()).unwrap_or(0));
    out.put_slice(body);
    out.freeze()
}

struct Reader<'a> {
    bytes: &'a Bytes,
    at: usize,
}

fn corrupt(what: &'static str) -> Error {
    Error::new(ErrorKind::Corrupt, format!("cached entry: {what}"))
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<Bytes, Error> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| corrupt("truncated"))?;
        let slice = self.bytes.slice(self.at..end);
        self.at = end;
        Ok(slice)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        let bytes = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(&bytes);
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, Error> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, Error> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, Error> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    fn time(&mut self) -> Result<SystemTime, Error> {
        let secs = self.u64()?;
        let nanos = self.u32()?;
        if nanos >= 1_000_000_000 {
            return Err(corrupt("bad time"));
        }
        UNIX_EPOCH
            .checked_add(Duration::new(secs, nanos))
            .ok_or_else(|| corrupt("time out of range"))
    }
}

/// Decodes what [`encode`] made.
///
/// # Errors
///
/// [`ErrorKind::Corrupt`] for anything else.
pub fn decode(bytes: &Bytes) -> Result<CachedResponse, Error> {
    let mut r = Reader { bytes, at: 0 };
    if r.take(MAGIC.len())? != MAGIC {
        return Err(corrupt("not an edge cache entry"));
    }
    let status = StatusCode::from_u16(r.u16()?).map_err(|_| corrupt("bad status"))?;
    let stored_at = r.time()?;
    let expires_at = match r.u8()? {
        0 => None,
        1 => Some(r.time()?),
        _ => return Err(corrupt("bad expiry flag")),
    };
    let mut headers = HeaderMap::new();
    for _ in 0..r.u16()? {
        let len = usize::from(r.u16()?);
        let name = HeaderName::from_bytes(&r.take(len)?).map_err(|_| corrupt("bad header name"))?;
        let len = r.u32()? as usize;
        let value = HeaderValue::from_maybe_shared(r.take(len)?)
            .map_err(|_| corrupt("bad header value"))?;
        headers.append(name, value);
    }
    let mut tags = Vec::new();
    for _ in 0..r.u16()? {
        let len = usize::from(r.u16()?);
        let tag = String::from_utf8(r.take(len)?.to_vec()).map_err(|_| corrupt("bad tag"))?;
        tags.push(tag);
    }
    let len = r.u32()? as usize;
    let body = r.take(len)?;
    if r.at != bytes.len() {
        return Err(corrupt("trailing bytes"));
    }
    let mut entry = CachedResponse::new(status, headers, body, stored_at).with_tags(tags);
    entry.expires_at = expires_at;
    Ok(entry)
}

/// A list of keys as bytes (each a big-endian `u32` length and its bytes): the tag index of stores that
/// cannot enumerate their keys (the Workers Cache API).
#[cfg(any(test, all(feature = "workers", target_arch = "wasm32")))]
pub(crate) fn encode_keys(keys: &[String]) -> Vec<u8> {
    let mut out = Vec::with_capacity(keys.iter().map(|k| k.len() + 4).sum());
    for key in keys {
        let len = u32::try_from(key.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(key.as_bytes());
    }
    out
}

/// The keys [`encode_keys`] wrote.
///
/// # Errors
///
/// [`ErrorKind::Corrupt`] for anything else (truncated, overlong, not UTF-8).
#[cfg(any(test, all(feature = "workers", target_arch = "wasm32")))]
pub(crate) fn decode_keys(raw: &[u8]) -> Result<Vec<String>, Error> {
    let corrupt = || Error::new(ErrorKind::Corrupt, "a key list not written by edge-cache");
    let mut keys = Vec::new();
    let mut rest = raw;
    while !rest.is_empty() {
        let (len, tail) = rest.split_at_checked(4).ok_or_else(corrupt)?;
        let len = u32::from_be_bytes(len.try_into().map_err(|_| corrupt())?);
        let len = usize::try_from(len).map_err(|_| corrupt())?;
        let (key, tail) = tail.split_at_checked(len).ok_or_else(corrupt)?;
        keys.push(String::from_utf8(key.to_vec()).map_err(|_| corrupt())?);
        rest = tail;
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn round_trip() {
        let mut headers = HeaderMap::new();
        headers.append("vary", HeaderValue::from_static("a"));
        headers.append("vary", HeaderValue::from_static("b"));
        headers.insert("content-type", HeaderValue::from_static("text/html"));
        let t = UNIX_EPOCH + Duration::new(1_800_000_000, 5);
        let entry = CachedResponse::new(StatusCode::NOT_FOUND, headers, Bytes::from("gone"), t)
            .with_expires_at(t + Duration::from_secs(60))
            .with_tags(["a", "b"]);
        let back = decode(&encode(&entry)).unwrap();
        assert_eq!(
            (
                back.status,
                &back.body,
                back.stored_at,
                back.expires_at,
                &back.tags
            ),
            (
                entry.status,
                &entry.body,
                entry.stored_at,
                entry.expires_at,
                &entry.tags
            )
        );
        assert_eq!(back.headers, entry.headers);
    }

    proptest! {
        #[test]
        fn garbage_is_corrupt_not_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300), cut in 0usize..200) {
            let _ = decode(&Bytes::from(bytes));
            let good = encode(&CachedResponse::new(StatusCode::OK, HeaderMap::new(), Bytes::from("body"), UNIX_EPOCH));
            let cut = cut.min(good.len().saturating_sub(1));
            prop_assert_eq!(decode(&good.slice(..cut)).unwrap_err().kind(), ErrorKind::Corrupt);
        }
    }

    #[test]
    fn key_lists_round_trip_and_foreign_bytes_are_corrupt() {
        let keys = vec!["/a".to_owned(), String::new(), "ключ".to_owned()];
        assert_eq!(decode_keys(&encode_keys(&keys)).ok(), Some(keys));
        for raw in [&b"\0\0"[..], b"\0\0\0\x05ab", b"\0\0\0\x01\xff"] {
            assert_eq!(
                decode_keys(raw).err().map(|e| e.kind()),
                Some(ErrorKind::Corrupt)
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn key_lists_never_panic(raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            let _ = decode_keys(&raw);
        }
    }
}
