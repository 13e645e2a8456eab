//! Decodes protobuf wire bytes assembled by hand from the CSI v1.12 field
//! numbers, proving the generated types agree with the spec on the wire.

use std::collections::HashMap;

use csi_proto::volume_capability::access_mode::Mode;
use csi_proto::volume_capability::{AccessType, BlockVolume, MountVolume};
use csi_proto::volume_content_source::{SnapshotSource, Type as SourceType, VolumeSource};
use csi_proto::{CreateVolumeRequest, NodeStageVolumeRequest, Topology, VolumeCapability};
use prost::Message;

const WIRE_VARINT: u64 = 0;
const WIRE_LEN: u64 = 2;

/// Minimal hand-rolled protobuf encoder, independent of prost.
#[derive(Default, Clone)]
struct Wire(Vec<u8>);

impl Wire {
    fn new() -> Self {
        Self::default()
    }

    fn raw_varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn tag(&mut self, field: u64, wire_type: u64) {
        self.raw_varint((field << 3) | wire_type);
    }

    fn varint(mut self, field: u64, v: u64) -> Self {
        self.tag(field, WIRE_VARINT);
        self.raw_varint(v);
        self
    }

    fn bytes(mut self, field: u64, payload: &[u8]) -> Self {
        self.tag(field, WIRE_LEN);
        self.raw_varint(payload.len() as u64);
        self.0.extend_from_slice(payload);
        self
    }

    fn string(self, field: u64, s: &str) -> Self {
        self.bytes(field, s.as_bytes())
    }

    fn message(self, field: u64, inner: Wire) -> Self {
        self.bytes(field, &inner.0)
    }

    /// One `map<string, string>` entry: an embedded message {key = 1, value = 2}.
    fn map_entry(self, field: u64, key: &str, value: &str) -> Self {
        self.message(field, Wire::new().string(1, key).string(2, value))
    }
}

fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn topology(pairs: &[(&str, &str)]) -> Wire {
    pairs
        .iter()
        .fold(Wire::new(), |w, (k, v)| w.map_entry(1, k, v))
}

const TEN_GIB: u64 = 10 * 1024 * 1024 * 1024;
const TWENTY_GIB: u64 = 20 * 1024 * 1024 * 1024;

fn create_volume_wire() -> Wire {
    // VolumeCapability { block = 1 (empty), access_mode = 3 { mode = 1 } }
    let block_cap = Wire::new()
        .message(1, Wire::new())
        .message(3, Wire::new().varint(1, 1));
    // VolumeCapability { mount = 2 {fs_type 1, mount_flags 2, volume_mount_group 3},
    //                    access_mode = 3 { mode = 5 } }
    let mount_cap = Wire::new()
        .message(
            2,
            Wire::new()
                .string(1, "xfs")
                .string(2, "noatime")
                .string(2, "discard")
                .string(3, "2000"),
        )
        .message(3, Wire::new().varint(1, 5));

    Wire::new()
        // name = 1
        .string(1, "pvc-0b6d1c3e")
        // capacity_range = 2 { required_bytes = 1, limit_bytes = 2 }
        .message(2, Wire::new().varint(1, TEN_GIB).varint(2, TWENTY_GIB))
        // volume_capabilities = 3 (repeated)
        .message(3, block_cap)
        .message(3, mount_cap)
        // parameters = 4
        .map_entry(4, "replicas", "3")
        .map_entry(4, "csi.storage.k8s.io/fstype", "xfs")
        // secrets = 5
        .map_entry(5, "chap-secret", "s3cr3t")
        // volume_content_source = 6 { snapshot = 1 { snapshot_id = 1 } }
        .message(6, Wire::new().message(1, Wire::new().string(1, "snap-42")))
        // accessibility_requirements = 7 { requisite = 1, preferred = 2 }
        .message(
            7,
            Wire::new()
                .message(1, topology(&[("zone", "a"), ("rack", "r1")]))
                .message(1, topology(&[("zone", "b")]))
                .message(2, topology(&[("zone", "b")])),
        )
        // mutable_parameters = 8
        .map_entry(8, "qos.iops", "5000")
}

#[test]
fn create_volume_request_every_field_decodes() {
    let req = CreateVolumeRequest::decode(create_volume_wire().0.as_slice()).expect("decode");

    assert_eq!(req.name, "pvc-0b6d1c3e");

    let range = req.capacity_range.as_ref().expect("capacity_range");
    assert_eq!(range.required_bytes, 10_737_418_240);
    assert_eq!(range.limit_bytes, 21_474_836_480);

    assert_eq!(req.volume_capabilities.len(), 2);
    let block = &req.volume_capabilities[0];
    assert_eq!(block.access_type, Some(AccessType::Block(BlockVolume {})));
    assert_eq!(
        block.access_mode.as_ref().map(|m| m.mode()),
        Some(Mode::SingleNodeWriter)
    );
    let mount = &req.volume_capabilities[1];
    assert_eq!(
        mount.access_type,
        Some(AccessType::Mount(MountVolume {
            fs_type: "xfs".to_owned(),
            mount_flags: vec!["noatime".to_owned(), "discard".to_owned()],
            volume_mount_group: "2000".to_owned(),
        }))
    );
    assert_eq!(
        mount.access_mode.as_ref().map(|m| m.mode()),
        Some(Mode::MultiNodeMultiWriter)
    );

    assert_eq!(
        req.parameters,
        map(&[("replicas", "3"), ("csi.storage.k8s.io/fstype", "xfs")])
    );
    assert_eq!(req.secrets, map(&[("chap-secret", "s3cr3t")]));

    let source = req.volume_content_source.as_ref().expect("content source");
    assert_eq!(
        source.r#type,
        Some(SourceType::Snapshot(SnapshotSource {
            snapshot_id: "snap-42".to_owned()
        }))
    );

    let topo = req
        .accessibility_requirements
        .as_ref()
        .expect("accessibility_requirements");
    assert_eq!(
        topo.requisite,
        vec![
            Topology {
                segments: map(&[("zone", "a"), ("rack", "r1")])
            },
            Topology {
                segments: map(&[("zone", "b")])
            },
        ]
    );
    assert_eq!(
        topo.preferred,
        vec![Topology {
            segments: map(&[("zone", "b")])
        }]
    );

    assert_eq!(req.mutable_parameters, map(&[("qos.iops", "5000")]));

    // prost's own encoding must decode back to the same value.
    let again = CreateVolumeRequest::decode(req.encode_to_vec().as_slice()).expect("re-decode");
    assert_eq!(again, req);
}

#[test]
fn volume_content_source_volume_variant_and_last_oneof_wins() {
    // volume_content_source = 6 { volume = 2 { volume_id = 1 } }
    let wire = Wire::new()
        .string(1, "clone")
        .message(6, Wire::new().message(2, Wire::new().string(1, "vol-7")));
    let req = CreateVolumeRequest::decode(wire.0.as_slice()).expect("decode");
    assert_eq!(
        req.volume_content_source.and_then(|s| s.r#type),
        Some(SourceType::Volume(VolumeSource {
            volume_id: "vol-7".to_owned()
        }))
    );

    // Both oneof members on the wire: protobuf semantics say the last wins.
    let source = Wire::new()
        .message(2, Wire::new().string(1, "vol-7"))
        .message(1, Wire::new().string(1, "snap-9"));
    let req =
        CreateVolumeRequest::decode(Wire::new().message(6, source).0.as_slice()).expect("decode");
    assert_eq!(
        req.volume_content_source.and_then(|s| s.r#type),
        Some(SourceType::Snapshot(SnapshotSource {
            snapshot_id: "snap-9".to_owned()
        }))
    );
}

#[test]
fn node_stage_volume_request_every_field_decodes() {
    let capability = Wire::new()
        .message(2, Wire::new().string(1, "ext4").string(2, "nodev"))
        .message(3, Wire::new().varint(1, 7));
    let wire = Wire::new()
        // volume_id = 1
        .string(1, "vol-1234")
        // publish_context = 2
        .map_entry(2, "nqn", "nqn.2016-06.io.spdk:cnode1")
        .map_entry(2, "traddr", "10.0.0.5")
        // staging_target_path = 3
        .string(3, "/var/lib/kubelet/plugins/staging/vol-1234")
        // volume_capability = 4
        .message(4, capability)
        // secrets = 5
        .map_entry(5, "dhchap-key", "DHHC-1:00:abc")
        // volume_context = 6
        .map_entry(6, "lvs", "pool0");

    let req = NodeStageVolumeRequest::decode(wire.0.as_slice()).expect("decode");

    assert_eq!(req.volume_id, "vol-1234");
    assert_eq!(
        req.publish_context,
        map(&[
            ("nqn", "nqn.2016-06.io.spdk:cnode1"),
            ("traddr", "10.0.0.5")
        ])
    );
    assert_eq!(
        req.staging_target_path,
        "/var/lib/kubelet/plugins/staging/vol-1234"
    );
    let cap: &VolumeCapability = req.volume_capability.as_ref().expect("volume_capability");
    assert_eq!(
        cap.access_type,
        Some(AccessType::Mount(MountVolume {
            fs_type: "ext4".to_owned(),
            mount_flags: vec!["nodev".to_owned()],
            volume_mount_group: String::new(),
        }))
    );
    assert_eq!(
        cap.access_mode.as_ref().map(|m| m.mode()),
        Some(Mode::SingleNodeMultiWriter)
    );
    assert_eq!(req.secrets, map(&[("dhchap-key", "DHHC-1:00:abc")]));
    assert_eq!(req.volume_context, map(&[("lvs", "pool0")]));
}

#[test]
fn hand_encoder_matches_known_varint_bytes() {
    // Guards the test encoder itself: 300 is the canonical two-byte varint.
    assert_eq!(Wire::new().varint(1, 300).0, vec![0x08, 0xac, 0x02]);
    assert_eq!(Wire::new().string(2, "hi").0, vec![0x12, 0x02, b'h', b'i']);
}

#[test]
fn debug_output_redacts_secrets_but_keeps_other_fields() {
    let req = CreateVolumeRequest::decode(create_volume_wire().0.as_slice()).expect("decode");
    let printed = format!("{req:?}");
    assert!(
        !printed.contains("s3cr3t"),
        "secret value leaked: {printed}"
    );
    assert!(
        !printed.contains("chap-secret"),
        "secret key leaked: {printed}"
    );
    assert!(printed.contains("secrets: <redacted: 1>"), "{printed}");
    assert!(printed.contains("pvc-0b6d1c3e"), "{printed}");
    assert!(printed.contains("snap-42"), "{printed}");
    assert!(printed.contains("qos.iops"), "{printed}");

    let stage = NodeStageVolumeRequest {
        volume_id: "vol-1".to_owned(),
        secrets: map(&[("dhchap-key", "DHHC-1:00:abc")]),
        ..Default::default()
    };
    let printed = format!("{stage:#?}");
    assert!(
        !printed.contains("DHHC-1"),
        "secret value leaked: {printed}"
    );
    assert!(printed.contains("vol-1"), "{printed}");

    // Messages without secrets keep prost's derived Debug.
    assert!(format!("{:?}", Topology::default()).contains("segments"));
}
