//! `POST /swap/*`: the dm-linear hold around the raid swap of a thin
//! rebuild of a published volume (docs/rebuild.md, "Thin rebuild of a
//! published volume"). The agent suspends the volume's dm-linear device
//! under a lease; at resume it can find the volume's (re-created) kernel
//! device by its identity, reload the dm table onto it and resume. A lease
//! that runs out does the same by itself.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::frontend::FrontendKind;

/// Longest hold a caller may ask for.
pub const MAX_DEADLINE: Duration = Duration::from_secs(60);

/// Longest wait for the kernel device at a resume with `reattach`.
pub const MAX_REATTACH_WAIT: Duration = Duration::from_secs(30);

/// Checks a volume id as the agent does before acting on it: non-empty, at
/// most 64 bytes, ASCII letters, digits, `-`, `_` and `.` only (it names a
/// dm device and a staging record).
pub fn check_volume_id(volume_id: &str) -> Result<(), String> {
    if volume_id.is_empty() {
        return Err("volume_id is required".into());
    }
    if volume_id.len() > 64 {
        return Err("volume_id is longer than 64 bytes".into());
    }
    if !volume_id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err("volume_id may only hold ASCII letters, digits, `-`, `_` and `.`".into());
    }
    Ok(())
}

/// Checks a hold's deadline: between 1 ms and [`MAX_DEADLINE`].
pub fn check_deadline(deadline_ms: u64) -> Result<Duration, String> {
    let d = Duration::from_millis(deadline_ms);
    if d.is_zero() || d > MAX_DEADLINE {
        return Err(format!(
            "deadline_ms must be between 1 and {}",
            MAX_DEADLINE.as_millis()
        ));
    }
    Ok(d)
}

/// Body of `POST /swap/check` and `POST /swap/suspend`'s volume part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwapCheckRequest {
    /// The volume.
    pub volume_id: String,
}

/// Answer to `POST /swap/check`: the volume is staged here over a dm-linear
/// device that a swap can hold (otherwise 409 with why not).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwapCheckResponse {
    /// The volume.
    pub volume_id: String,
    /// Its dm device name (`shorthorn-<volume id>`).
    pub dm_name: String,
    /// The block device the dm table maps now.
    pub device: String,
    /// The frontend that device comes from.
    pub frontend: FrontendKind,
    /// True while a swap hold is in force.
    pub held: bool,
}

/// Body of `POST /swap/suspend`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwapSuspendRequest {
    /// The volume.
    pub volume_id: String,
    /// Upper bound of the hold in milliseconds; at its end the agent
    /// reattaches (bounded) and resumes by itself.
    pub deadline_ms: u64,
}

/// Answer to a successful `POST /swap/suspend`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwapSuspendResponse {
    /// The volume.
    pub volume_id: String,
    /// True when it was already held: only the lease was restarted.
    pub already_held: bool,
}

/// Body of `POST /swap/resume`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwapResumeRequest {
    /// The volume.
    pub volume_id: String,
    /// Find the volume's kernel device again first (its frontend was
    /// re-created), waiting up to `reattach_wait_ms`, and reload the dm
    /// table onto it. Done even when no hold is in force.
    #[serde(default)]
    pub reattach: bool,
    /// Longest wait for the device, at most [`MAX_REATTACH_WAIT`].
    #[serde(default)]
    pub reattach_wait_ms: u64,
}

/// Answer to a successful `POST /swap/resume`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwapResumeResponse {
    /// The volume.
    pub volume_id: String,
    /// How long I/O was held, in milliseconds (0 when no hold was in force).
    pub held_ms: u64,
    /// True when no hold was in force: the lease had run out (or the
    /// volume was never held).
    pub expired: bool,
    /// The block device the dm table maps after the resume.
    pub device: String,
    /// True when the table was reloaded onto a new device.
    pub reloaded: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_ids_are_checked_as_dm_names() {
        assert!(check_volume_id("0b5c7f7e-3c0e-4d4f-9a43-6a2f7c1d9e10").is_ok());
        for bad in ["", "a/b", "a b", "../x", "é", &"x".repeat(65)] {
            assert!(check_volume_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn deadlines_are_bounded() {
        assert!(check_deadline(0).is_err());
        assert!(check_deadline(60_001).is_err());
        assert_eq!(check_deadline(10_000).unwrap(), Duration::from_secs(10));
    }

    #[test]
    fn resume_without_reattach_parses_from_a_bare_volume_id() {
        let r: SwapResumeRequest = serde_json::from_str(r#"{"volume_id":"v"}"#).unwrap();
        assert!(!r.reattach);
        assert!(serde_json::from_str::<SwapSuspendRequest>(
            r#"{"volume_id":"v","deadline_ms":1,"extra":1}"#
        )
        .is_err());
    }
}
