//! The multi-step operations behind the CSI calls. Each one journals itself
//! before acting, is idempotent, and can be resumed or rolled back from its
//! journal entry by [`crate::reconciler`].
//!
//! Snapshots, clones, expansion and revert: [`snapshot_create`],
//! [`snapshot_delete`], [`clone`], [`expand`], [`revert`]; changing the
//! replica count: [`replica_count`].

pub mod clone;
pub mod create_volume;
pub mod delete_volume;
pub mod expand;
pub mod publish;
pub mod replica_count;
pub mod revert;
pub mod snapshot_create;
pub mod snapshot_delete;
pub mod teardown;
pub mod unpublish;
