//! Test support for Shorthorn integration tests.
//!
//! Each module launches one kind of real helper process and guarantees it is
//! stopped and reaped when the handle is dropped.

#![warn(missing_docs)]

pub mod etcd;
pub mod nodes;

pub use etcd::{EtcdServer, TestkitError};
