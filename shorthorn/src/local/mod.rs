//! The single-machine mode: `shorthorn local up` and `shorthorn local down`.
//!
//! - [`layout`]: files inside the state directory.
//! - [`storage_nodes`]: sim or real spdk_tgt processes.
//! - [`config`]: the generated controller configuration.
//! - [`up`], [`down`]: the two commands; [`sweep`]: leftover clean-up; [`pidfile`].

pub mod agent;
pub mod config;
pub mod down;
pub mod layout;
pub mod pidfile;
pub mod storage_nodes;
pub mod sweep;
pub mod up;
