//! Every refusal the Controller service makes, and that none changes anything.

mod support;

use std::collections::HashMap;

use csi_proto::volume_capability::access_mode::Mode;
use csi_proto::volume_content_source::{SnapshotSource, Type as Source};
use csi_proto::{
    CapacityRange, ControllerGetVolumeRequest, GetCapacityRequest, ListVolumesRequest,
    ValidateVolumeCapabilitiesRequest, VolumeContentSource,
};
use support::*;
use tonic::Code;

/// Volumes (by name), replica lvols and other SPDK objects, for before/after checks.
async fn state(h: &mut Harness) -> (Vec<String>, Vec<String>, Vec<String>) {
    let mut names: Vec<String> = h
        .csi
        .list_volumes(ListVolumesRequest::default())
        .await
        .expect("list")
        .into_inner()
        .entries
        .into_iter()
        .filter_map(|e| e.volume)
        .map(|v| v.volume_id)
        .collect();
    names.sort();
    let mut lvols = h.replica_lvols().await;
    lvols.sort();
    let mut left = h.leftovers().await;
    left.sort();
    (names, lvols, left)
}

fn code<T: std::fmt::Debug>(r: Result<T, tonic::Status>) -> (Code, String) {
    let s = r.expect_err("call should fail");
    (s.code(), s.message().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_name_the_problem_and_change_nothing() {
    let mut h = Harness::start(3, StoreKind::Embedded).await;
    let vol = h
        .csi
        .create_volume(create_req("pvc-base", 16 * MIB, Some(2)))
        .await
        .expect("create")
        .into_inner()
        .volume
        .expect("volume");
    let id = vol.volume_id.clone();
    // Same name and size: the same volume.
    let again = h
        .csi
        .create_volume(create_req("pvc-base", 16 * MIB, Some(2)))
        .await
        .expect("idempotent create")
        .into_inner()
        .volume
        .expect("volume");
    assert_eq!(again.volume_id, id);
    h.csi
        .controller_publish_volume(publish_req(&id, "node-0"))
        .await
        .expect("publish");
    let before = state(&mut h).await;

    // INVALID_ARGUMENT
    let mut no_name = create_req("", 16 * MIB, None);
    no_name.name.clear();
    let (c, m) = code(h.csi.create_volume(no_name).await);
    assert_eq!(c, Code::InvalidArgument);
    assert!(m.contains("name"), "{m}");
    let mut no_caps = create_req("pvc-x", 16 * MIB, None);
    no_caps.volume_capabilities.clear();
    assert_eq!(
        code(h.csi.create_volume(no_caps).await).0,
        Code::InvalidArgument
    );
    let (c, m) = code(
        h.csi
            .create_volume(create_req("pvc-x", 16 * MIB, Some(0)))
            .await,
    );
    assert_eq!(c, Code::InvalidArgument);
    assert!(m.contains("numberOfReplicas"), "{m}");
    let mut unknown = create_req("pvc-x", 16 * MIB, None);
    unknown.parameters = HashMap::from([("colour".to_string(), "blue".to_string())]);
    let (c, m) = code(h.csi.create_volume(unknown).await);
    assert_eq!(c, Code::InvalidArgument);
    assert!(m.contains("colour"), "{m}");
    let mut from_snapshot = create_req("pvc-x", 16 * MIB, None);
    from_snapshot.volume_content_source = Some(VolumeContentSource {
        r#type: Some(Source::Snapshot(SnapshotSource {
            snapshot_id: "s".into(),
        })),
    });
    assert_eq!(
        code(h.csi.create_volume(from_snapshot).await).0,
        Code::NotFound,
        "a content source naming an unknown snapshot"
    );
    let mut multi = create_req("pvc-x", 16 * MIB, None);
    multi.volume_capabilities[0]
        .access_mode
        .as_mut()
        .expect("mode")
        .mode = Mode::MultiNodeMultiWriter.into();
    assert_eq!(
        code(h.csi.create_volume(multi).await).0,
        Code::InvalidArgument
    );
    let mut no_node = publish_req(&id, "");
    no_node.node_id.clear();
    assert_eq!(
        code(h.csi.controller_publish_volume(no_node).await).0,
        Code::InvalidArgument
    );
    let mut no_cap = publish_req(&id, "node-0");
    no_cap.volume_capability = None;
    assert_eq!(
        code(h.csi.controller_publish_volume(no_cap).await).0,
        Code::InvalidArgument
    );
    assert_eq!(
        code(h.csi.delete_volume(delete_req("")).await).0,
        Code::InvalidArgument
    );

    // OUT_OF_RANGE
    let mut inverted = create_req("pvc-x", 16 * MIB, None);
    inverted.capacity_range = Some(CapacityRange {
        required_bytes: 16 * MIB,
        limit_bytes: 8 * MIB,
    });
    assert_eq!(
        code(h.csi.create_volume(inverted).await).0,
        Code::OutOfRange
    );
    let mut unroundable = create_req("pvc-x", 16 * MIB, None);
    unroundable.capacity_range = Some(CapacityRange {
        required_bytes: 5 * MIB,
        limit_bytes: 6 * MIB,
    });
    let (c, m) = code(h.csi.create_volume(unroundable).await);
    assert_eq!(c, Code::OutOfRange);
    assert!(m.contains("limit"), "{m}");

    // ALREADY_EXISTS
    let (c, m) = code(
        h.csi
            .create_volume(create_req("pvc-base", 32 * MIB, Some(2)))
            .await,
    );
    assert_eq!(c, Code::AlreadyExists);
    assert!(m.contains("pvc-base"), "{m}");

    // RESOURCE_EXHAUSTED
    let (c, m) = code(
        h.csi
            .create_volume(create_req("pvc-x", 16 * MIB, Some(4)))
            .await,
    );
    assert_eq!(c, Code::ResourceExhausted);
    assert!(m.contains("4 replicas"), "{m}");
    let (c, m) = code(
        h.csi
            .create_volume(create_req("pvc-x", 2048 * MIB, Some(1)))
            .await,
    );
    assert_eq!(c, Code::ResourceExhausted);
    assert!(m.contains("provisionable"), "{m}");

    // NOT_FOUND
    let ghost = "00000000-0000-4000-8000-000000000000";
    assert_eq!(
        code(
            h.csi
                .controller_publish_volume(publish_req(ghost, "node-0"))
                .await
        )
        .0,
        Code::NotFound
    );
    let (c, m) = code(
        h.csi
            .controller_publish_volume(publish_req(&id, "node-9"))
            .await,
    );
    assert_eq!(c, Code::NotFound);
    assert!(m.contains("node-9"), "{m}");
    assert_eq!(
        code(
            h.csi
                .controller_get_volume(ControllerGetVolumeRequest {
                    volume_id: ghost.into()
                })
                .await
        )
        .0,
        Code::NotFound
    );
    assert_eq!(
        code(
            h.csi
                .validate_volume_capabilities(ValidateVolumeCapabilitiesRequest {
                    volume_id: ghost.into(),
                    volume_capabilities: vec![block_cap()],
                    ..Default::default()
                })
                .await
        )
        .0,
        Code::NotFound
    );

    // FAILED_PRECONDITION
    let (c, m) = code(
        h.csi
            .controller_publish_volume(publish_req(&id, "node-1"))
            .await,
    );
    assert_eq!(c, Code::FailedPrecondition);
    assert!(m.contains("node-0"), "{m}");
    let (c, m) = code(h.csi.delete_volume(delete_req(&id)).await);
    assert_eq!(c, Code::FailedPrecondition);
    assert!(m.contains("published"), "{m}");

    // ABORTED
    let (c, _) = code(
        h.csi
            .list_volumes(ListVolumesRequest {
                max_entries: 1,
                starting_token: "not-a-token".into(),
            })
            .await,
    );
    assert_eq!(c, Code::Aborted);

    // Unknown ids are fine to delete and unpublish.
    h.delete_volume(ghost).await;
    h.unpublish(ghost, "node-0").await;

    assert_eq!(state(&mut h).await, before, "a refused call changed state");

    h.unpublish(&id, "node-0").await;
    h.delete_volume(&id).await;
    h.assert_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_pages_are_stable_and_capacity_shrinks_as_volumes_are_created() {
    let mut h = Harness::start(3, StoreKind::Embedded).await;
    let capacity = |h: &mut Harness| {
        let mut csi = h.csi.clone();
        async move {
            csi.get_capacity(GetCapacityRequest {
                parameters: HashMap::from([("numberOfReplicas".into(), "3".into())]),
                ..Default::default()
            })
            .await
            .expect("capacity")
            .into_inner()
        }
    };
    let empty = capacity(&mut h).await;
    assert!(empty.available_capacity > 0);

    let mut ids = Vec::new();
    for i in 0..5 {
        let v = h
            .csi
            .create_volume(create_req(&format!("pvc-{i}"), 64 * MIB, Some(3)))
            .await
            .expect("create")
            .into_inner()
            .volume
            .expect("volume");
        ids.push(v.volume_id);
    }
    let after = capacity(&mut h).await;
    assert_eq!(
        empty.available_capacity - after.available_capacity,
        5 * 64 * MIB,
        "each 3-replica volume consumes its size once per replica, i.e. its size of 3-way capacity"
    );

    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = h
            .csi
            .list_volumes(ListVolumesRequest {
                max_entries: 2,
                starting_token: token.clone(),
            })
            .await
            .expect("page")
            .into_inner();
        assert!(page.entries.len() <= 2);
        seen.extend(
            page.entries
                .into_iter()
                .filter_map(|e| e.volume)
                .map(|v| v.volume_id),
        );
        if page.next_token.is_empty() {
            break;
        }
        token = page.next_token;
    }
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(
        seen, expected,
        "every volume exactly once, in a stable order"
    );

    for id in &ids {
        h.delete_volume(id).await;
    }
    assert_eq!(
        capacity(&mut h).await.available_capacity,
        empty.available_capacity
    );
    h.assert_clean().await;
}
