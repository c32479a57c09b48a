//! List cursors that name the last key of the page they end.
//!
//! "Continue after key K" stays meaningful whatever is written between pages, so keys present throughout a
//! listing are returned exactly once. The key is hex-encoded behind a per-store tag: a cursor is opaque to
//! callers, and one handed out by another store is refused instead of misread.

use std::fmt::Write;

use std::ops::Bound;

use edge_core::kv::{KvLimits, ListKey, ListOptions, ListPage};
use edge_core::{Error, ErrorKind};

/// The cursor resuming after `last_key`.
pub(crate) fn encode(tag: &str, last_key: &str) -> String {
    let mut cursor = String::with_capacity(tag.len() + last_key.len() * 2);
    cursor.push_str(tag);
    for byte in last_key.bytes() {
        let _ = write!(cursor, "{byte:02x}");
    }
    cursor
}

/// The key a cursor resumes after.
///
/// # Errors
///
/// [`ErrorKind::InvalidCursor`] for anything [`encode`] with `tag` did not produce.
pub(crate) fn decode(tag: &str, cursor: &str) -> Result<String, Error> {
    let invalid = || {
        Error::new(
            ErrorKind::InvalidCursor,
            "not a cursor handed out by this store",
        )
    };
    let hex = cursor
        .strip_prefix(tag)
        .filter(|h| !h.is_empty() && h.len() % 2 == 0 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(invalid)?;
    let bytes = hex
        .as_bytes()
        .chunks_exact(2)
        // Only hex digits are left (checked above), so `from_str_radix` sees no sign or other leniency.
        .map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|s| u8::from_str_radix(s, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(invalid)?;
    String::from_utf8(bytes).map_err(|_| invalid())
}

/// A checked `list` request: the page size, where to resume, and the prefix. Shared by every store so they
/// agree on what a cursor and a page mean.
pub(crate) struct Walk<'a> {
    tag: &'static str,
    pub(crate) limit: usize,
    /// The last key of the previous page.
    pub(crate) after: Option<String>,
    pub(crate) prefix: &'a str,
}

impl<'a> Walk<'a> {
    /// Checks `options` against `limits` and decodes the cursor.
    pub(crate) fn new(
        tag: &'static str,
        limits: &KvLimits,
        options: &'a ListOptions,
    ) -> Result<Self, Error> {
        let limit = limits.check_list_limit(options.limit)?;
        let after = options
            .cursor
            .as_deref()
            .map(|c| decode(tag, c))
            .transpose()?;
        Ok(Self {
            tag,
            limit,
            after,
            prefix: options.prefix.as_deref().unwrap_or(""),
        })
    }

    /// Whether the walk resumes strictly after the cursor's key (`Some`) or at the prefix (`None`).
    pub(crate) fn resume_after(&self) -> Option<&str> {
        self.after.as_deref().filter(|after| *after >= self.prefix)
    }

    /// The lower bound of the walk in an ordered index.
    pub(crate) fn start(&self) -> Bound<&str> {
        self.resume_after()
            .map_or(Bound::Included(self.prefix), Bound::Excluded)
    }

    /// The page from up to `limit + 1` keys in order: the extra key, if present, says a cursor is needed.
    pub(crate) fn finish(&self, mut keys: Vec<ListKey>) -> ListPage {
        let more = keys.len() > self.limit;
        keys.truncate(self.limit);
        let cursor = if more {
            keys.last().map(|k| encode(self.tag, &k.name))
        } else {
            None
        };
        ListPage::new(keys, cursor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_forgeries() {
        for key in ["a", "é/ü", "\u{0}", "k".repeat(512).as_str()] {
            assert_eq!(decode("t1.", &encode("t1.", key)).unwrap(), key);
        }
        for bad in ["", "t1.", "t1.0", "t1.zz", "t1.ff", "t2.61", "61", "t1.+1"] {
            assert_eq!(
                decode("t1.", bad).unwrap_err().kind(),
                ErrorKind::InvalidCursor,
                "{bad:?}"
            );
        }
    }
}
