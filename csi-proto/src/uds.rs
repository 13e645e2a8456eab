//! Unix domain socket transport for tonic clients and servers.
//!
//! CSI endpoints are almost always Unix sockets (`unix:///csi/csi.sock`).
//! tonic's [`Endpoint`] only dials TCP by itself, so these helpers plug in a
//! connector that dials the socket path instead. The HTTP/2 `:authority` is a
//! fixed placeholder; the URI is never resolved.
//!
//! On the server side, [`incoming`] is what every Shorthorn CSI server
//! serves: the accepted connections, each wrapped in
//! [`AuthorityFix`](crate::authority::AuthorityFix).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};
use tokio_stream::wrappers::UnixListenerStream;
use tokio_stream::{Stream, StreamExt};
use tonic::transport::{Channel, Endpoint, Error, Uri};
use tower::service_fn;

use crate::authority::AuthorityFix;

/// Placeholder URI for Unix-socket channels; only used as the `:authority`.
const PLACEHOLDER_URI: &str = "http://localhost";

fn endpoint() -> Endpoint {
    Endpoint::from_static(PLACEHOLDER_URI)
}

/// Builds the connector that dials `path` every time the channel (re)connects.
fn connector(
    path: &Path,
) -> impl tower::Service<
    Uri,
    Response = TokioIo<UnixStream>,
    Error = std::io::Error,
    Future = impl Future<Output = std::io::Result<TokioIo<UnixStream>>> + Send,
> + Send
       + Clone
       + 'static {
    let path: Arc<PathBuf> = Arc::new(path.to_path_buf());
    service_fn(move |_: Uri| {
        let path = Arc::clone(&path);
        async move { UnixStream::connect(path.as_path()).await.map(TokioIo::new) }
    })
}

/// Connects a tonic [`Channel`] to the gRPC server listening on the Unix
/// socket at `path`, failing if the socket cannot be reached now.
///
/// If the connection later drops, the channel redials the same path. Accepts
/// a plain filesystem path; strip any `unix://` scheme before calling.
pub async fn connect(path: impl AsRef<Path>) -> Result<Channel, Error> {
    endpoint()
        .connect_with_connector(connector(path.as_ref()))
        .await
}

/// Like [`connect`], but returns immediately and dials on first use, so the
/// socket does not need to exist yet.
pub fn connect_lazy(path: impl AsRef<Path>) -> Channel {
    endpoint().connect_with_connector_lazy(connector(path.as_ref()))
}

/// The connections accepted on `listener`, for
/// `tonic::transport::Server::serve_with_incoming(_shutdown)`, each wrapped in
/// [`AuthorityFix`] so that clients sending the socket path as `:authority`
/// (gRPC C-core, grpc-java, grpcurl) are served like any other.
pub fn incoming(
    listener: UnixListener,
) -> impl Stream<Item = std::io::Result<AuthorityFix<UnixStream>>> {
    UnixListenerStream::new(listener).map(|accepted| accepted.map(AuthorityFix::new))
}
