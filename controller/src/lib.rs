//! Shorthorn controller: the CSI Identity and Controller services.
//!
//! Entry point: [`server::serve`] runs both services on a Unix socket or TCP
//! endpoint until a shutdown future resolves. Everything else is reachable
//! for tests and tools:
//! - [`config`]: the TOML configuration; [`discovery`]: DNS discovery of node agents.
//! - [`context`]: the [`context::Context`] every operation works with;
//!   [`endpoint`]: where servers listen.
//! - [`nodes`]: the storage-node registry (SPDK and agent clients, bootstrap, capacity).
//! - [`placement`], [`capacity`], [`naming`]: pure decisions.
//! - [`membership`]: which replicas hold every acknowledged write (stale, unclean).
//! - [`journal`]: the operation journal and the crash-test fault hook.
//! - [`ops`]: the multi-step operations; [`reconciler`]: crash recovery and cleanup.
//! - [`leader`]: one controller at a time (etcd leader lease, the CSI gate,
//!   recovery and reconciler only while leading).
//! - [`fence`]: holding a published volume's I/O still for snapshots;
//!   [`snapshots`]: the shared snapshot helpers (reading, locking, lvol removal).
//! - [`identity`], [`service`]: the tonic services; [`error`]: the one error
//!   type, its gRPC mapping and the `From` conversions of store, node and agent errors.
//!
//! Nodes are reached only through `agent-api` (identity, quiesce, ANA fence leases, and SPDK
//! JSON-RPC through the agent) or a local SPDK socket; this crate never links
//! the node crate (see `docs/architecture.md`).
//! - [`store`]: durable state (etcd or embedded redb).
//! - [`admin`]: the read-only HTTP/JSON admin API `shorthorn ctl` talks to.
//! - [`metrics`]: Prometheus metrics (`GET /metrics`), see docs/metrics.md.

#![warn(missing_docs)]

pub mod admin;
pub mod capacity;
pub mod config;
pub mod context;
pub mod discovery;
pub mod endpoint;
pub mod error;
pub mod fence;
pub mod health;
pub mod identity;
pub mod journal;
pub mod leader;
pub mod membership;
pub mod metrics;
pub mod naming;
pub mod nodes;
pub mod ops;
pub mod params;
pub mod placement;
pub mod rebuild;
pub mod reconciler;
pub mod server;
pub mod service;
pub mod snapshots;
pub mod store;
