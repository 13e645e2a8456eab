//! The csi-sanity harness: installs the real csi-sanity, brings up
//! `shorthorn local up` in each topology under test, runs the suite in mount
//! and block mode, and tallies the JUnit reports.
//!
//! - [`install`]: `go install` of the pinned csi-sanity.
//! - [`cluster`]: one `shorthorn local up` child process.
//! - [`junit`]: counting passed, failed and skipped specs in a JUnit report.
//! - [`plan`]: the topologies and modes that make up a run.

#![warn(missing_docs)]

pub mod cluster;
pub mod install;
pub mod junit;
pub mod plan;
