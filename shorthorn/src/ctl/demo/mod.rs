//! `shorthorn ctl demo`: a guided tour of a running cluster over CSI.
//!
//! Creates a replicated volume, publishes, stages (ext4) and mounts it on
//! the local node, writes a checksummed file, snapshots the volume, clones
//! the snapshot, mounts the clone and verifies the file there; then removes
//! everything, also when a step fails or the tour is interrupted. When the
//! controller does not offer snapshots the snapshot and clone steps are
//! skipped (and say so), and the data is verified by remounting the volume.

mod cleanup;
mod data;
mod progress;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::anyhow;

use self::cleanup::{Cleanup, Undo};
use self::progress::{Progress, Step};
use super::table::human_bytes;
use crate::csi_steps::{Access, Csi, Offers};
use crate::signals::shutdown_signal;

/// Steps of the tour, cleanup included.
const STEPS: usize = 9;
/// Name of the test file on the volume.
const DATA_FILE: &str = "shorthorn-demo.bin";
/// How long one CSI call of the demo may take.
const CSI_CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(180);

/// What the demo creates.
#[derive(Debug, Clone)]
pub struct DemoSettings {
    /// CSI socket serving Controller and Node.
    pub csi_socket: PathBuf,
    /// Volume size in bytes.
    pub size_bytes: u64,
    /// Replicas per volume.
    pub replicas: u32,
    /// Bytes of test data written.
    pub data_bytes: usize,
    /// Go through a snapshot and a clone when the controller offers them.
    pub snapshots: bool,
}

/// Runs the tour; fails when a step fails or something could not be
/// cleaned up.
pub async fn run(settings: DemoSettings) -> anyhow::Result<()> {
    let mut csi = Csi::connect_one(&settings.csi_socket, CSI_CALL_TIMEOUT).await?;
    let offers = csi.offers().await?;
    let node = csi.node_id().await?;
    println!(
        "Shorthorn demo on {} (node {node}; the controller {} snapshots)",
        settings.csi_socket.display(),
        if offers.snapshots {
            "offers"
        } else {
            "does not offer"
        }
    );
    // Beside the CSI socket: inside the node's kubelet dir (local up's state
    // dir, or kubelet's plugin dir), where the node service admits paths.
    let scratch_parent = settings
        .csi_socket
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(std::env::temp_dir);
    let work = tempfile::Builder::new()
        .prefix("shorthorn-demo-")
        .tempdir_in(&scratch_parent)
        .map_err(|e| anyhow!("creating a scratch directory: {e}"))?;
    let progress = Progress::new(STEPS);
    let mut cleanup = Cleanup::default();
    let outcome = {
        let tour = Tour {
            csi: csi.clone(),
            cleanup: &mut cleanup,
            progress,
            node,
            work: work.path().to_path_buf(),
            settings: &settings,
            offers,
            stamp: stamp(),
        };
        tokio::select! {
            outcome = tour.run() => outcome,
            () = shutdown_signal() => Err(anyhow!("interrupted")),
        }
    };

    let step = progress.start(
        STEPS,
        "Clean up: unmount, unstage, unpublish and delete everything created",
    );
    let failures = cleanup.run(&mut csi).await;
    if failures.is_empty() {
        step.done("nothing left behind");
    } else {
        step.failed(&anyhow!("{}", failures.join("; ")));
        let kept = work.keep();
        eprintln!("scratch directory kept: {}", kept.display());
    }
    match (outcome, failures.is_empty()) {
        (Ok(summary), true) => {
            println!("{summary}");
            Ok(())
        }
        (Ok(_), false) => Err(anyhow!(
            "the tour worked but cleanup was incomplete: {}",
            failures.join("; ")
        )),
        (Err(e), _) => Err(e.context("the demo failed")),
    }
}

fn stamp() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("{secs}-{}", std::process::id())
}

/// Ends `step` with the outcome of its work.
fn finish<T>(
    step: Step,
    outcome: anyhow::Result<T>,
    detail: impl FnOnce(&T) -> String,
) -> anyhow::Result<T> {
    match &outcome {
        Ok(value) => step.done(&detail(value)),
        Err(e) => step.failed(e),
    }
    outcome
}

struct Tour<'a> {
    csi: Csi,
    cleanup: &'a mut Cleanup,
    progress: Progress,
    node: String,
    work: PathBuf,
    settings: &'a DemoSettings,
    offers: Offers,
    stamp: String,
}

/// Where a volume is staged and mounted.
struct Mounted {
    target: PathBuf,
}

impl Tour<'_> {
    async fn run(mut self) -> anyhow::Result<String> {
        let s = self.settings;
        let step = self.progress.start(
            1,
            format!(
                "Create a {}-replica {} volume",
                s.replicas,
                human_bytes(s.size_bytes)
            ),
        );
        let name = format!("shorthorn-demo-{}", self.stamp);
        let outcome = self.create(&name, None).await;
        let volume = finish(step, outcome, |id| format!("volume {id}"))?;

        let step = self.progress.start(
            2,
            format!("Publish it to node {} (ControllerPublishVolume)", self.node),
        );
        let outcome = self.controller_publish(&volume).await;
        let context = finish(step, outcome, |c| {
            let keys: Vec<&str> = c.keys().map(String::as_str).collect();
            format!("publish context: {}", keys.join(", "))
        })?;

        let step = self
            .progress
            .start(3, "Stage it as ext4 and mount it (NodeStage, NodePublish)");
        let outcome = self.mount(&volume, &context, "volume").await;
        let mounted = finish(step, outcome, |m| {
            format!("mounted at {}", m.target.display())
        })?;

        let step = self.progress.start(
            4,
            format!(
                "Write {} of test data and its SHA-256",
                human_bytes(s.data_bytes as u64)
            ),
        );
        let data = data::pattern(s.data_bytes, 0x5348_4f52_5448_4f52);
        let sum = data::sha256(&data);
        let outcome = data::write_durably(&mounted.target.join(DATA_FILE), &data);
        finish(step, outcome, |()| format!("sha256 {sum}"))?;

        let (check, source) = if self.offers.snapshots && s.snapshots {
            self.snapshot_and_clone(&volume, &name).await?
        } else {
            let reason = if self.offers.snapshots {
                "--skip-snapshots was given"
            } else {
                "the controller does not offer snapshots yet"
            };
            self.progress
                .start(5, "Snapshot the volume (CreateSnapshot)")
                .skipped(reason);
            self.progress
                .start(6, "Create a volume from the snapshot (a clone)")
                .skipped(reason);
            let step = self.progress.start(
                7,
                "Instead: unmount, unstage and unpublish the volume, then publish, stage and mount it again",
            );
            let outcome = self.remount(&volume).await;
            let remounted = finish(step, outcome, |m| {
                format!("mounted again at {}", m.target.display())
            })?;
            (remounted, "the remounted volume")
        };

        let step = self.progress.start(
            8,
            format!("Read the data back from {source} and verify its checksum"),
        );
        let outcome = verify(&check.target.join(DATA_FILE), &sum, data.len());
        finish(step, outcome, |()| format!("sha256 {sum} matches"))?;
        Ok(format!(
            "Verified: {} read back from {source} has sha256 {sum}, the checksum written.",
            human_bytes(data.len() as u64)
        ))
    }

    async fn snapshot_and_clone(
        &mut self,
        volume: &str,
        name: &str,
    ) -> anyhow::Result<(Mounted, &'static str)> {
        let step = self
            .progress
            .start(5, "Snapshot the volume (CreateSnapshot)");
        let outcome = self.snapshot(volume, &format!("{name}-snap")).await;
        let snapshot = finish(step, outcome, |id| format!("snapshot {id}"))?;

        let step = self
            .progress
            .start(6, "Create a volume from the snapshot (a clone)");
        let outcome = self.create(&format!("{name}-clone"), Some(&snapshot)).await;
        let clone = finish(step, outcome, |id| format!("volume {id}"))?;

        let step = self.progress.start(7, "Publish, stage and mount the clone");
        let outcome = async {
            let context = self.controller_publish(&clone).await?;
            self.mount(&clone, &context, "clone").await
        }
        .await;
        let mounted = finish(step, outcome, |m| {
            format!("mounted at {}", m.target.display())
        })?;
        Ok((mounted, "the clone"))
    }

    async fn create(&mut self, name: &str, snapshot: Option<&str>) -> anyhow::Result<String> {
        let s = self.settings;
        let id = self
            .csi
            .create_volume(name, s.size_bytes, s.replicas, snapshot)
            .await?;
        self.cleanup.push(Undo::DeleteVolume(id.clone()));
        Ok(id)
    }

    async fn snapshot(&mut self, volume: &str, name: &str) -> anyhow::Result<String> {
        let id = self.csi.create_snapshot_ready(volume, name).await?;
        self.cleanup.push(Undo::DeleteSnapshot(id.clone()));
        Ok(id)
    }

    async fn controller_publish(
        &mut self,
        volume: &str,
    ) -> anyhow::Result<BTreeMap<String, String>> {
        // Recorded first: a publish that fails half-way is still unpublished.
        self.cleanup.push(Undo::ControllerUnpublish {
            volume: volume.to_string(),
            node: self.node.clone(),
        });
        let context = self
            .csi
            .controller_publish(volume, &self.node, Access::Mount)
            .await?;
        Ok(context.into_iter().collect())
    }

    fn paths(&self, label: &str) -> (PathBuf, PathBuf) {
        let dir = self.work.join(label);
        (dir.join("staging"), dir.join("mount"))
    }

    async fn mount(
        &mut self,
        volume: &str,
        context: &BTreeMap<String, String>,
        label: &str,
    ) -> anyhow::Result<Mounted> {
        let (staging, target) = self.paths(label);
        std::fs::create_dir_all(&staging)
            .map_err(|e| anyhow!("creating {}: {e}", staging.display()))?;
        self.cleanup.push(Undo::NodeUnstage {
            volume: volume.to_string(),
            staging: staging.clone(),
        });
        let context: HashMap<String, String> = context.clone().into_iter().collect();
        self.csi
            .stage(volume, &context, &staging, Access::Mount)
            .await?;
        self.cleanup.push(Undo::NodeUnpublish {
            volume: volume.to_string(),
            target: target.clone(),
        });
        self.csi
            .node_publish(volume, &context, &staging, &target, Access::Mount)
            .await?;
        Ok(Mounted { target })
    }

    async fn remount(&mut self, volume: &str) -> anyhow::Result<Mounted> {
        let (staging, target) = self.paths("volume");
        let undos = [
            Undo::NodeUnpublish {
                volume: volume.to_string(),
                target,
            },
            Undo::NodeUnstage {
                volume: volume.to_string(),
                staging,
            },
            Undo::ControllerUnpublish {
                volume: volume.to_string(),
                node: self.node.clone(),
            },
        ];
        for undo in &undos {
            self.cleanup.undo_now(&mut self.csi, undo).await?;
        }
        let context = self.controller_publish(volume).await?;
        self.mount(volume, &context, "volume").await
    }
}

fn verify(path: &Path, want: &str, len: usize) -> anyhow::Result<()> {
    let (got, got_len) = data::file_sha256(path)?;
    if got_len != len {
        anyhow::bail!("read {got_len} bytes back, wrote {len}");
    }
    if got != want {
        anyhow::bail!("checksum mismatch: wrote sha256 {want}, read back sha256 {got}");
    }
    Ok(())
}
