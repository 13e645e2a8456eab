//! The admin API as an operator's tools see it: JSON documents for nodes
//! and a created volume, 404 for unknown ids, against sim nodes and the
//! embedded store.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use csi_proto::controller_server::Controller;
use csi_proto::volume_capability::access_mode::Mode;
use csi_proto::volume_capability::{AccessMode, AccessType, BlockVolume};
use csi_proto::{
    CapacityRange, ControllerPublishVolumeRequest, ControllerUnpublishVolumeRequest,
    CreateSnapshotRequest, CreateVolumeRequest, DeleteSnapshotRequest, DeleteVolumeRequest,
    VolumeCapability,
};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use shorthorn_controller::admin::{self, NodeView, SnapshotView, VolumeView};
use shorthorn_controller::config::ControllerConfig;
use shorthorn_controller::naming;
use shorthorn_controller::server::{self, Endpoint};
use shorthorn_controller::service::ControllerService;
use shorthorn_controller::store::ReplicaHealth;
use testkit::nodes::TestCluster;
use tonic::Request;

const MIB: u64 = 1024 * 1024;

/// `method path` on the admin socket: status and parsed JSON body.
/// The admin token of the test's API.
const ADMIN_TOKEN: &str = "admin-token-for-tests";

/// `method path` with the admin token.
async fn call(socket: &Path, method: &str, path: &str, body: &str) -> (u16, Value) {
    call_as(socket, Some(ADMIN_TOKEN), method, path, body).await
}

/// `method path`, presenting `token` if any.
async fn call_as(
    socket: &Path,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, Value) {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .expect("connect to the admin socket");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let mut req = http::Request::builder().method(method).uri(path);
    if let Some(token) = token {
        req = req.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let req = req
        .header(http::header::HOST, "test")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("request");
    let resp = sender.send_request(req).await.expect("send");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    let json = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{path} answered non-JSON ({e}): {body:?}"));
    (status, json)
}

/// `GET path`: status and parsed JSON body.
async fn get(socket: &Path, path: &str) -> (u16, Value) {
    call_as(socket, None, "GET", path, "").await
}

fn cap() -> VolumeCapability {
    VolumeCapability {
        access_mode: Some(AccessMode {
            mode: Mode::SingleNodeWriter.into(),
        }),
        access_type: Some(AccessType::Block(BlockVolume {})),
    }
}

struct Setup {
    _cluster: TestCluster,
    _dir: tempfile::TempDir,
    socket: PathBuf,
    csi: ControllerService,
    stop: tokio::sync::oneshot::Sender<()>,
    admin: tokio::task::JoinHandle<shorthorn_controller::error::Result<()>>,
}

async fn setup() -> Setup {
    let cluster = tokio::task::spawn_blocking(|| TestCluster::start(3))
        .await
        .expect("join")
        .expect("start storage nodes");
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = format!(
        "reconcile_interval_secs = 3600\n[store]\nembedded = {:?}\n\n{}",
        dir.path().join("state.redb").display().to_string(),
        cluster.controller_toml(&["ublk"])
    );
    let config = ControllerConfig::from_toml(&toml).expect("config");
    let ctx = server::start(&config).await.expect("start controller");
    let socket = dir.path().join("ctl.sock");
    // Bound before serving, so the socket exists once this returns.
    let token_file = dir.path().join("admin.token");
    std::fs::write(&token_file, format!("{ADMIN_TOKEN}\n")).expect("token");
    let listener = admin::bind(&Endpoint::Unix(socket.clone()))
        .await
        .expect("bind admin socket")
        .with_token(Some(
            admin::AdminToken::from_file(&token_file).expect("token"),
        ));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let admin = tokio::spawn(admin::serve_on(ctx.clone(), listener, async move {
        let _ = stopped.await;
    }));
    Setup {
        _cluster: cluster,
        _dir: dir,
        socket,
        csi: ControllerService::new(ctx),
        stop,
        admin,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_reports_nodes_and_a_volume_through_its_lifecycle() {
    let s = setup().await;

    let (status, body) = get(&s.socket, "/v1/nodes").await;
    assert_eq!(status, 200, "{body}");
    let nodes: Vec<NodeView> = serde_json::from_value(body).expect("node documents");
    let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["node-0", "node-1", "node-2"]);
    for n in &nodes {
        assert!(n.reachable && n.bootstrapped, "{n:?}");
        assert!(n.free_bytes > 0 && n.free_bytes <= n.total_bytes, "{n:?}");
        assert_eq!(n.committed_bytes, 0, "{n:?}");
        assert_eq!(n.frontends, ["ublk"]);
        assert_eq!(n.topology["topology.shorthorn.csi.io/node"], n.name);
    }

    let (status, body) = get(&s.socket, "/v1/volumes").await;
    assert_eq!((status, body), (200, Value::Array(vec![])));

    let created = s
        .csi
        .create_volume(Request::new(CreateVolumeRequest {
            name: "pvc-admin".into(),
            capacity_range: Some(CapacityRange {
                required_bytes: (16 * MIB) as i64,
                limit_bytes: 0,
            }),
            volume_capabilities: vec![cap()],
            parameters: HashMap::from([("numberOfReplicas".into(), "3".into())]),
            ..Default::default()
        }))
        .await
        .expect("create volume")
        .into_inner()
        .volume
        .expect("volume");
    let id = created.volume_id;

    let (status, body) = get(&s.socket, &format!("/v1/volumes/{id}")).await;
    assert_eq!(status, 200, "{body}");
    let volume: VolumeView = serde_json::from_value(body).expect("volume document");
    assert_eq!(
        (volume.id.as_str(), volume.name.as_str()),
        (id.as_str(), "pvc-admin")
    );
    assert_eq!((volume.size_bytes, volume.replica_count), (16 * MIB, 3));
    let mut replica_nodes: Vec<&str> = volume.replicas.iter().map(|r| r.node.as_str()).collect();
    replica_nodes.sort_unstable();
    assert_eq!(replica_nodes, ["node-0", "node-1", "node-2"]);
    for r in &volume.replicas {
        assert_eq!(r.health, ReplicaHealth::Healthy);
        assert_eq!(
            r.lvol,
            format!("shorthorn/{}", naming::replica_lvol(&id)),
            "{r:?}"
        );
        assert!(!r.lvol_uuid.is_empty());
    }
    assert!(volume.published.is_empty());
    assert!(!volume.condition.abnormal, "{:?}", volume.condition);

    let (_, body) = get(&s.socket, "/v1/nodes").await;
    let nodes: Vec<NodeView> = serde_json::from_value(body).expect("node documents");
    assert!(
        nodes
            .iter()
            .all(|n| n.committed_bytes == 16 * MIB && n.replicas == 1),
        "{nodes:?}"
    );

    let snapshot = s
        .csi
        .create_snapshot(Request::new(CreateSnapshotRequest {
            source_volume_id: id.clone(),
            name: "snap-admin".into(),
            ..Default::default()
        }))
        .await
        .expect("create snapshot")
        .into_inner()
        .snapshot
        .expect("snapshot")
        .snapshot_id;
    let (status, body) = get(&s.socket, "/v1/snapshots").await;
    assert_eq!(status, 200, "{body}");
    let snapshots: Vec<SnapshotView> = serde_json::from_value(body).expect("snapshot documents");
    assert_eq!(snapshots.len(), 1);
    assert_eq!(
        (
            snapshots[0].id.as_str(),
            snapshots[0].source_volume_id.as_str()
        ),
        (snapshot.as_str(), id.as_str())
    );
    assert_eq!(snapshots[0].replicas.len(), 3);
    let revert_path = format!("/v1/volumes/{id}/revert");
    let revert_body = format!("{{\"snapshot_id\": {snapshot:?}}}");

    s.csi
        .controller_publish_volume(Request::new(ControllerPublishVolumeRequest {
            volume_id: id.clone(),
            node_id: "node-1".into(),
            volume_capability: Some(cap()),
            ..Default::default()
        }))
        .await
        .expect("publish");
    let (_, body) = get(&s.socket, "/v1/volumes").await;
    let listed: Vec<VolumeView> = serde_json::from_value(body).expect("volume documents");
    assert_eq!(listed.len(), 1);
    let published: Vec<&str> = listed[0]
        .published
        .iter()
        .map(|p| p.node.as_str())
        .collect();
    assert_eq!(published, ["node-1"]);
    // A freshly assembled raid1 of in-sync legs runs no background process.
    let (status, body) = get(&s.socket, "/v1/rebuilds").await;
    assert_eq!((status, body), (200, Value::Array(vec![])));

    // Revert is mutating: no token or a wrong one is refused before routing.
    for token in [None, Some("wrong-token-for-tests")] {
        let (status, body) = call_as(&s.socket, token, "POST", &revert_path, &revert_body).await;
        assert_eq!(status, 401, "{body}");
        assert!(
            body["error"].as_str().unwrap_or("").contains("Bearer"),
            "{body}"
        );
    }
    // A published volume cannot be reverted under its user.
    let (status, body) = call(&s.socket, "POST", &revert_path, &revert_body).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["error"]
        .as_str()
        .is_some_and(|e| e.contains("published")));

    s.csi
        .controller_unpublish_volume(Request::new(ControllerUnpublishVolumeRequest {
            volume_id: id.clone(),
            node_id: "node-1".into(),
            ..Default::default()
        }))
        .await
        .expect("unpublish");

    let (status, body) = call(&s.socket, "POST", &revert_path, "{\"snapshot\": 1}").await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = call(&s.socket, "POST", &revert_path, &revert_body).await;
    assert_eq!(status, 200, "{body}");
    let reverted: VolumeView = serde_json::from_value(body).expect("volume document");
    assert_eq!(reverted.id, id);
    assert!(
        reverted
            .replicas
            .iter()
            .all(|r| r.health == ReplicaHealth::Healthy),
        "{reverted:?}"
    );

    s.csi
        .delete_snapshot(Request::new(DeleteSnapshotRequest {
            snapshot_id: snapshot.clone(),
            ..Default::default()
        }))
        .await
        .expect("delete snapshot");
    s.csi
        .delete_volume(Request::new(DeleteVolumeRequest {
            volume_id: id.clone(),
            ..Default::default()
        }))
        .await
        .expect("delete");
    let (status, body) = get(&s.socket, &format!("/v1/volumes/{id}")).await;
    assert_eq!(status, 404, "{body}");
    let (_, body) = get(&s.socket, "/v1/volumes").await;
    assert_eq!(body, Value::Array(vec![]));

    let _ = s.stop.send(());
    s.admin
        .await
        .expect("join")
        .expect("admin API stops cleanly");
    assert!(!s.socket.exists(), "admin socket left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_answers_json_errors_for_unknown_ids_and_endpoints() {
    let s = setup().await;

    let (status, body) = get(&s.socket, "/v1/volumes/no-such-volume").await;
    assert_eq!(status, 404);
    let error = body["error"].as_str().expect("an error message");
    assert!(error.contains("no-such-volume"), "{error}");

    let (status, body) = get(&s.socket, "/v1/nothing").await;
    assert_eq!(status, 404);
    assert!(body["error"]
        .as_str()
        .is_some_and(|e| e.contains("/v1/volumes")));

    let (status, body) = call(&s.socket, "DELETE", "/v1/volumes/x", "").await;
    assert_eq!(status, 405);
    assert!(body["error"].as_str().is_some_and(|e| e.contains("GET")));

    let (status, body) = get(&s.socket, "/v1/snapshots").await;
    assert_eq!((status, body), (200, Value::Array(vec![])));

    let _ = s.stop.send(());
    s.admin
        .await
        .expect("join")
        .expect("admin API stops cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_serves_prometheus_metrics_on_its_socket_without_a_token() {
    let s = setup().await;
    let stream = tokio::net::UnixStream::connect(&s.socket)
        .await
        .expect("connect to the admin socket");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let req = http::Request::builder()
        .uri("/metrics")
        .header(http::header::HOST, "test")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = sender.send_request(req).await.expect("send");
    assert_eq!(resp.status(), 200);
    let kind = resp.headers()[http::header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_string();
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    let text = String::from_utf8(body.to_vec()).expect("utf-8");
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("Prometheus text format");
    let reachable: Vec<_> = scrape
        .samples
        .iter()
        .filter(|x| x.metric == "shorthorn_node_reachable")
        .collect();
    assert_eq!(reachable.len(), 3, "one per node: {text}");
    assert!(reachable
        .iter()
        .all(|x| x.value == prometheus_parse::Value::Gauge(1.0)));

    let _ = s.stop.send(());
    s.admin
        .await
        .expect("join")
        .expect("admin API stops cleanly");
}
