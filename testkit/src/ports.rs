//! TCP ports for test listeners that no one else on the machine will take.
//!
//! Binding port 0 and releasing it (the usual trick) hands out a port from
//! the kernel's ephemeral range. Until the test's own server binds it, any
//! outgoing connection on the machine may be given that same port as its
//! source port, and on a loaded machine (NVMe-oF initiators, etcd and HTTP
//! clients of parallel tests) that happens: real spdk_tgt then refuses
//! `nvmf_subsystem_add_listener` with -32602, seconds into a test.
//!
//! A [`ReservedPort`] is therefore taken below the ephemeral range, where the
//! kernel never picks source ports, and held through a `flock`ed file under
//! the temp directory, so concurrent test processes never pick the same one.
//! It stays reserved until the guard is dropped.

use std::fs::File;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::atomic::{AtomicU32, Ordering};

use nix::fcntl::{Flock, FlockArg};

use crate::nodes::NodesError;
use crate::slots::lock_file;

/// The kernel's ephemeral port range, as Linux ships it when unreadable.
const DEFAULT_EPHEMERAL: (u16, u16) = (32768, 60999);
/// How many ports below the ephemeral range are used.
const SPAN: u16 = 12000;
/// The lowest port ever used (well clear of the registered services below).
const FLOOR: u16 = 10000;

/// A loopback TCP port reserved for one test listener.
#[derive(Debug)]
pub struct ReservedPort {
    port: u16,
    _lock: Flock<File>,
}

impl ReservedPort {
    /// The port number.
    pub fn port(&self) -> u16 {
        self.port
    }
}

/// Reserves a loopback port outside the ephemeral range that is free now
/// and that no other test process holds.
pub fn reserve() -> Result<ReservedPort, NodesError> {
    let (low, high) = candidate_range(ephemeral_range());
    let dir = std::env::temp_dir().join("shorthorn-ports");
    std::fs::create_dir_all(&dir).map_err(|source| NodesError::Io {
        context: format!("creating {}", dir.display()),
        source,
    })?;
    let count = u32::from(high - low);
    let start = spread_start() % count;
    for i in 0..count {
        let port = low + ((start + i) % count) as u16;
        let Ok(lock) = Flock::lock(
            lock_file(&dir.join(format!("{port}.lock")))?,
            FlockArg::LockExclusiveNonblock,
        ) else {
            continue;
        };
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(ReservedPort { port, _lock: lock });
        }
    }
    Err(NodesError::Binary(format!(
        "no free TCP port in {low}..{high} on 127.0.0.1 (all taken or reserved under {})",
        dir.display()
    )))
}

/// Ports `[low, high)` below the ephemeral range starting at `range.0`.
fn candidate_range(range: (u16, u16)) -> (u16, u16) {
    let high = range.0.max(FLOOR + 1024);
    (high.saturating_sub(SPAN).max(FLOOR), high)
}

/// `/proc/sys/net/ipv4/ip_local_port_range`, or Linux's default.
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|p| p.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or(DEFAULT_EPHEMERAL)
}

/// A starting point that differs between processes and between calls, so
/// parallel reservations rarely contend for the same lock file.
fn spread_start() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    std::process::id()
        .wrapping_mul(7919)
        .wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed).wrapping_mul(97))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_lie_below_the_ephemeral_range() {
        assert_eq!(candidate_range((32768, 60999)), (20768, 32768));
        assert_eq!(candidate_range((15000, 60999)), (10000, 15000));
        // A range starting very low still leaves some ports to use.
        assert_eq!(candidate_range((1024, 60999)), (10000, 11024));
    }

    #[test]
    fn a_reserved_port_is_not_handed_out_again_while_held() {
        let a = reserve().expect("a port");
        let b = reserve().expect("another port");
        assert_ne!(a.port(), b.port());
        let (low, high) = candidate_range(ephemeral_range());
        assert!(
            (low..high).contains(&a.port()),
            "{} outside {low}..{high}",
            a.port()
        );
        // The port is free for its user to bind.
        TcpListener::bind((Ipv4Addr::LOCALHOST, a.port())).expect("the reserved port binds");
    }
}
