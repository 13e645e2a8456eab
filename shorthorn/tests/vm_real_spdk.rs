//! A snapshot under a running writer through the kernel NVMe/TCP initiator,
//! on real SPDK: run by `vmtest/run.sh --real-spdk` inside the guest against
//! a running `shorthorn local up` (its state directory in
//! `SHORTHORN_VM_LOCAL_STATE`), so it is `#[ignore]`d and skips elsewhere.
//!
//! Over CSI, a 3-replica raw block volume is created, published on node-1
//! (the kernel attaches the raid's NVMe/TCP export; the snapshot fence is
//! ANA) and written by a thread doing sequential 4 KiB `O_DIRECT` writes,
//! each followed by `fdatasync`. CreateSnapshot runs while it writes. Then:
//! - the writer never saw an error (the kernel held its I/O while the export
//!   was ANA-inaccessible and sent it on afterwards);
//! - on every replica node, the snapshot lvol (exported on a throwaway
//!   subsystem and read through the kernel initiator) holds exactly the
//!   writes `0..m`, the same `m` on every node, with `m` between the writes
//!   acknowledged before CreateSnapshot was sent and those acknowledged
//!   when it answered (one more at most: the write in flight);
//! - the volume holds every acknowledged write.
//!
//! A second test (`thin_swap_...`, step `rebuild` of `vmtest/run.sh
//! --real-spdk`) rebuilds a replica of a published volume under the same
//! kind of writer by the thin swap (docs/rebuild.md): the replica count goes
//! 3 -> 2 -> 3 with `shorthorn ctl set-replicas`, so node-3's replica is
//! dropped and then rebuilt onto node-3 by copy rounds and a raid swap under
//! the dm-linear suspend on node-1. It asserts that the writer never saw an
//! error, that the rebuild was thin (not the full-copy fallback) and left
//! the new replica with as many clusters allocated as the source (fewer
//! than the volume has), and that every replica, read directly, holds every
//! acknowledged write; it prints the writer's longest stall.

#[allow(dead_code)]
#[path = "../src/csi_steps.rs"]
mod csi_steps;

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use csi_steps::{Access, Csi};
use shorthorn_controller::config::ControllerConfig;
use shorthorn_controller::naming::snapshot_lvol;
use shorthorn_node::frontend::nvme_tcp::NvmeTcpFrontend;
use shorthorn_node::frontend::{AttachSpec, Frontend, NvmeTcpTarget};
use spdk_client::methods::nvmf::{
    ListenAddress, NvmfCreateSubsystemParams, NvmfDeleteSubsystemParams, NvmfNamespace,
    NvmfSubsystemAddHostParams, NvmfSubsystemAddListenerParams, NvmfSubsystemAddNsParams,
};
use spdk_client::SpdkClient;

const STATE_ENV: &str = "SHORTHORN_VM_LOCAL_STATE";
const BLOCK: usize = 4096;
/// Blocks the writer writes at most (16 MiB of the 64 MiB volume).
const BLOCKS: u64 = 4096;
const VOLUME_BYTES: u64 = 64 << 20;
/// Writes acknowledged before CreateSnapshot is sent, and after it answered.
const WARM_UP: u64 = 64;
const CSI_TIMEOUT: Duration = Duration::from_secs(180);

/// Block `k` as the writer writes it: `k + 1` as u64, repeated.
fn block(k: u64) -> Vec<u8> {
    (k + 1).to_le_bytes().repeat(BLOCK / 8)
}

/// How many leading blocks of `bytes` hold writes `0..m`, with nothing
/// written after them; panics (naming `what`) on any other content.
fn written_prefix(bytes: &[u8], what: &str) -> u64 {
    let zero = vec![0u8; BLOCK];
    let mut m = None;
    for (k, b) in bytes.chunks(BLOCK).enumerate() {
        let k = k as u64;
        match m {
            None if b == block(k).as_slice() => {}
            None if b == zero.as_slice() => m = Some(k),
            None => panic!("{what}: block {k} holds neither write {k} nor zeroes"),
            Some(first) => assert!(
                b == zero.as_slice(),
                "{what}: block {k} is written although block {first} is not"
            ),
        }
    }
    m.unwrap_or(bytes.len() as u64 / BLOCK as u64)
}

/// A 4 KiB-aligned buffer for `O_DIRECT`.
struct Aligned {
    raw: Vec<u8>,
    start: usize,
}

impl Aligned {
    fn new() -> Self {
        let raw = vec![0u8; 2 * BLOCK];
        let start = (BLOCK - raw.as_ptr() as usize % BLOCK) % BLOCK;
        Self { raw, start }
    }

    fn fill(&mut self, data: &[u8]) -> &[u8] {
        let buf = &mut self.raw[self.start..self.start + BLOCK];
        buf.copy_from_slice(data);
        buf
    }
}

struct WriterState {
    acked: AtomicU64,
    stop: AtomicBool,
    error: Mutex<Option<String>>,
    /// Completion times (since `started`) of every write.
    done_at: Mutex<Vec<Duration>>,
    started: Instant,
}

/// A 3-replica block volume of `local up`, published, staged and
/// node-published on the guest's node: what a test's kernel writer writes to.
struct Published {
    state_dir: PathBuf,
    config: ControllerConfig,
    csi: Csi,
    /// The guest's node id, where the volume is published.
    node: String,
    volume: String,
    staging: PathBuf,
    /// The block device's node-publish path.
    target: PathBuf,
}

impl Published {
    /// Publishes volume `name`, with staging and target paths named after
    /// `prefix`; `None` (the test skips) outside the vmtest guest.
    async fn block(name: &str, prefix: &str) -> Option<Published> {
        let Some(state_dir) = std::env::var_os(STATE_ENV).map(PathBuf::from) else {
            eprintln!("SKIPPED: set {STATE_ENV} to a running `shorthorn local up`'s state directory (vmtest/run.sh --real-spdk does)");
            return None;
        };
        let toml =
            std::fs::read_to_string(state_dir.join("controller.toml")).expect("controller.toml");
        let config = ControllerConfig::from_toml(&toml).expect("parse controller.toml");
        let mut csi = Csi::connect_one(&state_dir.join("csi.sock"), CSI_TIMEOUT)
            .await
            .expect("connect to local up");
        let node = csi.node_id().await.expect("node id");
        let volume = csi
            .create_volume(name, VOLUME_BYTES, 3, None)
            .await
            .expect("CreateVolume");
        let context = csi
            .controller_publish(&volume, &node, Access::Block)
            .await
            .expect("ControllerPublishVolume");
        let staging = state_dir.join(format!("{prefix}-staging"));
        let target = state_dir.join(format!("{prefix}-target"));
        std::fs::create_dir_all(&staging).expect("staging dir");
        csi.stage(&volume, &context, &staging, Access::Block)
            .await
            .expect("NodeStageVolume");
        csi.node_publish(&volume, &context, &staging, &target, Access::Block)
            .await
            .expect("NodePublishVolume");
        Some(Published {
            state_dir,
            config,
            csi,
            node,
            volume,
            staging,
            target,
        })
    }
}

impl WriterState {
    fn new() -> Self {
        WriterState {
            acked: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            error: Mutex::new(None),
            done_at: Mutex::new(Vec::new()),
            started: Instant::now(),
        }
    }
}

/// Sequential `O_DIRECT` writes, each made durable with `fdatasync`.
fn write_loop(dev: &Path, state: &WriterState) {
    write_loop_paced(dev, state, BLOCKS, Duration::ZERO)
}

/// [`write_loop`] over `blocks` blocks, pausing `pause` after each write.
fn write_loop_paced(dev: &Path, state: &WriterState, blocks: u64, pause: Duration) {
    let file = match OpenOptions::new()
        .write(true)
        .custom_flags(nix::libc::O_DIRECT)
        .open(dev)
    {
        Ok(f) => f,
        Err(e) => {
            *state.error.lock().unwrap() = Some(format!("opening {}: {e}", dev.display()));
            return;
        }
    };
    let mut buf = Aligned::new();
    for k in 0..blocks {
        if state.stop.load(Ordering::Relaxed) {
            break;
        }
        let data = buf.fill(&block(k));
        if let Err(e) = file
            .write_all_at(data, k * BLOCK as u64)
            .and_then(|()| file.sync_data())
        {
            *state.error.lock().unwrap() = Some(format!("write {k}: {e}"));
            return;
        }
        state.done_at.lock().unwrap().push(state.started.elapsed());
        state.acked.store(k + 1, Ordering::SeqCst);
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
    }
}

async fn wait_acked(state: &WriterState, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while state.acked.load(Ordering::SeqCst) < n {
        assert!(
            state.error.lock().unwrap().is_none(),
            "writer failed: {:?}",
            state.error.lock().unwrap()
        );
        assert!(
            Instant::now() < deadline,
            "the writer did not reach {n} writes in 2 min"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("reading {path}: {e}"))
        .trim()
        .to_string()
}

/// Reads `len` bytes of lvol `alias` on a storage node through the kernel
/// initiator: a throwaway subsystem admitting this guest's host NQN, on the
/// node's own NVMe/TCP port, deleted afterwards.
async fn read_lvol_via_kernel(socket: &Path, port: u16, alias: &str, len: usize) -> Vec<u8> {
    let client = SpdkClient::unix(socket).with_timeout(Duration::from_secs(60));
    let bdev = client
        .bdev_get(alias)
        .await
        .unwrap_or_else(|e| panic!("bdev_get {alias} on {}: {e}", socket.display()))
        .unwrap_or_else(|| panic!("no {alias} on {}", socket.display()));
    let ns_uuid = uuid::Uuid::new_v4();
    let nqn = format!("nqn.2016-06.io.shorthorn:vmtest-read-{}", ns_uuid.simple());
    let hostnqn = read_trimmed("/etc/nvme/hostnqn");
    client
        .nvmf_create_subsystem(&NvmfCreateSubsystemParams {
            nqn: nqn.clone(),
            allow_any_host: Some(false),
            ..Default::default()
        })
        .await
        .expect("create the read subsystem");
    client
        .nvmf_subsystem_add_ns(&NvmfSubsystemAddNsParams {
            nqn: nqn.clone(),
            namespace: NvmfNamespace {
                bdev_name: bdev.name.clone(),
                uuid: Some(ns_uuid.to_string()),
                ..Default::default()
            },
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("export {alias}: {e}"));
    client
        .nvmf_subsystem_add_host(&NvmfSubsystemAddHostParams {
            nqn: nqn.clone(),
            host: hostnqn.clone(),
            ..Default::default()
        })
        .await
        .expect("admit the guest host");
    client
        .nvmf_subsystem_add_listener(&NvmfSubsystemAddListenerParams {
            nqn: nqn.clone(),
            listen_address: ListenAddress::tcp_ipv4("127.0.0.1", port),
            ..Default::default()
        })
        .await
        .expect("listen");
    let spec = AttachSpec::NvmeTcp(NvmeTcpTarget {
        traddr: "127.0.0.1".parse().expect("loopback"),
        trsvcid: port,
        subnqn: nqn.clone(),
        ns_uuid,
        hostnqn,
        hostid: read_trimmed("/etc/nvme/hostid")
            .parse()
            .expect("hostid is a uuid"),
        ctrl_loss_tmo: 10,
        reconnect_delay: 1,
        keep_alive_tmo: 5,
    });
    let fe = NvmeTcpFrontend::default();
    let dev = fe
        .attach(&spec)
        .await
        .unwrap_or_else(|e| panic!("kernel attach of {alias}: {e}"));
    let mut bytes = vec![0u8; len];
    File::open(&dev.path)
        .and_then(|f| f.read_exact_at(&mut bytes, 0))
        .unwrap_or_else(|e| panic!("reading {}: {e}", dev.path.display()));
    fe.detach(&spec).await.expect("kernel detach");
    client
        .nvmf_delete_subsystem(&NvmfDeleteSubsystemParams {
            nqn,
            tgt_name: None,
        })
        .await
        .expect("delete the read subsystem");
    bytes
}

/// Distinct ANA states the kernel shows for its NVMe paths, polled until `stop`.
fn watch_ana(stop: Arc<AtomicBool>) -> std::thread::JoinHandle<BTreeSet<String>> {
    std::thread::spawn(move || {
        let mut seen = BTreeSet::new();
        while !stop.load(Ordering::Relaxed) {
            if let Ok(ctrls) = std::fs::read_dir("/sys/class/nvme") {
                for c in ctrls.flatten() {
                    for p in std::fs::read_dir(c.path()).into_iter().flatten().flatten() {
                        if let Ok(s) = std::fs::read_to_string(p.path().join("ana_state")) {
                            seen.insert(s.trim().to_string());
                        }
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        seen
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs inside the vmtest guest against local up (vmtest/run.sh --real-spdk)"]
async fn snapshot_under_a_kernel_nvme_tcp_writer_is_the_same_prefix_on_every_replica() {
    let Some(Published {
        state_dir,
        config,
        mut csi,
        node,
        volume,
        staging,
        target,
    }) = Published::block("vm-snap-writer", "vm-snap").await
    else {
        return;
    };
    let state = Arc::new(WriterState::new());
    let writer = {
        let (state, target) = (state.clone(), target.clone());
        std::thread::spawn(move || write_loop(&target, &state))
    };
    wait_acked(&state, WARM_UP).await;

    let ana_stop = Arc::new(AtomicBool::new(false));
    let ana = watch_ana(ana_stop.clone());
    let before = state.acked.load(Ordering::SeqCst);
    let sent = state.started.elapsed();
    let (snapshot, ready) = csi
        .create_snapshot(&volume, "vm-snap-under-writer")
        .await
        .expect("CreateSnapshot under the writer");
    let answered = state.started.elapsed();
    let after = state.acked.load(Ordering::SeqCst);
    ana_stop.store(true, Ordering::Relaxed);
    let ana_seen = ana.join().expect("ANA watcher");
    assert!(ready, "the snapshot is ready to use");
    wait_acked(&state, (after + WARM_UP).min(BLOCKS)).await;
    state.stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer thread");
    assert_eq!(
        *state.error.lock().unwrap(),
        None,
        "the writer saw an error"
    );
    let acked = state.acked.load(Ordering::SeqCst);
    let done_at = state.done_at.lock().unwrap().clone();
    let longest_gap = done_at
        .windows(2)
        .filter(|w| w[1] >= sent && w[0] <= answered)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    println!(
        "MEASURE vmtest real SPDK: CreateSnapshot under a kernel NVMe/TCP writer took {:?}; \
         writes acknowledged before {before}, at the answer {after}, in all {acked}; the writer's \
         longest gap across CreateSnapshot {longest_gap:?}; ANA states the kernel showed: {ana_seen:?}",
        answered - sent
    );

    // Every replica's snapshot: the same prefix of the writes.
    let alias_of = |i: usize| format!("{}/{}", config.nodes[i].lvstore, snapshot_lvol(&snapshot));
    let len = BLOCKS as usize * BLOCK;
    let mut prefixes = Vec::new();
    let mut first: Option<Vec<u8>> = None;
    for (i, n) in config.nodes.iter().enumerate() {
        let socket = state_dir.join("nodes").join(&n.name).join("spdk.sock");
        let bytes = read_lvol_via_kernel(&socket, n.nvmf_port, &alias_of(i), len).await;
        let m = written_prefix(&bytes, &format!("snapshot on {}", n.name));
        prefixes.push((n.name.clone(), m));
        match &first {
            None => first = Some(bytes),
            Some(f) => assert!(
                *f == bytes,
                "the snapshot on {} differs from the one on {}",
                n.name,
                config.nodes[0].name
            ),
        }
    }
    println!("MEASURE vmtest real SPDK: writes in the snapshot, by replica: {prefixes:?}");
    assert_eq!(
        prefixes.len(),
        3,
        "a snapshot on each of the 3 replica nodes"
    );
    let m = prefixes[0].1;
    assert!(
        before <= m && m <= after + 1,
        "the snapshot holds writes 0..{m}, but {before} were acknowledged before CreateSnapshot \
         was sent and {after} when it answered"
    );

    // The volume holds every acknowledged write (read through its own device).
    let mut bytes = vec![0u8; len];
    File::open(&target)
        .and_then(|f| f.read_exact_at(&mut bytes, 0))
        .expect("reading the volume");
    assert_eq!(
        written_prefix(&bytes, "the volume"),
        acked,
        "the volume holds every acknowledged write"
    );

    csi.node_unpublish(&volume, &target)
        .await
        .expect("NodeUnpublishVolume");
    csi.unstage(&volume, &staging)
        .await
        .expect("NodeUnstageVolume");
    csi.controller_unpublish(&volume, &node)
        .await
        .expect("ControllerUnpublishVolume");
    csi.delete_snapshot(&snapshot)
        .await
        .expect("DeleteSnapshot");
    csi.delete_volume(&volume).await.expect("DeleteVolume");
    let _ = std::fs::remove_dir(&staging);
}

/// Blocks the rebuild test's writer writes at most (32 MiB of the 64 MiB volume).
const REBUILD_BLOCKS: u64 = 8192;

/// `shorthorn ctl --json set-replicas ID COUNT` against local up's admin API.
fn set_replicas(state_dir: &Path, volume: &str, count: u32) -> serde_json::Value {
    let bin = std::env::var("SHORTHORN_BIN").unwrap_or_else(|_| "/shorthorn/shorthorn".into());
    let out = std::process::Command::new(&bin)
        .arg("ctl")
        .arg("--endpoint")
        .arg(format!("unix://{}", state_dir.join("ctl.sock").display()))
        .arg("--json")
        .arg("set-replicas")
        .arg(volume)
        .arg(count.to_string())
        .output()
        .unwrap_or_else(|e| panic!("running {bin} ctl set-replicas: {e}"));
    assert!(
        out.status.success(),
        "ctl set-replicas {volume} {count}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "ctl set-replicas --json printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Allocated clusters and cluster count of lvol `alias` on a node.
async fn clusters(socket: &Path, alias: &str) -> (u64, u64) {
    let client = SpdkClient::unix(socket).with_timeout(Duration::from_secs(60));
    let lvols = client
        .bdev_lvol_get_lvols(&Default::default())
        .await
        .unwrap_or_else(|e| panic!("bdev_lvol_get_lvols on {}: {e}", socket.display()));
    let lvol = lvols
        .iter()
        .find(|l| l.alias == alias)
        .unwrap_or_else(|| panic!("no lvol {alias} on {}", socket.display()));
    let stores = client
        .bdev_lvol_get_lvstores(&Default::default())
        .await
        .expect("bdev_lvol_get_lvstores");
    let cluster = stores
        .iter()
        .find(|s| s.name == lvol.lvs.name)
        .map(|s| s.cluster_size)
        .expect("the lvol's lvstore");
    (lvol.num_allocated_clusters, VOLUME_BYTES.div_ceil(cluster))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs inside the vmtest guest against local up (vmtest/run.sh --real-spdk)"]
async fn thin_swap_rebuilds_a_published_replica_under_a_kernel_writer() {
    let Some(Published {
        state_dir,
        config,
        mut csi,
        node,
        volume,
        staging,
        target,
    }) = Published::block("vm-thin-swap", "vm-swap").await
    else {
        return;
    };
    let state = Arc::new(WriterState::new());
    let writer = {
        let (state, target) = (state.clone(), target.clone());
        std::thread::spawn(move || {
            write_loop_paced(&target, &state, REBUILD_BLOCKS, Duration::from_millis(2))
        })
    };
    wait_acked(&state, WARM_UP).await;

    // node-3's replica goes (its leg leaves the raid, its lvol is deleted)...
    let down = set_replicas(&state_dir, &volume, 2);
    assert_eq!(down["to"], 2, "{down}");
    wait_acked(&state, state.acked.load(Ordering::SeqCst) + WARM_UP).await;
    // ... and comes back, rebuilt thin while the writer writes.
    let before = state.acked.load(Ordering::SeqCst);
    let sent = state.started.elapsed();
    let up = set_replicas(&state_dir, &volume, 3);
    let answered = state.started.elapsed();
    let after = state.acked.load(Ordering::SeqCst);
    println!("MEASURE vmtest real SPDK: set-replicas 3 answered {up}");
    assert_eq!(
        up["full_copy"], false,
        "the rebuild used the full-copy fallback, not the thin swap: {up}"
    );
    let added: Vec<String> = up["added"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(added.len(), 1, "one replica added: {up}");
    wait_acked(&state, (after + WARM_UP).min(REBUILD_BLOCKS)).await;
    state.stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer thread");
    assert_eq!(
        *state.error.lock().unwrap(),
        None,
        "the writer saw an error"
    );
    let acked = state.acked.load(Ordering::SeqCst);
    let done_at = state.done_at.lock().unwrap().clone();
    let longest_gap = done_at
        .windows(2)
        .filter(|w| w[1] >= sent && w[0] <= answered)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    println!(
        "MEASURE vmtest real SPDK: thin swap rebuild onto {} under a kernel NVMe/TCP writer took {:?} \
         (set-replicas 3); writes acknowledged before {before}, at the answer {after}, in all {acked}; \
         the writer's longest stall across the rebuild {longest_gap:?}",
        added[0],
        answered - sent
    );
    assert!(
        after > before,
        "no write was acknowledged while the rebuild ran ({before} before, {after} after)"
    );

    // Thin: the new replica holds as many clusters as the engine's own.
    let socket_of = |name: &str| state_dir.join("nodes").join(name).join("spdk.sock");
    let lvs_of = |name: &str| {
        config
            .nodes
            .iter()
            .find(|n| n.name == name)
            .map(|n| n.lvstore.clone())
            .expect("node in controller.toml")
    };
    let alias = |name: &str| format!("{}/shv-{volume}", lvs_of(name));
    let (new_alloc, total) = clusters(&socket_of(&added[0]), &alias(&added[0])).await;
    let (src_alloc, _) = clusters(&socket_of(&node), &alias(&node)).await;
    println!(
        "MEASURE vmtest real SPDK: allocated clusters after the thin swap: new replica {new_alloc}, \
         source {src_alloc}, of {total} in the volume"
    );
    assert!(
        new_alloc < total,
        "the new replica is fully allocated ({new_alloc} of {total} clusters): not thin"
    );
    assert_eq!(
        new_alloc, src_alloc,
        "the new replica's allocated clusters differ from the source's"
    );

    // The volume, through its device, holds every acknowledged write.
    let len = REBUILD_BLOCKS as usize * BLOCK;
    let mut bytes = vec![0u8; len];
    File::open(&target)
        .and_then(|f| f.read_exact_at(&mut bytes, 0))
        .expect("reading the volume");
    assert_eq!(
        written_prefix(&bytes, "the volume"),
        acked,
        "the volume holds every acknowledged write"
    );
    csi.node_unpublish(&volume, &target)
        .await
        .expect("NodeUnpublishVolume");
    csi.unstage(&volume, &staging)
        .await
        .expect("NodeUnstageVolume");
    csi.controller_unpublish(&volume, &node)
        .await
        .expect("ControllerUnpublishVolume");

    // Every replica, read directly once unpublished (its export to the
    // engine gone), holds every acknowledged write.
    for n in &config.nodes {
        let bytes =
            read_lvol_via_kernel(&socket_of(&n.name), n.nvmf_port, &alias(&n.name), len).await;
        assert_eq!(
            written_prefix(&bytes, &format!("replica on {}", n.name)),
            acked,
            "the replica on {} does not hold exactly the {acked} acknowledged writes",
            n.name
        );
    }
    println!(
        "MEASURE vmtest real SPDK: all {} replicas hold the {acked} acknowledged writes",
        config.nodes.len()
    );

    csi.delete_volume(&volume).await.expect("DeleteVolume");
    let _ = std::fs::remove_dir(&staging);
}
