//! The edge gateway on axum.
//!
//! Run it with `cargo run -p edge-example-gateway` and open <http://127.0.0.1:8787/>: it starts its own demo
//! origin on a loopback port and serves it through the edge pipeline (`--help` lists the settings).
//!
//! axum's part is small on purpose: it owns the listener, the gateway's own endpoints (`/_edge/health`),
//! WebSocket upgrades into rooms (`/rooms/{name}?user=ana`, see [`edge_do::room`] for the protocol) and
//! graceful shutdown; every other request goes to the shared pipeline
//! ([`edge_example_pipeline::pipeline`]), the same one `examples/hyper-server` serves.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use edge_core::durable::{ObjectNamespace, SocketMessage};
use edge_core::host::SetClientIpLayer;
use edge_do::{Outgoing, Session, SqliteStore};
use edge_example_pipeline::Edge;
use edge_example_pipeline::objects::{RoomObject, Rooms, valid_name};
use http::{Request, StatusCode};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tower::ServiceExt;

/// Largest WebSocket message (and frame) a room accepts, in bytes.
pub const MAX_SOCKET_MESSAGE: usize = 64 * 1024;

/// The axum app: the gateway's own routes and room sockets, then the edge pipeline for everything else.
pub fn app(edge: &Edge) -> Router {
    let service = edge.service();
    let rooms = edge.objects().rooms.clone();
    let pipeline = service.clone();
    Router::new()
        .route("/_edge/health", get(|| async { "ok\n" }))
        .route(
            "/rooms/{name}",
            get(
                move |upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
                      request: Request<axum::body::Body>| {
                    let (rooms, pipeline) = (rooms.clone(), pipeline.clone());
                    async move {
                        match upgrade {
                            Ok(upgrade) => join_room(upgrade, &request, rooms),
                            // Not an upgrade: the pipeline answers (the room's status).
                            Err(_) => {
                                let response: Result<_, Infallible> =
                                    pipeline.oneshot(request).await;
                                match response {
                                    Ok(response) => response.map(axum::body::Body::new),
                                    Err(never) => match never {},
                                }
                            }
                        }
                    }
                },
            ),
        )
        .fallback_service(service)
        // The connection's address (axum's `ConnectInfo`), for per-client rate limits.
        .layer(SetClientIpLayer::new())
}

/// Upgrades into the room named by the path, as the user named by `?user=` (a guest without one).
fn join_room(
    upgrade: WebSocketUpgrade,
    request: &Request<axum::body::Body>,
    rooms: Rooms,
) -> Response {
    let name = request
        .uri()
        .path()
        .trim_start_matches("/rooms/")
        .to_owned();
    if !valid_name(&name) {
        return (
            StatusCode::BAD_REQUEST,
            "room names are 1 to 64 of A-Z a-z 0-9 - _ .\n",
        )
            .into_response();
    }
    // axum checks the version and the upgrade headers, not the key itself.
    let key = request.headers().get("sec-websocket-key");
    if !key.is_some_and(|key| valid_websocket_key(key.as_bytes())) {
        return (
            StatusCode::BAD_REQUEST,
            "Sec-WebSocket-Key must be 16 bytes in base64 (RFC 6455 §4.1)\n",
        )
            .into_response();
    }
    let user = request
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .find_map(|pair| pair.strip_prefix("user="))
        .filter(|user| valid_name(user))
        .unwrap_or("guest")
        .to_owned();
    upgrade
        .max_message_size(MAX_SOCKET_MESSAGE)
        .max_frame_size(MAX_SOCKET_MESSAGE)
        .on_upgrade(move |socket| async move {
            let id = rooms.id_from_name(&name);
            match rooms.connect(&id, Bytes::from(user)).await {
                Ok(session) => pump(socket, session).await,
                Err(_) => close(socket, 1011, "the room is unavailable").await,
            }
        })
}

/// RFC 6455 §4.1: the key is a nonce of 16 bytes, base64-encoded: 22 characters of the alphabet (the last
/// carrying no stray bits) and `==`.
fn valid_websocket_key(key: &[u8]) -> bool {
    let base64 = |b: &u8| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/';
    match key {
        [nonce @ .., b'=', b'='] if nonce.len() == 22 && nonce.iter().all(base64) => {
            // 16 bytes leave the last character's low four bits unused: AQgw are the only ones allowed.
            nonce.last().is_some_and(|last| b"AQgw".contains(last))
        }
        _ => false,
    }
}

async fn close(mut socket: WebSocket, code: u16, reason: &'static str) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = socket.send(Message::Close(Some(frame))).await;
}

/// Carries frames between the client and the room until either side ends, then closes the session
/// (which announces the leave). A malformed frame or a dropped connection ends it with 1006; the
/// room's other connections carry on.
async fn pump(mut socket: WebSocket, mut session: Session<RoomObject, SqliteStore>) {
    let code = loop {
        tokio::select! {
            outgoing = session.next_outgoing() => {
                let message = match outgoing {
                    Some(Outgoing::Message(SocketMessage::Text(text))) => Message::Text(text.into()),
                    Some(Outgoing::Message(SocketMessage::Binary(bytes))) => Message::Binary(bytes),
                    Some(Outgoing::Close(code)) => {
                        close(socket, code, "").await;
                        break code;
                    }
                    Some(_) => continue,
                    // The room dropped this connection: it could not keep up.
                    None => {
                        close(socket, 1008, "too slow").await;
                        break 1006;
                    }
                };
                if socket.send(message).await.is_err() {
                    break 1006;
                }
            }
            incoming = socket.recv() => {
                let message = match incoming {
                    Some(Ok(Message::Text(text))) => SocketMessage::Text(text.to_string()),
                    Some(Ok(Message::Binary(bytes))) => SocketMessage::Binary(bytes),
                    Some(Ok(Message::Close(frame))) => break frame.map_or(1005, |f| f.code),
                    // Pings are answered by the WebSocket layer itself.
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Err(_)) | None => break 1006,
                };
                if session.deliver(message).await.is_err() {
                    close(socket, 1011, "the room failed").await;
                    break 1011;
                }
            }
        }
    };
    let _ = session.close(code).await;
}

/// Serves `edge` on `listener` until `shutdown` resolves, then finishes the requests in flight. The app
/// is built at once; the returned future owns everything it needs (so it can be spawned).
///
/// The connections are served by [`edge_core::host::tokio::serve`] rather than `axum::serve`, which has no
/// header-read timeout, request timeout or connection cap: the edge's
/// [`server_limits`](Edge::server_limits) hold against slow and broken clients. Each request carries
/// its peer's address as axum's [`ConnectInfo`], as `into_make_service_with_connect_info` would give.
///
/// # Errors
///
/// The listener failed.
pub fn serve(
    listener: TcpListener,
    edge: &Edge,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> impl Future<Output = io::Result<()>> + Send + 'static {
    let app = app(edge);
    let limits = edge.server_limits();
    async move {
        edge_core::host::tokio::serve(
            listener,
            limits,
            move |peer: SocketAddr| {
                app.clone()
                    .map_request(move |mut request: Request<Incoming>| {
                        request.extensions_mut().insert(ConnectInfo(peer));
                        request
                    })
            },
            shutdown,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::valid_websocket_key;

    #[test]
    fn websocket_keys_are_sixteen_bytes_of_base64() {
        assert!(valid_websocket_key(b"dGhlIHNhbXBsZSBub25jZQ==")); // RFC 6455's example
        for bad in [
            &b""[..],
            b"hello",
            b"dGhlIHNhbXBsZSBub25jZQ",
            b"dGhlIHNhbXBsZSBub25jZR==",
            b"dGhlIHNhbXBsZSBub25j*Q==",
            b"dGhlIHNhbXBsZSBub25jZQ==x",
            b"dGhlIHNhbXBsZSBub25jZXM=",
        ] {
            assert!(
                !valid_websocket_key(bad),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
