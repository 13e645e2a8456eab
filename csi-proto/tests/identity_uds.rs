//! A real tonic server and client talking CSI Identity over a Unix socket.

use std::collections::HashMap;

use csi_proto::identity_client::IdentityClient;
use csi_proto::identity_server::{Identity, IdentityServer};
use csi_proto::{
    plugin_capability, GetPluginCapabilitiesRequest, GetPluginCapabilitiesResponse,
    GetPluginInfoRequest, GetPluginInfoResponse, PluginCapability, ProbeRequest, ProbeResponse,
};
use tokio::net::UnixListener;
use tokio::sync::oneshot;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status};

struct TestIdentity;

#[tonic::async_trait]
impl Identity for TestIdentity {
    async fn get_plugin_info(
        &self,
        _request: Request<GetPluginInfoRequest>,
    ) -> Result<Response<GetPluginInfoResponse>, Status> {
        Ok(Response::new(GetPluginInfoResponse {
            name: "shorthorn.example.io".to_owned(),
            vendor_version: "0.1.0-test".to_owned(),
            manifest: HashMap::from([
                ("commit".to_owned(), "abc123".to_owned()),
                ("spec".to_owned(), csi_proto::CSI_SPEC_VERSION.to_owned()),
            ]),
        }))
    }

    async fn get_plugin_capabilities(
        &self,
        _request: Request<GetPluginCapabilitiesRequest>,
    ) -> Result<Response<GetPluginCapabilitiesResponse>, Status> {
        Ok(Response::new(GetPluginCapabilitiesResponse {
            capabilities: vec![PluginCapability {
                r#type: Some(plugin_capability::Type::Service(
                    plugin_capability::Service {
                        r#type: plugin_capability::service::Type::ControllerService.into(),
                    },
                )),
            }],
        }))
    }

    async fn probe(
        &self,
        _request: Request<ProbeRequest>,
    ) -> Result<Response<ProbeResponse>, Status> {
        Err(Status::unavailable("not ready in this test"))
    }
}

#[tokio::test]
async fn identity_round_trip_over_unix_socket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("csi.sock");
    let listener = UnixListener::bind(&socket).expect("bind unix socket");

    let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(IdentityServer::new(TestIdentity))
            .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async {
                let _ = shutdown_rx.await;
            }),
    );

    let channel = csi_proto::uds::connect(&socket)
        .await
        .expect("connect over unix socket");
    let mut client = IdentityClient::new(channel);

    let info = client
        .get_plugin_info(GetPluginInfoRequest {})
        .await
        .expect("GetPluginInfo")
        .into_inner();
    assert_eq!(info.name, "shorthorn.example.io");
    assert_eq!(info.vendor_version, "0.1.0-test");
    assert_eq!(info.manifest.len(), 2);
    assert_eq!(
        info.manifest.get("commit").map(String::as_str),
        Some("abc123")
    );
    assert_eq!(
        info.manifest.get("spec").map(String::as_str),
        Some("1.12.0")
    );

    let caps = client
        .get_plugin_capabilities(GetPluginCapabilitiesRequest {})
        .await
        .expect("GetPluginCapabilities")
        .into_inner();
    match caps.capabilities.as_slice() {
        [PluginCapability {
            r#type: Some(plugin_capability::Type::Service(service)),
        }] => assert_eq!(
            service.r#type(),
            plugin_capability::service::Type::ControllerService
        ),
        other => panic!("unexpected capabilities: {other:?}"),
    }

    // Errors carry their gRPC status code across the socket.
    let status = client
        .probe(ProbeRequest {})
        .await
        .expect_err("probe must fail");
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(status.message(), "not ready in this test");

    shutdown_tx.send(()).expect("server still running");
    server
        .await
        .expect("server task")
        .expect("server exits cleanly");
}

#[tokio::test]
async fn connect_fails_when_socket_is_missing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nobody-home.sock");
    assert!(csi_proto::uds::connect(&missing).await.is_err());
}

#[tokio::test]
async fn lazy_channel_dials_on_first_call() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("late.sock");

    // The channel is created before anything listens on the path.
    let channel = csi_proto::uds::connect_lazy(&socket);

    let listener = UnixListener::bind(&socket).expect("bind unix socket");
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(IdentityServer::new(TestIdentity))
            .serve_with_incoming(UnixListenerStream::new(listener)),
    );

    let info = IdentityClient::new(channel)
        .get_plugin_info(GetPluginInfoRequest {})
        .await
        .expect("GetPluginInfo via lazy channel")
        .into_inner();
    assert_eq!(info.name, "shorthorn.example.io");

    server.abort();
}
