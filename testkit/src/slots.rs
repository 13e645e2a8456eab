//! A machine-wide budget of real SPDK nodes for tests.
//!
//! Test binaries run tests on parallel threads, and each test starts its own
//! cluster; on a 2-core machine more than 3 SPDK targets at once slow each
//! other down by orders of magnitude. A cluster of real nodes therefore
//! holds one slot per node: a `flock`ed file under the temp directory, held
//! for the cluster's life, so the budget also covers other test processes.
//! A cluster takes all its slots at once (under an allocation lock), so two
//! clusters never deadlock holding part of what each needs.

use std::fs::File;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

use crate::nodes::NodesError;

/// Environment variable overriding how many real SPDK nodes may run at once (default 3).
pub const MAX_NODES_ENV: &str = "SHORTHORN_SPDK_MAX_NODES";
/// The default budget.
pub const DEFAULT_MAX_NODES: usize = 3;
/// How long a cluster waits for slots before giving up.
const WAIT: Duration = Duration::from_secs(900);

/// Slots held by one cluster; released when dropped.
#[derive(Debug)]
pub struct NodeSlots {
    held: Vec<Flock<File>>,
}

impl NodeSlots {
    /// How many slots are held.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// Whether none are held.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Gives one slot back (a node of the cluster is gone for good).
    pub fn release_one(&mut self) {
        self.held.pop();
    }

    /// Holds `other`'s slots too.
    pub fn absorb(&mut self, mut other: NodeSlots) {
        self.held.append(&mut other.held);
    }
}

/// The budget from [`MAX_NODES_ENV`].
pub fn max_nodes() -> usize {
    std::env::var(MAX_NODES_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(DEFAULT_MAX_NODES)
}

fn dir() -> PathBuf {
    std::env::temp_dir().join("shorthorn-spdk-slots")
}

fn open(name: &str) -> Result<File, NodesError> {
    lock_file(&dir().join(name))
}

/// Opens (creating it if needed) a file that only serves as an `flock`
/// target for reservations shared between test processes.
pub(crate) fn lock_file(path: &std::path::Path) -> Result<File, NodesError> {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|source| NodesError::Io {
            context: format!("opening {}", path.display()),
            source,
        })
}

/// Waits until `n` real-node slots are free and takes them.
pub fn acquire(n: usize) -> Result<NodeSlots, NodesError> {
    let max = max_nodes();
    if n > max {
        return Err(NodesError::Binary(format!(
            "a cluster of {n} real SPDK nodes exceeds the budget of {max} ({MAX_NODES_ENV})"
        )));
    }
    std::fs::create_dir_all(dir()).map_err(|source| NodesError::Io {
        context: format!("creating {}", dir().display()),
        source,
    })?;
    let deadline = Instant::now() + WAIT;
    let mut announced = false;
    loop {
        let alloc =
            Flock::lock(open("alloc.lock")?, FlockArg::LockExclusive).map_err(|(_, errno)| {
                NodesError::Io {
                    context: "locking the real-node allocation lock".into(),
                    source: errno.into(),
                }
            })?;
        let mut held = Vec::with_capacity(n);
        for i in 0..max {
            if held.len() == n {
                break;
            }
            if let Ok(l) = Flock::lock(
                open(&format!("slot-{i}.lock"))?,
                FlockArg::LockExclusiveNonblock,
            ) {
                held.push(l);
            }
        }
        drop(alloc);
        if held.len() == n {
            return Ok(NodeSlots { held });
        }
        drop(held);
        if Instant::now() >= deadline {
            return Err(NodesError::Binary(format!(
                "waited {WAIT:?} for {n} of {max} real SPDK node slots"
            )));
        }
        if !announced {
            eprintln!("waiting for {n} of {max} real SPDK node slots (other tests hold them)");
            announced = true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
