//! What each allowed SPDK method may be called with.
//!
//! The allowlist ([`super::allowlist`]) admits method names; this policy
//! then checks the params of each call against what this node is and what
//! the controller does, so a holder of the token can only do what the
//! controller would:
//!
//! - `bdev_aio_create` opens only the node's configured disks, as
//!   `shorthorn-base-*` bdevs; lvstores are created only with the node's
//!   lvstore names, on such a bdev or a configured base bdev;
//! - subsystems carry the project's NQN prefix and never `allow_any_host`;
//! - listeners are only on the node's NVMe-oF address or loopback, on its
//!   NVMe-oF port, over TCP;
//! - statistics are read without resetting them; latency histograms are
//!   enabled and read only on `shr-` raids, at most at granularity 7;
//! - deletes, renames, resizes, snapshots and clones act only on bdevs with
//!   the project's prefixes (`shr-`, `shp-`, `shn-`) or on the project's
//!   lvols of the node's lvstore, named `<lvstore>/<shv-|shs-|shorthorn-cluster-...>`.
//!
//! An lvol may also be named by its bdev name, a UUID. Such a target is
//! looked up first (`bdev_get_bdevs` with that name) and admitted only if
//! it is a logical volume with an alias `<lvstore>/<project name>` on this
//! node's lvstore; a UUID that names no bdev is passed on, so SPDK answers
//! "not found" as the controller's idempotent deletes expect. `ublk_stop_disk`
//! is likewise checked against `ublk_get_disks`: only a disk serving a
//! `shr-` raid may be stopped. These lookups are the only calls SPDK sees
//! for a request that is then refused.

use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;

use agent_api::names::{
    self, AIO_BASE_PREFIX, NVME_CTRLR_PREFIX, RAID_PAD_PREFIX, RAID_PREFIX, SNAPSHOT_PREFIX,
};
use serde_json::{Map, Value};

/// What this node admits in the params of the calls it forwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentPolicy {
    /// Files or block devices `bdev_aio_create` may open (exact paths).
    pub disks: Vec<PathBuf>,
    /// Existing bdevs (besides `shorthorn-base-*`) an lvstore may be created on.
    pub base_bdevs: Vec<String>,
    /// Names of this node's lvstores.
    pub lvstores: Vec<String>,
    /// Address NVMe-oF listeners may use besides loopback.
    pub nvmf_address: String,
    /// The only port NVMe-oF listeners may use.
    pub nvmf_port: u16,
}

/// Why a call was refused (sent back with 403).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub String);

/// The answer to a policy check.
#[derive(Debug)]
pub enum Verdict {
    /// Forward the call.
    Allow,
    /// Refuse it with this reason.
    Refuse(Refusal),
    /// A lookup the check needed failed; nothing was forwarded.
    LookupFailed(String),
}

/// The read-only lookups a check may need from spdk_tgt.
pub trait Lookup {
    /// The `bdev_get_bdevs` entry of `name`, `None` when there is none.
    fn bdev(&self, name: &str) -> impl Future<Output = Result<Option<Value>, String>> + Send;
    /// The `ublk_get_disks` list.
    fn ublk_disks(&self) -> impl Future<Output = Result<Vec<Value>, String>> + Send;
}

/// Internal outcome: refusal, or a lookup error.
enum Denied {
    Refused(String),
    Lookup(String),
}

impl From<String> for Denied {
    fn from(why: String) -> Self {
        Denied::Refused(why)
    }
}

type Check = Result<(), Denied>;

impl AgentPolicy {
    /// Checks one call of an allowlisted `method`.
    pub async fn check(
        &self,
        method: &str,
        params: Option<&Value>,
        lookup: &impl Lookup,
    ) -> Verdict {
        match self.check_inner(method, params, lookup).await {
            Ok(()) => Verdict::Allow,
            Err(Denied::Refused(why)) => Verdict::Refuse(Refusal(format!("{method}: {why}"))),
            Err(Denied::Lookup(why)) => Verdict::LookupFailed(why),
        }
    }

    async fn check_inner(
        &self,
        method: &str,
        params: Option<&Value>,
        lookup: &impl Lookup,
    ) -> Check {
        let empty = Map::new();
        let p = match params {
            None => &empty,
            Some(Value::Object(p)) => p,
            Some(_) => return Err("params must be an object".to_owned().into()),
        };
        match method {
            // Reads, and setup with no target to misuse.
            "bdev_get_bdevs"
            | "bdev_lvol_get_lvols"
            | "bdev_lvol_get_lvstores"
            | "bdev_lvol_check_shallow_copy"
            | "bdev_nvme_get_controllers"
            | "bdev_raid_get_bdevs"
            | "bdev_wait_for_examine"
            | "nvmf_get_subsystems"
            | "nvmf_get_transports"
            | "spdk_get_version"
            | "ublk_create_target"
            | "ublk_get_disks" => Ok(()),
            "nvmf_create_transport" => tcp(p, "trtype"),
            // Statistics (metrics): reading never resets them.
            "bdev_get_iostat" => match p.get("reset_mode") {
                None => Ok(()),
                Some(Value::String(mode)) if mode == "none" => Ok(()),
                Some(other) => Err(format!(
                    "reset_mode {other} would reset the node's I/O statistics; only \"none\" is allowed"
                )
                .into()),
            },
            // Latency histograms, only of Shorthorn's raids, of every I/O
            // type, at most SPDK's default granularity (memory per channel).
            "bdev_get_histogram" => prefixed(p, "name", RAID_PREFIX),
            "bdev_enable_histogram" => {
                prefixed(p, "name", RAID_PREFIX)?;
                for (key, value) in p {
                    let ok = match key.as_str() {
                        "name" => true,
                        "enable" => value.is_boolean(),
                        "granularity" => value.as_u64().is_some_and(|g| (1..=7).contains(&g)),
                        "min_nsec" | "max_nsec" => value.is_u64(),
                        _ => false,
                    };
                    if !ok {
                        return Err(format!("{key} {value} is not allowed (name, enable, granularity 1 to 7, min_nsec, max_nsec)").into());
                    }
                }
                Ok(())
            }
            "bdev_aio_create" => {
                prefixed(p, "name", AIO_BASE_PREFIX)?;
                let file = string(p, "filename")?;
                if self.disks.iter().any(|d| d.as_os_str() == file) {
                    Ok(())
                } else {
                    Err(format!(
                        "filename {file:?} is not one of this node's configured disks {:?} \
                         (add it to the node's --agent-disk list)",
                        self.disks
                    )
                    .into())
                }
            }
            "bdev_lvol_create_lvstore" => {
                self.lvstore(string(p, "lvs_name")?)?;
                let base = string(p, "bdev_name")?;
                if names::has_prefix(base, AIO_BASE_PREFIX)
                    || self.base_bdevs.iter().any(|b| b == base)
                {
                    Ok(())
                } else {
                    Err(format!(
                        "bdev_name {base:?} is neither a {AIO_BASE_PREFIX}* bdev nor one of \
                         this node's configured base bdevs {:?}",
                        self.base_bdevs
                    )
                    .into())
                }
            }
            "bdev_lvol_create" => {
                lvol_name(p, "lvol_name")?;
                if p.contains_key("uuid") {
                    return Err("name the lvstore by lvs_name, not uuid".to_owned().into());
                }
                self.lvstore(string(p, "lvs_name")?)
            }
            "bdev_lvol_snapshot" => {
                // A replica snapshot (`shs-`), or the snapshot a rebuild
                // takes of its source's live lvol (`shv-<volume>-rbs`).
                if !is_rebuild_snapshot(string(p, "snapshot_name")?) {
                    prefixed(p, "snapshot_name", SNAPSHOT_PREFIX)?;
                }
                self.lvol(string(p, "lvol_name")?, lookup).await
            }
            "bdev_lvol_clone" => {
                lvol_name(p, "clone_name")?;
                self.lvol(string(p, "snapshot_name")?, lookup).await
            }
            "bdev_lvol_rename" => {
                lvol_name(p, "new_name")?;
                self.lvol(string(p, "old_name")?, lookup).await
            }
            "bdev_lvol_resize" | "bdev_lvol_delete" => self.lvol(string(p, "name")?, lookup).await,
            "bdev_null_create" | "bdev_null_delete" => prefixed(p, "name", RAID_PAD_PREFIX),
            "bdev_raid_create" => {
                prefixed(p, "name", RAID_PREFIX)?;
                let bases = match p.get("base_bdevs") {
                    Some(Value::Array(b)) if !b.is_empty() => b,
                    _ => return Err("base_bdevs must be a non-empty list".to_owned().into()),
                };
                for base in bases {
                    let Value::String(base) = base else {
                        return Err("base_bdevs must hold strings".to_owned().into());
                    };
                    self.raid_member(base, lookup).await?;
                }
                Ok(())
            }
            "bdev_raid_delete" => prefixed(p, "name", RAID_PREFIX),
            "bdev_raid_add_base_bdev" => {
                prefixed(p, "raid_bdev", RAID_PREFIX)?;
                self.raid_member(string(p, "base_bdev")?, lookup).await
            }
            "bdev_raid_set_options" => {
                // Global knobs of raid background processes, numbers only.
                for (key, value) in p {
                    let known = matches!(
                        key.as_str(),
                        "process_window_size_kb" | "process_max_bandwidth_mb_sec"
                    );
                    if !known || !value.is_u64() {
                        return Err(format!("bdev_raid_set_options: {key} is not allowed").into());
                    }
                }
                Ok(())
            }
            // A rebuild copies one of this node's lvols into the namespace
            // of a Shorthorn NVMe-oF controller (the target's export).
            "bdev_lvol_start_shallow_copy" => {
                prefixed(p, "dst_bdev_name", NVME_CTRLR_PREFIX)?;
                self.lvol(string(p, "src_lvol_name")?, lookup).await
            }
            "bdev_raid_remove_base_bdev" => self.raid_member(string(p, "name")?, lookup).await,
            "bdev_nvme_attach_controller" => {
                prefixed(p, "name", NVME_CTRLR_PREFIX)?;
                tcp(p, "trtype")?;
                nqn(p, "subnqn")?;
                nqn(p, "hostnqn")
            }
            "bdev_nvme_detach_controller" => prefixed(p, "name", NVME_CTRLR_PREFIX),
            "nvmf_create_subsystem" => {
                nqn(p, "nqn")?;
                match p.get("allow_any_host") {
                    None | Some(Value::Bool(false)) => Ok(()),
                    Some(_) => Err("allow_any_host must be false or absent: every export \
                                    admits named hosts only"
                        .to_owned()
                        .into()),
                }
            }
            "nvmf_delete_subsystem"
            | "nvmf_subsystem_add_host"
            | "nvmf_subsystem_remove_host"
            | "nvmf_subsystem_remove_ns"
            | "nvmf_subsystem_listener_set_ana_state"
            | "nvmf_subsystem_set_ns_ana_group" => nqn(p, "nqn"),
            "nvmf_subsystem_add_ns" => {
                nqn(p, "nqn")?;
                let bdev = p
                    .get("namespace")
                    .and_then(|ns| ns.get("bdev_name"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| "namespace.bdev_name must be a string".to_owned())?;
                if names::has_prefix(bdev, RAID_PREFIX) {
                    Ok(())
                } else {
                    self.lvol(bdev, lookup).await
                }
            }
            "nvmf_subsystem_add_listener" => {
                nqn(p, "nqn")?;
                let addr = p
                    .get("listen_address")
                    .and_then(Value::as_object)
                    .ok_or_else(|| "listen_address must be an object".to_owned())?;
                self.listener(addr)
            }
            "ublk_start_disk" => prefixed(p, "bdev_name", RAID_PREFIX),
            "ublk_stop_disk" => {
                let id = p
                    .get("ublk_id")
                    .and_then(Value::as_u64)
                    .ok_or_else(|| "ublk_id must be a number".to_owned())?;
                let disks = lookup.ublk_disks().await.map_err(Denied::Lookup)?;
                let serving = disks
                    .iter()
                    .find(|d| d.get("id").and_then(Value::as_u64) == Some(id))
                    .map(|d| d.get("bdev_name").and_then(Value::as_str).unwrap_or(""));
                match serving {
                    None => Ok(()),
                    Some(bdev) if names::has_prefix(bdev, RAID_PREFIX) => Ok(()),
                    Some(bdev) => Err(format!(
                        "ublk disk {id} serves {bdev:?}, not a {RAID_PREFIX}* raid"
                    )
                    .into()),
                }
            }
            _ => Err("no parameter policy for this method".to_owned().into()),
        }
    }

    fn lvstore(&self, lvs: &str) -> Check {
        if self.lvstores.iter().any(|l| l == lvs) {
            Ok(())
        } else {
            Err(format!(
                "lvstore {lvs:?} is not this node's (its lvstores: {:?})",
                self.lvstores
            )
            .into())
        }
    }

    /// An lvol Shorthorn owns on this node: `<lvstore>/<project name>`, or
    /// a UUID that resolves to one (or to nothing).
    async fn lvol(&self, target: &str, lookup: &impl Lookup) -> Check {
        if let Some((lvs, name)) = target.split_once('/') {
            self.lvstore(lvs)?;
            return if names::is_project_lvol_name(name) {
                Ok(())
            } else {
                Err(format!(
                    "lvol {target:?} is not a Shorthorn lvol (shv-, shs-, shorthorn-cluster-)"
                )
                .into())
            };
        }
        if uuid::Uuid::parse_str(target).is_err() {
            return Err(format!(
                "{target:?} is neither <lvstore>/<Shorthorn lvol> nor an lvol uuid"
            )
            .into());
        }
        let Some(bdev) = lookup.bdev(target).await.map_err(Denied::Lookup)? else {
            return Ok(());
        };
        let is_lvol = bdev
            .get("driver_specific")
            .and_then(|d| d.get("lvol"))
            .is_some();
        let owned = bdev
            .get("aliases")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter_map(|a| a.split_once('/'))
            .any(|(lvs, name)| {
                self.lvstores.iter().any(|l| l == lvs) && names::is_project_lvol_name(name)
            });
        if is_lvol && owned {
            Ok(())
        } else {
            Err(format!(
                "bdev {target:?} is not a Shorthorn lvol on this node's lvstore {:?}",
                self.lvstores
            )
            .into())
        }
    }

    /// A raid1 leg: a local lvol, a remote replica's namespace, or the pad.
    async fn raid_member(&self, bdev: &str, lookup: &impl Lookup) -> Check {
        if names::has_prefix(bdev, NVME_CTRLR_PREFIX) || names::has_prefix(bdev, RAID_PAD_PREFIX) {
            Ok(())
        } else {
            self.lvol(bdev, lookup).await
        }
    }

    fn listener(&self, addr: &Map<String, Value>) -> Check {
        tcp(addr, "trtype")?;
        let traddr = string(addr, "traddr")?;
        let ip: Option<IpAddr> = traddr.parse().ok();
        let loopback = ip.is_some_and(|ip| ip.is_loopback());
        if !(loopback || traddr == self.nvmf_address) {
            return Err(format!(
                "listener address {traddr:?} is neither this node's NVMe-oF address {:?} \
                 nor loopback",
                self.nvmf_address
            )
            .into());
        }
        let port = self.nvmf_port.to_string();
        match addr.get("trsvcid").and_then(Value::as_str) {
            Some(p) if p == port => Ok(()),
            other => Err(
                format!("listener port {other:?} is not this node's NVMe-oF port {port}").into(),
            ),
        }
    }
}

fn string<'a>(p: &'a Map<String, Value>, key: &str) -> Result<&'a str, Denied> {
    p.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| Denied::Refused(format!("`{key}` must be a string")))
}

fn prefixed(p: &Map<String, Value>, key: &str, prefix: &str) -> Check {
    let value = string(p, key)?;
    if names::has_prefix(value, prefix) {
        Ok(())
    } else {
        Err(format!("{key} {value:?} does not carry Shorthorn's prefix {prefix:?}").into())
    }
}

/// Whether `name` is a rebuild's snapshot of a replica (the controller's
/// `naming::rebuild_snapshot_lvol`: `shv-<volume>-rbs`, or a thin swap's
/// later round `shv-<volume>-rbs<k>`).
fn is_rebuild_snapshot(name: &str) -> bool {
    name.strip_prefix(names::LVOL_PREFIX)
        .map(|rest| rest.trim_end_matches(|c: char| c.is_ascii_digit()))
        .and_then(|rest| rest.strip_suffix("-rbs"))
        .is_some_and(|volume| !volume.is_empty() && !volume.contains('/'))
}

fn lvol_name(p: &Map<String, Value>, key: &str) -> Check {
    let value = string(p, key)?;
    if names::is_project_lvol_name(value) {
        Ok(())
    } else {
        Err(format!(
            "{key} {value:?} is not a Shorthorn lvol name (shv-, shs-, shorthorn-cluster-)"
        )
        .into())
    }
}

fn nqn(p: &Map<String, Value>, key: &str) -> Check {
    let value = string(p, key)?;
    if names::is_project_nqn(value) && agent_api::validate_nqn(value).is_ok() {
        Ok(())
    } else {
        Err(format!(
            "{key} {value:?} is not a Shorthorn NQN ({}:...)",
            names::NQN_PREFIX
        )
        .into())
    }
}

fn tcp(p: &Map<String, Value>, key: &str) -> Check {
    let value = string(p, key)?;
    if value.eq_ignore_ascii_case("tcp") {
        Ok(())
    } else {
        Err(format!("{key} {value:?}: only TCP is used").into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_rebuild_snapshot_name_passes_besides_shs() {
        assert!(is_rebuild_snapshot("shv-0b9e-rbs"));
        assert!(is_rebuild_snapshot("shv-0b9e-rbs12"));
        for bad in [
            "shv-0b9e-rbsx",
            "shv--rbs",
            "shv-0b9e",
            "shv-a/b-rbs",
            "shs-x-rbs",
            "db-rbs",
            "shv-x-rb",
        ] {
            assert!(!is_rebuild_snapshot(bad), "{bad:?}");
        }
    }
}
