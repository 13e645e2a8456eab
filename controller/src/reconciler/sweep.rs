//! The orphan sweep: removes Shorthorn objects on the nodes that no record
//! explains any more, and can never wipe a cluster.
//!
//! Guards, checked on every pass before anything is deleted:
//! - The store must hold a cluster record, and it must be the one this
//!   controller started with. Otherwise nothing is touched anywhere.
//! - A node is swept only if its lvstore carries this cluster's stamp and no
//!   other (`nodes::stamp`). An unstamped node holding Shorthorn lvols is
//!   stamped (adopted) only when the store explains every one of them;
//!   otherwise it is left alone, as is any node stamped by another cluster.
//! - If the store lists no volume at all while a node holds Shorthorn lvols
//!   that no record explains and no tombstone covers, the store looks empty
//!   (a new etcd prefix, a wiped file): that node is left alone.
//!
//! Then, on each node: ublk disks, subsystems, raids and NVMe controllers of
//! volumes that are not (or not here) published are removed at once (cheap
//! to recreate); each replica and revert lvol gets a [`verdict`]: deleted at
//! once when its volume is tombstoned, after the grace period
//! ([`SweepPolicy::grace`]) when nothing explains it, or when it is a failed
//! replica nothing uses. Every deletion is decided twice: on the pass's
//! reading, then again under the volume's lock with the journal re-read.
//!
//! Tombstones are dropped once every node was swept and none holds an lvol
//! of the volume, or after [`SweepPolicy::tombstone_ttl`].

pub mod grace;
pub mod verdict;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Instant, SystemTime};

use spdk_client::Lvol;

use crate::context::Context;
use crate::error::Result;
use crate::naming;
use crate::nodes::stamp::{self, Stamp};
use crate::nodes::{primitives, NodeHandle};
use crate::store::{Expect, TombstoneRecord, Versioned};
use grace::Suspect;
pub use grace::{SweepPolicy, Sweeper};
use verdict::{judge, Facts, Role, Verdict, Why};

/// What one node's sweep ended with.
enum NodeOutcome {
    /// Swept; these volumes still have lvols on the node.
    Swept(BTreeSet<String>),
    /// Left alone (a guard refused, or the node could not be read).
    Skipped,
}

/// What the store said when the pass began.
struct PassView {
    cluster_id: String,
    /// Volumes with a journaled operation.
    busy: BTreeSet<String>,
    tombstones: BTreeMap<String, Versioned<TombstoneRecord>>,
    /// The store lists no volume at all.
    no_volumes: bool,
}

/// Removes Shorthorn objects on every node of this cluster that no record
/// explains, within the guards above.
pub async fn sweep_orphans(ctx: &Context) -> Result<()> {
    let Some(cluster) = ctx.store.get_cluster().await? else {
        tracing::error!(
            "orphan sweep refused: the store has no cluster record, so it is not the store these nodes were set up with (or it was wiped). Nothing is deleted. Check the controller's [store] (etcd endpoints and prefix, or the embedded file)"
        );
        return Ok(());
    };
    let cluster_id = cluster.record.id;
    if let Some(mine) = ctx.nodes.cluster() {
        if mine.id != cluster_id {
            tracing::error!(
                store = %cluster_id,
                controller = %mine.id,
                "orphan sweep refused: the store's cluster record changed since this controller started (the store was replaced underneath it). Nothing is deleted. Check the controller's [store] and restart it"
            );
            return Ok(());
        }
    }
    let view = PassView {
        cluster_id,
        busy: busy_volumes(ctx).await?,
        tombstones: ctx
            .store
            .list_tombstones()
            .await?
            .into_iter()
            .map(|t| (t.record.volume_id.clone(), t))
            .collect(),
        no_volumes: ctx.store.list_volumes(None, 1).await?.items.is_empty(),
    };
    let mut every_node_swept = true;
    let mut holding = BTreeSet::new();
    for node in ctx.nodes.refresh_all().await {
        if !node.status().online {
            every_node_swept = false;
            continue;
        }
        match sweep_node(ctx, &node, &view).await {
            Ok(NodeOutcome::Swept(volumes)) => holding.extend(volumes),
            Ok(NodeOutcome::Skipped) => every_node_swept = false,
            Err(e) => {
                every_node_swept = false;
                tracing::warn!(node = node.name(), error = %e, "orphan sweep failed on node");
            }
        }
    }
    ctx.sweeper.sightings.end_pass();
    drop_tombstones(ctx, &view, every_node_swept, &holding).await;
    Ok(())
}

async fn busy_volumes(ctx: &Context) -> Result<BTreeSet<String>> {
    Ok(ctx
        .store
        .list_pending_operations()
        .await?
        .into_iter()
        .map(|o| o.record.volume_id)
        .collect())
}

/// Drops the tombstones whose volumes no node holds anything of (only when
/// every node was swept), and those older than the TTL.
async fn drop_tombstones(
    ctx: &Context,
    view: &PassView,
    every_node_swept: bool,
    holding: &BTreeSet<String>,
) {
    let ttl = ctx.sweeper.policy.tombstone_ttl;
    let now = SystemTime::now();
    for (volume, t) in &view.tombstones {
        let age = now.duration_since(t.record.deleted_at).unwrap_or_default();
        let gone = every_node_swept && !holding.contains(volume);
        if gone || age > ttl {
            let dropped = ctx
                .store
                .delete_tombstone(volume, Expect::Revision(t.revision))
                .await;
            if let Err(e) = dropped {
                // Rewritten since the pass began, or the store failed: next pass.
                tracing::warn!(volume = %volume, error = %e, "could not drop tombstone");
            } else if gone {
                tracing::debug!(volume = %volume, "no node holds anything of the deleted volume; tombstone dropped");
            } else {
                tracing::warn!(volume = %volume, age_secs = age.as_secs(), "tombstone expired while a node may still hold lvols of the volume; they will be deleted after the grace period");
            }
        }
    }
}

async fn sweep_node(ctx: &Context, node: &NodeHandle, view: &PassView) -> Result<NodeOutcome> {
    let (stamp, lvols) = stamp::read(node, &view.cluster_id).await?;
    match stamp {
        Stamp::Ours => {}
        Stamp::Unstamped { data_lvols: 0 } => stamp::stamp(node, &view.cluster_id).await?,
        Stamp::Unstamped { data_lvols } => {
            if all_explained(ctx, node, &lvols, view).await? {
                tracing::warn!(
                    node = node.name(),
                    data_lvols,
                    "unstamped node holds only lvols this store explains: stamping it as a member of this cluster"
                );
                stamp::stamp(node, &view.cluster_id).await?;
            } else {
                tracing::warn!(
                    node = node.name(),
                    data_lvols,
                    cluster = %view.cluster_id,
                    "orphan sweep skips node: it carries no cluster stamp and holds Shorthorn lvols this store does not explain. If the node is this cluster's, stamp it by hand (bdev_lvol_create -l {} -t {} 1) and the sweep will clean it",
                    node.config.lvstore,
                    naming::cluster_stamp_lvol(&view.cluster_id)
                );
                return Ok(NodeOutcome::Skipped);
            }
        }
        Stamp::Foreign { clusters } => {
            tracing::error!(
                node = node.name(),
                stamps = %clusters.join(", "),
                cluster = %view.cluster_id,
                "orphan sweep skips node: it is stamped by another Shorthorn cluster. Check that this controller uses the right store; see [sweep] adopt_clusters to move the node to this cluster"
            );
            return Ok(NodeOutcome::Skipped);
        }
    }
    if view.no_volumes {
        let unexplained = unexplained_data_lvols(ctx, &lvols, view).await?;
        if !unexplained.is_empty() {
            tracing::error!(
                node = node.name(),
                lvols = %unexplained.join(", "),
                "orphan sweep skips node: the store lists no volume at all, yet the node holds Shorthorn lvols no record or tombstone explains. Nothing is deleted. Check that the controller's [store] is the one this cluster's volumes were created in (etcd endpoints and prefix, or the embedded file), and restore it if it was lost"
            );
            return Ok(NodeOutcome::Skipped);
        }
    }
    sweep_exports(ctx, node, &view.busy).await?;
    sweep_lvols(ctx, node, &lvols, view)
        .await
        .map(NodeOutcome::Swept)
}

/// Whether the store explains every Shorthorn data lvol on an unstamped
/// node: each replica lvol is the one a replica record on this node names
/// or its volume is tombstoned, each revert lvol's volume is recorded or
/// tombstoned, each snapshot lvol's snapshot is recorded.
async fn all_explained(
    ctx: &Context,
    node: &NodeHandle,
    lvols: &[Lvol],
    view: &PassView,
) -> Result<bool> {
    for lvol in lvols {
        let explained = match Role::of(&lvol.name) {
            Some(Role::Replica(v)) => {
                view.tombstones.contains_key(v)
                    || ctx
                        .store
                        .get_replica(v, node.name())
                        .await?
                        .is_some_and(|r| r.record.lvol_uuid == lvol.uuid)
            }
            Some(Role::Revert(v)) => {
                view.tombstones.contains_key(v) || ctx.store.get_volume(v).await?.is_some()
            }
            None => match lvol.name.strip_prefix(naming::SNAPSHOT_PREFIX) {
                Some(id) => ctx.store.get_snapshot(id).await?.is_some(),
                None => true,
            },
        };
        if !explained {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Shorthorn data lvols on a node of a store with no volume that neither a
/// tombstone nor a snapshot record explains.
async fn unexplained_data_lvols(
    ctx: &Context,
    lvols: &[Lvol],
    view: &PassView,
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for lvol in lvols.iter().filter(|l| naming::is_data_lvol(&l.name)) {
        let explained = match Role::of(&lvol.name) {
            Some(role) => view.tombstones.contains_key(role.volume()),
            None => match lvol.name.strip_prefix(naming::SNAPSHOT_PREFIX) {
                Some(id) => ctx.store.get_snapshot(id).await?.is_some(),
                None => false,
            },
        };
        if !explained {
            out.push(lvol.name.clone());
        }
    }
    Ok(out)
}

/// What the records say about one volume's objects on one node.
struct Wanted {
    published_here: bool,
    published_anywhere: bool,
    replica_here: bool,
}

async fn wanted(ctx: &Context, volume_id: &str, node: &str) -> Result<Wanted> {
    let replica_here = ctx
        .volume(volume_id)
        .await?
        .is_some_and(|(_, replicas)| replicas.iter().any(|r| r.node == node));
    let publications = ctx.store.list_publications(volume_id).await?;
    Ok(Wanted {
        published_here: publications.iter().any(|p| p.record.node == node),
        published_anywhere: !publications.is_empty(),
        replica_here,
    })
}

/// Whether a journal entry names `volume_id` now.
async fn journaled(ctx: &Context, volume_id: &str) -> Result<bool> {
    Ok(ctx
        .store
        .list_pending_operations()
        .await?
        .iter()
        .any(|o| o.record.volume_id == volume_id))
}

/// Whether an export-side object of `volume_id` on `node` is an orphan by
/// the records, checked twice: cheaply, then again under the volume's lock
/// with the journal re-read, so an operation that started after the pass
/// began is never undone under its feet. Returns the lock guard for an orphan.
async fn orphan(
    ctx: &Context,
    volume_id: &str,
    node: &str,
    busy: &BTreeSet<String>,
    keep: impl Fn(&Wanted) -> bool,
) -> Result<Option<tokio::sync::OwnedMutexGuard<()>>> {
    if busy.contains(volume_id) || keep(&wanted(ctx, volume_id, node).await?) {
        return Ok(None);
    }
    let guard = ctx.lock(volume_id).await;
    if journaled(ctx, volume_id).await? || keep(&wanted(ctx, volume_id, node).await?) {
        return Ok(None);
    }
    Ok(Some(guard))
}

/// Removes ublk disks, subsystems, raids and NVMe controllers no record
/// explains (cheap to recreate: no grace period).
async fn sweep_exports(ctx: &Context, node: &NodeHandle, busy: &BTreeSet<String>) -> Result<()> {
    let name = node.name().to_string();
    let published_here = |w: &Wanted| w.published_here;
    for disk in primitives::ublk_disks(node).await.unwrap_or_default() {
        let Some(v) = naming::volume_of_raid(&disk.bdev_name) else {
            continue;
        };
        if let Some(_guard) = orphan(ctx, v, &name, busy, published_here).await? {
            tracing::info!(node = %name, volume = v, "removing orphan ublk disk");
            primitives::remove_ublk(node, &disk.bdev_name).await?;
        }
    }
    for sub in primitives::subsystems(node).await? {
        let Some(v) = naming::volume_of_nqn(&sub.nqn) else {
            continue;
        };
        let frontend = sub.nqn == naming::volume_nqn(v);
        let keep = |w: &Wanted| {
            if frontend {
                w.published_here
            } else {
                w.published_anywhere && w.replica_here
            }
        };
        if let Some(_guard) = orphan(ctx, v, &name, busy, keep).await? {
            tracing::info!(node = %name, nqn = %sub.nqn, "removing orphan subsystem");
            primitives::remove_export(node, &sub.nqn).await?;
        }
    }
    for raid in primitives::raids(node).await? {
        let Some(raid_name) = raid.name.as_deref() else {
            continue;
        };
        let Some(v) = naming::volume_of_raid(raid_name) else {
            continue;
        };
        if let Some(_guard) = orphan(ctx, v, &name, busy, published_here).await? {
            tracing::info!(node = %name, volume = v, "removing orphan raid");
            primitives::remove_raid(node, raid_name).await?;
        }
    }
    for ctrl in primitives::controllers(node).await? {
        let Some(v) = naming::volume_of_nvme_controller(&ctrl.name) else {
            continue;
        };
        if let Some(_guard) = orphan(ctx, v, &name, busy, published_here).await? {
            tracing::info!(node = %name, controller = %ctrl.name, "removing orphan NVMe controller");
            primitives::remove_attachment(node, &ctrl.name).await?;
        }
    }
    Ok(())
}

/// What the store says about `volume_id` now.
async fn facts(ctx: &Context, volume_id: &str, busy: bool) -> Result<Facts> {
    let replicas = ctx.volume(volume_id).await?.map(|(_, r)| r);
    Ok(Facts {
        busy,
        published: !ctx.store.list_publications(volume_id).await?.is_empty(),
        tombstoned: replicas.is_none() && ctx.store.get_tombstone(volume_id).await?.is_some(),
        replicas,
    })
}

/// Judges every replica and revert lvol on the node and deletes the ones
/// whose time has come; returns the volumes that still have lvols here.
async fn sweep_lvols(
    ctx: &Context,
    node: &NodeHandle,
    lvols: &[Lvol],
    view: &PassView,
) -> Result<BTreeSet<String>> {
    let mut holding = BTreeSet::new();
    for lvol in lvols {
        let Some(role) = Role::of(&lvol.name) else {
            continue;
        };
        let volume = role.volume();
        let first = facts(ctx, volume, view.busy.contains(volume)).await?;
        let why = match judge(role, &lvol.uuid, node.name(), &first) {
            Verdict::Keep => {
                holding.insert(volume.to_string());
                continue;
            }
            Verdict::Delete(why) => why,
            Verdict::DeleteAfterGrace(why) => {
                let suspect = Suspect {
                    node: node.name().to_string(),
                    lvol_uuid: lvol.uuid.clone(),
                    why,
                };
                let grace = ctx.sweeper.policy.grace;
                let waited = ctx.sweeper.sightings.seen(&suspect, Instant::now());
                if waited < grace {
                    if waited.is_zero() {
                        tracing::warn!(
                            node = node.name(),
                            lvol = %lvol.alias,
                            volume,
                            grace_secs = grace.as_secs(),
                            "{}; it will be deleted once it has stayed so for the grace period",
                            why.describe()
                        );
                    }
                    holding.insert(volume.to_string());
                    continue;
                }
                why
            }
        };
        if delete_if_still(ctx, node, lvol, role, why).await? {
            ctx.sweeper.sightings.forget(&Suspect {
                node: node.name().to_string(),
                lvol_uuid: lvol.uuid.clone(),
                why,
            });
        } else {
            holding.insert(volume.to_string());
        }
    }
    Ok(holding)
}

/// Under the volume's lock, with the journal and records re-read: deletes
/// the lvol if the verdict still names `why`. Returns whether it deleted.
async fn delete_if_still(
    ctx: &Context,
    node: &NodeHandle,
    lvol: &Lvol,
    role: Role<'_>,
    why: Why,
) -> Result<bool> {
    let volume = role.volume();
    let _guard = ctx.lock(volume).await;
    let now = facts(ctx, volume, journaled(ctx, volume).await?).await?;
    let still = match judge(role, &lvol.uuid, node.name(), &now) {
        Verdict::Delete(w) | Verdict::DeleteAfterGrace(w) => w == why,
        Verdict::Keep => false,
    };
    if !still {
        return Ok(false);
    }
    tracing::warn!(node = node.name(), lvol = %lvol.alias, volume, "deleting lvol: {}", why.describe());
    if let Role::Replica(v) = role {
        primitives::remove_export(node, &naming::replica_nqn(v, node.name())).await?;
    }
    // By uuid: exactly the lvol judged, never a namesake created since.
    primitives::remove_lvol(node, &lvol.uuid).await?;
    Ok(true)
}
