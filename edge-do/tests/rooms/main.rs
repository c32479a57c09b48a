//! WebSocket rooms on the runtime, driven through `Session`s as a host would: presence, broadcast to all
//! but the sender, history that survives the object, and dead or slow connections dropped without
//! disturbing the others.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use bytes::Bytes;
use edge_core::Body;
use edge_core::durable::{ObjectNamespace, SocketMessage};
use edge_do::{MemoryStorageProvider, Namespace, ObjectState, Outgoing, Room, Session, Sockets};
use serde_json::Value;

type Rooms =
    Namespace<Room<edge_do::ObjectStorage<edge_do::MemoryStorage>, Sockets>, MemoryStorageProvider>;

fn rooms(provider: MemoryStorageProvider, queue: usize) -> Rooms {
    Namespace::new(provider, |state: ObjectState<_>| {
        Room::new(state.storage, state.sockets)
    })
    .with_socket_queue(queue)
}

async fn next_json<O, P: edge_do::StorageProvider>(session: &mut Session<O, P>) -> Value {
    let outgoing = tokio::time::timeout(Duration::from_secs(5), session.next_outgoing())
        .await
        .expect("a message in time")
        .expect("the connection is open");
    match outgoing {
        Outgoing::Message(SocketMessage::Text(text)) => serde_json::from_str(&text).unwrap(),
        other => panic!("expected a text message, got {other:?}"),
    }
}

/// The room's answer to a plain `GET`: presence and message count.
async fn room_status(rooms: &Rooms, id: &edge_core::durable::ObjectId) -> Value {
    let response = rooms
        .fetch(id, http::Request::new(Body::empty()))
        .await
        .unwrap();
    serde_json::from_slice(&response.into_body().collect(4096).await.unwrap()).unwrap()
}

fn text(s: &str) -> SocketMessage {
    SocketMessage::Text(s.to_owned())
}

#[tokio::test]
async fn presence_broadcast_and_history() {
    let provider = MemoryStorageProvider::new();
    let rooms = rooms(provider.clone(), 64);
    let id = rooms.id_from_name("doc-1");

    let mut ana = rooms
        .connect(&id, Bytes::from_static(b"ana"))
        .await
        .unwrap();
    let welcome = next_json(&mut ana).await;
    assert_eq!(welcome["type"], "welcome");
    assert_eq!(welcome["present"], serde_json::json!([]));

    let mut bo = rooms.connect(&id, Bytes::from_static(b"bo")).await.unwrap();
    assert_eq!(
        next_json(&mut bo).await["present"],
        serde_json::json!(["ana"])
    );
    assert_eq!(
        next_json(&mut ana).await,
        serde_json::json!({"type": "join", "user": "bo"})
    );

    ana.deliver(text("hello")).await.unwrap();
    assert_eq!(
        next_json(&mut ana).await,
        serde_json::json!({"type": "ack", "seq": 1})
    );
    let got = next_json(&mut bo).await;
    assert_eq!(
        got,
        serde_json::json!({"type": "message", "seq": 1, "from": "ana", "text": "hello"})
    );

    // Bad frames get an error to the sender only.
    ana.deliver(SocketMessage::Binary(Bytes::from_static(b"\x00\x01")))
        .await
        .unwrap();
    assert_eq!(next_json(&mut ana).await["type"], "error");
    ana.deliver(text(&"x".repeat(edge_do::room::MAX_MESSAGE + 1)))
        .await
        .unwrap();
    assert_eq!(next_json(&mut ana).await["reason"], "message too large");

    let status = room_status(&rooms, &id).await;
    assert_eq!(
        status,
        serde_json::json!({"present": ["ana", "bo"], "messages": 1})
    );

    bo.close(1000).await.unwrap();
    assert_eq!(
        next_json(&mut ana).await,
        serde_json::json!({"type": "leave", "user": "bo"})
    );
    ana.close(1000).await.unwrap();

    // The history outlives the instance.
    rooms.evict(&id).await;
    let mut cy = rooms.connect(&id, Bytes::from_static(b"cy")).await.unwrap();
    let welcome = next_json(&mut cy).await;
    assert_eq!(welcome["history"][0]["text"], "hello");
    cy.close(1000).await.unwrap();
}

#[tokio::test]
async fn a_slow_connection_is_dropped_and_the_others_carry_on() {
    let rooms = rooms(MemoryStorageProvider::new(), 4);
    let id = rooms.id_from_name("busy");
    let mut talker = rooms
        .connect(&id, Bytes::from_static(b"talker"))
        .await
        .unwrap();
    let mut stuck = rooms
        .connect(&id, Bytes::from_static(b"stuck"))
        .await
        .unwrap();
    let mut reader = rooms
        .connect(&id, Bytes::from_static(b"reader"))
        .await
        .unwrap();
    let _ = next_json(&mut talker).await; // welcome
    let _ = next_json(&mut talker).await; // join stuck
    let _ = next_json(&mut talker).await; // join reader
    let _ = next_json(&mut reader).await; // welcome

    // `stuck` never reads: its queue of 4 fills and it is dropped; the others get all 20 messages.
    for i in 0..20 {
        talker.deliver(text(&format!("m{i}"))).await.unwrap();
        assert_eq!(next_json(&mut talker).await["type"], "ack");
        assert_eq!(next_json(&mut reader).await["text"], format!("m{i}"));
    }
    // Its session drains what was queued, then ends; the host closes it with 1006.
    let mut queued = 0;
    while stuck.next_outgoing().await.is_some() {
        queued += 1;
    }
    assert_eq!(queued, 4);
    stuck.close(1006).await.unwrap();
    assert_eq!(
        next_json(&mut reader).await,
        serde_json::json!({"type": "leave", "user": "stuck"})
    );

    let status = room_status(&rooms, &id).await;
    assert_eq!(status["present"], serde_json::json!(["talker", "reader"]));

    // A session dropped without `close` leaves the hub too.
    drop(reader);
    let status = room_status(&rooms, &id).await;
    assert_eq!(status["present"], serde_json::json!(["talker"]));
    talker.close(1000).await.unwrap();
}

#[tokio::test]
async fn evicting_a_room_closes_its_connections() {
    let rooms = rooms(MemoryStorageProvider::new(), 64);
    let id = rooms.id_from_name("closing");
    let mut a = rooms.connect(&id, Bytes::from_static(b"a")).await.unwrap();
    let _ = next_json(&mut a).await;
    rooms.evict(&id).await;
    assert_eq!(a.next_outgoing().await, Some(Outgoing::Close(1001)));
    assert_eq!(a.next_outgoing().await, None);
    assert!(
        a.deliver(text("late")).await.is_err(),
        "the client must reconnect"
    );
}
