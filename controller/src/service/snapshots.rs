//! The snapshot RPCs of the Controller service: request validation and CSI
//! shapes around [`crate::ops`] and [`crate::snapshots`].

use csi_proto::{
    list_snapshots_response, CreateSnapshotRequest, CreateSnapshotResponse, DeleteSnapshotRequest,
    GetSnapshotRequest, GetSnapshotResponse, ListSnapshotsRequest, ListSnapshotsResponse,
};

use super::ControllerService;
use crate::error::{ControllerError, Result};
use crate::ops;
use crate::params;
use crate::snapshots::{self, SnapshotFilter};

impl ControllerService {
    pub(super) async fn snapshot_create(
        &self,
        req: CreateSnapshotRequest,
    ) -> Result<CreateSnapshotResponse> {
        params::require("name", &req.name)?;
        params::require("source_volume_id", &req.source_volume_id)?;
        let record =
            ops::snapshot_create::create_snapshot(&self.ctx, &req.name, &req.source_volume_id)
                .await?;
        Ok(CreateSnapshotResponse {
            snapshot: Some(snapshots::to_csi(&record)),
        })
    }

    pub(super) async fn snapshot_delete(&self, req: DeleteSnapshotRequest) -> Result<()> {
        params::require("snapshot_id", &req.snapshot_id)?;
        ops::snapshot_delete::delete_snapshot(&self.ctx, &req.snapshot_id).await
    }

    pub(super) async fn snapshot_list(
        &self,
        req: ListSnapshotsRequest,
    ) -> Result<ListSnapshotsResponse> {
        if req.max_entries < 0 {
            return Err(ControllerError::NegativeMaxEntries {
                max_entries: req.max_entries,
            });
        }
        let start = snapshots::parse_token(&req.starting_token)?;
        let filter = SnapshotFilter {
            snapshot_id: (!req.snapshot_id.is_empty()).then_some(req.snapshot_id),
            source_volume_id: (!req.source_volume_id.is_empty()).then_some(req.source_volume_id),
        };
        let page = snapshots::list(
            &self.ctx,
            &filter,
            start.as_deref(),
            usize::try_from(req.max_entries).unwrap_or(0),
        )
        .await?;
        Ok(ListSnapshotsResponse {
            entries: page
                .items
                .iter()
                .map(|s| list_snapshots_response::Entry {
                    snapshot: Some(snapshots::to_csi(s)),
                })
                .collect(),
            next_token: page.next.unwrap_or_default(),
        })
    }

    pub(super) async fn snapshot_get(
        &self,
        req: GetSnapshotRequest,
    ) -> Result<GetSnapshotResponse> {
        params::require("snapshot_id", &req.snapshot_id)?;
        let record = snapshots::get(&self.ctx, &req.snapshot_id).await?;
        Ok(GetSnapshotResponse {
            snapshot: Some(snapshots::to_csi(&record)),
        })
    }
}
