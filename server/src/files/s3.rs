//! Ready files in an S3-compatible bucket (`--blob-store s3://…`, see
//! [`S3Url`]): `<app>/<id>` and `<app>/<id>.thumb`. Uploads still arrive on
//! local disk (staging, see [`super::blobs::LocalBlobs`]); a finished one is
//! copied here, the staged file read in parts (a multipart upload past
//! [`PART_BYTES`]), and the database says it is ready only once the bucket
//! has it. A multipart upload that does not complete is aborted, whether a
//! part failed or its future was dropped (the client's `PATCH` connection
//! went away mid-copy), so no parts are left stored and billed. Reads are
//! streamed back through the node, ranges included, so the node keeps its
//! response headers and its per-request link check.
//!
//! Every request is bounded (a few retries within [`RETRY_WINDOW`],
//! [`REQUEST_TIMEOUT`] each): a bucket that is down fails a request in
//! seconds, not after object_store's default of ten retries over three
//! minutes. Where the bucket is comes from the URL alone; the environment
//! gives only credentials ([`CREDENTIAL_VARS`]).

use std::io;
use std::ops::Range;
use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt as _;
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path;
use object_store::{
    ClientOptions, GetOptions, GetRange, MultipartUpload, ObjectStore, PutPayload, RetryConfig,
};
use tokio::io::AsyncReadExt as _;
use tokio::task::JoinSet;

use super::blobs::{Outputs, Variant};
pub use super::s3_url::S3Url;

/// A multipart upload's part size: S3's smallest but for the last part.
pub const PART_BYTES: usize = 5 << 20;
/// Parts sent at once while the next one is read from disk.
const PARTS_IN_FLIGHT: usize = 2;

/// How long one request may take, its body included: a 5 MiB part at
/// 1 Mbit/s takes 42 s.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A failed request is retried (at most [`MAX_RETRIES`] times) only this
/// long after it was first sent.
pub const RETRY_WINDOW: Duration = Duration::from_secs(10);
const MAX_RETRIES: usize = 3;
/// How long the check at start may take in all.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a download may wait for the bucket's next bytes.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// The object written, read back and deleted at start.
const PROBE: &str = ".mkondo-check";

/// The environment variables the client reads, all of them credentials:
/// static keys, an ECS task role, EKS pod identity and EKS web identity
/// (IRSA); without any, the instance's role (IMDS). Other `AWS_*` variables
/// object_store knows (`AWS_ENDPOINT`, `AWS_ALLOW_HTTP`, `AWS_REGION`,
/// `AWS_ALLOW_INVALID_CERTIFICATES`, `AWS_SKIP_SIGNATURE`…) are ignored, with
/// a warning at start: where the bucket is and how it is reached is what the
/// `--blob-store` URL says, and nothing in the environment changes it.
pub const CREDENTIAL_VARS: [&str; 10] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_ENDPOINT_URL_STS",
];

/// The bucket holding ready files.
#[derive(Debug, Clone)]
pub struct S3Blobs {
    /// Writes, deletes and `HEAD`s: each request within [`REQUEST_TIMEOUT`].
    store: Arc<AmazonS3>,
    /// Downloads, whose bodies go at the client's pace: no overall timeout,
    /// but an answer within [`REQUEST_TIMEOUT`] and no pause longer than
    /// [`IDLE_TIMEOUT`].
    reads: Arc<AmazonS3>,
    url: S3Url,
}

impl S3Blobs {
    /// A client of `url`'s bucket, with the credentials of the environment
    /// ([`CREDENTIAL_VARS`]).
    pub fn new(url: &S3Url) -> object_store::Result<Self> {
        Self::with_env(url, |var| std::env::var(var).ok())
    }

    fn with_env(url: &S3Url, env: impl Fn(&str) -> Option<String>) -> object_store::Result<Self> {
        let options = ClientOptions::new().with_connect_timeout(CONNECT_TIMEOUT);
        let builder = builder(url, env);
        Ok(Self {
            store: Arc::new(
                builder
                    .clone()
                    .with_client_options(options.clone().with_timeout(REQUEST_TIMEOUT))
                    .with_allow_http(allow_http(url))
                    .build()?,
            ),
            reads: Arc::new(
                builder
                    .with_client_options(options.with_timeout_disabled())
                    .with_allow_http(allow_http(url))
                    .build()?,
            ),
            url: url.clone(),
        })
    }

    /// At start: writes a small object, reads it back and deletes it, so a
    /// bucket that is missing, unreachable or refuses one of these (the
    /// credentials, or a policy without `s3:GetObject`) stops the start
    /// rather than the first upload or download. Within [`CHECK_TIMEOUT`].
    pub async fn check(&self) -> anyhow::Result<()> {
        warn_about_env(&self.url);
        let bucket = self.url.describe();
        match tokio::time::timeout(CHECK_TIMEOUT, self.probe()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(anyhow::anyhow!(
                "--blob-store: {bucket}: writing, reading back and deleting {PROBE} failed \
                 (the credentials come from {}): {e}",
                CREDENTIAL_VARS.join(", ")
            )),
            Err(_) => Err(anyhow::anyhow!(
                "--blob-store: {bucket} did not answer within {} s",
                CHECK_TIMEOUT.as_secs()
            )),
        }
    }

    async fn probe(&self) -> object_store::Result<()> {
        const BYTES: &[u8] = b"ok";
        let probe = Path::from(PROBE);
        self.store
            .put(&probe, PutPayload::from_static(BYTES))
            .await?;
        let read = match self.store.get(&probe).await {
            Ok(got) => got.bytes().await,
            Err(e) => Err(e),
        };
        // Deleted even when it could not be read.
        let deleted = self.store.delete(&probe).await;
        if read? != BYTES {
            return Err(object_store::Error::Generic {
                store: "S3",
                source: format!("{PROBE} was read back with other bytes than written").into(),
            });
        }
        deleted
    }

    fn key(app: &str, id: &str, variant: Variant) -> Path {
        match variant {
            Variant::Original => Path::from_iter([app, id]),
            Variant::Thumbnail => Path::from_iter([app, &format!("{id}.thumb")]),
        }
    }

    /// Stores a processed upload: the cleaned bytes, or else the staged file
    /// read from disk part by part; then its thumbnail.
    pub async fn commit(
        &self,
        app: &str,
        id: &str,
        staged: &FsPath,
        outputs: Outputs,
    ) -> object_store::Result<()> {
        let key = Self::key(app, id, Variant::Original);
        match outputs.cleaned {
            Some(bytes) => self.store.put(&key, bytes.into()).await.map(drop)?,
            None => self.put_file(&key, staged).await?,
        }
        if let Some(bytes) = outputs.thumbnail {
            let key = Self::key(app, id, Variant::Thumbnail);
            self.store.put(&key, bytes.into()).await?;
        }
        Ok(())
    }

    /// Copies a file to `key`: one PUT when it fits in a part, else a
    /// multipart upload holding at most a few parts in memory, aborted
    /// unless it completes.
    async fn put_file(&self, key: &Path, path: &FsPath) -> object_store::Result<()> {
        let io = |e: io::Error| object_store::Error::Generic {
            store: "S3",
            source: Box::new(e),
        };
        let mut file = tokio::fs::File::open(path).await.map_err(io)?;
        let mut part = read_part(&mut file).await.map_err(io)?;
        if part.len() < PART_BYTES {
            return self.store.put(key, part.into()).await.map(drop);
        }
        let mut upload = Multipart::new(self.store.put_multipart(key).await?);
        while !part.is_empty() {
            upload.send(part);
            upload.wait_for(PARTS_IN_FLIGHT - 1).await?;
            part = read_part(&mut file).await.map_err(io)?;
        }
        upload.complete().await
    }

    /// A stored file, to read.
    pub fn object(&self, app: &str, id: &str, variant: Variant) -> S3Object {
        S3Object {
            store: self.store.clone(),
            reads: self.reads.clone(),
            key: Self::key(app, id, variant),
        }
    }

    /// Deletes a file's objects; missing ones are fine.
    pub async fn remove(&self, app: &str, id: &str) -> object_store::Result<()> {
        for variant in [Variant::Original, Variant::Thumbnail] {
            match self.store.delete(&Self::key(app, id, variant)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// The client of `url`'s bucket but for its HTTP options: path-style
/// requests (`<endpoint>/<bucket>/<key>`, AWS's
/// `https://s3.<region>.amazonaws.com/<bucket>` without an endpoint), which
/// every S3-compatible store serves and which keep TLS working for bucket
/// names with dots; bounded retries; credentials from `env`.
fn builder(url: &S3Url, env: impl Fn(&str) -> Option<String>) -> AmazonS3Builder {
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(&url.bucket)
        .with_region(&url.region)
        .with_virtual_hosted_style_request(false)
        .with_retry(RetryConfig {
            max_retries: MAX_RETRIES,
            retry_timeout: RETRY_WINDOW,
            ..RetryConfig::default()
        });
    if let Some(endpoint) = &url.endpoint {
        builder = builder.with_endpoint(endpoint.as_str().trim_end_matches('/'));
    }
    for var in CREDENTIAL_VARS {
        if let Some(value) = env(var) {
            builder = builder.with_config(config_key(var).expect("an object_store key"), value);
        }
    }
    builder
}

/// Plain http only to an endpoint `S3Url::parse` let through as such.
fn allow_http(url: &S3Url) -> bool {
    url.endpoint.as_ref().is_some_and(|e| e.scheme() == "http")
}

fn config_key(var: &str) -> Option<AmazonS3ConfigKey> {
    var.to_ascii_lowercase().parse().ok()
}

/// Says at start which `AWS_*` variables object_store would have read but
/// this client does not (names only), and that files cross the network in
/// the clear over an opted-in plain http endpoint.
fn warn_about_env(url: &S3Url) {
    let ignored: Vec<String> = std::env::vars()
        .filter(|(var, value)| {
            let region = matches!(&**var, "AWS_REGION" | "AWS_DEFAULT_REGION");
            var.starts_with("AWS_")
                && !CREDENTIAL_VARS.contains(&&**var)
                && config_key(var).is_some()
                && !(region && *value == url.region)
        })
        .map(|(var, _)| var)
        .collect();
    if !ignored.is_empty() {
        tracing::warn!(
            ?ignored,
            "--blob-store: these AWS_* variables are ignored: the URL says where the \
             bucket is and how to reach it, the environment only gives credentials"
        );
    }
    if allow_http(url) {
        tracing::warn!(
            bucket = %url.describe(),
            "--blob-store: plain http: files cross the network unencrypted"
        );
    }
}

/// The next part of a file: [`PART_BYTES`], fewer at its end, none past it.
async fn read_part(file: &mut tokio::fs::File) -> io::Result<Vec<u8>> {
    let mut part = Vec::with_capacity(PART_BYTES);
    file.take(PART_BYTES as u64).read_to_end(&mut part).await?;
    Ok(part)
}

/// A multipart upload under way, aborted unless [`Self::complete`] succeeds:
/// on an error, and when dropped before (its future was), by a task spawned
/// on the runtime since an abort is a request. The parts in flight are tasks
/// that go on while the next part is read from disk, and end with it.
struct Multipart {
    /// `None` once completed.
    upload: Option<Box<dyn MultipartUpload>>,
    parts: JoinSet<object_store::Result<()>>,
}

impl Multipart {
    fn new(upload: Box<dyn MultipartUpload>) -> Self {
        Self {
            upload: Some(upload),
            parts: JoinSet::new(),
        }
    }

    fn send(&mut self, part: Vec<u8>) {
        if let Some(upload) = &mut self.upload {
            self.parts.spawn(upload.put_part(part.into()));
        }
    }

    /// Waits until at most `in_flight` parts are being sent; a failed part
    /// is an error (and the upload is aborted when this is dropped).
    async fn wait_for(&mut self, in_flight: usize) -> object_store::Result<()> {
        while self.parts.len() > in_flight {
            match self.parts.join_next().await {
                Some(Ok(sent)) => sent?,
                Some(Err(e)) => {
                    return Err(object_store::Error::Generic {
                        store: "S3",
                        source: Box::new(e),
                    })
                }
                None => break,
            }
        }
        Ok(())
    }

    async fn complete(mut self) -> object_store::Result<()> {
        self.wait_for(0).await?;
        if let Some(upload) = &mut self.upload {
            upload.complete().await?;
        }
        self.upload = None;
        Ok(())
    }
}

impl Drop for Multipart {
    fn drop(&mut self) {
        let Some(mut upload) = self.upload.take() else {
            return;
        };
        self.parts.abort_all();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(e) = upload.abort().await {
                        tracing::warn!(
                            "aborting an unfinished multipart upload to S3 failed \
                             (a lifecycle rule removes its parts): {e}"
                        );
                    }
                });
            }
            Err(_) => tracing::warn!(
                "an unfinished multipart upload to S3 is left to the bucket's lifecycle rule"
            ),
        }
    }
}

/// One stored file in the bucket.
#[derive(Debug, Clone)]
pub struct S3Object {
    store: Arc<AmazonS3>,
    reads: Arc<AmazonS3>,
    key: Path,
}

impl S3Object {
    /// Its size, `None` when it is not there.
    pub async fn size(&self) -> io::Result<Option<u64>> {
        match self.store.head(&self.key).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(io::Error::other(e)),
        }
    }

    /// The bytes of `range` (not empty), streamed as they arrive.
    pub async fn read(
        &self,
        range: Range<u64>,
    ) -> io::Result<BoxStream<'static, io::Result<Bytes>>> {
        let options = GetOptions {
            range: Some(GetRange::Bounded(range)),
            ..Default::default()
        };
        let got = tokio::time::timeout(REQUEST_TIMEOUT, self.reads.get_opts(&self.key, options))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "the bucket did not answer"))?
            .map_err(io::Error::other)?;
        Ok(idle_limited(got.into_stream(), IDLE_TIMEOUT))
    }
}

/// `body`, ended by an error when the bucket sends nothing for `idle` (the
/// time the client takes to receive what was sent does not count).
fn idle_limited(
    body: BoxStream<'static, object_store::Result<Bytes>>,
    idle: Duration,
) -> BoxStream<'static, io::Result<Bytes>> {
    futures::stream::unfold(Some(body), move |body| async move {
        let mut body = body?;
        match tokio::time::timeout(idle, body.next()).await {
            Ok(Some(Ok(bytes))) => Some((Ok(bytes), Some(body))),
            Ok(Some(Err(e))) => Some((Err(io::Error::other(e)), None)),
            Ok(None) => None,
            Err(_) => {
                let stalled = io::Error::new(io::ErrorKind::TimedOut, "the bucket stopped sending");
                Some((Err(stalled), None))
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use futures::StreamExt as _;
    use object_store::aws::AmazonS3ConfigKey;
    use object_store::{MultipartUpload, PutPayload, PutResult, UploadPart};

    use super::{builder, config_key, idle_limited, Multipart, S3Url, CREDENTIAL_VARS};

    #[test]
    fn the_client_is_path_style_and_takes_only_credentials_from_the_environment() {
        for (text, endpoint) in [
            ("s3://my.dotted.files", None),
            (
                "s3://files?endpoint=http://127.0.0.1:9000",
                Some("http://127.0.0.1:9000"),
            ),
        ] {
            let url = S3Url::parse(text).unwrap();
            let env = |var: &str| Some(format!("{var}-value"));
            let b = builder(&url, env);
            let get = |key| b.get_config_value(&key);
            assert_eq!(
                get(AmazonS3ConfigKey::VirtualHostedStyleRequest).as_deref(),
                Some("false")
            );
            assert_eq!(get(AmazonS3ConfigKey::Endpoint).as_deref(), endpoint);
            assert_eq!(get(AmazonS3ConfigKey::Bucket), Some(url.bucket.clone()));
            assert_eq!(
                get(AmazonS3ConfigKey::AccessKeyId).as_deref(),
                Some("AWS_ACCESS_KEY_ID-value")
            );
            assert_eq!(
                get(AmazonS3ConfigKey::ContainerCredentialsRelativeUri).as_deref(),
                Some("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI-value")
            );
        }
        for var in CREDENTIAL_VARS {
            assert!(config_key(var).is_some(), "{var}");
        }
        for var in ["AWS_ENDPOINT", "AWS_ALLOW_HTTP", "AWS_REGION"] {
            assert!(!CREDENTIAL_VARS.contains(&var), "{var}");
        }
    }

    /// Counts what was asked of an upload; its parts fail when `fail`.
    #[derive(Debug)]
    struct Recorded {
        calls: Arc<[AtomicUsize; 3]>,
        fail: bool,
    }
    const PARTS: usize = 0;
    const COMPLETED: usize = 1;
    const ABORTED: usize = 2;

    #[async_trait::async_trait]
    impl MultipartUpload for Recorded {
        fn put_part(&mut self, _: PutPayload) -> UploadPart {
            self.calls[PARTS].fetch_add(1, Ordering::SeqCst);
            let fail = self.fail;
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                match fail {
                    true => Err(object_store::Error::NotImplemented),
                    false => Ok(()),
                }
            })
        }
        async fn complete(&mut self) -> object_store::Result<PutResult> {
            self.calls[COMPLETED].fetch_add(1, Ordering::SeqCst);
            Ok(PutResult {
                e_tag: None,
                version: None,
            })
        }
        async fn abort(&mut self) -> object_store::Result<()> {
            self.calls[ABORTED].fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    fn upload(fail: bool) -> (Multipart, Arc<[AtomicUsize; 3]>) {
        let calls = Arc::new([0, 0, 0].map(AtomicUsize::new));
        let upload = Box::new(Recorded {
            calls: calls.clone(),
            fail,
        });
        (Multipart::new(upload), calls)
    }

    async fn counts(calls: &[AtomicUsize; 3]) -> [usize; 3] {
        // The abort of a dropped upload runs on a spawned task.
        tokio::time::sleep(Duration::from_millis(50)).await;
        [0, 1, 2].map(|i| calls[i].load(Ordering::SeqCst))
    }

    #[tokio::test]
    async fn a_multipart_upload_is_aborted_unless_it_completes() {
        let (mut done, calls) = upload(false);
        done.send(vec![1]);
        done.send(vec![2]);
        done.complete().await.unwrap();
        assert_eq!(counts(&calls).await, [2, 1, 0], "completed, not aborted");

        let (mut failed, calls) = upload(true);
        failed.send(vec![1]);
        assert!(failed.wait_for(0).await.is_err());
        drop(failed);
        assert_eq!(counts(&calls).await, [1, 0, 1], "a failed part aborts");

        let (mut failed, calls) = upload(true);
        failed.send(vec![1]);
        assert!(failed.complete().await.is_err());
        assert_eq!(counts(&calls).await, [1, 0, 1], "so does one at the end");

        // The future copying the file is dropped mid-way (the client went).
        let (mut cut, calls) = upload(false);
        let copy = async move {
            cut.send(vec![1]);
            cut.wait_for(0).await.unwrap();
            std::future::pending::<()>().await;
        };
        let _ = tokio::time::timeout(Duration::from_millis(30), copy).await;
        assert_eq!(counts(&calls).await, [1, 0, 1], "a dropped upload aborts");
    }

    #[tokio::test]
    async fn a_download_ends_when_the_bucket_stops_sending() {
        let body = futures::stream::iter([Ok(bytes::Bytes::from_static(b"a"))])
            .chain(futures::stream::pending())
            .boxed();
        let got: Vec<_> = idle_limited(body, Duration::from_millis(20))
            .collect()
            .await;
        assert_eq!(got.len(), 2);
        assert_eq!(&got[0].as_ref().unwrap()[..], b"a");
        assert_eq!(
            got[1].as_ref().unwrap_err().kind(),
            std::io::ErrorKind::TimedOut
        );
    }
}
