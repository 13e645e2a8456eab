//! The agent's routes and its error body, shared by its server and client.
//!
//! | route | body | answer |
//! |---|---|---|
//! | `POST /jsonrpc` | one JSON-RPC 2.0 call | SPDK's reply, as-is |
//! | `GET /identity` | | [`NodeIdentity`](crate::NodeIdentity) |
//! | `POST /quiesce/suspend` | [`SuspendRequest`](crate::SuspendRequest) | [`SuspendResponse`](crate::SuspendResponse) |
//! | `POST /quiesce/resume` | [`ResumeRequest`](crate::ResumeRequest) | [`ResumeResponse`](crate::ResumeResponse) |
//! | `POST /fence/ana/suspend` | [`AnaFenceSuspendRequest`](crate::AnaFenceSuspendRequest) | [`AnaFenceSuspendResponse`](crate::AnaFenceSuspendResponse) |
//! | `POST /fence/ana/resume` | [`AnaFenceResumeRequest`](crate::AnaFenceResumeRequest) | [`AnaFenceResumeResponse`](crate::AnaFenceResumeResponse) |
//! | `POST /swap/check` | [`SwapCheckRequest`](crate::swap::SwapCheckRequest) | [`SwapCheckResponse`](crate::swap::SwapCheckResponse) |
//! | `POST /swap/suspend` | [`SwapSuspendRequest`](crate::swap::SwapSuspendRequest) | [`SwapSuspendResponse`](crate::swap::SwapSuspendResponse) |
//! | `POST /swap/resume` | [`SwapResumeRequest`](crate::swap::SwapResumeRequest) | [`SwapResumeResponse`](crate::swap::SwapResumeResponse) |
//! | `GET /healthz` (no token) | | `ok` |

use serde::{Deserialize, Serialize};

/// SPDK JSON-RPC, forwarded if the method is on the agent's allowlist.
pub const JSONRPC: &str = "/jsonrpc";
/// The node's identity.
pub const IDENTITY: &str = "/identity";
/// Hold a volume's I/O.
pub const QUIESCE_SUSPEND: &str = "/quiesce/suspend";
/// Let a volume's I/O flow again.
pub const QUIESCE_RESUME: &str = "/quiesce/resume";
/// Hold a volume's NVMe/TCP frontend I/O (ANA inaccessible + drain) under a lease.
pub const ANA_FENCE_SUSPEND: &str = "/fence/ana/suspend";
/// Restore a volume's NVMe/TCP frontend path to ANA optimized.
pub const ANA_FENCE_RESUME: &str = "/fence/ana/resume";
/// Whether a volume staged here can be held for a raid swap.
pub const SWAP_CHECK: &str = "/swap/check";
/// Suspend a volume's dm-linear device for a raid swap, under a lease.
pub const SWAP_SUSPEND: &str = "/swap/suspend";
/// Reattach (optionally), reload the dm table and resume.
pub const SWAP_RESUME: &str = "/swap/resume";
/// Liveness, without a token.
pub const HEALTHZ: &str = "/healthz";

/// The body of every refusal: `{"error": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What was refused and why.
    pub error: String,
}
