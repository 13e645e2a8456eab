//! The lvol bdev: reads fall through the snapshot chain, the first write to
//! a cluster allocates it (copying what the parents showed), and the
//! allocation is durable in the metadata before the write is acknowledged.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::meta::{Blob, LvsMeta, Parent};
use super::store::{Lvs, Source};
use crate::bdev::{Bdev, BdevKind, IoError, IoResult};

/// One lvol (or snapshot, or clone) as a bdev.
pub struct LvolBdev {
    /// The lvstore holding it.
    pub lvs: Arc<Lvs>,
    /// Its blob id.
    pub id: u64,
    /// Its UUID (the bdev name).
    pub uuid: Uuid,
}

/// One cluster-sized piece of an I/O.
struct Piece {
    idx: u64,
    within: u64,
    len: u64,
    pos: usize,
}

fn pieces(offset: u64, len: u64, cs: u64) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut at = offset;
    while at < offset + len {
        let idx = at / cs;
        let within = at % cs;
        let n = (cs - within).min(offset + len - at);
        out.push(Piece {
            idx,
            within,
            len: n,
            pos: (at - offset) as usize,
        });
        at += n;
    }
    out
}

/// The `driver_specific.lvol` object of `bdev_get_bdevs` for one blob.
pub fn lvol_json(meta: &LvsMeta, base_name: &str, b: &Blob) -> Value {
    let mut m = Map::new();
    m.insert("lvol_store_uuid".into(), json!(meta.uuid.to_string()));
    m.insert("base_bdev".into(), json!(base_name));
    m.insert("thin_provision".into(), json!(b.thin));
    m.insert("num_allocated_clusters".into(), json!(b.allocated()));
    m.insert("snapshot".into(), json!(b.snapshot));
    m.insert(
        "clone".into(),
        json!(matches!(b.parent, Parent::Snapshot(_))),
    );
    if let Parent::Snapshot(p) = &b.parent {
        if let Some(parent) = meta.blob(*p) {
            m.insert("base_snapshot".into(), json!(parent.name));
        }
    }
    if b.snapshot {
        let clones: Vec<&str> = meta
            .children(b.id)
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        m.insert("clones".into(), json!(clones));
    }
    m.insert(
        "esnap_clone".into(),
        json!(matches!(b.parent, Parent::External(_))),
    );
    if let Parent::External(u) = &b.parent {
        m.insert("external_snapshot_name".into(), json!(u));
    }
    json!({ "lvol": Value::Object(m) })
}

impl LvolBdev {
    fn blob<R>(&self, f: impl FnOnce(&LvsMeta, &Blob) -> R) -> Option<R> {
        self.lvs
            .with_meta(|m| m.blob(self.id).map(|b| f(m, b)))
            .ok()
            .flatten()
    }

    fn check(&self, offset: u64, len: u64) -> IoResult<()> {
        crate::base::check_range(self.block_size(), self.size_bytes(), offset, len)
    }

    /// Allocates the clusters of `todo`, each filled with what the parents
    /// show overlaid with the new data, and records them in one durable
    /// metadata update.
    async fn allocate_and_write(&self, todo: &[&Piece], data: &[u8]) -> IoResult<()> {
        let cs = self.lvs.anchor.cluster_size;
        let mut seq = self.lvs.md_lock.lock().await;
        let mut next = self.lvs.snapshot_meta()?;
        let mut changed = false;
        for p in todo {
            let src = &data[p.pos..p.pos + p.len as usize];
            let existing = next.blob(self.id).ok_or(IoError::ENXIO)?.cluster(p.idx);
            if let Some(phys) = existing {
                // Allocated by a racing write meanwhile.
                self.lvs.base.write(phys * cs + p.within, src).await?;
                continue;
            }
            let phys = next
                .take_free(1)
                .and_then(|v| v.first().copied())
                .ok_or(IoError::ENOSPC)?;
            let mut buf = if p.within == 0 && p.len == cs {
                Vec::new()
            } else {
                self.lvs.parent_cluster_data(&next, self.id, p.idx).await?
            };
            if buf.is_empty() {
                buf.extend_from_slice(src);
            } else {
                buf[p.within as usize..(p.within + p.len) as usize].copy_from_slice(src);
            }
            self.lvs.base.write(phys * cs, &buf).await?;
            next.blob_mut(self.id)
                .ok_or(IoError::ENXIO)?
                .set_cluster(p.idx, phys);
            changed = true;
        }
        if changed {
            // The new clusters' data must be durable before the metadata
            // that points at them: never expose stale bytes after a crash.
            self.lvs.base.flush().await?;
            self.lvs.commit(&mut seq, next).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Bdev for LvolBdev {
    fn name(&self) -> String {
        self.uuid.to_string()
    }
    fn aliases(&self) -> Vec<String> {
        self.blob(|m, b| vec![format!("{}/{}", m.name, b.name)])
            .unwrap_or_default()
    }
    fn uuid(&self) -> Uuid {
        self.uuid
    }
    fn kind(&self) -> BdevKind {
        BdevKind::Lvol
    }
    fn product_name(&self) -> String {
        "Logical Volume".into()
    }
    fn block_size(&self) -> u32 {
        self.lvs.base.block_size()
    }
    fn optimal_io_boundary(&self) -> u64 {
        self.lvs.anchor.cluster_size / u64::from(self.lvs.base.block_size().max(1))
    }
    fn num_blocks(&self) -> u64 {
        let cs = self.lvs.anchor.cluster_size;
        self.blob(|_, b| b.num_clusters * cs / u64::from(self.lvs.base.block_size()))
            .unwrap_or(0)
    }
    fn driver_specific(&self) -> Value {
        self.blob(|m, b| lvol_json(m, &self.lvs.base_name, b))
            .unwrap_or_else(|| json!({}))
    }
    fn supported_io_types(&self) -> Value {
        let ro = self.blob(|_, b| b.read_only).unwrap_or(true);
        let mut t = vec!["read", "reset", "seek_hole", "seek_data"];
        if !ro {
            t.extend(["write", "unmap", "write_zeroes"]);
        }
        crate::base::io_types(&t)
    }
    fn extra_info(&self) -> Map<String, Value> {
        let mut m = self.lvs.base.extra_info();
        m.retain(|k, _| k == "memory_domains");
        let ext = self.blob(|_, b| match &b.parent {
            Parent::External(u) => Some(u.clone()),
            _ => None,
        });
        if let Some(Some(u)) = ext {
            let extra = self
                .lvs
                .ext_domains
                .lock()
                .ok()
                .and_then(|d| d.get(&u).cloned());
            if let (Some(Value::Array(more)), Some(Value::Array(mine))) =
                (extra, m.get_mut("memory_domains"))
            {
                mine.extend(more);
            }
        }
        m
    }
    async fn read(&self, offset: u64, len: u64) -> IoResult<Vec<u8>> {
        self.check(offset, len)?;
        let _gate = self.lvs.gate.read().await;
        let cs = self.lvs.anchor.cluster_size;
        let plan: Vec<(Piece, Source)> = self.lvs.with_meta(|m| {
            pieces(offset, len, cs)
                .into_iter()
                .map(|p| {
                    let s = Lvs::resolve(m, self.id, p.idx, cs);
                    (p, s)
                })
                .collect()
        })?;
        let mut out = vec![0u8; usize::try_from(len).map_err(|_| IoError::EINVAL)?];
        for (p, src) in &plan {
            if matches!(src, Source::Zero) {
                continue;
            }
            let data = self.lvs.read_source(src, p.within, p.len).await?;
            out[p.pos..p.pos + p.len as usize].copy_from_slice(&data);
        }
        Ok(out)
    }
    async fn write(&self, offset: u64, data: &[u8]) -> IoResult<()> {
        self.check(offset, data.len() as u64)?;
        let _gate = self.lvs.gate.read().await;
        let cs = self.lvs.anchor.cluster_size;
        let (ro, plan) = self.lvs.with_meta(|m| {
            let b = m.blob(self.id);
            let ro = b.is_none_or(|b| b.read_only);
            let plan: Vec<(Piece, Option<u64>)> = pieces(offset, data.len() as u64, cs)
                .into_iter()
                .map(|p| {
                    let phys = b.and_then(|b| b.cluster(p.idx));
                    (p, phys)
                })
                .collect();
            (ro, plan)
        })?;
        if ro {
            return Err(IoError(-1));
        }
        let mut todo = Vec::new();
        for (p, phys) in &plan {
            match phys {
                Some(phys) => {
                    let src = &data[p.pos..p.pos + p.len as usize];
                    self.lvs.base.write(phys * cs + p.within, src).await?;
                }
                None => todo.push(p),
            }
        }
        if !todo.is_empty() {
            self.allocate_and_write(&todo, data).await?;
        }
        Ok(())
    }
    /// Unmap as SPDK's blobstore does it: in a thin lvol without a parent, a
    /// whole allocated cluster is released (it reads as zeroes again); any
    /// other allocated range is zeroed; unallocated ranges are left alone.
    async fn unmap(&self, offset: u64, len: u64) -> IoResult<()> {
        self.check(offset, len)?;
        let _gate = self.lvs.gate.read().await;
        let cs = self.lvs.anchor.cluster_size;
        let (releasable, plan) = self.lvs.with_meta(|m| {
            let b = m.blob(self.id);
            let releasable = b.is_some_and(|b| b.thin && b.parent == Parent::None && !b.read_only);
            let plan: Vec<(Piece, Option<u64>)> = pieces(offset, len, cs)
                .into_iter()
                .map(|p| {
                    let phys = b.and_then(|b| b.cluster(p.idx));
                    (p, phys)
                })
                .collect();
            (releasable, plan)
        })?;
        let mut release = Vec::new();
        for (p, phys) in plan {
            let Some(phys) = phys else { continue };
            if releasable && p.within == 0 && p.len == cs {
                release.push((p.idx, phys));
            } else {
                let zero = vec![0u8; p.len as usize];
                self.lvs.base.write(phys * cs + p.within, &zero).await?;
            }
        }
        if !release.is_empty() {
            let mut seq = self.lvs.md_lock.lock().await;
            let mut next = self.lvs.snapshot_meta()?;
            let b = next.blob_mut(self.id).ok_or(IoError::ENXIO)?;
            b.map
                .retain(|[idx, phys]| !release.contains(&(*idx, *phys)));
            self.lvs.commit(&mut seq, next).await?;
        }
        Ok(())
    }
    async fn flush(&self) -> IoResult<()> {
        self.lvs.base.flush().await
    }
}
