//! The snapshot, clone and expansion RPCs of the Controller service:
//! request validation and CSI shapes around [`crate::ops`] and
//! [`crate::snapshots`].

use csi_proto::volume_capability::AccessType;
use csi_proto::volume_content_source::Type as Source;
use csi_proto::{
    list_snapshots_response, ControllerExpandVolumeRequest, ControllerExpandVolumeResponse,
    CreateSnapshotRequest, CreateSnapshotResponse, DeleteSnapshotRequest, GetSnapshotRequest,
    GetSnapshotResponse, ListSnapshotsRequest, ListSnapshotsResponse, VolumeContentSource,
};

use super::ControllerService;
use crate::capacity;
use crate::error::{ControllerError, Result};
use crate::ops::{self, create_volume::CreateRequest};
use crate::params;
use crate::snapshots::{self, SnapshotFilter};
use crate::store::{ContentSource, VolumeRecord};

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
            return Err(ControllerError::InvalidArgument(format!(
                "max_entries {} must not be negative",
                req.max_entries
            )));
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

    pub(super) async fn expand(
        &self,
        req: ControllerExpandVolumeRequest,
    ) -> Result<ControllerExpandVolumeResponse> {
        params::require("volume_id", &req.volume_id)?;
        let range = req
            .capacity_range
            .ok_or_else(|| ControllerError::InvalidArgument("capacity_range is required".into()))?;
        if let Some(cap) = &req.volume_capability {
            params::check_capabilities(std::slice::from_ref(cap))?;
        }
        let size =
            capacity::round_to_clusters(range.required_bytes, range.limit_bytes, self.granule())?;
        let capacity = ops::expand::expand_volume(&self.ctx, &req.volume_id, size).await?;
        // Block volumes need nothing from the node; filesystems must grow there.
        let block = matches!(
            req.volume_capability
                .as_ref()
                .and_then(|c| c.access_type.as_ref()),
            Some(AccessType::Block(_))
        );
        Ok(ControllerExpandVolumeResponse {
            capacity_bytes: i64::try_from(capacity).unwrap_or(i64::MAX),
            node_expansion_required: !block,
        })
    }

    /// CreateVolume with a content source (snapshot or volume).
    pub(super) async fn create_cloned(
        &self,
        request: CreateRequest,
        source: Source,
    ) -> Result<VolumeRecord> {
        match source {
            Source::Snapshot(s) => {
                params::require("volume_content_source.snapshot.snapshot_id", &s.snapshot_id)?;
                ops::clone::create_from_snapshot(&self.ctx, request, &s.snapshot_id).await
            }
            Source::Volume(v) => {
                params::require("volume_content_source.volume.volume_id", &v.volume_id)?;
                ops::clone::create_from_volume(&self.ctx, request, &v.volume_id).await
            }
        }
    }
}

/// The CSI content source of a volume record.
pub fn to_csi_source(source: Option<&ContentSource>) -> Option<VolumeContentSource> {
    use csi_proto::volume_content_source::{SnapshotSource, VolumeSource};
    let r#type = match source? {
        ContentSource::Snapshot { id } => Source::Snapshot(SnapshotSource {
            snapshot_id: id.clone(),
        }),
        ContentSource::Volume { id } => Source::Volume(VolumeSource {
            volume_id: id.clone(),
        }),
    };
    Some(VolumeContentSource {
        r#type: Some(r#type),
    })
}
