//! Starts storage node processes the one way testkit, `shorthorn local up`
//! and `shorthorn bench` all use: the sim, or real SPDK placed right for a
//! small machine.
//!
//! Real nodes:
//! - A node that assembles raids ([`Role::Engine`]) runs `spdk_tgt` polling:
//!   `bdev_nvme_attach_controller` over TCP is refused (-95) in interrupt mode.
//!   It gets a core of its own where there is one.
//! - A node that only serves replicas ([`Role::Replica`]) runs
//!   `nvmf_tgt --interrupt-mode` (it has the bdev, lvol, raid and NVMe-oF RPCs,
//!   not ublk), which sleeps when idle: about 0.4 % of a core measured here,
//!   against 98 % for `spdk_tgt --interrupt-mode`, whose iSCSI poll group stays
//!   busy, and 100 % for any polling target. Without an nvmf_tgt it falls back
//!   to `spdk_tgt --interrupt-mode`.
//! - `--disable-cpumask-locks` whenever the plan puts two nodes on one core,
//!   or another SPDK process already holds the core's lock; without it the
//!   second process exits with `claim_cpu_cores: Cannot create lock on core N`.
//! - Every node has its own `-i` shared-memory id and RPC socket; hugepage
//!   maps a killed process left under that id are removed before it starts;
//!   missing hugepages or an unmounted hugetlbfs fail before the start with
//!   the fix in the message; readiness is `spdk_get_version` answering.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::hugepages;
use crate::nodes::NodesError;
use crate::rpc_probe;
use crate::spdk_env::RealSpdk;

/// hugepage memory (`-s`, MiB) of a node that assembles raids.
pub const ENGINE_MEM_MIB: u64 = 512;
/// hugepage memory (`-s`, MiB) of a replica-only node.
pub const REPLICA_MEM_MIB: u64 = 256;
/// How long a node may take to exit after SIGINT before it is SIGKILLed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// What a storage node does in the cluster, which decides how real SPDK runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Assembles raid1 bdevs over remote replicas (attaches NVMe/TCP): polls.
    Engine,
    /// Only serves its replicas over NVMe/TCP: sleeps in interrupt mode.
    Replica,
}

/// The roles of an `n`-node cluster whose first node publishes volumes: one
/// engine, then replica-only nodes.
pub fn first_node_engine(n: usize) -> Vec<Role> {
    (0..n)
        .map(|i| if i == 0 { Role::Engine } else { Role::Replica })
        .collect()
}

/// The program behind a node's socket.
#[derive(Debug, Clone)]
pub enum Program {
    /// The sim: `command` and `args` (e.g. `shorthorn sim`), then
    /// `--rpc-socket <socket> --data-dir <data_dir>`.
    Sim {
        /// The executable.
        command: PathBuf,
        /// Arguments before the sim's own.
        args: Vec<OsString>,
        /// The sim's data directory.
        data_dir: PathBuf,
    },
    /// Real SPDK binaries.
    Real(RealSpdk),
}

/// Where one node runs: its core, and whether that core is shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoreSlot {
    /// The core (`-m 1<<core`).
    pub core: usize,
    /// Another node of the plan runs on the same core.
    pub shared: bool,
}

/// Places nodes with `roles` on `cores` cores: engines first, one core each
/// while there are cores (then wrapping); replicas on the cores engines left
/// free, or on the last core when none is left.
pub fn place(roles: &[Role], cores: usize) -> Vec<CoreSlot> {
    let cores = cores.clamp(1, 64);
    let engines = roles.iter().filter(|r| **r == Role::Engine).count();
    let mut next_engine = 0usize;
    let mut next_replica = 0usize;
    let chosen: Vec<usize> = roles
        .iter()
        .map(|role| match role {
            Role::Engine => {
                let c = next_engine % cores;
                next_engine += 1;
                c
            }
            Role::Replica => {
                let free = cores.saturating_sub(engines);
                let c = if free == 0 {
                    cores - 1
                } else {
                    engines + next_replica % free
                };
                next_replica += 1;
                c
            }
        })
        .collect();
    chosen
        .iter()
        .map(|&core| CoreSlot {
            core,
            shared: chosen.iter().filter(|&&c| c == core).count() > 1,
        })
        .collect()
}

/// The number of cores this process may use.
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Everything needed to start one node.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// Node name, for logs and errors.
    pub name: String,
    /// What the node does.
    pub role: Role,
    /// What runs.
    pub program: Program,
    /// JSON-RPC socket (`-r`).
    pub socket: PathBuf,
    /// File receiving the process's stdout and stderr.
    pub log: PathBuf,
    /// Shared-memory id (`-i`), unique among running SPDK processes.
    pub shm_id: u32,
    /// Core placement (see [`place`]).
    pub slot: CoreSlot,
    /// Append to the log instead of truncating it.
    pub append_log: bool,
    /// Send the node SIGTERM when the thread that started it exits. Only for
    /// a long-lived thread (a runtime worker), never a blocking-pool thread.
    pub die_with_parent: bool,
}

/// The executable and arguments that start `spec`.
pub fn command_line(spec: &NodeSpec) -> (PathBuf, Vec<OsString>) {
    match &spec.program {
        Program::Sim {
            command,
            args,
            data_dir,
        } => {
            let mut a = args.clone();
            a.extend([
                "--rpc-socket".into(),
                spec.socket.clone().into_os_string(),
                "--data-dir".into(),
                data_dir.clone().into_os_string(),
            ]);
            (command.clone(), a)
        }
        Program::Real(real) => {
            let (bin, mem, interrupt) = match (spec.role, &real.nvmf_tgt) {
                (Role::Engine, _) => (&real.spdk_tgt, ENGINE_MEM_MIB, false),
                (Role::Replica, Some(nvmf)) => (nvmf, REPLICA_MEM_MIB, true),
                (Role::Replica, None) => (&real.spdk_tgt, REPLICA_MEM_MIB, true),
            };
            let mut a: Vec<OsString> = vec![
                "-m".into(),
                format!("{:#x}", 1u64 << spec.slot.core).into(),
                "-i".into(),
                spec.shm_id.to_string().into(),
                "-r".into(),
                spec.socket.clone().into_os_string(),
                "-s".into(),
                mem.to_string().into(),
                "--no-pci".into(),
            ];
            if interrupt {
                a.push("--interrupt-mode".into());
            }
            if spec.slot.shared || core_lock_held(spec.slot.core) {
                a.push("--disable-cpumask-locks".into());
            }
            (bin.clone(), a)
        }
    }
}

/// hugepage memory (MiB) the node asks for, 0 for the sim.
pub fn hugepage_mib(spec: &NodeSpec) -> u64 {
    match (&spec.program, spec.role) {
        (Program::Sim { .. }, _) => 0,
        (Program::Real(_), Role::Engine) => ENGINE_MEM_MIB,
        (Program::Real(_), Role::Replica) => REPLICA_MEM_MIB,
    }
}

/// Whether some process holds SPDK's lock file for `core`
/// (`/var/tmp/spdk_cpu_lock_NNN`, a write lock taken with `fcntl`).
pub fn core_lock_held(core: usize) -> bool {
    let path = format!("/var/tmp/spdk_cpu_lock_{core:03}");
    let Ok(file) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
    else {
        return false;
    };
    // SAFETY: an all-zero flock is a valid value to fill in.
    let mut lock: nix::libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = nix::libc::F_WRLCK as nix::libc::c_short;
    lock.l_whence = nix::libc::SEEK_SET as nix::libc::c_short;
    nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_GETLK(&mut lock)).is_ok()
        && lock.l_type != nix::libc::F_UNLCK as nix::libc::c_short
}

/// One running node process: stopped (SIGINT, then SIGKILL) and reaped on drop.
#[derive(Debug)]
pub struct NodeProcess {
    spec: NodeSpec,
    command: String,
    child: Option<Child>,
    started: Instant,
}

impl NodeProcess {
    /// Starts `spec`: checks hugepages and removes stale maps for real SPDK,
    /// removes a stale socket, then spawns. Does not wait; see [`Self::wait_ready`].
    pub fn spawn(spec: NodeSpec) -> Result<Self, NodesError> {
        let mem = hugepage_mib(&spec);
        if mem > 0 {
            hugepages::preflight(mem)?;
            hugepages::remove_stale_maps(spec.shm_id);
        }
        let _ = std::fs::remove_file(&spec.socket);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(spec.append_log)
            .truncate(!spec.append_log)
            .open(&spec.log)
            .map_err(|source| NodesError::Io {
                context: format!("opening the log {} of {}", spec.log.display(), spec.name),
                source,
            })?;
        let log2 = log.try_clone().map_err(|source| NodesError::Io {
            context: "cloning the node log".into(),
            source,
        })?;
        let (bin, args) = command_line(&spec);
        let command = render(&bin, &args);
        tracing::info!(node = %spec.name, %command, "starting storage node");
        let mut cmd = Command::new(&bin);
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2));
        if spec.die_with_parent {
            use std::os::unix::process::CommandExt;
            // SAFETY: the closure only calls prctl(2), which is async-signal-safe.
            unsafe {
                cmd.pre_exec(|| {
                    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
                        .map_err(std::io::Error::from)
                });
            }
        }
        let child = cmd.spawn().map_err(|source| NodesError::Io {
            context: format!("starting storage node {} ({})", spec.name, bin.display()),
            source,
        })?;
        Ok(Self {
            spec,
            command,
            child: Some(child),
            started: Instant::now(),
        })
    }

    /// Starts `spec` and waits until it answers (see [`Self::wait_ready`]).
    pub fn start(spec: NodeSpec, timeout: Duration) -> Result<Self, NodesError> {
        let mut node = Self::spawn(spec)?;
        node.wait_ready(timeout)?;
        Ok(node)
    }

    /// Polls `spdk_get_version` until it answers; returns the time from spawn
    /// to the first answer. Fails (and kills the process) when it exits or
    /// does not answer within `timeout`, with the log tail and a hint.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<Duration, NodesError> {
        let deadline = Instant::now() + timeout;
        loop {
            if !self.is_running() {
                self.child = None;
                return Err(self.not_ready(timeout, "the process exited"));
            }
            let last = match rpc_probe::get_version(&self.spec.socket) {
                Ok(()) => {
                    let took = self.started.elapsed();
                    tracing::info!(node = %self.spec.name, ms = took.as_millis() as u64, "storage node ready");
                    return Ok(took);
                }
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                self.kill();
                return Err(self.not_ready(timeout, &last));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn not_ready(&self, timeout: Duration, reason: &str) -> NodesError {
        let log = std::fs::read_to_string(&self.spec.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        let hint = hugepages::diagnose(&log)
            .map(|h| format!("\nhint: {h}"))
            .unwrap_or_default();
        NodesError::NotReady {
            name: self.spec.name.clone(),
            socket: self.spec.socket.clone(),
            timeout,
            reason: format!(
                "{reason}; log {} ends:\n{}{hint}",
                self.spec.log.display(),
                tail.join("\n")
            ),
        }
    }

    /// The spec it was started from.
    pub fn spec(&self) -> &NodeSpec {
        &self.spec
    }

    /// The command line it was started with.
    pub fn command(&self) -> &str {
        &self.command
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// Asks the process to exit (SIGINT: the sim removes its ublk loop devices
    /// and FUSE mounts, SPDK shuts down its subsystems), SIGKILLs it if it
    /// lingers, reaps it and removes its hugepage maps.
    pub fn stop(&mut self) {
        let Some(child) = self.child.as_mut() else {
            return;
        };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        if nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).is_ok() {
            let deadline = Instant::now() + STOP_TIMEOUT;
            while Instant::now() < deadline {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    self.child = None;
                    self.after_exit();
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            tracing::warn!(node = %self.spec.name, "storage node ignored SIGINT; killing it");
        }
        self.kill();
    }

    /// SIGKILLs the process (a crash) and reaps it; files stay, hugepage maps
    /// are removed before the next start.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn after_exit(&self) {
        if hugepage_mib(&self.spec) > 0 {
            hugepages::remove_stale_maps(self.spec.shm_id);
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.stop();
        self.after_exit();
    }
}

/// A command line as one shell-like string, for logs.
pub fn render(bin: &Path, args: &[OsString]) -> String {
    std::iter::once(bin.as_os_str())
        .chain(args.iter().map(OsString::as_os_str))
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn real() -> RealSpdk {
        RealSpdk {
            spdk_tgt: "/b/spdk_tgt".into(),
            nvmf_tgt: Some("/b/nvmf_tgt".into()),
            spdk_dd: None,
        }
    }

    fn spec(role: Role, slot: CoreSlot, program: Program) -> NodeSpec {
        NodeSpec {
            name: "node-0".into(),
            role,
            program,
            socket: "/s/rpc.sock".into(),
            log: "/s/log".into(),
            shm_id: 7,
            slot,
            append_log: false,
            die_with_parent: false,
        }
    }

    fn args(spec: &NodeSpec) -> String {
        let (bin, a) = command_line(spec);
        render(&bin, &a)
    }

    #[test]
    fn one_engine_and_two_replicas_on_two_cores() {
        let slots = place(&first_node_engine(3), 2);
        assert_eq!(
            slots,
            [
                CoreSlot {
                    core: 0,
                    shared: false
                },
                CoreSlot {
                    core: 1,
                    shared: true
                },
                CoreSlot {
                    core: 1,
                    shared: true
                },
            ]
        );
    }

    #[test]
    fn engines_get_own_cores_until_they_run_out() {
        let slots = place(&[Role::Engine, Role::Engine, Role::Engine], 2);
        let cores: Vec<usize> = slots.iter().map(|s| s.core).collect();
        assert_eq!(cores, [0, 1, 0]);
        assert!(slots[0].shared && !slots[1].shared && slots[2].shared);
        let roomy = place(&[Role::Engine, Role::Replica, Role::Replica], 8);
        let cores: Vec<usize> = roomy.iter().map(|s| s.core).collect();
        assert_eq!(cores, [0, 1, 2]);
        assert!(roomy.iter().all(|s| !s.shared));
        let tight = place(&[Role::Engine, Role::Replica], 1);
        assert!(tight.iter().all(|s| s.core == 0 && s.shared));
    }

    #[test]
    fn an_engine_polls_spdk_tgt_on_its_core() {
        let s = spec(
            Role::Engine,
            CoreSlot {
                core: 0,
                shared: true,
            },
            Program::Real(real()),
        );
        assert_eq!(
            args(&s),
            "/b/spdk_tgt -m 0x1 -i 7 -r /s/rpc.sock -s 512 --no-pci --disable-cpumask-locks"
        );
    }

    #[test]
    fn a_replica_sleeps_in_nvmf_tgt_or_falls_back_to_spdk_tgt() {
        let slot = CoreSlot {
            core: 1,
            shared: true,
        };
        let s = spec(Role::Replica, slot, Program::Real(real()));
        assert_eq!(
            args(&s),
            "/b/nvmf_tgt -m 0x2 -i 7 -r /s/rpc.sock -s 256 --no-pci --interrupt-mode --disable-cpumask-locks"
        );
        let mut no_nvmf = real();
        no_nvmf.nvmf_tgt = None;
        let s = spec(Role::Replica, slot, Program::Real(no_nvmf));
        assert!(args(&s).starts_with("/b/spdk_tgt -m 0x2"), "{}", args(&s));
        assert!(args(&s).contains("--interrupt-mode"));
    }

    #[test]
    fn the_sim_gets_its_socket_and_data_dir() {
        let s = spec(
            Role::Engine,
            CoreSlot {
                core: 0,
                shared: false,
            },
            Program::Sim {
                command: "/t/shorthorn".into(),
                args: vec!["sim".into()],
                data_dir: "/s/sim".into(),
            },
        );
        assert_eq!(
            args(&s),
            "/t/shorthorn sim --rpc-socket /s/rpc.sock --data-dir /s/sim"
        );
        assert_eq!(hugepage_mib(&s), 0);
    }
}
