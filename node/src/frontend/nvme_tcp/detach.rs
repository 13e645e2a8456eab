//! Deleting a controller through sysfs.

use std::io::ErrorKind;

use crate::error::{NodeError, Result};
use crate::frontend::nvme_tcp::sysfs::Controller;

/// Writes `1` to the controller's `delete_controller` attribute. A
/// controller that vanished meanwhile counts as deleted. Blocking.
pub fn delete_controller(ctrl: &Controller) -> Result<()> {
    let attr = ctrl.dir.join("delete_controller");
    match std::fs::write(&attr, "1") {
        Ok(()) => {
            tracing::info!(controller = %ctrl.name, subnqn = %ctrl.subsysnqn, "controller deleted");
            Ok(())
        }
        Err(e)
            if e.kind() == ErrorKind::NotFound || e.raw_os_error() == Some(nix::libc::ENODEV) =>
        {
            Ok(())
        }
        Err(e) => Err(NodeError::io("write", attr, e)),
    }
}
