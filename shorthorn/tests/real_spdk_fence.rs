//! The node agent's ANA fence lease against a real spdk_tgt
//! (`SHORTHORN_SPDK_TGT`): the exact calls it makes are accepted, the
//! listener's ANA groups go inaccessible and back, the lease restores by
//! itself, a restarted agent restores what its previous run left, and a
//! subsystem that is not a Shorthorn volume's is never touched. Skips with
//! a message when the variable is unset.

// The controller's test harness; these tests also run a real node agent,
// so they live in the crate that links both.
mod node_agent;
#[path = "../../controller/tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use agent_api::ana_fence::FenceListener;
use agent_api::client::{AgentClient, AgentError};
use agent_api::{AnaFenceResumeRequest, AnaFenceSuspendRequest};
use node_agent::{NodeAgent, AGENT_TOKEN};
use serde_json::json;
use spdk_client::{NvmfSubsystemGetListenersParams, SpdkClient};
use testkit::nodes::TestCluster;

/// The ANA states of every group of `nqn`'s listeners, as spdk_tgt reports them.
async fn states(spdk: &SpdkClient, nqn: &str) -> Vec<String> {
    spdk.nvmf_subsystem_get_listeners(&NvmfSubsystemGetListenersParams {
        nqn: nqn.into(),
        tgt_name: None,
    })
    .await
    .expect("listeners")
    .into_iter()
    .flat_map(|l| l.ana_states.into_iter().map(|s| s.ana_state))
    .collect()
}

async fn all_are(spdk: &SpdkClient, nqn: &str, state: &str) -> bool {
    let got = states(spdk, nqn).await;
    !got.is_empty() && got.iter().all(|s| s == state)
}

async fn wait_all(spdk: &SpdkClient, nqn: &str, state: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    while !all_are(spdk, nqn, state).await {
        assert!(
            started.elapsed() < limit,
            "{nqn} not {state} within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

/// A subsystem with ANA reporting, a malloc namespace and a loopback listener.
async fn subsystem(spdk: &SpdkClient, nqn: &str, bdev: &str, port: u16) {
    let call = |method: &'static str, params: serde_json::Value| async move {
        spdk.call_raw(method, Some(params))
            .await
            .unwrap_or_else(|e| panic!("{method}: {e}"))
    };
    call(
        "bdev_malloc_create",
        json!({"name": bdev, "num_blocks": 2048, "block_size": 4096}),
    )
    .await;
    call(
        "nvmf_create_subsystem",
        json!({"nqn": nqn, "allow_any_host": true, "ana_reporting": true}),
    )
    .await;
    call(
        "nvmf_subsystem_add_ns",
        json!({"nqn": nqn, "namespace": {"bdev_name": bdev}}),
    )
    .await;
    call(
        "nvmf_subsystem_add_listener",
        json!({"nqn": nqn, "listen_address": {"trtype": "TCP", "adrfam": "IPv4", "traddr": "127.0.0.1", "trsvcid": port.to_string()}}),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_fence_lease_on_real_spdk_tgt() {
    if std::env::var_os(testkit::nodes::SPDK_TGT_ENV).is_none() {
        eprintln!(
            "SKIPPED: set {}=/path/to/spdk_tgt to run the ANA fence against real SPDK",
            testkit::nodes::SPDK_TGT_ENV
        );
        return;
    }
    let cluster = tokio::task::spawn_blocking(|| TestCluster::start(1))
        .await
        .expect("join")
        .expect("start spdk_tgt");
    assert!(cluster.is_real_spdk());
    let node = cluster.node(0);
    let spdk = SpdkClient::unix(node.rpc_socket.clone());
    spdk.call_raw("nvmf_create_transport", Some(json!({"trtype": "TCP"})))
        .await
        .expect("transport");
    let nqn = format!(
        "nqn.2025-11.io.shorthorn:volume:{}",
        uuid::Uuid::new_v4().hyphenated()
    );
    let foreign = "nqn.2016-06.io.spdk:not-shorthorn";
    subsystem(&spdk, &nqn, "m0", node.nvmf_port).await;
    subsystem(&spdk, foreign, "m1", node.nvmf_port).await;
    spdk.call_raw(
        "nvmf_subsystem_listener_set_ana_state",
        Some(json!({"nqn": foreign, "ana_state": "inaccessible",
            "listen_address": {"trtype": "TCP", "adrfam": "IPv4", "traddr": "127.0.0.1", "trsvcid": node.nvmf_port.to_string()}})),
    )
    .await
    .expect("fence the foreign subsystem by hand");
    assert!(all_are(&spdk, &nqn, "optimized").await);

    let dir = tempfile::tempdir().expect("tempdir");
    let mut agent = NodeAgent::start(
        dir.path(),
        "node-0",
        node.nvmf_port,
        &node.aio_file,
        &node.rpc_socket,
    )
    .await;
    let client = AgentClient::new(&agent.url(), AGENT_TOKEN, None).expect("client");
    let listener = FenceListener::loopback(node.nvmf_port);
    let suspend = |deadline_ms| AnaFenceSuspendRequest {
        nqn: nqn.clone(),
        listener: listener.clone(),
        deadline_ms,
    };
    let resume = AnaFenceResumeRequest {
        nqn: nqn.clone(),
        listener: listener.clone(),
    };

    // Suspend: every ANA group inaccessible, the drain barrier accepted.
    let started = Instant::now();
    client
        .ana_fence_suspend(&suspend(5000))
        .await
        .expect("suspend");
    println!(
        "MEASURE real spdk_tgt: agent suspend (inaccessible + drain) took {:?}",
        started.elapsed()
    );
    assert!(
        all_are(&spdk, &nqn, "inaccessible").await,
        "{:?}",
        states(&spdk, &nqn).await
    );
    let answer = client.ana_fence_resume(&resume).await.expect("resume");
    assert!(!answer.expired);
    assert!(all_are(&spdk, &nqn, "optimized").await);

    // A lease that runs out restores by itself.
    client
        .ana_fence_suspend(&suspend(500))
        .await
        .expect("suspend");
    let restored = wait_all(&spdk, &nqn, "optimized", Duration::from_secs(5)).await;
    println!("MEASURE real spdk_tgt: a 500 ms lease restored optimized {restored:?} after suspend returned");
    assert!(
        client
            .ana_fence_resume(&resume)
            .await
            .expect("resume")
            .expired
    );

    // A restarted agent restores the path its previous run left fenced.
    client
        .ana_fence_suspend(&suspend(30_000))
        .await
        .expect("suspend");
    agent.crash_and_restart().await;
    let restored = wait_all(&spdk, &nqn, "optimized", Duration::from_secs(10)).await;
    println!("MEASURE real spdk_tgt: restarted agent restored the path in {restored:?}");
    let answer = client.ana_fence_resume(&resume).await.expect("resume");
    assert!(answer.expired, "the new agent holds no lease");

    // Not a Shorthorn volume: refused before SPDK, its state untouched.
    let hostile = AnaFenceResumeRequest {
        nqn: foreign.into(),
        listener: listener.clone(),
    };
    let err = client.ana_fence_resume(&hostile).await.unwrap_err();
    assert!(
        matches!(err, AgentError::Status { status: 400, .. }),
        "{err}"
    );
    assert!(all_are(&spdk, foreign, "inaccessible").await);
    drop(agent);
}
