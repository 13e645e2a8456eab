//! `shorthorn ctl`: inspect a running controller through its admin API, or
//! take the guided tour (`ctl demo`).

use std::path::PathBuf;

use crate::ctl::client::AdminClient;
use crate::ctl::commands::{self, Query};
use crate::ctl::demo::{self, DemoSettings};
use crate::ctl::table::stdout_colour;

/// Arguments of `shorthorn ctl`.
#[derive(Debug, clap::Args)]
pub struct CtlArgs {
    /// The controller's admin API: `unix:///path/ctl.sock` or `tcp://host:port`.
    #[arg(
        long,
        global = true,
        env = "SHORTHORN_CTL_ENDPOINT",
        default_value = "unix:///var/tmp/shorthorn-local/ctl.sock"
    )]
    pub endpoint: String,
    /// File holding the admin API's bearer token (required on TCP); by
    /// default `admin.token` beside the Unix socket, if present.
    #[arg(long, global = true, env = "SHORTHORN_CTL_TOKEN_FILE")]
    pub token_file: Option<std::path::PathBuf>,
    /// Print the API's JSON instead of a table (for scripts).
    #[arg(long, global = true)]
    pub json: bool,
    /// What to show or do.
    #[command(subcommand)]
    pub command: CtlCommand,
}

/// `ctl` commands.
#[derive(Debug, clap::Subcommand)]
pub enum CtlCommand {
    /// Storage nodes: reachability, lvstore space, committed bytes, frontends, topology.
    Nodes,
    /// Volumes: size, replica health, where they are published, condition.
    Volumes,
    /// One volume in detail: its replicas (node, lvol, health) and publications.
    Volume {
        /// Volume id.
        id: String,
    },
    /// Snapshots.
    Snapshots,
    /// Raid rebuilds SPDK is running on publishing nodes.
    Rebuilds,
    /// Change a volume's replica count (numberOfReplicas), up or down, as
    /// CSI ControllerModifyVolume does: new replicas are rebuilt onto new
    /// nodes, dropped ones leave the raid and their lvols are deleted.
    SetReplicas {
        /// Volume id.
        id: String,
        /// Replicas wanted, 1 to 16.
        count: u32,
    },
    /// A guided tour over CSI: create, mount, write, snapshot, clone, verify, clean up.
    Demo(DemoArgs),
}

/// Arguments of `ctl demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// CSI endpoint serving Controller and Node (`unix:///path/csi.sock`).
    #[arg(long, default_value = "unix:///var/tmp/shorthorn-local/csi.sock")]
    pub csi_endpoint: String,
    /// Volume size in MiB.
    #[arg(long, default_value_t = 256)]
    pub size_mib: u64,
    /// Replicas per volume.
    #[arg(long, default_value_t = 3)]
    pub replicas: u32,
    /// Test data written, in MiB.
    #[arg(long, default_value_t = 8)]
    pub data_mib: usize,
    /// Verify by remounting the volume instead of through a snapshot and a
    /// clone (what the tour does when the controller offers no snapshots).
    #[arg(long)]
    pub skip_snapshots: bool,
}

/// Runs a `ctl` command.
pub async fn run(args: CtlArgs) -> anyhow::Result<()> {
    let query = match args.command {
        CtlCommand::Nodes => Query::Nodes,
        CtlCommand::Volumes => Query::Volumes,
        CtlCommand::Volume { id } => Query::Volume(id),
        CtlCommand::Snapshots => Query::Snapshots,
        CtlCommand::Rebuilds => Query::Rebuilds,
        CtlCommand::SetReplicas { id, count } => {
            let client =
                AdminClient::new(&args.endpoint)?.with_token_file(args.token_file.as_deref())?;
            let text =
                commands::set_replicas(&client, &id, count, args.json, stdout_colour()).await?;
            print!("{text}");
            return Ok(());
        }
        CtlCommand::Demo(demo) => {
            if args.json {
                anyhow::bail!("`ctl demo` has no JSON output; run it without --json");
            }
            return demo::run(demo_settings(demo)?).await;
        }
    };
    let client = AdminClient::new(&args.endpoint)?.with_token_file(args.token_file.as_deref())?;
    let text = commands::show(&client, &query, args.json, stdout_colour()).await?;
    print!("{text}");
    Ok(())
}

fn demo_settings(args: DemoArgs) -> anyhow::Result<DemoSettings> {
    let path = args
        .csi_endpoint
        .strip_prefix("unix://")
        .unwrap_or(&args.csi_endpoint);
    if !path.starts_with('/') {
        anyhow::bail!(
            "--csi-endpoint {:?} must be unix:///absolute/path/csi.sock",
            args.csi_endpoint
        );
    }
    if args.data_mib == 0 || (args.data_mib as u64) >= args.size_mib {
        anyhow::bail!("--data-mib must be at least 1 and smaller than --size-mib");
    }
    Ok(DemoSettings {
        csi_socket: PathBuf::from(path),
        size_bytes: args.size_mib << 20,
        replicas: args.replicas,
        data_bytes: args.data_mib << 20,
        snapshots: !args.skip_snapshots,
    })
}
