//! CSI v1.12 protocol types and tonic service stubs.
//!
//! The Rust code is generated at build time from `proto/csi.proto`, a
//! wire-compatible transcription of the Container Storage Interface
//! specification v1.12.0 (package `csi.v1`). Every message and enum lives in
//! [`csi::v1`] and is re-exported at the crate root; the gRPC services are in
//! the generated `*_client` and `*_server` modules (for example
//! [`identity_server::Identity`] and [`node_client::NodeClient`]).
//!
//! [`uds`] connects a tonic client to a CSI endpoint on a Unix socket, and
//! accepts connections on one for a tonic server ([`uds::incoming`]), so
//! that gRPC C-core clients' `:authority` gets through ([`authority`]).
//!
//! Messages with `csi_secret` fields (`secrets` maps) implement `Debug` with
//! those fields replaced by a [`redact::Redacted`] marker, so requests can be
//! logged with `?request` without leaking credentials.

/// Generated protobuf code, laid out by protobuf package.
pub mod csi {
    /// The `csi.v1` protobuf package.
    #[allow(
        missing_docs,
        clippy::all,
        clippy::pedantic,
        clippy::nursery,
        rustdoc::all
    )]
    pub mod v1 {
        tonic::include_proto!("csi.v1");
        include!(concat!(env!("OUT_DIR"), "/csi_secret_debug.rs"));
    }
}

pub mod authority;
pub mod redact;
pub mod uds;

pub use csi::v1::*;

/// The CSI specification version this crate implements.
pub const CSI_SPEC_VERSION: &str = "1.12.0";
