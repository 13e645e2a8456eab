//! `shorthorn bench`: latency, SPDK calls, quiesce window, scale and
//! throughput of a local stack, printed as one table.

use std::path::PathBuf;

use crate::bench::{self, BenchSettings};

/// Arguments of `shorthorn bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Storage nodes to start (sim, or real spdk_tgt with SHORTHORN_SPDK_TGT); at least 3.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Runs behind each latency figure (p50 / p99).
    #[arg(long, default_value_t = 10)]
    pub runs: usize,
    /// Volumes created in the scale section.
    #[arg(long, default_value_t = 1000)]
    pub scale_volumes: usize,
    /// Print JSON (with SPDK calls broken down by method) instead of the table.
    #[arg(long)]
    pub json: bool,
    /// State directory; an earlier bench's files in it are removed first.
    #[arg(long, default_value = "/var/tmp/shorthorn-bench")]
    pub state_dir: PathBuf,
    /// Skip the fio throughput section.
    #[arg(long)]
    pub skip_fio: bool,
    /// With real storage nodes (SHORTHORN_SPDK_TGT), skip the latency run on
    /// sim nodes that the sim-against-real table compares with.
    #[arg(long)]
    pub no_sim_comparison: bool,
    /// Seconds each fio job runs.
    #[arg(long, default_value_t = 5)]
    pub fio_seconds: u64,
}

/// Runs the bench and prints its report.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let state_dir = if args.state_dir.is_absolute() {
        args.state_dir
    } else {
        std::env::current_dir()?.join(args.state_dir)
    };
    let report = bench::run(&BenchSettings {
        state_dir,
        nodes: args.nodes,
        runs: args.runs,
        scale_volumes: args.scale_volumes,
        fio_seconds: args.fio_seconds.max(1),
        skip_fio: args.skip_fio,
        no_sim_comparison: args.no_sim_comparison,
    })
    .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report.to_json())?);
    } else {
        print!("{}", report.render_text());
    }
    Ok(())
}
