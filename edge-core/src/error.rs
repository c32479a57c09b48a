//! The one error type of `edge-core`'s contracts.
//!
//! Every contract (`KvStore`, `CacheStore`, `Fetcher`, the body) fails with [`Error`]. It is opaque in the
//! manner of `hyper::Error`: callers branch on [`Error::kind`] (or the `is_*` shortcuts), read a human
//! description through `Display`, and reach the underlying cause through [`std::error::Error::source`].
//! Implementations in other crates build it with the constructors below, so a Redis timeout and a Workers KV
//! timeout look the same to the code above them.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

/// A boxed error that can cross threads on native hosts and await points everywhere.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong, coarse enough to decide what to do next.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// A key was empty, too long or otherwise not acceptable to the store.
    InvalidKey,
    /// A value, metadata blob or body was larger than the configured limit.
    TooLarge,
    /// The thing asked for does not exist (a missing document, an unknown binding).
    NotFound,
    /// An option or argument was malformed (a TTL below the minimum, a limit of zero, a bad URI, …).
    InvalidInput,
    /// A list cursor was not one the store handed out.
    InvalidCursor,
    /// The store is full and could not make room without breaking its guarantees.
    CapacityExceeded,
    /// The backend could not be reached or refused the call; retrying later may succeed.
    Unavailable,
    /// The operation did not finish within its deadline.
    Timeout,
    /// The peer answered with something that does not follow its protocol.
    Protocol,
    /// The stored data could not be decoded (corrupt or written by an incompatible version).
    Corrupt,
    /// The operation was abandoned because the work it depended on was cancelled.
    Canceled,
    /// Any other backend failure; see the source.
    Backend,
}

impl ErrorKind {
    /// The kind's name, as its `Display` writes it (for span attributes and metric labels).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InvalidKey => "invalid key",
            Self::TooLarge => "too large",
            Self::NotFound => "not found",
            Self::InvalidInput => "invalid input",
            Self::InvalidCursor => "invalid cursor",
            Self::CapacityExceeded => "capacity exceeded",
            Self::Unavailable => "backend unavailable",
            Self::Timeout => "timed out",
            Self::Protocol => "protocol error",
            Self::Corrupt => "corrupt data",
            Self::Canceled => "canceled",
            Self::Backend => "backend error",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of every `edge-core` contract.
///
/// Small (one pointer) so that `Result<Bytes, Error>` stays cheap on the success path, and cheap to clone
/// (a reference count), so one failed load can be handed to every coalesced waiter.
///
/// ```
/// use edge_core::{Error, ErrorKind};
///
/// let err = Error::new(ErrorKind::InvalidKey, "key must not be empty");
/// assert!(err.is_invalid_key());
/// assert_eq!(err.to_string(), "invalid key: key must not be empty");
/// ```
#[derive(Clone)]
pub struct Error {
    inner: Arc<Inner>,
}

struct Inner {
    kind: ErrorKind,
    detail: Cow<'static, str>,
    source: Option<BoxError>,
}

impl Error {
    /// An error of `kind` with a lowercase description of what happened.
    pub fn new(kind: ErrorKind, detail: impl Into<Cow<'static, str>>) -> Self {
        Self {
            inner: Arc::new(Inner {
                kind,
                detail: detail.into(),
                source: None,
            }),
        }
    }

    /// An error of `kind` caused by `source`.
    pub fn with_source(
        kind: ErrorKind,
        detail: impl Into<Cow<'static, str>>,
        source: impl Into<BoxError>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                kind,
                detail: detail.into(),
                source: Some(source.into()),
            }),
        }
    }

    /// What went wrong.
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// The description given when the error was made.
    #[must_use]
    pub fn detail(&self) -> &str {
        &self.inner.detail
    }

    /// `true` if the key was rejected.
    #[must_use]
    pub fn is_invalid_key(&self) -> bool {
        self.kind() == ErrorKind::InvalidKey
    }

    /// `true` if a value, metadata or body exceeded its limit.
    #[must_use]
    pub fn is_too_large(&self) -> bool {
        self.kind() == ErrorKind::TooLarge
    }

    /// `true` if the deadline passed.
    #[must_use]
    pub fn is_timeout(&self) -> bool {
        self.kind() == ErrorKind::Timeout
    }

    /// `true` if retrying later may succeed (unavailable backend or timeout).
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(self.kind(), ErrorKind::Unavailable | ErrorKind::Timeout)
    }

    pub(crate) fn invalid_key(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::InvalidKey, detail)
    }

    pub(crate) fn too_large(what: &str, size: usize, limit: usize) -> Self {
        Self::new(
            ErrorKind::TooLarge,
            format!("{what} is {size} bytes, the limit is {limit}"),
        )
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.inner.kind)
            .field("detail", &self.inner.detail);
        if let Some(source) = &self.inner.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.inner.detail.is_empty() {
            write!(f, "{}", self.inner.kind)
        } else {
            write!(f, "{}: {}", self.inner.kind, self.inner.detail)
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner
            .source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_is_one_pointer_and_thread_safe() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<Error>();
        assert_eq!(std::mem::size_of::<Error>(), std::mem::size_of::<usize>());
    }

    #[test]
    fn source_is_kept() {
        let io = std::io::Error::other("connection reset");
        let err = Error::with_source(ErrorKind::Unavailable, "redis get", io);
        assert!(err.is_transient());
        assert_eq!(err.to_string(), "backend unavailable: redis get");
        let source = std::error::Error::source(&err).map(ToString::to_string);
        assert_eq!(source.as_deref(), Some("connection reset"));
    }
}
