//! Test support for Shorthorn integration tests, and the one node launcher
//! every part of Shorthorn that starts storage nodes uses.
//!
//! - [`etcd`]: a throwaway etcd.
//! - [`nodes`]: a cluster of throwaway storage nodes (sim or real SPDK).
//! - [`data_path`]: reading and writing bdev bytes the same way on sim and real SPDK.
//! - [`launch`]: how a storage node process is started (roles, cores, flags).
//! - [`spdk_env`]: which real SPDK binaries the environment names; skip messages.
//! - [`hugepages`]: hugepage checks and stale map removal.
//! - [`ports`]: TCP ports for test listeners that outgoing connections never take.
//! - [`slots`]: the machine-wide budget of real SPDK nodes for tests.
//!
//! Handles stop and reap their processes when dropped.

#![warn(missing_docs)]

pub mod data_path;
pub mod etcd;
pub mod hugepages;
pub mod launch;
pub mod nodes;
pub mod ports;
mod rpc_probe;
pub mod slots;
pub mod spdk_env;

pub use etcd::{EtcdServer, TestkitError};
