//! `shorthorn sim`: one simulated spdk_tgt.

use std::path::PathBuf;

use crate::signals::shutdown_signal;

/// Arguments of `shorthorn sim`.
#[derive(Debug, clap::Args)]
pub struct SimArgs {
    /// Path of the JSON-RPC Unix socket to serve (spdk_tgt's `-r`).
    #[arg(long, short = 'r', default_value = "/var/tmp/spdk.sock")]
    pub rpc_socket: PathBuf,
    /// Directory for the sim's own files (FUSE mount points for ublk disks, crash-cleanup records).
    #[arg(long)]
    pub data_dir: PathBuf,
}

/// Runs the sim until SIGINT, SIGTERM or `spdk_kill_instance`.
pub async fn run(args: SimArgs) -> anyhow::Result<()> {
    let config = spdk_sim::SimConfig {
        rpc_socket: args.rpc_socket,
        data_dir: args.data_dir,
    };
    spdk_sim::run(config, shutdown_signal()).await?;
    Ok(())
}
