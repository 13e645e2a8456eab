//! [`LeaderGate`]: lets a CSI service's state-changing calls through only
//! while this controller acts as leader.

use std::convert::Infallible;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tonic::body::Body;
use tonic::codegen::Service;
use tonic::server::NamedService;
use tonic::Status;

use super::Leadership;

/// Controller RPCs that never change state: a standby serves them.
/// Everything else (including RPCs added later) needs the leader.
const READ_ONLY: &[&str] = &[
    "ControllerGetCapabilities",
    "ValidateVolumeCapabilities",
    "ListVolumes",
    "GetCapacity",
    "ListSnapshots",
    "GetSnapshot",
    "ControllerGetVolume",
];

/// Wraps a tonic service (the CSI Controller service): calls that may change
/// state are refused with UNAVAILABLE ([`crate::error::ControllerError::NotLeader`])
/// unless this controller is acting as leader.
#[derive(Debug, Clone)]
pub struct LeaderGate<S> {
    inner: S,
    leadership: Leadership,
}

impl<S> LeaderGate<S> {
    /// Gates `inner` on `leadership`.
    pub fn new(inner: S, leadership: Leadership) -> Self {
        Self { inner, leadership }
    }
}

/// Whether the gRPC method at `path` (`/csi.v1.Controller/CreateVolume`) needs the leader.
fn needs_leader(path: &str) -> bool {
    let method = path.rsplit('/').next().unwrap_or_default();
    !READ_ONLY.contains(&method)
}

impl<S: NamedService> NamedService for LeaderGate<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for LeaderGate<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if needs_leader(request.uri().path()) {
            if let Err(refused) = self.leadership.check_acting() {
                tracing::debug!(path = request.uri().path(), error = %refused, "refused: not the leader");
                let response = Status::from(refused).into_http();
                return Box::pin(async move { Ok(response) });
            }
        }
        Box::pin(self.inner.call(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// Counts the calls that reach it.
    #[derive(Clone, Default)]
    struct Counting(Arc<AtomicUsize>);

    impl Service<http::Request<Body>> for Counting {
        type Response = http::Response<Body>;
        type Error = Infallible;
        type Future = std::future::Ready<Result<Self::Response, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<Body>) -> Self::Future {
            self.0.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok(http::Response::new(Body::empty())))
        }
    }

    fn request(method: &str) -> http::Request<Body> {
        http::Request::post(format!("/csi.v1.Controller/{method}"))
            .body(Body::empty())
            .expect("request")
    }

    #[tokio::test]
    async fn a_controller_that_does_not_act_never_reaches_the_service_with_a_change() {
        let inner = Counting::default();
        // Elected but not recovered yet: not acting.
        let leadership = Leadership::held("x".into());
        let mut gate = LeaderGate::new(inner.clone(), leadership.clone());
        let refused = gate.call(request("CreateVolume")).await.expect("response");
        let status = Status::from_header_map(refused.headers()).expect("grpc status");
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(status.message().contains("still recovering"), "{status:?}");
        assert_eq!(
            inner.0.load(Ordering::SeqCst),
            0,
            "refused before the service"
        );
        gate.call(request("ListVolumes")).await.expect("response");
        assert_eq!(inner.0.load(Ordering::SeqCst), 1, "reads pass");
        leadership.mark_acting(leadership.elected().await);
        gate.call(request("CreateVolume")).await.expect("response");
        assert_eq!(
            inner.0.load(Ordering::SeqCst),
            2,
            "the leader serves changes"
        );
    }

    #[test]
    fn only_listed_reads_pass_a_standby() {
        assert!(needs_leader("/csi.v1.Controller/CreateVolume"));
        assert!(needs_leader("/csi.v1.Controller/ControllerPublishVolume"));
        assert!(needs_leader("/csi.v1.Controller/SomeFutureRpc"));
        assert!(!needs_leader("/csi.v1.Controller/ListVolumes"));
        assert!(!needs_leader(
            "/csi.v1.Controller/ControllerGetCapabilities"
        ));
    }
}
