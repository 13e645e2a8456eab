//! The volume's engine on this node: the raid1 bdev that
//! ControllerPublishVolume assembled in the local spdk_tgt over the volume's
//! replicas, and what its state says about the volume (the VolumeCondition
//! of NodeGetVolumeStats).

use std::path::{Path, PathBuf};
use std::time::Duration;

use spdk_client::{
    BdevGetIostatParams, BdevRaidGetBdevsParams, IoStats, RaidBdev, RaidState, SpdkClient,
    SpdkError,
};

/// How long one health probe waits for spdk_tgt: kubelet polls stats, and a
/// hung target must not hang them.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Name of the raid bdev the controller assembles for `volume_id`. The same
/// rule as `shorthorn_controller::naming::raid_bdev` (the node does not link
/// the controller): change both together.
pub(super) fn raid_bdev(volume_id: &str) -> String {
    format!("shr-{volume_id}")
}

/// What the engine's state says about one volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Health {
    /// The volume is not fully served or not fully redundant.
    pub abnormal: bool,
    /// What is wrong, or what was checked.
    pub message: String,
}

impl Health {
    fn normal(message: String) -> Self {
        Health {
            abnormal: false,
            message,
        }
    }

    fn abnormal(message: String) -> Self {
        Health {
            abnormal: true,
            message,
        }
    }

    /// Without a socket the node cannot know; it says so instead of
    /// claiming health.
    pub(super) fn unknown_without_socket() -> Self {
        Health::normal(
            "engine health unknown: no SPDK socket is configured for this node service \
             (set spdk_socket)"
                .to_owned(),
        )
    }
}

/// The local spdk_tgt, as the node service asks it about engines.
#[derive(Debug, Clone)]
pub(super) struct Engine {
    socket: PathBuf,
    client: SpdkClient,
}

impl Engine {
    /// An engine probe over spdk_tgt's JSON-RPC socket (connects on first use).
    pub(super) fn new(socket: &Path) -> Self {
        Engine {
            socket: socket.to_path_buf(),
            client: SpdkClient::unix(socket).with_timeout(PROBE_TIMEOUT),
        }
    }

    /// The health of `volume_id`'s raid on this node.
    pub(super) async fn health(&self, volume_id: &str) -> Health {
        let name = raid_bdev(volume_id);
        let raids = match self
            .client
            .bdev_raid_get_bdevs(&BdevRaidGetBdevsParams::default())
            .await
        {
            Ok(r) => r,
            Err(e) => return self.failed("bdev_raid_get_bdevs", &e),
        };
        let Some(raid) = raids.into_iter().find(|r| r.name.as_deref() == Some(&name)) else {
            return assess(&name, None, None);
        };
        let params = BdevGetIostatParams {
            name: Some(name.clone()),
            ..Default::default()
        };
        match self.client.bdev_get_iostat(&params).await {
            Ok(stat) => {
                let io = stat.bdevs.iter().find(|b| b.name.as_deref() == Some(&name));
                assess(&name, Some(&raid), io)
            }
            // Deleted between the two calls.
            Err(e) if e.is_not_found() => assess(&name, None, None),
            Err(e) => self.failed("bdev_get_iostat", &e),
        }
    }

    fn failed(&self, method: &str, e: &SpdkError) -> Health {
        let socket = self.socket.display();
        if e.is_transport() || e.is_timeout() {
            Health::abnormal(format!("cannot reach spdk_tgt at {socket}: {e}"))
        } else {
            Health::abnormal(format!("spdk_tgt at {socket} failed {method}: {e}"))
        }
    }
}

/// The health a raid's `bdev_raid_get_bdevs` entry and I/O counters show.
fn assess(name: &str, raid: Option<&RaidBdev>, io: Option<&IoStats>) -> Health {
    let Some(raid) = raid else {
        return Health::abnormal(format!(
            "engine raid {name} is gone on this node: the volume has no engine; \
             unpublish and publish it again"
        ));
    };
    if raid.state != RaidState::Online {
        let state = match raid.state {
            RaidState::Configuring => "configuring (waiting for its legs)",
            RaidState::Offline => "offline",
            RaidState::Online | RaidState::Unknown => "in an unknown state",
        };
        return Health::abnormal(format!("raid {name} is {state}"));
    }
    let slots = raid.num_base_bdevs.max(raid.base_bdevs_list.len() as u32);
    let configured = raid
        .base_bdevs_list
        .iter()
        .filter(|b| b.is_configured && b.name.is_some())
        .count() as u32;
    let legs = configured.min(raid.num_base_bdevs_operational);
    let mut problems = Vec::new();
    match raid
        .process
        .as_ref()
        .filter(|p| p.process_type == "rebuild")
    {
        // SPDK counts the leg being rebuilt as operational; it is not in sync yet.
        Some(p) => problems.push(format!(
            "degraded: rebuilding {} ({:.0}% done), {} of {slots} legs in sync",
            p.target,
            p.progress.percent,
            legs.saturating_sub(1)
        )),
        None if legs < slots => problems.push(format!("degraded: {legs} of {slots} legs")),
        None => {}
    }
    let errors: Vec<String> = io
        .into_iter()
        .flat_map(|s| s.io_error.iter())
        .filter(|(_, n)| **n > 0)
        .map(|(kind, n)| format!("{kind}: {n}"))
        .collect();
    if !errors.is_empty() {
        problems.push(format!(
            "reads or writes failing: I/O errors since the raid was assembled ({})",
            errors.join(", ")
        ));
    }
    if problems.is_empty() {
        Health::normal(format!("raid {name} online, {legs} of {slots} legs"))
    } else {
        Health::abnormal(format!("raid {name} {}", problems.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `bdev_raid_get_bdevs` entries recorded from spdk_tgt v25.09
    /// (transcripts d_nvmf_raid1 and d4_raid1_io_with_failed_leg).
    const ONLINE: &str = r#"{"name": "r1", "uuid": "3a5cd154-5680-4436-bc60-bd3e0673344d", "strip_size_kb": 0, "state": "online", "raid_level": "raid1", "superblock": false, "num_base_bdevs": 2, "num_base_bdevs_discovered": 2, "num_base_bdevs_operational": 2, "base_bdevs_list": [{"name": "lvs_aio/rep_a", "uuid": "5ca2541f-ae90-41de-b676-54eca66087a7", "is_configured": true, "data_offset": 0, "data_size": 65536}, {"name": "nvBn1", "uuid": "20e6fb99-cfdc-477f-bd0b-0a3d45bcd575", "is_configured": true, "data_offset": 0, "data_size": 65536}]}"#;
    const REMOVED: &str = r#"{"name": "r1", "uuid": "3a5cd154-5680-4436-bc60-bd3e0673344d", "strip_size_kb": 0, "state": "online", "raid_level": "raid1", "superblock": false, "num_base_bdevs": 2, "num_base_bdevs_discovered": 1, "num_base_bdevs_operational": 1, "base_bdevs_list": [{"name": "lvs_aio/rep_a", "uuid": "5ca2541f-ae90-41de-b676-54eca66087a7", "is_configured": true, "data_offset": 0, "data_size": 65536}, {"name": null, "uuid": "00000000-0000-0000-0000-000000000000", "is_configured": false, "data_offset": 0, "data_size": 65536}]}"#;
    const REBUILDING: &str = r#"{"name": "r1", "uuid": "3a5cd154-5680-4436-bc60-bd3e0673344d", "strip_size_kb": 0, "state": "online", "raid_level": "raid1", "superblock": false, "num_base_bdevs": 2, "num_base_bdevs_discovered": 2, "num_base_bdevs_operational": 2, "process": {"type": "rebuild", "target": "nvBn1", "progress": {"blocks": 5632, "percent": 8}}, "base_bdevs_list": [{"name": "lvs_aio/rep_a", "uuid": "5ca2541f-ae90-41de-b676-54eca66087a7", "is_configured": true, "data_offset": 0, "data_size": 65536}, {"name": "nvBn1", "uuid": "20e6fb99-cfdc-477f-bd0b-0a3d45bcd575", "is_configured": true, "data_offset": 0, "data_size": 65536}]}"#;
    /// `bdev_get_iostat` of the dead leg in d4 (latencies left out).
    const FAILED_IO: &str = r#"{"name": "nvFn1", "bytes_read": 81920, "num_read_ops": 6, "bytes_written": 8388608, "num_write_ops": 64, "io_error": {"failed": 3}, "driver_specific": {}}"#;
    const CLEAN_IO: &str =
        r#"{"name": "r3", "bytes_read": 122880, "num_read_ops": 9, "io_error": {}}"#;

    fn raid(json: &str) -> RaidBdev {
        serde_json::from_str(json).unwrap()
    }

    fn io(json: &str) -> IoStats {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn recorded_spdk_states_read_as_a_user_would_want() {
        let h = assess("r1", Some(&raid(ONLINE)), Some(&io(CLEAN_IO)));
        assert_eq!(h, Health::normal("raid r1 online, 2 of 2 legs".into()));

        let h = assess("r1", Some(&raid(REMOVED)), None);
        assert_eq!(h, Health::abnormal("raid r1 degraded: 1 of 2 legs".into()));

        let h = assess("r1", Some(&raid(REBUILDING)), None);
        assert_eq!(
            h,
            Health::abnormal(
                "raid r1 degraded: rebuilding nvBn1 (8% done), 1 of 2 legs in sync".into()
            )
        );

        let h = assess("r1", Some(&raid(ONLINE)), Some(&io(FAILED_IO)));
        assert!(h.abnormal);
        assert!(h.message.contains("reads or writes failing"), "{h:?}");
        assert!(h.message.contains("failed: 3"), "{h:?}");

        let h = assess("shr-x", None, None);
        assert!(h.abnormal);
        assert!(
            h.message
                .starts_with("engine raid shr-x is gone on this node"),
            "{h:?}"
        );
    }

    #[test]
    fn a_raid_waiting_for_legs_is_abnormal() {
        let mut r = raid(REMOVED);
        r.state = RaidState::Configuring;
        let h = assess("r1", Some(&r), None);
        assert_eq!(
            h,
            Health::abnormal("raid r1 is configuring (waiting for its legs)".into())
        );
    }
}
