//! Every CSI refusal of the snapshot and clone calls, ListSnapshots paging
//! and filters, the capabilities, and revert_to_snapshot.

mod support;

use agent_api::FrontendKind as Frontend;
use csi_proto::{
    ControllerGetCapabilitiesRequest, GetPluginCapabilitiesRequest, GetSnapshotRequest,
    ListSnapshotsRequest,
};
use shorthorn_controller::error::ControllerError;
use shorthorn_controller::fence::Fencing;
use shorthorn_controller::ops;
use spdk_client::{BdevLvolCreateParams, BdevLvolDeleteParams, BdevLvolGetLvstoresParams};
use support::*;
use tonic::Code;

const UNKNOWN: &str = "0b7c3f1e-5d2a-4c1b-9e8f-123456789abc";

fn code<T: std::fmt::Debug>(r: Result<T, tonic::Status>) -> Code {
    r.expect_err("must be refused").code()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_refusals_paging_and_capabilities() {
    let mut h = Harness::start(3, StoreKind::Etcd).await;
    let caps = h
        .csi
        .controller_get_capabilities(ControllerGetCapabilitiesRequest {})
        .await
        .expect("caps")
        .into_inner();
    let text = format!("{caps:?}");
    for want in [
        "CreateDeleteSnapshot",
        "ListSnapshots",
        "GetSnapshot",
        "CloneVolume",
        "ExpandVolume",
    ] {
        assert!(text.contains(want), "{want} missing from {text}");
    }
    let plugin = h
        .identity
        .get_plugin_capabilities(GetPluginCapabilitiesRequest {})
        .await
        .expect("plugin caps")
        .into_inner();
    assert!(
        format!("{plugin:?}").contains("VolumeExpansion"),
        "{plugin:?}"
    );

    let mk = |name: &str, replicas| create_req(name, 8 * MIB, Some(replicas));
    let a = h
        .csi
        .create_volume(mk("pvc-a", 3))
        .await
        .expect("a")
        .into_inner()
        .volume
        .expect("v")
        .volume_id;
    let b = h
        .csi
        .create_volume(mk("pvc-b", 2))
        .await
        .expect("b")
        .into_inner()
        .volume
        .expect("v")
        .volume_id;

    assert_eq!(
        code(h.csi.create_snapshot(snap_req("", &a)).await),
        Code::InvalidArgument
    );
    assert_eq!(
        code(h.csi.create_snapshot(snap_req("s", "")).await),
        Code::InvalidArgument
    );
    assert_eq!(
        code(h.csi.create_snapshot(snap_req("s", UNKNOWN)).await),
        Code::NotFound
    );
    let s_a = h
        .csi
        .create_snapshot(snap_req("snap-a", &a))
        .await
        .expect("snap a")
        .into_inner()
        .snapshot
        .expect("s");
    assert_eq!(s_a.size_bytes, 8 * MIB);
    assert_eq!(
        code(h.csi.create_snapshot(snap_req("snap-a", &b)).await),
        Code::AlreadyExists
    );

    // Published read-write through ublk on a node without an agent: no unfenced snapshot.
    h.csi
        .controller_publish_volume(publish_req(&b, "node-0"))
        .await
        .expect("publish b");
    let refused = h
        .csi
        .create_snapshot(snap_req("snap-b-live", &b))
        .await
        .expect_err("unfenceable");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    println!("refusal: {}", refused.message());
    h.unpublish(&b, "node-0").await;

    // Clones: too small, unknown source, more replicas than the snapshot has.
    let s_b = h
        .csi
        .create_snapshot(snap_req("snap-b", &b))
        .await
        .expect("snap b")
        .into_inner()
        .snapshot
        .expect("s");
    assert_eq!(
        code(
            h.csi
                .create_volume(from_snapshot(
                    create_req("c1", 4 * MIB, Some(2)),
                    &s_b.snapshot_id
                ))
                .await
        ),
        Code::OutOfRange
    );
    assert_eq!(
        code(
            h.csi
                .create_volume(from_snapshot(create_req("c2", 8 * MIB, Some(2)), UNKNOWN))
                .await
        ),
        Code::NotFound
    );
    assert_eq!(
        code(
            h.csi
                .create_volume(from_volume(create_req("c3", 8 * MIB, Some(2)), UNKNOWN))
                .await
        ),
        Code::NotFound
    );
    assert_eq!(
        code(
            h.csi
                .create_volume(from_snapshot(
                    create_req("c4", 8 * MIB, Some(3)),
                    &s_b.snapshot_id
                ))
                .await
        ),
        Code::ResourceExhausted
    );
    assert_eq!(
        code(
            h.csi
                .get_snapshot(GetSnapshotRequest {
                    snapshot_id: UNKNOWN.into(),
                    ..Default::default()
                })
                .await
        ),
        Code::NotFound
    );

    // Paging: stable, complete, no duplicates; filters.
    let mut all = vec![s_a.snapshot_id.clone(), s_b.snapshot_id.clone()];
    for i in 0..4 {
        all.push(
            h.csi
                .create_snapshot(snap_req(&format!("page-{i}"), &a))
                .await
                .expect("snap")
                .into_inner()
                .snapshot
                .expect("s")
                .snapshot_id,
        );
    }
    all.sort();
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = h
            .csi
            .list_snapshots(ListSnapshotsRequest {
                max_entries: 4,
                starting_token: token.clone(),
                ..Default::default()
            })
            .await
            .expect("page")
            .into_inner();
        assert!(page.entries.len() <= 4);
        seen.extend(
            page.entries
                .iter()
                .map(|e| e.snapshot.clone().expect("s").snapshot_id),
        );
        if page.next_token.is_empty() {
            break;
        }
        token = page.next_token;
    }
    assert_eq!(seen, all);
    let bad = ListSnapshotsRequest {
        starting_token: "bogus".into(),
        ..Default::default()
    };
    assert_eq!(code(h.csi.list_snapshots(bad).await), Code::Aborted);
    let neg = ListSnapshotsRequest {
        max_entries: -1,
        ..Default::default()
    };
    assert_eq!(code(h.csi.list_snapshots(neg).await), Code::InvalidArgument);
    let of_b = h
        .csi
        .list_snapshots(ListSnapshotsRequest {
            source_volume_id: b.clone(),
            ..Default::default()
        })
        .await
        .expect("of b")
        .into_inner();
    assert_eq!(of_b.entries.len(), 1);
    let one = h
        .csi
        .list_snapshots(ListSnapshotsRequest {
            snapshot_id: s_a.snapshot_id.clone(),
            ..Default::default()
        })
        .await
        .expect("one")
        .into_inner();
    assert_eq!(one.entries.len(), 1);
    let none = h
        .csi
        .list_snapshots(ListSnapshotsRequest {
            snapshot_id: UNKNOWN.into(),
            ..Default::default()
        })
        .await
        .expect("none")
        .into_inner();
    assert!(none.entries.is_empty());

    // A nearly full lvstore refuses a snapshot rather than risk a silent raid degrade.
    let node2 = h.spdk(2);
    let lvs = node2
        .bdev_lvol_get_lvstores(&BdevLvolGetLvstoresParams::default())
        .await
        .expect("lvs")
        .remove(0);
    let free_mib = lvs.free_clusters * lvs.cluster_size / (1024 * 1024);
    node2
        .bdev_lvol_create(&BdevLvolCreateParams {
            lvol_name: "filler".into(),
            size_in_mib: free_mib - lvs.cluster_size / (1024 * 1024),
            thin_provision: Some(false),
            lvs_name: Some(LVS.into()),
            ..Default::default()
        })
        .await
        .expect("filler");
    assert_eq!(
        code(h.csi.create_snapshot(snap_req("snap-full", &a)).await),
        Code::ResourceExhausted
    );
    node2
        .bdev_lvol_delete(&BdevLvolDeleteParams {
            name: format!("{LVS}/filler"),
        })
        .await
        .expect("drop filler");

    for s in &all {
        h.delete_snapshot(s).await;
    }
    assert_eq!(
        code(h.csi.delete_snapshot(delete_snap_req("")).await),
        Code::InvalidArgument
    );
    h.delete_snapshot(UNKNOWN).await; // unknown is fine
    h.delete_volume(&a).await;
    h.delete_volume(&b).await;
    h.assert_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revert_restores_the_snapshot_on_every_replica_and_refuses_while_published() {
    let h = Harness::start(3, StoreKind::Etcd).await;
    let ctx = own_context(h.config(), Frontend::Ublk, Fencing::default()).await;
    let vol = own_volume(&ctx, "pvc-revert", 8, 3).await;
    let a = pattern(128 * 1024, 1);
    let b = pattern(128 * 1024, 2);
    let write = |data: Vec<u8>| {
        let (ctx, vol, c) = (ctx.clone(), vol.clone(), h.spdk(0));
        async move {
            ops::publish::publish(&ctx, &vol, "node-0", false)
                .await
                .expect("publish");
            sim_write(&c, &raid(&vol), 0, &data).await;
            ops::unpublish::unpublish(&ctx, &vol, None)
                .await
                .expect("unpublish");
        }
    };
    write(a.clone()).await;
    let snap = ops::snapshot_create::create_snapshot(&ctx, "before", &vol)
        .await
        .expect("snapshot");
    write(b.clone()).await;

    ops::publish::publish(&ctx, &vol, "node-0", false)
        .await
        .expect("publish");
    assert!(matches!(
        ops::revert::revert_to_snapshot(&ctx, &vol, &snap.id).await,
        Err(ControllerError::RevertWhilePublished { .. })
    ));
    ops::unpublish::unpublish(&ctx, &vol, None)
        .await
        .expect("unpublish");
    assert!(matches!(
        ops::revert::revert_to_snapshot(&ctx, &vol, UNKNOWN).await,
        Err(ControllerError::SnapshotNotFound { .. })
    ));

    ops::revert::revert_to_snapshot(&ctx, &vol, &snap.id)
        .await
        .expect("revert");
    let clients: Vec<_> = (0..3).map(|i| h.spdk(i)).collect();
    let sums = checksums(&clients, &replica_alias(&vol), a.len() as u64).await;
    assert!(sums.iter().all(|s| *s == checksum(&a)), "{sums:x?}");
    // The replica records follow the new lvols, and the volume still publishes and reads A.
    assert_replica_records_follow_lvols(&h, &ctx, &vol, "after revert").await;
    ops::publish::publish(&ctx, &vol, "node-1", false)
        .await
        .expect("publish after revert");
    assert_eq!(
        sim_read(&h.spdk(1), &raid(&vol), 0, a.len() as u64).await,
        a
    );
    ops::unpublish::unpublish(&ctx, &vol, None)
        .await
        .expect("unpublish");

    ops::snapshot_delete::delete_snapshot(&ctx, &snap.id)
        .await
        .expect("delete snapshot");
    ops::delete_volume::delete_volume(&ctx, &vol)
        .await
        .expect("delete volume");
    h.assert_clean().await;
}
