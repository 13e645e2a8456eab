//! A dm-linear indirection over a volume's device, driven by `dmsetup`.
//!
//! Putting a linear target between the frontend device and its users lets
//! the node suspend I/O (for raw block volumes, which cannot be frozen),
//! and swap the underlying device under a live mount by reloading the
//! table. Command lines are built by pure functions and run through a
//! [`CommandRunner`].
//!
//! The unit tests check the command lines and the interpretation of
//! `dmsetup` results; `node/tests/vm_guest.rs` runs them against a real
//! kernel in the vmtest VM (`vmtest/run.sh`). Blocking.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::command::{CommandLine, CommandRunner};
use crate::error::{NodeError, Result};

/// Prefix of every device-mapper name this node creates.
pub const DM_NAME_PREFIX: &str = "shorthorn-";
/// Longest device-mapper name the kernel accepts (DM_NAME_LEN - 1).
pub const DM_NAME_MAX: usize = 127;
/// Directory of device-mapper nodes.
pub const DM_DEV_DIR: &str = "/dev/mapper";

/// The device-mapper name for `volume_id`.
pub fn dm_name(volume_id: &str) -> Result<String> {
    let name = format!("{DM_NAME_PREFIX}{volume_id}");
    let reject = |reason| {
        Err(NodeError::InvalidDmName {
            name: name.clone(),
            reason,
        })
    };
    if volume_id.is_empty() {
        return reject("empty volume id");
    }
    if name.len() > DM_NAME_MAX {
        return reject("longer than 127 bytes");
    }
    if !volume_id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return reject("volume id may only hold ASCII letters, digits, `-`, `_` and `.`");
    }
    Ok(name)
}

/// Path of the device node for `name`.
pub fn dm_path(name: &str) -> PathBuf {
    Path::new(DM_DEV_DIR).join(name)
}

/// A table mapping all `sectors` (512-byte) of `device` linearly.
pub fn linear_table(device: &Path, sectors: u64) -> String {
    format!("0 {sectors} linear {} 0", device.display())
}

/// Makes libdevmapper check the `/dev/mapper` node after udev and create
/// (or delete) it itself when udev did not. Without it, a node service with
/// no udev of its own (a container, a minimal host) gets a device whose
/// `/dev/mapper/NAME` never appears: libdevmapper logs "Udev is not
/// running" and still leaves the node to udev ("Skipping NODE_ADD ...
/// [trust_udev]"), as seen on a 6.12 kernel in the vmtest VM.
/// (`--noudevrules --noudevsync` does not help there.)
pub const NODE_OPTIONS: [&str; 1] = ["--verifyudev"];

/// `dmsetup --verifyudev create NAME --table TABLE`
pub fn create_command(name: &str, table: &str) -> CommandLine {
    let args = NODE_OPTIONS
        .iter()
        .copied()
        .chain(["create", name, "--table", table]);
    CommandLine::new("dmsetup", args)
}

/// `dmsetup reload NAME --table TABLE` (loads the inactive table).
pub fn reload_command(name: &str, table: &str) -> CommandLine {
    CommandLine::new("dmsetup", ["reload", name, "--table", table])
}

/// `dmsetup suspend NAME` (also freezes a filesystem mounted on it).
pub fn suspend_command(name: &str) -> CommandLine {
    CommandLine::new("dmsetup", ["suspend", name])
}

/// `dmsetup resume NAME` (activates a reloaded table, then resumes I/O).
pub fn resume_command(name: &str) -> CommandLine {
    CommandLine::new("dmsetup", ["resume", name])
}

/// `dmsetup --verifyudev remove NAME` (deletes the node too)
pub fn remove_command(name: &str) -> CommandLine {
    let args = NODE_OPTIONS.iter().copied().chain(["remove", name]);
    CommandLine::new("dmsetup", args)
}

/// `dmsetup info NAME`
pub fn info_command(name: &str) -> CommandLine {
    CommandLine::new("dmsetup", ["info", name])
}

/// dm-linear devices managed through `dmsetup`.
#[derive(Clone)]
pub struct DmLinear {
    runner: Arc<dyn CommandRunner>,
}

impl std::fmt::Debug for DmLinear {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DmLinear").finish_non_exhaustive()
    }
}

impl DmLinear {
    /// Uses `runner` to execute dmsetup.
    pub fn new(runner: Arc<dyn CommandRunner>) -> Self {
        DmLinear { runner }
    }

    fn run(&self, cmd: CommandLine) -> Result<()> {
        self.runner.run(&cmd)?.check(&cmd).map(drop)
    }

    /// Creates the linear device for `volume_id` over `device` (`sectors`
    /// long) unless it exists, and returns its path.
    pub fn create(&self, volume_id: &str, device: &Path, sectors: u64) -> Result<PathBuf> {
        let name = dm_name(volume_id)?;
        if !self.exists(&name)? {
            self.run(create_command(&name, &linear_table(device, sectors)))?;
            tracing::info!(%name, device = %device.display(), sectors, "dm-linear created");
        }
        Ok(dm_path(&name))
    }

    /// Suspends I/O on `name`.
    pub fn suspend(&self, name: &str) -> Result<()> {
        self.run(suspend_command(name))
    }

    /// Resumes I/O on `name`, activating a reloaded table if any.
    pub fn resume(&self, name: &str) -> Result<()> {
        self.run(resume_command(name))
    }

    /// Loads a table pointing at `device` as the inactive table of `name`;
    /// it takes effect at the next [`DmLinear::resume`].
    pub fn reload(&self, name: &str, device: &Path, sectors: u64) -> Result<()> {
        self.run(reload_command(name, &linear_table(device, sectors)))
    }

    /// Removes `name`; a missing device is not an error.
    pub fn remove(&self, name: &str) -> Result<()> {
        if self.exists(name)? {
            self.run(remove_command(name))?;
            tracing::info!(%name, "dm-linear removed");
        }
        Ok(())
    }

    /// True when the kernel knows a device called `name`.
    pub fn exists(&self, name: &str) -> Result<bool> {
        let cmd = info_command(name);
        let out = self.runner.run(&cmd)?;
        if out.success() {
            return Ok(true);
        }
        if out.stderr.contains("does not exist") {
            return Ok(false);
        }
        Err(out.into_error(&cmd))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::testing::{exit, ScriptedRunner};
    use crate::command::CommandOutput;

    fn missing() -> CommandOutput {
        CommandOutput {
            status: Some(1),
            stdout: String::new(),
            stderr: "Device does not exist.\nCommand failed.\n".into(),
        }
    }

    #[test]
    fn names() {
        assert_eq!(dm_name("pvc-1234.a_b").unwrap(), "shorthorn-pvc-1234.a_b");
        for bad in ["", "a/b", "a b", "é"] {
            assert!(dm_name(bad).is_err(), "{bad:?}");
        }
        assert!(dm_name(&"x".repeat(DM_NAME_MAX)).is_err());
    }

    #[test]
    fn command_lines() {
        let table = linear_table(Path::new("/dev/nvme1n1"), 2048);
        assert_eq!(table, "0 2048 linear /dev/nvme1n1 0");
        assert_eq!(
            create_command("shorthorn-v", &table).to_string(),
            "dmsetup --verifyudev create shorthorn-v \
             --table \"0 2048 linear /dev/nvme1n1 0\""
        );
        assert_eq!(
            reload_command("shorthorn-v", &table).args,
            vec![
                "reload",
                "shorthorn-v",
                "--table",
                "0 2048 linear /dev/nvme1n1 0"
            ]
        );
        assert_eq!(suspend_command("n").to_string(), "dmsetup suspend n");
        assert_eq!(resume_command("n").to_string(), "dmsetup resume n");
        assert_eq!(
            remove_command("n").to_string(),
            "dmsetup --verifyudev remove n"
        );
    }

    #[test]
    fn create_when_missing_then_skip_when_present() {
        let r = Arc::new(ScriptedRunner::answering(vec![missing(), exit(0, "")]));
        let dm = DmLinear::new(r.clone());
        let path = dm.create("vol1", Path::new("/dev/ublkb1"), 8).unwrap();
        assert_eq!(path, Path::new("/dev/mapper/shorthorn-vol1"));
        assert_eq!(
            r.calls(),
            vec![
                "dmsetup info shorthorn-vol1",
                "dmsetup --verifyudev create shorthorn-vol1 \
                 --table \"0 8 linear /dev/ublkb1 0\""
            ]
        );
        let r = Arc::new(ScriptedRunner::answering(vec![exit(
            0,
            "Name: shorthorn-vol1",
        )]));
        DmLinear::new(r.clone())
            .create("vol1", Path::new("/dev/ublkb1"), 8)
            .unwrap();
        assert_eq!(r.calls(), vec!["dmsetup info shorthorn-vol1"]);
    }

    #[test]
    fn remove_is_idempotent() {
        let r = Arc::new(ScriptedRunner::answering(vec![missing()]));
        DmLinear::new(r.clone()).remove("shorthorn-gone").unwrap();
        assert_eq!(r.calls(), vec!["dmsetup info shorthorn-gone"]);
    }

    #[test]
    fn info_failure_other_than_missing_is_an_error() {
        let r = Arc::new(ScriptedRunner::answering(vec![CommandOutput {
            status: Some(1),
            stdout: String::new(),
            stderr: "/dev/mapper/control: open failed: Permission denied".into(),
        }]));
        assert!(matches!(
            DmLinear::new(r).exists("x"),
            Err(NodeError::CommandFailed { .. })
        ));
    }

    #[test]
    fn suspend_failure_is_reported() {
        let r = Arc::new(ScriptedRunner::answering(vec![exit(1, "")]));
        assert!(DmLinear::new(r.clone()).suspend("n").is_err());
        assert_eq!(r.calls(), vec!["dmsetup suspend n"]);
    }
}
