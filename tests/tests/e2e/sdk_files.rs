//! The Rust SDK's uploads against the real server, through the fault proxy:
//! progress, a message that waits in the outbox for its files and is sent
//! once, an upload resumed after its connection was cut, and cancel.

use std::sync::{Arc, Mutex};

use crate::sdk_common::{client, connected};
use mkondo_sdk::{
    Config, Error, Event, NewMessage, NewUpload, TransportKind, UploadSource, UploadStatus,
};
use mkondo_tests::{Proxy, ServerOptions, TestServer};

/// A noisy RGB image as PNG: about `side`² × 3 bytes, which PNG cannot shrink.
fn noisy_png(side: u32) -> Vec<u8> {
    let mut state = 0x2545_f491_u32;
    let image = image::RgbImage::from_fn(side, side, |_, _| {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let [r, g, b, _] = state.to_le_bytes();
        image::Rgb([r, g, b])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

fn config(url: String, server: &TestServer, user: &str) -> Config {
    Config::new(url, TransportKind::WebSocketJson).with_token(server.app.token(user))
}

/// Every `(sent, total)` an upload reported.
#[derive(Clone, Default)]
struct Progress(Arc<Mutex<Vec<(u64, u64)>>>);

impl Progress {
    fn seen(&self) -> Vec<(u64, u64)> {
        self.0.lock().unwrap().clone()
    }
}

async fn download(url: &str) -> Vec<u8> {
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status(), 200, "{url}");
    response.bytes().await.unwrap().to_vec()
}

#[tokio::test]
async fn an_upload_resumes_after_a_cut_and_its_message_waits_for_it() {
    let server = TestServer::start(ServerOptions::new().unlimited_rate()).await;
    server.api().create_users(&["alice", "bob"]).await;
    let proxy = Arc::new(Proxy::start(server.addr).await);
    let (alice, _) = client(config(proxy.url(), &server, "alice"));
    let (bob, bob_events) = client(config(format!("http://{}", server.addr), &server, "bob"));
    connected(&alice).await;
    connected(&bob).await;
    let direct = alice.start_direct("bob").await.unwrap();
    bob.subscribe(&direct.id).await.unwrap();

    // 1,400² noisy pixels: about 5.6 MiB of PNG, sent from a file.
    let photo = noisy_png(1400);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("photo.png");
    std::fs::write(&path, &photo).unwrap();

    // Every connection through the proxy is cut once a MiB has left.
    let progress = Progress::default();
    let cut = {
        let (progress, proxy) = (progress.clone(), proxy.clone());
        Arc::new(move |sent: u64, total: u64| {
            let mut seen = progress.0.lock().unwrap();
            if sent >= 1 << 20 && !seen.iter().any(|&(s, _)| s >= 1 << 20) {
                proxy.drop_all();
            }
            seen.push((sent, total));
        })
    };
    let from = bob_events.len();
    let upload = alice.upload(
        NewUpload {
            conversation_id: direct.id.clone(),
            name: "photo.png".into(),
            content_type: "image/png".into(),
            source: UploadSource::Path(path),
        },
        Some(cut),
    );
    // The message is queued as soon as the id is known: it waits for the bytes.
    let id = upload.id().await.unwrap();
    let sent = alice
        .send_message(NewMessage {
            conversation_id: direct.id.clone(),
            text: "the view".into(),
            attachment_ids: vec![id.clone()],
            ..NewMessage::default()
        })
        .await
        .unwrap();
    assert_eq!(upload.finished().await.unwrap(), id);
    let status = upload.status();
    assert_eq!(
        (status.sent, status.total, status.outcome),
        (photo.len() as u64, photo.len() as u64, Some(Ok(())))
    );

    // It resumed: after the cut, sending went on from what the server held
    // (at most what had left: some may have been lost with the connection),
    // not from 0, and on to the end. Through the proxy: the first WebSocket
    // and PATCH, then a new WebSocket, the HEAD and the second PATCH.
    let seen = progress.seen();
    let cut_at = seen.iter().position(|&(s, _)| s >= 1 << 20).unwrap();
    let after = &seen[cut_at + 1..];
    assert!(
        after.iter().all(|&(s, _)| s > 0) && after.iter().any(|&(s, _)| s <= seen[cut_at].0),
        "resumed from what reached the server: {after:?}"
    );
    assert!(proxy.attempts() >= 5, "{} connections", proxy.attempts());
    assert_eq!(seen.last(), Some(&(photo.len() as u64, photo.len() as u64)));

    // The message carries the file as the server derived it; Bob gets it once.
    let [attachment] = sent.attachments.as_slice() else {
        panic!("{:?}", sent.attachments);
    };
    assert_eq!(
        (attachment.id.as_str(), attachment.content_type.as_str()),
        (id.as_str(), "image/png")
    );
    assert_eq!((attachment.width, attachment.height), (1400, 1400));
    assert!(attachment.thumbnail && !attachment.blurhash.is_empty());
    bob_events
        .wait_for("the photo", from, |e| match e {
            Event::Message(m) if m.id == sent.id => Some(()),
            _ => None,
        })
        .await;
    let copies = (bob_events.snapshot()[from..].iter())
        .filter(|e| matches!(e, Event::Message(m) if m.text == "the view"))
        .count();
    assert_eq!(copies, 1);

    // Bob reads it through his links: the pixels Alice sent.
    let links = bob.attachment_urls(&direct.id, &[&id]).await.unwrap();
    let served = download(&links.urls[0].url).await;
    let decoded = image::load_from_memory(&served).unwrap().to_rgb8();
    assert_eq!(decoded, image::load_from_memory(&photo).unwrap().to_rgb8());
    let thumbnail = download(&links.urls[0].thumbnail_url).await;
    let thumbnail = image::load_from_memory(&thumbnail).unwrap();
    assert!(thumbnail.width() <= 320 && thumbnail.height() <= 320);
}

#[tokio::test]
async fn a_cancelled_upload_fails_the_message_waiting_for_it() {
    let server = TestServer::start(ServerOptions::new().unlimited_rate()).await;
    server.api().create_users(&["alice", "bob"]).await;
    let proxy = Proxy::start(server.addr).await;
    let (alice, _) = client(config(proxy.url(), &server, "alice"));
    connected(&alice).await;
    let direct = alice.start_direct("bob").await.unwrap();

    // The bytes stall on the way (every connection through the proxy
    // freezes once the first chunk left); the message waits; the user gives up.
    let proxy = Arc::new(proxy);
    let stall = {
        let proxy = proxy.clone();
        Arc::new(move |sent: u64, _: u64| {
            if sent > 0 {
                proxy.stall_all();
            }
        })
    };
    let bytes = bytes::Bytes::from(vec![7u8; 16 << 20]);
    let upload = alice.upload(
        NewUpload {
            conversation_id: direct.id.clone(),
            name: "notes.bin".into(),
            content_type: "application/octet-stream".into(),
            source: UploadSource::Bytes(bytes),
        },
        Some(stall),
    );
    let id = upload.id().await.unwrap();
    let message = alice.send_message(NewMessage {
        conversation_id: direct.id.clone(),
        text: "see attached".into(),
        attachment_ids: vec![id.clone()],
        ..NewMessage::default()
    });
    let later = alice.send_text(&direct.id, "sent after it");
    upload.cancel();
    assert_eq!(upload.finished().await, Err(Error::Cancelled));
    assert_eq!(message.await.unwrap_err(), Error::Cancelled);
    proxy.resume();
    assert_eq!(later.await.unwrap().text, "sent after it");
    assert!(matches!(
        upload.status(),
        UploadStatus {
            outcome: Some(Err(Error::Cancelled)),
            ..
        }
    ));

    // Nothing of it was attached: the conversation holds the one message.
    let history = alice
        .history(&direct.id, mkondo_sdk::HistoryQuery::default())
        .await
        .unwrap();
    let texts: Vec<&str> = history.messages.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["sent after it"]);
}

#[tokio::test]
async fn a_refused_upload_ends_with_the_servers_error() {
    let server = TestServer::start(ServerOptions::new().unlimited_rate()).await;
    server.api().create_users(&["alice", "bob"]).await;
    let (alice, _) = client(config(format!("http://{}", server.addr), &server, "alice"));
    connected(&alice).await;
    let direct = alice.start_direct("bob").await.unwrap();
    // Declared a PNG, but the bytes are not an image.
    let upload = alice.upload(
        NewUpload {
            conversation_id: direct.id.clone(),
            name: "fake.png".into(),
            content_type: "image/png".into(),
            source: UploadSource::Bytes(bytes::Bytes::from_static(b"%PDF-1.7 not a png")),
        },
        None,
    );
    let error = upload.finished().await.unwrap_err();
    assert_eq!(
        error.code(),
        mkondo_sdk::ErrorCode::InvalidArgument,
        "{error}"
    );
    assert!(!error.temporary());
}
