//! The Rust SDK's uploads against the real server, through the fault proxy:
//! progress, a message that waits in the outbox for its files and is sent
//! once, an upload resumed after its connection was cut, and cancel.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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

    // 2,000² noisy pixels: about 12 MiB of PNG (more than the sockets on the
    // way buffer), sent from a file.
    let photo = noisy_png(2000);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("photo.png");
    std::fs::write(&path, &photo).unwrap();

    // Every connection through the proxy is cut once a MiB has left and the
    // proxy counts the upload's connection beside the WebSocket.
    let progress = Progress::default();
    let cut = {
        let (progress, proxy) = (progress.clone(), proxy.clone());
        let done = AtomicBool::new(false);
        Arc::new(move |sent: u64, total: u64| {
            let mut seen = progress.0.lock().unwrap();
            if sent >= 1 << 20 && proxy.live() >= 2 && !done.swap(true, Ordering::SeqCst) {
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

    // It resumed: after the cut (which may come before the server got any
    // of it: the bytes wait in the sockets), it asked the server what it
    // held and went on to the end. Through the proxy: the first WebSocket
    // and PATCH, then a new WebSocket, the HEAD and the second PATCH.
    let seen = progress.seen();
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
    assert_eq!((attachment.width, attachment.height), (2000, 2000));
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
    // freezes once a MiB left); the message waits; the user gives up.
    let proxy = Arc::new(proxy);
    let stall = stalling(&proxy).progress;
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

/// Progress that freezes every connection through `proxy` once a MiB left
/// (the upload stalls mid-body, its 16 MiB more than the sockets buffer),
/// until `released`; `stalled` says when it did. Each report freezes again:
/// the proxy may not have counted the upload's connection yet at the first.
struct Stalling {
    progress: mkondo_sdk::ProgressFn,
    stalled: Arc<AtomicBool>,
    released: Arc<AtomicBool>,
}

fn stalling(proxy: &Arc<Proxy>) -> Stalling {
    let (stalled, released) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let (proxy, flag, free) = (proxy.clone(), stalled.clone(), released.clone());
    let progress = Arc::new(move |sent: u64, _: u64| {
        if sent >= 1 << 20 && !free.load(Ordering::SeqCst) {
            proxy.stall_all();
            flag.store(true, Ordering::SeqCst);
        }
    });
    Stalling {
        progress,
        stalled,
        released,
    }
}

async fn until(flag: &AtomicBool) {
    mkondo_tests::poll_until(mkondo_tests::WAIT, "the upload to stall", || {
        let set = flag.load(Ordering::SeqCst);
        async move { set.then_some(()) }
    })
    .await;
}

/// Alice, connected through a fault proxy, and her conversation with Bob.
async fn alice_through(proxy: &Proxy, server: &TestServer) -> (mkondo_sdk::Client, String) {
    let (alice, _) = client(config(proxy.url(), server, "alice"));
    connected(&alice).await;
    let direct = alice.start_direct("bob").await.unwrap();
    (alice, direct.id)
}

fn bytes_upload(conversation_id: &str, name: &str, bytes: Vec<u8>) -> NewUpload {
    NewUpload {
        conversation_id: conversation_id.into(),
        name: name.into(),
        content_type: "application/octet-stream".into(),
        source: UploadSource::Bytes(bytes.into()),
    }
}

#[tokio::test]
async fn an_upload_whose_grant_expired_meanwhile_renews_it_and_goes_on() {
    // Grants (and links) valid one second.
    let options = ServerOptions::new()
        .unlimited_rate()
        .flag("--file-url-ttl-secs", 1);
    let server = TestServer::start(options).await;
    server.api().create_users(&["alice", "bob"]).await;
    let proxy = Arc::new(Proxy::start(server.addr).await);
    let (alice, direct) = alice_through(&proxy, &server).await;
    let stall = stalling(&proxy);
    let file = bytes_upload(&direct, "log.bin", vec![3u8; 16 << 20]);
    let upload = alice.upload(file, Some(stall.progress));
    until(&stall.stalled).await;
    // The grant expires while the bytes are stuck; then the path dies: the
    // HEAD is refused (403), a fresh grant goes on from the server's offset.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stall.released.store(true, Ordering::SeqCst);
    proxy.drop_all();
    let id = upload.finished().await.unwrap();
    let sent = send_files(&alice, &direct, vec![id]).await;
    assert_eq!(sent.attachments[0].size, 16 << 20);
}

#[tokio::test]
async fn shutdown_stops_an_upload_in_progress() {
    let server = TestServer::start(ServerOptions::new().unlimited_rate()).await;
    server.api().create_users(&["alice", "bob"]).await;
    let proxy = Arc::new(Proxy::start(server.addr).await);
    let (alice, direct) = alice_through(&proxy, &server).await;
    let stall = stalling(&proxy);
    let upload = alice.upload(
        bytes_upload(&direct, "notes.bin", vec![1u8; 16 << 20]),
        Some(stall.progress),
    );
    until(&stall.stalled).await;
    alice.shutdown();
    let ended = tokio::time::timeout(Duration::from_secs(5), upload.finished());
    assert_eq!(ended.await.expect("stopped at once"), Err(Error::Shutdown));
}

#[tokio::test]
async fn a_file_cut_short_while_it_is_sent_ends_the_upload() {
    let server = TestServer::start(ServerOptions::new().unlimited_rate()).await;
    server.api().create_users(&["alice", "bob"]).await;
    let (alice, _) = client(config(format!("http://{}", server.addr), &server, "alice"));
    connected(&alice).await;
    let direct = alice.start_direct("bob").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("growing.log");
    std::fs::write(&path, vec![b'x'; 16 << 20]).unwrap();
    // Another program truncates the file once the first bytes left.
    let truncate = {
        let path = path.clone();
        Arc::new(move |sent: u64, _: u64| {
            if sent > 0 {
                let _ = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .and_then(|f| f.set_len(0));
            }
        })
    };
    let upload = alice.upload(
        NewUpload {
            conversation_id: direct.id.clone(),
            name: "growing.log".into(),
            content_type: "text/plain".into(),
            source: UploadSource::Path(path),
        },
        Some(truncate),
    );
    let ended = tokio::time::timeout(Duration::from_secs(10), upload.finished());
    let error = ended.await.expect("ends, not retried forever").unwrap_err();
    assert!(
        matches!(&error, Error::InvalidArgument(why) if why.starts_with("reading the file")),
        "{error}"
    );
}

#[tokio::test]
async fn a_lost_answer_to_the_last_byte_is_confirmed_before_the_message_goes() {
    let server = TestServer::start(ServerOptions::new().unlimited_rate()).await;
    server.api().create_users(&["alice", "bob"]).await;
    let proxy = Arc::new(Proxy::start(server.addr).await);
    // Quick retries: the HEAD comes while the server still decodes.
    let config = config(proxy.url(), &server, "alice")
        .with_reconnect_delays(Duration::from_millis(10), Duration::from_millis(50));
    let (alice, _) = client(config);
    connected(&alice).await;
    let direct = alice.start_direct("bob").await.unwrap().id;
    // Once the last byte left, answers stop coming back (every byte still
    // reaches the server), and soon after the path dies, while the server
    // decodes the image: the PATCH's answer is lost. A HEAD then says every
    // byte arrived, which is not "ready" (the server would refuse to attach
    // it): the SDK has it confirmed first (503 while processing, 409 once
    // ready, with an empty PATCH at the end).
    let photo = noisy_png(2400);
    let cut = {
        let (proxy, total) = (proxy.clone(), photo.len() as u64);
        let done = AtomicBool::new(false);
        Arc::new(move |sent: u64, _: u64| {
            // The last 64 KiB chunk is on its way (progress counts a chunk
            // once the connection took the one before).
            if sent + (64 << 10) >= total && !done.swap(true, Ordering::SeqCst) {
                proxy.deafen_all();
                let proxy = proxy.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    proxy.drop_all();
                });
            }
        })
    };
    let mut file = bytes_upload(&direct, "photo.png", photo);
    file.content_type = "image/png".into();
    let upload = alice.upload(file, Some(cut));
    let id = upload.id().await.unwrap();
    let sent = send_files(&alice, &direct, vec![id]).await;
    let photo = &sent.attachments[0];
    assert_eq!((photo.width, photo.height), (2400, 2400));
}

#[tokio::test]
async fn signed_links_never_reach_the_servers_logs() {
    // Every request's span at the debug level: its method and path are logged.
    let options = ServerOptions::new()
        .unlimited_rate()
        .env("MKONDO_LOG", "debug");
    let server = TestServer::start(options).await;
    server.api().create_users(&["alice", "bob"]).await;
    let (alice, _) = client(config(format!("http://{}", server.addr), &server, "alice"));
    connected(&alice).await;
    let direct = alice.start_direct("bob").await.unwrap();
    let upload = alice.upload(bytes_upload(&direct.id, "a.bin", vec![5u8; 1000]), None);
    let id = upload.finished().await.unwrap();
    send_files(&alice, &direct.id, vec![id.clone()]).await;
    let links = alice.attachment_urls(&direct.id, &[&id]).await.unwrap();
    let url = &links.urls[0].url;
    assert_eq!(reqwest::get(url).await.unwrap().status(), 200);
    let log = server.log_tail();
    assert!(
        log.contains(&format!("/v1/files/{}/{id}", server.app.app_id)),
        "{log}"
    );
    let signature = url.split("sig=").nth(1).unwrap();
    assert!(!log.contains("sig=") && !log.contains(signature), "{log}");
}

#[tokio::test]
async fn nodes_share_the_files_an_upload_moves_to_another_node_mid_way() {
    // Two nodes of one database (and one files directory, or one bucket
    // with MKONDO_TEST_BLOBS=s3). Alice reaches them through the proxy.
    let a = TestServer::start(ServerOptions::new().unlimited_rate()).await;
    let b = a.join().await;
    a.api().create_users(&["alice", "bob"]).await;
    let proxy = Arc::new(Proxy::start(a.addr).await);
    let (alice, direct) = alice_through(&proxy, &a).await;
    let (bob, _) = client(config(format!("http://{}", b.addr), &b, "bob"));
    connected(&bob).await;

    // A MiB in, the path to node A dies and the proxy leads to node B: the
    // upload goes on there, from what node A received.
    let bytes: Vec<u8> = (0..12u32 << 20).map(|i| (i % 251) as u8).collect();
    let moved = {
        let (proxy, b) = (proxy.clone(), b.addr);
        let done = AtomicBool::new(false);
        Arc::new(move |sent: u64, _: u64| {
            if sent >= 1 << 20 && proxy.live() >= 2 && !done.swap(true, Ordering::SeqCst) {
                proxy.set_upstream(b);
                proxy.drop_all();
            }
        })
    };
    let upload = alice.upload(
        bytes_upload(&direct, "data.bin", bytes.clone()),
        Some(moved),
    );
    let id = upload.id().await.unwrap();
    let sent = send_files(&alice, &direct, vec![id.clone()]).await;
    assert_eq!(sent.attachments[0].size, 12 << 20);

    // Bob, on node B, reads it whole.
    let links = bob.attachment_urls(&direct, &[&id]).await.unwrap();
    assert!(links.urls[0].url.contains(&b.addr.to_string()));
    assert!(
        download(&links.urls[0].url).await == bytes,
        "the bytes alice sent"
    );
}

/// A message of these files alone, as the server stored it.
async fn send_files(
    client: &mkondo_sdk::Client,
    conversation_id: &str,
    ids: Vec<String>,
) -> mkondo_sdk::v1::Message {
    let message = NewMessage {
        conversation_id: conversation_id.into(),
        attachment_ids: ids,
        ..NewMessage::default()
    };
    client.send_message(message).await.unwrap()
}
