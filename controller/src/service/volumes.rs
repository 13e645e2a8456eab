//! The volume RPCs of the Controller service (create and clone, publish,
//! validate, list, capacity, get, expand, modify) and the CSI shape of a
//! volume.

use std::collections::HashMap;

use csi_proto::volume_capability::AccessType;
use csi_proto::volume_content_source::Type as Source;
use csi_proto::{
    controller_get_volume_response, list_volumes_response, validate_volume_capabilities_response,
    ControllerExpandVolumeRequest, ControllerExpandVolumeResponse, ControllerGetVolumeRequest,
    ControllerGetVolumeResponse, ControllerModifyVolumeRequest, ControllerModifyVolumeResponse,
    ControllerPublishVolumeRequest, ControllerPublishVolumeResponse, CreateVolumeRequest,
    CreateVolumeResponse, GetCapacityRequest, GetCapacityResponse, ListVolumesRequest,
    ListVolumesResponse, ValidateVolumeCapabilitiesRequest, ValidateVolumeCapabilitiesResponse,
    Volume, VolumeCondition, VolumeContentSource,
};

use super::ControllerService;
use crate::capacity;
use crate::error::{ControllerError, Result};
use crate::health;
use crate::naming;
use crate::ops::{self, create_volume::CreateRequest};
use crate::params;
use crate::placement::segments_match;
use crate::store::{ContentSource, Versioned, VolumeRecord};

impl ControllerService {
    pub(super) async fn create(&self, req: CreateVolumeRequest) -> Result<CreateVolumeResponse> {
        params::require("name", &req.name)?;
        params::check_capabilities(&req.volume_capabilities)?;
        let parsed = params::parse_volume_params(&req.parameters)?;
        // A VolumeAttributesClass may set the count; it wins over the StorageClass.
        let replicas =
            params::parse_mutable_params(&req.mutable_parameters)?.unwrap_or(parsed.replicas);
        let range = req.capacity_range.unwrap_or_default();
        let size =
            capacity::round_to_clusters(range.required_bytes, range.limit_bytes, self.granule())?;
        let request = ops::create_volume::CreateRequest {
            name: req.name,
            size,
            replicas,
            parameters: parsed.stored,
            topology: params::topology(req.accessibility_requirements.as_ref()),
        };
        let source = req.volume_content_source.and_then(|s| s.r#type);
        let volume = match source {
            None => ops::create_volume::create_volume(&self.ctx, request).await?,
            Some(source) => self.create_cloned(request, source).await?,
        };
        Ok(CreateVolumeResponse {
            volume: Some(to_csi_volume(&volume)),
        })
    }

    pub(super) async fn publish(
        &self,
        req: ControllerPublishVolumeRequest,
    ) -> Result<ControllerPublishVolumeResponse> {
        params::require("volume_id", &req.volume_id)?;
        params::require("node_id", &req.node_id)?;
        let cap = req
            .volume_capability
            .as_ref()
            .ok_or_else(|| ControllerError::MissingField {
                field: "volume_capability".into(),
            })?;
        params::check_capabilities(std::slice::from_ref(cap))?;
        // The volume and the node are looked up (once) by the operation.
        let context =
            ops::publish::publish(&self.ctx, &req.volume_id, &req.node_id, req.readonly).await?;
        Ok(ControllerPublishVolumeResponse {
            publish_context: context.into_iter().collect(),
        })
    }

    pub(super) async fn validate(
        &self,
        req: ValidateVolumeCapabilitiesRequest,
    ) -> Result<ValidateVolumeCapabilitiesResponse> {
        params::require("volume_id", &req.volume_id)?;
        if req.volume_capabilities.is_empty() {
            return Err(ControllerError::MissingField {
                field: "volume_capabilities".into(),
            });
        }
        self.ctx.existing_volume(&req.volume_id).await?;
        let problems: Vec<String> = req
            .volume_capabilities
            .iter()
            .filter_map(params::unsupported)
            .collect();
        if !problems.is_empty() {
            return Ok(ValidateVolumeCapabilitiesResponse {
                confirmed: None,
                message: problems.join("; "),
            });
        }
        if let Err(e) = params::parse_volume_params(&req.parameters)
            .and_then(|_| params::parse_mutable_params(&req.mutable_parameters))
        {
            return Ok(ValidateVolumeCapabilitiesResponse {
                confirmed: None,
                message: e.to_string(),
            });
        }
        Ok(ValidateVolumeCapabilitiesResponse {
            confirmed: Some(validate_volume_capabilities_response::Confirmed {
                volume_context: req.volume_context,
                volume_capabilities: req.volume_capabilities,
                parameters: req.parameters,
                mutable_parameters: req.mutable_parameters,
            }),
            message: String::new(),
        })
    }

    /// Where a volume is published and its condition. `fresh` refreshes the
    /// replica nodes first; a listing refreshes every node once instead.
    async fn status(
        &self,
        volume_id: &str,
        freshness: Freshness,
    ) -> Result<(Vec<String>, VolumeCondition)> {
        let published = self
            .ctx
            .store
            .list_publications(volume_id)
            .await?
            .into_iter()
            .map(|p| p.record.node)
            .collect();
        let condition = match freshness {
            Freshness::Read => health::condition(&self.ctx, volume_id).await?,
            Freshness::KnownSpace => {
                health::condition_from_known_space(&self.ctx, volume_id).await?
            }
        };
        Ok((
            published,
            VolumeCondition {
                abnormal: condition.abnormal,
                message: condition.message,
            },
        ))
    }

    pub(super) async fn list(&self, req: ListVolumesRequest) -> Result<ListVolumesResponse> {
        if req.max_entries < 0 {
            return Err(ControllerError::NegativeMaxEntries {
                max_entries: req.max_entries,
            });
        }
        let start = if req.starting_token.is_empty() {
            None
        } else if naming::is_volume_id(&req.starting_token) {
            Some(req.starting_token.as_str())
        } else {
            return Err(ControllerError::UnknownStartingToken {
                token: req.starting_token,
            });
        };
        let page = self
            .ctx
            .store
            .list_volumes(start, req.max_entries as usize)
            .await?;
        // While the health monitor keeps the records (and node views)
        // current, a page makes no SPDK call; otherwise it refreshes every
        // node once and reads each volume's engines.
        let recorded = self.ctx.health.is_current();
        if !page.items.is_empty() && !recorded {
            self.ctx.nodes.refresh_all().await;
        }
        let entries = if recorded {
            self.entries_from_records(page.items).await?
        } else {
            let mut entries = Vec::with_capacity(page.items.len());
            for v in page.items {
                let (published, condition) =
                    self.status(&v.record.id, Freshness::KnownSpace).await?;
                entries.push(list_entry(&v.record, published, condition));
            }
            entries
        };
        Ok(ListVolumesResponse {
            entries,
            next_token: page.next.unwrap_or_default(),
        })
    }

    /// The entries of a page judged from the records alone: the page's
    /// replicas and publications in two store reads, no SPDK call.
    async fn entries_from_records(
        &self,
        volumes: Vec<Versioned<VolumeRecord>>,
    ) -> Result<Vec<list_volumes_response::Entry>> {
        let ids: Vec<String> = volumes.iter().map(|v| v.record.id.clone()).collect();
        let mut replicas = self.ctx.store.replicas_of_volumes(&ids).await?;
        let mut publications = self.ctx.store.publications_of_volumes(&ids).await?;
        Ok(volumes
            .into_iter()
            .map(|v| {
                let id = &v.record.id;
                let replicas = replicas.remove(id).unwrap_or_default();
                let published = publications
                    .remove(id)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|p| p.node)
                    .collect();
                let condition = health::judge_records(&self.ctx, &v.record, &replicas);
                list_entry(
                    &v.record,
                    published,
                    VolumeCondition {
                        abnormal: condition.abnormal,
                        message: condition.message,
                    },
                )
            })
            .collect())
    }

    pub(super) async fn capacity(&self, req: GetCapacityRequest) -> Result<GetCapacityResponse> {
        let parsed = params::parse_volume_params(&req.parameters)?;
        if req
            .volume_capabilities
            .iter()
            .any(|c| params::unsupported(c).is_some())
        {
            return Ok(GetCapacityResponse {
                available_capacity: 0,
                maximum_volume_size: Some(0),
                minimum_volume_size: None,
            });
        }
        let wanted = req
            .accessible_topology
            .as_ref()
            .map(params::topology_segments);
        let nodes = self.ctx.nodes.refresh_all().await;
        let mut free: Vec<u64> = nodes
            .iter()
            .filter(|n| n.status().online)
            .filter(|n| {
                wanted
                    .as_ref()
                    .is_none_or(|w| segments_match(&n.segments(), w))
            })
            .map(|n| n.status().space.provisionable_bytes(self.ctx.nodes.ratio))
            .collect();
        free.sort_unstable_by(|a, b| b.cmp(a));
        let replicas = parsed.replicas as usize;
        let granule = self.granule();
        let max = free
            .get(replicas.saturating_sub(1))
            .map_or(0, |b| b / granule * granule);
        let total: u64 = free.iter().sum::<u64>() / replicas.max(1) as u64;
        Ok(GetCapacityResponse {
            available_capacity: i64::try_from(total).unwrap_or(i64::MAX),
            maximum_volume_size: Some(i64::try_from(max).unwrap_or(i64::MAX)),
            minimum_volume_size: Some(i64::try_from(granule).unwrap_or(i64::MAX)),
        })
    }

    pub(super) async fn get_volume(
        &self,
        req: ControllerGetVolumeRequest,
    ) -> Result<ControllerGetVolumeResponse> {
        params::require("volume_id", &req.volume_id)?;
        let (volume, _) = self.ctx.existing_volume(&req.volume_id).await?;
        let (published, condition) = self.status(&req.volume_id, Freshness::Read).await?;
        Ok(ControllerGetVolumeResponse {
            volume: Some(to_csi_volume(&volume)),
            status: Some(controller_get_volume_response::VolumeStatus {
                published_node_ids: published,
                volume_condition: Some(condition),
            }),
        })
    }

    pub(super) async fn expand(
        &self,
        req: ControllerExpandVolumeRequest,
    ) -> Result<ControllerExpandVolumeResponse> {
        params::require("volume_id", &req.volume_id)?;
        let range = req
            .capacity_range
            .ok_or_else(|| ControllerError::MissingField {
                field: "capacity_range".into(),
            })?;
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

    /// ControllerModifyVolume: `numberOfReplicas` is the one mutable
    /// parameter; the change is [`ops::replica_count::set_replica_count`].
    pub(super) async fn modify(
        &self,
        req: ControllerModifyVolumeRequest,
    ) -> Result<ControllerModifyVolumeResponse> {
        params::require("volume_id", &req.volume_id)?;
        if req.mutable_parameters.is_empty() {
            return Err(ControllerError::MissingField {
                field: "mutable_parameters".into(),
            });
        }
        let count = params::parse_mutable_params(&req.mutable_parameters)?;
        match count {
            Some(count) => {
                let done =
                    ops::replica_count::set_replica_count(&self.ctx, &req.volume_id, count).await?;
                tracing::info!(volume = %req.volume_id, from = done.from, to = done.to, added = ?done.added, removed = ?done.removed, "ControllerModifyVolume done");
            }
            None => {
                self.ctx.existing_volume(&req.volume_id).await?;
            }
        }
        Ok(ControllerModifyVolumeResponse {})
    }

    /// CreateVolume with a content source (snapshot or volume).
    async fn create_cloned(&self, request: CreateRequest, source: Source) -> Result<VolumeRecord> {
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

/// One ListVolumes entry.
fn list_entry(
    volume: &VolumeRecord,
    published: Vec<String>,
    condition: VolumeCondition,
) -> list_volumes_response::Entry {
    list_volumes_response::Entry {
        volume: Some(to_csi_volume(volume)),
        status: Some(list_volumes_response::VolumeStatus {
            published_node_ids: published,
            volume_condition: Some(condition),
        }),
    }
}

/// The CSI view of a volume record.
pub fn to_csi_volume(v: &VolumeRecord) -> Volume {
    Volume {
        capacity_bytes: i64::try_from(v.capacity_bytes).unwrap_or(i64::MAX),
        volume_id: v.id.clone(),
        volume_context: HashMap::from([(
            params::PARAM_REPLICAS.to_string(),
            v.replica_count.to_string(),
        )]),
        content_source: to_csi_source(v.content_source.as_ref()),
        accessible_topology: v
            .accessible_topology
            .iter()
            .map(params::to_topology)
            .collect(),
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

/// How current a reported VolumeCondition must be.
#[derive(Debug, Clone, Copy)]
enum Freshness {
    /// Read the space of every replica node and the engines (one volume).
    Read,
    /// Read the engines; node views come from the caller's refresh.
    KnownSpace,
}
