//! Command-line surface: one module per subcommand.

mod bench;
mod controller;
mod ctl;
mod local;
mod node;
mod sim;

use clap::{Parser, Subcommand};

use crate::logging::LogFormat;

/// Shorthorn: replicated block volumes for Kubernetes on stock SPDK.
#[derive(Debug, Parser)]
#[command(name = "shorthorn", version, about, long_about = None)]
pub struct Cli {
    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The roles the binary can take.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the CSI Identity and Controller services.
    Controller(controller::ControllerArgs),
    /// Run the CSI Node service and the node agent on this node.
    Node(Box<node::NodeArgs>),
    /// Run one simulated spdk_tgt (JSON-RPC on a Unix socket, real data on disk).
    Sim(sim::SimArgs),
    /// Run the whole driver on this machine: simulated nodes, store, controller and node service.
    Local(local::LocalArgs),
    /// Inspect and operate a running Shorthorn controller.
    Ctl(ctl::CtlArgs),
    /// Measure a local stack: CSI latency, SPDK calls per operation, snapshot quiesce window,
    /// scale and throughput.
    Bench(bench::BenchArgs),
}

/// Runs the chosen subcommand.
pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Sim(args) => sim::run(args).await,
        Command::Controller(args) => controller::run(args).await,
        Command::Node(args) => node::run(*args).await,
        Command::Local(args) => local::run(args).await,
        Command::Ctl(args) => ctl::run(args).await,
        Command::Bench(args) => bench::run(args).await,
    }
}
