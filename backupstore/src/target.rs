//! Opening a backup target from its Longhorn URL.
//!
//! - `s3://<bucket>@<region>/<path>/` (or `s3://<bucket>/<path>/`), with
//!   credentials from the keys of a Kubernetes Secret, as Longhorn names them
//!   (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ENDPOINTS`,
//!   `VIRTUAL_HOSTED_STYLE`);
//! - `file:///<dir>`: a directory, for example an NFS export mounted by the node.

use std::collections::BTreeMap;
use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;

use crate::error::{Error, Result};
use crate::store::BackupStore;

/// S3 credentials and endpoint. `Debug` never shows the secret.
#[derive(Clone, Default)]
pub struct S3Credentials {
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key_id: String,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: String,
    /// `AWS_ENDPOINTS`: a custom endpoint (MinIO, SeaweedFS, moto).
    pub endpoint: Option<String>,
    /// `VIRTUAL_HOSTED_STYLE=true`: bucket in the host name instead of the path.
    pub virtual_hosted_style: bool,
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("endpoint", &self.endpoint)
            .field("virtual_hosted_style", &self.virtual_hosted_style)
            .finish()
    }
}

impl S3Credentials {
    /// Reads the keys Longhorn's backup target Secret holds.
    pub fn from_secret(data: &BTreeMap<String, String>) -> Self {
        let get = |k: &str| data.get(k).map(|v| v.trim().to_string());
        S3Credentials {
            access_key_id: get("AWS_ACCESS_KEY_ID").unwrap_or_default(),
            secret_access_key: get("AWS_SECRET_ACCESS_KEY").unwrap_or_default(),
            endpoint: get("AWS_ENDPOINTS").filter(|e| !e.is_empty()),
            virtual_hosted_style: get("VIRTUAL_HOSTED_STYLE").is_some_and(|v| v == "true"),
        }
    }
}

/// Opens the backupstore a Longhorn backup target URL names.
pub fn open(url: &str, creds: &S3Credentials) -> Result<BackupStore> {
    let bad = |reason: &str| Error::InvalidTarget {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let parsed = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    match parsed.scheme() {
        "s3" => {
            let (bucket, region) = if parsed.username().is_empty() {
                (
                    parsed.host_str().unwrap_or_default().to_string(),
                    String::new(),
                )
            } else {
                (
                    parsed.username().to_string(),
                    parsed.host_str().unwrap_or_default().to_string(),
                )
            };
            if bucket.is_empty() {
                return Err(bad("no bucket: use s3://<bucket>@<region>/<path>/"));
            }
            let prefix = parsed.path().trim_matches('/').to_string();
            let mut b = AmazonS3Builder::new()
                .with_bucket_name(&bucket)
                .with_region(if region.is_empty() {
                    "us-east-1"
                } else {
                    &region
                })
                .with_virtual_hosted_style_request(creds.virtual_hosted_style);
            if !creds.access_key_id.is_empty() {
                b = b
                    .with_access_key_id(&creds.access_key_id)
                    .with_secret_access_key(&creds.secret_access_key);
            }
            if let Some(ep) = &creds.endpoint {
                b = b
                    .with_endpoint(ep)
                    .with_allow_http(ep.starts_with("http://"));
            }
            let store = b.build().map_err(|e| bad(&e.to_string()))?;
            Ok(BackupStore::new(Arc::new(store), &prefix, url))
        }
        "file" => {
            let dir = parsed
                .to_file_path()
                .map_err(|_| bad("not an absolute local path"))?;
            std::fs::create_dir_all(&dir).map_err(|e| bad(&e.to_string()))?;
            let store = LocalFileSystem::new_with_prefix(&dir).map_err(|e| bad(&e.to_string()))?;
            Ok(BackupStore::new(Arc::new(store), "", url))
        }
        other => Err(bad(&format!(
            "unsupported scheme {other:?}: use s3:// or file://"
        ))),
    }
}
