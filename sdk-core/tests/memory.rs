//! The whole client (handle, driver, session) over the in-memory transport, on
//! tokio's paused clock: the test plays the server, time moves only when every
//! task waits.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use mkondo_sdk::{
    transport::memory::{self, MemoryConn},
    v1::{self, client_frame::Command, push::Push, reply::Result as Reply, server_frame::Body},
    Client, Config, ConnectionState, Error, Event, TokenError, TransportKind,
};

fn reply(id: u32, result: Reply) -> v1::ServerFrame {
    v1::ServerFrame {
        id,
        body: Some(Body::Reply(v1::Reply {
            result: Some(result),
        })),
    }
}

fn push(p: Push) -> v1::ServerFrame {
    v1::ServerFrame {
        id: 0,
        body: Some(Body::Push(v1::Push { push: Some(p) })),
    }
}

fn connected_reply() -> Reply {
    Reply::Connect(v1::ConnectResult {
        user: Some(v1::User {
            id: "alice".into(),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// Accepts the next connection and completes its handshake.
async fn handshake(server: &memory::MemoryServer) -> MemoryConn {
    let mut conn = server.accept().await;
    conn.open();
    let frames = conn.recv().await.expect("the connect frame");
    assert!(matches!(frames[0].command, Some(Command::Connect(_))));
    conn.send(vec![reply(frames[0].id, connected_reply())]);
    conn
}

type Events = Arc<Mutex<Vec<Event>>>;

fn setup(config: Config) -> (Client, memory::MemoryServer, Events) {
    let (transport, server) = memory::pair();
    let events: Events = Arc::default();
    let sink = events.clone();
    let client = Client::new(
        config.with_transport(Arc::new(transport)),
        move |e: Event| sink.lock().unwrap().push(e),
    )
    .unwrap();
    (client, server, events)
}

fn config() -> Config {
    Config::new("memory://test", TransportKind::WebSocketJson)
        .with_token("t1")
        .with_seed(3)
}

#[tokio::test(start_paused = true)]
async fn a_session_over_memory_sends_receives_and_reconnects() {
    let (client, server, events) = setup(config());
    client.connect();
    let mut conn = handshake(&server).await;
    client
        .wait_for_state(ConnectionState::Connected)
        .await
        .unwrap();

    // A message out, acknowledged.
    let call = client.send_text("c", "hello");
    let frames = conn.recv().await.unwrap();
    let Some(Command::Send(send)) = &frames[0].command else {
        panic!("{frames:?}");
    };
    let stored = v1::Message {
        conversation_id: "c".into(),
        seq: 1,
        text: send.text.clone(),
        client_id: send.client_id.clone(),
        ..Default::default()
    };
    conn.send(vec![reply(
        frames[0].id,
        Reply::Send(v1::SendResult {
            message: Some(stored.clone()),
            duplicate: false,
        }),
    )]);
    assert_eq!(call.await.unwrap().seq, 1);

    // A push in, as an event.
    conn.send(vec![push(Push::Message(stored))]);
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert!(events
        .lock()
        .unwrap()
        .iter()
        .any(|e| matches!(e, Event::Message(m) if m.seq == 1)));

    // The server restarts: the client comes back by itself after the backoff.
    conn.send(vec![push(Push::Disconnect(v1::Disconnect {
        code: 3000,
        reason: "shutdown".into(),
        reconnect: true,
    }))]);
    conn.close(Some(3000), "shutdown");
    let before = tokio::time::Instant::now();
    let mut conn2 = handshake(&server).await;
    let waited = before.elapsed();
    assert!(
        waited >= Duration::from_millis(500) && waited <= Duration::from_secs(1),
        "{waited:?}"
    );
    client
        .wait_for_state(ConnectionState::Connected)
        .await
        .unwrap();
    // The old connection's late frames change nothing.
    conn.send(vec![push(Push::Disconnect(v1::Disconnect {
        code: 3500,
        ..Default::default()
    }))]);
    conn.close(Some(3500), "stale");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(client.state(), ConnectionState::Connected);

    // Shutdown: pending calls fail, and no more events.
    let pending = client.ping();
    let _ = conn2.recv().await;
    client.shutdown();
    assert!(matches!(pending.await, Err(Error::Shutdown)));
    let n = events.lock().unwrap().len();
    conn2.send(vec![push(Push::Message(v1::Message {
        conversation_id: "c".into(),
        seq: 2,
        ..Default::default()
    }))]);
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(events.lock().unwrap().len(), n);
}

#[tokio::test(start_paused = true)]
async fn connect_and_disconnect_from_inside_the_listener() {
    let (transport, server) = memory::pair();
    let slot: Arc<Mutex<Option<Client>>> = Arc::default();
    let seen: Events = Arc::default();
    let (inside, sink) = (slot.clone(), seen.clone());
    let client = Client::new(
        config().with_transport(Arc::new(transport)),
        move |e: Event| {
            // Re-entrant calls must neither deadlock nor break the state machine:
            // connect() again while connecting or connected, disconnect() once up.
            if let Some(c) = inside.lock().unwrap().as_ref() {
                match &e {
                    Event::StateChanged {
                        new: ConnectionState::Connected,
                        ..
                    } => {
                        c.connect();
                        c.disconnect();
                    }
                    Event::StateChanged {
                        new: ConnectionState::Connecting,
                        ..
                    } => c.connect(),
                    _ => {}
                }
            }
            sink.lock().unwrap().push(e);
        },
    )
    .unwrap();
    *slot.lock().unwrap() = Some(client.clone());
    client.connect();
    let _conn = handshake(&server).await;
    for _ in 0..100 {
        if client.state() == ConnectionState::Disconnected && seen.lock().unwrap().len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let states: Vec<ConnectionState> = seen
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            Event::StateChanged { new, .. } => Some(*new),
            _ => None,
        })
        .collect();
    assert_eq!(
        states,
        [
            ConnectionState::Connecting,
            ConnectionState::Connected,
            ConnectionState::Disconnected
        ]
    );
    client.shutdown();
}

#[tokio::test(start_paused = true)]
async fn the_token_provider_runs_as_a_task() {
    let (transport, server) = memory::pair();
    let calls = Arc::new(Mutex::new(0));
    let counter = calls.clone();
    let config = Config::new("memory://test", TransportKind::WebSocketJson)
        .with_transport(Arc::new(transport))
        .with_token_provider(move || {
            *counter.lock().unwrap() += 1;
            async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                Ok::<_, TokenError>("from-provider".to_owned())
            }
        });
    let client = Client::new(config, |_e: Event| {}).unwrap();
    client.connect();
    let mut conn = server.accept().await;
    conn.open();
    let frames = conn.recv().await.unwrap();
    assert!(matches!(&frames[0].command, Some(Command::Connect(c)) if c.token == "from-provider"));
    assert_eq!(*calls.lock().unwrap(), 1);
    client.shutdown();
}
