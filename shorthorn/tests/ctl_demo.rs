//! `shorthorn ctl` against a real `shorthorn local up`: the admin API
//! reports the nodes, the guided demo verifies its data end to end and
//! cleans up after itself, and nothing is left mounted afterwards.
//!
//! Runs as root (loop devices, FUSE, mounts), like the rest of the suite.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

const SHORTHORN: &str = env!("CARGO_BIN_EXE_shorthorn");
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// A `shorthorn local up` child; stopped and swept on drop, even when the
/// test fails half-way.
struct LocalUp {
    state_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl LocalUp {
    fn start(state_dir: &Path) -> LocalUp {
        let log = state_dir.with_extension("log");
        let out = std::fs::File::create(&log).expect("create log");
        let child = Command::new(SHORTHORN)
            // The sim's `local up`, whatever the caller exports: on real
            // spdk_tgt it needs a kernel frontend this host may lack, and
            // runs in the vmtest guest (`vmtest/run.sh --real-spdk`).
            .env_remove("SHORTHORN_SPDK_TGT")
            .args([
                "local",
                "up",
                "--nodes",
                "3",
                "--disk-mib",
                "1024",
                "--state-dir",
            ])
            .arg(state_dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .expect("spawn shorthorn local up");
        let mut up = LocalUp {
            state_dir: state_dir.to_path_buf(),
            log,
            child: Some(child),
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        while !state_dir.join("ready").exists() {
            if let Some(status) = up.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("local up exited early ({status}):\n{}", up.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "local up not ready in time:\n{}",
                up.log_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        up
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs `shorthorn local down` and reaps `local up`.
    fn down(&mut self) -> Output {
        let out = shorthorn(&[
            "local",
            "down",
            "--state-dir",
            &self.state_dir.to_string_lossy(),
        ]);
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
        out
    }
}

impl Drop for LocalUp {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(60);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
            // Sweeps whatever the interrupted run left mounted or attached.
            let _ = shorthorn(&[
                "local",
                "down",
                "--state-dir",
                &self.state_dir.to_string_lossy(),
            ]);
        }
    }
}

fn shorthorn(args: &[&str]) -> Output {
    Command::new(SHORTHORN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run shorthorn")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Mount points at or under any of `roots`.
fn mounts_under(roots: &[PathBuf]) -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| roots.iter().any(|r| Path::new(m).starts_with(r)))
        .map(str::to_string)
        .collect()
}

/// The SHA-256 hex digest following `marker` in `output`.
fn digest_after<'a>(output: &'a str, marker: &str) -> Option<&'a str> {
    let start = output.find(marker)? + marker.len();
    let digest = output.get(start..start + 64)?;
    digest
        .chars()
        .all(|c| c.is_ascii_hexdigit())
        .then_some(digest)
}

#[test]
fn ctl_reports_the_cluster_and_the_demo_verifies_its_data_and_leaves_nothing() {
    let scratch = tempfile::Builder::new()
        .prefix("shorthorn-ctl-")
        .tempdir()
        .expect("tempdir");
    let state_dir = scratch.path().join("state");
    let mut up = LocalUp::start(&state_dir);
    let ctl = format!("unix://{}", state_dir.join("ctl.sock").display());
    let csi = format!("unix://{}", state_dir.join("csi.sock").display());

    let out = shorthorn(&["ctl", "--endpoint", &ctl, "nodes", "--json"]);
    assert!(out.status.success(), "ctl nodes: {}", text(&out));
    let nodes: Value = serde_json::from_slice(&out.stdout).expect("ctl nodes --json is JSON");
    let nodes = nodes.as_array().expect("an array of nodes");
    assert_eq!(nodes.len(), 3, "{nodes:?}");
    for n in nodes {
        assert_eq!(n["reachable"], true, "{n}");
        assert!(n["free_bytes"].as_u64().is_some_and(|b| b > 0), "{n}");
    }

    let out = shorthorn(&["ctl", "demo", "--csi-endpoint", &csi]);
    let demo = text(&out);
    assert!(out.status.success(), "ctl demo failed:\n{demo}");
    let written = digest_after(&demo, "done: sha256 ").expect("the written checksum is shown");
    let verified = demo
        .lines()
        .find(|l| l.starts_with("Verified: "))
        .and_then(|l| digest_after(l, "sha256 "));
    assert_eq!(verified, Some(written), "demo output:\n{demo}");
    assert!(
        demo.contains(&format!("sha256 {written} matches")),
        "{demo}"
    );
    // Where the demo mounted its volumes: nothing may stay mounted there.
    let scratch_dirs: Vec<PathBuf> = demo
        .lines()
        .filter_map(|l| l.split("mounted at ").nth(1))
        .filter_map(|p| {
            Path::new(p.trim())
                .parent()?
                .parent()
                .map(Path::to_path_buf)
        })
        .collect();
    assert!(!scratch_dirs.is_empty(), "{demo}");

    let out = shorthorn(&["ctl", "--endpoint", &ctl, "volumes", "--json"]);
    assert!(out.status.success(), "ctl volumes: {}", text(&out));
    let volumes: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        volumes,
        Value::Array(vec![]),
        "the demo left volumes behind"
    );
    let out = shorthorn(&["ctl", "--endpoint", &ctl, "snapshots", "--json"]);
    let snapshots: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        snapshots,
        Value::Array(vec![]),
        "the demo left snapshots behind"
    );

    let out = up.down();
    let down = text(&out);
    assert!(out.status.success(), "local down: {down}");
    assert!(
        !down.contains("leftover"),
        "local down had to clean up: {down}"
    );
    let mut roots = scratch_dirs;
    roots.push(state_dir.clone());
    assert_eq!(mounts_under(&roots), Vec::<String>::new());
    assert!(
        !state_dir.join("ctl.sock").exists(),
        "admin socket left behind"
    );

    let out = shorthorn(&["ctl", "--endpoint", &ctl, "nodes"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("is `shorthorn local up` running"),
        "{}",
        text(&out)
    );
}
