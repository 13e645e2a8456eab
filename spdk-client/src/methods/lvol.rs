//! Logical volume stores and logical volumes: create, snapshot, clone,
//! resize, shallow copy and friends.
//!
//! An lvol's bdev name is its UUID; its alias is `<lvs_name>/<lvol_name>`.
//! Methods taking a `name` accept either.

use serde::{Deserialize, Serialize};

use crate::client::SpdkClient;
use crate::error::Result;

/// How SPDK clears data clusters (lvstore creation, lvol creation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClearMethod {
    /// Do not clear.
    None,
    /// Unmap (deallocate).
    Unmap,
    /// Write zeroes.
    WriteZeroes,
}

/// Params of `bdev_lvol_create_lvstore`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BdevLvolCreateLvstoreParams {
    /// Base bdev to build the lvstore on.
    pub bdev_name: String,
    /// Name of the new lvstore.
    pub lvs_name: String,
    /// Cluster size in bytes (SPDK default 4 MiB).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_sz: Option<u64>,
    /// Clear method of the data region.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clear_method: Option<ClearMethod>,
    /// Metadata pages reserved per cluster (SPDK default 100); raise to allow growth.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_md_pages_per_cluster_ratio: Option<u32>,
    /// Metadata page size in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub md_page_size: Option<u32>,
}

/// Params of `bdev_lvol_get_lvstores`; give at most one of the two.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BdevLvolGetLvstoresParams {
    /// Only the lvstore with this UUID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// Only the lvstore with this name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lvs_name: Option<String>,
}

/// One lvstore as listed by `bdev_lvol_get_lvstores`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Lvstore {
    /// Lvstore UUID.
    pub uuid: String,
    /// Lvstore name.
    pub name: String,
    /// Base bdev name.
    pub base_bdev: String,
    /// Data clusters in total.
    pub total_data_clusters: u64,
    /// Free data clusters.
    pub free_clusters: u64,
    /// Block size in bytes.
    pub block_size: u32,
    /// Cluster size in bytes.
    pub cluster_size: u64,
}

impl Lvstore {
    /// Free space in bytes.
    pub fn free_bytes(&self) -> u64 {
        self.free_clusters.saturating_mul(self.cluster_size)
    }

    /// Data capacity in bytes.
    pub fn total_bytes(&self) -> u64 {
        self.total_data_clusters.saturating_mul(self.cluster_size)
    }
}

/// Params of `bdev_lvol_create`; give exactly one of `uuid` and `lvs_name`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BdevLvolCreateParams {
    /// Lvol name, at most 63 characters.
    pub lvol_name: String,
    /// Size in MiB, rounded up to whole clusters.
    pub size_in_mib: u64,
    /// Thin provisioning.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thin_provision: Option<bool>,
    /// UUID of the lvstore.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// Name of the lvstore.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lvs_name: Option<String>,
    /// Clear method of the lvol's clusters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clear_method: Option<ClearMethod>,
}

/// Params of `bdev_lvol_delete`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BdevLvolDeleteParams {
    /// UUID or alias.
    pub name: String,
}

/// Params of `bdev_lvol_resize`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BdevLvolResizeParams {
    /// UUID or alias.
    pub name: String,
    /// New size in MiB.
    pub size_in_mib: u64,
}

/// Params of `bdev_lvol_rename`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BdevLvolRenameParams {
    /// UUID or alias of the lvol.
    pub old_name: String,
    /// New lvol name (without the lvstore prefix).
    pub new_name: String,
}

/// Params of `bdev_lvol_snapshot`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BdevLvolSnapshotParams {
    /// UUID or alias of the lvol to snapshot.
    pub lvol_name: String,
    /// Name of the new snapshot.
    pub snapshot_name: String,
}

/// Params of `bdev_lvol_clone`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BdevLvolCloneParams {
    /// UUID or alias of the snapshot.
    pub snapshot_name: String,
    /// Name of the new clone.
    pub clone_name: String,
}

/// Params of `bdev_lvol_get_lvols`; give at most one of the two.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BdevLvolGetLvolsParams {
    /// Only lvols of the lvstore with this UUID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lvs_uuid: Option<String>,
    /// Only lvols of the lvstore with this name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lvs_name: Option<String>,
}

/// One lvol as listed by `bdev_lvol_get_lvols`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Lvol {
    /// `<lvs_name>/<lvol_name>`.
    pub alias: String,
    /// Lvol UUID (also its bdev name).
    pub uuid: String,
    /// Lvol name.
    pub name: String,
    /// Thin provisioned.
    pub is_thin_provisioned: bool,
    /// Is a snapshot.
    pub is_snapshot: bool,
    /// Is a clone of a snapshot.
    pub is_clone: bool,
    /// Is a clone of an external snapshot.
    pub is_esnap_clone: bool,
    /// Missing its external snapshot.
    pub is_degraded: bool,
    /// Clusters allocated.
    pub num_allocated_clusters: u64,
    /// The owning lvstore.
    pub lvs: LvstoreRef,
}

/// Name and UUID of an lvstore.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LvstoreRef {
    /// Lvstore name.
    pub name: String,
    /// Lvstore UUID.
    pub uuid: String,
}

/// `driver_specific.lvol` of an lvol bdev.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LvolDriverInfo {
    /// UUID of the owning lvstore.
    pub lvol_store_uuid: String,
    /// The lvstore's base bdev.
    pub base_bdev: String,
    /// Thin provisioned.
    pub thin_provision: bool,
    /// Clusters allocated.
    pub num_allocated_clusters: u64,
    /// Is a snapshot.
    pub snapshot: bool,
    /// Is a clone.
    pub clone: bool,
    /// Is an external-snapshot clone.
    pub esnap_clone: bool,
    /// Parent snapshot name (clones only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_snapshot: Option<String>,
    /// Names of clones (snapshots only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub clones: Vec<String>,
    /// External snapshot bdev (external-snapshot clones only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_snapshot_name: Option<String>,
}

/// Params of `bdev_lvol_inflate`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BdevLvolInflateParams {
    /// UUID or alias.
    pub name: String,
}

/// Params of `bdev_lvol_decouple_parent`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BdevLvolDecoupleParentParams {
    /// UUID or alias.
    pub name: String,
}

/// Params of `bdev_lvol_set_read_only`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BdevLvolSetReadOnlyParams {
    /// UUID or alias.
    pub name: String,
}

/// Params of `bdev_lvol_start_shallow_copy`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BdevLvolStartShallowCopyParams {
    /// UUID or alias of the (read-only) source lvol.
    pub src_lvol_name: String,
    /// Destination bdev, at least as large as the source.
    pub dst_bdev_name: String,
}

/// Result of `bdev_lvol_start_shallow_copy`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShallowCopyOperation {
    /// Id to poll with `bdev_lvol_check_shallow_copy`.
    pub operation_id: u32,
}

/// Params of `bdev_lvol_check_shallow_copy`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BdevLvolCheckShallowCopyParams {
    /// Id from `bdev_lvol_start_shallow_copy`.
    pub operation_id: u32,
}

/// State of a shallow copy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShallowCopyState {
    /// Still copying.
    #[serde(rename = "in progress")]
    InProgress,
    /// Finished successfully.
    #[serde(rename = "complete")]
    Complete,
    /// Failed; see [`ShallowCopyStatus::error`].
    #[serde(rename = "error")]
    Error,
    /// A state this client does not know.
    #[default]
    #[serde(other)]
    Unknown,
}

/// Result of `bdev_lvol_check_shallow_copy`. A finished result can be read
/// only once; checking again fails with NotFound.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ShallowCopyStatus {
    /// Clusters copied so far.
    pub copied_clusters: u64,
    /// Clusters to copy.
    pub total_clusters: u64,
    /// Progress state.
    pub state: ShallowCopyState,
    /// Error text when `state` is `Error`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Params of `bdev_lvol_set_parent`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BdevLvolSetParentParams {
    /// UUID or alias of the (thin) lvol.
    pub lvol_name: String,
    /// UUID or alias of the snapshot to become its parent.
    pub parent_name: String,
}

impl SpdkClient {
    /// `bdev_lvol_create_lvstore`: returns the lvstore UUID.
    pub async fn bdev_lvol_create_lvstore(
        &self,
        params: &BdevLvolCreateLvstoreParams,
    ) -> Result<String> {
        self.call("bdev_lvol_create_lvstore", Some(params)).await
    }

    /// `bdev_lvol_get_lvstores`.
    pub async fn bdev_lvol_get_lvstores(
        &self,
        params: &BdevLvolGetLvstoresParams,
    ) -> Result<Vec<Lvstore>> {
        self.call_opt("bdev_lvol_get_lvstores", params).await
    }

    /// `bdev_lvol_create`: returns the lvol UUID (its bdev name).
    pub async fn bdev_lvol_create(&self, params: &BdevLvolCreateParams) -> Result<String> {
        self.call("bdev_lvol_create", Some(params)).await
    }

    /// `bdev_lvol_delete`. Deleting a snapshot with two or more clones is NotPermitted.
    pub async fn bdev_lvol_delete(&self, params: &BdevLvolDeleteParams) -> Result<()> {
        self.call_unit("bdev_lvol_delete", Some(params)).await
    }

    /// `bdev_lvol_resize`. A thick grow beyond free space is NoSpace.
    pub async fn bdev_lvol_resize(&self, params: &BdevLvolResizeParams) -> Result<()> {
        self.call_unit("bdev_lvol_resize", Some(params)).await
    }

    /// `bdev_lvol_rename`.
    pub async fn bdev_lvol_rename(&self, params: &BdevLvolRenameParams) -> Result<()> {
        self.call_unit("bdev_lvol_rename", Some(params)).await
    }

    /// `bdev_lvol_snapshot`: returns the snapshot UUID.
    pub async fn bdev_lvol_snapshot(&self, params: &BdevLvolSnapshotParams) -> Result<String> {
        self.call("bdev_lvol_snapshot", Some(params)).await
    }

    /// `bdev_lvol_clone`: returns the clone UUID.
    pub async fn bdev_lvol_clone(&self, params: &BdevLvolCloneParams) -> Result<String> {
        self.call("bdev_lvol_clone", Some(params)).await
    }

    /// `bdev_lvol_get_lvols`.
    pub async fn bdev_lvol_get_lvols(&self, params: &BdevLvolGetLvolsParams) -> Result<Vec<Lvol>> {
        self.call_opt("bdev_lvol_get_lvols", params).await
    }

    /// `bdev_lvol_inflate`: allocates every cluster and drops the parent.
    pub async fn bdev_lvol_inflate(&self, params: &BdevLvolInflateParams) -> Result<()> {
        self.call_unit("bdev_lvol_inflate", Some(params)).await
    }

    /// `bdev_lvol_decouple_parent`: copies the parent's clusters and drops it.
    pub async fn bdev_lvol_decouple_parent(
        &self,
        params: &BdevLvolDecoupleParentParams,
    ) -> Result<()> {
        self.call_unit("bdev_lvol_decouple_parent", Some(params))
            .await
    }

    /// `bdev_lvol_set_read_only`.
    pub async fn bdev_lvol_set_read_only(&self, params: &BdevLvolSetReadOnlyParams) -> Result<()> {
        self.call_unit("bdev_lvol_set_read_only", Some(params))
            .await
    }

    /// `bdev_lvol_start_shallow_copy`: starts copying the allocated clusters.
    pub async fn bdev_lvol_start_shallow_copy(
        &self,
        params: &BdevLvolStartShallowCopyParams,
    ) -> Result<ShallowCopyOperation> {
        self.call("bdev_lvol_start_shallow_copy", Some(params))
            .await
    }

    /// `bdev_lvol_check_shallow_copy`.
    pub async fn bdev_lvol_check_shallow_copy(
        &self,
        params: &BdevLvolCheckShallowCopyParams,
    ) -> Result<ShallowCopyStatus> {
        self.call("bdev_lvol_check_shallow_copy", Some(params))
            .await
    }

    /// `bdev_lvol_set_parent`: makes a snapshot the parent of a thin lvol.
    pub async fn bdev_lvol_set_parent(&self, params: &BdevLvolSetParentParams) -> Result<()> {
        self.call_unit("bdev_lvol_set_parent", Some(params)).await
    }
}
