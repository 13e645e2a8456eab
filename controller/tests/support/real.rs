//! Helpers of the tests that run on real spdk_tgt (`SHORTHORN_SPDK_TGT`):
//! the skip message, the volume's NVMe/TCP export from its publish context,
//! bytes in and out of it with spdk_dd as the host, a writer that keeps
//! writing through it, and replica snapshot bytes read on their nodes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use shorthorn_controller::naming;
use testkit::data_path::Export;

use super::{pattern, Harness};

/// Whether the test must skip (no real spdk_tgt named); prints why.
/// `what` says what the test would have run against real SPDK.
pub fn skip(what: &str) -> bool {
    if std::env::var_os(testkit::nodes::SPDK_TGT_ENV).is_none() {
        eprintln!(
            "SKIPPED: set {}=/path/to/spdk_tgt (and SHORTHORN_SPDK_DD) to run {what} against real SPDK",
            testkit::nodes::SPDK_TGT_ENV
        );
        return true;
    }
    false
}

/// The volume's kernel-facing export, as the publish context names it.
pub fn export_of(ctx: &HashMap<String, String>) -> Export {
    use agent_api::attach::{KEY_NVME_HOSTNQN, KEY_NVME_SUBNQN, KEY_NVME_TRADDR, KEY_NVME_TRSVCID};
    let get = |k: &str| {
        ctx.get(k)
            .cloned()
            .unwrap_or_else(|| panic!("publish context has no {k}: {ctx:?}"))
    };
    Export {
        nqn: get(KEY_NVME_SUBNQN),
        host_nqn: get(KEY_NVME_HOSTNQN),
        address: get(KEY_NVME_TRADDR),
        port: get(KEY_NVME_TRSVCID).parse().expect("port"),
        nsid: 1,
    }
}

/// Writes `data` at `offset` of the volume published with `ctx` (on node-0),
/// through its export, as the node's kernel would.
pub async fn write_volume(h: &Harness, ctx: &HashMap<String, String>, offset: u64, data: &[u8]) {
    h.cluster
        .data_path()
        .write_export(h.cluster.node(0), &export_of(ctx), offset, data)
        .await
        .expect("write through the volume");
}

/// Reads `len` bytes at `offset` of the volume published with `ctx`.
pub async fn read_volume(
    h: &Harness,
    ctx: &HashMap<String, String>,
    offset: u64,
    len: usize,
) -> Vec<u8> {
    h.cluster
        .data_path()
        .read_export(h.cluster.node(0), &export_of(ctx), offset, len as u64)
        .await
        .expect("read through the volume")
}

/// The bytes `[offset, offset + len)` of lvol `name` (e.g. a replica or a
/// snapshot lvol name) on node `i`, read on that node directly.
pub async fn lvol_bytes(h: &Harness, i: usize, name: &str, offset: u64, len: usize) -> Vec<u8> {
    let alias = format!("{}/{name}", h.config().nodes[i].lvstore);
    h.cluster
        .data_path()
        .read(h.cluster.node(i), &alias, offset, len as u64)
        .await
        .unwrap_or_else(|e| panic!("reading {alias} on node {i}: {e}"))
}

/// The bytes `[0, len)` of the replica snapshot of `snapshot_id` on node `i`.
pub async fn snapshot_bytes(h: &Harness, i: usize, snapshot_id: &str, len: usize) -> Vec<u8> {
    lvol_bytes(h, i, &naming::snapshot_lvol(snapshot_id), 0, len).await
}

/// Where the writer writes: 4 KiB blocks from offset 4 KiB, an odd number of
/// them, so spdk_dd issues one 4 KiB write after another.
pub const WRITER_OFFSET: u64 = 4096;
/// Blocks of one writer round.
pub const WRITER_BLOCKS: usize = 127;

/// A stream of writes through a volume's export, as an application
/// writes: round after round (one spdk_dd run of [`WRITER_BLOCKS`] 4 KiB
/// writes each, each round its own pattern) until `stop` is set. Run it
/// beside what the test does meanwhile (`tokio::join!`). Returns the
/// rounds completed and the bytes `[WRITER_OFFSET, +WRITER_BLOCKS * 4 KiB)`
/// the volume must hold afterwards; every write must succeed.
pub async fn write_rounds(
    h: &Harness,
    ctx: &HashMap<String, String>,
    stop: &AtomicBool,
    rounds: &AtomicU64,
) -> (u64, Vec<u8>) {
    let export = export_of(ctx);
    let path = h.cluster.data_path();
    let mut r = 0;
    while r == 0 || !stop.load(Ordering::Relaxed) {
        path.write_export(h.cluster.node(0), &export, WRITER_OFFSET, &writer_round(r))
            .await
            .unwrap_or_else(|e| panic!("writer round {r} failed: {e}"));
        r += 1;
        rounds.store(r, Ordering::Relaxed);
    }
    (r, writer_round(r - 1))
}

/// The content round `r` of [`write_rounds`] writes.
pub fn writer_round(r: u64) -> Vec<u8> {
    pattern(WRITER_BLOCKS * 4096, (r % 250) as u8 + 1)
}

/// Write operations the raid of `volume` on node 0 has completed.
pub async fn raid_write_ops(h: &Harness, volume: &str) -> u64 {
    let v = h
        .spdk(0)
        .call_raw(
            "bdev_get_iostat",
            Some(serde_json::json!({ "name": naming::raid_bdev(volume) })),
        )
        .await
        .expect("bdev_get_iostat of the raid");
    v["bdevs"][0]["num_write_ops"]
        .as_u64()
        .unwrap_or_else(|| panic!("no num_write_ops in {v}"))
}

/// Waits (at most 120 s) until writes flow through the raid of `volume` on
/// node 0: its write count grows between two looks 20 ms apart.
pub async fn wait_writes_flowing(h: &Harness, volume: &str) {
    let started = std::time::Instant::now();
    let mut seen = raid_write_ops(h, volume).await;
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let now = raid_write_ops(h, volume).await;
        if now > seen {
            return;
        }
        seen = now;
        assert!(
            started.elapsed() < std::time::Duration::from_secs(120),
            "no write reached the raid of {volume} within 120 s"
        );
    }
}

/// Sends `sig` (e.g. "KILL") to process `pid`.
pub fn signal(pid: u32, sig: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{sig} {pid}");
}
