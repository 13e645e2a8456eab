//! Typed SPDK methods, one module per subsystem. Each module holds the params
//! and result types of its methods and an `impl SpdkClient` block with one
//! async method per RPC, named after the RPC.

pub mod bdev;
pub mod general;
pub mod lvol;
pub mod null;
pub mod nvme;
pub mod nvmf;
pub mod raid;
pub mod ublk;
