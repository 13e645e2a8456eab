//! `bdev_lvol_start_shallow_copy`: copies only the clusters a read-only lvol
//! itself owns onto another bdev (any kind, local or remote), in the background.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::bdev::Bdev;
use crate::rpc_error::RpcError;
use crate::sim::Sim;

/// Progress of one shallow copy.
#[derive(Debug, Clone, Default)]
pub struct CopyStatus {
    /// Clusters copied so far.
    pub copied_clusters: u64,
    /// Clusters to copy (those the source owns).
    pub total_clusters: u64,
    /// 0 while running or when done; a negated errno on failure.
    pub result: i32,
}

fn set(sim: &Sim, op: u32, f: impl FnOnce(&mut CopyStatus)) {
    if let Ok(mut m) = sim.lvol.copies.lock() {
        if let Some(s) = m.get_mut(&op) {
            f(s);
        }
    }
}

/// Starts a shallow copy of lvol `src` onto bdev `dst`; returns the operation id.
/// A missing source is -19; a missing destination is -32602 "No such device"
/// (the id is used up); other problems show up in the operation's state.
pub fn start(sim: &Arc<Sim>, src: &str, dst: &str) -> Result<u32, RpcError> {
    let (lvs, id) = super::find_lvol(sim, src).ok_or_else(RpcError::no_such_device)?;
    let op = sim.lvol.last_copy_id.fetch_add(1, Ordering::SeqCst) + 1;
    let dst_bdev: Arc<dyn Bdev> = sim
        .bdevs
        .lock()
        .map_err(|_| RpcError::errno(-5))?
        .lookup(dst)
        .map(|e| e.bdev.clone())
        .ok_or_else(|| RpcError::new(-32602, crate::rpc_error::strerror(19)))?;
    let (map, read_only, size, cs) = lvs
        .with_meta(|m| {
            m.blob(id).map(|b| {
                (
                    b.map.clone(),
                    b.read_only,
                    b.num_clusters * m.cluster_size,
                    m.cluster_size,
                )
            })
        })
        .ok()
        .flatten()
        .ok_or_else(RpcError::no_such_device)?;
    let status = CopyStatus {
        copied_clusters: 0,
        total_clusters: map.len() as u64,
        result: 0,
    };
    let precheck = if !read_only {
        -1
    } else if dst_bdev.size_bytes() < size || dst_bdev.block_size() != lvs.base.block_size() {
        -22
    } else {
        0
    };
    sim.lvol
        .copies
        .lock()
        .map_err(|_| RpcError::errno(-5))?
        .insert(
            op,
            CopyStatus {
                result: precheck,
                ..status
            },
        );
    if precheck != 0 {
        if precheck == -1 {
            set(sim, op, |s| s.total_clusters = 0);
        }
        return Ok(op);
    }
    let sim2 = sim.clone();
    tokio::spawn(async move {
        for (n, [idx, phys]) in map.iter().enumerate() {
            let delay = sim2.lvol.copy_cluster_delay_ms.load(Ordering::Relaxed);
            if delay > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
            }
            let r = async {
                let data = {
                    let _gate = lvs.gate.read().await;
                    lvs.base.read(lvs.cluster_offset(*phys), cs).await?
                };
                dst_bdev.write(idx * cs, &data).await
            }
            .await;
            match r {
                Ok(()) => set(&sim2, op, |s| s.copied_clusters = n as u64 + 1),
                Err(e) => {
                    tracing::warn!(op, errno = e.0, "shallow copy failed");
                    set(&sim2, op, |s| s.result = e.0);
                    return;
                }
            }
        }
        tracing::info!(op, clusters = map.len(), "shallow copy complete");
    });
    Ok(op)
}

/// `bdev_lvol_check_shallow_copy`: the status; a finished (complete or
/// failed) result is handed out once and then forgotten.
pub fn check(sim: &Sim, op: u32) -> Result<serde_json::Value, RpcError> {
    let mut m = sim.lvol.copies.lock().map_err(|_| RpcError::errno(-5))?;
    let s = m.get(&op).cloned().ok_or_else(RpcError::no_such_device)?;
    let mut v = serde_json::json!({
        "copied_clusters": s.copied_clusters,
        "total_clusters": s.total_clusters,
    });
    if s.copied_clusters < s.total_clusters && s.result == 0 {
        v["state"] = "in progress".into();
    } else if s.result == 0 {
        v["state"] = "complete".into();
        m.remove(&op);
    } else {
        v["state"] = "error".into();
        v["error"] = crate::rpc_error::strerror(-s.result).into();
        m.remove(&op);
    }
    Ok(v)
}
