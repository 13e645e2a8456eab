//! Python grpcio (gRPC C-core) against a tonic CSI server on a Unix socket
//! (issue #23): C-core sends the percent-encoded socket path as
//! `:authority`, h2 resets such streams (hyperium/h2#487), and
//! `csi_proto::uds::incoming`, which Shorthorn's CSI servers serve, gets
//! them through.
//!
//! The client is a real grpcio, pinned in `tests/grpcio/requirements.txt`
//! and installed with pip into a venv under target/ when missing (needs
//! python3 with venv, which scripts/setup.sh installs).

use std::collections::HashMap;
use std::path::Path;

use csi_proto::identity_server::{Identity, IdentityServer};
use csi_proto::{
    plugin_capability, GetPluginCapabilitiesRequest, GetPluginCapabilitiesResponse,
    GetPluginInfoRequest, GetPluginInfoResponse, PluginCapability, ProbeRequest, ProbeResponse,
};
use prost::Message;
use tokio::net::UnixListener;
use tokio::sync::oneshot;
use tonic::{Request, Response, Status};

const GRPCIO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/grpcio");
const VENV: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/grpcio-venv");
const DRIVER: &str = "shorthorn.example.io";

struct TestIdentity;

#[tonic::async_trait]
impl Identity for TestIdentity {
    async fn get_plugin_info(
        &self,
        _request: Request<GetPluginInfoRequest>,
    ) -> Result<Response<GetPluginInfoResponse>, Status> {
        Ok(Response::new(GetPluginInfoResponse {
            name: DRIVER.to_owned(),
            vendor_version: "0.1.0-test".to_owned(),
            manifest: HashMap::new(),
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

/// What one grpcio call returned: the response bytes, or code and details.
type Outcome = Result<Vec<u8>, (String, String)>;

/// Runs tests/grpcio/client.py: one grpcio channel to `socket`, the calls
/// made on it in order.
async fn grpcio(socket: &Path, authority: Option<&str>, calls: &[(&str, Vec<u8>)]) -> Vec<Outcome> {
    let mut cmd = tokio::process::Command::new(format!("{GRPCIO}/python.sh"));
    cmd.arg(VENV).arg(format!("{GRPCIO}/client.py")).arg(socket);
    if let Some(a) = authority {
        cmd.args(["--authority", a]);
    }
    for (method, request) in calls {
        cmd.arg(format!("{method}={}", hex(request)));
    }
    let out = cmd.output().await.expect("run tests/grpcio/python.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "grpcio client failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let outcomes: Vec<Outcome> = stdout
        .lines()
        .map(|line| match line.strip_prefix("OK") {
            Some(response) => Ok(unhex(response.trim())),
            None => {
                let rest = line.strip_prefix("ERROR ").unwrap_or(line);
                let (code, details) = rest.split_once(' ').unwrap_or((rest, ""));
                Err((code.to_owned(), details.to_owned()))
            }
        })
        .collect();
    assert_eq!(outcomes.len(), calls.len(), "one line per call:\n{stdout}");
    outcomes
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// A test Identity server on `socket`, accepting through
/// `csi_proto::uds::incoming` (`fixed`) or a bare listener (h2 alone).
fn serve(socket: &Path, fixed: bool) -> oneshot::Sender<()> {
    let listener = UnixListener::bind(socket).expect("bind unix socket");
    let (stop, stopped) = oneshot::channel::<()>();
    let router = tonic::transport::Server::builder().add_service(IdentityServer::new(TestIdentity));
    let shutdown = async {
        let _ = stopped.await;
    };
    tokio::spawn(async move {
        if fixed {
            router
                .serve_with_incoming_shutdown(csi_proto::uds::incoming(listener), shutdown)
                .await
        } else {
            let bare = tokio_stream::wrappers::UnixListenerStream::new(listener);
            router.serve_with_incoming_shutdown(bare, shutdown).await
        }
        .expect("serve");
    });
    stop
}

fn identity_calls() -> Vec<(&'static str, Vec<u8>)> {
    let info = (
        "/csi.v1.Identity/GetPluginInfo",
        GetPluginInfoRequest {}.encode_to_vec(),
    );
    vec![
        info.clone(),
        // Later calls on the channel send :authority as a dynamic table index.
        info.clone(),
        (
            "/csi.v1.Identity/GetPluginCapabilities",
            GetPluginCapabilitiesRequest {}.encode_to_vec(),
        ),
        ("/csi.v1.Identity/Probe", ProbeRequest {}.encode_to_vec()),
        info,
    ]
}

fn assert_identity_served(outcomes: &[Outcome]) {
    for i in [0, 1, 4] {
        let response = outcomes[i]
            .as_ref()
            .unwrap_or_else(|e| panic!("call {i}: {e:?}"));
        let info = GetPluginInfoResponse::decode(&response[..]).expect("GetPluginInfoResponse");
        assert_eq!(info.name, DRIVER);
    }
    let caps = outcomes[2].as_ref().expect("GetPluginCapabilities");
    let caps = GetPluginCapabilitiesResponse::decode(&caps[..]).expect("decode");
    assert_eq!(caps.capabilities.len(), 1);
    // The server's own error reaches the client as it was sent.
    assert_eq!(
        outcomes[3],
        Err((
            "UNAVAILABLE".to_owned(),
            "not ready in this test".to_owned()
        ))
    );
}

#[tokio::test]
async fn grpcio_is_served_through_uds_incoming() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A space and an '@' too: C-core percent-encodes them as well.
    let sub = dir.path().join("csi plugin@1");
    std::fs::create_dir(&sub).expect("mkdir");
    let socket = sub.join("csi.sock");
    let stop = serve(&socket, true);
    let outcomes = grpcio(&socket, None, &identity_calls()).await;
    assert_identity_served(&outcomes);
    // A second channel (a new connection) works as well.
    assert_identity_served(&grpcio(&socket, None, &identity_calls()).await);
    let _ = stop.send(());
}

#[tokio::test]
async fn h2_alone_resets_grpcio_calls() {
    // The reason for uds::incoming: without it every grpcio call fails. If
    // this starts failing, h2 accepts such authorities (hyperium/h2#487)
    // and csi_proto::authority can go.
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("csi.sock");
    let stop = serve(&socket, false);
    for outcome in grpcio(&socket, None, &identity_calls()).await {
        let (code, details) = outcome.expect_err("h2 rejects the socket path as :authority");
        assert_eq!(code, "INTERNAL", "{details}");
        assert!(details.contains("RST_STREAM"), "{details}");
    }
    let _ = stop.send(());
}

#[tokio::test]
async fn the_readme_workaround_works_with_and_without_the_fix() {
    for fixed in [false, true] {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("csi.sock");
        let stop = serve(&socket, fixed);
        let outcomes = grpcio(&socket, Some("localhost"), &identity_calls()).await;
        assert_identity_served(&outcomes);
        let _ = stop.send(());
    }
}
