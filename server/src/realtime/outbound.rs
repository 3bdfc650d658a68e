//! A push on its way to many sessions: built once, encoded at most once per
//! encoding (lazily, by the first session that needs it), shared by `Arc`.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use mkondo_proto::{
    codec::{self, Encoding},
    v1::{self, push::Push},
};

#[derive(Debug)]
pub struct Outbound {
    pub frame: v1::ServerFrame,
    /// For `message` pushes: (conversation, seq), so a session can merge the live
    /// stream with a replay and drop what it already delivered.
    pub ordered: Option<(String, u64)>,
    json: OnceLock<Bytes>,
    proto: OnceLock<Bytes>,
    /// The bare protobuf message (gRPC adds its own framing).
    raw: OnceLock<Bytes>,
}

impl Outbound {
    pub fn push(push: Push) -> Arc<Self> {
        let ordered = match &push {
            Push::Message(m) => Some((m.conversation_id.clone(), m.seq)),
            _ => None,
        };
        Arc::new(Self {
            frame: v1::ServerFrame {
                id: 0,
                body: Some(v1::server_frame::Body::Push(v1::Push { push: Some(push) })),
            },
            ordered,
            json: OnceLock::new(),
            proto: OnceLock::new(),
            raw: OnceLock::new(),
        })
    }

    /// The encoded frame; computed on first use and cached.
    pub fn encoded(&self, encoding: Encoding) -> Bytes {
        let cell = match encoding {
            Encoding::Json => &self.json,
            Encoding::Protobuf => &self.proto,
        };
        cell.get_or_init(|| encode_frame(encoding, &self.frame))
            .clone()
    }
}

impl Outbound {
    /// The bare protobuf encoding, for gRPC; computed once and cached.
    pub fn encoded_raw(&self) -> Bytes {
        self.raw
            .get_or_init(|| Bytes::from(prost::Message::encode_to_vec(&self.frame)))
            .clone()
    }
}

pub fn encode_frame(encoding: Encoding, frame: &v1::ServerFrame) -> Bytes {
    // Server frames are built from valid values; encoding cannot fail short of a bug,
    // in which case an error frame is better than a panic.
    codec::encode(encoding, frame).unwrap_or_else(|err| {
        tracing::error!(%err, "encoding a server frame failed");
        Bytes::new()
    })
}
