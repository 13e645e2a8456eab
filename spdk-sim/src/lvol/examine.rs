//! Examine: finding an lvstore on a bdev that just appeared (e.g. an aio
//! bdev re-created after a restart) and bringing its lvols back.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::layout;
use super::meta::LvsMeta;
use super::store::Lvs;
use crate::sim::Sim;

/// Looks for an lvstore on bdev `bdev_name` and loads it with all its lvols.
pub async fn examine(sim: &Arc<Sim>, bdev_name: &str) {
    sim.lvol.examining.fetch_add(1, Ordering::SeqCst);
    if let Err(why) = load(sim, bdev_name).await {
        tracing::debug!(bdev = %bdev_name, %why, "examine: no lvstore loaded");
    }
    sim.lvol.examining.fetch_sub(1, Ordering::SeqCst);
    sim.lvol.examined.notify_waiters();
}

async fn load(sim: &Arc<Sim>, bdev_name: &str) -> Result<(), String> {
    let bdev = sim
        .bdevs
        .lock()
        .map_err(|_| "registry poisoned".to_string())?
        .lookup(bdev_name)
        .filter(|e| e.claimed_by.is_none())
        .map(|e| e.bdev.clone())
        .ok_or("bdev gone or claimed")?;
    let (anchor, seq, payload) = layout::read_latest(bdev.as_ref())
        .await
        .map_err(|e| format!("read failed: {e}"))?
        .ok_or("no lvstore")?;
    let meta: LvsMeta =
        serde_json::from_slice(&payload).map_err(|e| format!("bad metadata: {e}"))?;
    if sim.lvol.by_uuid(&meta.uuid.to_string()).is_some() || sim.lvol.by_name(&meta.name).is_some()
    {
        tracing::warn!(lvs = %meta.name, "examine: an lvstore with this name or uuid is already loaded");
        return Err("duplicate lvstore".into());
    }
    let base = sim
        .bdevs
        .lock()
        .map_err(|_| "registry poisoned".to_string())?
        .claim(bdev_name, "lvol")
        .map_err(|e| e.message)?;
    let base_name = base.name();
    let blobs: Vec<(u64, uuid::Uuid)> = meta.blobs.iter().map(|b| (b.id, b.uuid)).collect();
    let name = meta.name.clone();
    let lvs = Arc::new(Lvs::new(
        meta,
        seq,
        base,
        base_name.clone(),
        anchor,
        Arc::downgrade(sim),
    ));
    sim.lvol
        .stores
        .lock()
        .map_err(|_| "lvol state poisoned".to_string())?
        .push(lvs.clone());
    let mut registered = Vec::new();
    for (id, uuid) in blobs {
        match super::ops::register(sim, &lvs, id, uuid) {
            Ok(()) => registered.push(uuid.to_string()),
            Err(e) => tracing::warn!(%uuid, error = %e, "examine: cannot register lvol"),
        }
    }
    tracing::info!(lvs = %name, bdev = %base_name, "examine: lvstore loaded");
    // Each lvol that appears is examined in turn, by the raid module.
    for lvol in registered {
        crate::raid::examine(sim, &lvol).await;
    }
    Ok(())
}

/// Unloads the lvstore on `bdev_name` (its base bdev is being deleted):
/// its lvol bdevs disappear; the data stays on the device.
pub async fn base_removed(sim: &Arc<Sim>, bdev_name: &str) {
    let Some(lvs) = sim
        .lvol
        .all()
        .into_iter()
        .find(|l| l.base_name == bdev_name)
    else {
        return;
    };
    let _gate = lvs.gate.write().await;
    let uuids: Vec<uuid::Uuid> = lvs
        .with_meta(|m| m.blobs.iter().map(|b| b.uuid).collect())
        .unwrap_or_default();
    if let Ok(mut reg) = sim.bdevs.lock() {
        for u in uuids {
            reg.unregister(&u.to_string());
        }
        reg.release(bdev_name);
    }
    if let Ok(mut s) = sim.lvol.stores.lock() {
        s.retain(|l| !Arc::ptr_eq(l, &lvs));
    }
}

/// Waits until every examine started so far has finished.
pub async fn wait_for_examine(sim: &Arc<Sim>) {
    loop {
        let notified = sim.lvol.examined.notified();
        if sim.lvol.examining.load(Ordering::SeqCst) == 0 {
            return;
        }
        notified.await;
    }
}
