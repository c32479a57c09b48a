//! What the host examples' tests share: a loopback HTTP client and the standard conversation every host must
//! hold with the same answers.

use bytes::Bytes;
use edge_core::host::tokio::HyperFetcher;
use edge_core::{Body, Fetcher};
use http::{HeaderMap, Method, Request, StatusCode};

/// One exchange as seen by a client.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Exchange {
    /// `METHOD path`.
    pub request: String,
    /// The status.
    pub status: StatusCode,
    /// The response headers, minus `date` (which differs from run to run), with `RateLimit`'s numbers
    /// replaced by `_` (they depend on the client's history and timing).
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl Exchange {
    /// This exchange with what depends on earlier traffic through a shared cache masked: whether the
    /// cache already held the response (`cache-status`, `x-cache-status`, `x-cache-tier`), for how long
    /// (`age`, removed: a fresh answer may have none), and how long this request took (`server-timing`).
    /// Two hosts in front of one pipeline must agree on everything else.
    #[must_use]
    pub fn without_cache_state(&self) -> Self {
        let mut masked = self.clone();
        // A fresh answer passes on with the Age it came with (often none); a stored one gets its own:
        // whether there is one at all depends on the cache too.
        masked.headers.remove("age");
        for name in [
            "cache-status",
            "x-cache-status",
            "x-cache-tier",
            "server-timing",
        ] {
            if masked.headers.contains_key(name) {
                masked
                    .headers
                    .insert(name, http::HeaderValue::from_static("_"));
            }
        }
        masked
    }

    /// The body parsed as JSON (`Null` if it is not JSON).
    #[must_use]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }

    /// A header as text, or `""`.
    #[must_use]
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// Sends one request to `base` (like `http://127.0.0.1:8787`) over real loopback HTTP.
///
/// # Errors
///
/// No response was received.
pub async fn exchange(
    base: &str,
    method: Method,
    path: &str,
    body: Bytes,
) -> Result<Exchange, edge_core::Error> {
    exchange_with_headers(base, method, path, &[], body).await
}

/// [`exchange`] with extra request headers.
///
/// # Errors
///
/// No response was received, or a header was malformed.
pub async fn exchange_with_headers(
    base: &str,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Result<Exchange, edge_core::Error> {
    let mut request = Request::builder()
        .method(method.clone())
        .uri(format!("{base}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Body::from(body)).map_err(|e| {
        edge_core::Error::with_source(edge_core::ErrorKind::InvalidInput, "bad test request", e)
    })?;
    let response = HyperFetcher::new().fetch(request).await?;
    let (mut parts, body) = response.into_parts();
    parts.headers.remove(http::header::DATE);
    // `RateLimit`'s numbers depend on what the same client did before and how fast (two hosts sharing a
    // pipeline share its counters); the policy it names must match.
    if let Some(value) = parts.headers.get("ratelimit").and_then(|v| v.to_str().ok()) {
        let normalized = match value.split_once(";r=") {
            Some((policy, _)) => format!("{policy};r=_;t=_"),
            None => value.to_owned(),
        };
        if let Ok(value) = http::HeaderValue::from_str(&normalized) {
            parts.headers.insert("ratelimit", value);
        }
    }
    let body = body.collect(16 * 1024 * 1024).await?;
    Ok(Exchange {
        request: format!("{method} {path}"),
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// The conversation every host must hold identically: pages, JSON, a 404 passed through, a request body
/// streamed to the origin, and the origin's view of the forwarded request. Responses that depend on the
/// listening port are left out so two hosts can be compared byte for byte.
///
/// # Errors
///
/// A request got no response.
pub async fn standard_conversation(base: &str) -> Result<Vec<Exchange>, edge_core::Error> {
    let mut transcript = Vec::new();
    for path in [
        "/",
        "/about",
        "/api/products",
        "/api/products/2",
        "/api/products/99",
        "/missing?x=1",
    ] {
        transcript.push(exchange(base, Method::GET, path, Bytes::new()).await?);
    }
    transcript.push(exchange(base, Method::HEAD, "/", Bytes::new()).await?);
    // The A/B decision: by country, and by visitor id.
    transcript.push(
        exchange_with_headers(
            base,
            Method::GET,
            "/",
            &[("cf-ipcountry", "DE")],
            Bytes::new(),
        )
        .await?,
    );
    transcript.push(
        exchange_with_headers(
            base,
            Method::GET,
            "/",
            &[("cookie", "theme=dark; uid=visitor-1")],
            Bytes::new(),
        )
        .await?,
    );
    let body = Bytes::from(vec![b'x'; 100_000]);
    let host = [("host", "shop.example")];
    transcript.push(exchange_with_headers(base, Method::POST, "/api/echo?q=1", &host, body).await?);
    Ok(transcript)
}

/// A WebSocket client of a room (`/rooms/{name}?user=…`), for the hosts' room tests.
pub type RoomClient =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Joins the room `room` on the host at `base` (`http://…`) as `user`.
///
/// # Errors
///
/// The upgrade was refused or the connection failed.
pub async fn join_room(base: &str, room: &str, user: &str) -> Result<RoomClient, edge_core::Error> {
    let url = format!(
        "{}/rooms/{room}?user={user}",
        base.replace("http://", "ws://")
    );
    tokio_tungstenite::connect_async(url)
        .await
        .map(|(client, _)| client)
        .map_err(|e| {
            edge_core::Error::with_source(edge_core::ErrorKind::Unavailable, "joining the room", e)
        })
}

/// The next text frame from the room, as JSON; `None` if none arrives within 5 s or the socket ends.
pub async fn next_frame(client: &mut RoomClient) -> Option<serde_json::Value> {
    use futures_util::StreamExt;
    loop {
        let message = tokio::time::timeout(std::time::Duration::from_secs(5), client.next())
            .await
            .ok()??
            .ok()?;
        if let tokio_tungstenite::tungstenite::Message::Text(text) = message {
            return serde_json::from_str(&text).ok();
        }
    }
}

/// The opening every host's room test holds in `room` on the host at `base`: ana joins and is welcomed, bo
/// joins and sees her present, ana hears that bo joined, and ana's `hello` is acknowledged to her (seq 1)
/// and reaches bo. Returns both clients, for the test to go on with.
///
/// # Errors
///
/// The first step that went otherwise, with what arrived instead.
pub async fn room_opening(base: &str, room: &str) -> Result<(RoomClient, RoomClient), String> {
    use futures_util::SinkExt;
    let expect = |what: &str,
                  got: Option<serde_json::Value>,
                  want: &dyn Fn(&serde_json::Value) -> bool| match got {
        Some(frame) if want(&frame) => Ok(()),
        other => Err(format!("{what}: got {other:?}")),
    };
    let mut ana = join_room(base, room, "ana")
        .await
        .map_err(|e| e.to_string())?;
    expect("ana's welcome", next_frame(&mut ana).await, &|f| {
        f["type"] == "welcome"
    })?;
    let mut bo = join_room(base, room, "bo")
        .await
        .map_err(|e| e.to_string())?;
    expect("bo sees ana", next_frame(&mut bo).await, &|f| {
        f["present"] == serde_json::json!(["ana"])
    })?;
    expect("ana hears bo join", next_frame(&mut ana).await, &|f| {
        *f == serde_json::json!({"type": "join", "user": "bo"})
    })?;
    ana.send(tokio_tungstenite::tungstenite::Message::Text(
        "hello".into(),
    ))
    .await
    .map_err(|e| e.to_string())?;
    expect("ana's ack", next_frame(&mut ana).await, &|f| {
        *f == serde_json::json!({"type": "ack", "seq": 1})
    })?;
    expect("bo gets the message", next_frame(&mut bo).await, &|f| {
        f["from"] == "ana" && f["text"] == "hello"
    })?;
    Ok((ana, bo))
}
