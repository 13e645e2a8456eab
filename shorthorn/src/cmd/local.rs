//! `shorthorn local`: the whole driver on one machine.

use std::path::PathBuf;

use crate::local::config::LocalStore;
use crate::local::layout::Layout;
use crate::local::up::UpSettings;

/// Arguments of `shorthorn local`.
#[derive(Debug, clap::Args)]
pub struct LocalArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: LocalAction,
}

/// `local` actions.
#[derive(Debug, clap::Subcommand)]
pub enum LocalAction {
    /// Start storage nodes (sim, or real spdk_tgt with SHORTHORN_SPDK_TGT), the store, the
    /// controller and the node service; serve CSI on one socket until Ctrl-C.
    Up {
        /// State directory: sockets, backing files, store, logs.
        #[arg(long, default_value = "/var/tmp/shorthorn-local")]
        state_dir: PathBuf,
        /// Number of storage nodes.
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// Size of each storage node's backing file in MiB (sparse); one value for every
        /// node, or a comma-separated value per node.
        #[arg(long, value_delimiter = ',', default_value = "4096")]
        disk_mib: Vec<u64>,
        /// Use etcd at this URL (comma-separated for several) instead of the embedded store.
        #[arg(long, value_delimiter = ',')]
        etcd: Vec<String>,
    },
    /// Stop a running local cluster and remove any mount, loop device or process it left.
    Down {
        /// State directory given to `local up`.
        #[arg(long, default_value = "/var/tmp/shorthorn-local")]
        state_dir: PathBuf,
    },
}

/// Runs a `local` action.
pub async fn run(args: LocalArgs) -> anyhow::Result<()> {
    match args.action {
        LocalAction::Up {
            state_dir,
            nodes,
            disk_mib,
            etcd,
        } => {
            if nodes == 0 {
                anyhow::bail!("--nodes must be at least 1");
            }
            let disk_bytes: Vec<u64> = match disk_mib.as_slice() {
                [one] => vec![one << 20; nodes],
                many if many.len() == nodes => many.iter().map(|m| m << 20).collect(),
                many => anyhow::bail!(
                    "--disk-mib has {} values for {nodes} nodes: give one value, or one per node",
                    many.len()
                ),
            };
            if disk_bytes.iter().any(|&b| b < 16 << 20) {
                anyhow::bail!("--disk-mib: each node needs at least 16 MiB");
            }
            let store = if etcd.is_empty() {
                LocalStore::Embedded
            } else {
                LocalStore::Etcd(etcd)
            };
            crate::local::up::up(UpSettings {
                layout: Layout::new(absolute(state_dir)?),
                nodes,
                disk_bytes,
                store,
            })
            .await
        }
        LocalAction::Down { state_dir } => {
            crate::local::down::down(&Layout::new(absolute(state_dir)?)).await
        }
    }
}

fn absolute(p: PathBuf) -> anyhow::Result<PathBuf> {
    Ok(if p.is_absolute() {
        p
    } else {
        std::env::current_dir()?.join(p)
    })
}
