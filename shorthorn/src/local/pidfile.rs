//! One `local up` per state directory, found again by `local down`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use nix::sys::signal::kill;
use nix::unistd::Pid;

/// Holds the PID file for the lifetime of `local up`; removes it on drop.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
}

impl PidFile {
    /// Writes this process's PID, refusing if another live process holds the file.
    pub fn acquire(path: &Path) -> anyhow::Result<Self> {
        if let Some(pid) = read_live_pid(path) {
            bail!(
                "a local cluster is already running from this state directory (pid {pid}); \
                 stop it with `shorthorn local down` first"
            );
        }
        std::fs::write(path, format!("{}\n", std::process::id()))
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The PID recorded in `path`, if that process is still alive.
pub fn read_live_pid(path: &Path) -> Option<Pid> {
    let text = std::fs::read_to_string(path).ok()?;
    let pid = Pid::from_raw(text.trim().parse().ok()?);
    is_alive(pid).then_some(pid)
}

/// True while `pid` runs. A zombie (exited, not yet reaped by its parent)
/// counts as gone: it holds nothing any more.
pub fn is_alive(pid: Pid) -> bool {
    if kill(pid, None).is_err() {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the first field after the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_none_or(|state| state != "Z"),
        Err(_) => false,
    }
}
