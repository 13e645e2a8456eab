//! Sections 1 to 3: CSI latency and SPDK calls per operation on a
//! 3-replica volume, and the snapshot quiesce window seen by a writer.
//!
//! Each run: CreateVolume, ControllerPublishVolume, NodeStageVolume (ext4),
//! a writer starts, CreateSnapshot, the writer stops, CreateVolume from the
//! snapshot, DeleteVolume of that clone, DeleteSnapshot,
//! NodeUnstageVolume, ControllerUnpublishVolume, DeleteVolume.

use std::future::Future;
use std::time::Instant;

use shorthorn_controller::fence::FenceKind;

use super::figures::{OpFigures, QuiesceFigures, StageFigures};
use super::rpc::{self, CallSnapshot};
use super::stack::Stack;
use super::writer::Writer;
use crate::csi_steps::{Access, Csi, Offers};

/// Size of the latency volumes.
const VOLUME_BYTES: u64 = 64 << 20;
/// Writes completed before the measured window opens.
const WARM_UP_WRITES: u64 = 20;

/// Row indices in [`LatencyFigures::ops`].
mod row {
    pub const CREATE: usize = 0;
    pub const PUBLISH: usize = 1;
    pub const STAGE: usize = 2;
    pub const SNAPSHOT: usize = 3;
    pub const FROM_SNAPSHOT: usize = 4;
    pub const DELETE_SNAPSHOT: usize = 5;
    pub const UNSTAGE: usize = 6;
    pub const UNPUBLISH: usize = 7;
    pub const DELETE: usize = 8;
}

/// Why the node-side rows are not run on a stack without a kernel initiator.
pub const NO_KERNEL_ATTACH: &str = "no kernel initiator";

/// Everything sections 1 to 3 measured.
#[derive(Debug, Clone)]
pub struct LatencyFigures {
    /// One row per operation, in the order of a volume's life.
    pub ops: Vec<OpFigures>,
    /// NodeStageVolume split.
    pub stage: StageFigures,
    /// Snapshot quiesce window (`None` when snapshots are not offered).
    pub quiesce: Option<QuiesceFigures>,
}

impl LatencyFigures {
    fn new(offers: Offers, stack: &Stack) -> Self {
        let publish_min = match stack.frontend {
            shorthorn_node::frontend::FrontendKind::Ublk => rpc::MIN_PUBLISH_UBLK,
            shorthorn_node::frontend::FrontendKind::NvmeTcp => rpc::MIN_PUBLISH_NVME_TCP,
        };
        let s = offers.snapshots;
        let node_side = (!stack.kernel_attach).then_some(NO_KERNEL_ATTACH);
        Self {
            ops: vec![
                OpFigures::new("CreateVolume", true, Some(rpc::MIN_CREATE_VOLUME)),
                OpFigures::new("ControllerPublishVolume", true, Some(publish_min)),
                OpFigures::new("NodeStageVolume (ext4)", true, Some(rpc::MIN_NODE_STAGE))
                    .skip(node_side),
                OpFigures::new("CreateSnapshot", s, Some(rpc::MIN_CREATE_SNAPSHOT)),
                OpFigures::new(
                    "CreateVolume from snapshot",
                    s,
                    Some(rpc::MIN_CREATE_FROM_SNAPSHOT),
                ),
                OpFigures::new("DeleteSnapshot", s, Some(rpc::MIN_DELETE_SNAPSHOT)),
                OpFigures::new("NodeUnstageVolume", true, Some(rpc::MIN_NODE_STAGE))
                    .skip(node_side),
                OpFigures::new("ControllerUnpublishVolume", true, Some(rpc::MIN_UNPUBLISH)),
                OpFigures::new("DeleteVolume", true, Some(rpc::MIN_DELETE_VOLUME)),
            ],
            stage: StageFigures::default(),
            quiesce: s.then(QuiesceFigures::default),
        }
    }

    /// Times `call` and counts the SPDK calls it caused into row `row`.
    async fn measure<T>(
        &mut self,
        stack: &Stack,
        row: usize,
        call: impl Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<T> {
        let before = CallSnapshot::take(&stack.ctx);
        let started = Instant::now();
        let out = call.await?;
        let elapsed = started.elapsed();
        let delta = CallSnapshot::take(&stack.ctx).since(&before);
        if let Some(op) = self.ops.get_mut(row) {
            op.latency.push_ms(elapsed);
            op.calls.record(&delta);
        }
        Ok(out)
    }
}

/// Runs the cycle `runs` times.
pub async fn run(
    stack: &Stack,
    csi: &mut Csi,
    offers: Offers,
    runs: usize,
) -> anyhow::Result<LatencyFigures> {
    let mut figures = LatencyFigures::new(offers, stack);
    let node = stack.node_id();
    for i in 0..runs {
        let staging = stack.kubelet_dir().join(format!("lat-{i}-staging"));
        std::fs::create_dir_all(&staging)?;
        let name = format!("bench-lat-{i}");
        let mut c = csi.clone();
        let volume = figures
            .measure(
                stack,
                row::CREATE,
                c.create_volume(&name, VOLUME_BYTES, 3, None),
            )
            .await?;
        let context = figures
            .measure(
                stack,
                row::PUBLISH,
                c.controller_publish(&volume, &node, Access::Mount),
            )
            .await?;
        if stack.kernel_attach {
            stack.splits.drain();
            figures
                .measure(
                    stack,
                    row::STAGE,
                    c.stage(&volume, &context, &staging, Access::Mount),
                )
                .await?;
            if let Some(split) = stack.splits.drain().last() {
                figures.stage.attach.push(split.attach_ms as f64);
                figures.stage.format.push(split.format_ms as f64);
                figures.stage.mount.push(split.mount_ms as f64);
            }
        }
        if offers.snapshots {
            let staged = stack.kernel_attach.then_some(staging.as_path());
            snapshot_cycle(stack, &mut c, &mut figures, &volume, staged, i).await?;
        }
        if stack.kernel_attach {
            figures
                .measure(stack, row::UNSTAGE, c.unstage(&volume, &staging))
                .await?;
        }
        figures
            .measure(
                stack,
                row::UNPUBLISH,
                c.controller_unpublish(&volume, &node),
            )
            .await?;
        figures
            .measure(stack, row::DELETE, c.delete_volume(&volume))
            .await?;
        let _ = std::fs::remove_dir(&staging);
    }
    if let Some(q) = figures.quiesce.as_mut() {
        for kind in [FenceKind::Ana, FenceKind::NodeQuiesce] {
            let holds = stack.ctx.fencing.stats.recent(kind);
            if !holds.is_empty() {
                q.fence_kinds.push(kind.as_str());
            }
            for h in holds {
                q.fence_hold.push_ms(h);
            }
        }
    }
    Ok(figures)
}

/// CreateSnapshot (under a writer when the volume is `staged` there), a
/// clone of it, and their removal.
async fn snapshot_cycle(
    stack: &Stack,
    c: &mut Csi,
    figures: &mut LatencyFigures,
    volume: &str,
    staged: Option<&std::path::Path>,
    i: usize,
) -> anyhow::Result<()> {
    let writer = match staged {
        Some(staging) => {
            let w = Writer::start(&staging.join("bench-writer.dat"))?;
            w.warm_up(WARM_UP_WRITES).await?;
            Some(w)
        }
        None => None,
    };
    let snap = figures
        .measure(
            stack,
            row::SNAPSHOT,
            c.create_snapshot(volume, &format!("bench-snap-{i}")),
        )
        .await;
    let report = match writer {
        Some(w) => Some(w.finish().await?),
        None => None,
    };
    let (snapshot, _ready) = snap?;
    if let (Some(q), Some(report)) = (figures.quiesce.as_mut(), report) {
        q.writer_gap.push_ms(report.longest_gap);
        q.writes.push(report.writes as f64);
    }
    let clone = figures
        .measure(
            stack,
            row::FROM_SNAPSHOT,
            c.create_volume(
                &format!("bench-clone-{i}"),
                VOLUME_BYTES,
                3,
                Some(&snapshot),
            ),
        )
        .await?;
    c.delete_volume(&clone).await?;
    figures
        .measure(stack, row::DELETE_SNAPSHOT, c.delete_snapshot(&snapshot))
        .await?;
    Ok(())
}
