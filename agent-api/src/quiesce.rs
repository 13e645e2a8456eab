//! `POST /quiesce/suspend` and `POST /quiesce/resume`: the agent holds a
//! volume's I/O still on its node (filesystem freeze or dm suspend) under a
//! lease that ends by itself at its deadline.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Longest hold a caller may ask for.
pub const MAX_DEADLINE: Duration = Duration::from_secs(60);

/// Body of `POST /quiesce/suspend`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuspendRequest {
    /// The volume.
    pub volume_id: String,
    /// Optional cross-check of what will be frozen: the volume's staging
    /// path, dm device name or block device on this node.
    #[serde(default)]
    pub target: Option<String>,
    /// Upper bound of the hold in milliseconds.
    pub deadline_ms: u64,
}

/// Answer to a successful suspend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuspendResponse {
    /// The volume.
    pub volume_id: String,
}

/// Body of `POST /quiesce/resume`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResumeRequest {
    /// The volume.
    pub volume_id: String,
}

/// Answer to a successful resume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeResponse {
    /// The volume.
    pub volume_id: String,
    /// How long I/O was held, in milliseconds.
    pub held_ms: u64,
    /// True when no hold was in force when this resume arrived: its lease
    /// had run out (or the volume was never suspended, or already resumed).
    /// Work done under the fence is then not proven to have seen no I/O.
    /// Absent from older agents' answers, read as false.
    #[serde(default)]
    pub expired: bool,
}
