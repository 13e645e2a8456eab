//! `shorthorn ctl`: the operator CLI.
//!
//! - [`client`]: HTTP client of the controller's admin API.
//! - [`commands`]: `nodes`, `volumes`, `volume`, `snapshots`, `rebuilds` as tables.
//! - [`table`]: aligned columns, human sizes, colour on terminals.
//! - [`demo`]: the guided tour over CSI.

pub mod client;
pub mod commands;
pub mod demo;
pub mod table;
