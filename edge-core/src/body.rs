//! The body type every crate shares: buffered [`Bytes`] or a stream of chunks.
//!
//! Buffered bodies are the common case at the edge (cached responses, KV values, JSON), so they cost no
//! allocation beyond the `Bytes` itself. Streamed bodies (a rendered page whose sections arrive over time, an
//! origin response passed through) are a [`BoxStream`] of `Result<Bytes, Error>`. [`Body`] implements
//! [`http_body::Body`], so axum and hyper take it directly, and [`futures_core::Stream`], which is what the
//! Workers adapter turns into a `ReadableStream`.
//!
//! ```
//! use bytes::Bytes;
//! use edge_core::Body;
//!
//! # futures_util::FutureExt::now_or_never(async {
//! let chunks = futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from("<html>")), Ok(Bytes::from("</html>"))]);
//! let body = Body::from_stream(chunks);
//! assert_eq!(body.collect(1024).await.unwrap(), "<html></html>");
//! # }).unwrap();
//! ```

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_core::Stream;
use futures_util::StreamExt;
use http_body::{Frame, SizeHint};

use crate::error::{BoxError, Error, ErrorKind};
use crate::sync::{BoxStream, MaybeSend};

/// An HTTP body: empty, one buffer, or a stream of chunks.
pub struct Body {
    kind: Kind,
}

enum Kind {
    /// `None` once the single chunk has been yielded.
    Full(Option<Bytes>),
    Stream(BoxStream<'static, Result<Bytes, Error>>),
    /// Another `http_body::Body`, kept as one so that its size hint (and so `Content-Length`) survives.
    Http(Pin<Box<dyn HttpBody>>),
}

/// An `http_body::Body` with our error type that is also a stream of its data frames.
#[cfg(not(target_arch = "wasm32"))]
trait HttpBody:
    http_body::Body<Data = Bytes, Error = Error> + Stream<Item = Result<Bytes, Error>> + Send
{
}
#[cfg(not(target_arch = "wasm32"))]
impl<T> HttpBody for T where
    T: http_body::Body<Data = Bytes, Error = Error> + Stream<Item = Result<Bytes, Error>> + Send
{
}
/// An `http_body::Body` with our error type that is also a stream of its data frames.
#[cfg(target_arch = "wasm32")]
trait HttpBody:
    http_body::Body<Data = Bytes, Error = Error> + Stream<Item = Result<Bytes, Error>>
{
}
#[cfg(target_arch = "wasm32")]
impl<T> HttpBody for T where
    T: http_body::Body<Data = Bytes, Error = Error> + Stream<Item = Result<Bytes, Error>>
{
}

impl Body {
    /// An empty body.
    #[must_use]
    pub const fn empty() -> Self {
        Self {
            kind: Kind::Full(None),
        }
    }

    /// A body of one buffer.
    #[must_use]
    pub fn from_bytes(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        if bytes.is_empty() {
            Self::empty()
        } else {
            Self {
                kind: Kind::Full(Some(bytes)),
            }
        }
    }

    /// A body that yields the chunks of `stream`. Stream errors become [`ErrorKind::Backend`] errors with the
    /// original as source.
    pub fn from_stream<S, E>(stream: S) -> Self
    where
        S: Stream<Item = Result<Bytes, E>> + MaybeSend + 'static,
        E: Into<BoxError> + 'static,
    {
        let stream = stream.map(|chunk| chunk.map_err(|e| stream_error(e.into())));
        Self {
            kind: Kind::Stream(Box::pin(stream)),
        }
    }

    /// Wraps any [`http_body::Body`] (hyper's `Incoming`, axum's `Body`, …), keeping its size hint so that
    /// a known length still becomes `Content-Length`. A [`Body`] comes back as it is, not wrapped twice.
    /// Trailers pass through `http_body::Body`; the [`Stream`] of data leaves them out.
    pub fn from_http_body<B>(body: B) -> Self
    where
        B: http_body::Body<Data = Bytes> + MaybeSend + 'static,
        B::Error: Into<BoxError>,
    {
        let mut slot = Some(body);
        if let Some(ours) = (&mut slot as &mut dyn std::any::Any).downcast_mut::<Option<Self>>() {
            return ours.take().unwrap_or_default();
        }
        match slot {
            Some(body) if !body.is_end_stream() => Self {
                kind: Kind::Http(Box::pin(Frames { body })),
            },
            _ => Self::empty(),
        }
    }

    /// The whole body if it is buffered, without consuming it.
    #[must_use]
    pub fn as_bytes(&self) -> Option<&Bytes> {
        match &self.kind {
            Kind::Full(bytes) => Some(bytes.as_ref().unwrap_or(&EMPTY)),
            Kind::Stream(_) | Kind::Http(_) => None,
        }
    }

    /// `true` if the body is a stream (not one buffer in memory; its length may still be known).
    #[must_use]
    pub fn is_stream(&self) -> bool {
        !matches!(self.kind, Kind::Full(_))
    }

    /// Reads the whole body into one buffer, refusing to hold more than `limit` bytes.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::TooLarge`] as soon as more than `limit` bytes arrive (the rest is not read), or the
    /// stream's own error.
    ///
    /// # Cancel safety
    ///
    /// Not cancel-safe: dropping the future loses the chunks read so far.
    pub async fn collect(self, limit: usize) -> Result<Bytes, Error> {
        let mut stream = match self.kind {
            Kind::Full(bytes) => {
                let bytes = bytes.unwrap_or_default();
                return if bytes.len() > limit {
                    Err(Error::too_large("body", bytes.len(), limit))
                } else {
                    Ok(bytes)
                };
            }
            Kind::Stream(stream) => stream,
            Kind::Http(body) => body,
        };
        let mut first: Option<Bytes> = None;
        let mut rest = BytesMut::new();
        let mut size = 0usize;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            size = size.saturating_add(chunk.len());
            if size > limit {
                return Err(Error::new(
                    ErrorKind::TooLarge,
                    format!("body exceeds the limit of {limit} bytes"),
                ));
            }
            // Keep a lone chunk as is; copy only when there is more than one.
            match first.take() {
                None if rest.is_empty() => first = Some(chunk),
                None => rest.extend_from_slice(&chunk),
                Some(f) => {
                    rest.reserve(f.len() + chunk.len());
                    rest.extend_from_slice(&f);
                    rest.extend_from_slice(&chunk);
                }
            }
        }
        Ok(first.unwrap_or_else(|| rest.freeze()))
    }
}

impl Body {
    /// Once a stream has ended, the body is the empty body: polling again answers `None` at once (many
    /// streams panic when polled after their end, and readers such as compressors do poll again), and
    /// `is_end_stream` says so.
    fn fuse_if_ended<T>(&mut self, polled: &Poll<Option<T>>) {
        if matches!(polled, Poll::Ready(None)) {
            self.kind = Kind::Full(None);
        }
    }
}

static EMPTY: Bytes = Bytes::new();

fn stream_error(source: BoxError) -> Error {
    match source.downcast::<Error>() {
        Ok(err) => *err,
        Err(source) => Error::with_source(ErrorKind::Backend, "body stream failed", source),
    }
}

impl Default for Body {
    fn default() -> Self {
        Self::empty()
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Full(bytes) => f
                .debug_tuple("Body::Full")
                .field(&bytes.as_ref().map_or(0, Bytes::len))
                .finish(),
            Kind::Stream(_) | Kind::Http(_) => f.write_str("Body::Stream"),
        }
    }
}

impl From<Bytes> for Body {
    fn from(bytes: Bytes) -> Self {
        Self::from_bytes(bytes)
    }
}

impl From<Vec<u8>> for Body {
    fn from(bytes: Vec<u8>) -> Self {
        Self::from_bytes(bytes)
    }
}

impl From<String> for Body {
    fn from(s: String) -> Self {
        Self::from_bytes(s)
    }
}

impl From<&'static str> for Body {
    fn from(s: &'static str) -> Self {
        Self::from_bytes(s)
    }
}

impl From<&'static [u8]> for Body {
    fn from(s: &'static [u8]) -> Self {
        Self::from_bytes(s)
    }
}

impl Stream for Body {
    type Item = Result<Bytes, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let chunk = match &mut this.kind {
            Kind::Full(bytes) => return Poll::Ready(bytes.take().map(Ok)),
            Kind::Stream(stream) => stream.as_mut().poll_next(cx),
            Kind::Http(body) => body.as_mut().poll_next(cx),
        };
        this.fuse_if_ended(&chunk);
        chunk
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match &self.kind {
            Kind::Full(bytes) => {
                let n = usize::from(bytes.is_some());
                (n, Some(n))
            }
            Kind::Stream(stream) => stream.size_hint(),
            Kind::Http(_) => (0, None),
        }
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = self.get_mut();
        let frame = match &mut this.kind {
            Kind::Http(body) => body.as_mut().poll_frame(cx),
            Kind::Full(bytes) => return Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Stream(stream) => stream
                .as_mut()
                .poll_next(cx)
                .map(|chunk| chunk.map(|chunk| chunk.map(Frame::data))),
        };
        this.fuse_if_ended(&frame);
        frame
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Stream(_) => false,
            Kind::Http(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Stream(_) => SizeHint::default(),
            Kind::Http(body) => http_body::Body::size_hint(body.as_ref().get_ref()),
        }
    }
}

pin_project_lite::pin_project! {
    /// Another `http_body::Body` with its errors made ours; as a [`Stream`], its non-empty data frames.
    struct Frames<B> {
        #[pin]
        body: B,
    }
}

impl<B> http_body::Body for Frames<B>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        self.project()
            .body
            .poll_frame(cx)
            .map_err(|e| stream_error(e.into()))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl<B> Stream for Frames<B>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Item = Result<Bytes, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            return match self.as_mut().project().body.poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) if data.is_empty() => continue,
                    Ok(data) => Poll::Ready(Some(Ok(data))),
                    Err(_trailers) => continue,
                },
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(stream_error(e.into())))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    fn collect(body: Body, limit: usize) -> Result<Bytes, Error> {
        body.collect(limit).now_or_never().expect("ready")
    }

    #[test]
    fn full_body_round_trips_and_reports_its_size() {
        let body = Body::from("hello");
        assert_eq!(http_body::Body::size_hint(&body).exact(), Some(5));
        assert_eq!(body.as_bytes().map(Bytes::as_ref), Some(&b"hello"[..]));
        assert_eq!(collect(body, 5).unwrap(), "hello");
        assert!(http_body::Body::is_end_stream(&Body::empty()));
    }

    #[test]
    fn oversized_bodies_are_refused() {
        assert!(collect(Body::from("hello"), 4).unwrap_err().is_too_large());
        let chunks = futures_util::stream::iter(
            (0..10).map(|_| Ok::<_, Error>(Bytes::from_static(b"0123456789"))),
        );
        let err = collect(Body::from_stream(chunks), 95).unwrap_err();
        assert!(err.is_too_large(), "{err}");
    }

    #[test]
    fn stream_errors_keep_their_source() {
        let chunks = futures_util::stream::iter([
            Ok(Bytes::from_static(b"a")),
            Err(std::io::Error::other("reset")),
        ]);
        let err = collect(Body::from_stream(chunks), 100).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Backend);
        assert_eq!(
            std::error::Error::source(&err)
                .map(ToString::to_string)
                .as_deref(),
            Some("reset")
        );
    }

    #[test]
    fn edge_errors_pass_through_streams_unchanged() {
        let chunks =
            futures_util::stream::iter([Err::<Bytes, _>(Error::new(ErrorKind::Timeout, "origin"))]);
        assert!(
            collect(Body::from_stream(chunks), 100)
                .unwrap_err()
                .is_timeout()
        );
    }

    #[test]
    fn wraps_other_http_bodies_keeping_their_length() {
        let inner = http_body_util::Full::new(Bytes::from_static(b"wrapped"));
        let body = Body::from_http_body(inner);
        assert!(body.is_stream());
        assert_eq!(http_body::Body::size_hint(&body).exact(), Some(7));
        assert_eq!(collect(body, 100).unwrap(), "wrapped");
        let empty = Body::from_http_body(http_body_util::Empty::<Bytes>::new());
        assert_eq!(collect(empty, 0).unwrap(), "");
    }

    #[test]
    fn an_ended_stream_stays_ended() {
        use http_body::Body as _;
        let unfold = futures_util::stream::unfold(0, |n| async move {
            (n < 1).then(|| (Ok::<_, Error>(Bytes::from_static(b"x")), n + 1))
        });
        let mut body = Body::from_stream(unfold);
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut frames = 0;
        while let Poll::Ready(Some(_)) = Pin::new(&mut body).poll_frame(&mut cx) {
            frames += 1;
        }
        assert_eq!(frames, 1);
        assert!(body.is_end_stream());
        assert!(matches!(
            Pin::new(&mut body).poll_frame(&mut cx),
            Poll::Ready(None)
        ));
    }

    #[test]
    fn our_own_body_is_not_wrapped_again() {
        let body = Body::from_http_body(Body::from("mine"));
        assert!(!body.is_stream(), "{body:?}");
        assert_eq!(body.as_bytes().map(Bytes::as_ref), Some(&b"mine"[..]));
    }

    #[test]
    fn trailers_pass_through_the_http_body_view() {
        use http_body_util::BodyExt;
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
        let inner = http_body_util::StreamBody::new(futures_util::stream::iter([
            Ok::<_, Error>(Frame::data(Bytes::from_static(b"x"))),
            Ok(Frame::trailers(trailers)),
        ]));
        let collected = BodyExt::collect(Body::from_http_body(inner))
            .now_or_never()
            .expect("ready")
            .unwrap();
        assert_eq!(
            collected.trailers().map(|t| &t["grpc-status"]),
            Some(&http::HeaderValue::from_static("0"))
        );
        assert_eq!(collected.to_bytes(), "x");
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use futures_util::FutureExt;
    use proptest::prelude::*;

    proptest! {
        /// However a body is split into chunks, `collect` returns exactly its bytes if they fit the limit and
        /// a `TooLarge` error otherwise.
        #[test]
        fn collect_is_exact_or_too_large(chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..12), limit in 0usize..512) {
            let expected: Vec<u8> = chunks.concat();
            let stream = futures_util::stream::iter(chunks.into_iter().map(|c| Ok::<_, Error>(Bytes::from(c))));
            let result = Body::from_stream(stream).collect(limit).now_or_never().expect("ready");
            if expected.len() <= limit {
                prop_assert_eq!(result.unwrap(), Bytes::from(expected));
            } else {
                prop_assert!(result.unwrap_err().is_too_large());
            }
        }
    }
}
