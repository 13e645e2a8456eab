//! The node's persistent NVMe host identity, reported in the agent's
//! [`NodeIdentity`](agent_api::NodeIdentity).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{NodeError, Result};

/// File name of the host NQN, in `/etc/nvme` and in the state dir.
const HOSTNQN_FILE: &str = "hostnqn";
/// File name of the host id, in `/etc/nvme` and in the state dir.
const HOSTID_FILE: &str = "hostid";

/// The NVMe host NQN and host id the kernel initiator connects with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostIdentity {
    /// Host NQN.
    pub hostnqn: String,
    /// Host identifier.
    pub hostid: uuid::Uuid,
}

impl HostIdentity {
    /// Uses `hostnqn`/`hostid` from `etc_dir` (normally `/etc/nvme`) when
    /// present, else the ones persisted in `state_dir`, else generates a
    /// UUID-based pair and persists it in `state_dir` so it never changes
    /// across restarts.
    pub fn load_or_create(etc_dir: &Path, state_dir: &Path) -> Result<Self> {
        let hostid = match read_first(&[etc_dir.join(HOSTID_FILE), state_dir.join(HOSTID_FILE)])? {
            Some((raw, path)) => raw.parse().map_err(|e| NodeError::Config {
                what: "NVMe host id",
                reason: format!("{}: {raw:?} is not a UUID: {e}", path.display()),
            })?,
            None => {
                let id = uuid::Uuid::new_v4();
                persist(state_dir, HOSTID_FILE, &id.to_string())?;
                id
            }
        };
        let hostnqn = match read_first(&[etc_dir.join(HOSTNQN_FILE), state_dir.join(HOSTNQN_FILE)])?
        {
            Some((raw, _)) => raw,
            None => {
                let nqn = format!("nqn.2014-08.org.nvmexpress:uuid:{hostid}");
                persist(state_dir, HOSTNQN_FILE, &nqn)?;
                nqn
            }
        };
        agent_api::validate_nqn(&hostnqn)?;
        Ok(HostIdentity { hostnqn, hostid })
    }
}

/// The first of `paths` that exists with non-blank content, trimmed.
fn read_first(paths: &[PathBuf]) -> Result<Option<(String, PathBuf)>> {
    for path in paths {
        match std::fs::read_to_string(path) {
            Ok(raw) if !raw.trim().is_empty() => {
                return Ok(Some((raw.trim().to_owned(), path.clone())))
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(NodeError::io("read", path, e)),
        }
    }
    Ok(None)
}

/// Writes `dir/name` atomically (temp file, fsync, rename).
fn persist(dir: &Path, name: &str, value: &str) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| NodeError::io("create state dir", dir, e))?;
    let tmp = dir.join(format!(".{name}.tmp"));
    let path = dir.join(name);
    let mut f = std::fs::File::create(&tmp).map_err(|e| NodeError::io("create", &tmp, e))?;
    f.write_all(format!("{value}\n").as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| NodeError::io("write", &tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| NodeError::io("rename", &path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_identity_is_persisted_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let etc = dir.path().join("etc-nvme");
        let state = dir.path().join("state");
        let first = HostIdentity::load_or_create(&etc, &state).unwrap();
        assert_eq!(
            first.hostnqn,
            format!("nqn.2014-08.org.nvmexpress:uuid:{}", first.hostid)
        );
        assert_eq!(HostIdentity::load_or_create(&etc, &state).unwrap(), first);
    }

    #[test]
    fn etc_nvme_wins() {
        let dir = tempfile::tempdir().unwrap();
        let etc = dir.path().join("etc-nvme");
        std::fs::create_dir_all(&etc).unwrap();
        let id = "0b9d5a44-1c55-4c0c-8a3e-9f1d1e2a3b4c";
        std::fs::write(etc.join("hostid"), format!("{id}\n")).unwrap();
        std::fs::write(
            etc.join("hostnqn"),
            "nqn.2014-08.org.nvmexpress:uuid:node-a\n",
        )
        .unwrap();
        let got = HostIdentity::load_or_create(&etc, &dir.path().join("state")).unwrap();
        assert_eq!(got.hostid.to_string(), id);
        assert_eq!(got.hostnqn, "nqn.2014-08.org.nvmexpress:uuid:node-a");
        assert!(!dir.path().join("state").exists());
    }

    #[test]
    fn garbage_host_id_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hostid"), "nope").unwrap();
        assert!(HostIdentity::load_or_create(dir.path(), dir.path()).is_err());
    }
}
