//! `shorthorn sim`: one simulated spdk_tgt.

use std::path::PathBuf;

/// Arguments of `shorthorn sim`.
#[derive(Debug, clap::Args)]
pub struct SimArgs {
    /// Path of the JSON-RPC Unix socket to serve (spdk_tgt's `-r`).
    #[arg(long, default_value = "/var/tmp/spdk.sock")]
    pub rpc_socket: PathBuf,
    /// Directory for the sim's own files (FUSE mount points for ublk, scratch state).
    #[arg(long)]
    pub data_dir: PathBuf,
}

/// Runs the sim until SIGINT or SIGTERM.
pub async fn run(args: SimArgs) -> anyhow::Result<()> {
    anyhow::bail!(
        "the spdk-sim server is not wired in yet; socket {} and data dir {} were left untouched",
        args.rpc_socket.display(),
        args.data_dir.display()
    )
}
