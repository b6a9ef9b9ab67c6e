//! [`Artifacts`]: datasets, checkpoints, adapters and reports in an
//! `object_store`, addressed by the sha256 of their bytes.
//!
//! An artifact is written once under `sha256/<2 hex>/<64 hex>` (writing the
//! same bytes again is a no-op) and every read re-hashes what came back, so
//! a truncated or tampered object is an error, never a silently wrong
//! adapter. On S3 an artifact larger than one part (16 MiB by default,
//! `FORJA_S3_PART_MB`) is a multipart upload, parts sent four at a time:
//! the object appears only when the upload completes, a failed one is
//! aborted (its parts deleted), and each request is retried by
//! `object_store` (5xx and connection errors, with backoff).

use crate::error::{Result, StoreError};
use bytes::Bytes;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::Arc;

/// Where artifacts live.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum ArtifactConfig {
    /// A local directory (the embedded default).
    Local {
        /// The directory (created if missing).
        dir: PathBuf,
    },
    /// An S3-compatible bucket. Credentials not given here come from the
    /// usual `AWS_*` environment variables.
    S3 {
        /// Bucket name.
        bucket: String,
        /// Endpoint URL for S3-compatible services (MinIO, R2, …).
        endpoint: Option<String>,
        /// Region.
        region: Option<String>,
        /// Key prefix inside the bucket.
        #[serde(default)]
        prefix: String,
        /// Allow `http://` endpoints.
        #[serde(default)]
        allow_http: bool,
    },
}

/// The artifact store.
#[derive(Clone)]
pub struct Artifacts {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    /// Multipart part size (S3); `None`: every object is one PUT.
    part: Option<usize>,
    /// Presigns GET URLs (S3).
    signer: Option<Arc<dyn object_store::signer::Signer>>,
}

/// S3's smallest part (except the last).
const MIN_PART: usize = 5 << 20;
/// Parts in flight at once.
const PARTS_IN_FLIGHT: usize = 4;

/// The S3 part size: `FORJA_S3_PART_MB` MiB (at least S3's 5), else 16 MiB.
fn part_size() -> Result<usize> {
    match std::env::var("FORJA_S3_PART_MB") {
        Err(_) => Ok(16 << 20),
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(mb) if (MIN_PART..=(5 << 30)).contains(&(mb << 20)) => Ok(mb << 20),
            _ => Err(StoreError::Config(format!(
                "FORJA_S3_PART_MB={v}: expected MiB between 5 (S3's smallest part) and 5120"
            ))),
        },
    }
}

impl std::fmt::Debug for Artifacts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Artifacts({})", self.store)
    }
}

/// The sha256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The sha256 of a file's contents, lowercase hex (streamed, not loaded).
pub fn sha256_file(path: &std::path::Path) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    std::io::copy(&mut std::fs::File::open(path)?, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

/// The sha256 of `bytes`, computed off the async runtime when they are
/// large (hashing 100 MB takes a core for a fraction of a second, which
/// would stall every request sharing that runtime thread).
async fn sha256_of(bytes: &Bytes) -> Result<String> {
    if bytes.len() < 64 << 10 {
        return Ok(sha256_hex(bytes));
    }
    let b = bytes.clone();
    tokio::task::spawn_blocking(move || sha256_hex(&b))
        .await
        .map_err(|e| StoreError::Config(format!("hashing task failed: {e}")))
}

/// Whether `s` is a sha256 in lowercase hex: what artifact addresses are.
pub fn valid_sha(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Artifacts {
    /// Opens the configured store.
    pub fn open(cfg: &ArtifactConfig) -> Result<Artifacts> {
        match cfg {
            ArtifactConfig::Local { dir } => {
                std::fs::create_dir_all(dir).map_err(|e| {
                    StoreError::Config(format!("cannot create {}: {e}", dir.display()))
                })?;
                let fs = object_store::local::LocalFileSystem::new_with_prefix(dir)?;
                Ok(Artifacts {
                    store: Arc::new(fs),
                    prefix: String::new(),
                    part: None,
                    signer: None,
                })
            }
            ArtifactConfig::S3 { bucket, endpoint, region, prefix, allow_http } => {
                let mut b = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
                if let Some(e) = endpoint {
                    b = b.with_endpoint(e);
                }
                if let Some(r) = region {
                    b = b.with_region(r);
                }
                let s3 = Arc::new(b.with_allow_http(*allow_http).build()?);
                Ok(Artifacts {
                    store: s3.clone(),
                    prefix: prefix.trim_matches('/').to_string(),
                    part: Some(part_size()?),
                    signer: Some(s3),
                })
            }
        }
    }

    fn path(&self, sha: &str) -> ObjectPath {
        let rel = format!("sha256/{}/{sha}", &sha[..2]);
        if self.prefix.is_empty() {
            ObjectPath::from(rel)
        } else {
            ObjectPath::from(format!("{}/{rel}", self.prefix))
        }
    }

    /// Stores `bytes`; returns their sha256.
    pub async fn put(&self, bytes: Bytes) -> Result<String> {
        let sha = sha256_of(&bytes).await?;
        let path = self.path(&sha);
        if self.store.head(&path).await.is_err() {
            self.write(&path, bytes).await?;
        }
        Ok(sha)
    }

    /// Writes one object: one PUT, or a multipart upload that is aborted
    /// when any part or the completion fails (so nothing half-written is
    /// ever visible, and no orphan parts are billed).
    async fn write(&self, path: &ObjectPath, bytes: Bytes) -> Result<()> {
        let part = match self.part {
            Some(p) if bytes.len() > p => p,
            _ => {
                self.store.put(path, PutPayload::from_bytes(bytes)).await?;
                return Ok(());
            }
        };
        let mut upload = self.store.put_multipart(path).await?;
        let mut sent = 0;
        let outcome = async {
            while sent < bytes.len() {
                let mut batch = Vec::with_capacity(PARTS_IN_FLIGHT);
                while batch.len() < PARTS_IN_FLIGHT && sent < bytes.len() {
                    let end = (sent + part).min(bytes.len());
                    batch.push(upload.put_part(PutPayload::from_bytes(bytes.slice(sent..end))));
                    sent = end;
                }
                futures::future::try_join_all(batch).await?;
            }
            upload.complete().await
        }
        .await;
        if let Err(e) = outcome {
            if let Err(a) = upload.abort().await {
                tracing::warn!("cannot abort the multipart upload of {path}: {a}");
            }
            return Err(e.into());
        }
        Ok(())
    }

    /// Stores `bytes` that must hash to `declared` (an upload whose sender
    /// told us the hash): `HashMismatch` otherwise, and nothing is stored.
    pub async fn put_verified(&self, bytes: Bytes, declared: &str) -> Result<String> {
        let actual = sha256_of(&bytes).await?;
        if actual != declared.to_ascii_lowercase() {
            return Err(StoreError::HashMismatch { expected: declared.into(), actual });
        }
        let path = self.path(&actual);
        if self.store.head(&path).await.is_err() {
            self.write(&path, bytes).await?;
        }
        Ok(actual)
    }

    /// Reads an artifact and checks its hash.
    pub async fn get(&self, sha: &str) -> Result<Bytes> {
        if !valid_sha(sha) {
            return Err(StoreError::ArtifactMissing { sha256: sha.into() });
        }
        let got = match self.store.get(&self.path(sha)).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(StoreError::ArtifactMissing { sha256: sha.into() })
            }
            Err(e) => return Err(e.into()),
        };
        let bytes = got.bytes().await?;
        let actual = sha256_of(&bytes).await?;
        if actual != sha {
            return Err(StoreError::HashMismatch { expected: sha.into(), actual });
        }
        Ok(bytes)
    }

    /// A URL that reads the artifact straight from the bucket for `ttl`
    /// (an S3-presigned GET); `None` when the store cannot presign (a
    /// local directory). The reader must check the hash itself.
    pub async fn presigned_get(
        &self,
        sha: &str,
        ttl: std::time::Duration,
    ) -> Result<Option<String>> {
        let Some(signer) = &self.signer else { return Ok(None) };
        if !valid_sha(sha) {
            return Err(StoreError::ArtifactMissing { sha256: sha.into() });
        }
        let url = signer.signed_url(http::Method::GET, &self.path(sha), ttl).await?;
        Ok(Some(url.to_string()))
    }

    /// Whether an artifact is stored.
    pub async fn contains(&self, sha: &str) -> Result<bool> {
        if !valid_sha(sha) {
            return Ok(false);
        }
        match self.store.head(&self.path(sha)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Every stored artifact: address, size in bytes, and when it was
    /// written (unix seconds). Objects under the prefix that are not
    /// artifact addresses are left out.
    pub async fn list(&self) -> Result<Vec<StoredArtifact>> {
        use futures::TryStreamExt;
        let root = if self.prefix.is_empty() {
            ObjectPath::from("sha256")
        } else {
            ObjectPath::from(format!("{}/sha256", self.prefix))
        };
        let metas: Vec<object_store::ObjectMeta> =
            self.store.list(Some(&root)).try_collect().await?;
        Ok(metas
            .into_iter()
            .filter_map(|m| {
                let sha = m.location.filename()?.to_string();
                valid_sha(&sha).then(|| StoredArtifact {
                    sha256: sha,
                    bytes: m.size,
                    modified: m.last_modified.timestamp(),
                })
            })
            .collect())
    }

    /// Deletes an artifact (a missing one is not an error).
    pub async fn delete(&self, sha: &str) -> Result<()> {
        if !valid_sha(sha) {
            return Ok(());
        }
        match self.store.delete(&self.path(sha)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// One object of [`Artifacts::list`].
#[derive(Debug, Clone, PartialEq)]
pub struct StoredArtifact {
    /// Its address.
    pub sha256: String,
    /// Its size.
    pub bytes: u64,
    /// When it was written (unix seconds).
    pub modified: i64,
}
