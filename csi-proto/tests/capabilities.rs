//! Enum numbering and capability encoding checked against the CSI v1.12 spec.

use csi_proto::controller_service_capability::rpc::Type as CtrlRpc;
use csi_proto::controller_service_capability::{Rpc, Type as CtrlCap};
use csi_proto::node_service_capability::rpc::Type as NodeRpc;
use csi_proto::plugin_capability::service::Type as PluginService;
use csi_proto::volume_capability::access_mode::Mode;
use csi_proto::{
    group_controller_service_capability, BlockMetadataType, ControllerGetCapabilitiesResponse,
    ControllerServiceCapability,
};
use prost::Message;

fn cap(t: CtrlRpc) -> ControllerServiceCapability {
    ControllerServiceCapability {
        r#type: Some(CtrlCap::Rpc(Rpc { r#type: t.into() })),
    }
}

#[test]
fn controller_capabilities_round_trip_with_spec_numbers() {
    let resp = ControllerGetCapabilitiesResponse {
        capabilities: vec![
            cap(CtrlRpc::CreateDeleteVolume),
            cap(CtrlRpc::ModifyVolume),
            cap(CtrlRpc::GetSnapshot),
        ],
    };
    let bytes = resp.encode_to_vec();

    // capabilities = 1 { rpc = 1 { type = 1 (varint) } } per entry.
    assert_eq!(
        bytes,
        vec![
            0x0a, 0x04, 0x0a, 0x02, 0x08, 1, //
            0x0a, 0x04, 0x0a, 0x02, 0x08, 14, //
            0x0a, 0x04, 0x0a, 0x02, 0x08, 15,
        ]
    );

    let decoded = ControllerGetCapabilitiesResponse::decode(bytes.as_slice()).expect("decode");
    assert_eq!(decoded, resp);
    let types: Vec<CtrlRpc> = decoded
        .capabilities
        .iter()
        .filter_map(|c| c.r#type.as_ref().map(|CtrlCap::Rpc(rpc)| rpc.r#type()))
        .collect();
    assert_eq!(
        types,
        vec![
            CtrlRpc::CreateDeleteVolume,
            CtrlRpc::ModifyVolume,
            CtrlRpc::GetSnapshot
        ]
    );
}

#[test]
fn unknown_enum_number_is_preserved_but_reads_as_default() {
    // A newer peer may send a capability this spec version lacks (99).
    let bytes = [0x0a, 0x04, 0x0a, 0x02, 0x08, 99];
    let decoded = ControllerGetCapabilitiesResponse::decode(&bytes[..]).expect("decode");
    match &decoded.capabilities[0].r#type {
        Some(CtrlCap::Rpc(rpc)) => {
            assert_eq!(rpc.r#type, 99);
            assert_eq!(rpc.r#type(), CtrlRpc::Unknown);
            assert!(CtrlRpc::try_from(rpc.r#type).is_err());
        }
        None => panic!("capability lost"),
    }
}

#[test]
fn controller_rpc_type_numbers_match_spec() {
    let expected = [
        (CtrlRpc::Unknown, 0),
        (CtrlRpc::CreateDeleteVolume, 1),
        (CtrlRpc::PublishUnpublishVolume, 2),
        (CtrlRpc::ListVolumes, 3),
        (CtrlRpc::GetCapacity, 4),
        (CtrlRpc::CreateDeleteSnapshot, 5),
        (CtrlRpc::ListSnapshots, 6),
        (CtrlRpc::CloneVolume, 7),
        (CtrlRpc::PublishReadonly, 8),
        (CtrlRpc::ExpandVolume, 9),
        (CtrlRpc::ListVolumesPublishedNodes, 10),
        (CtrlRpc::VolumeCondition, 11),
        (CtrlRpc::GetVolume, 12),
        (CtrlRpc::SingleNodeMultiWriter, 13),
        (CtrlRpc::ModifyVolume, 14),
        (CtrlRpc::GetSnapshot, 15),
    ];
    for (variant, number) in expected {
        assert_eq!(variant as i32, number, "{variant:?}");
        assert_eq!(CtrlRpc::try_from(number), Ok(variant));
    }
    assert_eq!(CtrlRpc::GetSnapshot.as_str_name(), "GET_SNAPSHOT");
    assert_eq!(
        CtrlRpc::from_str_name("MODIFY_VOLUME"),
        Some(CtrlRpc::ModifyVolume)
    );
}

#[test]
fn access_mode_numbers_match_spec() {
    let expected = [
        (Mode::Unknown, 0),
        (Mode::SingleNodeWriter, 1),
        (Mode::SingleNodeReaderOnly, 2),
        (Mode::MultiNodeReaderOnly, 3),
        (Mode::MultiNodeSingleWriter, 4),
        (Mode::MultiNodeMultiWriter, 5),
        (Mode::SingleNodeSingleWriter, 6),
        (Mode::SingleNodeMultiWriter, 7),
    ];
    for (variant, number) in expected {
        assert_eq!(variant as i32, number, "{variant:?}");
    }
    assert!(Mode::try_from(8).is_err());
}

#[test]
fn other_capability_enums_match_spec() {
    assert_eq!(NodeRpc::StageUnstageVolume as i32, 1);
    assert_eq!(NodeRpc::GetVolumeStats as i32, 2);
    assert_eq!(NodeRpc::ExpandVolume as i32, 3);
    assert_eq!(NodeRpc::VolumeCondition as i32, 4);
    assert_eq!(NodeRpc::SingleNodeMultiWriter as i32, 5);
    assert_eq!(NodeRpc::VolumeMountGroup as i32, 6);

    assert_eq!(PluginService::ControllerService as i32, 1);
    assert_eq!(PluginService::VolumeAccessibilityConstraints as i32, 2);
    assert_eq!(PluginService::GroupControllerService as i32, 3);
    assert_eq!(PluginService::SnapshotMetadataService as i32, 4);

    assert_eq!(
        group_controller_service_capability::rpc::Type::CreateDeleteGetVolumeGroupSnapshot as i32,
        1
    );
    assert_eq!(BlockMetadataType::VariableLength as i32, 2);
}

#[test]
fn spec_version_constant() {
    assert_eq!(csi_proto::CSI_SPEC_VERSION, "1.12.0");
}
