//! Requests, responses and bodies between `http` types over [`Body`] and the runtime's JS objects,
//! streaming both ways: a streamed body becomes a `ReadableStream` chunk by chunk (and back), so the render
//! crate's shell-first HTML and ESI output leave a Worker as they are produced.

use bytes::Bytes;
use futures_util::StreamExt;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use js_sys::{Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};

use crate::body::Body;
use crate::error::{Error, ErrorKind};
use crate::geo::{ClientIp, RequestGeo};

use super::js_error;

/// A workers-rs request as an `http` request. The body streams; the request's `cf` object becomes a
/// [`RequestGeo`] in the extensions, and `CF-Connecting-IP` a [`ClientIp`] (Cloudflare's edge sets that
/// header itself, replacing a client's own, so it is the address per-client limits key on, as a native
/// host keys on the peer's).
///
/// # Errors
///
/// [`ErrorKind::Protocol`] for a method, URL or header the `http` crate refuses (the runtime has already
/// checked them, so this is defence, not a path a client can take).
pub fn request_from_worker(request: worker::Request) -> Result<Request<Body>, Error> {
    // `Clone::clone` copies the JS handle; `Request.clone()` (the method) would tee the body.
    request_from_web_sys(Clone::clone(request.inner()))
}

/// A JS `Request` as an `http` request. See [`request_from_worker`].
///
/// # Errors
///
/// As [`request_from_worker`].
pub fn request_from_web_sys(request: web_sys::Request) -> Result<Request<Body>, Error> {
    let method = Method::from_bytes(request.method().as_bytes())
        .map_err(|_| Error::new(ErrorKind::Protocol, "request method"))?;
    let uri: Uri = request
        .url()
        .parse()
        .map_err(|_| Error::new(ErrorKind::Protocol, "request URL"))?;
    let headers = headers_from_js(&request.headers())?;
    let geo = geo_from_request(&request);
    let body = match request.body() {
        Some(stream) => body_from_stream(stream)?,
        None => Body::empty(),
    };
    let mut out = Request::new(body);
    *out.method_mut() = method;
    *out.uri_mut() = uri;
    *out.headers_mut() = headers;
    out.extensions_mut().insert(geo);
    if let Some(ip) = out
        .headers()
        .get("cf-connecting-ip")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
    {
        out.extensions_mut().insert(ClientIp(ip));
    }
    Ok(out)
}

/// An `http` request as a JS `Request`, for `fetch()` and Durable Object stubs. Redirects are not followed.
///
/// # Errors
///
/// [`ErrorKind::InvalidInput`] when the runtime refuses the request (a relative URL, a header it forbids).
pub fn request_to_web_sys(request: Request<Body>) -> Result<web_sys::Request, Error> {
    let (parts, body) = request.into_parts();
    let init = web_sys::RequestInit::new();
    init.set_method(parts.method.as_str());
    init.set_headers(&headers_to_js(&parts.headers)?.into());
    init.set_redirect(web_sys::RequestRedirect::Manual);
    if parts.method != Method::GET && parts.method != Method::HEAD {
        match body.as_bytes() {
            Some(bytes) if bytes.is_empty() => {}
            Some(bytes) => init.set_body(&Uint8Array::from(&bytes[..])),
            None => {
                let stream = with_declared_length(body_to_stream(body), &parts.headers)?;
                init.set_body(&stream);
                // Streamed request bodies must say so (the Fetch standard's half-duplex rule).
                let _ = Reflect::set(&init, &"duplex".into(), &"half".into());
            }
        }
    }
    web_sys::Request::new_with_str_and_init(&parts.uri.to_string(), &init)
        .map_err(|e| js_error(ErrorKind::InvalidInput, "building a Request", &e))
}

/// A JS `Response` as an `http` response; the body streams.
///
/// # Errors
///
/// [`ErrorKind::Protocol`] for a status or header the `http` crate refuses.
pub fn response_from_web_sys(response: web_sys::Response) -> Result<Response<Body>, Error> {
    let status = StatusCode::from_u16(response.status())
        .map_err(|_| Error::new(ErrorKind::Protocol, "response status"))?;
    let headers = headers_from_js(&response.headers())?;
    let body = match response.body() {
        Some(stream) => body_from_stream(stream)?,
        None => Body::empty(),
    };
    let mut out = Response::new(body);
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    Ok(out)
}

/// An `http` response as a JS `Response`. A buffered body is copied once; a streamed one becomes a
/// `ReadableStream` that pulls from it as the runtime sends.
///
/// # Errors
///
/// [`ErrorKind::InvalidInput`] when the runtime refuses the response (a status outside 200–599).
pub fn response_to_web_sys(response: Response<Body>) -> Result<web_sys::Response, Error> {
    let (parts, body) = response.into_parts();
    let init = web_sys::ResponseInit::new();
    init.set_status(parts.status.as_u16());
    init.set_headers(&headers_to_js(&parts.headers)?.into());
    let null_body = matches!(parts.status.as_u16(), 101 | 204 | 205 | 304);
    let built = match body.as_bytes() {
        _ if null_body => web_sys::Response::new_with_opt_readable_stream_and_init(None, &init),
        Some(bytes) => web_sys::Response::new_with_opt_buffer_source_and_init(
            Some(&Uint8Array::from(&bytes[..])),
            &init,
        ),
        None => web_sys::Response::new_with_opt_readable_stream_and_init(
            Some(&with_declared_length(body_to_stream(body), &parts.headers)?),
            &init,
        ),
    };
    built.map_err(|e| js_error(ErrorKind::InvalidInput, "building a Response", &e))
}

/// An `http` response as a workers-rs response, for returning from `#[event(fetch)]`.
///
/// # Errors
///
/// As [`response_to_web_sys`].
pub fn response_to_worker(response: Response<Body>) -> Result<worker::Response, Error> {
    response_to_web_sys(response).map(worker::Response::from)
}

/// A JS `ReadableStream` of bytes as a [`Body`] that streams. A chunk that is not bytes, or a stream error,
/// ends the body with an error.
///
/// # Errors
///
/// [`ErrorKind::InvalidInput`] when the stream is already locked to another reader.
pub fn body_from_stream(stream: web_sys::ReadableStream) -> Result<Body, Error> {
    let stream = wasm_streams::ReadableStream::from_raw(stream)
        .try_into_stream()
        .map_err(|(e, _)| js_error(ErrorKind::InvalidInput, "reading a body", &e))?;
    Ok(Body::from_stream(stream.map(|chunk| {
        let chunk = chunk.map_err(|e| js_error(ErrorKind::Backend, "reading a body", &e))?;
        let bytes = chunk
            .dyn_into::<Uint8Array>()
            .map_err(|_| Error::new(ErrorKind::Protocol, "a body chunk that is not bytes"))?;
        Ok::<_, Error>(Bytes::from(bytes.to_vec()))
    })))
}

/// A [`Body`] as a JS `ReadableStream`, pulled chunk by chunk. A body error errors the stream.
#[must_use]
pub fn body_to_stream(body: Body) -> web_sys::ReadableStream {
    let chunks = body.map(|chunk| match chunk {
        Ok(bytes) => Ok(JsValue::from(Uint8Array::from(&bytes[..]))),
        Err(e) => Err(JsValue::from(js_sys::Error::new(&e.to_string()))),
    });
    wasm_streams::ReadableStream::from_stream(chunks).into_raw()
}

/// A stream that keeps the `Content-Length` its headers declare. The runtime sends a `ReadableStream` of
/// unknown length chunked and drops the header; piped through Workers' `FixedLengthStream` it keeps the
/// length (and a body that turns out longer or shorter errors instead of lying about its size).
fn with_declared_length(
    stream: web_sys::ReadableStream,
    headers: &HeaderMap,
) -> Result<web_sys::ReadableStream, Error> {
    let Some(length) = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
    else {
        return Ok(stream);
    };
    let fixed = match u32::try_from(length) {
        Ok(length) => worker::worker_sys::FixedLengthStream::new(length),
        Err(_) => worker::worker_sys::FixedLengthStream::new_big_int(js_sys::BigInt::from(length)),
    }
    .map_err(|e| js_error(ErrorKind::Backend, "creating a FixedLengthStream", &e))?;
    let transform: &web_sys::TransformStream = fixed.as_ref();
    let piping = stream.pipe_to(&transform.writable());
    // A body error aborts the pipe, which errors the readable side: the client sees the response cut short.
    wasm_bindgen_futures::spawn_local(async move {
        let _ = wasm_bindgen_futures::JsFuture::from(piping).await;
    });
    Ok(transform.readable())
}

/// Where a request comes from, from its `cf` object: country, region, city and colo, each validated as
/// [`RequestGeo`] validates header values (a missing or malformed field is `None`). A request without a
/// `cf` object (tests, `cf: false` in Miniflare, a request a Worker built itself) has an empty geo.
#[must_use]
pub fn geo_from_request(request: &web_sys::Request) -> RequestGeo {
    let Ok(cf) = Reflect::get(request, &"cf".into()) else {
        return RequestGeo::new();
    };
    if !cf.is_object() {
        return RequestGeo::new();
    }
    let field = |name: &str| {
        Reflect::get(&cf, &name.into())
            .ok()
            .and_then(|v| v.as_string())
    };
    RequestGeo::from_parts(
        field("country").as_deref(),
        field("region").as_deref(),
        field("city").as_deref(),
        field("colo").as_deref(),
    )
}

fn headers_from_js(headers: &web_sys::Headers) -> Result<HeaderMap, Error> {
    let mut map = HeaderMap::new();
    let entries = js_sys::try_iter(headers)
        .map_err(|e| js_error(ErrorKind::Protocol, "reading headers", &e))?
        .ok_or_else(|| Error::new(ErrorKind::Protocol, "headers are not iterable"))?;
    for entry in entries {
        let entry = entry.map_err(|e| js_error(ErrorKind::Protocol, "reading headers", &e))?;
        let pair: js_sys::Array = entry
            .dyn_into()
            .map_err(|_| Error::new(ErrorKind::Protocol, "a header entry that is not a pair"))?;
        let (Some(name), Some(value)) = (pair.get(0).as_string(), pair.get(1).as_string()) else {
            return Err(Error::new(ErrorKind::Protocol, "a header that is not text"));
        };
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| Error::new(ErrorKind::Protocol, "a header name"))?;
        let value = HeaderValue::from_bytes(&byte_string(&value))
            .map_err(|_| Error::new(ErrorKind::Protocol, "a header value"))?;
        map.append(name, value);
    }
    Ok(map)
}

fn headers_to_js(headers: &HeaderMap) -> Result<web_sys::Headers, Error> {
    let out = web_sys::Headers::new()
        .map_err(|e| js_error(ErrorKind::Backend, "creating Headers", &e))?;
    for (name, value) in headers {
        // A JS header value is a ByteString: each byte is one UTF-16 unit, as `fetch` reads them.
        let value: String = value.as_bytes().iter().map(|&b| char::from(b)).collect();
        out.append(name.as_str(), &value)
            .map_err(|e| js_error(ErrorKind::InvalidInput, "setting a header", &e))?;
    }
    Ok(out)
}

/// The bytes of a JS ByteString (every unit below 256); a unit above 255 cannot be a header byte, so it
/// becomes a byte `HeaderValue` refuses.
fn byte_string(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| u8::try_from(u32::from(c)).unwrap_or(0))
        .collect()
}
