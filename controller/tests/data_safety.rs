//! Data safety under single faults: a replica that missed writes never
//! serves again, node restarts are routine, a lost engine makes the volume
//! unclean and one replica is chosen, and a partitioned old engine cannot
//! write beside the new one. Every test ends by reading the bytes of every
//! replica the controller lets serve, directly from its node.

mod support;

use std::time::Duration;

use support::safety::{percentiles, wait_for};
use support::*;

const LEN: usize = 256 * 1024;

/// Asserts every replica of `volume` the controller still counts healthy
/// holds `data`, and returns how many there are.
async fn assert_serving_replicas_hold(
    h: &mut Harness,
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
        let bytes = h.replica_bytes(i, volume, data.len()).await;
        assert!(
            bytes == data,
            "replica on {name} does not hold the last acknowledged writes"
        );
        checked += 1;
    }
    checked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_missed_writes_never_rejoins_the_raid() {
    let mut h = Harness::start(3, StoreKind::Etcd).await;
    let id = h.create_volume("pvc-stale", 16 * MIB, Some(3)).await;
    let ctx = h.publish(&id, "node-0").await;
    let device = ctx["ublk.device"].clone();
    write_device(&device, &pattern(LEN, 1));

    // node-2 dies; the next write reaches its leg, which the raid drops.
    h.cluster.kill_node(2);
    let b = pattern(LEN, 2);
    let (dev, data) = (device.clone(), b.clone());
    tokio::task::spawn_blocking(move || write_device(&dev, &data))
        .await
        .expect("degraded write");
    let recorded = h.wait_replica_state(&id, "node-2", "stale").await;
    println!("replica death -> recorded stale: {recorded:?}");

    // It comes back with its old bytes; the volume is moved at once.
    h.cluster.restart_node(2).expect("restart node-2");
    h.unpublish(&id, "node-0").await;
    let ctx = h.publish(&id, "node-0").await;
    assert_eq!(
        read_device(&ctx["ublk.device"], LEN),
        b,
        "reads must return the last writes"
    );
    let members = h.raid_member_nodes(&id, 0).await;
    assert_eq!(
        members,
        vec!["node-0".to_string(), "node-1".to_string()],
        "the stale replica must not be a raid member"
    );
    let c = h.volume_condition(&id).await;
    assert!(
        c.abnormal && c.message.contains("replica on node-2 is stale"),
        "{}",
        c.message
    );

    h.unpublish(&id, "node-0").await;
    assert_eq!(
        assert_serving_replicas_hold(&mut h, &id, &b, &["node-2"]).await,
        2
    );
    // The stale copy really is stale: serving it would have returned old data.
    assert_ne!(h.replica_bytes(2, &id, LEN).await, b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leg_lost_while_the_controller_is_down_is_found_on_its_return() {
    let mut h = Harness::start(3, StoreKind::Etcd).await;
    let id = h.create_volume("pvc-ctl-down", 16 * MIB, Some(3)).await;
    let ctx = h.publish(&id, "node-0").await;
    let device = ctx["ublk.device"].clone();
    write_device(&device, &pattern(LEN, 1));

    h.stop_controller().await;
    h.cluster.kill_node(1);
    let b = pattern(LEN, 3);
    let (dev, data) = (device.clone(), b.clone());
    tokio::task::spawn_blocking(move || write_device(&dev, &data))
        .await
        .expect("degraded write");
    h.cluster.restart_node(1).expect("restart node-1");
    h.restart_controller().await;

    h.unpublish(&id, "node-0").await;
    let ctx = h.publish(&id, "node-2").await;
    assert_eq!(read_device(&ctx["ublk.device"], LEN), b);
    assert_eq!(
        h.raid_member_nodes(&id, 2).await,
        vec!["node-0".to_string(), "node-2".to_string()]
    );
    h.unpublish(&id, "node-2").await;
    assert_eq!(
        assert_serving_replicas_hold(&mut h, &id, &b, &["node-1"]).await,
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_node_restart_while_unpublished_needs_no_operator() {
    let mut h = Harness::start(3, StoreKind::Etcd).await;
    let id = h.create_volume("pvc-restart-idle", 16 * MIB, Some(3)).await;
    let ctx = h.publish(&id, "node-0").await;
    let a = pattern(LEN, 5);
    write_device(&ctx["ublk.device"], &a);
    h.unpublish(&id, "node-0").await;

    h.cluster.kill_node(1);
    h.cluster.restart_node(1).expect("restart node-1");
    let ((), back) = wait_for(
        "node-1's lvstore to load again",
        Duration::from_secs(20),
        || async { h.lvstore_loaded(1).await.then_some(()) },
    )
    .await;
    println!("replica node restart -> lvstore back: {back:?}");

    // Nothing was written meanwhile: all three replicas stay current.
    let ctx = h.publish(&id, "node-0").await;
    assert_eq!(read_device(&ctx["ublk.device"], LEN), a);
    assert_eq!(h.raid_member_nodes(&id, 0).await.len(), 3);
    h.unpublish(&id, "node-0").await;
    assert_eq!(assert_serving_replicas_hold(&mut h, &id, &a, &[]).await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_node_restart_while_published_keeps_the_volume_usable() {
    let mut h = Harness::start(3, StoreKind::Etcd).await;
    let id = h.create_volume("pvc-restart-busy", 16 * MIB, Some(3)).await;
    let ctx = h.publish(&id, "node-0").await;
    let device = ctx["ublk.device"].clone();
    write_device(&device, &pattern(LEN, 1));

    h.cluster.kill_node(2);
    h.cluster.restart_node(2).expect("restart node-2");
    let ((), back) = wait_for(
        "node-2's lvstore and export to return",
        Duration::from_secs(20),
        || async {
            (h.lvstore_loaded(2).await
                && h.replica_export_hosts(&id, 2)
                    .await
                    .is_some_and(|hosts| !hosts.is_empty()))
            .then_some(())
        },
    )
    .await;
    println!("replica node restart while published -> lvstore and export back: {back:?}");
    assert_eq!(
        h.replica_export_hosts(&id, 2).await,
        Some(vec![shorthorn_controller::naming::spdk_host_nqn("node-0")]),
        "the restored export admits exactly the engine's host"
    );

    let b = pattern(LEN, 6);
    let (dev, data) = (device.clone(), b.clone());
    tokio::task::spawn_blocking(move || write_device(&dev, &data))
        .await
        .expect("write after the restart");
    assert_eq!(read_device(&device, LEN), b);

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
    let served = assert_serving_replicas_hold(&mut h, &id, &b, &stale).await;
    assert!(served >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_engine_makes_the_volume_unclean_and_one_replica_is_chosen() {
    let mut h = Harness::start(3, StoreKind::Etcd).await;
    let id = h.create_volume("pvc-engine", 16 * MIB, Some(3)).await;
    let ctx = h.publish(&id, "node-0").await;
    let a = pattern(LEN, 7);
    write_device(&ctx["ublk.device"], &a);

    // The publishing node's spdk_tgt restarts: its raid is gone.
    h.cluster.kill_node(0);
    h.cluster.restart_node(0).expect("restart node-0");
    let mut c = h.volume_condition(&id).await;
    let started = std::time::Instant::now();
    while !c.message.contains("unclean") {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "never reported unclean: {}",
            c.message
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        c = h.volume_condition(&id).await;
    }
    println!(
        "publishing node restart -> reported unclean: {:?}",
        started.elapsed()
    );
    assert!(c.abnormal, "{}", c.message);

    // Published again on the same node: one replica (node-0's own) serves.
    h.unpublish(&id, "node-0").await;
    let ctx = h.publish(&id, "node-0").await;
    assert_eq!(read_device(&ctx["ublk.device"], LEN), a);
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
    write_device(&ctx["ublk.device"], &b);
    h.unpublish(&id, "node-0").await;

    // And on another node: the chosen replica, reached remotely.
    let ctx = h.publish(&id, "node-1").await;
    assert_eq!(read_device(&ctx["ublk.device"], LEN), b);
    assert_eq!(
        h.raid_member_nodes(&id, 1).await,
        vec!["node-0".to_string()]
    );
    h.unpublish(&id, "node-1").await;
    assert_eq!(
        assert_serving_replicas_hold(&mut h, &id, &b, &["node-1", "node-2"]).await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_old_engine_cannot_write_beside_the_new_one() {
    let mut h = Harness::start_with(3, StoreKind::Etcd, "rpc_timeout_ms = 2000").await;
    let id = h.create_volume("pvc-partition", 16 * MIB, Some(3)).await;
    let ctx = h.publish(&id, "node-0").await;
    let old_device = ctx["ublk.device"].clone();
    write_device(&old_device, &pattern(LEN, 1));

    // node-0 stops answering (a partition, as the controller sees it).
    let pid = h.cluster.node(0).pid().expect("node-0 pid");
    signal(pid, "STOP");
    h.unpublish(&id, "node-0").await;
    let ctx = h.publish(&id, "node-1").await;
    let b = pattern(LEN, 9);
    write_device(&ctx["ublk.device"], &b);
    for i in [1, 2] {
        if let Some(hosts) = h.replica_export_hosts(&id, i).await {
            assert_eq!(
                hosts,
                vec![shorthorn_controller::naming::spdk_host_nqn("node-1")],
                "export on node-{i} admits another host"
            );
        }
    }

    // The old engine wakes up and writes through its stale raid.
    signal(pid, "CONT");
    let stray = pattern(LEN, 10);
    let dev = old_device.clone();
    let data = stray.clone();
    let _ = tokio::time::timeout(
        Duration::from_secs(15),
        tokio::task::spawn_blocking(move || {
            let _ = std::panic::catch_unwind(|| write_device(&dev, &data));
        }),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    assert_eq!(
        read_device(&ctx["ublk.device"], LEN),
        b,
        "the new engine reads the old engine's writes"
    );
    h.unpublish(&id, "node-1").await;
    let c = h.volume_condition(&id).await;
    let stale: Vec<&str> = ["node-0", "node-1", "node-2"]
        .into_iter()
        .filter(|n| c.message.contains(&format!("replica on {n} is stale")))
        .collect();
    assert!(
        stale.contains(&"node-0"),
        "the old engine's own replica must be out: {}",
        c.message
    );
    assert!(assert_serving_replicas_hold(&mut h, &id, &b, &stale).await >= 1);
}

/// Prints the figures the data-safety issue asks for (no timed assertion):
/// replica death → recorded stale, the longest write stall during the loss,
/// and a replica node's return → lvstore and export back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measure_fault_timings() {
    const RUNS: usize = 3;
    let mut h = Harness::start(3, StoreKind::Etcd).await;
    let (mut to_stale, mut stalls, mut returns) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..RUNS {
        let id = h
            .create_volume(&format!("pvc-measure-{run}"), 16 * MIB, Some(3))
            .await;
        let ctx = h.publish(&id, "node-0").await;
        let device = ctx["ublk.device"].clone();
        write_device(&device, &pattern(LEN, 1));

        // Return of a replica node while published, nothing written meanwhile.
        h.cluster.kill_node(1);
        h.cluster.restart_node(1).expect("restart node-1");
        let ((), back) = wait_for("node-1 back", Duration::from_secs(20), || async {
            (h.lvstore_loaded(1).await
                && h.replica_export_hosts(&id, 1)
                    .await
                    .is_some_and(|hosts| !hosts.is_empty()))
            .then_some(())
        })
        .await;
        returns.push(back);

        // Death of another one during writes.
        let died = std::time::Instant::now();
        h.cluster.kill_node(2);
        let dev = device.clone();
        let stall = tokio::task::spawn_blocking(move || {
            let mut longest = Duration::ZERO;
            for i in 0..4u8 {
                let t = std::time::Instant::now();
                write_device(&dev, &pattern(64 * 1024, 20 + i));
                longest = longest.max(t.elapsed());
            }
            longest
        })
        .await
        .expect("writes during the loss");
        stalls.push(stall);
        h.wait_replica_state(&id, "node-2", "stale").await;
        to_stale.push(died.elapsed());
        h.cluster.restart_node(2).expect("restart node-2");
        h.unpublish(&id, "node-0").await;
        h.delete_volume(&id).await;
    }
    let (p50, p99) = percentiles(to_stale);
    println!("replica death -> recorded stale (writes running): p50 {p50:?} p99 {p99:?}");
    let (p50, p99) = percentiles(stalls);
    println!("longest write stall during a replica loss: p50 {p50:?} p99 {p99:?}");
    let (p50, p99) = percentiles(returns);
    println!("replica node restart -> lvstore and export back: p50 {p50:?} p99 {p99:?}");
}

fn signal(pid: u32, sig: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{sig} {pid}");
}
