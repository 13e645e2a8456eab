//! Finding NVMe/TCP controllers and namespace block devices in sysfs.
//!
//! Namespaces are matched by their `uuid` (or `nguid` / `wwid`) attribute,
//! never by device name or NSID order: names are assigned by the kernel in
//! discovery order and change when a namespace is removed and re-added.
//! With native multipath the block device is the subsystem's head
//! (`/sys/class/nvme-subsystem/nvme-subsysX/nvmeXnY`); the per-path
//! `nvmeXcYnZ` entries under each controller are hidden and never returned.
//! Attributes that vanish while being read (a controller being torn down)
//! are treated as absent.

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{NodeError, Result};
use crate::frontend::NvmeTcpTarget;

/// One kernel NVMe controller, as seen in `/sys/class/nvme/nvmeN`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Controller {
    /// Name, e.g. `nvme3`.
    pub name: String,
    /// Its sysfs directory.
    pub dir: PathBuf,
    /// `subsysnqn` attribute.
    pub subsysnqn: String,
    /// `transport` attribute (`tcp`, `rdma`, `pcie` ...).
    pub transport: String,
    /// `address` attribute, e.g. `traddr=10.0.0.1,trsvcid=4420`.
    pub address: String,
    /// `state` attribute (`live`, `connecting`, `deleting` ...).
    pub state: String,
}

impl Controller {
    /// False once the controller is being deleted or is dead.
    pub fn is_usable(&self) -> bool {
        !(self.state.starts_with("deleting") || self.state == "dead")
    }

    /// Value of `key` in the `address` attribute.
    pub fn address_field(&self, key: &str) -> Option<&str> {
        self.address
            .trim()
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| k.trim() == key)
            .map(|(_, v)| v.trim())
    }

    /// True when this is a TCP controller for `target`'s subsystem and address.
    pub fn serves(&self, target: &NvmeTcpTarget) -> bool {
        let addr_matches = match self.address_field("traddr") {
            Some(a) => match a.parse::<IpAddr>() {
                Ok(ip) => ip == target.traddr,
                Err(_) => a == target.traddr.to_string(),
            },
            None => false,
        };
        self.transport == "tcp"
            && self.subsysnqn == target.subnqn
            && addr_matches
            && self.address_field("trsvcid") == Some(target.trsvcid.to_string().as_str())
    }
}

/// A namespace block device found in sysfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    /// Block device name, e.g. `nvme3n1`.
    pub name: String,
    /// Size in bytes (from the `size` attribute, in 512-byte sectors).
    pub size_bytes: u64,
}

/// All controllers under `<sysfs>/class/nvme`.
pub fn list_controllers(sysfs: &Path) -> Vec<Controller> {
    entries(&sysfs.join("class/nvme"))
        .into_iter()
        .filter(|(name, _)| parse_name(name) == Some(NameKind::Controller))
        .filter_map(|(name, dir)| {
            Some(Controller {
                subsysnqn: attr(&dir, "subsysnqn")?,
                transport: attr(&dir, "transport").unwrap_or_default(),
                address: attr(&dir, "address").unwrap_or_default(),
                state: attr(&dir, "state").unwrap_or_default(),
                name,
                dir,
            })
        })
        .collect()
}

/// Usable controllers connected to `target`'s subsystem at its address.
pub fn find_controllers(sysfs: &Path, target: &NvmeTcpTarget) -> Vec<Controller> {
    list_controllers(sysfs)
        .into_iter()
        .filter(|c| c.serves(target) && c.is_usable())
        .collect()
}

/// The block device of the namespace with `uuid` in subsystem `subnqn`.
pub fn find_namespace(sysfs: &Path, subnqn: &str, uuid: &uuid::Uuid) -> Option<Namespace> {
    find_namespaces(sysfs, subnqn, uuid).into_iter().next()
}

/// Every block device of a namespace with `uuid` in subsystem `subnqn`:
/// more than one while the kernel still lists a removed namespace beside
/// its re-added successor.
pub fn find_namespaces(sysfs: &Path, subnqn: &str, uuid: &uuid::Uuid) -> Vec<Namespace> {
    if uuid.is_nil() {
        return Vec::new();
    }
    let wanted = uuid.simple().to_string();
    // Multipath heads live under the subsystem; without multipath the
    // namespaces live under each controller.
    let subsystems = entries(&sysfs.join("class/nvme-subsystem"));
    let controllers = entries(&sysfs.join("class/nvme"));
    subsystems
        .into_iter()
        .chain(controllers)
        .filter(|(_, dir)| attr(dir, "subsysnqn").as_deref() == Some(subnqn))
        .flat_map(|(_, dir)| entries(&dir))
        .filter(|(name, _)| parse_name(name) == Some(NameKind::Namespace))
        .filter(|(_, dir)| namespace_has_id(dir, &wanted))
        .map(|(name, dir)| Namespace {
            size_bytes: attr(&dir, "size")
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0)
                .saturating_mul(512),
            name,
        })
        .collect()
}

/// Waits up to `timeout` for [`find_namespace`] to succeed, polling every `poll`.
pub async fn wait_for_namespace(
    sysfs: &Path,
    subnqn: &str,
    uuid: &uuid::Uuid,
    timeout: Duration,
    poll: Duration,
) -> Result<Namespace> {
    let start = Instant::now();
    loop {
        if let Some(ns) = find_namespace(sysfs, subnqn, uuid) {
            return Ok(ns);
        }
        if start.elapsed() >= timeout {
            return Err(NodeError::DeviceTimeout {
                what: format!("namespace {uuid} of {subnqn}"),
                waited: timeout,
            });
        }
        tokio::time::sleep(poll).await;
    }
}

fn namespace_has_id(dir: &Path, wanted_hex: &str) -> bool {
    ["uuid", "nguid", "wwid"]
        .iter()
        .filter_map(|a| attr(dir, a))
        .any(|v| normalise_id(&v) == wanted_hex)
}

/// Lower-case hex digits of an identifier, without `uuid.`/`eui.` prefixes
/// and dashes.
fn normalise_id(raw: &str) -> String {
    let v = raw.trim();
    let v = v
        .strip_prefix("uuid.")
        .or_else(|| v.strip_prefix("eui."))
        .unwrap_or(v);
    v.chars()
        .filter(|c| *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

#[derive(Debug, PartialEq, Eq)]
enum NameKind {
    /// `nvmeN`
    Controller,
    /// `nvmeNnM`: a block device.
    Namespace,
    /// `nvmeNcMnK`: a hidden per-path device.
    Path,
}

fn parse_name(name: &str) -> Option<NameKind> {
    let rest = name.strip_prefix("nvme")?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if digits(rest) {
        return Some(NameKind::Controller);
    }
    let (head, ns) = rest.rsplit_once('n')?;
    if !digits(ns) {
        return None;
    }
    if digits(head) {
        return Some(NameKind::Namespace);
    }
    let (a, b) = head.split_once('c')?;
    (digits(a) && digits(b)).then_some(NameKind::Path)
}

fn entries(dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(String, PathBuf)> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((e.file_name().into_string().ok()?, e.path())))
        .collect();
    out.sort();
    out
}

fn attr(dir: &Path, name: &str) -> Option<String> {
    fs::read_to_string(dir.join(name))
        .ok()
        .map(|s| s.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(parse_name("nvme0"), Some(NameKind::Controller));
        assert_eq!(parse_name("nvme12n3"), Some(NameKind::Namespace));
        assert_eq!(parse_name("nvme1c2n3"), Some(NameKind::Path));
        assert_eq!(parse_name("nvme-fabrics"), None);
        assert_eq!(parse_name("nvmen1"), None);
        assert_eq!(parse_name("nvme1n"), None);
        assert_eq!(parse_name("power"), None);
    }

    #[test]
    fn ids_are_normalised() {
        let hex = "8c7c4b5e1f7c4a8e9d550a4a3f1b2c3d";
        assert_eq!(normalise_id("8C7C4B5E-1F7C-4A8E-9D55-0A4A3F1B2C3D\n"), hex);
        assert_eq!(
            normalise_id("uuid.8c7c4b5e-1f7c-4a8e-9d55-0a4a3f1b2c3d"),
            hex
        );
        assert_eq!(normalise_id("eui.8c7c4b5e1f7c4a8e9d550a4a3f1b2c3d"), hex);
    }
}
