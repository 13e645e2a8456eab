//! Validation of CSI request fields: CreateVolume parameters, volume
//! capabilities and topology. Pure.

use std::collections::{BTreeMap, HashMap};

use csi_proto::volume_capability::access_mode::Mode;
use csi_proto::{Topology, TopologyRequirement as CsiTopologyRequirement, VolumeCapability};

use crate::error::{ControllerError, Result};
use crate::placement::{Segments, TopologyRequirement};

/// StorageClass parameter: number of replicas.
pub const PARAM_REPLICAS: &str = "numberOfReplicas";
/// Replicas when the parameter is absent.
pub const DEFAULT_REPLICAS: u32 = 3;
/// StorageClass parameter: minutes a replica may stay out of date (stale,
/// failed, or missing) before it is rebuilt onto another node, as in
/// Longhorn (whose parameter is also in minutes). Fractions are accepted.
pub const PARAM_STALE_REPLICA_TIMEOUT: &str = "staleReplicaTimeout";
/// `staleReplicaTimeout` when absent: 30 minutes, Longhorn's default.
pub const DEFAULT_STALE_REPLICA_TIMEOUT_MIN: f64 = 30.0;
/// Every parameter Shorthorn accepts, for error messages.
const ACCEPTED: &str = "numberOfReplicas and staleReplicaTimeout in a StorageClass";

/// Parses a `staleReplicaTimeout` value (minutes, > 0, at most a year).
fn parse_stale_timeout(value: &str) -> Option<std::time::Duration> {
    let minutes: f64 = value.trim().parse().ok()?;
    (minutes.is_finite() && minutes > 0.0 && minutes <= 525_600.0)
        .then(|| std::time::Duration::from_secs_f64(minutes * 60.0))
}

/// The grace period before a volume's missing replica is rebuilt onto a
/// *new* node, from its stored parameters (the default when absent or
/// unreadable, which CreateVolume already refused).
pub fn stale_replica_timeout(params: &BTreeMap<String, String>) -> std::time::Duration {
    params
        .get(PARAM_STALE_REPLICA_TIMEOUT)
        .and_then(|v| parse_stale_timeout(v))
        .unwrap_or_else(|| {
            std::time::Duration::from_secs_f64(DEFAULT_STALE_REPLICA_TIMEOUT_MIN * 60.0)
        })
}

/// Prefix of the parameters Kubernetes sidecars add; accepted and not stored.
pub const K8S_PARAM_PREFIX: &str = "csi.storage.k8s.io/";

/// Parsed CreateVolume parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeParams {
    /// Number of replicas.
    pub replicas: u32,
    /// The parameters kept with the volume (sidecar-added keys removed).
    pub stored: BTreeMap<String, String>,
}

/// Parses CreateVolume parameters; unknown keys are INVALID_ARGUMENT.
pub fn parse_volume_params(params: &HashMap<String, String>) -> Result<VolumeParams> {
    let mut replicas = DEFAULT_REPLICAS;
    let mut stored = BTreeMap::new();
    for (key, value) in params {
        if key.starts_with(K8S_PARAM_PREFIX) {
            continue;
        }
        match key.as_str() {
            PARAM_REPLICAS => replicas = parse_replicas(value)?,
            PARAM_STALE_REPLICA_TIMEOUT => {
                if parse_stale_timeout(value).is_none() {
                    return Err(ControllerError::InvalidParameter {
                        name: PARAM_STALE_REPLICA_TIMEOUT,
                        value: value.clone(),
                        expected:
                            "a number of minutes greater than 0 (fractions allowed), at most 525600",
                    });
                }
            }
            other => {
                return Err(ControllerError::UnknownParameter {
                    name: other.to_string(),
                    accepted: ACCEPTED,
                })
            }
        }
        stored.insert(key.clone(), value.clone());
    }
    Ok(VolumeParams { replicas, stored })
}

/// The only parameter a VolumeAttributesClass (mutable parameters) may set.
const ACCEPTED_MUTABLE: &str =
    "numberOfReplicas in a VolumeAttributesClass (the one mutable parameter)";
/// What a `numberOfReplicas` value must be.
const REPLICAS_EXPECTED: &str = "a whole number from 1 to 16";

/// Parses a `numberOfReplicas` value (1 to 16).
fn parse_replicas(value: &str) -> Result<u32> {
    value
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|n| (1..=16).contains(n))
        .ok_or_else(|| ControllerError::InvalidParameter {
            name: PARAM_REPLICAS,
            value: value.to_string(),
            expected: REPLICAS_EXPECTED,
        })
}

/// Parses mutable parameters (a VolumeAttributesClass: CreateVolume's and
/// ControllerModifyVolume's `mutable_parameters`). Only `numberOfReplicas`
/// is mutable; any other key is INVALID_ARGUMENT. Returns the replica count
/// asked for, if any.
pub fn parse_mutable_params(params: &HashMap<String, String>) -> Result<Option<u32>> {
    let mut replicas = None;
    for (key, value) in params {
        if key.starts_with(K8S_PARAM_PREFIX) {
            continue;
        }
        match key.as_str() {
            PARAM_REPLICAS => replicas = Some(parse_replicas(value)?),
            other => {
                return Err(ControllerError::UnknownParameter {
                    name: other.to_string(),
                    accepted: ACCEPTED_MUTABLE,
                })
            }
        }
    }
    Ok(replicas)
}

/// Why a capability is not supported, or `None` when it is.
pub fn unsupported(cap: &VolumeCapability) -> Option<String> {
    if cap.access_type.is_none() {
        return Some("volume capability has no access type (block or mount)".into());
    }
    let Some(mode) = cap.access_mode.as_ref() else {
        return Some("volume capability has no access mode".into());
    };
    match Mode::try_from(mode.mode) {
        Ok(
            Mode::SingleNodeWriter
            | Mode::SingleNodeReaderOnly
            | Mode::SingleNodeSingleWriter
            | Mode::SingleNodeMultiWriter,
        ) => None,
        Ok(other) => Some(format!(
            "access mode {} is not supported: a Shorthorn volume is assembled on one node at a time",
            other.as_str_name()
        )),
        Err(_) => Some(format!("unknown access mode {}", mode.mode)),
    }
}

/// Requires at least one capability and that all are supported.
pub fn check_capabilities(caps: &[VolumeCapability]) -> Result<()> {
    if caps.is_empty() {
        return Err(ControllerError::MissingField {
            field: "volume_capabilities".into(),
        });
    }
    for cap in caps {
        if let Some(why) = unsupported(cap) {
            return Err(ControllerError::UnsupportedCapability { reason: why });
        }
    }
    Ok(())
}

/// Requires a non-empty id-like field.
pub fn require(field: &str, value: &str) -> Result<()> {
    if value.is_empty() {
        Err(ControllerError::MissingField {
            field: field.to_string(),
        })
    } else {
        Ok(())
    }
}

/// The segments of a CSI topology.
pub fn topology_segments(t: &Topology) -> Segments {
    t.segments
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Converts CSI accessibility requirements.
pub fn topology(req: Option<&CsiTopologyRequirement>) -> TopologyRequirement {
    req.map(|r| TopologyRequirement {
        requisite: r.requisite.iter().map(topology_segments).collect(),
        preferred: r.preferred.iter().map(topology_segments).collect(),
    })
    .unwrap_or_default()
}

/// Converts stored segments to a CSI topology.
pub fn to_topology(segments: &Segments) -> Topology {
    Topology {
        segments: segments
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use csi_proto::volume_capability::{AccessMode, AccessType, BlockVolume};

    fn cap(mode: Mode) -> VolumeCapability {
        VolumeCapability {
            access_mode: Some(AccessMode { mode: mode.into() }),
            access_type: Some(AccessType::Block(BlockVolume {})),
        }
    }

    #[test]
    fn stale_replica_timeout_is_minutes_as_in_longhorn() {
        let p = parse_volume_params(&HashMap::from([(
            PARAM_STALE_REPLICA_TIMEOUT.to_string(),
            "2880".to_string(),
        )]))
        .unwrap();
        assert_eq!(
            stale_replica_timeout(&p.stored),
            std::time::Duration::from_secs(2880 * 60)
        );
        assert_eq!(
            stale_replica_timeout(&BTreeMap::new()),
            std::time::Duration::from_secs(30 * 60)
        );
        let small = BTreeMap::from([(PARAM_STALE_REPLICA_TIMEOUT.to_string(), "0.05".into())]);
        assert_eq!(
            stale_replica_timeout(&small),
            std::time::Duration::from_secs(3)
        );
        for bad in ["0", "-5", "soon", "NaN", "1e9"] {
            let e = parse_volume_params(&HashMap::from([(
                PARAM_STALE_REPLICA_TIMEOUT.to_string(),
                bad.to_string(),
            )]))
            .unwrap_err();
            assert!(e.to_string().contains(PARAM_STALE_REPLICA_TIMEOUT), "{e}");
        }
    }

    #[test]
    fn replicas_parameter_is_validated_and_named() {
        let p = parse_volume_params(&HashMap::new()).unwrap();
        assert_eq!(p.replicas, DEFAULT_REPLICAS);
        let p = parse_volume_params(&HashMap::from([
            (PARAM_REPLICAS.to_string(), "2".to_string()),
            ("csi.storage.k8s.io/pvc/name".to_string(), "x".to_string()),
        ]))
        .unwrap();
        assert_eq!(p.replicas, 2);
        assert_eq!(p.stored.len(), 1);
        for bad in ["0", "-1", "three", "17"] {
            let e = parse_volume_params(&HashMap::from([(
                PARAM_REPLICAS.to_string(),
                bad.to_string(),
            )]))
            .unwrap_err();
            assert!(e.to_string().contains(PARAM_REPLICAS), "{e}");
        }
        let e =
            parse_volume_params(&HashMap::from([("fsType".into(), "ext4".into())])).unwrap_err();
        assert!(matches!(e, ControllerError::UnknownParameter { .. }));
    }

    #[test]
    fn only_the_replica_count_is_mutable() {
        let one = |k: &str, v: &str| HashMap::from([(k.to_string(), v.to_string())]);
        assert_eq!(parse_mutable_params(&HashMap::new()).unwrap(), None);
        assert_eq!(
            parse_mutable_params(&one(PARAM_REPLICAS, " 4 ")).unwrap(),
            Some(4)
        );
        for bad in ["0", "17", "two", "-1", ""] {
            let e = parse_mutable_params(&one(PARAM_REPLICAS, bad)).unwrap_err();
            assert!(e.to_string().contains("a whole number from 1 to 16"), "{e}");
        }
        let e = parse_mutable_params(&one(PARAM_STALE_REPLICA_TIMEOUT, "5")).unwrap_err();
        assert!(matches!(e, ControllerError::UnknownParameter { .. }), "{e}");
        assert!(e.to_string().contains("numberOfReplicas"), "{e}");
    }

    #[test]
    fn only_single_node_access_modes_are_supported() {
        assert!(check_capabilities(&[cap(Mode::SingleNodeWriter)]).is_ok());
        assert!(check_capabilities(&[cap(Mode::MultiNodeMultiWriter)]).is_err());
        assert!(check_capabilities(&[]).is_err());
        let no_type = VolumeCapability {
            access_type: None,
            ..cap(Mode::SingleNodeWriter)
        };
        assert!(check_capabilities(&[no_type]).is_err());
    }
}
