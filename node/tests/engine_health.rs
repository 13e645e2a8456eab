//! NodeGetVolumeStats reports the state of the volume's raid on the
//! publishing node, read from its spdk_tgt: online with every leg, degraded,
//! rebuilding, failing I/O, gone, unreachable. The volume itself is a loop
//! device staged through a ublk-style publish_context (see `csi_support`);
//! the raid `shr-<volume id>` is assembled over two malloc bdevs in a storage
//! node from testkit: the sim, or real spdk_tgt when `SHORTHORN_SPDK_TGT`
//! names one.

mod csi_support;

use csi_proto::volume_capability::access_mode::Mode;
use csi_proto::*;
use csi_support::*;
use spdk_client::{
    BdevMallocCreateParams, BdevRaidAddBaseBdevParams, BdevRaidCreateParams, BdevRaidDeleteParams,
    BdevRaidRemoveBaseBdevParams, BdevRaidSetOptionsParams, RaidLevel, SpdkClient,
};
use testkit::launch::first_node_engine;
use testkit::nodes::{Flavor, TestCluster};

const MIB: u64 = 1024 * 1024;
/// Each leg: large enough that a rebuild capped at 1 MiB/s is still running
/// when the test looks.
const LEG_MIB: u64 = 32;

async fn start_cluster(flavor: Flavor) -> TestCluster {
    tokio::task::spawn_blocking(move || TestCluster::start_with(flavor, &first_node_engine(1)))
        .await
        .unwrap()
        .expect("storage node")
}

async fn malloc(spdk: &SpdkClient, name: &str) {
    spdk.bdev_malloc_create(&BdevMallocCreateParams {
        name: Some(name.into()),
        num_blocks: LEG_MIB * MIB / 4096,
        block_size: 4096,
        ..Default::default()
    })
    .await
    .unwrap();
}

/// The volume condition the node service reports for the staged volume.
async fn condition(node: &Node, volume_id: &str, path: &std::path::Path) -> (bool, String, i64) {
    let stats = node
        .client
        .clone()
        .node_get_volume_stats(NodeGetVolumeStatsRequest {
            volume_id: volume_id.into(),
            volume_path: path.display().to_string(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let c = stats.volume_condition.expect("volume_condition");
    let total = stats.usage.first().map_or(0, |u| u.total);
    eprintln!(
        "{}: abnormal={} {:?}",
        path.display(),
        c.abnormal,
        c.message
    );
    (c.abnormal, c.message, total)
}

/// The whole story on one storage node of `flavor`.
async fn engine_states_reach_the_volume_condition(flavor: Flavor) {
    let real = flavor.is_real();
    let mut cluster = start_cluster(flavor).await;
    let socket = cluster.node(0).rpc_socket.clone();
    let spdk = SpdkClient::unix(&socket);

    let mut fx = Fixture::new();
    let vol = fx.volume(16 * MIB);
    let volume_id = uuid::Uuid::new_v4().to_string();
    let raid = format!("shr-{volume_id}");
    let (staging, target) = (fx.path("staging"), fx.path("pods/p1/dev"));
    let node = Node::start_with_spdk(fx.dir.path(), Some(socket.clone())).await;
    let mut c = node.client.clone();
    let cap = block_cap(Mode::SingleNodeWriter);
    c.node_stage_volume(stage_req(&volume_id, &vol, &staging, cap.clone()))
        .await
        .unwrap();
    c.node_publish_volume(publish_req(&volume_id, &staging, &target, cap, false))
        .await
        .unwrap();

    // Published, but this node holds no raid for it.
    let (abnormal, msg, total) = condition(&node, &volume_id, &target).await;
    assert!(abnormal, "{msg}");
    assert!(
        msg.contains(&format!("engine raid {raid} is gone on this node"))
            && msg.contains("unpublish and publish it again"),
        "{msg}"
    );
    assert_eq!(total, (16 * MIB) as i64, "usage is still reported");

    malloc(&spdk, "leg0").await;
    malloc(&spdk, "leg1").await;
    spdk.bdev_raid_create(&BdevRaidCreateParams {
        name: raid.clone(),
        strip_size_kb: None,
        raid_level: RaidLevel::Raid1,
        base_bdevs: vec!["leg0".into(), "leg1".into()],
        uuid: None,
        superblock: None,
    })
    .await
    .unwrap();
    let (abnormal, msg, _) = condition(&node, &volume_id, &target).await;
    assert!(!abnormal, "{msg}");
    assert_eq!(msg, format!("raid {raid} online, 2 of 2 legs"));
    // The staging path of a block volume answers the same.
    let (abnormal, _, _) = condition(&node, &volume_id, &staging).await;
    assert!(!abnormal);

    spdk.bdev_raid_remove_base_bdev(&BdevRaidRemoveBaseBdevParams {
        name: "leg1".into(),
    })
    .await
    .unwrap();
    let (abnormal, msg, _) = condition(&node, &volume_id, &target).await;
    assert!(abnormal, "{msg}");
    assert_eq!(msg, format!("raid {raid} degraded: 1 of 2 legs"));

    // Back in the slot but still being copied: not redundant yet.
    spdk.bdev_raid_set_options(&BdevRaidSetOptionsParams {
        process_window_size_kb: Some(64),
        process_max_bandwidth_mb_sec: Some(1),
    })
    .await
    .unwrap();
    spdk.bdev_raid_add_base_bdev(&BdevRaidAddBaseBdevParams {
        raid_bdev: raid.clone(),
        base_bdev: "leg1".into(),
    })
    .await
    .unwrap();
    let (abnormal, msg, _) = condition(&node, &volume_id, &target).await;
    assert!(abnormal, "{msg}");
    assert!(
        msg.starts_with(&format!("raid {raid} degraded: rebuilding leg1 ("))
            && msg.ends_with("1 of 2 legs in sync"),
        "{msg}"
    );

    if !real {
        // The sim can make the raid itself fail I/O; spdk_tgt counts such
        // failures in `io_error` (recorded in d4 on a dead leg).
        spdk.call_raw(
            "sim_fail_bdev",
            Some(serde_json::json!({ "name": raid.clone() })),
        )
        .await
        .unwrap();
        let write = cluster
            .data_path()
            .write(cluster.node(0), &raid, 0, &[7u8; 4096])
            .await;
        assert!(write.is_err(), "the injected fault did not fail the write");
        spdk.call_raw(
            "sim_fail_bdev",
            Some(serde_json::json!({ "name": raid.clone(), "enable": false })),
        )
        .await
        .unwrap();
        let (abnormal, msg, _) = condition(&node, &volume_id, &target).await;
        assert!(abnormal, "{msg}");
        assert!(
            msg.contains("reads or writes failing") && msg.contains("failed: 1"),
            "{msg}"
        );
    }

    spdk.bdev_raid_delete(&BdevRaidDeleteParams { name: raid.clone() })
        .await
        .unwrap();
    let (abnormal, msg, _) = condition(&node, &volume_id, &target).await;
    assert!(abnormal, "{msg}");
    assert!(msg.contains("is gone on this node"), "{msg}");

    cluster.stop_node(0);
    let (abnormal, msg, _) = condition(&node, &volume_id, &target).await;
    assert!(abnormal, "{msg}");
    assert!(
        msg.starts_with(&format!("cannot reach spdk_tgt at {}", socket.display())),
        "{msg}"
    );

    c.node_unpublish_volume(unpublish_req(&volume_id, &target))
        .await
        .unwrap();
    c.node_unstage_volume(unstage_req(&volume_id, &staging))
        .await
        .unwrap();
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_report_the_raid_state_on_the_sim() {
    engine_states_reach_the_volume_condition(Flavor::sim().expect("spdk-sim")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_report_the_raid_state_on_real_spdk() {
    let Some(real) = testkit::spdk_env::real_or_skip("stats_report_the_raid_state_on_real_spdk")
    else {
        return;
    };
    engine_states_reach_the_volume_condition(Flavor::Real(real)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_spdk_socket_the_condition_says_unknown_not_healthy() {
    let mut fx = Fixture::new();
    let vol = fx.volume(16 * MIB);
    let staging = fx.path("staging");
    let node = Node::start(fx.dir.path()).await;
    let mut c = node.client.clone();
    c.node_stage_volume(stage_req(
        "vol-u",
        &vol,
        &staging,
        block_cap(Mode::SingleNodeWriter),
    ))
    .await
    .unwrap();
    let (abnormal, msg, total) = condition(&node, "vol-u", &staging).await;
    assert!(!abnormal, "{msg}");
    assert!(
        msg.starts_with("engine health unknown: no SPDK socket is configured"),
        "{msg}"
    );
    assert_eq!(total, (16 * MIB) as i64);
    c.node_unstage_volume(unstage_req("vol-u", &staging))
        .await
        .unwrap();
    node.stop().await;
}
