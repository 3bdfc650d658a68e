//! The Redis broker: several nodes share one Redis and each event reaches every
//! node, the way Centrifugo's Redis engine and socket.io's Redis adapter work.
//!
//! - One PUB/SUB channel per cluster (`<prefix>:events`), not one per app: a node
//!   serves every app, so it would subscribe to all of them anyway, and per-app
//!   channels would make a session's first subscription a round trip that its
//!   resume read must wait for. One channel also gives every node the same order
//!   of events, and one publisher's events keep their order (one multiplexed
//!   connection, commands sent in order).
//! - An event is a small protobuf (`WireEvent`): the target, and either the push
//!   as its encoded server frame (the same bytes a gRPC session writes, encoded
//!   once) or a disconnect code. The receiving node decodes it once and its hub
//!   encodes once per encoding, never per recipient.
//! - The publishing node delivers to its own hub directly, as the memory broker
//!   does, and ignores its own events coming back from Redis: its users keep
//!   getting pushes in a Redis outage, in publish order.
//! - Publishing waits at most `REQUEST_TIMEOUT`; past that it fails `unavailable`
//!   and the connection manager reconnects in the background with backoff.
//! - The subscriber reconnects by itself with backoff. Events published while a
//!   node was not subscribed are lost for it, so once subscribed again it closes
//!   every session with 3004 `insufficient_state`: clients reconnect and resume
//!   from the store (subscribe-before-read, merged by seq: no gap, no duplicate),
//!   as Centrifugo forces recovery after its PUB/SUB connection comes back.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use backon::{BackoffBuilder, ExponentialBuilder};
use bytes::Bytes;
use futures::StreamExt;
use mkondo_proto::v1::{self, server_frame::Body};
use mkondo_proto::{DisconnectCode, ErrorCode};
use prost::Message as _;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSubSink, PubSubStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::broker::{Broker, Event, Payload, Target};
use super::hub::Hub;
use super::outbound::Outbound;
use crate::error::{Error, Result};

/// The longest a publish (or a presence update) waits for Redis before failing.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the subscriber checks its connection is alive (a half-open TCP
/// connection would otherwise stay silent forever).
const PING_INTERVAL: Duration = Duration::from_secs(3);
/// How long a node waits at start for its first subscription.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);

/// Reconnection delays: 100 ms doubling to 5 s, with jitter, forever.
fn reconnect_backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times()
        .build()
}

/// The connection publishing and presence share: one multiplexed connection
/// that reconnects by itself (with backoff) when a request finds it broken.
/// A `rediss://` URL connects over TLS (rustls with the process's provider),
/// the certificate checked against `ca` (PEM) when given, else the system's roots.
pub fn connection(
    url: &str,
    ca: Option<&std::path::Path>,
) -> anyhow::Result<(redis::Client, ConnectionManager)> {
    let client = match ca {
        None => redis::Client::open(url)?,
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| anyhow::anyhow!("--redis-ca {}: {e}", path.display()))?;
            let certs = redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem),
            };
            redis::Client::build_with_tls(url, certs)
                .map_err(|e| anyhow::anyhow!("--redis-ca {}: {e}", path.display()))?
        }
    };
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(REQUEST_TIMEOUT))
        .set_number_of_retries(2)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(500));
    let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
    Ok((client, conn))
}

/// Runs a Redis request, waiting at most `REQUEST_TIMEOUT`. While the
/// connection is broken or being re-established the request is retried (each
/// try makes the manager reconnect); a request cut mid-flight may so run twice,
/// which the callers tolerate (a push seen twice is dropped by seq or harmless;
/// the presence scripts report a change once).
pub(crate) async fn request<T, F, Fut>(what: &str, mut op: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = redis::RedisResult<T>>,
{
    let attempts = async {
        let mut delays = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(25))
            .with_max_delay(Duration::from_millis(400))
            .without_max_times()
            .build();
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err(err)
                    if err.is_io_error()
                        || err.is_connection_dropped()
                        || err.is_connection_refusal() =>
                {
                    tracing::debug!(%err, "{what}: Redis connection broken, retrying");
                    tokio::time::sleep(delays.next().unwrap_or(Duration::from_millis(400))).await;
                }
                Err(err) => return Err(err.to_string()),
            }
        }
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, attempts).await {
        Ok(Ok(v)) => Some(v),
        Ok(Err(err)) => {
            tracing::warn!(%err, "{what} in Redis failed");
            None
        }
        Err(_) => {
            tracing::warn!("{what} in Redis timed out after {REQUEST_TIMEOUT:?}");
            None
        }
    }
}

/// An event on the wire between nodes.
#[derive(Clone, PartialEq, prost::Message)]
struct WireEvent {
    /// The publishing node, which delivered the event itself already.
    #[prost(string, tag = "1")]
    origin: String,
    #[prost(string, tag = "2")]
    app: String,
    #[prost(string, repeated, tag = "3")]
    users: Vec<String>,
    #[prost(string, repeated, tag = "4")]
    subscribers_of: Vec<String>,
    #[prost(bool, tag = "5")]
    whole_app: bool,
    #[prost(string, repeated, tag = "6")]
    except_users: Vec<String>,
    #[prost(string, optional, tag = "7")]
    kid: Option<String>,
    #[prost(int64, optional, tag = "8")]
    issued_before_ms: Option<i64>,
    /// A push: the encoded `ServerFrame` (bare protobuf).
    #[prost(bytes = "bytes", optional, tag = "9")]
    frame: Option<Bytes>,
    /// A disconnect: the close code.
    #[prost(uint32, optional, tag = "10")]
    disconnect: Option<u32>,
    /// An unsubscribe: the conversation.
    #[prost(string, optional, tag = "11")]
    unsubscribe: Option<String>,
}

fn encode(origin: &str, event: &Event) -> Vec<u8> {
    let t = &event.target;
    let (mut frame, mut disconnect, mut unsubscribe) = (None, None, None);
    match &event.payload {
        Payload::Push(out) => frame = Some(out.encoded_raw()),
        Payload::Disconnect(code) => disconnect = Some(u32::from(code.code())),
        Payload::Unsubscribe(conv) => unsubscribe = Some(conv.clone()),
    }
    WireEvent {
        origin: origin.to_owned(),
        app: event.app.clone(),
        users: t.users.clone(),
        subscribers_of: t.subscribers_of.clone(),
        whole_app: t.whole_app,
        except_users: t.except_users.clone(),
        kid: t.kid.clone(),
        issued_before_ms: t.issued_before_ms,
        frame,
        disconnect,
        unsubscribe,
    }
    .encode_to_vec()
}

/// The event and the node that published it; `None` for bytes that are no event.
fn decode(bytes: &[u8]) -> Option<(String, Event)> {
    let wire = WireEvent::decode(bytes).ok()?;
    let payload = match (wire.frame, wire.disconnect, wire.unsubscribe) {
        (Some(frame), None, None) => match v1::ServerFrame::decode(frame).ok()?.body? {
            Body::Push(v1::Push { push: Some(push) }) => Payload::Push(Outbound::push(push)),
            _ => return None,
        },
        (None, Some(code), None) => {
            Payload::Disconnect(DisconnectCode::from_code(u16::try_from(code).ok()?)?)
        }
        (None, None, Some(conv)) => Payload::Unsubscribe(conv),
        _ => return None,
    };
    let target = Target {
        users: wire.users,
        subscribers_of: wire.subscribers_of,
        whole_app: wire.whole_app,
        except_users: wire.except_users,
        kid: wire.kid,
        issued_before_ms: wire.issued_before_ms,
    };
    let event = Event {
        app: wire.app,
        target,
        payload,
    };
    Some((wire.origin, event))
}

/// A broker over Redis PUB/SUB (see the module doc).
pub struct RedisBroker {
    hub: Arc<Hub>,
    node_id: Arc<str>,
    channel: String,
    conn: ConnectionManager,
    subscribed: watch::Receiver<bool>,
}

impl RedisBroker {
    /// Connects, subscribes (waiting for the first subscription, so no session
    /// joins a node that would miss events) and keeps the subscription up until
    /// `shutdown`.
    pub async fn start(
        (client, conn): (redis::Client, ConnectionManager),
        prefix: &str,
        node_id: Arc<str>,
        hub: Arc<Hub>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Arc<Self>> {
        let channel = format!("{prefix}:events");
        let (ready_tx, mut subscribed) = watch::channel(false);
        let last_error = Arc::new(std::sync::Mutex::new(None));
        tokio::spawn(subscribe_loop(Subscriber {
            last_error: last_error.clone(),
            client,
            conn: conn.clone(),
            channel: channel.clone(),
            node_id: node_id.clone(),
            hub: hub.clone(),
            ready: ready_tx,
            shutdown,
        }));
        let first = tokio::time::timeout(STARTUP_TIMEOUT, subscribed.wait_for(|up| *up))
            .await
            .is_ok_and(|r| r.is_ok());
        if !first {
            // Why, for the operator: a refused connection, a certificate
            // Redis's does not chain to, a wrong password…
            let why = last_error.lock().map(|e| e.clone()).ok().flatten();
            let why = why.unwrap_or_else(|| "no answer".to_owned());
            anyhow::bail!("cannot subscribe to Redis (--broker) within {STARTUP_TIMEOUT:?}: {why}");
        }
        Ok(Arc::new(Self {
            hub,
            node_id,
            channel,
            conn,
            subscribed,
        }))
    }

    /// Whether this node currently receives the other nodes' events.
    pub fn is_subscribed(&self) -> bool {
        *self.subscribed.borrow()
    }
}

#[async_trait]
impl Broker for RedisBroker {
    async fn publish(&self, event: Event) -> Result<()> {
        let bytes = encode(&self.node_id, &event);
        self.hub.deliver(&event);
        let channel = self.channel.as_str();
        let sent = request("publishing", || {
            let mut conn = self.conn.clone();
            let bytes = bytes.clone();
            async move {
                redis::cmd("PUBLISH")
                    .arg(channel)
                    .arg(bytes)
                    .query_async::<i64>(&mut conn)
                    .await
            }
        });
        match sent.await {
            Some(_) => Ok(()),
            None => Err(unavailable()),
        }
    }

    fn ready(&self) -> bool {
        self.is_subscribed()
    }
}

fn unavailable() -> Error {
    Error::new(
        ErrorCode::Unavailable,
        "the event broker is unreachable, retry",
    )
}

struct Subscriber {
    client: redis::Client,
    /// Why the last subscription attempt failed (said if the start fails).
    last_error: Arc<std::sync::Mutex<Option<String>>>,
    /// The publishing connection, made ready before sessions are sent to
    /// reconnect (their first commands publish).
    conn: ConnectionManager,
    channel: String,
    node_id: Arc<str>,
    hub: Arc<Hub>,
    ready: watch::Sender<bool>,
    shutdown: CancellationToken,
}

async fn subscribe_loop(s: Subscriber) {
    let mut backoff = reconnect_backoff();
    let mut subscriptions = 0u64;
    loop {
        if s.shutdown.is_cancelled() {
            return;
        }
        match tokio::time::timeout(CONNECT_TIMEOUT, connect(&s.client, &s.channel)).await {
            Ok(Ok((sink, stream))) => {
                backoff = reconnect_backoff();
                subscriptions += 1;
                s.ready.send_replace(true);
                if subscriptions > 1 {
                    // Events published while unsubscribed never reach this node:
                    // its clients reconnect and resume from the store.
                    tracing::info!(
                        sessions = s.hub.session_count(),
                        "resubscribed to Redis: closing sessions so they resume"
                    );
                    metrics::counter!("mkondo_broker_resubscriptions_total").increment(1);
                    // Their first commands publish: have the publisher
                    // connection back first.
                    request("reconnecting the publisher", || {
                        let mut conn = s.conn.clone();
                        async move { redis::cmd("PING").query_async::<String>(&mut conn).await }
                    })
                    .await;
                }
                s.hub.close_all(DisconnectCode::InsufficientState);
                let ended = receive(&s, sink, stream).await;
                s.ready.send_replace(false);
                match ended {
                    Ended::Shutdown => return,
                    Ended::Lost(why) => tracing::warn!(%why, "lost the Redis subscription"),
                }
            }
            Ok(Err(err)) => {
                tracing::warn!(%err, "subscribing to Redis failed");
                if let Ok(mut last) = s.last_error.lock() {
                    *last = Some(err.to_string());
                }
            }
            Err(_) => {
                tracing::warn!("subscribing to Redis timed out");
                if let Ok(mut last) = s.last_error.lock() {
                    *last = Some(format!("no answer within {CONNECT_TIMEOUT:?}"));
                }
            }
        }
        let delay = backoff.next().unwrap_or(Duration::from_secs(5));
        tokio::select! {
            _ = s.shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

async fn connect(
    client: &redis::Client,
    channel: &str,
) -> redis::RedisResult<(PubSubSink, PubSubStream)> {
    let (mut sink, stream) = client.get_async_pubsub().await?.split();
    sink.subscribe(channel).await?;
    Ok((sink, stream))
}

enum Ended {
    Shutdown,
    Lost(String),
}

async fn receive(s: &Subscriber, mut sink: PubSubSink, mut stream: PubSubStream) -> Ended {
    let mut ping = tokio::time::interval(PING_INTERVAL);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = s.shutdown.cancelled() => return Ended::Shutdown,
            msg = stream.next() => {
                let Some(msg) = msg else {
                    return Ended::Lost("connection closed".into());
                };
                match decode(msg.get_payload_bytes()) {
                    Some((origin, _)) if *origin == *s.node_id => {}
                    Some((_, event)) => {
                        s.hub.deliver(&event);
                    }
                    None => tracing::warn!("ignoring an undecodable broker event"),
                }
            }
            _ = ping.tick() => {
                let pong = tokio::time::timeout(REQUEST_TIMEOUT, sink.ping::<redis::Value>()).await;
                match pong {
                    Ok(Ok(_)) => {}
                    Ok(Err(err)) => return Ended::Lost(err.to_string()),
                    Err(_) => return Ended::Lost("ping timed out".into()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mkondo_proto::v1::push::Push;

    #[test]
    fn events_survive_the_wire() {
        let out = Outbound::push(Push::Message(v1::Message {
            conversation_id: "c1".into(),
            seq: 9,
            text: "hé".into(),
            ..Default::default()
        }));
        let event = Event {
            app: "app1".into(),
            target: Target {
                users: vec!["alice".into()],
                subscribers_of: vec!["c1".into()],
                whole_app: false,
                except_users: vec!["bob".into()],
                kid: Some("k1".into()),
                issued_before_ms: Some(-5),
            },
            payload: Payload::Push(out.clone()),
        };
        let (origin, back) = decode(&encode("node-a", &event)).unwrap();
        assert_eq!(origin, "node-a");
        assert_eq!(back.app, "app1");
        assert_eq!(back.target.users, ["alice"]);
        assert_eq!(back.target.subscribers_of, ["c1"]);
        assert_eq!(back.target.except_users, ["bob"]);
        assert_eq!(back.target.kid.as_deref(), Some("k1"));
        assert_eq!(back.target.issued_before_ms, Some(-5));
        let Payload::Push(got) = back.payload else {
            panic!("a push")
        };
        assert_eq!(got.frame, out.frame);
        assert_eq!(got.ordered, Some(("c1".to_owned(), 9)));

        let close = Event {
            app: "app1".into(),
            target: Target {
                whole_app: true,
                ..Default::default()
            },
            payload: Payload::Disconnect(DisconnectCode::UserDeleted),
        };
        let (_, back) = decode(&encode("n", &close)).unwrap();
        assert!(back.target.whole_app && back.target.kid.is_none());
        assert!(matches!(
            back.payload,
            Payload::Disconnect(DisconnectCode::UserDeleted)
        ));
        let unsubscribe = Event {
            app: "app1".into(),
            target: Target {
                users: vec!["bob".into()],
                ..Default::default()
            },
            payload: Payload::Unsubscribe("c1".into()),
        };
        let (_, back) = decode(&encode("n", &unsubscribe)).unwrap();
        assert_eq!(back.target.users, ["bob"]);
        assert!(matches!(back.payload, Payload::Unsubscribe(c) if c == "c1"));
        assert!(decode(b"\xff\xff").is_none());
    }
}
