//! `docs/protocol.md` cannot drift from the wire: every JSON example in it must
//! be a frame, written exactly as the codec writes it, and be one of the pinned
//! snapshots of `snapshots.rs` (`tests/snapshots/*.snap`). A change to a frame
//! fails the snapshot test; a doc that still shows the old frame fails here.

use std::path::{Path, PathBuf};

use mkondo_proto::{ClientFrame, ServerFrame};
use serde_json::Value;

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The ```json blocks of a Markdown file, with the line each starts on.
fn json_blocks(markdown: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut open: Option<(usize, String)> = None;
    for (i, line) in markdown.lines().enumerate() {
        let fence = line.trim_start();
        match open.take() {
            None if fence == "```json" => open = Some((i + 1, String::new())),
            None => {}
            Some(block) if fence == "```" => blocks.push(block),
            Some((start, mut text)) => {
                text.push_str(line);
                text.push('\n');
                open = Some((start, text));
            }
        }
    }
    assert!(open.is_none(), "a ```json block is not closed");
    blocks
}

/// The JSON of every snapshot file, by file name (insta's header stripped).
fn snapshots(dir: &Path) -> Vec<(String, Value)> {
    let mut snaps = Vec::new();
    for entry in std::fs::read_dir(dir).expect("the snapshot directory") {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "snap") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let body = text.splitn(3, "---\n").nth(2).expect("an insta header");
        let json = serde_json::from_str(body).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        snaps.push((
            path.file_name().unwrap().to_string_lossy().into_owned(),
            json,
        ));
    }
    snaps
}

/// Parses `json` as a client or a server frame and writes it back: the frame's
/// JSON as the codec writes it, or `None` when it is neither frame exactly
/// (unknown fields are ignored on input, so a round trip that loses a field
/// means that field is not part of the frame).
fn as_frame(json: &Value) -> Option<Value> {
    fn round_trip<T: serde::Serialize + serde::de::DeserializeOwned>(
        json: &Value,
    ) -> Option<Value> {
        let frame: T = serde_json::from_value(json.clone()).ok()?;
        let back = serde_json::to_value(&frame).ok()?;
        (back == *json).then_some(back)
    }
    round_trip::<ClientFrame>(json).or_else(|| round_trip::<ServerFrame>(json))
}

#[test]
fn every_json_example_in_the_protocol_doc_is_a_snapshot() {
    let doc_path = crate_dir().join("../docs/protocol.md");
    let doc = std::fs::read_to_string(&doc_path).expect("docs/protocol.md");
    let snaps = snapshots(&crate_dir().join("tests/snapshots"));
    let blocks = json_blocks(&doc);
    assert!(
        blocks.len() >= 50,
        "only {} JSON examples found",
        blocks.len()
    );
    let mut quoted = std::collections::BTreeSet::new();
    let mut problems = Vec::new();
    for (line, text) in &blocks {
        let json: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!("protocol.md:{line}: not JSON: {e}"));
                continue;
            }
        };
        if as_frame(&json).is_none() {
            problems.push(format!(
                "protocol.md:{line}: not a frame as the codec writes it: {json}"
            ));
            continue;
        }
        match snaps.iter().find(|(_, snap)| *snap == json) {
            Some((name, _)) => {
                quoted.insert(name.clone());
            }
            None => problems.push(format!(
                "protocol.md:{line}: matches no snapshot in proto/tests/snapshots: {json}"
            )),
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
    // The doc shows the frames people need most; these at least.
    for name in [
        "client_connect.snap",
        "reply_connect.snap",
        "client_send.snap",
        "push_message.snap",
        "push_disconnect.snap",
        "reply_error_rate_limited.snap",
    ] {
        assert!(quoted.contains(name), "protocol.md does not quote {name}");
    }
}

/// The checker itself catches what it must: a changed field, an unknown field,
/// a frame that is no frame.
#[test]
fn the_checker_finds_drift() {
    let snaps = snapshots(&crate_dir().join("tests/snapshots"));
    let (_, send) = snaps
        .iter()
        .find(|(name, _)| name == "client_send.snap")
        .unwrap();
    assert!(as_frame(send).is_some());
    let mut renamed = send.clone();
    let send_body = renamed["send"].as_object_mut().unwrap();
    let id = send_body.remove("conversation_id").unwrap();
    send_body.insert("conversation".into(), id);
    assert!(as_frame(&renamed).is_none(), "an unknown field is drift");
    let mut changed = send.clone();
    changed["send"]["text"] = "another text".into();
    assert!(as_frame(&changed).is_some());
    assert!(
        !snaps.iter().any(|(_, s)| *s == changed),
        "a changed value is drift"
    );
    assert!(as_frame(&serde_json::json!({"hello": 1})).is_none());
    let md = "a\n```json\n{\"id\": 1}\n```\n  ```json\n  {}\n  ```\n```js\nx\n```\n";
    let blocks = json_blocks(md);
    assert_eq!(blocks.len(), 2);
    assert_eq!(blocks[0], (2, "{\"id\": 1}\n".to_owned()));
}
