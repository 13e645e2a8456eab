//! Helpers for the snapshot, clone and expansion tests: raw I/O on sim
//! bdevs, checksums, CSI request builders, and a controller context of a
//! test's own.

use std::collections::HashMap;

use base64::Engine;
use csi_proto::volume_content_source::{SnapshotSource, Type as Source, VolumeSource};
use csi_proto::{
    CreateSnapshotRequest, CreateVolumeRequest, DeleteSnapshotRequest, VolumeContentSource,
};
use serde_json::json;
use spdk_client::SpdkClient;

/// Lvstore name on every test node.
pub const LVS: &str = "shorthorn";

/// Writes `data` at byte `offset` of bdev `name` (name, alias or uuid) on a sim.
pub async fn sim_write(c: &SpdkClient, name: &str, offset: u64, data: &[u8]) {
    let b64 = base64::engine::general_purpose::STANDARD.encode(data);
    c.call_raw(
        "sim_bdev_write",
        Some(json!({"name": name, "offset": offset, "data": b64})),
    )
    .await
    .unwrap_or_else(|e| panic!("sim_bdev_write {name}: {e}"));
}

/// Reads `len` bytes at `offset` of bdev `name` on a sim.
pub async fn sim_read(c: &SpdkClient, name: &str, offset: u64, len: u64) -> Vec<u8> {
    let v = c
        .call_raw(
            "sim_bdev_read",
            Some(json!({"name": name, "offset": offset, "length": len})),
        )
        .await
        .unwrap_or_else(|e| panic!("sim_bdev_read {name}: {e}"));
    let data = v["data"].as_str().expect("data");
    base64::engine::general_purpose::STANDARD
        .decode(data)
        .expect("base64")
}

/// 64-bit FNV-1a of `data`: a checksum to compare replicas by.
pub fn checksum(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Alias of the replica lvol of `volume_id`.
pub fn replica_alias(volume_id: &str) -> String {
    format!("{LVS}/shv-{volume_id}")
}

/// Alias of the snapshot lvol of `snapshot_id`.
pub fn snapshot_alias(snapshot_id: &str) -> String {
    format!("{LVS}/shs-{snapshot_id}")
}

/// Raid bdev of a published volume.
pub fn raid(volume_id: &str) -> String {
    format!("shr-{volume_id}")
}

/// A CreateSnapshot request.
pub fn snap_req(name: &str, volume: &str) -> CreateSnapshotRequest {
    CreateSnapshotRequest {
        source_volume_id: volume.to_string(),
        name: name.to_string(),
        ..Default::default()
    }
}

/// A DeleteSnapshot request.
pub fn delete_snap_req(id: &str) -> DeleteSnapshotRequest {
    DeleteSnapshotRequest {
        snapshot_id: id.to_string(),
        ..Default::default()
    }
}

/// `base` with a snapshot as content source.
pub fn from_snapshot(mut base: CreateVolumeRequest, snapshot_id: &str) -> CreateVolumeRequest {
    base.volume_content_source = Some(VolumeContentSource {
        r#type: Some(Source::Snapshot(SnapshotSource {
            snapshot_id: snapshot_id.to_string(),
        })),
    });
    base
}

/// `base` with a volume as content source.
pub fn from_volume(mut base: CreateVolumeRequest, volume_id: &str) -> CreateVolumeRequest {
    base.volume_content_source = Some(VolumeContentSource {
        r#type: Some(Source::Volume(VolumeSource {
            volume_id: volume_id.to_string(),
        })),
    });
    base
}

/// Checksum of `[0, len)` of `bdev` on each of `clients`.
pub async fn checksums(clients: &[SpdkClient], bdev: &str, len: u64) -> Vec<u64> {
    let mut out = Vec::new();
    for c in clients {
        out.push(checksum(&sim_read(c, bdev, 0, len).await));
    }
    out
}

/// Parameters map with numberOfReplicas.
pub fn replicas_param(n: u32) -> HashMap<String, String> {
    HashMap::from([("numberOfReplicas".to_string(), n.to_string())])
}

/// A controller context of a test's own over `config`'s store and nodes,
/// with every node using `frontend`.
pub async fn own_context(
    mut config: shorthorn_controller::config::ControllerConfig,
    frontend: agent_api::FrontendKind,
    fencing: shorthorn_controller::fence::Fencing,
) -> shorthorn_controller::context::Context {
    for n in &mut config.nodes {
        n.frontends = vec![frontend];
    }
    let store = shorthorn_controller::server::open_store(&config.store)
        .await
        .expect("store");
    let nodes = std::sync::Arc::new(
        shorthorn_controller::nodes::NodeRegistry::from_config(&config).expect("registry"),
    );
    nodes.refresh_all().await;
    shorthorn_controller::context::Context::new(store, nodes).with_fencing(fencing)
}

/// Creates a volume of `mib` MiB with `replicas` through the operation layer.
pub async fn own_volume(
    ctx: &shorthorn_controller::context::Context,
    name: &str,
    mib: u64,
    replicas: u32,
) -> String {
    shorthorn_controller::ops::create_volume::create_volume(
        ctx,
        shorthorn_controller::ops::create_volume::CreateRequest {
            name: name.into(),
            size: mib * 1024 * 1024,
            replicas,
            parameters: Default::default(),
            topology: Default::default(),
        },
    )
    .await
    .expect("create volume")
    .id
}

/// Name of the NVMe controller a test attaches where the node's kernel would.
pub const KERNEL_CTRLR: &str = "kern";

/// Attach parameters of an initiator playing node-0's kernel: volume
/// `volume_id`'s frontend subsystem on node-0, with node-0's kernel host NQN.
pub fn kernel_attach_params(
    h: &super::Harness,
    volume_id: &str,
) -> spdk_client::BdevNvmeAttachControllerParams {
    spdk_client::BdevNvmeAttachControllerParams {
        name: KERNEL_CTRLR.into(),
        trtype: "TCP".into(),
        traddr: "127.0.0.1".into(),
        adrfam: Some("IPv4".into()),
        trsvcid: Some(h.cluster.node(0).nvmf_port.to_string()),
        subnqn: Some(shorthorn_controller::naming::volume_nqn(volume_id)),
        hostnqn: Some(shorthorn_controller::naming::kernel_host_nqn("node-0")),
        ..Default::default()
    }
}

/// Detaches the initiator [`kernel_attach_params`] attached on `c`.
pub async fn detach_kernel(c: &SpdkClient) {
    c.bdev_nvme_detach_controller(&spdk_client::BdevNvmeDetachControllerParams {
        name: KERNEL_CTRLR.into(),
        ..Default::default()
    })
    .await
    .expect("detach");
}

/// Checks the ANA state of `volume_id`'s frontend listener on node-0 is
/// optimized (no fence left in place); `when` says at what point.
pub async fn assert_ana_optimized(h: &super::Harness, volume_id: &str, when: &str) {
    let listeners = h
        .spdk(0)
        .call_raw(
            "nvmf_subsystem_get_listeners",
            Some(json!({ "nqn": shorthorn_controller::naming::volume_nqn(volume_id) })),
        )
        .await
        .expect("listeners")
        .to_string();
    assert!(
        listeners.contains("optimized") && !listeners.contains("inaccessible"),
        "{when}: {listeners}"
    );
}

/// Checks every replica record of `volume_id` names the uuid of the replica
/// lvol its node holds now; `when` says at what point.
pub async fn assert_replica_records_follow_lvols(
    h: &super::Harness,
    ctx: &shorthorn_controller::context::Context,
    volume_id: &str,
    when: &str,
) {
    for r in ctx.store.list_replicas(volume_id).await.expect("replicas") {
        let i: usize = r
            .record
            .node
            .trim_start_matches("node-")
            .parse()
            .expect("index");
        let lvol = h
            .spdk(i)
            .bdev_get(&replica_alias(volume_id))
            .await
            .expect("get")
            .expect("lvol");
        assert_eq!(lvol.name, r.record.lvol_uuid, "{when}");
    }
}
