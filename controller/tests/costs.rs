//! Prints (does not assert) how many SPDK calls and how much time a 3-replica
//! CreateVolume and ControllerPublishVolume take against simulated nodes.

mod support;

use std::time::{Duration, Instant};

use csi_proto::controller_server::Controller;
use shorthorn_controller::context::Context;
use shorthorn_controller::server;
use shorthorn_controller::service::ControllerService;
use support::*;
use tonic::Request;

fn calls(ctx: &Context) -> u64 {
    ctx.nodes.all().iter().map(|n| n.client.call_count()).sum()
}

fn p50(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spdk_calls_and_latency_per_operation() {
    let mut h = Harness::start(3, StoreKind::Etcd).await;
    h.stop_controller().await;
    let ctx = server::start(&h.config()).await.expect("start");
    let service = ControllerService::new(ctx.clone());
    const ROUNDS: usize = 5;
    let (mut create_calls, mut create_times) = (Vec::new(), Vec::new());
    let (mut publish_calls, mut publish_times) = (Vec::new(), Vec::new());
    let mut ids = Vec::new();
    for i in 0..ROUNDS {
        let before = calls(&ctx);
        let t = Instant::now();
        let v = service
            .create_volume(Request::new(create_req(
                &format!("pvc-cost-{i}"),
                16 * MIB,
                Some(3),
            )))
            .await
            .expect("create")
            .into_inner()
            .volume
            .expect("volume");
        create_times.push(t.elapsed());
        create_calls.push(calls(&ctx) - before);

        let before = calls(&ctx);
        let t = Instant::now();
        service
            .controller_publish_volume(Request::new(publish_req(&v.volume_id, "node-0")))
            .await
            .expect("publish");
        publish_times.push(t.elapsed());
        publish_calls.push(calls(&ctx) - before);
        ids.push(v.volume_id);
    }
    println!(
        "CreateVolume (3 replicas): SPDK calls per op {create_calls:?}, p50 {:?}",
        p50(create_times)
    );
    println!(
        "ControllerPublishVolume (3 replicas, ublk): SPDK calls per op {publish_calls:?}, p50 {:?}",
        p50(publish_times)
    );
    let by_method: std::collections::BTreeMap<String, u64> = ctx
        .nodes
        .all()
        .iter()
        .flat_map(|n| n.client.calls_by_method())
        .fold(Default::default(), |mut acc, (m, c)| {
            *acc.entry(m).or_default() += c;
            acc
        });
    println!("SPDK calls by method over the whole run: {by_method:#?}");
    for id in &ids {
        service
            .controller_unpublish_volume(Request::new(unpublish_req(id, "node-0")))
            .await
            .expect("unpublish");
        service
            .delete_volume(Request::new(delete_req(id)))
            .await
            .expect("delete");
    }
    h.assert_clean().await;
}
