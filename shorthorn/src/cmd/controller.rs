//! `shorthorn controller`: the CSI Identity and Controller services.

use std::path::PathBuf;

use anyhow::Context as _;
use shorthorn_controller::config::{ControllerConfig, StoreConfig};
use shorthorn_controller::server::{serve_with_admin, Endpoint};

use crate::signals::shutdown_signal;

/// Arguments of `shorthorn controller`.
#[derive(Debug, clap::Args)]
pub struct ControllerArgs {
    /// Controller configuration file (TOML): storage nodes or agent discovery, state store, placement limits.
    #[arg(long, env = "SHORTHORN_CONTROLLER_CONFIG")]
    pub config: PathBuf,
    /// Where to serve CSI: `unix:///path/csi.sock` or `tcp://host:port`.
    #[arg(long, env = "CSI_ENDPOINT", default_value = "unix:///csi/csi.sock")]
    pub csi_endpoint: String,
    /// Comma-separated etcd endpoints; overrides the store chosen in the config file.
    #[arg(long, env = "SHORTHORN_ETCD_ENDPOINTS", value_delimiter = ',')]
    pub etcd_endpoints: Vec<String>,
    /// Also serve the admin API (`shorthorn ctl`) here:
    /// `unix:///path/ctl.sock` or `tcp://127.0.0.1:9808`.
    #[arg(long, env = "SHORTHORN_ADMIN_ENDPOINT")]
    pub admin_endpoint: Option<String>,
    /// File holding the admin API's bearer token: needed for `POST`
    /// (revert), and for every request on TCP (required there).
    #[arg(long, env = "SHORTHORN_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<std::path::PathBuf>,
}

/// Serves the controller until SIGINT or SIGTERM.
pub async fn run(args: ControllerArgs) -> anyhow::Result<()> {
    let mut config = ControllerConfig::load(&args.config)
        .with_context(|| format!("loading {}", args.config.display()))?;
    if !args.etcd_endpoints.is_empty() {
        let prefix = match &config.store {
            StoreConfig::Etcd { prefix, .. } => prefix.clone(),
            StoreConfig::Embedded(_) => "/shorthorn".to_string(),
        };
        config.store = StoreConfig::Etcd {
            endpoints: args.etcd_endpoints,
            prefix,
        };
    }
    let endpoint: Endpoint = args.csi_endpoint.parse()?;
    let admin: Option<Endpoint> = args.admin_endpoint.map(|a| a.parse()).transpose()?;
    serve_with_admin(
        config,
        endpoint,
        admin,
        args.admin_token_file.as_deref(),
        shutdown_signal(),
    )
    .await?;
    Ok(())
}
