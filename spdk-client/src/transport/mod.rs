//! Ways of carrying one JSON-RPC request to SPDK and its response back.

mod http;
mod unix;

pub use self::http::HttpTransport;
pub use self::unix::UnixTransport;

use async_trait::async_trait;

use crate::error::Result;
use crate::protocol::{Request, Response};

/// Sends one JSON-RPC request and returns the response with the same id.
///
/// Implementations must allow many concurrent calls; the client applies the
/// timeout, so a transport may wait indefinitely but must clean up when the
/// returned future is dropped.
#[async_trait]
pub trait Transport: Send + Sync + std::fmt::Debug {
    /// Delivers `request` and waits for its response.
    async fn send(&self, request: &Request) -> Result<Response>;
}
