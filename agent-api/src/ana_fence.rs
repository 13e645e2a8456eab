//! `POST /fence/ana/suspend` and `POST /fence/ana/resume`: the node agent on
//! a volume's publishing node holds the volume's NVMe/TCP frontend I/O still
//! while the controller snapshots its replicas.
//!
//! Suspend sets the volume subsystem's loopback listener ANA-inaccessible
//! (the host stops sending and retries queued I/O until the path returns),
//! then re-sets namespace [`VOLUME_NSID`]'s ANA group, which SPDK completes
//! only once the namespace's in-flight I/O has drained. The agent holds this
//! as a lease: when it runs out the agent restores `optimized` by itself,
//! retrying until SPDK accepts, whether or not the controller is still
//! there. Resume restores `optimized` and says whether the lease had already
//! run out, in which case whatever the controller did under the fence is
//! not proven to have seen no I/O.
//!
//! The agent checks what a call does before SPDK sees it
//! ([`AnaFenceSuspendRequest::check`], [`AnaFenceResumeRequest::check`]):
//! only a Shorthorn volume subsystem, only a TCP listener on a loopback
//! address, only a lease of at most [`MAX_DEADLINE`].

use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::nqn::validate_nqn;

/// Longest lease a caller may ask for (the quiesce lease's bound).
pub const MAX_DEADLINE: Duration = crate::quiesce::MAX_DEADLINE;
/// NQN prefix of the subsystem that exports a published volume to the
/// kernel of its node; the volume id (a UUID) follows.
pub const VOLUME_NQN_PREFIX: &str = "nqn.2025-11.io.shorthorn:volume:";
/// Namespace id of the volume in its frontend subsystem.
pub const VOLUME_NSID: u32 = 1;
/// ANA group of that namespace (SPDK's default: the namespace id).
pub const VOLUME_ANA_GROUP: u32 = 1;

/// The listener a fence acts on, as SPDK names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FenceListener {
    /// Transport type: `TCP`.
    pub trtype: String,
    /// Address family: `IPv4` or `IPv6`.
    pub adrfam: String,
    /// A loopback address (`127.0.0.1`, `::1`).
    pub traddr: String,
    /// The TCP port.
    pub trsvcid: String,
}

impl FenceListener {
    /// The loopback TCP listener on `port` (IPv4), as publish creates it.
    pub fn loopback(port: u16) -> Self {
        Self {
            trtype: "TCP".into(),
            adrfam: "IPv4".into(),
            traddr: "127.0.0.1".into(),
            trsvcid: port.to_string(),
        }
    }

    /// `Ok` when this is a TCP listener on a loopback address with a port.
    pub fn check(&self) -> Result<(), FenceRefusal> {
        if !self.trtype.eq_ignore_ascii_case("tcp") {
            return Err(FenceRefusal::NotTcp {
                trtype: self.trtype.clone(),
            });
        }
        let ip: IpAddr = self.traddr.parse().map_err(|_| FenceRefusal::NotLoopback {
            traddr: self.traddr.clone(),
        })?;
        if !ip.is_loopback() {
            return Err(FenceRefusal::NotLoopback {
                traddr: self.traddr.clone(),
            });
        }
        let family_matches = match ip {
            IpAddr::V4(_) => self.adrfam.eq_ignore_ascii_case("ipv4"),
            IpAddr::V6(_) => self.adrfam.eq_ignore_ascii_case("ipv6"),
        };
        if !family_matches {
            return Err(FenceRefusal::FamilyMismatch {
                adrfam: self.adrfam.clone(),
                traddr: self.traddr.clone(),
            });
        }
        match self.trsvcid.parse::<u16>() {
            Ok(port) if port > 0 && port.to_string() == self.trsvcid => Ok(()),
            _ => Err(FenceRefusal::BadPort {
                trsvcid: self.trsvcid.clone(),
            }),
        }
    }
}

/// Why the agent refuses a fence request (HTTP 400); SPDK never sees it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FenceRefusal {
    /// The NQN is not a Shorthorn volume subsystem's.
    #[error("nqn {nqn:?} is not a Shorthorn volume subsystem ({VOLUME_NQN_PREFIX}<volume uuid>): {reason}")]
    NotAVolumeNqn {
        /// The refused NQN.
        nqn: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The listener is not TCP.
    #[error("listener transport {trtype:?} is not TCP: the fence acts only on the volume's loopback TCP listener")]
    NotTcp {
        /// The refused transport.
        trtype: String,
    },
    /// The listener address is not a loopback address.
    #[error("listener address {traddr:?} is not a loopback address: the fence acts only on the volume's loopback TCP listener")]
    NotLoopback {
        /// The refused address.
        traddr: String,
    },
    /// The address family does not match the address.
    #[error("listener address family {adrfam:?} does not match address {traddr:?}")]
    FamilyMismatch {
        /// The given family.
        adrfam: String,
        /// The given address.
        traddr: String,
    },
    /// The port is not a TCP port number.
    #[error("listener port {trsvcid:?} is not a TCP port number (1-65535)")]
    BadPort {
        /// The refused port.
        trsvcid: String,
    },
    /// The lease is zero or longer than [`MAX_DEADLINE`].
    #[error("deadline_ms {deadline_ms} must be between 1 and {max_ms}")]
    BadDeadline {
        /// The asked lease.
        deadline_ms: u64,
        /// The longest lease.
        max_ms: u64,
    },
}

/// `Ok` when `nqn` is `nqn.2025-11.io.shorthorn:volume:<uuid>`, the uuid in
/// its hyphenated 36-character form.
pub fn check_volume_nqn(nqn: &str) -> Result<(), FenceRefusal> {
    let refuse = |reason: String| {
        Err(FenceRefusal::NotAVolumeNqn {
            nqn: nqn.to_owned(),
            reason,
        })
    };
    if let Err(e) = validate_nqn(nqn) {
        return refuse(e.reason.to_owned());
    }
    let Some(id) = nqn.strip_prefix(VOLUME_NQN_PREFIX) else {
        return refuse("wrong prefix".to_owned());
    };
    if id.len() != 36 || uuid::Uuid::parse_str(id).is_err() {
        return refuse(format!("{id:?} is not a volume uuid"));
    }
    Ok(())
}

/// Whether `nqn` names a Shorthorn volume subsystem.
pub fn is_volume_nqn(nqn: &str) -> bool {
    check_volume_nqn(nqn).is_ok()
}

/// Body of `POST /fence/ana/suspend`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnaFenceSuspendRequest {
    /// The volume subsystem (`nqn.2025-11.io.shorthorn:volume:<uuid>`).
    pub nqn: String,
    /// Its loopback listener, the kernel's path to the volume.
    pub listener: FenceListener,
    /// The lease in milliseconds: `optimized` comes back by itself after it.
    pub deadline_ms: u64,
}

impl AnaFenceSuspendRequest {
    /// The lease, once every field is checked.
    pub fn check(&self) -> Result<Duration, FenceRefusal> {
        check_volume_nqn(&self.nqn)?;
        self.listener.check()?;
        let max_ms = u64::try_from(MAX_DEADLINE.as_millis()).unwrap_or(u64::MAX);
        if self.deadline_ms == 0 || self.deadline_ms > max_ms {
            return Err(FenceRefusal::BadDeadline {
                deadline_ms: self.deadline_ms,
                max_ms,
            });
        }
        Ok(Duration::from_millis(self.deadline_ms))
    }
}

/// Answer to a successful suspend: I/O is held and drained.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnaFenceSuspendResponse {
    /// The volume subsystem.
    pub nqn: String,
    /// True when a lease was already held and only its deadline moved.
    pub extended: bool,
    /// Time until the lease restores `optimized` by itself, in milliseconds.
    pub expires_in_ms: u64,
}

/// Body of `POST /fence/ana/resume`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnaFenceResumeRequest {
    /// The volume subsystem.
    pub nqn: String,
    /// Its loopback listener; restored to `optimized` even when no lease is
    /// known (a fence a previous agent run left behind).
    pub listener: FenceListener,
}

impl AnaFenceResumeRequest {
    /// `Ok` once every field is checked.
    pub fn check(&self) -> Result<(), FenceRefusal> {
        check_volume_nqn(&self.nqn)?;
        self.listener.check()
    }
}

/// Answer to a successful resume: the listener is `optimized`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnaFenceResumeResponse {
    /// The volume subsystem.
    pub nqn: String,
    /// True when no lease was in force when this resume arrived: it had run
    /// out (or was lost with an agent restart, or was already resumed). Work
    /// done under the fence is then not proven to have seen no I/O.
    pub expired: bool,
    /// How long the lease this resume ended had held, in milliseconds (0
    /// when there was none).
    pub held_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    const NQN: &str = "nqn.2025-11.io.shorthorn:volume:0b3c6f52-9a51-4c8e-8f43-2f6a7a3a9c11";

    fn suspend(nqn: &str, listener: FenceListener, deadline_ms: u64) -> AnaFenceSuspendRequest {
        AnaFenceSuspendRequest {
            nqn: nqn.into(),
            listener,
            deadline_ms,
        }
    }

    #[test]
    fn accepts_a_volume_subsystem_on_its_loopback_listener() {
        let ok = suspend(NQN, FenceListener::loopback(4420), 10_000);
        assert_eq!(ok.check(), Ok(Duration::from_secs(10)));
        let v6 = FenceListener {
            adrfam: "IPv6".into(),
            traddr: "::1".into(),
            ..FenceListener::loopback(4420)
        };
        assert_eq!(v6.check(), Ok(()));
    }

    #[test]
    fn refuses_anything_else_precisely() {
        let lo = FenceListener::loopback(4420);
        for (nqn, why) in [
            (
                "nqn.2025-11.io.shorthorn:replica:0b3c6f52-9a51-4c8e-8f43-2f6a7a3a9c11:n1",
                "wrong prefix",
            ),
            ("nqn.2016-06.io.spdk:cnode1", "wrong prefix"),
            (
                "nqn.2025-11.io.shorthorn:volume:not-a-uuid",
                "not a volume uuid",
            ),
            (
                "nqn.2025-11.io.shorthorn:volume:0b3c6f529a514c8e8f432f6a7a3a9c11",
                "not a volume uuid",
            ),
            (
                "nqn.2025-11.io.shorthorn:volume:0b3c6f52-9a51-4c8e-8f43-2f6a7a3a9c11,x=1",
                "contains",
            ),
            ("", "empty"),
        ] {
            let err = suspend(nqn, lo.clone(), 1000).check().unwrap_err();
            assert!(
                matches!(err, FenceRefusal::NotAVolumeNqn { .. }),
                "{nqn}: {err}"
            );
            assert!(err.to_string().contains(why), "{nqn}: {err}");
        }
        let remote = FenceListener {
            traddr: "10.0.0.7".into(),
            ..lo.clone()
        };
        assert!(matches!(
            remote.check(),
            Err(FenceRefusal::NotLoopback { .. })
        ));
        let name = FenceListener {
            traddr: "localhost".into(),
            ..lo.clone()
        };
        assert!(matches!(
            name.check(),
            Err(FenceRefusal::NotLoopback { .. })
        ));
        let rdma = FenceListener {
            trtype: "RDMA".into(),
            ..lo.clone()
        };
        assert!(matches!(rdma.check(), Err(FenceRefusal::NotTcp { .. })));
        let mixed = FenceListener {
            adrfam: "IPv6".into(),
            ..lo.clone()
        };
        assert!(matches!(
            mixed.check(),
            Err(FenceRefusal::FamilyMismatch { .. })
        ));
        for port in ["0", "65536", "04420", "", "4420 "] {
            let bad = FenceListener {
                trsvcid: port.into(),
                ..lo.clone()
            };
            assert!(
                matches!(bad.check(), Err(FenceRefusal::BadPort { .. })),
                "{port:?}"
            );
        }
        for ms in [0, 60_001, u64::MAX] {
            let err = suspend(NQN, lo.clone(), ms).check().unwrap_err();
            assert_eq!(
                err,
                FenceRefusal::BadDeadline {
                    deadline_ms: ms,
                    max_ms: 60_000
                }
            );
        }
    }

    #[test]
    fn bodies_with_unknown_fields_do_not_parse() {
        let body = serde_json::json!({
            "nqn": NQN,
            "listener": {"trtype": "TCP", "adrfam": "IPv4", "traddr": "127.0.0.1", "trsvcid": "4420"},
            "deadline_ms": 1000,
            "anagrpid": 7,
        });
        assert!(serde_json::from_value::<AnaFenceSuspendRequest>(body).is_err());
    }
}
