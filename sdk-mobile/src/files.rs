//! Files: uploads (`Client::upload` and its `Upload` handle, the listener
//! told its progress), the attachments of messages and their links.

use std::sync::Arc;

use mkondo_sdk::v1;

use crate::client::Client;
use crate::error::MkondoError;
use crate::runtime;
use crate::types::ms;

type Result<T, E = MkondoError> = std::result::Result<T, E>;

/// A file in a message, as the server derived it: images have `width`,
/// `height`, a `blurhash` to paint at once and (`thumbnail`) a thumbnail of
/// at most 320 px.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct Attachment {
    pub id: String,
    pub name: String,
    pub content_type: String,
    pub size: u64,
    pub width: u32,
    pub height: u32,
    pub thumbnail: bool,
    pub blurhash: String,
}

impl From<v1::Attachment> for Attachment {
    fn from(a: v1::Attachment) -> Self {
        Self {
            id: a.id,
            name: a.name,
            content_type: a.content_type,
            size: a.size,
            width: a.width,
            height: a.height,
            thumbnail: a.thumbnail,
            blurhash: a.blurhash,
        }
    }
}

/// Where an upload's bytes come from.
#[derive(Debug, Clone, PartialEq, uniffi::Enum)]
pub enum FileSource {
    /// A file, read as it is sent (never whole in memory).
    Path {
        path: String,
    },
    Bytes {
        bytes: Vec<u8>,
    },
}

/// A file to upload into a conversation.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct NewUpload {
    pub conversation_id: String,
    /// The name members see (1-255 bytes).
    pub name: String,
    /// The declared media type (`image/jpeg`, `application/pdf`…).
    pub content_type: String,
    pub source: FileSource,
}

impl From<NewUpload> for mkondo_sdk::NewUpload {
    fn from(u: NewUpload) -> Self {
        Self {
            conversation_id: u.conversation_id,
            name: u.name,
            content_type: u.content_type,
            source: match u.source {
                FileSource::Path { path } => mkondo_sdk::UploadSource::Path(path.into()),
                FileSource::Bytes { bytes } => mkondo_sdk::UploadSource::Bytes(bytes.into()),
            },
        }
    }
}

/// Signed links to read one attachment (absolute, valid until the result's
/// `expires_at_ms`); `thumbnail_url` is empty without a thumbnail.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct AttachmentUrl {
    pub id: String,
    pub url: String,
    pub thumbnail_url: String,
}

#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct AttachmentUrls {
    /// In the order asked.
    pub urls: Vec<AttachmentUrl>,
    pub expires_at_ms: Option<i64>,
}

impl From<v1::AttachmentUrlsResult> for AttachmentUrls {
    fn from(r: v1::AttachmentUrlsResult) -> Self {
        Self {
            expires_at_ms: ms(r.expires_at.as_ref()),
            urls: (r.urls.into_iter())
                .map(|u| AttachmentUrl {
                    id: u.id,
                    url: u.url,
                    thumbnail_url: u.thumbnail_url,
                })
                .collect(),
        }
    }
}

#[uniffi::export(async_runtime = "tokio")]
impl Client {
    /// Uploads a file (a path, or bytes) into a conversation, in the
    /// background; `listener` is told the progress. Name `upload.id()` in a
    /// message's `attachment_ids`: the message waits until the bytes are sent.
    pub fn upload(
        &self,
        upload: NewUpload,
        listener: Option<Arc<dyn UploadListener>>,
    ) -> Arc<Upload> {
        let progress = listener.map(|l| -> mkondo_sdk::ProgressFn {
            Arc::new(move |sent, total| l.on_progress(sent, total))
        });
        let _entered = runtime().enter();
        Arc::new(Upload {
            core: self.inner.upload(upload.into(), progress),
        })
    }

    /// Signed links (absolute, valid about an hour) to read attachments of
    /// messages in a conversation (at most 100).
    pub async fn attachment_urls(
        &self,
        conversation_id: String,
        attachment_ids: Vec<String>,
    ) -> Result<AttachmentUrls> {
        let ids: Vec<&str> = attachment_ids.iter().map(String::as_str).collect();
        let call = self.inner.attachment_urls(&conversation_id, &ids);
        Ok(call.await?.into())
    }
}

/// Told an upload's progress: `sent` of `total` bytes. Called on a thread of
/// the SDK's runtime; return quickly.
#[uniffi::export(with_foreign)]
pub trait UploadListener: Send + Sync {
    fn on_progress(&self, sent: u64, total: u64);
}

/// An upload in progress (`Client.upload`).
#[derive(uniffi::Object)]
pub struct Upload {
    core: mkondo_sdk::Upload,
}

#[uniffi::export(async_runtime = "tokio")]
impl Upload {
    /// The upload's id once the server granted it: name it in a message's
    /// `attachment_ids` (the message waits for the bytes).
    pub async fn id(&self) -> Result<String> {
        Ok(self.core.id().await?)
    }

    /// The id once the server holds every byte; the server's refusal, or
    /// `Cancelled`.
    pub async fn finished(&self) -> Result<String> {
        Ok(self.core.finished().await?)
    }

    /// Bytes sent so far.
    pub fn sent(&self) -> u64 {
        self.core.status().sent
    }

    /// The file's size.
    pub fn total(&self) -> u64 {
        self.core.status().total
    }

    /// Stops it: `finished()`, and a message waiting for it, fail with
    /// `Cancelled`.
    pub fn cancel(&self) {
        self.core.cancel();
    }
}
