//! Files: an upload asks the server for a grant (`create_upload`), then sends
//! the bytes over tus 1.0 (`PATCH` from `Upload-Offset`; `HEAD` for the bytes
//! the server holds). Everything but the two HTTP requests is here, once for
//! every platform: `transport/http.rs` (native, hyper) and `transport/xhr.rs`
//! (browsers, `XMLHttpRequest` over `Blob` slices, for upload progress) only
//! carry them.
//!
//! - A connection cut mid-body (a network change, a reconnect, a restarted
//!   node) is retried after a backoff delay from what reached the server.
//! - A grant that expired meanwhile is renewed (`create_upload` with the
//!   upload's id).
//! - Done means a `PATCH` said so: a `HEAD` answering the whole size (the
//!   answer to the last byte was lost) is confirmed by an empty `PATCH` at
//!   the end, which answers once the server processed the file (409 when it
//!   was ready already; 503 while another request still processes it).
//! - A refusal (too large, a type the app does not take, a spoofed image)
//!   ends the upload with the server's error; so does a file that can no
//!   longer be read.
//! - The outbox knows which uploads this client is sending: a message naming
//!   one waits for it, and is sent once, after it finished; one naming an
//!   upload that failed fails alike.
//!
//! An upload lives as long as the client: `shutdown` stops it, one cut off
//! by a restart is not resumed (the server removes what it held after a
//! day), and a message that waited for it in a durable outbox is refused
//! `not_found` when sent.

use std::sync::Mutex;
use std::time::Duration;

use mkondo_proto::v1;
use tokio::sync::watch;

use crate::backoff::{Backoff, Rng};
use crate::client::Client;
use crate::error::{Error, Result};
use crate::rt;
use crate::session::Input;

#[cfg(not(target_arch = "wasm32"))]
use crate::transport::http as wire;
#[cfg(target_arch = "wasm32")]
use crate::transport::xhr as wire;

/// Where an upload's bytes come from.
#[derive(Clone)]
pub enum UploadSource {
    Bytes(bytes::Bytes),
    /// A file, read as it is sent (never whole in memory).
    #[cfg(not(target_arch = "wasm32"))]
    Path(std::path::PathBuf),
    /// A `File` or `Blob`: slices of it are handed to the browser, which reads
    /// them itself.
    #[cfg(target_arch = "wasm32")]
    Blob(web_sys::Blob),
}

impl std::fmt::Debug for UploadSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
            #[cfg(not(target_arch = "wasm32"))]
            Self::Path(p) => write!(f, "Path({})", p.display()),
            #[cfg(target_arch = "wasm32")]
            Self::Blob(b) => write!(f, "Blob({} bytes)", b.size()),
        }
    }
}

impl UploadSource {
    /// Its size in bytes.
    pub fn size(&self) -> Result<u64> {
        Ok(match self {
            Self::Bytes(b) => b.len() as u64,
            #[cfg(not(target_arch = "wasm32"))]
            Self::Path(p) => std::fs::metadata(p)
                .map_err(|e| Error::InvalidArgument(format!("{}: {e}", p.display())))?
                .len(),
            #[cfg(target_arch = "wasm32")]
            Self::Blob(b) => b.size() as u64,
        })
    }
}

/// A file to upload into a conversation.
#[derive(Debug, Clone)]
pub struct NewUpload {
    pub conversation_id: String,
    /// The name shown to members (1-255 bytes).
    pub name: String,
    /// The declared media type (`image/jpeg`, `application/pdf`…); an image
    /// whose bytes are another type is refused.
    pub content_type: String,
    pub source: UploadSource,
}

/// Called with `(sent, total)` bytes as they leave.
#[cfg(not(target_arch = "wasm32"))]
pub type ProgressFn = std::sync::Arc<dyn Fn(u64, u64) + Send + Sync>;
/// Called with `(sent, total)` bytes as they leave.
#[cfg(target_arch = "wasm32")]
pub type ProgressFn = std::rc::Rc<dyn Fn(u64, u64)>;

/// Where an upload is.
#[derive(Debug, Clone, PartialEq)]
pub struct UploadStatus {
    /// Known once the server granted the upload.
    pub id: Option<String>,
    pub sent: u64,
    pub total: u64,
    /// `Some` once it ended: sent (the server holds it, processed), or why not.
    pub outcome: Option<Result<(), Error>>,
}

/// An upload in progress (see [`Client::upload`]). Cheap to clone.
#[derive(Clone)]
pub struct Upload {
    status: watch::Receiver<UploadStatus>,
    cancel: futures::future::AbortHandle,
}

impl Upload {
    /// The upload's id, to name in [`NewMessage::attachment_ids`] as soon as
    /// it is known (the message waits for the bytes).
    ///
    /// [`NewMessage::attachment_ids`]: crate::NewMessage::attachment_ids
    pub async fn id(&self) -> Result<String> {
        self.wait(false).await
    }

    /// Resolves with the upload's id once the server holds all of it.
    pub async fn finished(&self) -> Result<String> {
        self.wait(true).await
    }

    /// The id, once known (or once finished): one future for both, as the web
    /// package pays for each future type.
    async fn wait(&self, finished: bool) -> Result<String> {
        let mut status = self.status.clone();
        let status = status
            .wait_for(|s| s.outcome.is_some() || (!finished && s.id.is_some()))
            .await
            .map_err(|_| Error::Shutdown)?;
        match (&status.id, &status.outcome) {
            (_, Some(Err(e))) if finished => Err(e.clone()),
            // The id, even of an upload that ended since: a message naming
            // it fails as the upload did.
            (Some(id), _) => Ok(id.clone()),
            (None, Some(Err(e))) => Err(e.clone()),
            (None, _) => Err(Error::Shutdown),
        }
    }

    /// Where it is now.
    pub fn status(&self) -> UploadStatus {
        self.status.borrow().clone()
    }

    /// Stops sending: the upload ends with [`Error::Cancelled`], and so does a
    /// message waiting for it. What the server held is removed after a day.
    pub fn cancel(&self) {
        self.cancel.abort();
    }
}

/// What the uploads of one client share: the server's HTTP origin, the TLS
/// trust (native), the retry delays.
pub(crate) struct Http {
    pub base: String,
    pub min_delay: Duration,
    pub max_delay: Duration,
    #[cfg(not(target_arch = "wasm32"))]
    pub tls: std::sync::Arc<crate::transport::tls::TlsConfigs>,
    pub rng: Mutex<Rng>,
}

/// How one tus request went wrong.
#[derive(Debug)]
pub(crate) enum TusError {
    /// No answer: the connection failed or was cut.
    Network(String),
    /// The server answered this status (with its error, from the JSON body).
    Status(u16, Error),
    /// The file could not be read (gone, shortened, unreadable): final.
    /// Native only: a browser reads the `Blob` itself, and a read error
    /// there reads as a failed request.
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    Source(String),
}

/// `path` (from the server) on the server's origin; absolute URLs are kept.
pub fn absolute(base: &str, path: &str) -> String {
    if path.starts_with("http://") || path.starts_with("https://") {
        path.to_owned()
    } else {
        format!("{}{path}", base.trim_end_matches('/'))
    }
}

/// The error of a tus answer: the server's `{"error": {code, message}}`, or
/// the status alone.
pub(crate) fn status_error(status: u16, body: &str) -> Error {
    // From a `str`, as the rest of the client parses JSON: a second
    // deserializer would weigh on the web package.
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let field = |name: &str| {
        parsed
            .as_ref()
            .and_then(|v| v["error"][name].as_str())
            .map(str::to_owned)
    };
    Error::Server {
        code: mkondo_proto::ErrorCode::parse(&field("code").unwrap_or_default()),
        message: field("message").unwrap_or_else(|| format!("the upload got HTTP {status}")),
        temporary: status >= 500 || status == 429,
        retry_after: None,
        reason: field("reason").unwrap_or_default(),
    }
}

impl Client {
    /// Uploads a file into a conversation the user is a member of, in the
    /// background: `progress` is told `(sent, total)` as bytes leave. Name
    /// the upload's id ([`Upload::id`]) in a message's `attachment_ids`: the
    /// message waits in the outbox until the upload finished, then is sent once.
    pub fn upload(&self, file: NewUpload, progress: Option<ProgressFn>) -> Upload {
        let total = file.source.size();
        let (status_tx, status) = watch::channel(UploadStatus {
            id: None,
            sent: 0,
            total: *total.as_ref().unwrap_or(&0),
            outcome: None,
        });
        let (cancel, registration) = futures::future::AbortHandle::new_pair();
        let ticket = self.track_upload(cancel.clone());
        let handle = Upload { status, cancel };
        let task = Task {
            client: self.clone(),
            file,
            status: status_tx,
            progress,
        };
        rt::spawn(async move {
            let total = match total {
                Ok(total) => total,
                Err(e) => {
                    task.client.untrack_upload(ticket);
                    return task.end(Err(e));
                }
            };
            let run = futures::future::Abortable::new(task.run(total), registration);
            // Aborted: by `cancel`, or by `shutdown`.
            let outcome = run.await.unwrap_or_else(|_| {
                Err(if task.client.is_shut() {
                    Error::Shutdown
                } else {
                    Error::Cancelled
                })
            });
            task.client.untrack_upload(ticket);
            task.end(outcome);
        });
        handle
    }
}

struct Task {
    client: Client,
    file: NewUpload,
    status: watch::Sender<UploadStatus>,
    progress: Option<ProgressFn>,
}

impl Task {
    async fn run(&self, total: u64) -> Result<()> {
        let grant = self.grant(total).await?;
        let id = grant.id.clone();
        // The outbox learns of it before the caller does, so a message naming
        // it (made after `id()` resolved) waits.
        self.client.input(Input::UploadStarted(id.clone()));
        self.status.send_modify(|s| {
            s.id = Some(id);
            s.sent = grant.offset;
        });
        self.send(grant, total).await
    }

    /// The grant: `create_upload`, retried while the client cannot reach the
    /// server (offline, reconnecting).
    async fn grant(&self, total: u64) -> Result<v1::UploadResult> {
        let f = &self.file;
        let mut backoff = self.backoff();
        loop {
            let call =
                self.client
                    .create_upload(&f.conversation_id, &f.name, total, &f.content_type);
            match call.await {
                Err(e) if e.temporary() => self.wait(&mut backoff).await?,
                other => return other,
            }
        }
    }

    /// Sends the bytes from the grant's offset until the server holds them all.
    async fn send(&self, mut grant: v1::UploadResult, total: u64) -> Result<()> {
        let http = self.client.http();
        let mut backoff = self.backoff();
        let mut url = absolute(&http.base, &grant.url);
        // `None`: ask the server what it holds (after a cut or a conflict).
        let mut offset = Some(grant.offset);
        let mut held_before = grant.offset;
        let mut renewed = false;
        loop {
            let answer = match offset {
                None => wire::head(http, &url).await,
                Some(from) => {
                    let on_sent = |sent: u64| self.sent(sent, total);
                    wire::patch(http, &url, &self.file.source, from, total, &on_sent).await
                }
            };
            let patched = offset.is_some();
            match answer {
                // The last byte was taken and the upload processed.
                Ok(held) if patched && held >= total => {
                    self.sent(total, total);
                    return Ok(());
                }
                // Where to go on from. A HEAD answering the whole size says
                // every byte arrived, not that it is ready: the empty PATCH
                // at the end that follows has it processed, or answers 409
                // when it is ready already.
                Ok(held) => {
                    if held > held_before {
                        backoff.reset();
                    } else if patched {
                        // The server kept nothing of that body.
                        self.wait(&mut backoff).await?;
                    }
                    held_before = held;
                    offset = Some(held);
                    self.sent(held, total);
                    renewed = false;
                }
                Err(TusError::Status(409, _)) if offset == Some(total) => {
                    self.sent(total, total);
                    return Ok(());
                }
                // The grant expired: a fresh grant (which the server refuses
                // once the upload or the membership is gone), from where the
                // server is; after a delay when the last one did not help.
                Err(TusError::Status(403, _)) => {
                    if renewed {
                        self.wait(&mut backoff).await?;
                    }
                    grant = self.renew(&grant.id).await?;
                    url = absolute(&http.base, &grant.url);
                    offset = Some(grant.offset);
                    renewed = true;
                }
                Err(TusError::Source(why)) => return Err(Error::InvalidArgument(why)),
                Err(TusError::Status(status, e)) if status != 409 && !e.temporary() => {
                    return Err(e)
                }
                // Cut, busy elsewhere (503), or not the server's offset (409).
                Err(error) => {
                    let why = match error {
                        TusError::Network(why) | TusError::Source(why) => why,
                        TusError::Status(_, e) => e.to_string(),
                    };
                    tracing::debug!(%why, "an upload request failed; resuming after a delay");
                    self.wait(&mut backoff).await?;
                    offset = None;
                }
            }
        }
    }

    /// A fresh grant for the upload, retried while the server is out of reach.
    async fn renew(&self, id: &str) -> Result<v1::UploadResult> {
        let mut backoff = self.backoff();
        loop {
            match self
                .client
                .resume_upload(&self.file.conversation_id, id)
                .await
            {
                Err(e) if e.temporary() => self.wait(&mut backoff).await?,
                other => return other,
            }
        }
    }

    fn sent(&self, sent: u64, total: u64) {
        self.status.send_modify(|s| s.sent = sent);
        if let Some(progress) = &self.progress {
            progress(sent, total);
        }
    }

    fn backoff(&self) -> Backoff {
        let http = self.client.http();
        Backoff::new(http.min_delay, http.max_delay)
    }

    /// A backoff delay; fails when the client was shut down meanwhile.
    async fn wait(&self, backoff: &mut Backoff) -> Result<()> {
        let http = self.client.http();
        let delay = backoff.next_delay(&mut http.rng.lock().unwrap());
        rt::sleep_until(rt::now() + delay).await;
        if self.client.is_shut() {
            return Err(Error::Shutdown);
        }
        Ok(())
    }

    fn end(&self, outcome: Result<()>) {
        if let Some(id) = self.status.borrow().id.clone() {
            let result = outcome.clone();
            self.client.input(Input::UploadEnded { id, result });
        }
        self.status.send_modify(|s| s.outcome = Some(outcome));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_paths_are_made_absolute_on_its_origin() {
        assert_eq!(
            absolute("http://h:1", "/v1/files/a/b?sig=x"),
            "http://h:1/v1/files/a/b?sig=x"
        );
        assert_eq!(absolute("https://h/", "/v1/x"), "https://h/v1/x");
        assert_eq!(absolute("https://h", "https://cdn/x"), "https://cdn/x");
    }

    #[test]
    fn a_tus_refusal_reads_as_the_servers_error() {
        let body = r#"{"error":{"code":"too_large","message":"over 25 MiB","reason":"x"}}"#;
        let e = status_error(413, body);
        assert_eq!(e.code(), mkondo_proto::ErrorCode::TooLarge);
        assert!(!e.temporary());
        assert_eq!(e.to_string(), "too_large: over 25 MiB");
        assert!(status_error(503, "<html>").temporary());
        assert!(!status_error(404, "").temporary());
    }
}
