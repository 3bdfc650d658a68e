//! Where an upload's bytes are. They arrive on the local disk,
//! `<dir>/staging/<app>/<id>`; once ready they are `<dir>/blobs/<app>/<id>`
//! (and `<id>.thumb`, its thumbnail), or the same names in an S3 bucket
//! (`--blob-store s3://…`, see [`super::s3`]). Every file is written (synced,
//! or acknowledged by the bucket) before the database says it exists; a
//! removed upload's files go before its row.

use std::path::{Path, PathBuf};

use super::s3::{S3Blobs, S3Object, S3Url};

/// The store of uploaded files: the staging directory, and where ready
/// files go (the same directory, or a bucket).
#[derive(Debug, Clone)]
pub struct Blobs {
    local: LocalBlobs,
    s3: Option<S3Blobs>,
}

/// A ready file, where it is read from.
#[derive(Debug, Clone)]
pub enum Stored {
    File(PathBuf),
    Object(S3Object),
}

impl Blobs {
    /// Files under `dir`, ready ones in `s3`'s bucket if given.
    pub fn new(dir: PathBuf, s3: Option<&S3Url>) -> anyhow::Result<Self> {
        let s3 = match s3 {
            Some(url) => Some(
                S3Blobs::new(url)
                    .map_err(|e| anyhow::anyhow!("--blob-store s3://{}: {e}", url.bucket))?,
            ),
            None => None,
        };
        Ok(Self {
            local: LocalBlobs::new(dir),
            s3,
        })
    }

    /// At start: the bucket, if any, takes writes, reads and deletes with
    /// these credentials, within [`super::s3::CHECK_TIMEOUT`].
    pub async fn check(&self) -> anyhow::Result<()> {
        match &self.s3 {
            Some(s3) => s3.check().await,
            None => Ok(()),
        }
    }

    /// Where an upload's bytes arrive.
    pub fn staging(&self, app: &str, id: &str) -> PathBuf {
        self.local.staging(app, id)
    }

    /// Makes the staging file (empty) if it is not there.
    pub async fn start(&self, app: &str, id: &str) -> std::io::Result<PathBuf> {
        self.local.start(app, id).await
    }

    /// Whether another process holds the staging file's lock.
    pub fn staging_in_use(&self, app: &str, id: &str) -> bool {
        self.local.staging_in_use(app, id)
    }

    /// Stores a processed upload (see [`LocalBlobs::commit`]). In a bucket the
    /// staged file stays until [`Self::committed`], so that a finish whose
    /// database write failed can be retried from it.
    pub async fn commit(&self, app: &str, id: &str, outputs: Outputs) -> std::io::Result<()> {
        match &self.s3 {
            None => self.local.commit(app, id, outputs).await,
            Some(s3) => s3
                .commit(app, id, &self.staging(app, id), outputs)
                .await
                .map_err(std::io::Error::other),
        }
    }

    /// The database says the upload is ready: its staged copy goes.
    pub async fn committed(&self, app: &str, id: &str) -> std::io::Result<()> {
        remove_file(&self.staging(app, id)).await
    }

    /// A ready file.
    pub fn stored(&self, app: &str, id: &str, variant: Variant) -> Stored {
        match &self.s3 {
            None => Stored::File(self.local.path(app, id, variant)),
            Some(s3) => Stored::Object(s3.object(app, id, variant)),
        }
    }

    /// The first `n` bytes of a ready file.
    pub async fn head(
        &self,
        app: &str,
        id: &str,
        variant: Variant,
        n: u64,
    ) -> std::io::Result<Vec<u8>> {
        use futures::TryStreamExt as _;
        match self.stored(app, id, variant) {
            Stored::File(path) => read_head(&path, n).await,
            Stored::Object(object) => {
                let chunks: Vec<_> = object.read(0..n).await?.try_collect().await?;
                Ok(chunks.concat())
            }
        }
    }

    /// Removes every file of an upload; missing ones are fine.
    pub async fn remove(&self, app: &str, id: &str) -> std::io::Result<()> {
        self.local.remove(app, id).await?;
        match &self.s3 {
            Some(s3) => s3.remove(app, id).await.map_err(std::io::Error::other),
            None => Ok(()),
        }
    }
}

/// The local store of uploaded files.
#[derive(Debug, Clone)]
pub struct LocalBlobs {
    dir: PathBuf,
}

/// Which of an upload's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// The file as served: the upload, or for images re-encoded without
    /// their metadata.
    Original,
    Thumbnail,
}

impl Variant {
    pub fn as_str(self) -> &'static str {
        match self {
            Variant::Original => "original",
            Variant::Thumbnail => "thumbnail",
        }
    }
}

/// What processing an upload made besides the staged file.
#[derive(Debug, Default)]
pub struct Outputs {
    /// The bytes to serve instead of the staged file (an image re-encoded
    /// without its metadata); `None`: the staged file as it is.
    pub cleaned: Option<Vec<u8>>,
    pub thumbnail: Option<Vec<u8>>,
}

impl LocalBlobs {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// Where an upload's bytes arrive.
    pub fn staging(&self, app: &str, id: &str) -> PathBuf {
        self.dir.join("staging").join(app).join(id)
    }

    /// Where a ready upload's file is.
    pub fn path(&self, app: &str, id: &str, variant: Variant) -> PathBuf {
        let dir = self.dir.join("blobs").join(app);
        match variant {
            Variant::Original => dir.join(id),
            Variant::Thumbnail => dir.join(format!("{id}.thumb")),
        }
    }

    /// Makes the staging file (empty) if it is not there.
    pub async fn start(&self, app: &str, id: &str) -> std::io::Result<PathBuf> {
        let path = self.staging(app, id);
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .await?;
        Ok(path)
    }

    /// Stores a processed upload: `served` (the staged file, or a cleaned
    /// copy of it) and its thumbnail, each synced, then drops the staging file.
    pub async fn commit(&self, app: &str, id: &str, outputs: Outputs) -> std::io::Result<()> {
        let staged = self.staging(app, id);
        let target = self.path(app, id, Variant::Original);
        if let Some(parent) = target.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        if let Some(bytes) = outputs.thumbnail {
            write_synced(&self.path(app, id, Variant::Thumbnail), &bytes).await?;
        }
        match outputs.cleaned {
            Some(bytes) => {
                write_synced(&target, &bytes).await?;
                tokio::fs::remove_file(&staged).await?;
            }
            None => tokio::fs::rename(&staged, &target).await?,
        }
        sync_dir(target.parent()).await
    }

    /// Whether another process (a node sharing the directory) holds the
    /// staging file's lock: it is receiving the upload's bytes.
    pub fn staging_in_use(&self, app: &str, id: &str) -> bool {
        match std::fs::File::open(self.staging(app, id)) {
            Ok(file) => matches!(file.try_lock(), Err(std::fs::TryLockError::WouldBlock)),
            Err(_) => false,
        }
    }

    /// Removes every file of an upload; missing ones are fine.
    pub async fn remove(&self, app: &str, id: &str) -> std::io::Result<()> {
        for path in [
            self.staging(app, id),
            self.path(app, id, Variant::Original),
            self.path(app, id, Variant::Thumbnail),
        ] {
            remove_file(&path).await?;
        }
        Ok(())
    }
}

/// Removes a file if it is there.
async fn remove_file(path: &Path) -> std::io::Result<()> {
    match tokio::fs::remove_file(path).await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The first `n` bytes of a file.
pub async fn read_head(path: &Path, n: u64) -> std::io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt as _;
    let file = tokio::fs::File::open(path).await?;
    let mut head = Vec::new();
    file.take(n).read_to_end(&mut head).await?;
    Ok(head)
}

async fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut file = tokio::fs::File::create(path).await?;
    file.write_all(bytes).await?;
    file.sync_all().await
}

async fn sync_dir(dir: Option<&Path>) -> std::io::Result<()> {
    if let Some(dir) = dir {
        tokio::fs::File::open(dir).await?.sync_all().await?;
    }
    Ok(())
}
