//! One `shorthorn local up` running as a child process for the suite.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use crate::plan::Topology;

/// How long the local cluster may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// A running local cluster; stopped (with `local down`) on drop.
#[derive(Debug)]
pub struct LocalCluster {
    shorthorn: PathBuf,
    state_dir: PathBuf,
    child: Option<Child>,
}

impl LocalCluster {
    /// Starts `shorthorn local up` for `topology` in `state_dir` (emptied
    /// first) and waits until it serves CSI.
    pub fn start(shorthorn: &Path, state_dir: &Path, topology: &Topology) -> anyhow::Result<Self> {
        if state_dir.exists() {
            // A previous run's leftovers: stop it and sweep before removing files.
            let _ = Command::new(shorthorn)
                .args(["local", "down", "--state-dir"])
                .arg(state_dir)
                .stdout(Stdio::null())
                .status();
            std::fs::remove_dir_all(state_dir)
                .with_context(|| format!("removing {}", state_dir.display()))?;
        }
        std::fs::create_dir_all(state_dir)?;
        let log = std::fs::File::create(state_dir.with_extension("log"))?;
        let disks: Vec<String> = topology.disk_mib.iter().map(u64::to_string).collect();
        let child = Command::new(shorthorn)
            .args(["local", "up", "--state-dir"])
            .arg(state_dir)
            .arg("--nodes")
            .arg(topology.disk_mib.len().to_string())
            .arg("--disk-mib")
            .arg(disks.join(","))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {} local up", shorthorn.display()))?;
        let mut cluster = LocalCluster {
            shorthorn: shorthorn.to_path_buf(),
            state_dir: state_dir.to_path_buf(),
            child: Some(child),
        };
        cluster.wait_ready()?;
        Ok(cluster)
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let ready = self.state_dir.join("ready");
        loop {
            if ready.exists() {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!(
                        "shorthorn local up exited before it was ready ({status}); see {}",
                        self.state_dir.with_extension("log").display()
                    );
                }
            }
            if Instant::now() > deadline {
                bail!("shorthorn local up was not ready within {READY_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The CSI endpoint to give csi-sanity.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.state_dir.join("csi.sock").display())
    }

    /// The cluster's state directory.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Stops the cluster (SIGTERM, then wait), then runs `local down`, which
    /// fails if anything was left mounted or attached.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let exit = child.wait().context("waiting for shorthorn local up")?;
        if !exit.success() {
            bail!(
                "shorthorn local up exited with {exit}; see {}",
                self.state_dir.with_extension("log").display()
            );
        }
        let status = Command::new(&self.shorthorn)
            .args(["local", "down", "--state-dir"])
            .arg(&self.state_dir)
            .status()
            .context("running shorthorn local down")?;
        if !status.success() {
            bail!("shorthorn local down reported leftovers ({status})");
        }
        Ok(())
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("warning: stopping the local cluster: {e:#}");
        }
    }
}
