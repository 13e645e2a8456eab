//! A throwaway single-member etcd server for tests.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Environment variable that overrides the etcd binary path.
pub const ETCD_BIN_ENV: &str = "SHORTHORN_ETCD_BIN";

/// Binary used when [`ETCD_BIN_ENV`] is unset (Debian's `etcd-server`).
pub const DEFAULT_ETCD_BIN: &str = "/usr/bin/etcd";

/// How long [`EtcdServer::start`] waits for the server to report healthy.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// How many times a start is retried when the chosen ports were taken meanwhile.
const START_ATTEMPTS: usize = 3;

/// Errors raised while launching test helpers.
#[derive(Debug, thiserror::Error)]
pub enum TestkitError {
    /// The etcd binary does not exist.
    #[error("etcd binary {path} not found: install it with `apt-get install etcd-server` or set {ETCD_BIN_ENV}")]
    EtcdMissing {
        /// Path that was looked up.
        path: PathBuf,
    },
    /// etcd exited or never became healthy.
    #[error("etcd did not become healthy: {reason}; log tail:\n{log}")]
    EtcdStartup {
        /// Why startup was considered failed.
        reason: String,
        /// Last part of the etcd log.
        log: String,
    },
    /// An OS-level operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
}

fn io(context: &'static str) -> impl FnOnce(std::io::Error) -> TestkitError {
    move |source| TestkitError::Io { context, source }
}

/// A running etcd process with its own data directory; killed, reaped and
/// removed on drop.
#[derive(Debug)]
pub struct EtcdServer {
    child: Child,
    client_addr: SocketAddr,
    dir: TempDir,
}

impl EtcdServer {
    /// Starts etcd on free loopback ports and waits until it is healthy.
    pub fn start() -> Result<Self, TestkitError> {
        let bin = std::env::var_os(ETCD_BIN_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_ETCD_BIN));
        if !bin.is_file() {
            return Err(TestkitError::EtcdMissing { path: bin });
        }
        let mut last = None;
        for attempt in 1..=START_ATTEMPTS {
            match Self::start_once(&bin) {
                Ok(server) => return Ok(server),
                Err(err) => {
                    tracing::warn!(attempt, error = %err, "etcd start failed");
                    last = Some(err);
                }
            }
        }
        Err(last.unwrap_or_else(|| TestkitError::EtcdStartup {
            reason: "no start attempt was made".into(),
            log: String::new(),
        }))
    }

    fn start_once(bin: &Path) -> Result<Self, TestkitError> {
        let dir = tempfile::Builder::new()
            .prefix("shorthorn-etcd-")
            .tempdir()
            .map_err(io("creating etcd temp dir"))?;
        let client_addr = free_loopback_addr()?;
        let peer_addr = free_loopback_addr()?;
        let client_url = format!("http://{client_addr}");
        let peer_url = format!("http://{peer_addr}");
        let log = File::create(dir.path().join("etcd.log")).map_err(io("creating etcd log"))?;
        let log_err = log.try_clone().map_err(io("cloning etcd log handle"))?;
        let child = Command::new(bin)
            .arg("--name=testkit")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=testkit={peer_url}"))
            .arg("--initial-cluster-state=new")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(io("spawning etcd"))?;
        let mut server = EtcdServer {
            child,
            client_addr,
            dir,
        };
        server.wait_healthy()?;
        tracing::debug!(endpoint = %server.endpoint(), "etcd started");
        Ok(server)
    }

    /// Client URL of the server, e.g. `http://127.0.0.1:40123`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.client_addr)
    }

    /// Client address of the server.
    pub fn client_addr(&self) -> SocketAddr {
        self.client_addr
    }

    /// Last few kilobytes of the etcd log, for diagnostics.
    pub fn log_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = File::open(self.dir.path().join("etcd.log")) {
            let _ = file.read_to_string(&mut text);
        }
        let cut = text.len().saturating_sub(4096);
        let cut = (cut..text.len())
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(text.len());
        text[cut..].to_string()
    }

    fn wait_healthy(&mut self) -> Result<(), TestkitError> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().map_err(io("polling etcd"))? {
                return Err(TestkitError::EtcdStartup {
                    reason: format!("etcd exited early with {status}"),
                    log: self.log_tail(),
                });
            }
            if probe_health(self.client_addr) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(TestkitError::EtcdStartup {
                    reason: format!("not healthy after {STARTUP_TIMEOUT:?}"),
                    log: self.log_tail(),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        if let Err(err) = self.child.kill() {
            tracing::warn!(error = %err, "killing etcd failed");
        }
        if let Err(err) = self.child.wait() {
            tracing::warn!(error = %err, "reaping etcd failed");
        }
    }
}

/// Reserves a loopback port by binding and releasing it.
fn free_loopback_addr() -> Result<SocketAddr, TestkitError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(io("reserving a port"))?;
    listener.local_addr().map_err(io("reading reserved port"))
}

/// True when `GET /health` answers with `"health":"true"`.
fn probe_health(addr: SocketAddr) -> bool {
    let attempt = || -> std::io::Result<bool> {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        stream.set_write_timeout(Some(Duration::from_secs(2)))?;
        write!(
            stream,
            "GET /health HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        Ok(response.starts_with("HTTP/1.") && response.contains("\"health\":\"true\""))
    };
    attempt().unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn started_server_answers_health_and_dies_on_drop() {
        let server = EtcdServer::start().expect("start etcd");
        let addr = server.client_addr();
        assert!(
            probe_health(addr),
            "etcd should answer /health while running"
        );
        drop(server);
        assert!(
            TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err(),
            "etcd should stop listening once dropped"
        );
    }
}
