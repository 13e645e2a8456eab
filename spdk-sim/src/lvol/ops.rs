//! lvstore and lvol operations, with SPDK's rules and error codes.
//!
//! SPDK reports checks made before an operation starts as a negated errno
//! (e.g. -17, -19, -22) and failures from its asynchronous completion as
//! -32602 with the errno's text; deleting reports -32603. These functions
//! return the exact [`RpcError`] spdk_tgt v25.09 answers with.

use std::sync::Arc;

use uuid::Uuid;

use super::bdev::LvolBdev;
use super::layout::{self, Anchor};
use super::meta::{valid_name, Blob, LvsMeta, Parent};
use super::store::{async_err, Lvs, Source};
use crate::bdev::IoError;
use crate::rpc_error::{strerror, RpcError};
use crate::sim::Sim;

/// SPDK's default cluster size (SPDK_LVS_OPTS_CLUSTER_SZ).
pub const DEFAULT_CLUSTER_SZ: u64 = 4 << 20;

fn async_errno(errno: i32) -> RpcError {
    RpcError::new(-32602, strerror(errno))
}

fn lock_err<T>(_: T) -> RpcError {
    RpcError::errno(-5)
}

/// Registers the bdev of blob `id`.
pub fn register(sim: &Arc<Sim>, lvs: &Arc<Lvs>, id: u64, uuid: Uuid) -> Result<(), RpcError> {
    let bdev = LvolBdev {
        lvs: lvs.clone(),
        id,
        uuid,
    };
    sim.bdevs
        .lock()
        .map_err(lock_err)?
        .register(Arc::new(bdev))?;
    Ok(())
}

fn unregister(sim: &Sim, uuid: Uuid) {
    if let Ok(mut reg) = sim.bdevs.lock() {
        reg.unregister(&uuid.to_string());
    }
}

/// `bdev_lvol_create_lvstore`: formats an lvstore on `bdev_name` and claims it.
pub async fn create_lvstore(
    sim: &Arc<Sim>,
    bdev_name: &str,
    lvs_name: &str,
    cluster_sz: u64,
) -> Result<Uuid, RpcError> {
    let (block_size, size) = {
        let reg = sim.bdevs.lock().map_err(lock_err)?;
        let e = reg.lookup(bdev_name).ok_or_else(RpcError::no_such_device)?;
        if e.claimed_by.is_some() {
            return Err(RpcError::errno(-1));
        }
        (u64::from(e.bdev.block_size()), e.bdev.size_bytes())
    };
    let cs = if cluster_sz == 0 {
        DEFAULT_CLUSTER_SZ
    } else {
        cluster_sz
    };
    if cs < block_size || !cs.is_multiple_of(block_size) {
        return Err(RpcError::invalid_argument());
    }
    if !valid_name(lvs_name) {
        return Err(RpcError::invalid_argument());
    }
    if sim.lvol.by_name(lvs_name).is_some() {
        return Err(RpcError::exists());
    }
    let geo = match layout::geometry(size, cs) {
        Some(g) => g,
        None if size / cs == 0 => return Err(async_errno(22)),
        None => return Err(async_errno(12)),
    };
    let base = sim
        .bdevs
        .lock()
        .map_err(lock_err)?
        .claim(bdev_name, "lvol")?;
    let base_name = base.name();
    let anchor = Anchor::for_region(cs, geo.md_clusters * cs);
    let meta = LvsMeta {
        uuid: Uuid::new_v4(),
        name: lvs_name.to_string(),
        cluster_size: cs,
        total_clusters: geo.total_clusters,
        md_clusters: geo.md_clusters,
        max_clusters: geo.max_clusters,
        next_id: 0,
        blobs: Vec::new(),
        next_child_seq: 0,
    };
    let uuid = meta.uuid;
    let lvs = Arc::new(Lvs::new(
        meta.clone(),
        0,
        base.clone(),
        base_name.clone(),
        anchor,
        Arc::downgrade(sim),
    ));
    let written = async {
        layout::format(base.as_ref(), &anchor).await?;
        let mut seq = lvs.md_lock.lock().await;
        lvs.commit(&mut seq, meta).await
    }
    .await;
    if let Err(e) = written {
        sim.bdevs.lock().map_err(lock_err)?.release(&base_name);
        return Err(async_err(e));
    }
    sim.lvol.stores.lock().map_err(lock_err)?.push(lvs);
    tracing::info!(lvs = %lvs_name, bdev = %base_name, cluster_size = cs, "lvstore created");
    Ok(uuid)
}

/// `bdev_lvol_delete_lvstore`: deletes every lvol, wipes the lvstore, releases the base.
pub async fn delete_lvstore(sim: &Arc<Sim>, lvs: &Arc<Lvs>) -> Result<(), RpcError> {
    let _gate = lvs.gate.write().await;
    let uuids: Vec<Uuid> = lvs
        .with_meta(|m| m.blobs.iter().map(|b| b.uuid).collect())
        .map_err(async_err)?;
    layout::wipe(lvs.base.as_ref()).await.map_err(async_err)?;
    for u in uuids {
        unregister(sim, u);
    }
    sim.lvol
        .stores
        .lock()
        .map_err(lock_err)?
        .retain(|l| !Arc::ptr_eq(l, lvs));
    sim.bdevs.lock().map_err(lock_err)?.release(&lvs.base_name);
    Ok(())
}

/// `bdev_lvol_rename_lvstore`.
pub async fn rename_lvstore(sim: &Arc<Sim>, old: &str, new: &str) -> Result<(), RpcError> {
    let lvs = sim
        .lvol
        .by_name(old)
        .ok_or_else(|| RpcError::new(-2, format!("Lvol store {old} not found")))?;
    if old == new {
        return Ok(());
    }
    if !valid_name(new) {
        return Err(async_errno(22));
    }
    if sim.lvol.by_name(new).is_some() {
        return Err(async_errno(17));
    }
    lvs.update(|m| {
        m.name = new.to_string();
        Ok(())
    })
    .await
}

/// `bdev_lvol_grow_lvstore`: takes in clusters the base bdev gained.
pub async fn grow_lvstore(lvs: &Arc<Lvs>) -> Result<(), RpcError> {
    let size = lvs.base.size_bytes();
    lvs.update(|m| {
        let total = size / m.cluster_size;
        if total > m.max_clusters {
            return Err(async_errno(28));
        }
        if total > m.total_clusters {
            m.total_clusters = total;
        }
        Ok(())
    })
    .await
}

fn clusters_for(bytes: u64, cs: u64) -> u64 {
    bytes.div_ceil(cs)
}

fn new_blob(m: &mut LvsMeta, name: &str, num_clusters: u64, thin: bool, parent: Parent) -> Blob {
    let child_since = m.child_seq();
    Blob {
        child_since,
        id: m.new_id(),
        uuid: Uuid::new_v4(),
        name: name.to_string(),
        num_clusters,
        thin,
        read_only: false,
        snapshot: false,
        parent,
        map: Vec::new(),
    }
}

/// `bdev_lvol_create`: a thin or thick lvol of `size` bytes (rounded up to clusters).
pub async fn create_lvol(
    sim: &Arc<Sim>,
    lvs: &Arc<Lvs>,
    name: &str,
    size: u64,
    thin: bool,
) -> Result<Uuid, RpcError> {
    if !valid_name(name) {
        return Err(RpcError::invalid_argument());
    }
    if lvs
        .with_meta(|m| m.by_name(name).is_some())
        .map_err(async_err)?
    {
        return Err(RpcError::exists());
    }
    let (id, uuid) = lvs
        .update(|m| {
            let n = clusters_for(size, m.cluster_size);
            if m.by_name(name).is_some() {
                return Err(RpcError::exists());
            }
            let mut b = new_blob(m, name, n, thin, Parent::None);
            if !thin {
                let phys = m.take_free(n).ok_or_else(|| async_errno(28))?;
                b.map = (0..n).zip(phys).map(|(i, p)| [i, p]).collect();
            }
            let r = (b.id, b.uuid);
            m.blobs.push(b);
            Ok(r)
        })
        .await?;
    register(sim, lvs, id, uuid)?;
    tracing::info!(lvol = %name, %uuid, thin, "lvol created");
    Ok(uuid)
}

fn check_new_name(m: &LvsMeta, name: &str) -> Result<(), RpcError> {
    if !valid_name(name) {
        return Err(async_errno(22));
    }
    if m.by_name(name).is_some() {
        return Err(async_errno(17));
    }
    Ok(())
}

/// `bdev_lvol_snapshot`: a read-only snapshot takes the origin's clusters;
/// the origin becomes its (empty, thin) clone.
pub async fn snapshot(
    sim: &Arc<Sim>,
    lvs: &Arc<Lvs>,
    origin: u64,
    name: &str,
) -> Result<Uuid, RpcError> {
    let _gate = lvs.gate.write().await;
    let (id, uuid) = lvs
        .update(|m| {
            let o = m
                .blob(origin)
                .cloned()
                .ok_or_else(RpcError::no_such_device)?;
            if o.snapshot {
                return Err(async_errno(22));
            }
            check_new_name(m, name)?;
            let mut s = new_blob(m, name, o.num_clusters, true, o.parent.clone());
            s.read_only = true;
            s.snapshot = true;
            s.map = o.map.clone();
            let r = (s.id, s.uuid);
            let seq = m.child_seq();
            if let Some(ob) = m.blob_mut(origin) {
                ob.child_since = seq;
                ob.map.clear();
                ob.parent = Parent::Snapshot(r.0);
                ob.thin = true;
            }
            m.blobs.push(s);
            Ok(r)
        })
        .await?;
    register(sim, lvs, id, uuid)?;
    Ok(uuid)
}

/// `bdev_lvol_clone`: a thin clone of a snapshot.
pub async fn clone(
    sim: &Arc<Sim>,
    lvs: &Arc<Lvs>,
    snap: u64,
    name: &str,
) -> Result<Uuid, RpcError> {
    let (id, uuid) = lvs
        .update(|m| {
            let s = m.blob(snap).cloned().ok_or_else(RpcError::no_such_device)?;
            if !s.snapshot {
                return Err(async_errno(22));
            }
            check_new_name(m, name)?;
            let c = new_blob(m, name, s.num_clusters, true, Parent::Snapshot(snap));
            let r = (c.id, c.uuid);
            m.blobs.push(c);
            Ok(r)
        })
        .await?;
    register(sim, lvs, id, uuid)?;
    Ok(uuid)
}

/// `bdev_lvol_clone_bdev`: a thin clone of any bdev (an external snapshot).
pub async fn clone_bdev(
    sim: &Arc<Sim>,
    lvs: &Arc<Lvs>,
    ext_uuid: Uuid,
    ext_size: u64,
    name: &str,
) -> Result<Uuid, RpcError> {
    if !valid_name(name) {
        return Err(RpcError::invalid_argument());
    }
    if lvs
        .with_meta(|m| m.by_name(name).is_some())
        .map_err(async_err)?
    {
        return Err(RpcError::exists());
    }
    let (id, uuid) = lvs
        .update(|m| {
            let n = clusters_for(ext_size, m.cluster_size);
            let c = new_blob(m, name, n, true, Parent::External(ext_uuid.to_string()));
            let r = (c.id, c.uuid);
            m.blobs.push(c);
            Ok(r)
        })
        .await?;
    register(sim, lvs, id, uuid)?;
    Ok(uuid)
}

/// `bdev_lvol_delete`. A snapshot with one clone merges into it; with two or
/// more clones it cannot be deleted.
pub async fn delete_lvol(sim: &Arc<Sim>, lvs: &Arc<Lvs>, id: u64) -> Result<(), RpcError> {
    let uuid = lvs
        .with_meta(|m| m.blob(id).map(|b| b.uuid))
        .map_err(async_err)?
        .ok_or_else(RpcError::no_such_device)?;
    let claimed = sim
        .bdevs
        .lock()
        .map_err(lock_err)?
        .lookup(&uuid.to_string())
        .is_some_and(|e| e.claimed_by.is_some());
    if claimed {
        return Err(RpcError::new(-32603, strerror(16)));
    }
    let _gate = lvs.gate.write().await;
    lvs.update(|m| {
        let b = m.blob(id).cloned().ok_or_else(RpcError::no_such_device)?;
        let children: Vec<u64> = m.children(id).iter().map(|c| c.id).collect();
        match children.as_slice() {
            [] => {}
            [child] => {
                let seq = m.child_seq();
                let c = m.blob_mut(*child).ok_or_else(RpcError::no_such_device)?;
                c.child_since = seq;
                for [idx, phys] in &b.map {
                    if *idx < c.num_clusters && c.cluster(*idx).is_none() {
                        c.set_cluster(*idx, *phys);
                    }
                }
                c.parent = b.parent.clone();
            }
            _ => return Err(RpcError::new(-32603, strerror(1))),
        }
        m.blobs.retain(|x| x.id != id);
        Ok(())
    })
    .await
    .map_err(|e| {
        if e.code == -32602 {
            RpcError::new(-32603, e.message)
        } else {
            e
        }
    })?;
    unregister(sim, uuid);
    Ok(())
}

/// `bdev_lvol_resize` to `size` bytes (rounded up to clusters).
pub async fn resize(lvs: &Arc<Lvs>, id: u64, size: u64) -> Result<(), RpcError> {
    let _gate = lvs.gate.write().await;
    lvs.update(|m| {
        let n = clusters_for(size, m.cluster_size);
        let b = m.blob(id).cloned().ok_or_else(RpcError::no_such_device)?;
        if b.snapshot {
            return Err(async_errno(1));
        }
        let grow: Vec<u64> = if !b.thin && n > b.num_clusters {
            m.take_free(n - b.num_clusters)
                .ok_or_else(|| async_errno(28))?
        } else {
            Vec::new()
        };
        let bm = m.blob_mut(id).ok_or_else(RpcError::no_such_device)?;
        bm.map.retain(|p| p[0] < n);
        for (i, phys) in (b.num_clusters..n).zip(grow) {
            bm.set_cluster(i, phys);
        }
        bm.num_clusters = n;
        Ok(())
    })
    .await
}

/// `bdev_lvol_rename` within the lvstore.
pub async fn rename_lvol(lvs: &Arc<Lvs>, id: u64, new: &str) -> Result<(), RpcError> {
    lvs.update(|m| {
        let b = m.blob(id).ok_or_else(RpcError::no_such_device)?;
        if b.name == new {
            return Ok(());
        }
        check_new_name(m, new)?;
        if let Some(b) = m.blob_mut(id) {
            b.name = new.to_string();
        }
        Ok(())
    })
    .await
}

/// `bdev_lvol_set_read_only`.
pub async fn set_read_only(lvs: &Arc<Lvs>, id: u64) -> Result<(), RpcError> {
    lvs.update(|m| {
        m.blob_mut(id)
            .ok_or_else(RpcError::no_such_device)?
            .read_only = true;
        Ok(())
    })
    .await
}

/// Allocates own clusters for blob `id` wherever `want(source)` says so,
/// copying what the parents show, then applies `finish`; one durable update.
async fn materialize(
    lvs: &Arc<Lvs>,
    id: u64,
    want: impl Fn(&Source) -> bool,
    finish: impl FnOnce(&mut Blob),
) -> Result<(), RpcError> {
    let _gate = lvs.gate.write().await;
    let mut seq = lvs.md_lock.lock().await;
    let mut next = lvs.snapshot_meta().map_err(async_err)?;
    let cs = next.cluster_size;
    let b = next
        .blob(id)
        .cloned()
        .ok_or_else(RpcError::no_such_device)?;
    let todo: Vec<u64> = (0..b.num_clusters)
        .filter(|i| b.cluster(*i).is_none())
        .filter(|i| {
            let src = match &b.parent {
                Parent::None => Source::Zero,
                Parent::Snapshot(p) => Lvs::resolve(&next, *p, *i, cs),
                Parent::External(u) => Source::External(u.clone(), i * cs),
            };
            want(&src)
        })
        .collect();
    let phys = next
        .take_free(todo.len() as u64)
        .ok_or_else(|| async_errno(28))?;
    for (idx, p) in todo.iter().zip(&phys) {
        let data = lvs
            .parent_cluster_data(&next, id, *idx)
            .await
            .map_err(async_err)?;
        lvs.base.write(p * cs, &data).await.map_err(async_err)?;
    }
    let bm = next.blob_mut(id).ok_or_else(RpcError::no_such_device)?;
    for (idx, p) in todo.iter().zip(phys) {
        bm.set_cluster(*idx, p);
    }
    finish(bm);
    lvs.base.flush().await.map_err(async_err)?;
    lvs.commit(&mut seq, next).await.map_err(async_err)
}

/// `bdev_lvol_inflate`: allocates every cluster; no parent, thick afterwards.
pub async fn inflate(lvs: &Arc<Lvs>, id: u64) -> Result<(), RpcError> {
    materialize(
        lvs,
        id,
        |_| true,
        |b| {
            b.parent = Parent::None;
            b.thin = false;
        },
    )
    .await
}

/// `bdev_lvol_decouple_parent`: copies the clusters the parents hold; no parent afterwards.
pub async fn decouple(lvs: &Arc<Lvs>, id: u64) -> Result<(), RpcError> {
    let parent = lvs
        .with_meta(|m| m.blob(id).map(|b| b.parent.clone()))
        .map_err(async_err)?
        .ok_or_else(RpcError::no_such_device)?;
    if parent == Parent::None {
        return Err(async_errno(22));
    }
    materialize(
        lvs,
        id,
        |s| !matches!(s, Source::Zero),
        |b| b.parent = Parent::None,
    )
    .await
}

/// `bdev_lvol_set_parent`: makes a thin lvol the clone of a snapshot in the same lvstore.
pub async fn set_parent(lvs: &Arc<Lvs>, id: u64, parent: u64) -> Result<(), RpcError> {
    let _gate = lvs.gate.write().await;
    lvs.update(|m| {
        let b = m.blob(id).ok_or_else(RpcError::no_such_device)?;
        let p = m.blob(parent).ok_or_else(RpcError::no_such_device)?;
        if !b.thin || !p.snapshot || id == parent {
            return Err(async_errno(22));
        }
        if b.parent == Parent::Snapshot(parent) {
            return Err(async_errno(17));
        }
        let seq = m.child_seq();
        if let Some(b) = m.blob_mut(id) {
            b.parent = Parent::Snapshot(parent);
            b.child_since = seq;
        }
        Ok(())
    })
    .await
}

/// `bdev_lvol_set_parent_bdev`: makes a thin lvol the clone of an external bdev.
pub async fn set_parent_bdev(lvs: &Arc<Lvs>, id: u64, ext_uuid: Uuid) -> Result<(), RpcError> {
    let _gate = lvs.gate.write().await;
    let ext = Parent::External(ext_uuid.to_string());
    lvs.update(|m| {
        let b = m.blob(id).ok_or_else(RpcError::no_such_device)?;
        if !b.thin {
            return Err(async_errno(22));
        }
        if b.parent == ext {
            return Err(async_errno(17));
        }
        if let Some(b) = m.blob_mut(id) {
            b.parent = ext;
        }
        Ok(())
    })
    .await
}

/// Maps an I/O error to the errno SPDK reports for a failed copy.
pub fn io_errno(e: IoError) -> i32 {
    e.0
}
