//! ControllerExpandVolume: every replica grows, a published raid1 and the
//! initiator attached to its NVMe/TCP frontend see the new size, data
//! written before and after stays, and the CSI answers are right.

mod support;

use std::time::Duration;

use agent_api::FrontendKind as Frontend;
use csi_proto::volume_capability::{AccessMode, AccessType, MountVolume};
use csi_proto::{CapacityRange, ControllerExpandVolumeRequest, VolumeCapability};
use shorthorn_controller::error::ControllerError;
use shorthorn_controller::fence::Fencing;
use shorthorn_controller::ops;
use support::*;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_volume_grows_on_every_replica_and_at_the_frontend() {
    let h = Harness::start(3, StoreKind::Etcd).await;
    let ctx = own_context(h.config(), Frontend::NvmeTcp, Fencing::default()).await;
    let vol = own_volume(&ctx, "pvc-grow", 16, 3).await;
    ops::publish::publish(&ctx, &vol, "node-0", false)
        .await
        .expect("publish");
    let kernel = h.spdk(1);
    let ns = kernel
        .bdev_nvme_attach_controller(&kernel_attach_params(&h, &vol))
        .await
        .expect("attach frontend")
        .remove(0);
    let before = pattern(64 * 1024, 5);
    sim_write(&kernel, &ns, 0, &before).await;

    let grown = 32 * MIB as u64;
    assert_eq!(
        ops::expand::expand_volume(&ctx, &vol, grown)
            .await
            .expect("expand"),
        grown
    );
    for i in 0..3 {
        let lvol = h
            .spdk(i)
            .bdev_get(&replica_alias(&vol))
            .await
            .expect("get")
            .expect("lvol");
        assert_eq!(lvol.size_bytes(), grown, "replica on node-{i}");
    }
    let raid_size = h
        .spdk(0)
        .bdev_get(&raid(&vol))
        .await
        .expect("get")
        .expect("raid")
        .size_bytes();
    assert_eq!(raid_size, grown, "raid1 on the publishing node");
    // The initiator learns the new size from the target (bounded wait).
    let mut seen = 0;
    for _ in 0..200 {
        seen = kernel
            .bdev_get(&ns)
            .await
            .expect("get")
            .expect("ns")
            .size_bytes();
        if seen == grown {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen, grown, "namespace size at the initiator");

    // Beyond the old end, through the frontend, onto every replica.
    let after = pattern(64 * 1024, 9);
    let offset = 24 * MIB as u64;
    sim_write(&kernel, &ns, offset, &after).await;
    for i in 0..3 {
        let c = h.spdk(i);
        assert_eq!(
            sim_read(&c, &replica_alias(&vol), 0, before.len() as u64).await,
            before
        );
        assert_eq!(
            sim_read(&c, &replica_alias(&vol), offset, after.len() as u64).await,
            after
        );
    }

    // Idempotent; never shrinks.
    assert_eq!(
        ops::expand::expand_volume(&ctx, &vol, grown)
            .await
            .expect("again"),
        grown
    );
    assert!(matches!(
        ops::expand::expand_volume(&ctx, &vol, 16 * MIB as u64).await,
        Err(ControllerError::ShrinkRefused { .. })
    ));

    detach_kernel(&kernel).await;
    ops::unpublish::unpublish(&ctx, &vol, None)
        .await
        .expect("unpublish");
    ops::delete_volume::delete_volume(&ctx, &vol)
        .await
        .expect("delete");
    h.assert_clean().await;
}

fn expand_req(
    volume: &str,
    bytes: i64,
    cap: Option<VolumeCapability>,
) -> ControllerExpandVolumeRequest {
    ControllerExpandVolumeRequest {
        volume_id: volume.to_string(),
        capacity_range: Some(CapacityRange {
            required_bytes: bytes,
            limit_bytes: 0,
        }),
        volume_capability: cap,
        ..Default::default()
    }
}

fn mount_cap() -> VolumeCapability {
    VolumeCapability {
        access_mode: Some(AccessMode {
            mode: csi_proto::volume_capability::access_mode::Mode::SingleNodeWriter.into(),
        }),
        access_type: Some(AccessType::Mount(MountVolume {
            fs_type: "ext4".into(),
            ..Default::default()
        })),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expand_answers_and_refusals() {
    let mut h = Harness::start(2, StoreKind::Etcd).await;
    let vol = h.create_volume("pvc-exp", 8 * MIB, Some(2)).await;
    let fs = h
        .csi
        .controller_expand_volume(expand_req(&vol, 12 * MIB, Some(mount_cap())))
        .await
        .expect("expand fs")
        .into_inner();
    assert_eq!(fs.capacity_bytes, 12 * MIB);
    assert!(
        fs.node_expansion_required,
        "a filesystem must grow on the node"
    );
    let block = h
        .csi
        .controller_expand_volume(expand_req(&vol, 16 * MIB, Some(block_cap())))
        .await
        .expect("expand block")
        .into_inner();
    assert_eq!(block.capacity_bytes, 16 * MIB);
    assert!(!block.node_expansion_required);
    let code = |r: Result<
        tonic::Response<csi_proto::ControllerExpandVolumeResponse>,
        tonic::Status,
    >| r.expect_err("must fail").code();
    assert_eq!(
        code(
            h.csi
                .controller_expand_volume(expand_req(&vol, 8 * MIB, None))
                .await
        ),
        Code::OutOfRange
    );
    assert_eq!(
        code(
            h.csi
                .controller_expand_volume(expand_req(
                    "0b7c3f1e-5d2a-4c1b-9e8f-123456789abc",
                    8 * MIB,
                    None
                ))
                .await
        ),
        Code::NotFound
    );
    let mut no_range = expand_req(&vol, 0, None);
    no_range.capacity_range = None;
    assert_eq!(
        code(h.csi.controller_expand_volume(no_range).await),
        Code::InvalidArgument
    );
    assert_eq!(
        code(
            h.csi
                .controller_expand_volume(expand_req("", 8 * MIB, None))
                .await
        ),
        Code::InvalidArgument
    );
    // Published through ublk: the device cannot change size online.
    h.csi
        .controller_publish_volume(publish_req(&vol, "node-0"))
        .await
        .expect("publish");
    assert_eq!(
        code(
            h.csi
                .controller_expand_volume(expand_req(&vol, 20 * MIB, None))
                .await
        ),
        Code::FailedPrecondition
    );
    h.unpublish(&vol, "node-0").await;
    h.delete_volume(&vol).await;
    h.assert_clean().await;
}
