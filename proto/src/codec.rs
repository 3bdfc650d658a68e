//! The frame codec: how frames become WebSocket messages and back.
//!
//! One WebSocket message may carry several frames so that the server can batch
//! under load, and every client must accept batches:
//!
//! - [`Encoding::Json`] (text messages): one canonical proto3 JSON object per
//!   frame, separated by `'\n'`. Blank lines and whitespace between frames are
//!   ignored on input.
//! - [`Encoding::Protobuf`] (binary messages): each frame is length-delimited
//!   (a varint length, then the encoded message), even when it is alone.
//!
//! Because both formats are plain concatenations, a frame encoded once with
//! [`encode`] can be batched with others by [`join_encoded`] without re-encoding:
//! the server encodes each push once and fans the same bytes out.
//!
//! gRPC does not use this codec: there each stream message is one frame.

use bytes::Bytes;
use prost::Message;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// WebSocket subprotocol of the JSON encoding (the default).
pub const SUBPROTOCOL_JSON: &str = "mkondo.v1.json";
/// WebSocket subprotocol of the protobuf encoding.
pub const SUBPROTOCOL_PROTOBUF: &str = "mkondo.v1.proto";

/// How frames are written in a WebSocket message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Encoding {
    /// Canonical proto3 JSON in text messages, one frame per line.
    #[default]
    Json,
    /// Length-delimited protobuf in binary messages.
    Protobuf,
}

impl Encoding {
    /// The WebSocket subprotocol that selects this encoding.
    pub fn subprotocol(self) -> &'static str {
        match self {
            Self::Json => SUBPROTOCOL_JSON,
            Self::Protobuf => SUBPROTOCOL_PROTOBUF,
        }
    }

    /// The encoding a WebSocket subprotocol names, if it is one of ours.
    pub fn from_subprotocol(subprotocol: &str) -> Option<Self> {
        match subprotocol.trim() {
            SUBPROTOCOL_JSON => Some(Self::Json),
            SUBPROTOCOL_PROTOBUF => Some(Self::Protobuf),
            _ => None,
        }
    }

    /// Whether messages in this encoding travel as binary (not text) WebSocket messages.
    pub fn is_binary(self) -> bool {
        self == Self::Protobuf
    }
}

/// Why frames could not be encoded or decoded. The messages are meant for people:
/// the server sends them back in `invalid_argument` errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The message holds no frame at all (empty, or only whitespace).
    #[error("the message holds no frame")]
    Empty,
    /// A JSON message is not valid UTF-8.
    #[error("JSON frames must be UTF-8 text: {0}")]
    Utf8(#[from] std::str::Utf8Error),
    /// A JSON frame is malformed or does not match the schema.
    #[error("frame {position} is not a valid JSON frame: {source}")]
    Json {
        /// 1-based position of the frame in the message.
        position: usize,
        source: serde_json::Error,
    },
    /// A protobuf frame is truncated or malformed.
    #[error("frame {position} is not a valid protobuf frame: {source}")]
    Protobuf {
        /// 1-based position of the frame in the message.
        position: usize,
        source: prost::DecodeError,
    },
    /// A frame could not be written as JSON (e.g. a timestamp out of range).
    #[error("could not encode a frame as JSON: {0}")]
    JsonEncode(#[source] serde_json::Error),
    /// A frame could not be written as protobuf.
    #[error("could not encode a frame as protobuf: {0}")]
    ProtobufEncode(#[from] prost::EncodeError),
}

/// Encodes one frame. JSON comes without a trailing newline; protobuf is
/// length-delimited, so the result is also a valid batch of one.
pub fn encode<T: Message + Serialize>(enc: Encoding, frame: &T) -> Result<Bytes, CodecError> {
    let mut buf = Vec::new();
    write_frame(enc, frame, &mut buf)?;
    Ok(buf.into())
}

/// Encodes several frames as one message.
pub fn encode_batch<T: Message + Serialize>(
    enc: Encoding,
    frames: &[T],
) -> Result<Bytes, CodecError> {
    let mut buf = Vec::new();
    for (i, frame) in frames.iter().enumerate() {
        if enc == Encoding::Json && i > 0 {
            buf.push(b'\n');
        }
        write_frame(enc, frame, &mut buf)?;
    }
    Ok(buf.into())
}

/// Batches frames already encoded one by one with [`encode`] into one message.
pub fn join_encoded(enc: Encoding, parts: &[Bytes]) -> Bytes {
    if let [single] = parts {
        return single.clone();
    }
    let separators = match enc {
        Encoding::Json => parts.len().saturating_sub(1),
        Encoding::Protobuf => 0,
    };
    let mut buf = Vec::with_capacity(parts.iter().map(Bytes::len).sum::<usize>() + separators);
    for (i, part) in parts.iter().enumerate() {
        if enc == Encoding::Json && i > 0 {
            buf.push(b'\n');
        }
        buf.extend_from_slice(part);
    }
    buf.into()
}

/// Decodes every frame of a message, in order. A message without any frame is
/// an error, and so is any malformed frame: the whole message is rejected.
pub fn decode_batch<T>(enc: Encoding, data: &[u8]) -> Result<Vec<T>, CodecError>
where
    T: Message + Default + DeserializeOwned,
{
    let frames = match enc {
        Encoding::Json => decode_json(data)?,
        Encoding::Protobuf => decode_protobuf(data)?,
    };
    if frames.is_empty() {
        return Err(CodecError::Empty);
    }
    Ok(frames)
}

/// Best-effort read of the first frame's `id`, so that a frame that cannot be
/// decoded (too large, malformed) can still be answered with an error carrying
/// its id. `None` when the id is absent, zero or unreadable.
///
/// For JSON the first frame must be syntactically valid JSON (its content may
/// break the schema); for protobuf the first frame may even be truncated, as
/// long as the `id` field itself is intact.
pub fn peek_id(enc: Encoding, data: &[u8]) -> Option<u32> {
    let id = match enc {
        Encoding::Json => peek_json_id(data),
        Encoding::Protobuf => peek_protobuf_id(data),
    }?;
    (id != 0).then_some(id)
}

fn write_frame<T: Message + Serialize>(
    enc: Encoding,
    frame: &T,
    buf: &mut Vec<u8>,
) -> Result<(), CodecError> {
    match enc {
        Encoding::Json => serde_json::to_writer(&mut *buf, frame).map_err(CodecError::JsonEncode),
        Encoding::Protobuf => {
            buf.reserve(frame.encoded_len() + prost::length_delimiter_len(frame.encoded_len()));
            frame.encode_length_delimited(buf)?;
            Ok(())
        }
    }
}

fn decode_json<T: DeserializeOwned>(data: &[u8]) -> Result<Vec<T>, CodecError> {
    let text = std::str::from_utf8(data)?;
    // The stream deserializer skips any whitespace between values, which covers
    // the newline separators and blank lines.
    let mut frames = Vec::new();
    for frame in serde_json::Deserializer::from_str(text).into_iter::<T>() {
        match frame {
            Ok(frame) => frames.push(frame),
            Err(source) => {
                return Err(CodecError::Json {
                    position: frames.len() + 1,
                    source,
                })
            }
        }
    }
    Ok(frames)
}

fn decode_protobuf<T: Message + Default>(mut data: &[u8]) -> Result<Vec<T>, CodecError> {
    let mut frames = Vec::new();
    while !data.is_empty() {
        match T::decode_length_delimited(&mut data) {
            Ok(frame) => frames.push(frame),
            Err(source) => {
                return Err(CodecError::Protobuf {
                    position: frames.len() + 1,
                    source,
                })
            }
        }
    }
    Ok(frames)
}

fn peek_json_id(data: &[u8]) -> Option<u32> {
    /// Reads only `id`; serde skips every other field without building it.
    #[derive(Deserialize)]
    struct IdOnly {
        #[serde(default)]
        id: Option<serde_json::Value>,
    }
    let first = serde_json::Deserializer::from_slice(data)
        .into_iter::<IdOnly>()
        .next()?
        .ok()?;
    // proto3 JSON accepts a uint32 as a number or as a decimal string.
    match first.id? {
        serde_json::Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Scans the first length-delimited frame for field 1 (`id`, a varint) without
/// decoding the rest, so that truncated or oversized frames still yield it.
fn peek_protobuf_id(mut data: &[u8]) -> Option<u32> {
    use prost::encoding::decode_varint;

    let len = usize::try_from(decode_varint(&mut data).ok()?).ok()?;
    let mut msg = &data[..len.min(data.len())];
    while !msg.is_empty() {
        let key = decode_varint(&mut msg).ok()?;
        let (field, wire_type) = (key >> 3, key & 0b111);
        match wire_type {
            // varint
            0 => {
                let value = decode_varint(&mut msg).ok()?;
                if field == 1 {
                    return u32::try_from(value).ok();
                }
            }
            // 64-bit
            1 => msg = msg.get(8..)?,
            // length-delimited
            2 => {
                let n = usize::try_from(decode_varint(&mut msg).ok()?).ok()?;
                msg = msg.get(n..)?;
            }
            // 32-bit
            5 => msg = msg.get(4..)?,
            // groups (deprecated) or garbage
            _ => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{client_frame::Command, ClientFrame, SendRequest};

    fn send(id: u32, text: &str) -> ClientFrame {
        ClientFrame {
            id,
            command: Some(Command::Send(SendRequest {
                conversation_id: "general".into(),
                text: text.into(),
                ..Default::default()
            })),
        }
    }

    #[test]
    fn subprotocols_round_trip() {
        for enc in [Encoding::Json, Encoding::Protobuf] {
            assert_eq!(Encoding::from_subprotocol(enc.subprotocol()), Some(enc));
        }
        assert_eq!(Encoding::from_subprotocol("graphql-ws"), None);
        assert_eq!(Encoding::default(), Encoding::Json);
    }

    #[test]
    fn json_single_frame_has_no_newline() {
        let bytes = encode(Encoding::Json, &send(7, "hi")).unwrap();
        assert_eq!(
            &bytes[..],
            br#"{"id":7,"send":{"conversation_id":"general","text":"hi"}}"#
        );
    }

    #[test]
    fn joined_parts_equal_a_batch() {
        let frames = [send(1, "a"), send(2, "b\nwith newline"), send(3, "c")];
        for enc in [Encoding::Json, Encoding::Protobuf] {
            let parts: Vec<Bytes> = frames.iter().map(|f| encode(enc, f).unwrap()).collect();
            let batch = encode_batch(enc, &frames).unwrap();
            assert_eq!(join_encoded(enc, &parts), batch);
            assert_eq!(decode_batch::<ClientFrame>(enc, &batch).unwrap(), frames);
        }
    }

    #[test]
    fn json_tolerates_blank_lines_and_crlf() {
        let data = b"\n{\"id\":1,\"ping\":{}}\r\n\r\n{\"id\":2,\"ping\":{}}\n";
        let frames: Vec<ClientFrame> = decode_batch(Encoding::Json, data).unwrap();
        assert_eq!(frames.iter().map(|f| f.id).collect::<Vec<_>>(), [1, 2]);
    }

    #[test]
    fn empty_messages_are_errors() {
        for (enc, data) in [
            (Encoding::Json, &b""[..]),
            (Encoding::Json, &b" \n\n "[..]),
            (Encoding::Protobuf, &b""[..]),
        ] {
            let err = decode_batch::<ClientFrame>(enc, data).unwrap_err();
            assert!(matches!(err, CodecError::Empty), "{err}");
        }
    }

    #[test]
    fn error_names_the_bad_frame() {
        let data = b"{\"id\":1,\"ping\":{}}\n{\"id\":2,\"ping\":";
        let err = decode_batch::<ClientFrame>(Encoding::Json, data).unwrap_err();
        assert!(matches!(err, CodecError::Json { position: 2, .. }), "{err}");
        assert!(err.to_string().starts_with("frame 2 "), "{err}");
    }

    #[test]
    fn peek_id_json() {
        let cases: [(&[u8], Option<u32>); 7] = [
            (br#"{"id":42,"send":{"text":5}}"#, Some(42)),
            (br#"{"send":{},"id":"43"}"#, Some(43)),
            (b"{\"id\":1,\"ping\":{}}\n{\"id\":2}", Some(1)),
            (br#"{"id":0,"pong":{}}"#, None),
            (br#"{"id":-1}"#, None),
            (br#"{"id":4294967296}"#, None),
            (br#"{"id":9,"send":"#, None),
        ];
        for (data, want) in cases {
            assert_eq!(
                peek_id(Encoding::Json, data),
                want,
                "{:?}",
                String::from_utf8_lossy(data)
            );
        }
    }

    #[test]
    fn peek_id_protobuf() {
        let bytes = encode(Encoding::Protobuf, &send(4242, &"x".repeat(300))).unwrap();
        assert_eq!(peek_id(Encoding::Protobuf, &bytes), Some(4242));
        // Truncated: the length prefix promises more than there is.
        assert_eq!(peek_id(Encoding::Protobuf, &bytes[..6]), Some(4242));
        assert_eq!(peek_id(Encoding::Protobuf, &bytes[..2]), None);
        assert_eq!(peek_id(Encoding::Protobuf, b""), None);
        assert_eq!(peek_id(Encoding::Protobuf, &[0xff; 16]), None);
        let no_id = encode(Encoding::Protobuf, &send(0, "x")).unwrap();
        assert_eq!(peek_id(Encoding::Protobuf, &no_id), None);
    }
}
