//! The broker carries events between server nodes. Every event is published
//! through it and comes back to each node's hub, so a node never needs to know
//! where a user is connected. The in-memory broker (one node) hands events straight
//! to the local hub; the Redis broker (`redis_broker.rs`) carries them between
//! nodes behind the same trait.

use std::sync::Arc;

use async_trait::async_trait;
use mkondo_proto::DisconnectCode;

use super::hub::Hub;
use super::outbound::Outbound;

/// Who an event is for, within one app: the sessions the selectors pick
/// (`users`, `subscribers_of`, `whole_app`), narrowed by the filters
/// (`except_users`, `kid`, `issued_before_ms`).
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// Every connected device of these users.
    pub users: Vec<String>,
    /// Every session subscribed to these conversations.
    pub subscribers_of: Vec<String>,
    /// Every session of the app (an app-wide revocation, a removed signing key).
    pub whole_app: bool,
    /// Never these users (the actor itself, or people who blocked each other).
    pub except_users: Vec<String>,
    /// Only sessions whose current token was signed with this key.
    pub kid: Option<String>,
    /// Only sessions whose current token was issued (`iat`, in ms) before this:
    /// a revocation leaves alone a session that already holds a newer token.
    pub issued_before_ms: Option<i64>,
}

#[derive(Debug, Clone)]
pub enum Payload {
    Push(Arc<Outbound>),
    /// Close the targets' sessions with this code (revocation, deactivation).
    Disconnect(DisconnectCode),
    /// End the targets' subscriptions to this conversation: their user left or
    /// was removed, or it was deleted. Typing and presence stop at once, on
    /// every node, not at the next reconnect.
    Unsubscribe(String),
}

#[derive(Debug, Clone)]
pub struct Event {
    pub app: String,
    pub target: Target,
    pub payload: Payload,
}

#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// Publishes to every node. Returns once the event is handed over: events
    /// published one after another by one task are delivered in that order.
    async fn publish(&self, event: Event) -> crate::error::Result<()>;

    /// Whether this node receives every other node's events now (`/readyz`).
    fn ready(&self) -> bool {
        true
    }
}

/// One node, no network: publishing is delivering to the local hub.
pub struct MemoryBroker {
    hub: Arc<Hub>,
}

impl MemoryBroker {
    pub fn new(hub: Arc<Hub>) -> Self {
        Self { hub }
    }
}

#[async_trait]
impl Broker for MemoryBroker {
    async fn publish(&self, event: Event) -> crate::error::Result<()> {
        self.hub.deliver(&event);
        Ok(())
    }
}
