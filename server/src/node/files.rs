//! Files (issue 21): uploads asked for in a conversation, their bytes taken
//! over tus 1.0 through the server (streamed to disk, capped as they arrive),
//! checked and processed once complete, attached to a message, and read back
//! through signed links that expire. Who may do what is decided here: the
//! REST and real-time doors only parse.
//!
//! - An upload is asked for by a member (or the backend for one) with its
//!   name, size and declared type; the answer is a link to the tus resource
//!   carrying a signed grant (`exp`, `sig`) bound to the app, the upload, the
//!   conversation and the user.
//! - Complete, its type is sniffed from the bytes: an image declared as one
//!   type and made of another is refused, as is a type the app does not allow.
//!   JPEG, PNG, GIF and WebP are decoded within limits (a few at a time) for
//!   their size, thumbnail and BlurHash, and served re-encoded without their
//!   metadata; other formats (HEIC…) are kept as files without thumbnail.
//! - A send names ready uploads of its sender in its conversation: they are
//!   claimed first (no other message can take them), then the send's own
//!   transaction records its seq on them.
//! - Links to read them are asked for by members, per conversation; they are
//!   signed for one file, one variant and an expiry.

use std::sync::Arc;

use dashmap::DashMap;
use futures::StreamExt as _;

use super::{Actor, Node};
use crate::config::FilesConfig;
use crate::error::{Error, Result};
use crate::files::blobs::{Blobs, Outputs, Stored, Variant};
use crate::files::derive;
use crate::store::files::{Attachment, Derived, FileLimits, NewUpload, Upload};
use crate::store::now_ms;

/// Attachments one message may carry.
pub const MAX_ATTACHMENTS: usize = 10;
/// The longest file name kept.
pub const MAX_NAME_BYTES: usize = 255;
/// The longest declared type.
pub const MAX_TYPE_BYTES: usize = 127;
/// Uploads receiving bytes at once on one node; past it, 503.
pub const MAX_CONCURRENT_UPLOADS: usize = 512;
/// A PATCH whose body sends nothing for this long ends; what arrived is kept.
pub const IDLE_BODY: std::time::Duration = std::time::Duration::from_secs(30);

/// The node's file state: where bytes live, uploads receiving bytes now, and
/// the decode permits.
pub struct FilesState {
    pub blobs: Blobs,
    receiving: DashMap<(String, String), ()>,
    decodes: Arc<tokio::sync::Semaphore>,
}

impl FilesState {
    pub fn new(config: &FilesConfig) -> anyhow::Result<Self> {
        Ok(Self {
            blobs: Blobs::new(config.dir.clone(), config.s3.as_ref())?,
            receiving: DashMap::new(),
            decodes: Arc::new(tokio::sync::Semaphore::new(config.image_decodes as usize)),
        })
    }
}

/// An upload this node is receiving: its entry in `FilesState::receiving`,
/// removed when dropped.
struct Receiving<'a> {
    map: &'a DashMap<(String, String), ()>,
    key: (String, String),
}

impl<'a> Receiving<'a> {
    fn take(map: &'a DashMap<(String, String), ()>, app: &str, id: &str) -> Option<Self> {
        let key = (app.to_owned(), id.to_owned());
        match map.entry(key.clone()) {
            dashmap::Entry::Occupied(_) => None,
            dashmap::Entry::Vacant(v) => {
                v.insert(());
                Some(Self { map, key })
            }
        }
    }
}

impl Drop for Receiving<'_> {
    fn drop(&mut self) {
        self.map.remove(&self.key);
    }
}

/// How finishing an upload failed: the bytes were refused (the upload goes),
/// or the server could not finish now (it stays, and a retried `PATCH` at
/// its end finishes it).
enum Unfinished {
    Refused(Error),
    Failed(Error),
}

/// A processed upload: what was derived, the cleaned image and the
/// thumbnail to store, and the decode permit held until they are written.
type Processed = (
    Derived,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Option<tokio::sync::OwnedSemaphorePermit>,
);

/// The type an upload is kept as: the one its bytes say. An upload declared
/// as a format the server decodes, or whose bytes are one, must be that
/// format (`image/jpg` is `image/jpeg`); other declared images must at least
/// be images (iOS says `image/heic` of bytes that are `image/heif`), except
/// SVG, which is text. Bytes without a known signature keep their declared
/// type.
fn checked_type(declared: &str, sniffed: Option<&'static str>) -> Result<String> {
    let declared = match declared {
        "image/jpg" | "image/pjpeg" => "image/jpeg",
        "image/x-png" => "image/png",
        other => other,
    };
    let strict = |t: &str| derive::decodable_type(t).is_some();
    match sniffed {
        Some(real) if (strict(declared) || strict(real)) && real != declared => {
            Err(Error::invalid(format!(
                "the file was declared {declared} but its bytes are {real}"
            )))
        }
        Some(real)
            if declared.starts_with("image/")
                && declared != "image/svg+xml"
                && !real.starts_with("image/") =>
        {
            Err(Error::invalid(format!(
                "the file was declared {declared} but its bytes are {real}"
            )))
        }
        Some(real) => Ok(real.to_owned()),
        None if declared.starts_with("image/") && declared != "image/svg+xml" => {
            Err(Error::invalid(format!(
                "the file was declared {declared} but its bytes are not an image"
            )))
        }
        None => Ok(declared.to_owned()),
    }
}

/// What a client asks to upload.
#[derive(Debug, Clone, Default)]
pub struct UploadInput {
    pub name: String,
    pub size: u64,
    pub content_type: String,
    /// The backend names the uploader; a user uploads as themself.
    pub user_id: Option<String>,
}

/// An upload and where its bytes go.
#[derive(Debug, Clone)]
pub struct UploadGrant {
    pub upload: Upload,
    /// Relative to the server's base URL: `/v1/uploads/{app}/{id}?exp=…&sig=…`.
    pub url: String,
    pub expires_at_ms: i64,
    /// Bytes the server holds.
    pub offset: u64,
}

/// A link to read one attachment (and its thumbnail).
#[derive(Debug, Clone)]
pub struct AttachmentLink {
    pub id: String,
    pub url: String,
    /// Empty when the file has no thumbnail.
    pub thumbnail_url: String,
}

/// A file to serve.
#[derive(Debug, Clone)]
pub struct Download {
    pub file: Stored,
    pub content_type: String,
    pub name: String,
    /// Whether the browser may show it in the page.
    pub inline: bool,
    /// Seconds the link has left (the response's cache lifetime).
    pub max_age: u64,
}

/// An app's file limits to change (the operator API): a field left out stays,
/// `null` goes back to the default (the server's size; no other limit).
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FilesInput {
    /// The largest file, 1 byte to 5 GiB.
    #[serde(default, deserialize_with = "super::requests::given")]
    #[schema(value_type = Option<i64>, nullable, minimum = 1)]
    pub max_bytes: Option<Option<i64>>,
    /// Allowed types (at most 50): `image/png`, or `image/*` for a family.
    #[serde(default, deserialize_with = "super::requests::given")]
    #[schema(value_type = Option<Vec<String>>, nullable)]
    pub types: Option<Option<Vec<String>>>,
    /// Bytes one user may upload in 24 hours.
    #[serde(default, deserialize_with = "super::requests::given")]
    #[schema(value_type = Option<i64>, nullable, minimum = 0)]
    pub user_daily_bytes: Option<Option<i64>>,
    /// Bytes the app may keep stored in all.
    #[serde(default, deserialize_with = "super::requests::given")]
    #[schema(value_type = Option<i64>, nullable, minimum = 0)]
    pub app_total_bytes: Option<Option<i64>>,
}

/// The largest per-app file size the operator may set.
pub const MAX_FILE_BYTES: i64 = 5 << 30;

/// The grant of a tus request: `exp` and `sig` from its query.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct Grant {
    #[serde(default)]
    pub exp: Option<i64>,
    #[serde(default)]
    pub sig: Option<String>,
}

impl Node {
    /// An app's file limits, with the server's defaults for the size and a
    /// user's daily quota.
    async fn app_file_limits(&self, app: &str) -> Result<FileLimits> {
        let mut limits = self
            .store
            .file_limits(app)
            .await?
            .ok_or_else(|| Error::not_found("app"))?;
        let files = &self.config.files;
        limits.max_bytes = Some(limits.max_bytes.unwrap_or(files.max_bytes as i64));
        limits.user_daily_bytes = Some(
            limits
                .user_daily_bytes
                .unwrap_or(files.user_daily_bytes.min(i64::MAX as u64) as i64),
        );
        Ok(limits)
    }

    /// `input` over the app's current limits, checked.
    pub(super) async fn prepare_file_limits(
        &self,
        app: &str,
        input: FilesInput,
    ) -> Result<FileLimits> {
        let current = self
            .store
            .file_limits(app)
            .await?
            .ok_or_else(|| Error::not_found("app"))?;
        merge_limits(current, input)
    }

    /// The largest upload `app` takes (the connect answer's limits).
    pub async fn max_upload_bytes(&self, app: &str) -> Result<u64> {
        Ok(self
            .app_file_limits(app)
            .await?
            .max_bytes
            .unwrap_or(0)
            .max(0) as u64)
    }

    /// Starts an upload in `conv` for `actor` (or the user the backend names).
    pub async fn create_upload(
        &self,
        app: &str,
        actor: Actor<'_>,
        conv: &str,
        input: UploadInput,
    ) -> Result<UploadGrant> {
        let links = self.secrets()?;
        if !crate::files::valid_dir_name(app) {
            return Err(Error::invalid("this app's id cannot name a directory"));
        }
        let user = match (actor, input.user_id) {
            (Actor::User(me), None) => me.to_owned(),
            (Actor::User(me), Some(other)) if other == me => other,
            (Actor::User(_), Some(_)) => {
                return Err(Error::denied(
                    "a user token may only upload as its own user",
                ))
            }
            (Actor::Backend, Some(user)) => user,
            (Actor::Backend, None) => {
                return Err(Error::invalid("user_id is required: the user who uploads"))
            }
        };
        let name = input.name.trim();
        if name.is_empty() || name.len() > MAX_NAME_BYTES || name.chars().any(char::is_control) {
            return Err(Error::invalid(format!(
                "name must be 1-{MAX_NAME_BYTES} bytes without control characters"
            )));
        }
        let declared = input.content_type.trim().to_ascii_lowercase();
        if !valid_type(&declared) {
            return Err(Error::invalid(
                "content_type must be a media type like image/png",
            ));
        }
        if input.size == 0 {
            return Err(Error::invalid("size must be at least 1 byte"));
        }
        let limits = self.app_file_limits(app).await?;
        let max = limits.max_bytes.unwrap_or(i64::MAX);
        if input.size > max as u64 {
            return Err(Error::too_large(format!(
                "the file is larger than this app's {max} bytes"
            )));
        }
        if !type_allowed(&limits, &declared) {
            return Err(Error::invalid(format!(
                "this app does not take {declared} files"
            )));
        }
        // A member of the conversation, as for sending (ids cannot be probed).
        self.visible_conversation(app, Actor::User(&user), conv)
            .await?;
        let upload = self
            .store
            .create_upload(
                app,
                &NewUpload {
                    conversation_id: conv.to_owned(),
                    user_id: user,
                    name: name.to_owned(),
                    declared_type: declared,
                    size: input.size as i64,
                },
                &limits,
            )
            .await?;
        self.files.blobs.start(app, &upload.id).await.map_err(io)?;
        metrics::counter!("mkondo_uploads_started_total").increment(1);
        Ok(self.grant(links, app, upload, 0))
    }

    /// A fresh grant for one of `user`'s uploads still arriving, and its
    /// offset: to resume after the grant expired.
    pub async fn resume_upload(
        &self,
        app: &str,
        user: &str,
        conv: &str,
        id: &str,
    ) -> Result<UploadGrant> {
        let links = self.secrets()?;
        let upload = self
            .own_upload(app, id)
            .await?
            .filter(|u| u.user_id == user && u.conversation_id == conv && u.state == "uploading")
            .ok_or_else(|| Error::not_found("upload"))?;
        // Still a member: a removed member finishes nothing.
        self.visible_conversation(app, Actor::User(user), conv)
            .await?;
        self.store.touch_upload(app, id).await?;
        let offset = self.received(app, id).await?;
        Ok(self.grant(links, app, upload, offset))
    }

    fn grant(
        &self,
        links: &crate::outbound::secrets::SecretBox,
        app: &str,
        upload: Upload,
        offset: u64,
    ) -> UploadGrant {
        let exp = now_ms() / 1000 + self.config.files.url_ttl.as_secs() as i64;
        let sig = links.sign_link(&upload_parts(app, &upload, exp).each());
        UploadGrant {
            url: format!("/v1/uploads/{app}/{}?exp={exp}&sig={sig}", upload.id),
            expires_at_ms: exp * 1000,
            offset,
            upload,
        }
    }

    async fn own_upload(&self, app: &str, id: &str) -> Result<Option<Upload>> {
        if !crate::files::valid_upload_id(id) || !crate::files::valid_dir_name(app) {
            return Ok(None);
        }
        self.store.upload(app, id).await
    }

    /// The upload a tus request names, if its grant holds.
    async fn granted_upload(&self, app: &str, id: &str, grant: &Grant) -> Result<Upload> {
        let links = self.secrets()?;
        let (Some(exp), Some(sig)) = (grant.exp, grant.sig.as_deref()) else {
            return Err(Error::unauthenticated("the upload link has no grant"));
        };
        // Unknown uploads and bad signatures look alike.
        let refused = || Error::denied("the upload grant is not valid for this upload");
        let upload = self.own_upload(app, id).await?.ok_or_else(refused)?;
        if !links.verify_link(&upload_parts(app, &upload, exp).each(), sig) {
            return Err(refused());
        }
        if exp < now_ms() / 1000 {
            return Err(Error::denied(
                "the upload grant expired: ask for the upload again to resume",
            ));
        }
        Ok(upload)
    }

    /// Bytes of an upload the server holds.
    async fn received(&self, app: &str, id: &str) -> Result<u64> {
        match tokio::fs::metadata(self.files.blobs.staging(app, id)).await {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(io(e)),
        }
    }

    /// tus `HEAD`: the upload's size and the bytes held.
    pub async fn upload_offset(&self, app: &str, id: &str, grant: &Grant) -> Result<(u64, u64)> {
        let upload = self.granted_upload(app, id, grant).await?;
        let offset = match upload.state.as_str() {
            "uploading" => self.received(app, id).await?,
            _ => upload.size as u64,
        };
        Ok((offset, upload.size as u64))
    }

    /// tus `PATCH`: appends `body` at `offset` (which must be the bytes held),
    /// never past the declared size: a body that would go past it is cut as
    /// soon as it does, 413, and what this request wrote is dropped. The last
    /// byte makes the upload ready (or refused). Returns the new offset.
    pub async fn upload_bytes(
        &self,
        app: &str,
        id: &str,
        grant: &Grant,
        offset: u64,
        body: axum::body::Body,
    ) -> Result<(u64, Option<Attachment>)> {
        let upload = self.granted_upload(app, id, grant).await?;
        if upload.state != "uploading" {
            return Err(Error::new(
                mkondo_proto::ErrorCode::AlreadyExists,
                "this upload is complete",
            ));
        }
        if self.files.receiving.len() >= MAX_CONCURRENT_UPLOADS {
            return Err(Error::new(
                mkondo_proto::ErrorCode::Unavailable,
                "too many uploads in progress on this server; try again",
            ));
        }
        // Held until this request is done, its processing included, and
        // released however it ends (a reset HTTP/2 stream drops this future).
        let Some(_receiving) = Receiving::take(&self.files.receiving, app, id) else {
            return Err(busy());
        };
        // A change: an upload still arriving is not an orphan.
        self.store.touch_upload(app, id).await?;
        let (held, _locked) = self.receive(app, &upload, offset, body).await?;
        if held < upload.size as u64 {
            return Ok((held, None));
        }
        // Finished with the staging file's lock still held: no other node
        // sharing the directory finishes it at the same time.
        let attachment = self.finish_upload(app, upload).await?;
        Ok((held, Some(attachment)))
    }

    async fn receive(
        &self,
        app: &str,
        upload: &Upload,
        offset: u64,
        body: axum::body::Body,
    ) -> Result<(u64, std::fs::File)> {
        let path = self.files.blobs.start(app, &upload.id).await.map_err(io)?;
        let held = self.received(app, &upload.id).await?;
        if offset != held || offset > upload.size as u64 {
            return Err(Error::new(
                mkondo_proto::ErrorCode::AlreadyExists,
                format!("Upload-Offset must be {held}, the bytes the server holds"),
            ));
        }
        let size = upload.size as u64;
        let file = tokio::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .await
            .map_err(io)?
            .into_std()
            .await;
        // One writer at a time, across the nodes sharing the directory too
        // (the lock goes with the file when this request ends).
        if let Err(e) = file.try_lock() {
            return Err(match e {
                std::fs::TryLockError::WouldBlock => busy(),
                std::fs::TryLockError::Error(e) => io(e),
            });
        }
        // Each chunk is written as it came, on a blocking thread, without a
        // copy: memory per upload is the connection's read buffer alone.
        let mut file = Some(file);
        let mut written = held;
        let mut stream = body.into_data_stream();
        let mut over = false;
        loop {
            let chunk = match tokio::time::timeout(IDLE_BODY, stream.next()).await {
                Ok(Some(Ok(chunk))) => chunk,
                // The end, a dropped connection or a stalled one: keep what
                // arrived, so the client resumes from there.
                Ok(None) | Ok(Some(Err(_))) | Err(_) => break,
            };
            if written + chunk.len() as u64 > size {
                over = true;
                break;
            }
            let len = chunk.len() as u64;
            let mut f = file.take().ok_or_else(Error::internal)?;
            let (f, done) = tokio::task::spawn_blocking(move || {
                use std::io::Write as _;
                let done = f.write_all(&chunk);
                (f, done)
            })
            .await
            .map_err(|_| Error::internal())?;
            done.map_err(io)?;
            file = Some(f);
            written += len;
        }
        let file = file.ok_or_else(Error::internal)?;
        let keep = if over { held } else { written };
        let file = tokio::task::spawn_blocking(move || {
            if over {
                // Nothing of this request is kept: the client sent a body
                // larger than the upload it asked for.
                file.set_len(keep)?;
            }
            file.sync_data().map(|()| file)
        })
        .await
        .map_err(|_| Error::internal())?
        .map_err(io)?;
        if over {
            return Err(Error::too_large(format!(
                "the body goes past the upload's {size} bytes"
            )));
        }
        Ok((written, file))
    }

    /// Every byte is there: sniff, check, process, store; the upload is
    /// ready, or refused and removed.
    async fn finish_upload(&self, app: &str, upload: Upload) -> Result<Attachment> {
        match self.derive(app, &upload).await {
            Ok((derived, cleaned, thumbnail, permit)) => {
                self.files
                    .blobs
                    .commit(app, &upload.id, Outputs { cleaned, thumbnail })
                    .await
                    .map_err(io)?;
                // The decode's memory is given back once its output is written.
                drop(permit);
                if !self.store.upload_ready(app, &upload.id, &derived).await? {
                    // Deleted meanwhile (its conversation or user went): its
                    // files go now, as the sweeper may have passed already.
                    if self.store.upload(app, &upload.id).await?.is_none() {
                        let _ = self.files.blobs.remove(app, &upload.id).await;
                    }
                    return Err(Error::not_found("upload"));
                }
                if let Err(e) = self.files.blobs.committed(app, &upload.id).await {
                    tracing::warn!(error = %e, "removing a stored upload's staged copy failed");
                }
                metrics::counter!("mkondo_uploads_completed_total").increment(1);
                let mut ready = upload;
                ready.state = "ready".to_owned();
                ready.content_type = derived.content_type;
                ready.width = derived.width;
                ready.height = derived.height;
                ready.thumbnail = derived.thumbnail;
                ready.blurhash = derived.blurhash;
                ready.size = derived.size;
                Ok(Attachment::from(&ready))
            }
            Err(Unfinished::Refused(refused)) => {
                metrics::counter!("mkondo_uploads_refused_total").increment(1);
                self.store.refuse_upload(app, &upload.id).await?;
                if let Err(e) = self.files.blobs.remove(app, &upload.id).await {
                    tracing::warn!(error = %e, "removing a refused upload's bytes failed; the sweeper retries");
                }
                Err(refused)
            }
            Err(Unfinished::Failed(failed)) => Err(failed),
        }
    }

    /// Sniffs, checks and processes a complete upload's bytes: what to store
    /// (the cleaned image, the thumbnail) and, for an image, the decode permit
    /// to give back once they are written.
    async fn derive(
        &self,
        app: &str,
        upload: &Upload,
    ) -> std::result::Result<Processed, Unfinished> {
        let failed = Unfinished::Failed;
        let path = self.files.blobs.staging(app, &upload.id);
        let head = crate::files::blobs::read_head(&path, derive::SNIFF_BYTES as u64)
            .await
            .map_err(|e| failed(io(e)))?;
        let content_type = checked_type(&upload.declared_type, derive::sniff(&head))
            .map_err(Unfinished::Refused)?;
        let limits = self.app_file_limits(app).await.map_err(failed)?;
        if !type_allowed(&limits, &content_type) {
            return Err(Unfinished::Refused(Error::invalid(format!(
                "this app does not take {content_type} files"
            ))));
        }
        let mut derived = Derived {
            content_type,
            size: upload.size,
            ..Default::default()
        };
        let Some(image_type) = derive::decodable_type(&derived.content_type) else {
            return Ok((derived, None, None, None));
        };
        let permit = self
            .files
            .decodes
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| failed(Error::internal()))?;
        let max_alloc = self.config.files.image_max_alloc;
        let facts =
            tokio::task::spawn_blocking(move || derive::image_facts(&path, image_type, max_alloc))
                .await
                .map_err(|_| failed(Error::internal()))?;
        match facts {
            Ok(facts) => {
                derived.width = facts.width.into();
                derived.height = facts.height.into();
                derived.thumbnail = true;
                derived.blurhash = facts.blurhash;
                if let Some(cleaned) = &facts.cleaned {
                    // What is served, and what a download's length says.
                    derived.size = cleaned.len() as i64;
                }
                Ok((derived, facts.cleaned, Some(facts.thumbnail), Some(permit)))
            }
            Err(derive::ImageRefusal::TooLarge(why)) => Err(Unfinished::Refused(Error::too_large(
                format!("the image is larger than this server decodes: {why}"),
            ))),
            Err(derive::ImageRefusal::Unreadable(t)) => Err(Unfinished::Refused(Error::invalid(
                format!("the bytes are not a readable {t}"),
            ))),
            Err(derive::ImageRefusal::Io(e)) => Err(failed(io(e))),
        }
    }

    /// Claims the uploads a send names (see `Store::claim_uploads`), in the
    /// order given, after checking the list.
    pub(super) async fn claim_attachments(
        &self,
        app: &str,
        conv: &str,
        sender: &str,
        ids: &[String],
    ) -> Result<Vec<Attachment>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids = super::requests::distinct(ids.to_vec(), MAX_ATTACHMENTS, "attachment_ids")?;
        if let Some(bad) = ids.iter().find(|id| !crate::files::valid_upload_id(id)) {
            return Err(Error::invalid(format!("{bad:?} is not an upload id")));
        }
        let claimed = self.store.claim_uploads(app, conv, sender, &ids).await?;
        Ok(claimed.iter().map(Attachment::from).collect())
    }

    /// Gives back the uploads of a send that failed.
    pub(super) async fn release_attachments(&self, app: &str, attachments: &[Attachment]) {
        let ids: Vec<String> = attachments.iter().map(|a| a.id.clone()).collect();
        if let Err(e) = self.store.release_uploads(app, &ids).await {
            tracing::warn!(error = %e, "releasing the uploads of a failed send; they are swept in a day");
        }
    }

    /// Links to read attachments of messages in `conv`, for a member (the
    /// backend: any conversation of the app). Each must be attached to a
    /// message of this conversation the member can see.
    pub async fn attachment_links(
        &self,
        app: &str,
        actor: Actor<'_>,
        conv: &str,
        ids: &[String],
    ) -> Result<(Vec<AttachmentLink>, i64)> {
        let links = self.secrets()?;
        let ids = super::requests::distinct(ids.to_vec(), 100, "attachment_ids")?;
        if ids.is_empty() {
            return Err(Error::invalid("attachment_ids names no attachment"));
        }
        if let Some(bad) = ids.iter().find(|id| !crate::files::valid_upload_id(id)) {
            return Err(Error::invalid(format!("{bad:?} is not an attachment id")));
        }
        let c = self.visible_conversation(app, actor, conv).await?;
        let floor = c.viewer.as_ref().map_or(0, |v| v.cleared_seq);
        let uploads = self.store.uploads(app, &ids).await?;
        let exp = now_ms() / 1000 + self.config.files.url_ttl.as_secs() as i64;
        let mut out = Vec::with_capacity(ids.len());
        for id in &ids {
            let upload = uploads
                .iter()
                .find(|u| &u.id == id)
                .filter(|u| {
                    u.conversation_id == conv
                        && u.state == "attached"
                        && u.message_seq.is_some_and(|seq| seq > floor)
                })
                .ok_or_else(|| Error::not_found("attachment"))?;
            let link = |variant: Variant| {
                let sig = links.sign_link(&download_parts(app, id, variant, exp));
                let tail = match variant {
                    Variant::Original => "",
                    Variant::Thumbnail => "/thumbnail",
                };
                format!("/v1/files/{app}/{id}{tail}?exp={exp}&sig={sig}")
            };
            out.push(AttachmentLink {
                id: id.clone(),
                url: link(Variant::Original),
                thumbnail_url: if upload.thumbnail {
                    link(Variant::Thumbnail)
                } else {
                    String::new()
                },
            });
        }
        Ok((out, exp * 1000))
    }

    /// The file a download link names, if its signature and expiry hold and
    /// the file is still attached.
    pub async fn download(
        &self,
        app: &str,
        id: &str,
        variant: Variant,
        grant: &Grant,
    ) -> Result<Download> {
        let links = self.secrets()?;
        let (Some(exp), Some(sig)) = (grant.exp, grant.sig.as_deref()) else {
            return Err(Error::unauthenticated("the link is not signed"));
        };
        if !crate::files::valid_upload_id(id)
            || !crate::files::valid_dir_name(app)
            || !links.verify_link(&download_parts(app, id, variant, exp), sig)
        {
            return Err(Error::denied("the link's signature is not valid"));
        }
        let left = exp - now_ms() / 1000;
        if left < 0 {
            return Err(Error::denied(
                "the link expired: ask for the attachment again",
            ));
        }
        let upload = self
            .store
            .upload(app, id)
            .await?
            .filter(|u| u.state == "attached" && (variant == Variant::Original || u.thumbnail))
            .ok_or_else(|| Error::not_found("file"))?;
        let (content_type, inline) = match variant {
            Variant::Original => (
                upload.content_type.clone(),
                derive::inline_image(&upload.content_type),
            ),
            Variant::Thumbnail => {
                let head = self
                    .files
                    .blobs
                    .head(app, id, variant, derive::SNIFF_BYTES as u64)
                    .await
                    .map_err(io)?;
                let t = derive::sniff(&head).unwrap_or("image/jpeg");
                (t.to_owned(), true)
            }
        };
        Ok(Download {
            file: self.files.blobs.stored(app, id, variant),
            content_type,
            name: upload.name,
            inline,
            max_age: left as u64,
        })
    }

    /// Removes the bytes of deleted uploads and of orphans, every
    /// `--file-sweep-interval-ms` (`mkondo_files_swept_total`).
    pub async fn run_file_sweeper(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.config.files.sweep_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(e) = self.sweep_files().await {
                tracing::warn!(error = %e, "sweeping deleted files failed; trying again later");
            }
        }
    }

    async fn sweep_files(&self) -> Result<()> {
        let orphan_after = self.config.files.orphan_after.as_millis() as i64;
        loop {
            let swept = self.store.uploads_to_sweep(orphan_after, 200).await?;
            let n = swept.len();
            let mut removed = 0;
            for s in swept {
                // Still receiving bytes here, or on another node sharing the
                // directory (it holds the staging file's lock): next time.
                let here = (s.app_id.clone(), s.id.clone());
                if self.files.receiving.contains_key(&here)
                    || self.files.blobs.staging_in_use(&s.app_id, &s.id)
                {
                    continue;
                }
                self.files
                    .blobs
                    .remove(&s.app_id, &s.id)
                    .await
                    .map_err(io)?;
                self.store.forget_upload(&s.app_id, &s.id).await?;
                metrics::counter!("mkondo_files_swept_total").increment(1);
                removed += 1;
            }
            // A full batch of which nothing could go now would come back
            // whole: stop, the next tick tries again.
            if n < 200 || removed == 0 {
                break;
            }
        }
        self.store.purge_gone_uploads().await?;
        Ok(())
    }
}

/// `input` over `limits`, checked (the operator API and the CLI).
pub fn merge_limits(mut limits: FileLimits, input: FilesInput) -> Result<FileLimits> {
    if let Some(max) = input.max_bytes {
        if max.is_some_and(|m| !(1..=MAX_FILE_BYTES).contains(&m)) {
            return Err(Error::invalid("files.max_bytes must be 1 byte to 5 GiB"));
        }
        limits.max_bytes = max;
    }
    if let Some(types) = input.types {
        let types = match types {
            Some(types) => Some(super::requests::distinct(types, 50, "files.types")?),
            None => None,
        };
        if let Some(bad) = types.iter().flatten().find(|t| {
            let family = t.strip_suffix("/*").map(|f| format!("{f}/x"));
            !valid_type(family.as_deref().unwrap_or(t)) || t.to_ascii_lowercase() != **t
        }) {
            return Err(Error::invalid(format!(
                "files.types: {bad:?} is not a lower-case media type or family/*"
            )));
        }
        limits.types = types;
    }
    for (name, given, slot) in [
        (
            "user_daily_bytes",
            input.user_daily_bytes,
            &mut limits.user_daily_bytes,
        ),
        (
            "app_total_bytes",
            input.app_total_bytes,
            &mut limits.app_total_bytes,
        ),
    ] {
        if let Some(value) = given {
            if value.is_some_and(|v| v < 0) {
                return Err(Error::invalid(format!("files.{name} must be at least 0")));
            }
            *slot = value;
        }
    }
    Ok(limits)
}

/// What an upload grant signs.
struct UploadParts<'a> {
    app: &'a str,
    upload: &'a Upload,
    exp: String,
}

impl UploadParts<'_> {
    fn each(&self) -> [&str; 6] {
        [
            "upload",
            self.app,
            &self.upload.id,
            &self.upload.conversation_id,
            &self.upload.user_id,
            &self.exp,
        ]
    }
}

fn upload_parts<'a>(app: &'a str, upload: &'a Upload, exp: i64) -> UploadParts<'a> {
    UploadParts {
        app,
        upload,
        exp: exp.to_string(),
    }
}

fn download_parts<'a>(app: &'a str, id: &'a str, variant: Variant, exp: i64) -> [String; 5] {
    [
        "file".to_owned(),
        app.to_owned(),
        id.to_owned(),
        variant.as_str().to_owned(),
        exp.to_string(),
    ]
}

/// `type/subtype`, lower case, the characters RFC 6838 allows.
fn valid_type(t: &str) -> bool {
    let ok = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    t.len() <= MAX_TYPE_BYTES && t.split_once('/').is_some_and(|(a, b)| ok(a) && ok(b))
}

/// Whether the app's allowed types (`image/png`, `image/*`) take `t`.
fn type_allowed(limits: &FileLimits, t: &str) -> bool {
    let Some(types) = &limits.types else {
        return true;
    };
    types
        .iter()
        .any(|allowed| match allowed.strip_suffix("/*") {
            Some(family) => t.split('/').next() == Some(family),
            None => allowed == t,
        })
}

/// The file store failed: logged, and unavailable to the caller.
pub(crate) fn io(e: std::io::Error) -> Error {
    tracing::error!(error = %e, "file storage failed");
    Error::new(
        mkondo_proto::ErrorCode::Unavailable,
        "the file store is not available",
    )
}

/// Another request (on this node or another sharing the directory) is
/// sending or processing the upload: temporary, so a client waits and asks
/// again (a 409 would read as a wrong offset or a complete upload).
fn busy() -> Error {
    Error {
        retry_after_ms: 1000,
        ..Error::new(
            mkondo_proto::ErrorCode::Unavailable,
            "another request is sending or processing this upload's bytes; try again shortly",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_are_checked_and_families_allowed() {
        assert!(valid_type("image/png"));
        assert!(valid_type("application/vnd.ms-excel"));
        for bad in [
            "image",
            "/png",
            "image/",
            "image/png; charset=x",
            "a/b/c",
            "ïmage/png",
        ] {
            assert!(!valid_type(bad), "{bad}");
        }
        let limits = FileLimits {
            types: Some(vec!["image/*".into(), "application/pdf".into()]),
            ..Default::default()
        };
        assert!(type_allowed(&limits, "image/webp"));
        assert!(type_allowed(&limits, "application/pdf"));
        assert!(!type_allowed(&limits, "application/zip"));
        assert!(!type_allowed(&limits, "imagex/png"));
        assert!(type_allowed(&FileLimits::default(), "application/zip"));
    }
}
