//! The options string written to `/dev/nvme-fabrics` to connect a controller.

use agent_api::nqn::validate_nqn;
#[cfg(test)]
use agent_api::nqn::MAX_NQN_LEN;

use crate::error::{NodeError, Result};
use crate::frontend::NvmeTcpTarget;

/// Builds the fabrics connect options for `target`, validating each value.
pub fn connect_options(target: &NvmeTcpTarget) -> Result<String> {
    validate_nqn(&target.subnqn)?;
    validate_nqn(&target.hostnqn)?;
    if target.ctrl_loss_tmo < -1 {
        return Err(NodeError::InvalidOption {
            field: "ctrl_loss_tmo",
            value: target.ctrl_loss_tmo.to_string(),
            reason: "must be -1 or a number of seconds",
        });
    }
    // traddr, trsvcid, hostid and the timeouts are typed (IpAddr, u16, Uuid,
    // integers), so their rendering cannot contain separators.
    Ok(format!(
        "transport=tcp,traddr={},trsvcid={},nqn={},hostnqn={},hostid={},\
         ctrl_loss_tmo={},reconnect_delay={},keep_alive_tmo={}",
        target.traddr,
        target.trsvcid,
        target.subnqn,
        target.hostnqn,
        target.hostid,
        target.ctrl_loss_tmo,
        target.reconnect_delay,
        target.keep_alive_tmo,
    ))
}

/// The kernel's answer to a successful connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectReply {
    /// Controller instance: the new controller is `nvme<instance>`.
    pub instance: u32,
    /// Controller id assigned by the target.
    pub cntlid: u32,
}

impl ConnectReply {
    /// Name of the controller in `/sys/class/nvme`.
    pub fn controller_name(&self) -> String {
        format!("nvme{}", self.instance)
    }
}

/// Parses `instance=N,cntlid=M` as read back from `/dev/nvme-fabrics`.
pub fn parse_connect_reply(reply: &str) -> Result<ConnectReply> {
    let bad = || NodeError::FabricsResponse {
        response: reply.to_owned(),
    };
    let (mut instance, mut cntlid) = (None, None);
    for field in reply.trim().split(',') {
        let (k, v) = field.split_once('=').ok_or_else(bad)?;
        let v: u32 = v.trim().parse().map_err(|_| bad())?;
        match k.trim() {
            "instance" => instance = Some(v),
            "cntlid" => cntlid = Some(v),
            _ => {}
        }
    }
    Ok(ConnectReply {
        instance: instance.ok_or_else(bad)?,
        cntlid: cntlid.ok_or_else(bad)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> NvmeTcpTarget {
        NvmeTcpTarget {
            traddr: "192.168.7.9".parse().unwrap(),
            trsvcid: 4421,
            subnqn: "nqn.2024-01.io.shorthorn:pvc-42".into(),
            ns_uuid: uuid::Uuid::nil(),
            hostnqn: "nqn.2014-08.org.nvmexpress:uuid:host-a".into(),
            hostid: "11111111-2222-3333-4444-555555555555".parse().unwrap(),
            ctrl_loss_tmo: 60,
            reconnect_delay: 3,
            keep_alive_tmo: 7,
        }
    }

    #[test]
    fn builds_the_full_string() {
        assert_eq!(
            connect_options(&target()).unwrap(),
            "transport=tcp,traddr=192.168.7.9,trsvcid=4421,\
             nqn=nqn.2024-01.io.shorthorn:pvc-42,\
             hostnqn=nqn.2014-08.org.nvmexpress:uuid:host-a,\
             hostid=11111111-2222-3333-4444-555555555555,\
             ctrl_loss_tmo=60,reconnect_delay=3,keep_alive_tmo=7"
        );
    }

    #[test]
    fn ipv6_address_is_rendered_plain() {
        let mut t = target();
        t.traddr = "fd00::1".parse().unwrap();
        assert!(connect_options(&t).unwrap().contains(",traddr=fd00::1,"));
    }

    #[test]
    fn injection_is_rejected() {
        for bad in [
            "nqn.a,traddr=6.6.6.6",
            "nqn.a=b",
            "nqn.a\nnqn.b",
            "nqn.a b",
            "",
            "not-an-nqn",
        ] {
            let mut t = target();
            t.subnqn = bad.into();
            assert!(
                matches!(
                    connect_options(&t),
                    Err(NodeError::InvalidOption { field: "nqn", .. })
                ),
                "subnqn {bad:?} accepted"
            );
            let mut t = target();
            t.hostnqn = bad.into();
            assert!(connect_options(&t).is_err(), "hostnqn {bad:?} accepted");
        }
        let mut t = target();
        t.subnqn = format!("nqn.{}", "x".repeat(MAX_NQN_LEN));
        assert!(connect_options(&t).is_err());
    }

    #[test]
    fn negative_ctrl_loss_below_minus_one_rejected() {
        let mut t = target();
        t.ctrl_loss_tmo = -1;
        assert!(connect_options(&t).unwrap().contains("ctrl_loss_tmo=-1,"));
        t.ctrl_loss_tmo = -2;
        assert!(connect_options(&t).is_err());
    }

    #[test]
    fn parses_reply() {
        let r = parse_connect_reply("instance=12,cntlid=3\n").unwrap();
        assert_eq!(
            r,
            ConnectReply {
                instance: 12,
                cntlid: 3
            }
        );
        assert_eq!(r.controller_name(), "nvme12");
        assert!(parse_connect_reply("cntlid=3").is_err());
        assert!(parse_connect_reply("instance=x,cntlid=3").is_err());
        assert!(parse_connect_reply("").is_err());
    }
}
