//! `shorthorn local down`: stops a running local cluster and removes
//! whatever it left behind.

use std::time::{Duration, Instant};

use anyhow::bail;
use nix::sys::signal::{kill, Signal};

use super::layout::Layout;
use super::pidfile::{is_alive, read_live_pid};
use super::sweep::sweep;

/// How long `local up` gets to tear down after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// Stops the cluster in `layout` (if running) and sweeps its mounts and loop devices.
pub async fn down(layout: &Layout) -> anyhow::Result<()> {
    if let Some(pid) = read_live_pid(&layout.pid_file()) {
        println!("Stopping the local cluster (pid {pid})...");
        kill(pid, Signal::SIGTERM)?;
        let deadline = Instant::now() + STOP_TIMEOUT;
        while is_alive(pid) {
            if Instant::now() > deadline {
                bail!(
                    "pid {pid} did not stop within {STOP_TIMEOUT:?}; it may still be cleaning up"
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    } else {
        println!(
            "No local cluster is running from {}.",
            layout.root().display()
        );
    }
    let report = sweep(layout.root());
    for m in &report.unmounted {
        println!("unmounted leftover {}", m.display());
    }
    for d in &report.detached {
        println!("detached leftover {d}");
    }
    if !report.failures.is_empty() {
        bail!(
            "could not clean up everything: {}",
            report.failures.join("; ")
        );
    }
    println!("Nothing left running, mounted or attached.");
    Ok(())
}
