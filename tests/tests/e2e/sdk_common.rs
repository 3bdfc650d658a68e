//! Helpers shared by the SDK end-to-end tests (`sdk_*.rs`): SDK clients against
//! the real server, with every event recorded for assertions.

#![allow(dead_code)] // each test file uses its own subset

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use mkondo_sdk::{Client, Config, ConnectionState, Event, TransportKind};
use mkondo_tests::{Transport, WAIT};

pub fn kind(t: Transport) -> TransportKind {
    match t {
        Transport::WsJson => TransportKind::WebSocketJson,
        Transport::WsProto => TransportKind::WebSocketProtobuf,
        Transport::Grpc => TransportKind::Grpc,
    }
}

/// Every event a client delivered, in order.
#[derive(Clone, Default)]
pub struct Recorder {
    events: Arc<Mutex<Vec<Event>>>,
}

impl Recorder {
    pub fn snapshot(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }

    pub fn len(&self) -> usize {
        self.events.lock().unwrap().len()
    }

    /// Waits for an event `pick` accepts (looking at every event since `from`).
    pub async fn wait_for<T>(
        &self,
        what: &str,
        from: usize,
        pick: impl Fn(&Event) -> Option<T>,
    ) -> T {
        self.wait_for_within(what, from, WAIT, pick).await
    }

    pub async fn wait_for_within<T>(
        &self,
        what: &str,
        from: usize,
        timeout: Duration,
        pick: impl Fn(&Event) -> Option<T>,
    ) -> T {
        mkondo_tests::poll_until(timeout, what, || {
            let found = self.events.lock().unwrap()[from..].iter().find_map(&pick);
            async move { found }
        })
        .await
    }
}

/// A client (not yet connected) with a recorder.
pub fn client(config: Config) -> (Client, Recorder) {
    let recorder = Recorder::default();
    let events = recorder.events.clone();
    let client = Client::new(config, move |e: Event| events.lock().unwrap().push(e)).unwrap();
    (client, recorder)
}

/// Connects and waits for `connected`.
pub async fn connected(client: &Client) {
    client.connect();
    tokio::time::timeout(WAIT, client.wait_for_state(ConnectionState::Connected))
        .await
        .expect("connected in time")
        .unwrap();
}

/// The state changes a client went through, as (old, new, code).
pub fn state_changes(events: &[Event]) -> Vec<(ConnectionState, ConnectionState, u16)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::StateChanged { old, new, code, .. } => Some((*old, *new, *code)),
            _ => None,
        })
        .collect()
}
