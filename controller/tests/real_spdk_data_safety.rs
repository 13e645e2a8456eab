//! Data safety under node restarts on real spdk_tgt v25.09
//! (`SHORTHORN_SPDK_TGT`): a replica node restarting while the volume is
//! unpublished or published needs no operator, and a restart of the
//! publishing node makes the volume unclean and exactly one replica is
//! chosen to serve. Bytes go through the NVMe/TCP export (spdk_dd as the
//! host) and every replica the controller lets serve is read on its node.
//! The model is `data_safety.rs`; publishing on another node is left out:
//! real replica-only nodes run in interrupt mode and cannot assemble a
//! raid. Skips with a message when the variable is unset.

mod support;

use std::time::Duration;

use support::real::{read_volume, skip, write_volume};
use support::safety::wait_for;
use support::*;

const LEN: usize = 256 * 1024;

/// Asserts every replica of `volume` not named in `stale` holds `data`;
/// returns how many there are.
async fn assert_serving_replicas_hold(
    h: &Harness,
    volume: &str,
    data: &[u8],
    stale: &[&str],
) -> usize {
    let mut checked = 0;
    for i in 0..h.cluster.nodes().len() {
        let name = h.node_name(i);
        if stale.contains(&name.as_str()) {
            continue;
        }
        assert!(
            h.replica_bytes(i, volume, data.len()).await == data,
            "replica on {name} does not hold the last acknowledged writes"
        );
        checked += 1;
    }
    checked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_node_restarts_while_unpublished_and_published_need_no_operator_on_real_spdk() {
    if skip("replica node restarts") {
        return;
    }
    let started = std::time::Instant::now();
    let mut h = Harness::start_opts(3, StoreKind::Etcd, "", &["nvme-tcp"]).await;
    let id = h.create_volume("pvc-real-restart", 16 * MIB, Some(3)).await;
    let ctx = h.publish(&id, "node-0").await;
    let a = pattern(LEN, 5);
    write_volume(&h, &ctx, 0, &a).await;
    h.unpublish(&id, "node-0").await;

    // Unpublished: node-1 restarts; nothing was written meanwhile, so all
    // three replicas stay current.
    h.cluster.kill_node(1);
    h.cluster.restart_node(1).expect("restart node-1");
    let ((), back) = wait_for(
        "node-1's lvstore to load again",
        Duration::from_secs(20),
        || async { h.lvstore_loaded(1).await.then_some(()) },
    )
    .await;
    println!("MEASURE real spdk_tgt: replica node restart -> lvstore back: {back:?}");
    let ctx = h.publish(&id, "node-0").await;
    assert_eq!(read_volume(&h, &ctx, 0, LEN).await, a);
    assert_eq!(h.raid_member_nodes(&id, 0).await.len(), 3);

    // Published: node-2 restarts; its export comes back for the engine only.
    h.cluster.kill_node(2);
    h.cluster.restart_node(2).expect("restart node-2");
    let ((), back) = wait_for(
        "node-2's lvstore and export to return",
        Duration::from_secs(20),
        || async {
            // The export is rebuilt step by step: wait for its host too.
            let hosts = h.replica_export_hosts(&id, 2).await;
            (h.lvstore_loaded(2).await && hosts.is_some_and(|x| !x.is_empty())).then_some(())
        },
    )
    .await;
    println!("MEASURE real spdk_tgt: replica node restart while published -> lvstore and export back: {back:?}");
    assert_eq!(
        h.replica_export_hosts(&id, 2).await,
        Some(vec![shorthorn_controller::naming::spdk_host_nqn("node-0")]),
        "the restored export admits exactly the engine's host"
    );
    let b = pattern(LEN, 6);
    write_volume(&h, &ctx, 0, &b).await;
    assert_eq!(read_volume(&h, &ctx, 0, LEN).await, b);
    h.unpublish(&id, "node-0").await;

    let c = h.volume_condition(&id).await;
    // Its leg either reconnected (current) or was dropped and recorded stale.
    let stale: Vec<&str> = if c.message.contains("replica on node-2 is stale") {
        vec!["node-2"]
    } else {
        vec![]
    };
    println!(
        "after the restart node-2 is {}",
        if stale.is_empty() { "current" } else { "stale" }
    );
    assert!(assert_serving_replicas_hold(&h, &id, &b, &stale).await >= 2);
    h.delete_volume(&id).await;
    h.reconcile_and_assert_clean().await;
    println!(
        "MEASURE real spdk_tgt: replica node restarts took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publishing_node_restart_makes_the_volume_unclean_and_one_replica_is_chosen_on_real_spdk()
{
    if skip("a publishing node restart") {
        return;
    }
    let started = std::time::Instant::now();
    let mut h = Harness::start_opts(3, StoreKind::Etcd, "", &["nvme-tcp"]).await;
    let id = h.create_volume("pvc-real-engine", 16 * MIB, Some(3)).await;
    let ctx = h.publish(&id, "node-0").await;
    let a = pattern(LEN, 7);
    write_volume(&h, &ctx, 0, &a).await;

    // The publishing node's spdk_tgt restarts: its raid is gone.
    h.cluster.kill_node(0);
    h.cluster.restart_node(0).expect("restart node-0");
    let restarted = std::time::Instant::now();
    let mut c = h.volume_condition(&id).await;
    while !c.message.contains("unclean") {
        assert!(
            restarted.elapsed() < Duration::from_secs(20),
            "never reported unclean: {}",
            c.message
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        c = h.volume_condition(&id).await;
    }
    let took = restarted.elapsed();
    println!("MEASURE real spdk_tgt: publishing node restart -> reported unclean: {took:?}");
    assert!(c.abnormal, "{}", c.message);

    // Published again: one replica (node-0's own) serves.
    h.unpublish(&id, "node-0").await;
    let ctx = h.publish(&id, "node-0").await;
    assert_eq!(read_volume(&h, &ctx, 0, LEN).await, a);
    assert_eq!(
        h.raid_member_nodes(&id, 0).await,
        vec!["node-0".to_string()]
    );
    let c = h.volume_condition(&id).await;
    assert!(
        c.message.contains("replica on node-1 is stale")
            && c.message.contains("replica on node-2 is stale"),
        "{}",
        c.message
    );
    let b = pattern(LEN, 8);
    write_volume(&h, &ctx, 0, &b).await;
    h.unpublish(&id, "node-0").await;
    assert_eq!(
        assert_serving_replicas_hold(&h, &id, &b, &["node-1", "node-2"]).await,
        1
    );
    h.delete_volume(&id).await;
    h.reconcile_and_assert_clean().await;
    println!(
        "MEASURE real spdk_tgt: publishing node restart took {:?}",
        started.elapsed()
    );
}
