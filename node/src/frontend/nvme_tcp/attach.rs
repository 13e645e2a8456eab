//! Connecting a controller through `/dev/nvme-fabrics`.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::path::Path;

use crate::error::{NodeError, Result};
use crate::frontend::nvme_tcp::options::{parse_connect_reply, ConnectReply};

/// Outcome of a connect request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connected {
    /// A new controller was created.
    New(ConnectReply),
    /// The kernel already has this exact connection (`EALREADY`).
    AlreadyConnected,
}

/// Writes `options` to the fabrics device and reads back the new
/// controller's `instance=N,cntlid=M`. Blocking (the kernel connects
/// synchronously): call from `spawn_blocking`.
pub fn connect(fabrics: &Path, options: &str) -> Result<Connected> {
    let mut dev = OpenOptions::new()
        .read(true)
        .write(true)
        .open(fabrics)
        .map_err(|e| NodeError::io("open", fabrics, e))?;
    if let Err(e) = dev.write_all(options.as_bytes()) {
        if e.raw_os_error() == Some(nix::libc::EALREADY) {
            return Ok(Connected::AlreadyConnected);
        }
        return Err(NodeError::io("connect via", fabrics, e));
    }
    let mut buf = [0u8; 256];
    let n = dev
        .read(&mut buf)
        .map_err(|e| NodeError::io("read connect reply from", fabrics, e))?;
    let reply = String::from_utf8_lossy(&buf[..n]);
    parse_connect_reply(&reply).map(Connected::New)
}
