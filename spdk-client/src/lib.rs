//! Typed async client for SPDK's JSON-RPC 2.0 interface.
//!
//! [`SpdkClient`] talks to `spdk_tgt` over its Unix socket
//! ([`SpdkClient::unix`]) or to a node agent over HTTP with a bearer token
//! ([`SpdkClient::http`], or [`SpdkClient::https`] with a [`https::ClientTls`]). Every supported RPC has a method named after it
//! taking a params struct named after it (`bdev_lvol_create` takes
//! [`BdevLvolCreateParams`]). Failures are [`SpdkError`]; SPDK errors carry an
//! [`ErrorKind`] so callers branch on meaning, never on message text.

#![warn(missing_docs)]

mod client;
mod error;
pub mod histogram;
pub mod https;
pub mod methods;
mod protocol;
mod transport;

pub use client::{wire_params, CallObserver, SpdkClient, DEFAULT_TIMEOUT};
pub use error::{ErrorKind, Result, SpdkError};
pub use methods::bdev::*;
pub use methods::general::*;
pub use methods::lvol::*;
pub use methods::null::*;
pub use methods::nvme::*;
pub use methods::nvmf::*;
pub use methods::raid::*;
pub use methods::ublk::*;
pub use protocol::{Request, Response, RpcErrorObject};
pub use transport::{HttpTransport, Transport, UnixTransport};
