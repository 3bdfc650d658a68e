//! Files (issue 21) against the real server and its local file store: an
//! upload asked for over REST or the real-time protocol, its bytes sent with
//! tus 1.0 (`HEAD`, `PATCH`) through the server, attached to a message, and
//! read through signed links by members only. The refusals: a lying type, a
//! body past the declared size (cut mid-stream), an image bomb, a grant used
//! for another upload or conversation, expired and tampered links. A cut
//! connection resumes; deleting a message, erasing a user and leaving an
//! upload unattached remove the bytes from the store.
//!
//! The same scenarios run on the S3 store with `MKONDO_TEST_BLOBS=s3` (moto,
//! checking every request's signature; see `mkondo_tests::s3`). The tests of
//! a bucket that stops the start run in every run.

use std::io::Cursor;
use std::time::{Duration, Instant};

use image::{DynamicImage, ImageFormat, RgbImage};
use mkondo_proto::v1::reply::Result as R;
use mkondo_tests::{v1, Command, Rest, ServerOptions, TestServer, Transport, WAIT};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A 40 × 20 JPEG whose EXIF says "rotate 90°" (orientation 6) and carries a
/// description standing for a location the server must strip.
fn jpeg_with_exif() -> Vec<u8> {
    let img = RgbImage::from_fn(40, 20, |x, _| image::Rgb([(x * 6) as u8, 90, 200]));
    let mut out = Cursor::new(Vec::new());
    DynamicImage::ImageRgb8(img)
        .write_to(&mut out, ImageFormat::Jpeg)
        .unwrap();
    let jpeg = out.into_inner();
    let secret = b"SECRET-GPS-47.3769N\0";
    let mut tiff = b"MM\0\x2a\0\0\0\x08".to_vec();
    tiff.extend_from_slice(&2u16.to_be_bytes());
    // Orientation: SHORT 6.
    tiff.extend_from_slice(&[0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0]);
    // ImageDescription: ASCII at offset 38.
    tiff.extend_from_slice(&[0x01, 0x0e, 0, 2]);
    tiff.extend_from_slice(&(secret.len() as u32).to_be_bytes());
    tiff.extend_from_slice(&38u32.to_be_bytes());
    tiff.extend_from_slice(&[0, 0, 0, 0]);
    tiff.extend_from_slice(secret);
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&tiff);
    let mut with = jpeg[..2].to_vec();
    with.extend_from_slice(&[0xff, 0xe1]);
    with.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    with.extend_from_slice(&app1);
    with.extend_from_slice(&jpeg[2..]);
    with
}

fn png(width: u32, height: u32) -> Vec<u8> {
    let img = RgbImage::from_fn(width, height, |x, y| image::Rgb([x as u8, y as u8, 7]));
    let mut out = Cursor::new(Vec::new());
    DynamicImage::ImageRgb8(img)
        .write_to(&mut out, ImageFormat::Png)
        .unwrap();
    out.into_inner()
}

/// A small PNG whose header claims `side` × `side` pixels: decoding it would
/// take `side² × 3` bytes.
fn png_bomb(side: u32) -> Vec<u8> {
    let mut bytes = png(8, 8);
    // IHDR's data starts at 16 (8 signature, 4 length, 4 type).
    bytes[16..20].copy_from_slice(&side.to_be_bytes());
    bytes[20..24].copy_from_slice(&side.to_be_bytes());
    let crc = crc32fast::hash(&bytes[12..29]);
    bytes[29..33].copy_from_slice(&crc.to_be_bytes());
    bytes
}

struct Rig {
    server: TestServer,
    api: Rest,
    conv: String,
}

impl Rig {
    async fn start(opts: ServerOptions) -> Rig {
        let server = TestServer::start(opts).await;
        let api = server.api();
        api.create_users(&["alice", "bob", "eve"]).await;
        let conv = api.create_group("photos", &["alice", "bob"]).await;
        Rig { server, api, conv }
    }

    fn as_user(&self, user: &str) -> Rest {
        self.server.rest_as(&self.server.app.token(user))
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.server.addr)
    }

    async fn create_upload(
        &self,
        user: &str,
        conv: &str,
        name: &str,
        size: usize,
        ty: &str,
    ) -> Value {
        self.as_user(user)
            .post(
                &format!("/v1/conversations/{conv}/uploads"),
                json!({"name": name, "size": size, "content_type": ty}),
            )
            .await
            .expect(201)
    }

    async fn head(&self, link: &str) -> (u16, Option<u64>) {
        let resp = reqwest::Client::new()
            .head(self.url(link))
            .header("tus-resumable", "1.0.0")
            .send()
            .await
            .unwrap();
        let offset = resp
            .headers()
            .get("upload-offset")
            .map(|v| v.to_str().unwrap().parse().unwrap());
        (resp.status().as_u16(), offset)
    }

    async fn patch(&self, link: &str, offset: usize, bytes: &[u8]) -> (u16, Value, Option<u64>) {
        let resp = mkondo_tests::tus_patch(self.server.addr, link, offset, bytes, None).await;
        let status = resp.status().as_u16();
        let offset = resp
            .headers()
            .get("upload-offset")
            .map(|v| v.to_str().unwrap().parse().unwrap());
        let body = resp.json().await.unwrap_or(Value::Null);
        (status, body, offset)
    }

    /// Uploads `bytes` whole for `user` in `conv`: the upload id.
    async fn upload(&self, user: &str, conv: &str, name: &str, ty: &str, bytes: &[u8]) -> String {
        let up = self.create_upload(user, conv, name, bytes.len(), ty).await;
        let (status, body, _) = self.patch(up["url"].as_str().unwrap(), 0, bytes).await;
        assert_eq!(status, 204, "{body}");
        up["id"].as_str().unwrap().to_owned()
    }

    async fn send(&self, user: &str, conv: &str, ids: &[&str]) -> Value {
        self.as_user(user)
            .post(
                &format!("/v1/conversations/{conv}/messages"),
                json!({"attachment_ids": ids}),
            )
            .await
            .expect(201)
    }

    async fn links(&self, user: &str, conv: &str, ids: &[&str]) -> (u16, Value) {
        let resp = self
            .as_user(user)
            .post(
                &format!("/v1/conversations/{conv}/attachment-urls"),
                json!({"attachment_ids": ids}),
            )
            .await;
        (resp.status, resp.body)
    }

    /// Whether the server's store (its directory, or its bucket with
    /// `MKONDO_TEST_BLOBS=s3`) holds a file.
    async fn stored(&self, id: &str) -> bool {
        self.server.stored(&self.server.app.app_id, id).await
    }

    async fn wait_gone(&self, id: &str) {
        let deadline = Instant::now() + WAIT;
        while self.stored(id).await {
            assert!(Instant::now() < deadline, "{id} is still stored");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn get(url: &str, range: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(url);
    if let Some(range) = range {
        req = req.header("range", range);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn a_photo_goes_from_upload_to_members_only_download() {
    let rig = Rig::start(ServerOptions::new()).await;
    let photo = jpeg_with_exif();

    // Asked for over the real-time protocol, sent in two PATCHes.
    let (alice, connected) = rig.server.client(Transport::WsJson, "alice").await;
    assert_eq!(
        connected.limits.unwrap().max_upload_bytes,
        25 * 1024 * 1024,
        "the app's limit reaches the client"
    );
    let up = match alice
        .request(Command::CreateUpload(v1::CreateUploadRequest {
            conversation_id: rig.conv.clone(),
            name: "beach.jpg".into(),
            size: photo.len() as u64,
            content_type: "image/jpeg".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
    {
        R::Upload(up) => up,
        other => panic!("{other:?}"),
    };
    assert!(up.url.starts_with(&format!(
        "/v1/uploads/{}/{}?exp=",
        rig.server.app.app_id, up.id
    )));
    let half = photo.len() / 2;
    assert_eq!(rig.head(&up.url).await, (200, Some(0)));
    let (status, body, offset) = rig.patch(&up.url, 0, &photo[..half]).await;
    assert_eq!((status, offset), (204, Some(half as u64)), "{body}");
    assert_eq!(rig.head(&up.url).await, (200, Some(half as u64)));
    // A PATCH from the wrong offset is refused, and changes nothing.
    assert_eq!(rig.patch(&up.url, 0, &photo[..half]).await.0, 409);
    let (status, body, _) = rig.patch(&up.url, half, &photo[half..]).await;
    assert_eq!(status, 204, "{body}");
    // Complete: more bytes are refused.
    assert_eq!(rig.patch(&up.url, photo.len(), b"x").await.0, 409);

    // Sent with no text: the message carries what the server derived.
    let message = rig.send("alice", &rig.conv, &[&up.id]).await;
    let a = &message["attachments"][0];
    assert_eq!(a["id"], up.id.as_str());
    assert_eq!(a["name"], "beach.jpg");
    assert_eq!(a["content_type"], "image/jpeg");
    assert_eq!(
        (a["width"].as_u64(), a["height"].as_u64()),
        (Some(20), Some(40)),
        "EXIF orientation applied"
    );
    assert_eq!(a["thumbnail"], true);
    assert_eq!(a["blurhash"].as_str().unwrap().len(), 28);
    // An upload is attached once.
    let again = rig
        .as_user("alice")
        .post(
            &format!("/v1/conversations/{}/messages", rig.conv),
            json!({"text": "again", "attachment_ids": [up.id]}),
        )
        .await;
    assert_eq!(again.status, 404, "{}", again.text);

    // Bob reads it through the real-time protocol's links.
    let (bob, _) = rig.server.client(Transport::WsProto, "bob").await;
    let links = match bob
        .request(Command::AttachmentUrls(v1::AttachmentUrlsRequest {
            conversation_id: rig.conv.clone(),
            attachment_ids: vec![up.id.clone()],
        }))
        .await
        .unwrap()
    {
        R::AttachmentUrls(l) => l,
        other => panic!("{other:?}"),
    };
    let link = &links.urls[0];
    let resp = get(&rig.url(&link.url), None).await;
    assert_eq!(resp.status(), 200);
    let h = resp.headers().clone();
    assert_eq!(h["content-type"], "image/jpeg");
    assert!(h["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("inline"));
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert!(h["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("sandbox"));
    let served = resp.bytes().await.unwrap();
    assert_eq!(a["size"], served.len(), "the size is what is served");
    let shown = image::load_from_memory(&served).unwrap();
    assert_eq!((shown.width(), shown.height()), (20, 40), "served oriented");
    assert!(
        !served.windows(10).any(|w| w == b"SECRET-GPS"),
        "the EXIF metadata is stripped from what is served"
    );
    assert_eq!(h["accept-ranges"], "bytes");
    let part = get(&rig.url(&link.url), Some("bytes=0-9")).await;
    assert_eq!(part.status(), 206);
    let total = served.len();
    assert_eq!(
        part.headers()["content-range"],
        format!("bytes 0-9/{total}").as_str()
    );
    assert_eq!(part.headers()["x-content-type-options"], "nosniff");
    assert_eq!(&part.bytes().await.unwrap()[..], &served[..10]);
    let beyond = get(&rig.url(&link.url), Some(&format!("bytes={total}-"))).await;
    assert_eq!(beyond.status(), 416);
    assert_eq!(
        beyond.headers()["content-range"],
        format!("bytes */{total}").as_str()
    );
    let thumb = get(&rig.url(&link.thumbnail_url), None).await;
    assert_eq!(thumb.status(), 200);
    let thumb = image::load_from_memory(&thumb.bytes().await.unwrap()).unwrap();
    assert_eq!((thumb.width(), thumb.height()), (20, 40));

    // Not a member: no link. A link altered to another file: refused.
    let (status, body) = rig.links("eve", &rig.conv, &[&up.id]).await;
    assert_eq!(status, 404, "{body}");
    let forged = link.url.replace(&up.id, "upl_00000000000000000000000000");
    assert_eq!(get(&rig.url(&forged), None).await.status(), 403);
    let unsigned = link.url.split('?').next().unwrap();
    assert_eq!(get(&rig.url(unsigned), None).await.status(), 401);

    // A document is a download, never shown inline, whatever its name says.
    let html = b"<html><script>alert(1)</script></html>";
    let doc = rig
        .upload("alice", &rig.conv, "page.html", "text/html", html)
        .await;
    rig.send("alice", &rig.conv, &[&doc]).await;
    let (_, body) = rig.links("bob", &rig.conv, &[&doc]).await;
    assert!(body["urls"][0].get("thumbnail_url").is_none());
    let resp = get(&rig.url(body["urls"][0]["url"].as_str().unwrap()), None).await;
    assert_eq!(resp.status(), 200);
    let disposition = resp.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(disposition.starts_with("attachment;"), "{disposition}");
    assert!(disposition.contains("page.html"), "{disposition}");
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
}

#[tokio::test]
async fn links_and_grants_expire() {
    let rig = Rig::start(ServerOptions::new().flag("--file-url-ttl-secs", 1)).await;
    let id = rig
        .upload("alice", &rig.conv, "a.png", "image/png", &png(4, 4))
        .await;
    rig.send("alice", &rig.conv, &[&id]).await;
    let (_, body) = rig.links("bob", &rig.conv, &[&id]).await;
    let url = rig.url(body["urls"][0]["url"].as_str().unwrap());
    let up = rig
        .create_upload("alice", &rig.conv, "b.bin", 10, "application/octet-stream")
        .await;
    // Links are signed to the second: past the next one, both are refused.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let resp = get(&url, None).await;
    assert_eq!(resp.status(), 403);
    let (status, body, _) = rig
        .patch(up["url"].as_str().unwrap(), 0, b"0123456789")
        .await;
    assert_eq!(status, 403, "{body}");
    // A fresh grant resumes it, in its own conversation only.
    let other = rig.api.create_group("elsewhere", &["alice"]).await;
    rig.as_user("alice")
        .post(
            &format!("/v1/conversations/{other}/uploads"),
            json!({"upload_id": up["id"]}),
        )
        .await
        .expect_error(404, "not_found");
    let again = rig
        .as_user("alice")
        .post(
            &format!("/v1/conversations/{}/uploads", rig.conv),
            json!({"upload_id": up["id"]}),
        )
        .await
        .expect(201);
    let (status, body, _) = rig
        .patch(again["url"].as_str().unwrap(), 0, b"0123456789")
        .await;
    assert_eq!(status, 204, "{body}");
}

#[tokio::test]
async fn lying_oversized_and_hostile_uploads_are_refused() {
    let rig = Rig::start(ServerOptions::new().flag("--file-max-bytes", 1 << 20)).await;
    let alice = rig.as_user("alice");
    let path = format!("/v1/conversations/{}/uploads", rig.conv);

    // Over the limit: refused when asked for.
    alice
        .post(&path, json!({"name": "big.bin", "size": (1 << 20) + 1, "content_type": "application/octet-stream"}))
        .await
        .expect_error(413, "too_large");
    // Not a member, or a bad type: refused.
    rig.as_user("eve")
        .post(
            &path,
            json!({"name": "a.png", "size": 10, "content_type": "image/png"}),
        )
        .await
        .expect_error(404, "not_found");
    alice
        .post(
            &path,
            json!({"name": "a.png", "size": 10, "content_type": "image png"}),
        )
        .await
        .expect_error(422, "invalid_argument");

    // A spoofed type: a PDF declared as a PNG is refused and removed.
    let pdf = b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n";
    let up = rig
        .create_upload("alice", &rig.conv, "cat.png", pdf.len(), "image/png")
        .await;
    let link = up["url"].as_str().unwrap();
    let (status, body, _) = rig.patch(link, 0, pdf).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("application/pdf"),
        "{body}"
    );
    assert_eq!(rig.head(link).await.0, 403, "a refused upload is gone");

    // What iOS and some browsers declare is taken for what the bytes are.
    let heif = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic\0\0\0\x08free";
    let up = rig
        .create_upload("alice", &rig.conv, "IMG_1.HEIC", heif.len(), "image/heic")
        .await;
    let (status, body, _) = rig.patch(up["url"].as_str().unwrap(), 0, heif).await;
    assert_eq!(status, 204, "{body}");
    let sent = rig
        .send("alice", &rig.conv, &[up["id"].as_str().unwrap()])
        .await;
    assert_eq!(sent["attachments"][0]["content_type"], "image/heif");
    assert_eq!(
        sent["attachments"][0]["thumbnail"], false,
        "not decoded: a file"
    );
    let jpeg = jpeg_with_exif();
    let id = rig
        .upload("alice", &rig.conv, "a.jpg", "image/jpg", &jpeg)
        .await;
    let sent = rig.send("alice", &rig.conv, &[&id]).await;
    assert_eq!(sent["attachments"][0]["content_type"], "image/jpeg");

    // A body past the declared size is cut mid-stream: the answer comes
    // before the client has written it all, and nothing of it is kept.
    let up = rig
        .create_upload(
            "alice",
            &rig.conv,
            "x.bin",
            100 * 1024,
            "application/octet-stream",
        )
        .await;
    let link = up["url"].as_str().unwrap();
    let declared_body = 64 << 20;
    let (answer, written) = raw_patch(rig.server.addr, link, 0, declared_body, declared_body).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        written < declared_body,
        "cut after {written} of {declared_body} bytes"
    );
    assert_eq!(rig.head(link).await, (200, Some(0)));

    // An image bomb: refused from its header, without the memory it asks for.
    let before = rig.server.rss_kib();
    for side in [60_000, 16_000] {
        let bomb = png_bomb(side);
        let up = rig
            .create_upload("alice", &rig.conv, "bomb.png", bomb.len(), "image/png")
            .await;
        let (status, body, _) = rig.patch(up["url"].as_str().unwrap(), 0, &bomb).await;
        assert_eq!(status, 413, "{side}: {body}");
        assert_eq!(body["error"]["code"], "too_large");
    }
    let grown = rig.server.rss_kib().saturating_sub(before);
    assert!(
        grown < 64 * 1024,
        "the server grew {grown} KiB decoding bombs"
    );

    // A grant is for its upload and conversation only.
    let other = rig.api.create_group("other", &["alice", "bob"]).await;
    let mine = rig
        .upload("alice", &rig.conv, "a.png", "image/png", &png(4, 4))
        .await;
    let there = rig
        .create_upload("alice", &other, "b.bin", 3, "application/octet-stream")
        .await;
    let there_id = there["id"].as_str().unwrap();
    let stolen = there["url"].as_str().unwrap().replace(there_id, &mine);
    assert_eq!(rig.patch(&stolen, 0, b"abc").await.0, 403);
    let sent = alice
        .post(
            &format!("/v1/conversations/{other}/messages"),
            json!({"attachment_ids": [mine]}),
        )
        .await;
    assert_eq!(
        sent.status, 404,
        "another conversation's upload: {}",
        sent.text
    );
    // Nor can bob attach alice's upload.
    let sent = rig
        .as_user("bob")
        .post(
            &format!("/v1/conversations/{}/messages", rig.conv),
            json!({"attachment_ids": [mine]}),
        )
        .await;
    assert_eq!(sent.status, 404, "{}", sent.text);
    // An incomplete upload cannot be attached.
    let partial = rig
        .create_upload("alice", &rig.conv, "p.bin", 10, "application/octet-stream")
        .await;
    rig.patch(partial["url"].as_str().unwrap(), 0, b"01234")
        .await;
    let sent = alice
        .post(
            &format!("/v1/conversations/{}/messages", rig.conv),
            json!({"attachment_ids": [partial["id"]]}),
        )
        .await;
    assert_eq!(sent.status, 404, "{}", sent.text);
    // More than ten.
    let eleven: Vec<String> = (0..11).map(|i| format!("upl_{i:026}")).collect();
    alice
        .post(
            &format!("/v1/conversations/{}/messages", rig.conv),
            json!({"attachment_ids": eleven}),
        )
        .await
        .expect_error(422, "invalid_argument");
}

/// Writes a PATCH of `length` declared bytes, `send` of them, over a raw
/// connection, reading the answer as soon as one comes: (its head, bytes
/// written before it came or the connection ended).
async fn raw_patch(
    addr: std::net::SocketAddr,
    link: &str,
    offset: usize,
    length: usize,
    send: usize,
) -> (String, usize) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let head = format!(
        "PATCH {link} HTTP/1.1\r\nhost: {addr}\r\ntus-resumable: 1.0.0\r\nupload-offset: {offset}\r\n\
         content-type: application/offset+octet-stream\r\ncontent-length: {length}\r\n\r\n"
    );
    writer.write_all(head.as_bytes()).await.unwrap();
    let answer = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(WAIT, reader.read(&mut buf))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    });
    let chunk = vec![b'z'; 64 * 1024];
    let mut written = 0;
    while written < send && !answer.is_finished() {
        let n = chunk.len().min(send - written);
        if writer.write_all(&chunk[..n]).await.is_err() {
            break;
        }
        written += n;
    }
    drop(writer);
    (answer.await.unwrap(), written)
}

#[tokio::test]
async fn a_cut_connection_resumes_where_the_server_stands() {
    let rig = Rig::start(ServerOptions::new()).await;
    // Past a part of a multipart upload to S3 (5 MiB).
    let bytes: Vec<u8> = (0..(5 << 20) + 300_000u32)
        .map(|i| (i % 251) as u8)
        .collect();
    let up = rig
        .create_upload(
            "alice",
            &rig.conv,
            "data.bin",
            bytes.len(),
            "application/octet-stream",
        )
        .await;
    let link = up["url"].as_str().unwrap();
    // The client dies after 128 KiB of a body that declared it all.
    let stream = tokio::net::TcpStream::connect(rig.server.addr)
        .await
        .unwrap();
    let (_reader, mut writer) = stream.into_split();
    let head = format!(
        "PATCH {link} HTTP/1.1\r\nhost: x\r\ntus-resumable: 1.0.0\r\nupload-offset: 0\r\n\
         content-type: application/offset+octet-stream\r\ncontent-length: {}\r\n\r\n",
        bytes.len()
    );
    writer.write_all(head.as_bytes()).await.unwrap();
    writer.write_all(&bytes[..128 * 1024]).await.unwrap();
    writer.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(writer);
    drop(_reader);
    // The server keeps what arrived.
    let deadline = Instant::now() + WAIT;
    let held = loop {
        let (status, offset) = rig.head(link).await;
        assert_eq!(status, 200);
        let offset = offset.unwrap() as usize;
        if offset == 128 * 1024 || Instant::now() > deadline {
            break offset;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(held, 128 * 1024, "the bytes that arrived are kept");
    let (status, body, offset) = rig.patch(link, held, &bytes[held..]).await;
    assert_eq!((status, offset), (204, Some(bytes.len() as u64)), "{body}");
    let id = up["id"].as_str().unwrap();
    rig.send("alice", &rig.conv, &[id]).await;
    let (_, body) = rig.links("bob", &rig.conv, &[id]).await;
    let resp = get(&rig.url(body["urls"][0]["url"].as_str().unwrap()), None).await;
    assert_eq!(resp.headers()["content-type"], "application/octet-stream");
    assert_eq!(
        &resp.bytes().await.unwrap()[..],
        &bytes[..],
        "the whole file, in order"
    );
    let url = rig.url(body["urls"][0]["url"].as_str().unwrap());
    let across = (5 << 20) - 10;
    let part = get(&url, Some(&format!("bytes={across}-{}", across + 19))).await;
    assert_eq!(part.status(), 206);
    assert_eq!(
        &part.bytes().await.unwrap()[..],
        &bytes[across..across + 20]
    );
    let tail = get(&url, Some("bytes=-7")).await;
    assert_eq!(tail.status(), 206);
    assert_eq!(&tail.bytes().await.unwrap()[..], &bytes[bytes.len() - 7..]);
}

/// A secret the bucket refuses (moto checks every request's signature)
/// stops the start, saying why and not with what. Run in every run: it
/// starts the loopback S3 server itself.
#[tokio::test]
async fn a_bucket_refusing_the_credentials_stops_the_start() {
    const BUCKET: &str = "mkondo-wrong-secret";
    let s3 = tokio::task::spawn_blocking(|| {
        let s3 = mkondo_tests::s3::s3();
        s3.bucket(BUCKET);
        s3
    })
    .await
    .unwrap();
    let env = [
        ("AWS_ACCESS_KEY_ID", s3.access_key_id.as_str()),
        ("AWS_SECRET_ACCESS_KEY", "not-the-s3cr3t"),
    ];
    let stderr = refused_start(&s3.url(BUCKET), &env, WAIT * 3).await;
    assert!(stderr.contains("SignatureDoesNotMatch"), "{stderr}");
    assert!(!stderr.contains("s3cr3t"), "{stderr}");
}

/// A bucket nobody answers for (a closed loopback port) stops the start in
/// seconds, naming where it was looked for: requests are retried a few
/// times for seconds, not object_store's default ten over three minutes.
#[tokio::test]
async fn an_unreachable_bucket_stops_the_start_within_seconds() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("s3://mkondo-nowhere?endpoint=http://127.0.0.1:{closed}");
    let env = [
        ("AWS_ACCESS_KEY_ID", "AKIDNOWHERE"),
        ("AWS_SECRET_ACCESS_KEY", "not-the-s3cr3t"),
    ];
    let stderr = refused_start(&url, &env, Duration::from_secs(20)).await;
    let bucket = format!("bucket mkondo-nowhere at http://127.0.0.1:{closed}");
    assert!(stderr.contains(&bucket), "{stderr}");
    assert!(!stderr.contains("s3cr3t"), "{stderr}");
}

/// Runs `mkondo serve` on a new database with `--blob-store url` and only
/// `env` of the AWS variables; it must stop, failed, within `within`. Its
/// stderr, which names `--blob-store`.
async fn refused_start(url: &str, env: &[(&str, &str)], within: Duration) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut serve = tokio::process::Command::new(mkondo_tests::mkondo_bin());
    serve
        .args(["serve", "--listen", "127.0.0.1:0", "--database"])
        .arg(dir.path().join("mkondo.db"))
        .args(["--blob-store", url])
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    for (var, _) in std::env::vars().filter(|(var, _)| var.starts_with("AWS_")) {
        if !env.iter().any(|(given, _)| *given == var) {
            serve.env_remove(var);
        }
    }
    let out = tokio::time::timeout(within, serve.output())
        .await
        .unwrap_or_else(|_| panic!("the start did not stop within {within:?}"))
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("--blob-store"), "{stderr}");
    stderr
}

#[tokio::test]
async fn deletes_erasure_and_orphans_take_the_bytes() {
    let rig = Rig::start(
        ServerOptions::new()
            .flag("--file-sweep-interval-ms", 100)
            .flag("--upload-orphan-secs", 2),
    )
    .await;
    // A deleted message takes its files.
    let a = rig
        .upload("alice", &rig.conv, "a.png", "image/png", &png(4, 4))
        .await;
    let b = rig
        .upload("alice", &rig.conv, "b.png", "image/png", &png(5, 5))
        .await;
    let message = rig.send("alice", &rig.conv, &[&a, &b]).await;
    assert_eq!(message["attachments"].as_array().unwrap().len(), 2);
    let (_, links) = rig.links("bob", &rig.conv, &[&a]).await;
    let seq = message["seq"].as_u64().unwrap();
    assert!(rig.stored(&a).await && rig.stored(&b).await);
    assert!(rig.stored(&format!("{a}.thumb")).await, "a thumbnail");
    let deleted = rig
        .as_user("alice")
        .delete(&format!("/v1/conversations/{}/messages/{seq}", rig.conv))
        .await
        .ok();
    assert_eq!(deleted["attachments"], json!([]));
    rig.wait_gone(&a).await;
    rig.wait_gone(&format!("{a}.thumb")).await;
    rig.wait_gone(&b).await;
    let url = rig.url(links["urls"][0]["url"].as_str().unwrap());
    assert_eq!(
        get(&url, None).await.status(),
        404,
        "a link to a deleted file"
    );

    // Erasing a user takes theirs.
    let c = rig
        .upload("alice", &rig.conv, "c.png", "image/png", &png(4, 4))
        .await;
    rig.send("alice", &rig.conv, &[&c]).await;
    assert!(rig.stored(&c).await);
    rig.api.delete("/v1/users/alice?erase=true").await.ok();
    rig.wait_gone(&c).await;

    // An upload never attached goes after the orphan time; one attached stays.
    let orphan = rig
        .upload("bob", &rig.conv, "o.png", "image/png", &png(4, 4))
        .await;
    let kept = rig
        .upload("bob", &rig.conv, "k.png", "image/png", &png(4, 4))
        .await;
    rig.send("bob", &rig.conv, &[&kept]).await;
    assert!(rig.stored(&orphan).await);
    rig.wait_gone(&orphan).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(rig.stored(&kept).await, "an attached file stays");
}

#[tokio::test]
async fn an_apps_limits_types_and_quotas_are_its_own() {
    const SECRET: &str = "operator-secret-for-files";
    let rig = Rig::start(ServerOptions::new().operator_secret(SECRET)).await;
    let operator = rig.server.rest_as(SECRET);
    let app = rig.server.app.app_id.clone();
    let path = format!("/v1/conversations/{}/uploads", rig.conv);
    let ask = |size: u64, ty: &str| json!({"name": "f", "size": size, "content_type": ty});
    let alice = rig.as_user("alice");

    let changed = operator
        .patch(
            &format!("/v1/admin/apps/{app}"),
            json!({"files": {"types": ["image/*"], "max_bytes": 50, "user_daily_bytes": 100}}),
        )
        .await
        .ok();
    assert_eq!(
        changed["files"],
        json!({"max_bytes": 50, "types": ["image/*"], "user_daily_bytes": 100})
    );
    alice
        .post(&path, ask(10, "application/pdf"))
        .await
        .expect_error(422, "invalid_argument");
    alice
        .post(&path, ask(51, "image/png"))
        .await
        .expect_error(413, "too_large");
    alice.post(&path, ask(40, "image/png")).await.expect(201);
    alice.post(&path, ask(40, "image/png")).await.expect(201);
    alice
        .post(&path, ask(40, "image/png"))
        .await
        .expect_error(413, "too_large");
    // Bob's quota is his own.
    rig.as_user("bob")
        .post(&path, ask(40, "image/gif"))
        .await
        .expect(201);
    // Bad settings are refused whole.
    for bad in [
        json!({"max_bytes": 0}),
        json!({"types": ["Image/PNG"]}),
        json!({"types": ["nonsense"]}),
        json!({"user_daily_bytes": -1}),
    ] {
        operator
            .patch(&format!("/v1/admin/apps/{app}"), json!({"files": bad}))
            .await
            .expect_error(422, "invalid_argument");
    }
    // null: back to the defaults.
    operator
        .patch(
            &format!("/v1/admin/apps/{app}"),
            json!({"files": {"types": null, "user_daily_bytes": null}}),
        )
        .await
        .ok();
    alice
        .post(&path, ask(10, "application/pdf"))
        .await
        .expect(201);

    // The CLI sets them on the database, and running servers apply them at once.
    rig.server
        .cli(&[
            "app",
            "update",
            "--app",
            &app,
            "--file-max-bytes",
            "20",
            "--file-types",
            "text/plain,image/*",
        ])
        .await;
    alice
        .post(&path, ask(21, "text/plain"))
        .await
        .expect_error(413, "too_large");
    alice.post(&path, ask(20, "text/plain")).await.expect(201);
    let (_, connected) = rig.server.client(Transport::WsJson, "alice").await;
    assert_eq!(connected.limits.unwrap().max_upload_bytes, 20);
}
