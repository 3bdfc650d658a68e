//! Ready files in an S3-compatible bucket (`--blob-store s3://…`): `<app>/<id>`
//! and `<app>/<id>.thumb`. Uploads still arrive on local disk (staging, see
//! [`super::blobs::LocalBlobs`]); a finished one is copied here, the staged
//! file read in parts (a multipart upload past [`PART_BYTES`]), and the
//! database says it is ready only once the bucket has it. Reads are streamed
//! back through the node, ranges included, so the node keeps its response
//! headers and its per-request link check.

use std::ops::Range;
use std::path::Path as FsPath;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt as _, TryStreamExt as _};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, PutPayload, WriteMultipart};
use tokio::io::AsyncReadExt as _;

use super::blobs::Variant;

/// A multipart upload's part size: S3's smallest but for the last part.
pub const PART_BYTES: usize = 5 << 20;
/// Parts sent at once while the next one is read from disk.
const PARTS_IN_FLIGHT: usize = 2;

/// Where `--blob-store s3://<bucket>?endpoint=…&region=…` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Url {
    pub bucket: String,
    /// `None`: AWS itself (virtual-hosted, HTTPS).
    pub endpoint: Option<url::Url>,
    pub region: String,
}

impl S3Url {
    /// Parses and checks an `s3://` URL; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let url = url::Url::parse(text).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
        if url.scheme() != "s3" {
            return Err(format!("{text:?} is not an s3:// URL"));
        }
        let bucket = url.host_str().unwrap_or_default().to_owned();
        if !valid_bucket(&bucket) || !url.path().trim_matches('/').is_empty() {
            return Err(format!(
                "{text:?}: the bucket (3-63 lower-case letters, digits, '.' or '-') \
                 follows s3:// alone, without a path"
            ));
        }
        let mut s3 = S3Url {
            bucket,
            endpoint: None,
            region: "us-east-1".to_owned(),
        };
        for (key, value) in url.query_pairs() {
            match &*key {
                "region" if !value.is_empty() => s3.region = value.into_owned(),
                "endpoint" => s3.endpoint = Some(endpoint(&value)?),
                _ => return Err(format!("{text:?}: unknown or empty setting {key:?}")),
            }
        }
        Ok(s3)
    }
}

fn valid_bucket(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
}

fn endpoint(text: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(text).map_err(|e| format!("endpoint {text:?}: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(format!("endpoint {text:?} must be http(s)://host[:port]"));
    }
    Ok(url)
}

/// The bucket holding ready files.
#[derive(Debug, Clone)]
pub struct S3Blobs {
    store: Arc<AmazonS3>,
}

impl S3Blobs {
    /// A client of `url`'s bucket, with the credentials of the environment
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`;
    /// without them, the instance's role).
    pub fn new(url: &S3Url) -> object_store::Result<Self> {
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&url.bucket)
            .with_region(&url.region);
        if let Some(endpoint) = &url.endpoint {
            builder = builder
                .with_endpoint(endpoint.as_str().trim_end_matches('/'))
                .with_allow_http(endpoint.scheme() == "http")
                .with_virtual_hosted_style_request(false);
        }
        let env = |var| std::env::var(var).ok();
        if let Some(id) = env("AWS_ACCESS_KEY_ID") {
            builder = builder.with_access_key_id(id);
        }
        if let Some(secret) = env("AWS_SECRET_ACCESS_KEY") {
            builder = builder.with_secret_access_key(secret);
        }
        if let Some(token) = env("AWS_SESSION_TOKEN") {
            builder = builder.with_token(token);
        }
        Ok(Self {
            store: Arc::new(builder.build()?),
        })
    }

    /// Writes and deletes a small object: the bucket exists and the
    /// credentials may write to it (checked once at start).
    pub async fn check(&self) -> object_store::Result<()> {
        let probe = Path::from(".mkondo-check");
        self.store
            .put(&probe, PutPayload::from_static(b"ok"))
            .await?;
        self.store.delete(&probe).await
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
        cleaned: Option<Vec<u8>>,
        thumbnail: Option<Vec<u8>>,
    ) -> object_store::Result<()> {
        let key = Self::key(app, id, Variant::Original);
        match cleaned {
            Some(bytes) => self.store.put(&key, bytes.into()).await.map(drop)?,
            None => self.put_file(&key, staged).await?,
        }
        if let Some(bytes) = thumbnail {
            let key = Self::key(app, id, Variant::Thumbnail);
            self.store.put(&key, bytes.into()).await?;
        }
        Ok(())
    }

    /// Copies a file to `key`: one PUT when it fits in a part, else a
    /// multipart upload holding at most a few parts in memory.
    async fn put_file(&self, key: &Path, path: &FsPath) -> object_store::Result<()> {
        let io = |e: std::io::Error| object_store::Error::Generic {
            store: "S3",
            source: Box::new(e),
        };
        let mut file = tokio::fs::File::open(path).await.map_err(io)?;
        let mut part = Vec::with_capacity(PART_BYTES);
        (&mut file)
            .take(PART_BYTES as u64)
            .read_to_end(&mut part)
            .await
            .map_err(io)?;
        if part.len() < PART_BYTES {
            return self.store.put(key, part.into()).await.map(drop);
        }
        let upload = self.store.put_multipart(key).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        loop {
            writer.write(&part);
            part.clear();
            writer.wait_for_capacity(PARTS_IN_FLIGHT).await?;
            let mut next = (&mut file).take(PART_BYTES as u64);
            match next.read_to_end(&mut part).await {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(io(e));
                }
            }
        }
        writer.finish().await.map(drop)
    }

    /// A stored file, to read.
    pub fn object(&self, app: &str, id: &str, variant: Variant) -> S3Object {
        S3Object {
            store: self.store.clone(),
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

/// One stored file in the bucket.
#[derive(Debug, Clone)]
pub struct S3Object {
    store: Arc<AmazonS3>,
    key: Path,
}

impl S3Object {
    /// Its size, `None` when it is not there.
    pub async fn size(&self) -> std::io::Result<Option<u64>> {
        match self.store.head(&self.key).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(std::io::Error::other(e)),
        }
    }

    /// The bytes of `range` (not empty), streamed as they arrive.
    pub async fn read(
        &self,
        range: Range<u64>,
    ) -> std::io::Result<BoxStream<'static, std::io::Result<Bytes>>> {
        let options = GetOptions {
            range: Some(GetRange::Bounded(range)),
            ..Default::default()
        };
        let got = self
            .store
            .get_opts(&self.key, options)
            .await
            .map_err(std::io::Error::other)?;
        Ok(got.into_stream().map_err(std::io::Error::other).boxed())
    }
}

#[cfg(test)]
mod tests {
    use super::S3Url;

    #[test]
    fn an_s3_url_names_a_bucket_and_maybe_an_endpoint() {
        let aws = S3Url::parse("s3://my-files").unwrap();
        assert_eq!(
            (aws.bucket.as_str(), aws.region.as_str()),
            ("my-files", "us-east-1")
        );
        assert!(aws.endpoint.is_none());
        let local =
            S3Url::parse("s3://b.x?endpoint=http://127.0.0.1:9000&region=eu-west-3").unwrap();
        assert_eq!(local.endpoint.unwrap().as_str(), "http://127.0.0.1:9000/");
        assert_eq!(local.region, "eu-west-3");
        for bad in [
            "files",
            "http://bucket",
            "s3://",
            "s3://Bucket",
            "s3://b",
            "s3://bucket/prefix",
            "s3://bucket?endpoint=ftp://x",
            "s3://bucket?endpoint=localhost:9000",
            "s3://bucket?region=",
            "s3://bucket?secret=x",
        ] {
            assert!(S3Url::parse(bad).is_err(), "{bad}");
        }
    }
}
