//! The snapshot helpers every snapshot operation shares: reading snapshots
//! (for ListSnapshots, GetSnapshot and the operations; filters, pagination
//! tokens and the CSI view of a [`SnapshotRecord`]), the per-snapshot lock
//! key, and removing snapshot lvols from the nodes.
//!
//! Snapshots marked `deleted` (deleted while other volumes still read from
//! them, or internal to a volume clone) are never shown. Pages are in
//! snapshot-id order and the token is the id of the last entry returned, so
//! listings stay stable while snapshots are added or removed.

use std::time::UNIX_EPOCH;

use csi_proto::Snapshot;
use spdk_client::BdevLvolDeleteParams;

use crate::context::Context;
use crate::error::{ControllerError, Result};
use crate::naming;
use crate::nodes::NodeHandle;
use crate::store::SnapshotRecord;

/// Records fetched from the store per round trip while filling a page.
const FETCH: usize = 100;

/// Which snapshots a listing wants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotFilter {
    /// Only this snapshot.
    pub snapshot_id: Option<String>,
    /// Only snapshots of this volume.
    pub source_volume_id: Option<String>,
}

/// One page of visible snapshots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotPage {
    /// The snapshots, in id order.
    pub items: Vec<SnapshotRecord>,
    /// Token of the next page; `None` on the last one.
    pub next: Option<String>,
}

/// Checks a `starting_token`: ABORTED when this plugin did not issue it.
pub fn parse_token(token: &str) -> Result<Option<String>> {
    if token.is_empty() {
        return Ok(None);
    }
    if naming::is_volume_id(token) {
        return Ok(Some(token.to_string()));
    }
    Err(ControllerError::UnknownStartingToken {
        token: token.to_string(),
    })
}

/// The visible snapshot `snapshot_id`, or NOT_FOUND.
pub async fn get(ctx: &Context, snapshot_id: &str) -> Result<SnapshotRecord> {
    match ctx.store.get_snapshot(snapshot_id).await? {
        Some(s) if !s.record.deleted => Ok(s.record),
        _ => Err(ControllerError::SnapshotNotFound {
            id: snapshot_id.to_string(),
        }),
    }
}

/// Lists visible snapshots matching `filter`, after `start_after` (an id),
/// at most `max` (0 = all).
pub async fn list(
    ctx: &Context,
    filter: &SnapshotFilter,
    start_after: Option<&str>,
    max: usize,
) -> Result<SnapshotPage> {
    let mut items: Vec<SnapshotRecord> = Vec::new();
    let wanted = if max == 0 { usize::MAX } else { max + 1 };
    let keep = |s: &SnapshotRecord| {
        !s.deleted
            && filter
                .source_volume_id
                .as_ref()
                .is_none_or(|v| *v == s.source_volume_id)
            && start_after.is_none_or(|after| s.id.as_str() > after)
    };
    if let Some(id) = &filter.snapshot_id {
        if let Some(s) = ctx.store.get_snapshot(id).await? {
            if keep(&s.record) {
                items.push(s.record);
            }
        }
    } else if let Some(volume) = &filter.source_volume_id {
        let all = ctx.store.list_snapshots_of_volume(volume).await?;
        items.extend(
            all.into_iter()
                .map(|s| s.record)
                .filter(|s| keep(s))
                .take(wanted),
        );
    } else {
        let mut cursor = start_after.map(str::to_string);
        loop {
            let page = ctx.store.list_snapshots(cursor.as_deref(), FETCH).await?;
            let last = page.items.last().map(|s| s.record.id.clone());
            items.extend(page.items.into_iter().map(|s| s.record).filter(|s| keep(s)));
            if items.len() >= wanted || page.next.is_none() {
                break;
            }
            cursor = last;
        }
        items.truncate(wanted);
    }
    let next = if max > 0 && items.len() > max {
        items.truncate(max);
        items.last().map(|s| s.id.clone())
    } else {
        None
    };
    Ok(SnapshotPage { items, next })
}

/// The CSI view of a snapshot (always ready: it is recorded only once cut).
pub fn to_csi(s: &SnapshotRecord) -> Snapshot {
    let since = s.created_at.duration_since(UNIX_EPOCH).unwrap_or_default();
    Snapshot {
        size_bytes: i64::try_from(s.size_bytes).unwrap_or(i64::MAX),
        snapshot_id: s.id.clone(),
        source_volume_id: s.source_volume_id.clone(),
        creation_time: Some(prost_types::Timestamp {
            seconds: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
            nanos: i32::try_from(since.subsec_nanos()).unwrap_or(0),
        }),
        ready_to_use: true,
        group_snapshot_id: String::new(),
    }
}

/// Lock key serialising operations on one snapshot.
pub fn snapshot_lock(snapshot_id: &str) -> String {
    format!("snapshot:{snapshot_id}")
}

/// Deletes the snapshot lvol of `snapshot_id` on every node (absent ones are fine).
pub async fn remove_snapshot_lvols(
    ctx: &Context,
    nodes: &[String],
    snapshot_id: &str,
) -> Result<()> {
    for name in nodes {
        let node = ctx.nodes.get(name)?;
        match remove_snapshot_lvol(&node, snapshot_id).await {
            Ok(_) => {}
            Err(ControllerError::NodeUnreachable { .. }) => {
                tracing::warn!(node = %name, snapshot = %snapshot_id, "node unreachable; its snapshot lvol is left for the reconciler");
                return Err(ControllerError::NodeUnreachable {
                    node: name.clone(),
                    reason: "removing a snapshot lvol".into(),
                });
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Deletes the snapshot lvol of `snapshot_id` on `node`. `Ok(true)` when it
/// is gone (or was), `Ok(false)` when SPDK refuses because two or more lvols
/// still depend on it.
pub async fn remove_snapshot_lvol(node: &NodeHandle, snapshot_id: &str) -> Result<bool> {
    let params = BdevLvolDeleteParams {
        name: format!(
            "{}/{}",
            node.config.lvstore,
            naming::snapshot_lvol(snapshot_id)
        ),
    };
    match node.client.bdev_lvol_delete(&params).await {
        Ok(()) => Ok(true),
        Err(e) if e.is_not_found() => Ok(true),
        Err(e) if e.is_not_permitted() => Ok(false),
        Err(e) => Err(node.call_failed("bdev_lvol_delete", e).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_snapshot_ids_only() {
        assert_eq!(parse_token("").ok(), Some(None));
        let id = naming::new_snapshot_id();
        assert_eq!(parse_token(&id).ok(), Some(Some(id.clone())));
        assert!(matches!(
            parse_token("page-2"),
            Err(ControllerError::UnknownStartingToken { .. })
        ));
    }
}
