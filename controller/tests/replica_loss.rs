//! Losing a storage node: the raid keeps serving, the lost replica is marked
//! stale and never serves again, the volume reports itself degraded, and the
//! orphan sweep cleans the node once it returns.

mod support;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_replica_is_stale_reported_and_left_out_of_the_next_publish() {
    let mut h = Harness::start(3, StoreKind::Etcd).await;
    let id = h.create_volume("pvc-loss", 16 * MIB, Some(3)).await;
    let ctx = h.publish(&id, "node-0").await;
    let device = ctx["ublk.device"].clone();
    write_device(&device, &pattern(256 * 1024, 1));

    // node-2 dies; the next write reaches its leg, which the raid drops.
    h.cluster.kill_node(2);
    let data = pattern(256 * 1024, 2);
    let dev = device.clone();
    let d = data.clone();
    tokio::task::spawn_blocking(move || write_device(&dev, &d))
        .await
        .expect("write while degraded");

    let condition = h.volume_condition(&id).await;
    assert!(condition.abnormal, "degraded volume reported healthy");
    assert!(
        condition.message.contains("node-2"),
        "condition should name the lost node: {}",
        condition.message
    );

    // Move to node-1: only the two healthy replicas serve, with the latest data.
    h.unpublish(&id, "node-0").await; // with node-2 down
    let ctx = h.publish(&id, "node-1").await; // degraded
    assert_eq!(read_device(&ctx["ublk.device"], data.len()), data);

    // node-2 returns with a stale replica: still stale, never re-used.
    h.cluster.restart_node(2).expect("restart node-2");
    let condition = h.volume_condition(&id).await;
    assert!(
        condition.abnormal && condition.message.contains("replica on node-2 is stale"),
        "the returned stale replica must stay stale: {}",
        condition.message
    );

    h.unpublish(&id, "node-1").await;
    h.delete_volume(&id).await;
    // A reconciler pass sweeps anything the dead node kept.
    h.reconcile_and_assert_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpublishing_from_a_dead_node_fences_it_and_leaves_its_local_replica_out() {
    let mut h = Harness::start(3, StoreKind::Etcd).await;
    let id = h.create_volume("pvc-fence", 16 * MIB, Some(3)).await;
    let ctx = h.publish(&id, "node-0").await;
    let data = pattern(256 * 1024, 4);
    write_device(&ctx["ublk.device"], &data);

    h.cluster.kill_node(0);
    // Unpublishing from a dead node succeeds once it is fenced.
    h.unpublish(&id, "node-0").await;
    let replica_exports: Vec<String> = h
        .leftovers_on(&[1, 2])
        .await
        .into_iter()
        .filter(|l| l.contains(":replica:"))
        .collect();
    assert!(
        replica_exports.is_empty(),
        "remote replicas must no longer be exported to the dead node: {replica_exports:?}"
    );

    let ctx = h.publish(&id, "node-1").await; // without node-0
    assert_eq!(read_device(&ctx["ublk.device"], data.len()), data);
    let condition = h.volume_condition(&id).await;
    assert!(
        condition.abnormal && condition.message.contains("node-0"),
        "{}",
        condition.message
    );

    h.cluster.restart_node(0).expect("restart node-0");
    h.unpublish(&id, "node-1").await;
    h.delete_volume(&id).await;
    h.reconcile_and_assert_clean().await;
}

/// ListVolumes answers from what the health monitor records (no engine
/// reads per page), so it must show healthy volumes healthy and a lost
/// replica within a few monitor passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_volumes_reports_a_lost_replica_from_the_monitors_records() {
    let mut h = Harness::start(3, StoreKind::Etcd).await;
    let lost = h.create_volume("pvc-list-lost", 16 * MIB, Some(3)).await;
    h.create_volume("pvc-list-other", 16 * MIB, Some(2)).await;
    let ctx = h.publish(&lost, "node-0").await;
    write_device(&ctx["ublk.device"], &pattern(64 * 1024, 1));
    // Let the monitor pass at least once, so the listing uses its records.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    for (id, condition) in list_conditions(&mut h).await {
        assert!(
            !condition.abnormal,
            "{id} listed abnormal: {}",
            condition.message
        );
    }

    h.cluster.kill_node(2);
    let dev = ctx["ublk.device"].clone();
    let last = pattern(64 * 1024, 2);
    let written = last.clone();
    tokio::task::spawn_blocking(move || write_device(&dev, &written))
        .await
        .expect("write while degraded");

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let condition = loop {
        let condition = list_conditions(&mut h).await.remove(&lost).expect("listed");
        if condition.message.contains("replica on node-2 is stale")
            || std::time::Instant::now() > deadline
        {
            break condition;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    };
    assert!(
        condition.abnormal && condition.message.contains("replica on node-2 is stale"),
        "ListVolumes should report node-2's replica stale within 30 s: {}",
        condition.message
    );
    // The replicas still allowed to serve hold the last acknowledged write.
    for i in [0, 1] {
        assert_eq!(
            h.replica_bytes(i, &lost, last.len()).await,
            last,
            "replica on node-{i} lacks the last write"
        );
    }
}

/// Every listed volume's condition, walking pages of one entry.
async fn list_conditions(
    h: &mut Harness,
) -> std::collections::HashMap<String, csi_proto::VolumeCondition> {
    let mut out = std::collections::HashMap::new();
    let mut token = String::new();
    loop {
        let page = h
            .csi
            .list_volumes(csi_proto::ListVolumesRequest {
                max_entries: 1,
                starting_token: token,
            })
            .await
            .expect("list")
            .into_inner();
        for e in page.entries {
            let id = e.volume.expect("volume").volume_id;
            let condition = e
                .status
                .and_then(|s| s.volume_condition)
                .expect("condition");
            out.insert(id, condition);
        }
        if page.next_token.is_empty() {
            return out;
        }
        token = page.next_token;
    }
}
