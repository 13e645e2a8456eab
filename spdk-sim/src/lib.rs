//! `spdk-sim`: a stand-in for one SPDK `spdk_tgt` process.
//!
//! It speaks SPDK's JSON-RPC 2.0 on a Unix socket with SPDK's method names,
//! parameters, result shapes and error codes, as recorded from a real
//! spdk_tgt v25.09 in `shared/spdk/transcripts`. It holds real data: lvstores
//! live inside their base bdev (a file for aio), so a restarted process finds
//! them again through examine, exactly as SPDK does.
//!
//! Module map:
//! - [`bdev`]: the block-device trait every bdev kind implements, and the registry.
//! - [`rpc_error`]: JSON-RPC errors with SPDK's codes and messages.
//! - [`sim`]: the state of one process.
//! - [`methods`]: routes a method to its module.
//! - [`lvol`]: lvstores, lvols, snapshots, clones, shallow copy (storage side).
//! - [`nvmf`], [`nvme`], [`raid`], [`ublk`]: target, initiator, raid1 and ublk (network side).

pub mod bdev;
pub mod lvol;
pub mod methods;
pub mod nvme;
pub mod nvmf;
pub mod raid;
pub mod rpc_error;
pub mod sim;
pub mod ublk;
