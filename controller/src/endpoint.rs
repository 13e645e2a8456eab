//! [`Endpoint`]: where a server of the controller listens (CSI gRPC, the
//! admin API), parsed from `unix:///path` or `tcp://host:port`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use crate::error::{ControllerError, Result};

/// Where the CSI gRPC services listen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A Unix socket path (`unix:///csi/csi.sock`); a stale socket file is replaced.
    Unix(PathBuf),
    /// A TCP address (`tcp://0.0.0.0:10000`).
    Tcp(SocketAddr),
}

impl FromStr for Endpoint {
    type Err = ControllerError;

    fn from_str(s: &str) -> Result<Self> {
        if let Some(path) = s
            .strip_prefix("unix://")
            .or_else(|| s.strip_prefix("unix:"))
        {
            if path.is_empty() {
                return Err(ControllerError::Config(format!(
                    "endpoint {s:?} has no path"
                )));
            }
            return Ok(Endpoint::Unix(PathBuf::from(path)));
        }
        let addr = s.strip_prefix("tcp://").unwrap_or(s);
        addr.parse().map(Endpoint::Tcp).map_err(|_| {
            ControllerError::Config(format!(
                "endpoint {s:?} must be unix:///path/to.sock or tcp://host:port"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_unix_and_tcp_endpoints() {
        assert_eq!(
            "unix:///csi/csi.sock".parse::<Endpoint>().unwrap(),
            Endpoint::Unix("/csi/csi.sock".into())
        );
        assert_eq!(
            "tcp://127.0.0.1:9000".parse::<Endpoint>().unwrap(),
            Endpoint::Tcp("127.0.0.1:9000".parse().unwrap())
        );
        assert!("unix://".parse::<Endpoint>().is_err());
        assert!("http://x".parse::<Endpoint>().is_err());
    }
}
