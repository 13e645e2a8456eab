//! `shorthorn bench`: brings up a local stack (sim or real spdk_tgt storage
//! nodes, the controller, node-1's agent and node service) and measures it.
//!
//! - [`latency`]: CSI latency and SPDK calls per operation ([`rpc`]), the
//!   stage split ([`capture`]) and the snapshot quiesce window ([`writer`]).
//! - [`scale`]: many volumes, list pagination, RSS, store size, clean-up.
//! - [`throughput`]: fio through the stack, 3 replicas against 1.
//! - [`report`]: the table ([`table`]) or JSON; [`stack`]: the stack.

pub mod capture;
pub mod figures;
pub mod latency;
pub mod report;
pub mod rpc;
pub mod scale;
pub mod stack;
pub mod stats;
pub mod table;
pub mod throughput;
pub mod writer;

use std::path::PathBuf;

use crate::csi_steps::Csi;
use latency::LatencyFigures;
use report::{Comparison, Report, Setup};
use stack::{Attach, Stack};

use crate::local::storage_nodes::Engine;

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchSettings {
    /// State directory (wiped of an earlier bench's files at start).
    pub state_dir: PathBuf,
    /// Storage nodes (at least 3: the volumes have 3 replicas).
    pub nodes: usize,
    /// Runs per latency figure.
    pub runs: usize,
    /// Volumes of the scale section.
    pub scale_volumes: usize,
    /// Seconds per fio job.
    pub fio_seconds: u64,
    /// Do not run fio.
    pub skip_fio: bool,
    /// With real storage nodes, do not also run the latency section on sim
    /// nodes for the side-by-side table.
    pub no_sim_comparison: bool,
}

/// How long one CSI call of the bench may take.
const CSI_CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// Each storage node's (sparse) disk: room for every scale volume written
/// full, plus 2 GiB for the rest.
fn disk_bytes(settings: &BenchSettings) -> u64 {
    (settings.scale_volumes as u64).saturating_mul(scale::VOLUME_BYTES) + (2 << 30)
}

/// Runs every section and returns the report; the stack is torn down
/// whatever happens.
pub async fn run(settings: &BenchSettings) -> anyhow::Result<Report> {
    if settings.nodes < 3 {
        anyhow::bail!("--nodes must be at least 3: the bench's volumes have 3 replicas");
    }
    if settings.runs == 0 {
        anyhow::bail!("--runs must be at least 1");
    }
    let engine = Engine::from_env();
    let stack = Stack::start(
        &settings.state_dir,
        settings.nodes,
        disk_bytes(settings),
        engine.clone(),
        Attach::Auto,
    )
    .await?;
    let outcome = tokio::select! {
        outcome = measure(&stack, settings) => outcome,
        () = crate::signals::shutdown_signal() => Err(anyhow::anyhow!("interrupted")),
    };
    stack.stop().await;
    let mut report = outcome?;
    if engine != Engine::Sim && !settings.no_sim_comparison {
        let sim = tokio::select! {
            sim = sim_latency(settings) => sim?,
            () = crate::signals::shutdown_signal() => anyhow::bail!("interrupted"),
        };
        report.comparison = Some(Comparison {
            sim,
            real_kernel_attach: report.kernel_attach,
        });
    }
    Ok(report)
}

/// The latency section alone on sim nodes, controller-side only (publishing
/// over NVMe/TCP, ANA-fenced snapshots): the operations real nodes run on a
/// machine without a kernel initiator, for the side-by-side table.
async fn sim_latency(settings: &BenchSettings) -> anyhow::Result<LatencyFigures> {
    let dir = settings.state_dir.join("sim-comparison");
    let stack = Stack::start(
        &dir,
        settings.nodes,
        2 << 30,
        Engine::Sim,
        Attach::ControllerOnly,
    )
    .await?;
    let outcome = async {
        let mut csi = Csi::connect(
            &stack.controller_socket,
            &stack.node_socket,
            CSI_CALL_TIMEOUT,
        )
        .await?;
        let offers = csi.offers().await?;
        latency::run(&stack, &mut csi, offers, settings.runs).await
    }
    .await;
    stack.stop().await;
    tracing::info!("sim comparison done");
    outcome
}

async fn measure(stack: &Stack, settings: &BenchSettings) -> anyhow::Result<Report> {
    let mut csi = Csi::connect(
        &stack.controller_socket,
        &stack.node_socket,
        CSI_CALL_TIMEOUT,
    )
    .await?;
    let offers = csi.offers().await?;
    tracing::info!(?offers, "controller capabilities");
    let latency = latency::run(stack, &mut csi, offers, settings.runs).await?;
    tracing::info!("latency section done");
    let scale = scale::run(
        stack,
        &mut csi,
        offers,
        settings.scale_volumes,
        settings.runs,
    )
    .await?;
    tracing::info!("scale section done");
    let throughput =
        throughput::run(stack, &mut csi, settings.skip_fio, settings.fio_seconds).await?;
    let engine = match &stack.engine {
        Engine::Sim => "sim".to_string(),
        Engine::SpdkTgt(p) => format!("spdk_tgt {}", p.display()),
    };
    Ok(Report {
        setup: Setup {
            nodes: settings.nodes,
            engine,
            frontend: format!("{:?}", stack.frontend),
            runs: settings.runs,
            build: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        },
        kernel_attach: stack.kernel_attach,
        latency,
        scale,
        throughput,
        comparison: None,
    })
}
