//! Shared harness for the controller's integration tests: storage nodes from
//! testkit, a real etcd (or the embedded store), and a controller.

#![allow(dead_code)]

pub mod crash;
pub mod real;
pub mod rpc_proxy;
pub mod safety;
pub mod snapshot;
pub mod tcp_cut;
pub mod writer;

pub use snapshot::*;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use csi_proto::controller_client::ControllerClient;
use csi_proto::identity_client::IdentityClient;
use csi_proto::volume_capability::access_mode::Mode;
use csi_proto::volume_capability::{AccessMode, AccessType, BlockVolume};
use csi_proto::{
    CapacityRange, ControllerPublishVolumeRequest, ControllerUnpublishVolumeRequest,
    CreateVolumeRequest, DeleteVolumeRequest, VolumeCapability,
};
use shorthorn_controller::config::ControllerConfig;
use shorthorn_controller::naming;
use shorthorn_controller::server::{self, Endpoint};
use spdk_client::{
    BdevLvolGetLvolsParams, BdevNvmeGetControllersParams, BdevRaidGetBdevsParams,
    NvmfGetSubsystemsParams, SpdkClient, UblkGetDisksParams,
};
use testkit::nodes::TestCluster;
use testkit::EtcdServer;
use tonic::transport::Channel;

/// MiB.
pub const MIB: i64 = 1024 * 1024;

/// Leader lease TTL of the harness's controllers (etcd's minimum is 2 s).
pub const TEST_LEASE_TTL_SECS: u64 = 3;

/// Which state store the controller uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// A real etcd started for the test.
    Etcd,
    /// The embedded redb file.
    Embedded,
}

/// Storage nodes, a store, and a running controller.
pub struct Harness {
    /// The storage nodes.
    pub cluster: TestCluster,
    /// The etcd server, when used.
    pub etcd: Option<EtcdServer>,
    /// Scratch directory (config file, sockets, embedded store).
    pub dir: tempfile::TempDir,
    /// Path of the controller config file.
    pub config_path: PathBuf,
    /// CSI Controller client.
    pub csi: ControllerClient<Channel>,
    /// CSI Identity client.
    pub identity: IdentityClient<Channel>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Harness {
    /// Starts `n` storage nodes (ublk frontend), the store and a controller.
    pub async fn start(n: usize, store: StoreKind) -> Harness {
        Self::start_with(n, store, "").await
    }

    /// Like [`Harness::start`], with extra top-level config lines.
    pub async fn start_with(n: usize, store: StoreKind, extra_toml: &str) -> Harness {
        Self::start_opts(n, store, extra_toml, &["ublk"]).await
    }

    /// Like [`Harness::start_with`], with the nodes' frontends.
    pub async fn start_opts(
        n: usize,
        store: StoreKind,
        extra_toml: &str,
        frontends: &[&str],
    ) -> Harness {
        Self::start_standby(n, 0, store, extra_toml, frontends).await
    }

    /// Like [`Harness::start_opts`], with the last `standby` of the `n`
    /// nodes configured but not started (see `TestCluster::start_standby`).
    pub async fn start_standby(
        n: usize,
        standby: usize,
        store: StoreKind,
        extra_toml: &str,
        frontends: &[&str],
    ) -> Harness {
        // RUST_LOG=shorthorn_controller=info shows the controller's log.
        if std::env::var_os("RUST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .with_test_writer()
                .try_init();
        }
        let cluster = tokio::task::spawn_blocking(move || TestCluster::start_standby(n, standby))
            .await
            .expect("join")
            .expect("start storage nodes");
        let etcd = match store {
            StoreKind::Etcd => Some(
                tokio::task::spawn_blocking(EtcdServer::start)
                    .await
                    .expect("join")
                    .expect("start etcd"),
            ),
            StoreKind::Embedded => None,
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let store_toml = match &etcd {
            Some(etcd) => format!(
                "[store]\netcd = {{ endpoints = [{:?}], prefix = \"/shorthorn-test\" }}\n",
                etcd.endpoint()
            ),
            None => format!(
                "[store]\nembedded = {:?}\n",
                dir.path().join("state.redb").display().to_string()
            ),
        };
        // A short leader lease: a crashed test controller's lease (etcd)
        // holds up its successor for at most this long.
        let config = format!(
            "reconcile_interval_secs = 3600\nleader = {{ lease_ttl_secs = {TEST_LEASE_TTL_SECS} }}\n{extra_toml}\n{store_toml}\n{}",
            cluster.controller_toml(frontends)
        );
        let config_path = dir.path().join("controller.toml");
        std::fs::write(&config_path, config).expect("write config");
        let (shutdown, server, csi, identity) = launch(&config_path, dir.path()).await;
        Harness {
            cluster,
            etcd,
            dir,
            config_path,
            csi,
            identity,
            shutdown: Some(shutdown),
            server: Some(server),
        }
    }

    /// The parsed controller configuration.
    pub fn config(&self) -> ControllerConfig {
        ControllerConfig::load(&self.config_path).expect("load config")
    }

    /// Makes the controller reach node `i` through `endpoint_toml` (e.g.
    /// `agent_url = ...` lines, or another `spdk_socket = ...`) instead of
    /// its SPDK socket, in the config file every later controller reads.
    /// Restart the harness's controller for it to see the change.
    pub fn reroute_node(&mut self, i: usize, endpoint_toml: &str) {
        let socket = format!(
            "spdk_socket = {:?}\n",
            self.cluster.node(i).rpc_socket.display().to_string()
        );
        let config = std::fs::read_to_string(&self.config_path).expect("read config");
        assert!(config.contains(&socket), "node {i} is already rerouted");
        let config = config.replace(&socket, &format!("{endpoint_toml}\n"));
        std::fs::write(&self.config_path, config).expect("write config");
    }

    /// Stops the controller and starts a fresh one on the same store.
    pub async fn restart_controller(&mut self) {
        self.stop_controller().await;
        let (shutdown, server, csi, identity) = launch(&self.config_path, self.dir.path()).await;
        self.shutdown = Some(shutdown);
        self.server = Some(server);
        self.csi = csi;
        self.identity = identity;
    }

    /// Stops the in-process controller (the embedded store's lock is released).
    pub async fn stop_controller(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }

    /// An SPDK client for node `i`.
    pub fn spdk(&self, i: usize) -> SpdkClient {
        SpdkClient::unix(self.cluster.node(i).rpc_socket.clone())
    }

    /// Everything Shorthorn-made on every node but the cluster stamp, as
    /// readable lines; empty when clean.
    pub async fn leftovers(&self) -> Vec<String> {
        let all: Vec<usize> = (0..self.cluster.nodes().len()).collect();
        self.leftovers_on(&all).await
    }

    /// Like [`Harness::leftovers`], for the nodes with these indexes only.
    pub async fn leftovers_on(&self, nodes: &[usize]) -> Vec<String> {
        let mut out = Vec::new();
        for &i in nodes {
            let node = self.cluster.node(i);
            let c = self.spdk(i);
            let name = &node.name;
            let lvols = c
                .bdev_lvol_get_lvols(&BdevLvolGetLvolsParams::default())
                .await
                .expect("lvols");
            out.extend(
                lvols
                    .iter()
                    .filter(|l| naming::cluster_of_stamp(&l.name).is_none())
                    .map(|l| format!("{name}: lvol {}", l.alias)),
            );
            let subs = c
                .nvmf_get_subsystems(&NvmfGetSubsystemsParams::default())
                .await
                .expect("subsystems");
            out.extend(
                subs.iter()
                    .filter(|s| s.subtype != "Discovery")
                    .map(|s| format!("{name}: subsystem {}", s.nqn)),
            );
            let ctrls = c
                .bdev_nvme_get_controllers(&BdevNvmeGetControllersParams::default())
                .await
                .expect("controllers");
            out.extend(
                ctrls
                    .iter()
                    .map(|x| format!("{name}: nvme controller {}", x.name)),
            );
            let raids = c
                .bdev_raid_get_bdevs(&BdevRaidGetBdevsParams::default())
                .await
                .expect("raids");
            out.extend(
                raids
                    .iter()
                    .map(|r| format!("{name}: raid {}", r.name.clone().unwrap_or_default())),
            );
            // A replica-only real node (nvmf_tgt) has no ublk methods at all.
            let disks = match c.ublk_get_disks(&UblkGetDisksParams::default()).await {
                Err(e) if e.is_method_not_found() => Vec::new(),
                other => other.expect("ublk disks"),
            };
            out.extend(
                disks
                    .iter()
                    .map(|d| format!("{name}: ublk {}", d.ublk_device)),
            );
        }
        out
    }

    /// Replica lvols (any `shv-` lvol) per node.
    pub async fn replica_lvols(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (i, node) in self.cluster.nodes().iter().enumerate() {
            let lvols = self
                .spdk(i)
                .bdev_lvol_get_lvols(&BdevLvolGetLvolsParams::default())
                .await
                .expect("lvols");
            out.extend(
                lvols
                    .iter()
                    .filter(|l| l.name.starts_with("shv-"))
                    .map(|l| format!("{}:{}", node.name, l.name)),
            );
        }
        out
    }

    /// CreateVolume through CSI (block, `replicas` or the default); the new volume's id.
    pub async fn create_volume(&mut self, name: &str, bytes: i64, replicas: Option<u32>) -> String {
        self.csi
            .create_volume(create_req(name, bytes, replicas))
            .await
            .unwrap_or_else(|e| panic!("create {name}: {e}"))
            .into_inner()
            .volume
            .expect("volume")
            .volume_id
    }

    /// ControllerPublishVolume through CSI; the publish context.
    pub async fn publish(&mut self, volume: &str, node: &str) -> HashMap<String, String> {
        self.csi
            .controller_publish_volume(publish_req(volume, node))
            .await
            .unwrap_or_else(|e| panic!("publish {volume} on {node}: {e}"))
            .into_inner()
            .publish_context
    }

    /// ControllerUnpublishVolume through CSI, which must succeed.
    pub async fn unpublish(&mut self, volume: &str, node: &str) {
        self.csi
            .controller_unpublish_volume(unpublish_req(volume, node))
            .await
            .unwrap_or_else(|e| panic!("unpublish {volume} from {node}: {e}"));
    }

    /// DeleteVolume through CSI, which must succeed.
    pub async fn delete_volume(&mut self, volume: &str) {
        self.csi
            .delete_volume(delete_req(volume))
            .await
            .unwrap_or_else(|e| panic!("delete {volume}: {e}"));
    }

    /// CreateSnapshot `name` of `volume` through CSI; the snapshot id.
    pub async fn create_snapshot(&mut self, name: &str, volume: &str) -> String {
        self.csi
            .create_snapshot(snap_req(name, volume))
            .await
            .unwrap_or_else(|e| panic!("snapshot {name} of {volume}: {e}"))
            .into_inner()
            .snapshot
            .expect("snapshot")
            .snapshot_id
    }

    /// DeleteSnapshot through CSI, which must succeed.
    pub async fn delete_snapshot(&mut self, snapshot: &str) {
        self.csi
            .delete_snapshot(delete_snap_req(snapshot))
            .await
            .unwrap_or_else(|e| panic!("delete snapshot {snapshot}: {e}"));
    }

    /// The volume condition ControllerGetVolume reports.
    pub async fn volume_condition(&mut self, volume: &str) -> csi_proto::VolumeCondition {
        self.csi
            .controller_get_volume(csi_proto::ControllerGetVolumeRequest {
                volume_id: volume.to_string(),
            })
            .await
            .expect("get volume")
            .into_inner()
            .status
            .expect("status")
            .volume_condition
            .expect("condition")
    }

    /// Runs the controller that `crash::crash_at` kills at `fault` (doing
    /// `args`) in place of this one, then a fresh controller on the same store.
    pub async fn crash_and_restart(&mut self, fault: &str, args: &[&str]) {
        self.stop_controller().await;
        crash::crash_at(self, fault, args).await;
        self.restart_controller().await;
    }

    /// Checks that nothing Shorthorn made is left on any node but the lvols
    /// whose alias ends with one of `keep`; `when` says at what point.
    pub async fn assert_only_left(&self, keep: &[String], when: &str) {
        let left: Vec<String> = self
            .leftovers()
            .await
            .into_iter()
            .filter(|l| !keep.iter().any(|k| l.ends_with(k.as_str())))
            .collect();
        assert!(left.is_empty(), "{when}, left behind: {left:#?}");
    }

    /// Stops the controller, runs a reconciler pass of a fresh controller
    /// context (sweeping what dead nodes kept), then [`Harness::assert_clean`].
    /// (One controller at a time: the fresh one takes over the store.)
    pub async fn reconcile_and_assert_clean(&mut self) {
        self.stop_controller().await;
        let ctx = server::start(&self.config()).await.expect("start");
        shorthorn_controller::reconciler::reconcile_once(&ctx)
            .await
            .expect("reconcile");
        self.assert_clean().await;
    }

    /// Ids of every volume the controller lists.
    pub async fn volume_ids(&mut self) -> Vec<String> {
        self.csi
            .list_volumes(csi_proto::ListVolumesRequest::default())
            .await
            .expect("list")
            .into_inner()
            .entries
            .into_iter()
            .filter_map(|e| e.volume)
            .map(|v| v.volume_id)
            .collect()
    }

    /// Lvol aliases (`lvstore/name`) on every node whose name starts with `prefix`.
    pub async fn lvols_with_prefix(&self, prefix: &str) -> Vec<String> {
        let mut out = Vec::new();
        for i in 0..self.cluster.nodes().len() {
            let lvols = self
                .spdk(i)
                .bdev_lvol_get_lvols(&BdevLvolGetLvolsParams::default())
                .await
                .expect("lvols");
            out.extend(
                lvols
                    .into_iter()
                    .filter(|l| l.name.starts_with(prefix))
                    .map(|l| format!("{}:{}", self.cluster.node(i).name, l.alias)),
            );
        }
        out.sort();
        out
    }

    /// Stops everything and checks nothing Shorthorn made is left on any node.
    pub async fn assert_clean(&self) {
        let left = self.leftovers().await;
        assert!(left.is_empty(), "left behind: {left:#?}");
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

type Launched = (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
    ControllerClient<Channel>,
    IdentityClient<Channel>,
);

async fn launch(config_path: &Path, dir: &Path) -> Launched {
    let config = ControllerConfig::load(config_path).expect("config");
    let socket = dir.join("csi.sock");
    let _ = std::fs::remove_file(&socket);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn({
        let socket = socket.clone();
        async move {
            let shutdown = async move {
                let _ = rx.await;
            };
            if let Err(e) = server::serve(config, Endpoint::Unix(socket), shutdown).await {
                panic!("controller failed: {e}");
            }
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !socket.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "controller socket never appeared"
        );
        assert!(!server.is_finished(), "controller exited during startup");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let channel = csi_proto::uds::connect(&socket).await.expect("connect");
    let mut identity = IdentityClient::new(channel.clone());
    // The socket is up at once; the controller acts once it leads (on etcd,
    // after a crashed predecessor's lease ran out) and has recovered.
    loop {
        let ready = identity
            .probe(csi_proto::ProbeRequest {})
            .await
            .map(|r| r.into_inner().ready == Some(true))
            .unwrap_or(false);
        if ready {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "controller never became ready (leader, store and a node up)"
        );
        assert!(!server.is_finished(), "controller exited during startup");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (tx, server, ControllerClient::new(channel), identity)
}

/// Every lvol on a node but its cluster stamp.
pub async fn data_lvols(c: &SpdkClient) -> Vec<spdk_client::Lvol> {
    c.bdev_lvol_get_lvols(&BdevLvolGetLvolsParams::default())
        .await
        .expect("lvols")
        .into_iter()
        .filter(|l| naming::cluster_of_stamp(&l.name).is_none())
        .collect()
}

/// A single-node-writer block capability.
pub fn block_cap() -> VolumeCapability {
    VolumeCapability {
        access_mode: Some(AccessMode {
            mode: Mode::SingleNodeWriter.into(),
        }),
        access_type: Some(AccessType::Block(BlockVolume {})),
    }
}

/// A CreateVolume request for `name` of `bytes` with `replicas`.
pub fn create_req(name: &str, bytes: i64, replicas: Option<u32>) -> CreateVolumeRequest {
    let mut parameters = HashMap::new();
    if let Some(r) = replicas {
        parameters.insert("numberOfReplicas".to_string(), r.to_string());
    }
    CreateVolumeRequest {
        name: name.to_string(),
        capacity_range: Some(CapacityRange {
            required_bytes: bytes,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![block_cap()],
        parameters,
        ..Default::default()
    }
}

/// A publish request.
pub fn publish_req(volume: &str, node: &str) -> ControllerPublishVolumeRequest {
    ControllerPublishVolumeRequest {
        volume_id: volume.to_string(),
        node_id: node.to_string(),
        volume_capability: Some(block_cap()),
        ..Default::default()
    }
}

/// An unpublish request.
pub fn unpublish_req(volume: &str, node: &str) -> ControllerUnpublishVolumeRequest {
    ControllerUnpublishVolumeRequest {
        volume_id: volume.to_string(),
        node_id: node.to_string(),
        ..Default::default()
    }
}

/// A delete request.
pub fn delete_req(volume: &str) -> DeleteVolumeRequest {
    DeleteVolumeRequest {
        volume_id: volume.to_string(),
        ..Default::default()
    }
}

/// Writes `data` at offset 0 of a block device and flushes it to the device.
pub fn write_device(path: &str, data: &[u8]) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {path} for writing: {e}"));
    f.write_all(data).expect("write device");
    f.sync_all().expect("fsync device");
}

/// Reads `len` bytes at offset 0 of a block device.
pub fn read_device(path: &str, len: usize) -> Vec<u8> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).unwrap_or_else(|e| panic!("open {path}: {e}"));
    let mut buf = vec![0u8; len];
    f.read_exact(&mut buf).expect("read device");
    buf
}

/// A recognisable pattern of `len` bytes.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}
