//! Wire-level guarantees that every peer relies on: frames survive the codec byte
//! for byte, batches keep their order, malformed input is an error and never a
//! panic, and the code tables agree with the policy they encode.

use std::collections::HashSet;

use mkondo_proto::codec::{decode_batch, encode, encode_batch, join_encoded, peek_id};
use mkondo_proto::v1::{client_frame::Command, push, server_frame::Body, Push, ServerFrame};
use mkondo_proto::{ClientFrame, CodecError, DisconnectCode, Encoding, ErrorCode};

const SEND: &str = r#"{"id":5,"send":{"conversation_id":"launch-team","text":"Here is the plan","data":{"attachments":[{"url":"https://cdn.example.com/a.png"}]},"client_id":"c-7f3a9e21","reply_to":"41"}}"#;
const PUSH: &str = r#"{"push":{"message":{"id":"01JV5F0A9X0000000000000043","conversation_id":"launch-team","seq":"43","sender_id":"alice","kind":"user","text":"Here is the plan","created_at":"2025-05-14T09:20:43+00:00","reactions":[{"emoji":"👍","user_ids":["bob"]}]}}}"#;

#[test]
fn json_decode_then_encode_is_identity() {
    let frames: Vec<ClientFrame> = decode_batch(Encoding::Json, SEND.as_bytes()).unwrap();
    assert_eq!(frames.len(), 1);
    let Some(Command::Send(send)) = &frames[0].command else {
        panic!("not a send: {:?}", frames[0]);
    };
    assert_eq!(send.reply_to, 41);
    assert_eq!(encode(Encoding::Json, &frames[0]).unwrap(), SEND.as_bytes());

    let frames: Vec<ServerFrame> = decode_batch(Encoding::Json, PUSH.as_bytes()).unwrap();
    assert_eq!(encode(Encoding::Json, &frames[0]).unwrap(), PUSH.as_bytes());
}

#[test]
fn json_input_accepts_camel_case_and_numbers_for_64_bit_fields() {
    let loose = r#"{"id":"5","send":{"conversationId":"launch-team","text":"Here is the plan","data":{"attachments":[{"url":"https://cdn.example.com/a.png"}]},"clientId":"c-7f3a9e21","replyTo":41}}"#;
    let frames: Vec<ClientFrame> = decode_batch(Encoding::Json, loose.as_bytes()).unwrap();
    assert_eq!(encode(Encoding::Json, &frames[0]).unwrap(), SEND.as_bytes());
}

fn three_frames() -> Vec<ServerFrame> {
    let mut frames: Vec<ServerFrame> = decode_batch(Encoding::Json, PUSH.as_bytes()).unwrap();
    frames.push(ServerFrame {
        id: 0,
        body: Some(Body::Push(Push {
            push: Some(push::Push::Ping(Default::default())),
        })),
    });
    frames.push(ServerFrame {
        id: 9,
        body: Some(Body::Error(mkondo_proto::v1::Error {
            code: ErrorCode::NotFound.as_str().into(),
            message: "no conversation \"nope\"".into(),
            ..Default::default()
        })),
    });
    frames
}

#[test]
fn protobuf_batch_of_three_round_trips() {
    let frames = three_frames();
    let batch = encode_batch(Encoding::Protobuf, &frames).unwrap();
    assert_eq!(
        decode_batch::<ServerFrame>(Encoding::Protobuf, &batch).unwrap(),
        frames
    );
    // Pre-encoded parts batch to the same bytes.
    let parts: Vec<_> = frames
        .iter()
        .map(|f| encode(Encoding::Protobuf, f).unwrap())
        .collect();
    assert_eq!(join_encoded(Encoding::Protobuf, &parts), batch);
}

#[test]
fn json_batch_of_three_lines_round_trips() {
    let frames = three_frames();
    let batch = encode_batch(Encoding::Json, &frames).unwrap();
    let text = std::str::from_utf8(&batch).unwrap();
    assert_eq!(text.lines().count(), 3);
    assert_eq!(text.lines().next(), Some(PUSH));
    assert_eq!(
        decode_batch::<ServerFrame>(Encoding::Json, &batch).unwrap(),
        frames
    );
    let parts: Vec<_> = frames
        .iter()
        .map(|f| encode(Encoding::Json, f).unwrap())
        .collect();
    assert_eq!(join_encoded(Encoding::Json, &parts), batch);
}

fn json_error(data: &[u8]) -> String {
    let err = decode_batch::<ClientFrame>(Encoding::Json, data).unwrap_err();
    err.to_string()
}

fn protobuf_error(data: &[u8]) -> CodecError {
    decode_batch::<ClientFrame>(Encoding::Protobuf, data).unwrap_err()
}

#[test]
fn unknown_fields_are_skipped_for_forward_compatibility() {
    // A command from a newer client decodes as a frame with no command (the server
    // answers it with an error carrying its id) rather than failing the whole batch.
    let frames: Vec<ClientFrame> =
        decode_batch(Encoding::Json, br#"{"id":7,"frobnicate":{},"extra":1}"#).unwrap();
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].id, 7);
    assert!(frames[0].command.is_none());
}

#[test]
fn malformed_json_is_an_error() {
    let cases: [(&[u8], &str); 8] = [
        (b"", "no frame"),
        (b"\n \n", "no frame"),
        (b"\xff\xfe{}", "UTF-8"),
        (b"hello", "frame 1"),
        (b"[1,2]", "frame 1"),
        // A known field with the wrong JSON type.
        (br#"{"id":1,"send":{"text":5}}"#, "frame 1"),
        (br#"{"id":1,"send":{"data":[1]}}"#, "frame 1"),
        (b"{\"id\":1,\"ping\":{}}\n{\"id\":2,\"ping\":{}", "frame 2"),
    ];
    for (data, expected) in cases {
        let message = json_error(data);
        assert!(
            message.contains(expected),
            "{:?} gave {message:?}",
            String::from_utf8_lossy(data)
        );
    }
}

#[test]
fn malformed_protobuf_is_an_error() {
    assert!(matches!(protobuf_error(b""), CodecError::Empty));
    // Garbage: an overlong varint length.
    assert!(matches!(
        protobuf_error(&[0xff; 12]),
        CodecError::Protobuf { position: 1, .. }
    ));
    let frame = ClientFrame {
        id: 3,
        command: Some(Command::Ping(Default::default())),
    };
    let good = encode(Encoding::Protobuf, &frame).unwrap();
    // Truncated: the length promises more than the message holds.
    for cut in 1..good.len() {
        let err = protobuf_error(&good[..cut]);
        assert!(
            matches!(err, CodecError::Protobuf { position: 1, .. }),
            "{cut}: {err}"
        );
    }
    // A good frame followed by a truncated one names the second.
    let mut two = good.to_vec();
    two.extend_from_slice(&good[..good.len() - 1]);
    assert!(matches!(
        protobuf_error(&two),
        CodecError::Protobuf { position: 2, .. }
    ));
    // A valid length prefix around an invalid message (wire type 7).
    assert!(matches!(
        protobuf_error(&[2, 0x0f, 0x00]),
        CodecError::Protobuf { position: 1, .. }
    ));
}

#[test]
fn random_bytes_never_panic() {
    // A deterministic xorshift stream: no dependency, same cases every run.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for len in 0..2000 {
        let data: Vec<u8> = (0..len % 97).map(|_| next() as u8).collect();
        for enc in [Encoding::Json, Encoding::Protobuf] {
            let _ = decode_batch::<ClientFrame>(enc, &data);
            let _ = decode_batch::<ServerFrame>(enc, &data);
            let _ = peek_id(enc, &data);
        }
    }
}

#[test]
fn peek_id_finds_the_id_of_bad_frames() {
    let bad_json = br#"{"id":17,"send":{"conversation_id":5}}"#;
    assert!(decode_batch::<ClientFrame>(Encoding::Json, bad_json).is_err());
    assert_eq!(peek_id(Encoding::Json, bad_json), Some(17));

    let frame = ClientFrame {
        id: 18,
        command: Some(Command::Ping(Default::default())),
    };
    let mut bad_proto = encode(Encoding::Protobuf, &frame).unwrap().to_vec();
    bad_proto.extend_from_slice(&[0x0f]); // trailing garbage frame
    assert!(decode_batch::<ClientFrame>(Encoding::Protobuf, &bad_proto).is_err());
    assert_eq!(peek_id(Encoding::Protobuf, &bad_proto), Some(18));
}

#[test]
fn disconnect_code_table_is_consistent() {
    let mut codes = HashSet::new();
    let mut reasons = HashSet::new();
    for dc in DisconnectCode::ALL {
        let code = dc.code();
        assert!(codes.insert(code), "duplicate code {code}");
        assert!(
            reasons.insert(dc.reason()),
            "duplicate reason {}",
            dc.reason()
        );
        assert_eq!(DisconnectCode::from_code(code), Some(dc));
        match code {
            3000..=3499 => assert!(dc.reconnect(), "{dc:?} must reconnect"),
            3500..=3999 => assert!(!dc.reconnect(), "{dc:?} must stop"),
            _ => panic!("{dc:?} has code {code}, outside 3000–3999"),
        }
    }
    // Unknown codes follow the ranges; transport closes reconnect.
    assert!(DisconnectCode::should_reconnect(3499));
    assert!(!DisconnectCode::should_reconnect(3500));
    assert!(!DisconnectCode::should_reconnect(3999));
    assert!(DisconnectCode::should_reconnect(1006));
    assert_eq!(DisconnectCode::from_code(3498), None);
}

#[test]
fn error_code_table_is_consistent() {
    let mut names = HashSet::new();
    for code in ErrorCode::ALL {
        assert!(names.insert(code.as_str()), "duplicate {code}");
        assert_eq!(ErrorCode::parse(code.as_str()), code);
        assert!((400..600).contains(&code.http_status()));
    }
    assert_eq!(ErrorCode::parse("from_the_future"), ErrorCode::Internal);
}
