//! Shorthorn node: the kernel layer (frontends, device-mapper, formatting,
//! mounts, quiesce, stats) used by the CSI node service and the node agent.

#![warn(missing_docs)]

pub mod agent;
pub mod command;
pub mod csi;
pub mod device;
pub mod dm;
pub mod error;
pub mod format;
pub mod freeze;
pub mod frontend;
pub mod mount;
pub mod mountinfo;
pub mod probe;
pub mod quiesce;
pub mod resize;
pub mod stats;
pub mod swap;

pub use error::{NodeError, Result};
