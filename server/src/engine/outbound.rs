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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_push_is_encoded_once_per_encoding_and_shared() {
        let out = Outbound::push(Push::Typing(v1::TypingPush {
            conversation_id: "c1".into(),
            user_id: "alice".into(),
            stop: false,
        }));
        // Every recipient gets the same buffer, not a fresh encoding.
        let a = out.encoded(Encoding::Json);
        let b = out.encoded(Encoding::Json);
        assert_eq!(a.as_ptr(), b.as_ptr());
        assert_eq!(
            out.encoded(Encoding::Protobuf).as_ptr(),
            out.encoded(Encoding::Protobuf).as_ptr()
        );
        assert_eq!(out.encoded_raw().as_ptr(), out.encoded_raw().as_ptr());
        let decoded: Vec<v1::ServerFrame> = codec::decode_batch(Encoding::Json, &a).unwrap();
        assert_eq!(decoded, vec![out.frame.clone()]);
        assert_eq!(out.ordered, None);
    }

    #[test]
    fn message_pushes_carry_their_order() {
        let out = Outbound::push(Push::Message(v1::Message {
            conversation_id: "c1".into(),
            seq: 7,
            ..Default::default()
        }));
        assert_eq!(out.ordered, Some(("c1".to_owned(), 7)));
    }
}
