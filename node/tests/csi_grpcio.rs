//! The CSI node service as Python grpcio (gRPC C-core) reaches it: over its
//! Unix socket, with the socket path as `:authority` (issue #23,
//! hyperium/h2#487). The client is csi-proto's tests/grpcio/client.py, a
//! pinned grpcio installed with pip into a venv under target/ when missing.

mod csi_support;

use std::path::Path;

use csi_proto::*;
use csi_support::Node;
use prost::Message;

const GRPCIO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../csi-proto/tests/grpcio");
const VENV: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/grpcio-venv");

/// Makes `calls` on one grpcio channel to `socket`; each line of the
/// client's output is `OK <hex>` or `ERROR <code> <details>`.
async fn grpcio(socket: &Path, calls: &[(&str, Vec<u8>)]) -> Vec<Result<Vec<u8>, String>> {
    let mut cmd = tokio::process::Command::new(format!("{GRPCIO}/python.sh"));
    cmd.arg(VENV).arg(format!("{GRPCIO}/client.py")).arg(socket);
    for (method, request) in calls {
        let hex: String = request.iter().map(|b| format!("{b:02x}")).collect();
        cmd.arg(format!("{method}={hex}"));
    }
    let out = cmd.output().await.expect("run python.sh");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "grpcio client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let outcomes: Vec<_> = stdout
        .lines()
        .map(|line| match line.strip_prefix("OK") {
            Some(hex) => {
                let hex = hex.trim();
                Ok((0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
                    .collect())
            }
            None => Err(line.trim_start_matches("ERROR ").to_owned()),
        })
        .collect();
    assert_eq!(outcomes.len(), calls.len(), "{stdout}");
    outcomes
}

#[tokio::test]
async fn python_grpcio_reaches_the_node_service_over_its_socket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::start(dir.path()).await;
    let outcomes = grpcio(
        &dir.path().join("csi.sock"),
        &[
            (
                "/csi.v1.Identity/GetPluginInfo",
                GetPluginInfoRequest {}.encode_to_vec(),
            ),
            (
                "/csi.v1.Node/NodeGetInfo",
                NodeGetInfoRequest {}.encode_to_vec(),
            ),
            (
                "/csi.v1.Node/NodeGetCapabilities",
                NodeGetCapabilitiesRequest {}.encode_to_vec(),
            ),
            // Bad input still gets the service's own precise status.
            (
                "/csi.v1.Node/NodeUnstageVolume",
                NodeUnstageVolumeRequest::default().encode_to_vec(),
            ),
        ],
    )
    .await;
    let info = GetPluginInfoResponse::decode(&outcomes[0].clone().expect("GetPluginInfo")[..])
        .expect("decode");
    assert_eq!(info.name, "shorthorn.test");
    let node_info = NodeGetInfoResponse::decode(&outcomes[1].clone().expect("NodeGetInfo")[..])
        .expect("decode");
    assert_eq!(node_info.node_id, "node-a");
    let caps =
        NodeGetCapabilitiesResponse::decode(&outcomes[2].clone().expect("NodeGetCapabilities")[..])
            .expect("decode");
    assert!(!caps.capabilities.is_empty());
    let err = outcomes[3].clone().expect_err("empty NodeUnstageVolume");
    assert!(err.starts_with("INVALID_ARGUMENT "), "{err}");
    node.stop().await;
}
