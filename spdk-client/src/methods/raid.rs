//! RAID bdevs (Shorthorn uses raid1 over one local and N-1 remote replicas).

use serde::{Deserialize, Serialize};

use crate::client::SpdkClient;
use crate::error::Result;

/// RAID level for `bdev_raid_create`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RaidLevel {
    /// Striping.
    Raid0,
    /// Mirroring.
    Raid1,
    /// Concatenation.
    Concat,
    /// RAID5 with full-stripe writes.
    Raid5f,
}

/// Params of `bdev_raid_create`. Base bdevs that do not exist yet are
/// accepted; the raid then stays `configuring`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BdevRaidCreateParams {
    /// Raid bdev name.
    pub name: String,
    /// Strip size in KiB (not used by raid1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strip_size_kb: Option<u32>,
    /// RAID level.
    pub raid_level: RaidLevel,
    /// Base bdev names.
    pub base_bdevs: Vec<String>,
    /// UUID of the raid bdev.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// Store a superblock on each base bdev (data then starts at block 256).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub superblock: Option<bool>,
}

/// Params of `bdev_raid_delete`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BdevRaidDeleteParams {
    /// Raid bdev name.
    pub name: String,
}

/// Which raids `bdev_raid_get_bdevs` lists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RaidCategory {
    /// Every raid.
    #[default]
    All,
    /// Online raids.
    Online,
    /// Raids waiting for base bdevs.
    Configuring,
    /// Offline raids.
    Offline,
}

/// Params of `bdev_raid_get_bdevs`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BdevRaidGetBdevsParams {
    /// Which raids to list.
    pub category: RaidCategory,
}

/// State of a raid bdev.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RaidState {
    /// Serving I/O.
    Online,
    /// Waiting for base bdevs.
    Configuring,
    /// Not serving I/O.
    Offline,
    /// A state this client does not know.
    #[default]
    #[serde(other)]
    Unknown,
}

/// A raid bdev, from `bdev_raid_get_bdevs` or `driver_specific.raid`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RaidBdev {
    /// Raid name (only in `bdev_raid_get_bdevs`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Raid UUID (all zeros until configured).
    pub uuid: String,
    /// Strip size in KiB.
    pub strip_size_kb: u32,
    /// State.
    pub state: RaidState,
    /// RAID level, e.g. `"raid1"`.
    pub raid_level: String,
    /// Whether a superblock is stored on the base bdevs.
    pub superblock: bool,
    /// Slots.
    pub num_base_bdevs: u32,
    /// Slots whose bdev has been found.
    pub num_base_bdevs_discovered: u32,
    /// Slots considered operational.
    pub num_base_bdevs_operational: u32,
    /// Running background process (rebuild), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<RaidProcess>,
    /// Slots in order.
    pub base_bdevs_list: Vec<RaidBaseBdev>,
}

/// One slot of a raid.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RaidBaseBdev {
    /// Base bdev name; `None` for an empty slot.
    pub name: Option<String>,
    /// Base bdev UUID (all zeros for an empty or missing slot).
    pub uuid: String,
    /// Whether the base bdev is in use by the raid.
    pub is_configured: bool,
    /// First data block on the base bdev.
    pub data_offset: u64,
    /// Data blocks on the base bdev.
    pub data_size: u64,
}

/// A background process of a raid.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RaidProcess {
    /// Process type, e.g. `"rebuild"`.
    #[serde(rename = "type")]
    pub process_type: String,
    /// Base bdev being written.
    pub target: String,
    /// Progress so far.
    pub progress: RaidProgress,
}

/// Progress of a raid process.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RaidProgress {
    /// Blocks processed.
    pub blocks: u64,
    /// Percent done.
    pub percent: f64,
}

/// Params of `bdev_raid_add_base_bdev`. Adding to a full raid1 is InvalidArgument;
/// adding to an empty slot starts a full rebuild.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BdevRaidAddBaseBdevParams {
    /// Raid bdev name.
    pub raid_bdev: String,
    /// Base bdev to add.
    pub base_bdev: String,
}

/// Params of `bdev_raid_remove_base_bdev`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BdevRaidRemoveBaseBdevParams {
    /// Name of the base bdev to remove (the raid is found from it).
    pub name: String,
}

/// Params of `bdev_raid_set_options`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BdevRaidSetOptionsParams {
    /// Background process window in KiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process_window_size_kb: Option<u32>,
    /// Background process bandwidth cap in MiB/s (0 = unlimited).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process_max_bandwidth_mb_sec: Option<u32>,
}

impl SpdkClient {
    /// `bdev_raid_create`.
    pub async fn bdev_raid_create(&self, params: &BdevRaidCreateParams) -> Result<()> {
        self.call_unit("bdev_raid_create", Some(params)).await
    }

    /// `bdev_raid_delete`.
    pub async fn bdev_raid_delete(&self, params: &BdevRaidDeleteParams) -> Result<()> {
        self.call_unit("bdev_raid_delete", Some(params)).await
    }

    /// `bdev_raid_get_bdevs`.
    pub async fn bdev_raid_get_bdevs(
        &self,
        params: &BdevRaidGetBdevsParams,
    ) -> Result<Vec<RaidBdev>> {
        self.call("bdev_raid_get_bdevs", Some(params)).await
    }

    /// `bdev_raid_add_base_bdev`.
    pub async fn bdev_raid_add_base_bdev(&self, params: &BdevRaidAddBaseBdevParams) -> Result<()> {
        self.call_unit("bdev_raid_add_base_bdev", Some(params))
            .await
    }

    /// `bdev_raid_remove_base_bdev`. The raid1 stays online; the slot empties.
    pub async fn bdev_raid_remove_base_bdev(
        &self,
        params: &BdevRaidRemoveBaseBdevParams,
    ) -> Result<()> {
        self.call_unit("bdev_raid_remove_base_bdev", Some(params))
            .await
    }

    /// `bdev_raid_set_options`.
    pub async fn bdev_raid_set_options(&self, params: &BdevRaidSetOptionsParams) -> Result<()> {
        self.call_opt_unit("bdev_raid_set_options", params).await
    }
}
