//! What the controller tells the node about how to reach a volume, carried
//! in the CSI `publish_context`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::frontend::FrontendKind;
use crate::nqn::validate_nqn;

/// A publish_context the node cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContextError {
    /// A required publish_context key is absent.
    #[error("publish_context is missing key `{key}`")]
    MissingKey {
        /// The missing key.
        key: &'static str,
    },
    /// A publish_context value could not be parsed or validated.
    #[error("publish_context key `{key}` has invalid value {value:?}: {reason}")]
    InvalidValue {
        /// The offending key.
        key: &'static str,
        /// The value as received.
        value: String,
        /// Why it was rejected.
        reason: String,
    },
}

type Result<T, E = ContextError> = std::result::Result<T, E>;

/// publish_context key: the frontend, `nvme-tcp` or `ublk`.
pub const KEY_FRONTEND: &str = "frontend";
/// publish_context key: NVMe/TCP target IP address.
pub const KEY_NVME_TRADDR: &str = "nvme.traddr";
/// publish_context key: NVMe/TCP target port.
pub const KEY_NVME_TRSVCID: &str = "nvme.trsvcid";
/// publish_context key: NVMe subsystem NQN.
pub const KEY_NVME_SUBNQN: &str = "nvme.subnqn";
/// publish_context key: UUID of the namespace that is the volume.
pub const KEY_NVME_NS_UUID: &str = "nvme.ns_uuid";
/// publish_context key: host NQN to connect as.
pub const KEY_NVME_HOSTNQN: &str = "nvme.hostnqn";
/// publish_context key: host identifier (a UUID).
pub const KEY_NVME_HOSTID: &str = "nvme.hostid";
/// publish_context key: controller loss timeout in seconds (-1: forever).
pub const KEY_NVME_CTRL_LOSS_TMO: &str = "nvme.ctrl_loss_tmo";
/// publish_context key: reconnect delay in seconds.
pub const KEY_NVME_RECONNECT_DELAY: &str = "nvme.reconnect_delay";
/// publish_context key: keep-alive timeout in seconds.
pub const KEY_NVME_KEEP_ALIVE_TMO: &str = "nvme.keep_alive_tmo";
/// publish_context key: block device path reported by SPDK `ublk_get_disks`.
pub const KEY_UBLK_DEVICE: &str = "ublk.device";
/// publish_context key: ublk device id.
pub const KEY_UBLK_ID: &str = "ublk.id";

/// How to reach one volume through the kernel NVMe/TCP initiator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NvmeTcpTarget {
    /// Target IP address.
    pub traddr: std::net::IpAddr,
    /// Target TCP port.
    pub trsvcid: u16,
    /// Subsystem NQN (one subsystem per volume).
    pub subnqn: String,
    /// Namespace UUID, used to find the block device.
    pub ns_uuid: uuid::Uuid,
    /// Host NQN.
    pub hostnqn: String,
    /// Host identifier.
    pub hostid: uuid::Uuid,
    /// Seconds before a lost controller is given up; -1 retries forever.
    pub ctrl_loss_tmo: i32,
    /// Seconds between reconnect attempts.
    pub reconnect_delay: u32,
    /// Keep-alive timeout in seconds.
    pub keep_alive_tmo: u32,
}

/// How to reach one volume exported by the local SPDK as a ublk disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UblkTarget {
    /// Block device path as reported by SPDK.
    pub device: PathBuf,
    /// ublk device id.
    pub id: u32,
}

/// A frontend-specific description of a volume's device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttachSpec {
    /// Kernel NVMe/TCP initiator.
    NvmeTcp(NvmeTcpTarget),
    /// ublk disk served by the local SPDK.
    Ublk(UblkTarget),
}

impl AttachSpec {
    /// The frontend this spec is for.
    pub fn kind(&self) -> FrontendKind {
        match self {
            AttachSpec::NvmeTcp(_) => FrontendKind::NvmeTcp,
            AttachSpec::Ublk(_) => FrontendKind::Ublk,
        }
    }

    /// Parses a CSI publish_context.
    pub fn from_publish_context(ctx: &HashMap<String, String>) -> Result<Self> {
        let frontend: FrontendKind = parse(ctx, KEY_FRONTEND)?;
        Ok(match frontend {
            FrontendKind::NvmeTcp => {
                let target = NvmeTcpTarget {
                    traddr: parse(ctx, KEY_NVME_TRADDR)?,
                    trsvcid: parse(ctx, KEY_NVME_TRSVCID)?,
                    subnqn: get(ctx, KEY_NVME_SUBNQN)?.to_owned(),
                    ns_uuid: parse(ctx, KEY_NVME_NS_UUID)?,
                    hostnqn: get(ctx, KEY_NVME_HOSTNQN)?.to_owned(),
                    hostid: parse(ctx, KEY_NVME_HOSTID)?,
                    ctrl_loss_tmo: parse(ctx, KEY_NVME_CTRL_LOSS_TMO)?,
                    reconnect_delay: parse(ctx, KEY_NVME_RECONNECT_DELAY)?,
                    keep_alive_tmo: parse(ctx, KEY_NVME_KEEP_ALIVE_TMO)?,
                };
                check_nqn(KEY_NVME_SUBNQN, &target.subnqn)?;
                check_nqn(KEY_NVME_HOSTNQN, &target.hostnqn)?;
                if target.ctrl_loss_tmo < -1 {
                    return Err(bad(
                        KEY_NVME_CTRL_LOSS_TMO,
                        &target.ctrl_loss_tmo.to_string(),
                        "must be -1 or a number of seconds",
                    ));
                }
                AttachSpec::NvmeTcp(target)
            }
            FrontendKind::Ublk => {
                let device = PathBuf::from(get(ctx, KEY_UBLK_DEVICE)?);
                if !device.is_absolute() {
                    return Err(bad(
                        KEY_UBLK_DEVICE,
                        &device.display().to_string(),
                        "must be an absolute path",
                    ));
                }
                AttachSpec::Ublk(UblkTarget {
                    device,
                    id: parse(ctx, KEY_UBLK_ID)?,
                })
            }
        })
    }

    /// Renders the spec as a publish_context (inverse of
    /// [`AttachSpec::from_publish_context`]).
    pub fn to_publish_context(&self) -> HashMap<String, String> {
        let mut ctx = HashMap::new();
        let mut put = |k: &str, v: String| {
            ctx.insert(k.to_owned(), v);
        };
        put(KEY_FRONTEND, self.kind().as_str().to_owned());
        match self {
            AttachSpec::NvmeTcp(t) => {
                put(KEY_NVME_TRADDR, t.traddr.to_string());
                put(KEY_NVME_TRSVCID, t.trsvcid.to_string());
                put(KEY_NVME_SUBNQN, t.subnqn.clone());
                put(KEY_NVME_NS_UUID, t.ns_uuid.to_string());
                put(KEY_NVME_HOSTNQN, t.hostnqn.clone());
                put(KEY_NVME_HOSTID, t.hostid.to_string());
                put(KEY_NVME_CTRL_LOSS_TMO, t.ctrl_loss_tmo.to_string());
                put(KEY_NVME_RECONNECT_DELAY, t.reconnect_delay.to_string());
                put(KEY_NVME_KEEP_ALIVE_TMO, t.keep_alive_tmo.to_string());
            }
            AttachSpec::Ublk(u) => {
                put(KEY_UBLK_DEVICE, u.device.display().to_string());
                put(KEY_UBLK_ID, u.id.to_string());
            }
        }
        ctx
    }
}

fn get<'a>(ctx: &'a HashMap<String, String>, key: &'static str) -> Result<&'a str> {
    ctx.get(key)
        .map(String::as_str)
        .ok_or(ContextError::MissingKey { key })
}

fn parse<T>(ctx: &HashMap<String, String>, key: &'static str) -> Result<T>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    let raw = get(ctx, key)?;
    raw.trim()
        .parse()
        .map_err(|e: T::Err| bad(key, raw, &e.to_string()))
}

fn check_nqn(key: &'static str, value: &str) -> Result<()> {
    validate_nqn(value).map_err(|e| bad(key, value, &e.to_string()))
}

fn bad(key: &'static str, value: &str, reason: &str) -> ContextError {
    ContextError::InvalidValue {
        key,
        value: value.to_owned(),
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nvme() -> AttachSpec {
        AttachSpec::NvmeTcp(NvmeTcpTarget {
            traddr: "10.1.2.3".parse().unwrap(),
            trsvcid: 4420,
            subnqn: "nqn.2024-01.io.shorthorn:vol-1".into(),
            ns_uuid: "8c7c4b5e-1f7c-4a8e-9d55-0a4a3f1b2c3d".parse().unwrap(),
            hostnqn: "nqn.2014-08.org.nvmexpress:uuid:0b9d-node-a".into(),
            hostid: "0b9d5a44-1c55-4c0c-8a3e-9f1d1e2a3b4c".parse().unwrap(),
            ctrl_loss_tmo: -1,
            reconnect_delay: 2,
            keep_alive_tmo: 5,
        })
    }

    #[test]
    fn nvme_round_trip() {
        let spec = nvme();
        let ctx = spec.to_publish_context();
        assert_eq!(ctx[KEY_FRONTEND], "nvme-tcp");
        assert_eq!(ctx[KEY_NVME_TRSVCID], "4420");
        assert_eq!(AttachSpec::from_publish_context(&ctx).unwrap(), spec);
    }

    #[test]
    fn ublk_round_trip() {
        let spec = AttachSpec::Ublk(UblkTarget {
            device: "/dev/ublkb3".into(),
            id: 3,
        });
        let ctx = spec.to_publish_context();
        assert_eq!(ctx.len(), 3);
        assert_eq!(AttachSpec::from_publish_context(&ctx).unwrap(), spec);
    }

    #[test]
    fn missing_key_is_named() {
        let mut ctx = nvme().to_publish_context();
        ctx.remove(KEY_NVME_HOSTID);
        let err = AttachSpec::from_publish_context(&ctx).unwrap_err();
        assert!(matches!(err, ContextError::MissingKey { key } if key == KEY_NVME_HOSTID));
        assert_eq!(
            err.to_string(),
            "publish_context is missing key `nvme.hostid`"
        );
    }

    #[test]
    fn bad_values_are_named() {
        let cases = [
            (KEY_FRONTEND, "iscsi"),
            (KEY_NVME_TRSVCID, "70000"),
            (KEY_NVME_TRADDR, "host.example"),
            (KEY_NVME_NS_UUID, "not-a-uuid"),
            (KEY_NVME_SUBNQN, "nqn.x,traddr=1.2.3.4"),
            (KEY_NVME_CTRL_LOSS_TMO, "-5"),
        ];
        for (key, value) in cases {
            let mut ctx = nvme().to_publish_context();
            ctx.insert(key.to_owned(), value.to_owned());
            match AttachSpec::from_publish_context(&ctx) {
                Err(ContextError::InvalidValue {
                    key: k, value: v, ..
                }) => {
                    assert_eq!((k, v.as_str()), (key, value));
                }
                other => panic!("{key}={value}: unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn relative_ublk_path_rejected() {
        let mut ctx = HashMap::new();
        ctx.insert(KEY_FRONTEND.to_owned(), "ublk".to_owned());
        ctx.insert(KEY_UBLK_DEVICE.to_owned(), "ublkb1".to_owned());
        ctx.insert(KEY_UBLK_ID.to_owned(), "1".to_owned());
        assert!(matches!(
            AttachSpec::from_publish_context(&ctx),
            Err(ContextError::InvalidValue { key, .. }) if key == KEY_UBLK_DEVICE
        ));
    }
}
