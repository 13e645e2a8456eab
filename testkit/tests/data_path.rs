//! The data path reads and writes the same bytes on the sim and on real
//! SPDK: a free lvol directly, a replica lvol claimed by its export through
//! a throwaway snapshot (leaving nothing behind), and an export only as a
//! host it admits. The sim side always runs; the real side when
//! `SHORTHORN_SPDK_TGT` is set.
//!
//! Rerun: `SHORTHORN_SPDK_TGT=/work/shared/spdk/bin/spdk_tgt cargo test -p testkit --test data_path -- --nocapture`

use serde_json::{json, Value};
use spdk_client::SpdkClient;
use testkit::data_path::{Export, TEST_HOST_NQN};
use testkit::launch::first_node_engine;
use testkit::nodes::{Flavor, TestCluster};
use testkit::spdk_env::real_or_skip;

const REPLICA_NQN: &str = "nqn.2016-06.io.shorthorn:dp-replica";
const ENGINE_HOST: &str = "nqn.2014-08.io.shorthorn:dp-engine";

async fn call(c: &SpdkClient, method: &str, params: Value) -> Value {
    let params = Some(params).filter(|p| p.as_object().is_none_or(|o| !o.is_empty()));
    c.call_raw(method, params)
        .await
        .unwrap_or_else(|e| panic!("{method}: {e}"))
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

async fn lvol_names(c: &SpdkClient) -> Vec<String> {
    let lvols = call(c, "bdev_lvol_get_lvols", json!({})).await;
    let mut names: Vec<String> = lvols
        .as_array()
        .expect("list")
        .iter()
        .map(|l| l["name"].as_str().expect("name").to_string())
        .collect();
    names.sort();
    names
}

async fn subsystem_nqns(c: &SpdkClient) -> Vec<String> {
    let subs = call(c, "nvmf_get_subsystems", json!({})).await;
    subs.as_array()
        .expect("list")
        .iter()
        .map(|s| s["nqn"].as_str().expect("nqn").to_string())
        .filter(|n| !n.contains("discovery"))
        .collect()
}

async fn scenario(flavor: Flavor) {
    let cluster =
        tokio::task::spawn_blocking(move || TestCluster::start_with(flavor, &first_node_engine(2)))
            .await
            .expect("join")
            .expect("start nodes");
    let (engine, replica) = (cluster.node(0), cluster.node(1));
    let dp = cluster.data_path();
    let c = SpdkClient::unix(&replica.rpc_socket);
    let aio = replica.aio_file.display().to_string();
    call(
        &c,
        "bdev_aio_create",
        json!({"name": "aio0", "filename": aio, "block_size": 4096}),
    )
    .await;
    call(
        &c,
        "bdev_lvol_create_lvstore",
        json!({"bdev_name": "aio0", "lvs_name": "lvs"}),
    )
    .await;
    call(
        &c,
        "bdev_lvol_create",
        json!({"lvol_name": "r", "size_in_mib": 8, "lvs_name": "lvs", "thin_provision": true}),
    )
    .await;

    // A free lvol: write, then read back, at an offset past the first cluster.
    let a = pattern(1, 64 << 10);
    let off = 5 << 20;
    dp.write(replica, "lvs/r", off, &a)
        .await
        .expect("write free lvol");
    assert_eq!(
        dp.read(replica, "lvs/r", off, a.len() as u64)
            .await
            .expect("read"),
        a
    );
    let unaligned = dp
        .read(replica, "lvs/r", 100, 4096)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        unaligned.contains("not whole 4096-byte blocks"),
        "{unaligned}"
    );
    let beyond = dp
        .read(replica, "lvs/r", 8 << 20, 4096)
        .await
        .unwrap_err()
        .to_string();
    assert!(beyond.contains("beyond"), "{beyond}");

    // Export it to the engine only, as a replica is: now it is claimed.
    // The real data path created the TCP transport for its own export.
    let transports = call(&c, "nvmf_get_transports", json!({})).await;
    if transports.as_array().is_none_or(|t| t.is_empty()) {
        call(&c, "nvmf_create_transport", json!({"trtype": "TCP"})).await;
    }
    call(
        &c,
        "nvmf_create_subsystem",
        json!({"nqn": REPLICA_NQN, "allow_any_host": false}),
    )
    .await;
    call(
        &c,
        "nvmf_subsystem_add_ns",
        json!({"nqn": REPLICA_NQN, "namespace": {"bdev_name": "lvs/r"}}),
    )
    .await;
    call(
        &c,
        "nvmf_subsystem_add_host",
        json!({"nqn": REPLICA_NQN, "host": ENGINE_HOST}),
    )
    .await;
    let port = replica.nvmf_port;
    call(
        &c,
        "nvmf_subsystem_add_listener",
        json!({"nqn": REPLICA_NQN, "listen_address": {"trtype": "TCP", "adrfam": "IPv4",
               "traddr": "127.0.0.1", "trsvcid": port.to_string()}}),
    )
    .await;
    let lvols_before = lvol_names(&c).await;

    // The claimed replica still reads, and nothing is left behind.
    let got = dp
        .read(replica, "lvs/r", off, a.len() as u64)
        .await
        .expect("read claimed replica");
    assert_eq!(got, a, "claimed replica read back");
    assert_eq!(
        lvol_names(&c).await,
        lvols_before,
        "the read left an lvol behind"
    );
    assert_eq!(
        subsystem_nqns(&c).await,
        [REPLICA_NQN],
        "the read left an export behind"
    );
    let refused = dp
        .write(replica, "lvs/r", 0, &a)
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("claimed"), "{refused}");

    // Its export admits the engine, not the data path's own host.
    let as_engine = Export {
        nqn: REPLICA_NQN.into(),
        host_nqn: ENGINE_HOST.into(),
        address: "127.0.0.1".into(),
        port,
        nsid: 1,
    };
    let b = pattern(2, 8192);
    dp.write_export(replica, &as_engine, 0, &b)
        .await
        .expect("write through export");
    assert_eq!(
        dp.read_export(replica, &as_engine, 0, 8192)
            .await
            .expect("read export"),
        b
    );
    let stranger = Export {
        host_nqn: TEST_HOST_NQN.into(),
        ..as_engine.clone()
    };
    assert!(
        dp.read_export(replica, &stranger, 0, 4096).await.is_err(),
        "an export admitted a host it does not list"
    );
    // The engine node's own bdevs work too (it polls spdk_tgt on real SPDK).
    let ce = SpdkClient::unix(&engine.rpc_socket);
    call(
        &ce,
        "bdev_malloc_create",
        json!({"name": "m0", "num_blocks": 2048, "block_size": 4096}),
    )
    .await;
    dp.write(engine, "m0", 4096, &b)
        .await
        .expect("write engine bdev");
    assert_eq!(
        dp.read(engine, "m0", 4096, 8192)
            .await
            .expect("read engine bdev"),
        b
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sim_data_path_reads_what_was_written() {
    scenario(Flavor::sim().expect("sim")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_data_path_reads_what_was_written() {
    let Some(real) = real_or_skip("the_real_data_path_reads_what_was_written") else {
        return;
    };
    scenario(Flavor::Real(real)).await;
}
