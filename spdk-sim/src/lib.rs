//! `spdk-sim`: a stand-in for one SPDK `spdk_tgt` process.
//!
//! It speaks SPDK's JSON-RPC 2.0 on a Unix socket with SPDK's method names,
//! parameters, result shapes and error codes, as recorded from a real
//! spdk_tgt v25.09 in `shared/spdk/transcripts`. It holds real data: lvstores
//! live inside their base bdev (a file for aio), so a restarted process finds
//! them again through examine, exactly as SPDK does.
//!
//! Module map:
//! - [`server`]: the Unix-socket JSON-RPC server ([`run`]).
//! - [`bdev`]: the block-device trait every bdev kind implements, and the registry.
//! - [`rpc_error`]: JSON-RPC errors with SPDK's codes and messages.
//! - [`sim`]: the state of one process.
//! - [`methods`]: routes a method to its module.
//! - [`general`], [`bdev_rpc`]: framework methods, `bdev_get_bdevs`, `bdev_get_iostat`,
//!   and [`histogram`]: `bdev_enable_histogram` / `bdev_get_histogram`.
//! - [`base`]: malloc and aio bdevs.
//! - [`lvol`]: lvstores, lvols, snapshots, clones, shallow copy (storage side).
//! - [`sim_methods`]: sim-only `sim_*` test methods (raw I/O, fault injection).
//! - [`nvmf`], [`nvme`], [`raid`], [`ublk`]: target, initiator, raid1 and ublk (network side).

#![warn(missing_docs)]

pub mod base;
pub mod bdev;
pub mod bdev_rpc;
pub mod error;
pub mod general;
pub mod histogram;
pub mod lvol;
pub mod methods;
pub mod nvme;
pub mod nvmf;
pub mod params;
pub mod raid;
pub mod rpc_error;
pub mod server;
pub mod sim;
pub mod sim_methods;
pub mod ublk;

pub use error::SimError;
pub use server::{run, serve};
pub use sim::{Sim, SimConfig};
