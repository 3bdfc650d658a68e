//! The real-time engine the node stands on, in Centrifugo's seams: the `Hub`
//! indexes this node's sessions, the `Broker` carries events between nodes, the
//! `PresenceManager` tracks who is online, and `Outbound` encodes a push once per
//! encoding. Nothing here knows the node or a connection adapter: the layers go
//! adapters (`rest/`, `admin/`, `realtime/`) → `node/` → `engine/` + `store/`.

pub mod broker;
pub mod hub;
pub mod outbound;
pub mod presence;
pub mod redis_broker;
pub mod redis_presence;
pub mod typing;
