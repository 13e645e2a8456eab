//! One loaded lvstore: its metadata, the locks that order I/O against
//! metadata changes, and transactional, durable metadata updates.

use std::sync::{Arc, Mutex, Weak};

use tokio::sync::{Mutex as AsyncMutex, RwLock};

use super::layout::{self, Anchor};
use super::meta::{LvsMeta, Parent};
use crate::bdev::{Bdev, IoError, IoResult};
use crate::rpc_error::RpcError;
use crate::sim::Sim;

/// A loaded lvstore.
pub struct Lvs {
    /// The persisted state (never held across an await).
    pub meta: Mutex<LvsMeta>,
    /// I/O holds it shared; snapshot, delete, resize, inflate hold it exclusive.
    pub gate: RwLock<()>,
    /// Serializes metadata updates (and the cluster allocations they record).
    pub md_lock: AsyncMutex<u64>,
    /// The base bdev, as handed out by the registry (counted).
    pub base: Arc<dyn Bdev>,
    /// The base bdev's name.
    pub base_name: String,
    /// Where the metadata slots are.
    pub anchor: Anchor,
    /// The sim, to find external snapshot bdevs.
    pub sim: Weak<Sim>,
    /// `memory_domains` of external snapshot bdevs by UUID (an esnap clone
    /// reports its own plus its parent's).
    pub ext_domains: Mutex<std::collections::HashMap<String, serde_json::Value>>,
}

/// Where the bytes of one piece of an lvol read come from.
pub enum Source {
    /// The lvstore's base bdev at this byte offset.
    Base(u64),
    /// An external snapshot bdev (by UUID) at this byte offset.
    External(String, u64),
    /// Nothing allocated anywhere: zeroes.
    Zero,
}

impl Lvs {
    /// Wraps loaded metadata whose newest slot has sequence `seq`.
    pub fn new(
        meta: LvsMeta,
        seq: u64,
        base: Arc<dyn Bdev>,
        base_name: String,
        anchor: Anchor,
        sim: Weak<Sim>,
    ) -> Self {
        Self {
            meta: Mutex::new(meta),
            gate: RwLock::new(()),
            md_lock: AsyncMutex::new(seq),
            base,
            base_name,
            anchor,
            sim,
            ext_domains: Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// Remembers an external snapshot's `memory_domains` (if it has any).
    pub fn note_external(&self, uuid: &str, extra: &serde_json::Map<String, serde_json::Value>) {
        if let (Some(d), Ok(mut m)) = (extra.get("memory_domains"), self.ext_domains.lock()) {
            m.insert(uuid.to_string(), d.clone());
        }
    }

    /// A copy of the current metadata.
    pub fn snapshot_meta(&self) -> IoResult<LvsMeta> {
        self.meta
            .lock()
            .map(|m| m.clone())
            .map_err(|_| IoError::EIO)
    }

    /// Reads current metadata through `f`.
    pub fn with_meta<R>(&self, f: impl FnOnce(&LvsMeta) -> R) -> IoResult<R> {
        self.meta.lock().map(|m| f(&m)).map_err(|_| IoError::EIO)
    }

    /// Persists `next` as the new metadata generation; the caller holds
    /// `md_lock` (passed as its guard's sequence number).
    pub async fn commit(&self, seq: &mut u64, next: LvsMeta) -> IoResult<()> {
        let payload = serde_json::to_vec(&next).map_err(|_| IoError::EIO)?;
        let new_seq = *seq + 1;
        layout::write_slot(self.base.as_ref(), &self.anchor, new_seq, &payload).await?;
        *seq = new_seq;
        *self.meta.lock().map_err(|_| IoError::EIO)? = next;
        Ok(())
    }

    /// Applies `f` to a copy of the metadata and persists it durably before
    /// the change becomes visible. Nothing changes if `f` or the write fails.
    pub async fn update<R>(
        &self,
        f: impl FnOnce(&mut LvsMeta) -> Result<R, RpcError>,
    ) -> Result<R, RpcError> {
        let mut seq = self.md_lock.lock().await;
        let mut next = self.snapshot_meta().map_err(async_err)?;
        let r = f(&mut next)?;
        self.commit(&mut seq, next).await.map_err(async_err)?;
        Ok(r)
    }

    /// Byte offset of device cluster `phys` on the base bdev.
    pub fn cluster_offset(&self, phys: u64) -> u64 {
        phys * self.anchor.cluster_size
    }

    /// Where lvol cluster `idx` of blob `id` reads from, walking the parent chain.
    pub fn resolve(meta: &LvsMeta, id: u64, idx: u64, cluster_size: u64) -> Source {
        let mut cur = meta.blob(id);
        while let Some(b) = cur {
            if idx >= b.num_clusters {
                return Source::Zero;
            }
            if let Some(phys) = b.cluster(idx) {
                return Source::Base(phys * cluster_size);
            }
            cur = match &b.parent {
                Parent::None => None,
                Parent::Snapshot(p) => meta.blob(*p),
                Parent::External(uuid) => {
                    return Source::External(uuid.clone(), idx * cluster_size)
                }
            };
        }
        Source::Zero
    }

    /// Reads `len` bytes from a resolved source at `within` bytes into its cluster.
    pub async fn read_source(&self, src: &Source, within: u64, len: u64) -> IoResult<Vec<u8>> {
        match src {
            Source::Base(off) => self.base.read(off + within, len).await,
            Source::Zero => Ok(vec![
                0u8;
                usize::try_from(len).map_err(|_| IoError::EINVAL)?
            ]),
            Source::External(uuid, off) => {
                let sim = self.sim.upgrade().ok_or(IoError::ENXIO)?;
                let bdev = sim
                    .bdevs
                    .lock()
                    .map_err(|_| IoError::EIO)?
                    .lookup(uuid)
                    .map(|e| e.bdev.clone())
                    .ok_or(IoError::ENXIO)?;
                let start = off + within;
                let size = bdev.size_bytes();
                // Past the end of the external snapshot reads as zeroes.
                let mut out = vec![0u8; usize::try_from(len).map_err(|_| IoError::EINVAL)?];
                if start < size {
                    let n = len.min(size - start);
                    let data = bdev.read(start, n).await?;
                    out[..data.len()].copy_from_slice(&data);
                }
                Ok(out)
            }
        }
    }

    /// The full contents lvol cluster `idx` of blob `id` shows through its parents
    /// (what a newly allocated cluster must start with).
    pub async fn parent_cluster_data(
        &self,
        meta: &LvsMeta,
        id: u64,
        idx: u64,
    ) -> IoResult<Vec<u8>> {
        let cs = self.anchor.cluster_size;
        let src = match meta.blob(id).map(|b| b.parent.clone()) {
            Some(Parent::Snapshot(p)) => Self::resolve(meta, p, idx, cs),
            Some(Parent::External(uuid)) => Source::External(uuid, idx * cs),
            _ => Source::Zero,
        };
        self.read_source(&src, 0, cs).await
    }
}

/// An I/O failure inside an lvol operation, reported as SPDK reports errors
/// from asynchronous lvol callbacks: -32602 with the errno's text.
pub fn async_err(e: IoError) -> RpcError {
    RpcError::new(-32602, crate::rpc_error::strerror(-e.0))
}
