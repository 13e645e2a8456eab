//! What a rebuild that failed leaves on a node its rollback could not
//! reach (the target or the source died mid-copy), removed once that node
//! answers again and no rebuild involves it:
//!
//! - a working lvol `shv-<id>-rb` (target) and its rebuild export;
//! - a rebuild snapshot `shv-<id>-rbs` (source; a thin swap's later rounds
//!   `shv-<id>-rbs2`, ...), deleted so that it merges back into its only
//!   child;
//! - snapshot copies `shs-<snapshot id>` the rebuild made (target): a
//!   snapshot lvol whose record exists but does not list this node, with no
//!   clone, is such a copy. Deleted newest first (a chain frees from the
//!   top), each pass until nothing more goes.
//!
//! Guards: nothing is touched on a node that a journaled rebuild names (as
//! source, target or engine), nor for a volume with any journaled
//! operation, nor for a volume (neither recorded nor tombstoned) or a
//! snapshot the store does not know. Each deletion is
//! decided again under the volume's lock with the journal re-read.

use std::collections::BTreeSet;

use spdk_client::BdevLvolGetLvolsParams;

use super::RebuildPayload;
use crate::context::Context;
use crate::error::Result;
use crate::naming;
use crate::nodes::{primitives, NodeHandle};
use crate::store::OperationKind;

/// What one kind of leftover is, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Working,
    RebuildSnapshot,
    SnapshotCopy,
}

/// Removes the rebuild leftovers on every reachable node; returns how many
/// lvols went.
pub async fn sweep(ctx: &Context) -> Result<usize> {
    let (busy_volumes, busy_nodes) = busy(ctx).await?;
    let mut removed = 0;
    for node in ctx.nodes.all() {
        if busy_nodes.contains(node.name()) {
            continue;
        }
        match sweep_node(ctx, &node, &busy_volumes).await {
            Ok(n) => removed += n,
            Err(e) => {
                tracing::debug!(node = node.name(), error = %e, "rebuild leftovers not swept on this node this pass")
            }
        }
    }
    Ok(removed)
}

/// Volumes with a journaled operation, and nodes a journaled rebuild names.
async fn busy(ctx: &Context) -> Result<(BTreeSet<String>, BTreeSet<String>)> {
    let mut volumes = BTreeSet::new();
    let mut nodes = BTreeSet::new();
    for op in ctx.store.list_pending_operations().await? {
        volumes.insert(op.record.volume_id.clone());
        if op.record.kind != OperationKind::RebuildReplica {
            continue;
        }
        match serde_json::from_value::<RebuildPayload>(op.record.payload.clone()) {
            Ok(p) => nodes.extend(
                [Some(p.source), Some(p.target), p.engine]
                    .into_iter()
                    .flatten(),
            ),
            // A rebuild whose nodes are unknown: leave every node alone.
            Err(_) => nodes.extend(ctx.nodes.all().iter().map(|n| n.name().to_string())),
        }
    }
    Ok((volumes, nodes))
}

/// The leftover `name` is, and the volume it belongs to, if it is one.
async fn classify(ctx: &Context, node: &NodeHandle, name: &str) -> Result<Option<(Kind, String)>> {
    if let Some(rest) = name.strip_prefix(naming::LVOL_PREFIX) {
        // A thin swap's later rounds are `-rbs2`, `-rbs3`, ...
        let round = rest.trim_end_matches(|c: char| c.is_ascii_digit());
        let rest = if round.ends_with(naming::REBUILD_SNAPSHOT_SUFFIX) {
            round
        } else {
            rest
        };
        for (suffix, kind) in [
            (naming::REBUILD_SNAPSHOT_SUFFIX, Kind::RebuildSnapshot),
            (naming::REBUILD_SUFFIX, Kind::Working),
        ] {
            if let Some(v) = rest.strip_suffix(suffix) {
                let known = ctx.store.get_volume(v).await?.is_some()
                    || ctx.store.get_tombstone(v).await?.is_some();
                if naming::is_volume_id(v) && known {
                    return Ok(Some((kind, v.to_string())));
                }
                return Ok(None);
            }
        }
        return Ok(None);
    }
    let Some(id) = name.strip_prefix(naming::SNAPSHOT_PREFIX) else {
        return Ok(None);
    };
    let Some(snap) = ctx.store.get_snapshot(id).await? else {
        return Ok(None);
    };
    if snap.record.deleted
        || snap
            .record
            .replica_snapshots
            .iter()
            .any(|r| r.node == node.name())
    {
        return Ok(None);
    }
    Ok(Some((
        Kind::SnapshotCopy,
        snap.record.source_volume_id.clone(),
    )))
}

/// One node: repeats until a pass over its lvols removes nothing.
async fn sweep_node(ctx: &Context, node: &NodeHandle, busy: &BTreeSet<String>) -> Result<usize> {
    let mut removed = 0;
    loop {
        let lvols = node
            .client
            .bdev_lvol_get_lvols(&BdevLvolGetLvolsParams::default())
            .await
            .map_err(|e| node.call_failed("bdev_lvol_get_lvols", e))?;
        let mut this_pass = 0;
        for lvol in lvols.iter().filter(|l| l.lvs.name == node.config.lvstore) {
            let Some((kind, volume)) = classify(ctx, node, &lvol.name).await? else {
                continue;
            };
            if busy.contains(&volume) {
                continue;
            }
            let Some(info) = super::plan::lvol_info(node, &lvol.uuid).await? else {
                continue;
            };
            // A snapshot copy with a clone is in use (or not the top of a
            // leftover chain yet); a rebuild snapshot merges into one child.
            let max_clones = match kind {
                Kind::SnapshotCopy => 0,
                Kind::RebuildSnapshot => 1,
                Kind::Working => usize::MAX,
            };
            if info.clones.len() > max_clones {
                continue;
            }
            let _guard = ctx.lock(&volume).await;
            let journaled = ctx
                .store
                .list_pending_operations()
                .await?
                .iter()
                .any(|o| o.record.volume_id == volume);
            if journaled || classify(ctx, node, &lvol.name).await?.map(|c| c.0) != Some(kind) {
                continue;
            }
            tracing::warn!(node = node.name(), lvol = %lvol.alias, volume = %volume, ?kind, "removing what a failed rebuild left on this node");
            if kind == Kind::Working {
                primitives::remove_export(node, &naming::rebuild_nqn(&volume, node.name())).await?;
            }
            primitives::remove_lvol(node, &lvol.uuid).await?;
            this_pass += 1;
        }
        if this_pass == 0 {
            return Ok(removed);
        }
        removed += this_pass;
    }
}
