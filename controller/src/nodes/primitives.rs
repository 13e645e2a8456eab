//! Idempotent SPDK building blocks on one node. Each "ensure" succeeds when
//! the object already exists as wanted; each "remove" succeeds when it is
//! already gone, so operations can be retried and resumed freely.

use std::net::IpAddr;

use spdk_client::{
    BdevLvolCreateParams, BdevLvolDeleteParams, BdevLvolResizeParams, BdevNullCreateParams,
    BdevNullDeleteParams, BdevNvmeAttachControllerParams, BdevNvmeDetachControllerParams,
    BdevNvmeGetControllersParams, BdevRaidCreateParams, BdevRaidDeleteParams,
    BdevRaidGetBdevsParams, BdevRaidRemoveBaseBdevParams, ListenAddress, NvmeController,
    NvmfCreateSubsystemParams, NvmfDeleteSubsystemParams, NvmfGetSubsystemsParams, NvmfNamespace,
    NvmfSubsystem, NvmfSubsystemAddHostParams, NvmfSubsystemAddListenerParams,
    NvmfSubsystemAddNsParams, NvmfSubsystemRemoveHostParams, RaidBdev, RaidCategory, RaidLevel,
    UblkCreateTargetParams, UblkDisk, UblkGetDisksParams, UblkStartDiskParams, UblkStopDiskParams,
};

use super::NodeHandle;
use crate::error::{ControllerError, Result};
use crate::naming;

/// Seconds after which a lost remote replica's NVMe controller is deleted.
/// Together with the two below, a dead leg fails I/O within seconds, so the
/// raid1 drops it and keeps serving from the others instead of hanging.
pub const CTRLR_LOSS_TIMEOUT_SEC: i32 = 5;
/// Seconds between reconnect attempts to a lost remote replica.
pub const RECONNECT_DELAY_SEC: u32 = 1;
/// Seconds after which queued I/O to a lost remote replica fails.
pub const FAST_IO_FAIL_TIMEOUT_SEC: u32 = 2;
/// Model number of Shorthorn subsystems.
const MODEL: &str = "Shorthorn volume";

fn adrfam(ip: IpAddr) -> String {
    if ip.is_ipv4() { "IPv4" } else { "IPv6" }.to_string()
}

/// Creates the thin replica lvol of `volume_id` (or finds it); returns its uuid.
pub async fn ensure_replica(node: &NodeHandle, volume_id: &str, size_bytes: u64) -> Result<String> {
    let params = BdevLvolCreateParams {
        lvol_name: naming::replica_lvol(volume_id),
        size_in_mib: size_bytes.div_ceil(1024 * 1024),
        thin_provision: Some(true),
        lvs_name: Some(node.config.lvstore.clone()),
        ..Default::default()
    };
    match node.client.bdev_lvol_create(&params).await {
        Ok(uuid) => Ok(uuid),
        Err(e) if e.is_already_exists() => {
            existing_lvol_uuid(node, &node.lvol_alias(volume_id), "lvol").await
        }
        Err(e) => Err(node.call_failed("bdev_lvol_create", e).into()),
    }
}

/// The uuid of lvol `alias` that SPDK just refused to create because it
/// exists (`what` names it in the error should it be gone again by now).
pub async fn existing_lvol_uuid(node: &NodeHandle, alias: &str, what: &str) -> Result<String> {
    let bdev = node
        .client
        .bdev_get(alias)
        .await
        .map_err(|e| node.call_failed("bdev_get_bdevs", e))?;
    bdev.map(|b| b.name).ok_or_else(|| {
        ControllerError::Internal(format!(
            "{what} {alias} on {} both exists and does not",
            node.name()
        ))
    })
}

/// Deletes the replica lvol of `volume_id` if present.
pub async fn remove_replica(node: &NodeHandle, volume_id: &str) -> Result<()> {
    let params = BdevLvolDeleteParams {
        name: node.lvol_alias(volume_id),
    };
    match node.client.bdev_lvol_delete(&params).await {
        Ok(()) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(node.call_failed("bdev_lvol_delete", e).into()),
    }
}

/// Deletes the lvol `name` (its uuid or its `lvstore/name` alias) if present.
pub async fn remove_lvol(node: &NodeHandle, name: &str) -> Result<()> {
    let params = BdevLvolDeleteParams {
        name: name.to_string(),
    };
    match node.client.bdev_lvol_delete(&params).await {
        Ok(()) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(node.call_failed("bdev_lvol_delete", e).into()),
    }
}

/// Every NVMe-oF subsystem on the node.
pub async fn subsystems(node: &NodeHandle) -> Result<Vec<NvmfSubsystem>> {
    node.client
        .nvmf_get_subsystems(&NvmfGetSubsystemsParams::default())
        .await
        .map_err(|e| node.call_failed("nvmf_get_subsystems", e).into())
}

/// What an NVMe-oF export should look like.
#[derive(Debug, Clone)]
pub struct Export<'a> {
    /// Subsystem NQN.
    pub nqn: &'a str,
    /// Bdev exported as namespace 1.
    pub bdev: &'a str,
    /// Namespace UUID to present (None: SPDK's choice).
    pub ns_uuid: Option<&'a str>,
    /// The only host allowed to connect.
    pub host_nqn: &'a str,
    /// Listener address and port.
    pub address: IpAddr,
    /// Listener port.
    pub port: u16,
    /// Create with ANA reporting (kernel-facing subsystems).
    pub ana_reporting: bool,
    /// Serial number.
    pub serial: String,
}

/// Creates (or completes) an NVMe-oF TCP export of a bdev to one host.
pub async fn ensure_export(node: &NodeHandle, export: &Export<'_>) -> Result<()> {
    let c = &node.client;
    let existing = subsystems(node)
        .await?
        .into_iter()
        .find(|s| s.nqn == export.nqn);
    let existing = match existing {
        Some(s) => s,
        None => {
            let params = NvmfCreateSubsystemParams {
                nqn: export.nqn.to_string(),
                serial_number: Some(export.serial.clone()),
                model_number: Some(MODEL.to_string()),
                allow_any_host: Some(false),
                ana_reporting: export.ana_reporting.then_some(true),
                max_namespaces: Some(1),
                ..Default::default()
            };
            c.nvmf_create_subsystem(&params)
                .await
                .map_err(|e| node.call_failed("nvmf_create_subsystem", e))?;
            NvmfSubsystem::default()
        }
    };
    // One namespace per Shorthorn subsystem: if it has one, it is ours.
    if existing.namespaces.is_empty() {
        let params = NvmfSubsystemAddNsParams {
            nqn: export.nqn.to_string(),
            namespace: NvmfNamespace {
                bdev_name: export.bdev.to_string(),
                uuid: export.ns_uuid.map(str::to_string),
                ..Default::default()
            },
            ..Default::default()
        };
        c.nvmf_subsystem_add_ns(&params)
            .await
            .map_err(|e| node.call_failed("nvmf_subsystem_add_ns", e))?;
    }
    if !existing.hosts.iter().any(|h| h.nqn == export.host_nqn) {
        let params = NvmfSubsystemAddHostParams {
            nqn: export.nqn.to_string(),
            host: export.host_nqn.to_string(),
            ..Default::default()
        };
        c.nvmf_subsystem_add_host(&params)
            .await
            .map_err(|e| node.call_failed("nvmf_subsystem_add_host", e))?;
    }
    // Exactly one host: removing a host also disconnects it, so an engine
    // that published this replica before (now partitioned, say) can no
    // longer write beside the new one.
    for other in existing.hosts.iter().filter(|h| h.nqn != export.host_nqn) {
        tracing::warn!(node = node.name(), nqn = export.nqn, host = %other.nqn, "removing a host the export no longer admits");
        let params = NvmfSubsystemRemoveHostParams {
            nqn: export.nqn.to_string(),
            host: other.nqn.clone(),
            ..Default::default()
        };
        c.nvmf_subsystem_remove_host(&params)
            .await
            .map_err(|e| node.call_failed("nvmf_subsystem_remove_host", e))?;
    }
    let port = export.port.to_string();
    let address = export.address.to_string();
    if !existing
        .listen_addresses
        .iter()
        .any(|l| l.traddr == address && l.trsvcid.as_deref() == Some(port.as_str()))
    {
        let params = NvmfSubsystemAddListenerParams {
            nqn: export.nqn.to_string(),
            listen_address: ListenAddress {
                trtype: "TCP".into(),
                adrfam: Some(adrfam(export.address)),
                traddr: address,
                trsvcid: Some(port),
            },
            ..Default::default()
        };
        c.nvmf_subsystem_add_listener(&params)
            .await
            .map_err(|e| node.call_failed("nvmf_subsystem_add_listener", e))?;
    }
    Ok(())
}

/// Exports the replica lvol of `volume_id` on `replica_node` to the SPDK of
/// `engine_node` (its only admitted host).
pub async fn ensure_replica_export(
    replica_node: &NodeHandle,
    volume_id: &str,
    engine_node: &str,
) -> Result<()> {
    let nqn = naming::replica_nqn(volume_id, replica_node.name());
    let bdev = replica_node.lvol_alias(volume_id);
    let host_nqn = naming::spdk_host_nqn(engine_node);
    ensure_export(
        replica_node,
        &Export {
            nqn: &nqn,
            bdev: &bdev,
            ns_uuid: None,
            host_nqn: &host_nqn,
            address: replica_node.config.nvmf_address,
            port: replica_node.config.nvmf_port,
            ana_reporting: false,
            serial: naming::serial_number(volume_id),
        },
    )
    .await
}

/// Deletes a subsystem if present; returns whether it existed.
pub async fn remove_export(node: &NodeHandle, nqn: &str) -> Result<bool> {
    if !subsystems(node).await?.iter().any(|s| s.nqn == nqn) {
        return Ok(false);
    }
    let params = NvmfDeleteSubsystemParams {
        nqn: nqn.to_string(),
        ..Default::default()
    };
    match node.client.nvmf_delete_subsystem(&params).await {
        Ok(()) => Ok(true),
        Err(e) if e.is_not_found() || e.is_invalid_params() => Ok(false),
        Err(e) => Err(node.call_failed("nvmf_delete_subsystem", e).into()),
    }
}

/// Every NVMe-oF initiator controller on the node.
pub async fn controllers(node: &NodeHandle) -> Result<Vec<NvmeController>> {
    node.client
        .bdev_nvme_get_controllers(&BdevNvmeGetControllersParams::default())
        .await
        .map_err(|e| node.call_failed("bdev_nvme_get_controllers", e).into())
}

/// Attaches the remote export `subnqn` at `address:port` as controller
/// `name`, presenting `host_nqn`; returns the namespace bdev name.
pub async fn ensure_attached(
    node: &NodeHandle,
    name: &str,
    address: IpAddr,
    port: u16,
    subnqn: &str,
    host_nqn: &str,
) -> Result<String> {
    if controllers(node).await?.iter().any(|c| c.name == name) {
        return Ok(naming::nvme_namespace_bdev(name));
    }
    let params = BdevNvmeAttachControllerParams {
        name: name.to_string(),
        trtype: "TCP".into(),
        traddr: address.to_string(),
        adrfam: Some(adrfam(address)),
        trsvcid: Some(port.to_string()),
        subnqn: Some(subnqn.to_string()),
        hostnqn: Some(host_nqn.to_string()),
        ctrlr_loss_timeout_sec: Some(CTRLR_LOSS_TIMEOUT_SEC),
        reconnect_delay_sec: Some(RECONNECT_DELAY_SEC),
        fast_io_fail_timeout_sec: Some(FAST_IO_FAIL_TIMEOUT_SEC),
        ..Default::default()
    };
    let bdevs = node
        .client
        .bdev_nvme_attach_controller(&params)
        .await
        .map_err(|e| node.call_failed("bdev_nvme_attach_controller", e))?;
    Ok(bdevs
        .into_iter()
        .next()
        .unwrap_or_else(|| naming::nvme_namespace_bdev(name)))
}

/// Detaches controller `name` if attached.
pub async fn remove_attachment(node: &NodeHandle, name: &str) -> Result<()> {
    let params = BdevNvmeDetachControllerParams {
        name: name.to_string(),
        ..Default::default()
    };
    match node.client.bdev_nvme_detach_controller(&params).await {
        Ok(()) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(node.call_failed("bdev_nvme_detach_controller", e).into()),
    }
}

/// Every raid bdev on the node.
pub async fn raids(node: &NodeHandle) -> Result<Vec<RaidBdev>> {
    node.client
        .bdev_raid_get_bdevs(&BdevRaidGetBdevsParams {
            category: RaidCategory::All,
        })
        .await
        .map_err(|e| node.call_failed("bdev_raid_get_bdevs", e).into())
}

/// Creates raid1 `name` over `bases` without superblock (1:1 block mapping).
///
/// Stock SPDK refuses a raid1 of fewer than two members, so a raid of one
/// current replica is created over that replica and a null bdev `pad` of the
/// same geometry, and the pad is removed (and deleted) before anything can
/// do I/O through the raid: the raid stays online with one empty slot.
/// Idempotent: a raid already present only loses a pad left in it.
pub async fn ensure_raid1(
    node: &NodeHandle,
    name: &str,
    bases: &[String],
    pad: &str,
) -> Result<()> {
    let present = raids(node)
        .await?
        .into_iter()
        .find(|r| r.name.as_deref() == Some(name));
    if present.is_none() {
        let mut members = bases.to_vec();
        if let [only] = bases {
            members.push(ensure_pad(node, only, pad).await?);
        }
        let params = BdevRaidCreateParams {
            name: name.to_string(),
            strip_size_kb: None,
            raid_level: RaidLevel::Raid1,
            base_bdevs: members,
            uuid: None,
            superblock: Some(false),
        };
        node.client
            .bdev_raid_create(&params)
            .await
            .map_err(|e| node.call_failed("bdev_raid_create", e))?;
    }
    remove_pad(node, pad).await
}

async fn ensure_pad(node: &NodeHandle, like: &str, pad: &str) -> Result<String> {
    let member = node
        .client
        .bdev_get(like)
        .await
        .map_err(|e| node.call_failed("bdev_get_bdevs", e))?
        .ok_or_else(|| {
            ControllerError::Internal(format!("raid member {like} is missing on {}", node.name()))
        })?;
    let params = BdevNullCreateParams {
        name: pad.to_string(),
        num_blocks: member.num_blocks,
        block_size: member.block_size,
        ..Default::default()
    };
    match node.client.bdev_null_create(&params).await {
        Ok(_) => Ok(pad.to_string()),
        Err(e) if e.is_already_exists() => Ok(pad.to_string()),
        Err(e) => Err(node.call_failed("bdev_null_create", e).into()),
    }
}

/// Takes the pad out of its raid (if in one) and deletes it (if present).
pub async fn remove_pad(node: &NodeHandle, pad: &str) -> Result<()> {
    let in_raid = raids(node).await?.iter().any(|r| {
        r.base_bdevs_list
            .iter()
            .any(|b| b.name.as_deref() == Some(pad))
    });
    if in_raid {
        let params = BdevRaidRemoveBaseBdevParams {
            name: pad.to_string(),
        };
        match node.client.bdev_raid_remove_base_bdev(&params).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(node.call_failed("bdev_raid_remove_base_bdev", e).into()),
        }
    }
    let params = BdevNullDeleteParams {
        name: pad.to_string(),
    };
    match node.client.bdev_null_delete(&params).await {
        Ok(()) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(node.call_failed("bdev_null_delete", e).into()),
    }
}

/// Deletes raid `name` if present.
pub async fn remove_raid(node: &NodeHandle, name: &str) -> Result<()> {
    let params = BdevRaidDeleteParams {
        name: name.to_string(),
    };
    match node.client.bdev_raid_delete(&params).await {
        Ok(()) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(node.call_failed("bdev_raid_delete", e).into()),
    }
}

/// Every ublk disk on the node.
pub async fn ublk_disks(node: &NodeHandle) -> Result<Vec<UblkDisk>> {
    node.client
        .ublk_get_disks(&UblkGetDisksParams::default())
        .await
        .map_err(|e| node.call_failed("ublk_get_disks", e).into())
}

/// Exposes `bdev` as a ublk disk (creating the ublk target once per node);
/// returns the ublk id and device path.
pub async fn ensure_ublk(node: &NodeHandle, bdev: &str) -> Result<(u32, String)> {
    let _guard = node.lock.lock().await;
    let disks = ublk_disks(node).await?;
    if let Some(d) = disks.iter().find(|d| d.bdev_name == bdev) {
        return Ok((d.id, d.ublk_device.clone()));
    }
    match node
        .client
        .ublk_create_target(&UblkCreateTargetParams::default())
        .await
    {
        Ok(()) => {}
        // SPDK answers EBUSY ("Device or resource busy") when the target exists.
        Err(e) if e.is_already_exists() || e.is_busy() => {}
        Err(e) => return Err(node.call_failed("ublk_create_target", e).into()),
    }
    let id = (0u32..)
        .find(|id| !disks.iter().any(|d| d.id == *id))
        .unwrap_or(0);
    let params = UblkStartDiskParams {
        bdev_name: bdev.to_string(),
        ublk_id: id,
        ..Default::default()
    };
    let id = node
        .client
        .ublk_start_disk(&params)
        .await
        .map_err(|e| node.call_failed("ublk_start_disk", e))?;
    let disks = ublk_disks(node).await?;
    let device = disks
        .into_iter()
        .find(|d| d.id == id)
        .map(|d| d.ublk_device)
        .unwrap_or_else(|| format!("/dev/ublkb{id}"));
    Ok((id, device))
}

/// Stops every ublk disk serving `bdev`.
pub async fn remove_ublk(node: &NodeHandle, bdev: &str) -> Result<()> {
    for disk in ublk_disks(node).await? {
        if disk.bdev_name == bdev {
            match node
                .client
                .ublk_stop_disk(&UblkStopDiskParams { ublk_id: disk.id })
                .await
            {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(node.call_failed("ublk_stop_disk", e).into()),
            }
        }
    }
    Ok(())
}

/// Grows lvol `name` on `node` to `size` bytes.
pub async fn resize_lvol(node: &NodeHandle, name: &str, size: u64) -> Result<()> {
    let params = BdevLvolResizeParams {
        name: name.to_string(),
        size_in_mib: size.div_ceil(1024 * 1024),
    };
    node.client
        .bdev_lvol_resize(&params)
        .await
        .map_err(|e| node.call_failed("bdev_lvol_resize", e).into())
}
