//! Target-wide methods: version and method listing.

use serde::{Deserialize, Serialize};

use crate::client::SpdkClient;
use crate::error::Result;

/// Result of `spdk_get_version`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SpdkVersion {
    /// Full version string, e.g. `"SPDK v25.09"`.
    pub version: String,
    /// The version split into parts.
    pub fields: SpdkVersionFields,
}

/// Parts of an SPDK version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SpdkVersionFields {
    /// Year-based major version, e.g. 25.
    pub major: u32,
    /// Month-based minor version, e.g. 9.
    pub minor: u32,
    /// Patch level.
    pub patch: u32,
    /// Suffix such as `"-pre"`.
    pub suffix: String,
}

/// Params of `rpc_get_methods`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RpcGetMethodsParams {
    /// Only methods callable in the current state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current: Option<bool>,
    /// Include deprecated aliases.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub include_aliases: Option<bool>,
}

impl SpdkClient {
    /// `spdk_get_version`; also a cheap readiness probe.
    pub async fn spdk_get_version(&self) -> Result<SpdkVersion> {
        self.call::<(), _>("spdk_get_version", None).await
    }

    /// `rpc_get_methods`: names of the available methods.
    pub async fn rpc_get_methods(&self, params: &RpcGetMethodsParams) -> Result<Vec<String>> {
        self.call_opt("rpc_get_methods", params).await
    }
}
