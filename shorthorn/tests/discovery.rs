//! A storage node found through DNS discovery of its node agent and driven
//! entirely over the agent's HTTP JSON-RPC proxy.

// The controller's test harness; these tests also run a real node agent,
// so they live in the crate that links both.
mod node_agent;
#[path = "../../controller/tests/support/mod.rs"]
mod support;

use std::net::{Ipv4Addr, TcpListener as StdListener};

use agent_api::KernelFeatures;
use shorthorn_node::agent::{serve_agent, AgentConfig};
use support::*;
use testkit::nodes::TestCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discovered_agent_node_serves_a_volume_end_to_end() {
    let cluster = tokio::task::spawn_blocking(|| TestCluster::start(1))
        .await
        .expect("join")
        .expect("start node");
    let node = cluster.node(0);
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret-token-for-tests\n").expect("token");

    let listener = StdListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let port = listener.local_addr().expect("addr").port();
    listener.set_nonblocking(true).expect("nonblocking");
    let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
    let mut agent = AgentConfig::new(
        "worker-a",
        token_file.clone(),
        node.rpc_socket.clone(),
        dir.path().join("agent-state"),
    );
    agent.nvmf_port = node.nvmf_port;
    agent.disks = vec![node.aio_file.clone()];
    agent.nvme_etc_dir = dir.path().join("no-etc-nvme");
    agent.kernel = Some(KernelFeatures {
        ublk: true,
        ..Default::default()
    });
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let agent_task = tokio::spawn(serve_agent(agent, listener, async move {
        let _ = stop_rx.await;
    }));

    let config = format!(
        "reconcile_interval_secs = 3600\n\
         [store]\nembedded = {:?}\n\
         [discovery]\nagent_dns = \"localhost\"\nagent_port = {port}\nagent_token_file = {:?}\n\
         base_bdev = {{ aio_file = {:?} }}\n",
        dir.path().join("state.redb").display().to_string(),
        token_file.display().to_string(),
        node.aio_file.display().to_string(),
    );
    let config =
        shorthorn_controller::config::ControllerConfig::from_toml(&config).expect("config");
    let ctx = shorthorn_controller::server::start(&config)
        .await
        .expect("controller start");
    assert!(ctx.nodes.get("worker-a").is_ok(), "agent node discovered");

    use csi_proto::controller_server::Controller;
    use tonic::Request;
    let service = shorthorn_controller::service::ControllerService::new(ctx.clone());
    let volume = service
        .create_volume(Request::new(create_req("pvc-agent", 16 * MIB, Some(1))))
        .await
        .expect("create through the agent")
        .into_inner()
        .volume
        .expect("volume");
    let context = service
        .controller_publish_volume(Request::new(publish_req(&volume.volume_id, "worker-a")))
        .await
        .expect("publish through the agent")
        .into_inner()
        .publish_context;
    let device = context["ublk.device"].clone();
    let data = pattern(128 * 1024, 9);
    write_device(&device, &data);
    assert_eq!(read_device(&device, data.len()), data);
    service
        .controller_unpublish_volume(Request::new(unpublish_req(&volume.volume_id, "worker-a")))
        .await
        .expect("unpublish");
    service
        .delete_volume(Request::new(delete_req(&volume.volume_id)))
        .await
        .expect("delete");
    let handle = ctx.nodes.get("worker-a").expect("node");
    assert!(
        matches!(
            handle.config.endpoint,
            shorthorn_controller::config::NodeEndpoint::Agent { .. }
        ),
        "the discovered node is driven through its agent, not a socket"
    );
    let sim = spdk_client::SpdkClient::unix(node.rpc_socket.clone());
    let lvols = data_lvols(&sim).await;
    assert!(lvols.is_empty(), "left behind: {lvols:?}");
    let disks = sim
        .ublk_get_disks(&Default::default())
        .await
        .expect("disks");
    assert!(disks.is_empty(), "left behind: {disks:?}");

    let _ = stop_tx.send(());
    agent_task.await.expect("join").expect("agent");
    drop(cluster);
}
