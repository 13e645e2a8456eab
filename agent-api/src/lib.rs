//! The Shorthorn node agent's API: the wire types the agent serves and the
//! controller reads, and (feature `client`) the one client for it.
//!
//! - [`frontend`]: [`FrontendKind`], the one frontend enum.
//! - [`attach`]: [`AttachSpec`], how a node reaches a published volume,
//!   carried in the CSI `publish_context`.
//! - [`identity`]: [`NodeIdentity`] (`GET /identity`) and [`KernelFeatures`].
//! - [`quiesce`]: the I/O fence lease of ublk volumes (`POST /quiesce/*`).
//! - [`ana_fence`]: the I/O fence lease of NVMe/TCP volumes (`POST /fence/ana/*`).
//! - [`swap`]: the dm-linear hold around a thin rebuild's raid swap (`POST /swap/*`).
//! - [`nqn`]: NQN validation shared by both sides.
//! - [`names`]: the prefixes of every name Shorthorn gives in SPDK.
//! - [`methods`]: the SPDK methods the controller calls through an agent.
//! - [`routes`]: the paths and the error body.
//! - `client` (feature `client`): [`AgentClient`](client::AgentClient), HTTPS
//!   with a CA or pinned certificate, a bearer token, timeouts and retries of
//!   idempotent calls; its TLS setup is `spdk_client::tls`, re-exported as
//!   [`tls`](client::tls), so the agent's JSON-RPC and these calls trust alike.
//!
//! The node crate depends on this crate without the client; the controller
//! with it. Neither side links the other.

#![warn(missing_docs)]

pub mod ana_fence;
pub mod attach;
#[cfg(feature = "client")]
pub mod client;
pub mod frontend;
pub mod identity;
pub mod methods;
pub mod names;
pub mod nqn;
pub mod quiesce;
pub mod routes;
pub mod swap;

pub use ana_fence::{
    AnaFenceResumeRequest, AnaFenceResumeResponse, AnaFenceSuspendRequest, AnaFenceSuspendResponse,
    FenceListener, FenceRefusal,
};
pub use attach::{AttachSpec, ContextError, NvmeTcpTarget, UblkTarget};
pub use frontend::FrontendKind;
pub use identity::{KernelFeatures, NodeIdentity, Tools};
pub use nqn::{validate_nqn, InvalidNqn};
pub use quiesce::{ResumeRequest, ResumeResponse, SuspendRequest, SuspendResponse};
pub use routes::ErrorBody;
