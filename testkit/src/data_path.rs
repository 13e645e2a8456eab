//! Reads and writes bytes of a node's bdevs the same way on the sim and on
//! real SPDK, so a test that verifies data runs unchanged on both.
//!
//! - On the sim: the sim-only `sim_bdev_read` / `sim_bdev_write` methods.
//! - On real SPDK: the bdev is exported over NVMe/TCP from a throwaway
//!   subsystem that admits exactly one host ([`TEST_HOST_NQN`]) and is read
//!   or written by `spdk_dd` as a userspace initiator
//!   (`bdev_nvme_attach_controller` in its `--json` config). The subsystem is
//!   deleted afterwards, whatever happened.
//!
//! A bdev claimed by another module (a raid member, a namespace of an export)
//! cannot be exported again on real SPDK. So, on both flavors:
//! - reading a claimed **lvol** works: on real SPDK it reads a throwaway
//!   snapshot of it (a read-only, point-in-time view), deleted afterwards so
//!   its clusters merge back into the lvol and nothing is left;
//! - reading any other claimed bdev, or writing any claimed bdev, is refused:
//!   read it through its export ([`DataPath::read_export`]) or after the
//!   claim is gone.
//!
//! Offsets and lengths are bytes, multiples of the bdev's block size. On
//! both flavors the node is left with a TCP transport (created if missing),
//! which real SPDK's throwaway exports need.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};
use spdk_client::{
    Bdev, BdevLvolDeleteParams, BdevLvolSnapshotParams, ListenAddress, NvmfCreateSubsystemParams,
    NvmfCreateTransportParams, NvmfDeleteSubsystemParams, NvmfGetSubsystemsParams,
    NvmfGetTransportsParams, NvmfNamespace, NvmfSubsystemAddHostParams,
    NvmfSubsystemAddListenerParams, NvmfSubsystemAddNsParams, NvmfTransport, SpdkClient,
};

use crate::hugepages;
use crate::launch::available_cores;
use crate::nodes::{Flavor, NodesError, StorageNode};

/// The one host NQN the data path's exports admit (and presents when it
/// reads an existing export, which must admit it).
pub const TEST_HOST_NQN: &str = "nqn.2014-08.io.shorthorn:testkit-data-path";
/// hugepage memory (`-s`, MiB) of one spdk_dd run.
const SPDK_DD_MEM_MIB: u64 = 64;
/// How long one spdk_dd run may take.
const SPDK_DD_TIMEOUT: Duration = Duration::from_secs(120);
/// Per-call timeout of the data path's own SPDK calls.
const RPC_TIMEOUT: Duration = Duration::from_secs(60);

/// An existing NVMe/TCP export, as an initiator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    /// Subsystem NQN.
    pub nqn: String,
    /// Host NQN to present (the subsystem must admit it).
    pub host_nqn: String,
    /// Target address.
    pub address: String,
    /// Target TCP port.
    pub port: u16,
    /// Namespace id.
    pub nsid: u32,
}

/// The data path of one cluster flavor.
#[derive(Debug, Clone)]
pub struct DataPath {
    flavor: Flavor,
}

impl DataPath {
    /// The data path for nodes of `flavor`.
    pub fn new(flavor: Flavor) -> Self {
        Self { flavor }
    }

    /// Reads `len` bytes at `offset` of bdev `bdev` (name or alias) on `node`.
    pub async fn read(
        &self,
        node: &StorageNode,
        bdev: &str,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, NodesError> {
        let client = client(node);
        let info = lookup(&client, node, bdev).await?;
        check_range(&info, node, bdev, offset, len)?;
        let is_lvol = info.driver_specific.lvol.is_some();
        if info.claimed && !is_lvol {
            return Err(claimed(&info, node, bdev, "read"));
        }
        // Both flavors leave the same trace: the TCP transport its exports need.
        ensure_tcp_transport(&client, node).await?;
        match &self.flavor {
            Flavor::Sim(_) => sim_read(&client, &info.name, offset, len).await,
            Flavor::Real(real) => {
                let dd = real.require_spdk_dd()?.to_path_buf();
                if info.claimed {
                    read_through_snapshot(&client, node, &dd, &info, offset, len).await
                } else {
                    with_export(&client, node, &info.name, |export| async move {
                        spdk_dd_read(&dd, &export, offset, len).await
                    })
                    .await
                }
            }
        }
    }

    /// Writes `data` at `offset` of bdev `bdev` (name or alias) on `node`.
    pub async fn write(
        &self,
        node: &StorageNode,
        bdev: &str,
        offset: u64,
        data: &[u8],
    ) -> Result<(), NodesError> {
        let client = client(node);
        let info = lookup(&client, node, bdev).await?;
        check_range(&info, node, bdev, offset, data.len() as u64)?;
        if info.claimed {
            return Err(claimed(&info, node, bdev, "write"));
        }
        ensure_tcp_transport(&client, node).await?;
        match &self.flavor {
            Flavor::Sim(_) => sim_write(&client, &info.name, offset, data).await,
            Flavor::Real(real) => {
                let dd = real.require_spdk_dd()?.to_path_buf();
                with_export(&client, node, &info.name, |export| async move {
                    spdk_dd_write(&dd, &export, offset, data).await
                })
                .await
            }
        }
    }

    /// Reads through an existing export of `node`, as the host `export.host_nqn`.
    /// On the sim, which speaks its own wire protocol, the export's rules are
    /// checked (subsystem, listener, admitted host, namespace) and its bdev is read.
    pub async fn read_export(
        &self,
        node: &StorageNode,
        export: &Export,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, NodesError> {
        match &self.flavor {
            Flavor::Sim(_) => {
                let client = client(node);
                let bdev = sim_export_bdev(&client, node, export).await?;
                sim_read(&client, &bdev, offset, len).await
            }
            Flavor::Real(real) => {
                let dd = real.require_spdk_dd()?.to_path_buf();
                spdk_dd_read(&dd, export, offset, len).await
            }
        }
    }

    /// Writes through an existing export of `node`, as the host `export.host_nqn`.
    pub async fn write_export(
        &self,
        node: &StorageNode,
        export: &Export,
        offset: u64,
        data: &[u8],
    ) -> Result<(), NodesError> {
        match &self.flavor {
            Flavor::Sim(_) => {
                let client = client(node);
                let bdev = sim_export_bdev(&client, node, export).await?;
                sim_write(&client, &bdev, offset, data).await
            }
            Flavor::Real(real) => {
                let dd = real.require_spdk_dd()?.to_path_buf();
                spdk_dd_write(&dd, export, offset, data).await
            }
        }
    }
}

fn client(node: &StorageNode) -> SpdkClient {
    SpdkClient::unix(&node.rpc_socket).with_timeout(RPC_TIMEOUT)
}

fn spdk(context: impl Into<String>) -> impl FnOnce(spdk_client::SpdkError) -> NodesError {
    let context = context.into();
    move |source| NodesError::Spdk { context, source }
}

async fn lookup(client: &SpdkClient, node: &StorageNode, bdev: &str) -> Result<Bdev, NodesError> {
    client
        .bdev_get(bdev)
        .await
        .map_err(spdk(format!("looking up bdev {bdev} on {}", node.name)))?
        .ok_or_else(|| NodesError::DataPath(format!("no bdev {bdev} on {}", node.name)))
}

fn check_range(
    info: &Bdev,
    node: &StorageNode,
    bdev: &str,
    offset: u64,
    len: u64,
) -> Result<(), NodesError> {
    let bs = u64::from(info.block_size.max(1));
    if !offset.is_multiple_of(bs) || !len.is_multiple_of(bs) || len == 0 {
        return Err(NodesError::DataPath(format!(
            "{len} bytes at {offset} of {bdev} on {}: not whole {bs}-byte blocks",
            node.name
        )));
    }
    if offset.saturating_add(len) > info.size_bytes() {
        return Err(NodesError::DataPath(format!(
            "{len} bytes at {offset} of {bdev} on {}: beyond its {} bytes",
            node.name,
            info.size_bytes()
        )));
    }
    Ok(())
}

fn claimed(info: &Bdev, node: &StorageNode, bdev: &str, what: &str) -> NodesError {
    NodesError::DataPath(format!(
        "cannot {what} bdev {bdev} on {}: it is claimed ({}) by another module, and real SPDK \
         cannot export a claimed bdev; use its export (read_export) or wait for the claim to go",
        node.name,
        info.claim_type.as_deref().unwrap_or("claimed")
    ))
}

async fn sim_read(
    client: &SpdkClient,
    bdev: &str,
    offset: u64,
    len: u64,
) -> Result<Vec<u8>, NodesError> {
    let v = client
        .call_raw(
            "sim_bdev_read",
            Some(json!({"name": bdev, "offset": offset, "length": len})),
        )
        .await
        .map_err(spdk(format!("sim_bdev_read {bdev}")))?;
    let data = v["data"]
        .as_str()
        .ok_or_else(|| NodesError::DataPath(format!("sim_bdev_read {bdev}: no data in {v}")))?;
    base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|e| NodesError::DataPath(format!("sim_bdev_read {bdev}: {e}")))
}

async fn sim_write(
    client: &SpdkClient,
    bdev: &str,
    offset: u64,
    data: &[u8],
) -> Result<(), NodesError> {
    let encoded = base64::engine::general_purpose::STANDARD.encode(data);
    client
        .call_raw(
            "sim_bdev_write",
            Some(json!({"name": bdev, "offset": offset, "data": encoded})),
        )
        .await
        .map_err(spdk(format!("sim_bdev_write {bdev}")))?;
    Ok(())
}

/// The bdev behind `export`'s namespace on a sim node, once the export's
/// admission rules (listener, host, namespace) are met.
async fn sim_export_bdev(
    client: &SpdkClient,
    node: &StorageNode,
    export: &Export,
) -> Result<String, NodesError> {
    let subs = client
        .nvmf_get_subsystems(&NvmfGetSubsystemsParams::default())
        .await
        .map_err(spdk(format!("listing subsystems on {}", node.name)))?;
    let refused = |why: &str| {
        NodesError::DataPath(format!(
            "{} on {} refuses host {}: {why}",
            export.nqn, node.name, export.host_nqn
        ))
    };
    let sub = subs
        .iter()
        .find(|s| s.nqn == export.nqn)
        .ok_or_else(|| refused("no such subsystem"))?;
    let port = export.port.to_string();
    if !sub
        .listen_addresses
        .iter()
        .any(|l| l.traddr == export.address && l.trsvcid.as_deref() == Some(port.as_str()))
    {
        return Err(refused("no listener at that address"));
    }
    if !sub.allow_any_host && !sub.hosts.iter().any(|h| h.nqn == export.host_nqn) {
        return Err(refused("host not admitted"));
    }
    sub.namespaces
        .iter()
        .find(|n| n.nsid == export.nsid)
        .map(|n| n.bdev_name.clone())
        .ok_or_else(|| refused("no such namespace"))
}

static NEXT: AtomicU32 = AtomicU32::new(0);

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Reads a claimed lvol through a throwaway snapshot, deleted afterwards.
async fn read_through_snapshot(
    client: &SpdkClient,
    node: &StorageNode,
    dd: &Path,
    info: &Bdev,
    offset: u64,
    len: u64,
) -> Result<Vec<u8>, NodesError> {
    let name = unique("tkio");
    let snapshot = client
        .bdev_lvol_snapshot(&BdevLvolSnapshotParams {
            lvol_name: info.name.clone(),
            snapshot_name: name.clone(),
        })
        .await
        .map_err(spdk(format!(
            "snapshotting claimed lvol {} on {} to read it",
            info.name, node.name
        )))?;
    let read = with_export(client, node, &snapshot, |export| async move {
        spdk_dd_read(dd, &export, offset, len).await
    })
    .await;
    let deleted = client
        .bdev_lvol_delete(&BdevLvolDeleteParams { name: snapshot })
        .await
        .map_err(spdk(format!(
            "deleting the data path's snapshot {name} on {}",
            node.name
        )));
    let data = read?;
    deleted?;
    Ok(data)
}

/// Exports `bdev` on `node` to [`TEST_HOST_NQN`] for the duration of `op`,
/// then deletes the export whatever `op` returned.
async fn with_export<T, F, Fut>(
    client: &SpdkClient,
    node: &StorageNode,
    bdev: &str,
    op: F,
) -> Result<T, NodesError>
where
    F: FnOnce(Export) -> Fut,
    Fut: std::future::Future<Output = Result<T, NodesError>>,
{
    ensure_tcp_transport(client, node).await?;
    let nqn = format!("nqn.2016-06.io.shorthorn:{}", unique("testkit-io"));
    client
        .nvmf_create_subsystem(&NvmfCreateSubsystemParams {
            nqn: nqn.clone(),
            allow_any_host: Some(false),
            ..Default::default()
        })
        .await
        .map_err(spdk(format!(
            "creating the data path's export on {}",
            node.name
        )))?;
    let result = async {
        let reserved = crate::ports::reserve()?;
        let port = reserved.port();
        let nsid = client
            .nvmf_subsystem_add_ns(&NvmfSubsystemAddNsParams {
                nqn: nqn.clone(),
                namespace: NvmfNamespace {
                    bdev_name: bdev.to_string(),
                    ..Default::default()
                },
                ..Default::default()
            })
            .await
            .map_err(spdk(format!("exporting {bdev} on {}", node.name)))?;
        client
            .nvmf_subsystem_add_host(&NvmfSubsystemAddHostParams {
                nqn: nqn.clone(),
                host: TEST_HOST_NQN.to_string(),
                ..Default::default()
            })
            .await
            .map_err(spdk(format!("admitting the test host on {}", node.name)))?;
        client
            .nvmf_subsystem_add_listener(&NvmfSubsystemAddListenerParams {
                nqn: nqn.clone(),
                listen_address: ListenAddress::tcp_ipv4(&node.nvmf_address, port),
                ..Default::default()
            })
            .await
            .map_err(spdk(format!("listening on port {port} on {}", node.name)))?;
        op(Export {
            nqn: nqn.clone(),
            host_nqn: TEST_HOST_NQN.to_string(),
            address: node.nvmf_address.clone(),
            port,
            nsid,
        })
        .await
    }
    .await;
    let deleted = client
        .nvmf_delete_subsystem(&NvmfDeleteSubsystemParams {
            nqn: nqn.clone(),
            tgt_name: None,
        })
        .await
        .map_err(spdk(format!(
            "deleting the data path's export {nqn} on {}",
            node.name
        )));
    let value = result?;
    deleted?;
    Ok(value)
}

async fn ensure_tcp_transport(client: &SpdkClient, node: &StorageNode) -> Result<(), NodesError> {
    let transports: Vec<NvmfTransport> = client
        .nvmf_get_transports(&NvmfGetTransportsParams::default())
        .await
        .map_err(spdk(format!("listing transports on {}", node.name)))?;
    if transports
        .iter()
        .any(|t| t.trtype.eq_ignore_ascii_case("TCP"))
    {
        return Ok(());
    }
    match client
        .nvmf_create_transport(&NvmfCreateTransportParams {
            trtype: "TCP".into(),
            ..Default::default()
        })
        .await
    {
        Ok(()) => Ok(()),
        // Created meanwhile by someone else.
        Err(spdk_client::SpdkError::Rpc { message, .. }) if message.contains("already exists") => {
            Ok(())
        }
        Err(e) => Err(spdk(format!("creating the TCP transport on {}", node.name))(e)),
    }
}

/// The largest power-of-two I/O size (at most 1 MiB, at least 512) dividing
/// both `offset` and `len`.
fn io_size(offset: u64, len: u64) -> u64 {
    let mut bs = 1 << 20;
    while bs > 512 && (!offset.is_multiple_of(bs) || !len.is_multiple_of(bs)) {
        bs /= 2;
    }
    bs
}

/// The `--json` config attaching `export` as controller `tk` (bdev
/// `tkn<nsid>`). Auto-examine is off: spdk_dd's own raid module would
/// otherwise find a raid superblock on a replica and claim the bdev.
fn attach_config(export: &Export) -> Value {
    json!({"subsystems": [{"subsystem": "bdev", "config": [{
        "method": "bdev_set_options",
        "params": {"bdev_auto_examine": false}
    }, {
        "method": "bdev_nvme_attach_controller",
        "params": {
            "name": "tk", "trtype": "TCP", "adrfam": "IPv4",
            "traddr": export.address, "trsvcid": export.port.to_string(),
            "subnqn": export.nqn, "hostnqn": export.host_nqn,
            "ctrlr_loss_timeout_sec": 2, "reconnect_delay_sec": 1, "fast_io_fail_timeout_sec": 1
        }
    }]}]})
}

/// One spdk_dd run between a file and the export's namespace bdev.
struct DdRun {
    dir: tempfile::TempDir,
    file: PathBuf,
}

impl DdRun {
    fn new() -> Result<Self, NodesError> {
        let dir = tempfile::Builder::new()
            .prefix("shorthorn-spdk-dd-")
            .tempdir()
            .map_err(|source| NodesError::Io {
                context: "creating a spdk_dd directory".into(),
                source,
            })?;
        let file = dir.path().join("data");
        Ok(Self { dir, file })
    }

    async fn run(&self, dd: &Path, export: &Export, io: &[String]) -> Result<(), NodesError> {
        hugepages::preflight(SPDK_DD_MEM_MIB)?;
        let config = self.dir.path().join("attach.json");
        std::fs::write(&config, attach_config(export).to_string()).map_err(|source| {
            NodesError::Io {
                context: "writing the spdk_dd config".into(),
                source,
            }
        })?;
        let core = available_cores() - 1;
        let mut cmd = tokio::process::Command::new(dd);
        cmd.arg("-m")
            .arg(format!("{:#x}", 1u64 << core.min(63)))
            .args([
                "-s",
                &SPDK_DD_MEM_MIB.to_string(),
                "--no-pci",
                "--disable-cpumask-locks",
            ])
            .arg("--json")
            .arg(&config)
            .args(io)
            .kill_on_drop(true)
            .stdin(std::process::Stdio::null());
        let out = tokio::time::timeout(SPDK_DD_TIMEOUT, cmd.output())
            .await
            .map_err(|_| {
                NodesError::DataPath(format!(
                    "spdk_dd on {} did not finish within {SPDK_DD_TIMEOUT:?}",
                    export.nqn
                ))
            })?
            .map_err(|source| NodesError::Io {
                context: format!("running {}", dd.display()),
                source,
            })?;
        if !out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            let hint = hugepages::diagnose(&text)
                .map(|h| format!("\nhint: {h}"))
                .unwrap_or_default();
            return Err(NodesError::DataPath(format!(
                "spdk_dd {} on {} ({}) failed ({}):\n{}{hint}",
                io.join(" "),
                export.nqn,
                export.host_nqn,
                out.status,
                tail.join("\n")
            )));
        }
        Ok(())
    }
}

async fn spdk_dd_read(
    dd: &Path,
    export: &Export,
    offset: u64,
    len: u64,
) -> Result<Vec<u8>, NodesError> {
    let run = DdRun::new()?;
    let bs = io_size(offset, len);
    let io = vec![
        format!("--ib=tkn{}", export.nsid),
        format!("--of={}", run.file.display()),
        format!("--bs={bs}"),
        format!("--skip={}", offset / bs),
        format!("--count={}", len / bs),
    ];
    run.run(dd, export, &io).await?;
    let data = std::fs::read(&run.file).map_err(|source| NodesError::Io {
        context: "reading spdk_dd's output".into(),
        source,
    })?;
    if data.len() as u64 != len {
        return Err(NodesError::DataPath(format!(
            "spdk_dd read {} bytes of {len} from {}",
            data.len(),
            export.nqn
        )));
    }
    Ok(data)
}

async fn spdk_dd_write(
    dd: &Path,
    export: &Export,
    offset: u64,
    data: &[u8],
) -> Result<(), NodesError> {
    let run = DdRun::new()?;
    std::fs::write(&run.file, data).map_err(|source| NodesError::Io {
        context: "writing spdk_dd's input".into(),
        source,
    })?;
    let len = data.len() as u64;
    let bs = io_size(offset, len);
    let io = vec![
        format!("--if={}", run.file.display()),
        format!("--ob=tkn{}", export.nsid),
        format!("--bs={bs}"),
        format!("--seek={}", offset / bs),
        format!("--count={}", len / bs),
    ];
    run.run(dd, export, &io).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_size_is_the_largest_power_of_two_dividing_both() {
        assert_eq!(io_size(0, 4 << 20), 1 << 20);
        assert_eq!(io_size(4096, 8192), 4096);
        assert_eq!(io_size(1 << 20, 12288), 4096);
        assert_eq!(io_size(512, 512), 512);
    }

    #[test]
    fn the_attach_config_presents_the_exports_host() {
        let c = attach_config(&Export {
            nqn: "nqn.x:y".into(),
            host_nqn: "nqn.h:1".into(),
            address: "127.0.0.1".into(),
            port: 4444,
            nsid: 1,
        });
        assert_eq!(
            c["subsystems"][0]["config"][0]["params"]["bdev_auto_examine"],
            false
        );
        let p = &c["subsystems"][0]["config"][1]["params"];
        assert_eq!(p["hostnqn"], "nqn.h:1");
        assert_eq!(p["trsvcid"], "4444");
        assert_eq!(p["subnqn"], "nqn.x:y");
    }
}
