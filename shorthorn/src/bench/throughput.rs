//! Section 5: `fio` against the staged raw block device of a 3-replica
//! volume and of a 1-replica volume, 4 KiB random writes and 1 MiB
//! sequential writes.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, Context as _};

use super::stack::Stack;
use crate::csi_steps::{Access, Csi};

/// Size of the throughput volumes.
const VOLUME_BYTES: u64 = 256 << 20;

/// One fio job shape.
#[derive(Debug, Clone, Copy)]
pub struct Pattern {
    /// Shown name.
    pub name: &'static str,
    /// fio `--rw`.
    rw: &'static str,
    /// fio `--bs`.
    bs: &'static str,
    /// fio `--iodepth`.
    iodepth: u32,
}

/// The two patterns measured.
pub const PATTERNS: [Pattern; 2] = [
    Pattern {
        name: "4k random write (qd 16)",
        rw: "randwrite",
        bs: "4k",
        iodepth: 16,
    },
    Pattern {
        name: "1M sequential write (qd 4)",
        rw: "write",
        bs: "1M",
        iodepth: 4,
    },
];

/// One fio result.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rate {
    /// MB/s (10^6 bytes per second).
    pub mb_per_s: f64,
    /// I/O operations per second.
    pub iops: f64,
}

/// One pattern on both volumes.
#[derive(Debug, Clone)]
pub struct ThroughputRow {
    /// The pattern's shown name.
    pub pattern: &'static str,
    /// On the 3-replica volume.
    pub three: Rate,
    /// On the 1-replica volume.
    pub one: Rate,
}

/// Section 5's outcome.
#[derive(Debug, Clone)]
pub enum Throughput {
    /// Not run, and why.
    Skipped(String),
    /// One row per pattern.
    Measured {
        /// Seconds each fio job ran.
        seconds: u64,
        /// The rows.
        rows: Vec<ThroughputRow>,
    },
}

/// Whether `fio` can be run.
fn fio_available() -> bool {
    std::process::Command::new("fio")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs the section, or says why not.
pub async fn run(
    stack: &Stack,
    csi: &mut Csi,
    skip: bool,
    seconds: u64,
) -> anyhow::Result<Throughput> {
    if skip {
        return Ok(Throughput::Skipped("--skip-fio".into()));
    }
    if !fio_available() {
        return Ok(Throughput::Skipped(
            "fio not found (Debian package `fio`)".into(),
        ));
    }
    let three = on_volume(stack, csi, 3, seconds).await?;
    let one = on_volume(stack, csi, 1, seconds).await?;
    let rows = PATTERNS
        .iter()
        .zip(three.iter().zip(one.iter()))
        .map(|(p, (&three, &one))| ThroughputRow {
            pattern: p.name,
            three,
            one,
        })
        .collect();
    Ok(Throughput::Measured { seconds, rows })
}

/// Creates, publishes, stages (block) and node-publishes a volume of
/// `replicas`, runs every pattern on it, and removes it again.
async fn on_volume(
    stack: &Stack,
    csi: &mut Csi,
    replicas: u32,
    seconds: u64,
) -> anyhow::Result<Vec<Rate>> {
    let node = stack.node_id();
    let dir = stack.kubelet_dir().join(format!("fio-{replicas}"));
    let staging = dir.join("staging");
    let target = dir.join("target").join("device");
    std::fs::create_dir_all(&staging)?;
    std::fs::create_dir_all(dir.join("target"))?;
    let volume = csi
        .create_volume(
            &format!("bench-fio-{replicas}"),
            VOLUME_BYTES,
            replicas,
            None,
        )
        .await?;
    let context = csi
        .controller_publish(&volume, &node, Access::Block)
        .await?;
    csi.stage(&volume, &context, &staging, Access::Block)
        .await?;
    csi.node_publish(&volume, &context, &staging, &target, Access::Block)
        .await?;
    let mut rates = Vec::new();
    let mut failure = None;
    for p in PATTERNS {
        match fio(&target, p, seconds).await {
            Ok(r) => rates.push(r),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    csi.node_unpublish(&volume, &target).await?;
    csi.unstage(&volume, &staging).await?;
    csi.controller_unpublish(&volume, &node).await?;
    csi.delete_volume(&volume).await?;
    let _ = std::fs::remove_dir_all(&dir);
    match failure {
        Some(e) => Err(e),
        None => Ok(rates),
    }
}

/// Runs one fio job against `device` and reads its JSON output.
async fn fio(device: &Path, p: Pattern, seconds: u64) -> anyhow::Result<Rate> {
    let output = tokio::process::Command::new("fio")
        .arg("--name=shorthorn-bench")
        .arg(format!("--filename={}", device.display()))
        .arg("--direct=1")
        .arg("--ioengine=libaio")
        .arg(format!("--iodepth={}", p.iodepth))
        .arg(format!("--rw={}", p.rw))
        .arg(format!("--bs={}", p.bs))
        .arg(format!("--runtime={seconds}"))
        .arg("--time_based")
        .arg("--output-format=json")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(seconds + 120), output)
        .await
        .map_err(|_| anyhow!("fio did not finish"))?
        .context("running fio")?;
    if !output.status.success() {
        anyhow::bail!(
            "fio failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    parse_fio(&output.stdout)
}

/// Reads write bandwidth and IOPS from fio's JSON output.
fn parse_fio(stdout: &[u8]) -> anyhow::Result<Rate> {
    // fio may print notes before the JSON document.
    let start = stdout
        .iter()
        .position(|&b| b == b'{')
        .ok_or_else(|| anyhow!("fio printed no JSON"))?;
    let doc: serde_json::Value =
        serde_json::from_slice(&stdout[start..]).context("parsing fio's JSON")?;
    let write = &doc["jobs"][0]["write"];
    let bw = write["bw_bytes"]
        .as_f64()
        .ok_or_else(|| anyhow!("fio's JSON has no jobs[0].write.bw_bytes"))?;
    let iops = write["iops"]
        .as_f64()
        .ok_or_else(|| anyhow!("fio's JSON has no jobs[0].write.iops"))?;
    Ok(Rate {
        mb_per_s: bw / 1e6,
        iops,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fio_json_after_notes() {
        let out = br#"note: both iodepth >= 1 and synchronous I/O engine are selected
{"jobs":[{"write":{"bw_bytes":2000000,"iops":488.5}}]}"#;
        let r = parse_fio(out).unwrap();
        assert!((r.mb_per_s - 2.0).abs() < 1e-9);
        assert!((r.iops - 488.5).abs() < 1e-9);
    }
}
