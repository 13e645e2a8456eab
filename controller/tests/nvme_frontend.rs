//! Publishing to a node whose kernel uses NVMe/TCP: a loopback subsystem with
//! the raid as its only namespace, open to that node's kernel host NQN only.

mod support;

use spdk_client::NvmfGetSubsystemsParams;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nvme_tcp_publish_exports_the_raid_to_the_local_kernel_only() {
    let mut h = Harness::start_opts(3, StoreKind::Embedded, "", &["nvme_tcp"]).await;
    let id = h.create_volume("pvc-nvme", 16 * MIB, Some(3)).await;
    let ctx = h.publish(&id, "node-0").await;
    // The node crate parses the context: both sides agree on the contract.
    let spec = agent_api::AttachSpec::from_publish_context(&ctx)
        .expect("publish_context the node understands");
    let agent_api::AttachSpec::NvmeTcp(target) = spec else {
        panic!("expected an nvme-tcp attach spec, got {spec:?}");
    };
    assert_eq!(target.ns_uuid.to_string(), id);
    assert_eq!(target.traddr.to_string(), "127.0.0.1");
    assert_eq!(target.trsvcid, h.cluster.node(0).nvmf_port);

    let subsystems = h
        .spdk(0)
        .nvmf_get_subsystems(&NvmfGetSubsystemsParams::default())
        .await
        .expect("subsystems");
    let sub = subsystems
        .iter()
        .find(|s| s.nqn == target.subnqn)
        .expect("volume subsystem on node-0");
    assert!(!sub.allow_any_host);
    assert_eq!(
        sub.hosts.iter().map(|x| x.nqn.clone()).collect::<Vec<_>>(),
        vec![target.hostnqn.clone()]
    );
    assert_eq!(sub.namespaces.len(), 1);
    assert_eq!(sub.namespaces[0].uuid.as_deref(), Some(id.as_str()));

    let again = h.publish(&id, "node-0").await;
    assert_eq!(again, ctx);

    h.unpublish(&id, "node-0").await;
    h.delete_volume(&id).await;
    h.assert_clean().await;
}
