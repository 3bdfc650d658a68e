//! Real-time: the Centrifugo-shaped seams. The `Hub` indexes this node's sessions,
//! the `Broker` carries events between nodes, the `PresenceManager` tracks who is
//! online, a `Session` is one connection, and transports (WebSocket, gRPC) are
//! write-only sinks plus a stream of inbound frames.

pub mod broker;
pub mod grpc;
pub mod hub;
pub mod outbound;
pub mod presence;
pub mod redis_broker;
pub mod redis_presence;
pub mod session;
pub mod transport;
pub mod ws;
