//! `shorthorn controller`: the CSI Identity and Controller services.

use std::path::PathBuf;

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
}
