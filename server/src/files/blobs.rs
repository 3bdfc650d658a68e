//! Files on the local disk: `<dir>/staging/<app>/<id>` while an upload
//! arrives, then `<dir>/blobs/<app>/<id>` (and `<id>.thumb`, its thumbnail)
//! once it is ready. Every file is written and synced before the database says
//! it exists; a removed upload's files go before its row.

use std::path::{Path, PathBuf};

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
    pub async fn commit(
        &self,
        app: &str,
        id: &str,
        cleaned: Option<Vec<u8>>,
        thumbnail: Option<Vec<u8>>,
    ) -> std::io::Result<()> {
        let staged = self.staging(app, id);
        let target = self.path(app, id, Variant::Original);
        if let Some(parent) = target.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        if let Some(bytes) = thumbnail {
            write_synced(&self.path(app, id, Variant::Thumbnail), &bytes).await?;
        }
        match cleaned {
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
            match tokio::fs::remove_file(&path).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
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
