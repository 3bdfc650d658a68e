//! Real-time connection adapters, beside `rest/` and `admin/`: a `Session` is one
//! client connection (auth, commands, rate limit, pings, token deadline, resume
//! merge) that calls the node like every other interface; transports (WebSocket,
//! gRPC) are write-only sinks plus a stream of inbound frames. The engine the
//! node stands on (hub, broker, presence, outbound encoding) is `crate::engine`.

pub mod counters;
pub mod grpc;
pub mod session;
pub mod transport;
pub mod ws;
