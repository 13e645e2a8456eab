//! One JSON-RPC exchange with the local spdk_tgt over its Unix socket.
//!
//! SPDK writes responses as bare JSON values with no framing, so the reply is
//! delimited by scanning for the end of the first top-level value; its bytes
//! are returned untouched.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::policy::Lookup;

/// Why a call did not produce a response.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The socket could not be reached or the connection failed.
    #[error("spdk_tgt socket {socket}: {source}")]
    Unreachable {
        /// The socket path.
        socket: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// No complete response within the per-request timeout.
    #[error("spdk_tgt did not answer within {0:?}")]
    Timeout(Duration),
    /// The reply was not one JSON value, or exceeded the size limit.
    #[error("bad reply from spdk_tgt: {0}")]
    Protocol(String),
}

/// Sends requests to spdk_tgt, one connection per request.
#[derive(Debug, Clone)]
pub struct SpdkForwarder {
    socket: PathBuf,
    timeout: Duration,
    max_response: usize,
}

impl SpdkForwarder {
    /// A forwarder to the socket at `socket`.
    pub fn new(socket: PathBuf, timeout: Duration, max_response: usize) -> Self {
        SpdkForwarder {
            socket,
            timeout,
            max_response,
        }
    }

    /// Sends one serialized request and returns the raw response bytes.
    pub async fn call(&self, request: &[u8]) -> Result<Bytes, ForwardError> {
        match tokio::time::timeout(self.timeout, self.exchange(request)).await {
            Ok(result) => result,
            Err(_) => Err(ForwardError::Timeout(self.timeout)),
        }
    }

    async fn exchange(&self, request: &[u8]) -> Result<Bytes, ForwardError> {
        let io_err = |source| ForwardError::Unreachable {
            socket: self.socket.clone(),
            source,
        };
        let mut stream = UnixStream::connect(&self.socket).await.map_err(io_err)?;
        stream.write_all(request).await.map_err(io_err)?;
        let mut buf = Vec::with_capacity(16 * 1024);
        let mut scanner = ValueScanner::default();
        loop {
            let before = buf.len();
            let n = stream.read_buf(&mut buf).await.map_err(io_err)?;
            if n == 0 {
                return Err(ForwardError::Protocol(
                    "connection closed before a complete response".to_owned(),
                ));
            }
            match scanner.feed(&buf[before..]) {
                Scan::Incomplete if buf.len() > self.max_response => {
                    return Err(ForwardError::Protocol(format!(
                        "response larger than {} bytes",
                        self.max_response
                    )));
                }
                Scan::Incomplete => {}
                Scan::Invalid(why) => return Err(ForwardError::Protocol(why.to_owned())),
                Scan::Complete { start, end } => {
                    let value = &buf[start..end];
                    serde_json::from_slice::<serde::de::IgnoredAny>(value)
                        .map_err(|e| ForwardError::Protocol(e.to_string()))?;
                    buf.truncate(end);
                    return Ok(Bytes::from(buf).slice(start..end));
                }
            }
        }
    }
}

impl SpdkForwarder {
    /// One internal read-only call; the result, or `None` when SPDK
    /// answers "no such device" (-19).
    async fn lookup_call(&self, method: &str, params: Value) -> Result<Option<Value>, String> {
        let request = json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 0});
        let reply = self
            .call(request.to_string().as_bytes())
            .await
            .map_err(|e| format!("{method} lookup: {e}"))?;
        let mut reply: Value =
            serde_json::from_slice(&reply).map_err(|e| format!("{method} lookup: {e}"))?;
        if let Some(error) = reply.get("error") {
            return match error.get("code").and_then(Value::as_i64) {
                Some(-19) => Ok(None),
                _ => Err(format!("{method} lookup: SPDK error {error}")),
            };
        }
        Ok(reply.get_mut("result").map(Value::take))
    }
}

impl Lookup for SpdkForwarder {
    async fn bdev(&self, name: &str) -> Result<Option<Value>, String> {
        let found = self
            .lookup_call("bdev_get_bdevs", json!({ "name": name }))
            .await?;
        Ok(match found {
            Some(Value::Array(mut bdevs)) if !bdevs.is_empty() => Some(bdevs.swap_remove(0)),
            _ => None,
        })
    }

    async fn ublk_disks(&self) -> Result<Vec<Value>, String> {
        match self.lookup_call("ublk_get_disks", json!({})).await? {
            Some(Value::Array(disks)) => Ok(disks),
            _ => Ok(Vec::new()),
        }
    }
}

/// Outcome of scanning the bytes received so far.
#[derive(Debug, PartialEq, Eq)]
enum Scan {
    Incomplete,
    Invalid(&'static str),
    /// The first value occupies `start..end` of everything fed.
    Complete {
        start: usize,
        end: usize,
    },
}

/// Finds the end of the first top-level JSON object or array in a stream,
/// in one pass over the bytes however they are chunked.
#[derive(Debug, Default)]
struct ValueScanner {
    offset: usize,
    start: Option<usize>,
    depth: usize,
    in_string: bool,
    escaped: bool,
}

impl ValueScanner {
    fn feed(&mut self, chunk: &[u8]) -> Scan {
        for &b in chunk {
            let pos = self.offset;
            self.offset += 1;
            let Some(start) = self.start else {
                match b {
                    b' ' | b'\t' | b'\r' | b'\n' => continue,
                    b'{' | b'[' => {
                        self.start = Some(pos);
                        self.depth = 1;
                        continue;
                    }
                    _ => return Scan::Invalid("response is not a JSON object"),
                }
            };
            if self.in_string {
                match (self.escaped, b) {
                    (true, _) => self.escaped = false,
                    (false, b'\\') => self.escaped = true,
                    (false, b'"') => self.in_string = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        return Scan::Complete {
                            start,
                            end: pos + 1,
                        };
                    }
                }
                _ => {}
            }
        }
        Scan::Incomplete
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_end_across_chunks_and_inside_strings() {
        let text = br#"  {"result":[{"name":"a}\"]"}],"id":1}{"next":1}"#;
        for split in 0..text.len() {
            let mut s = ValueScanner::default();
            let first = s.feed(&text[..split]);
            let result = if first == Scan::Incomplete {
                s.feed(&text[split..])
            } else {
                first
            };
            assert_eq!(
                result,
                Scan::Complete { start: 2, end: 38 },
                "split at {split}"
            );
        }
    }

    #[test]
    fn rejects_non_object_replies() {
        assert!(matches!(
            ValueScanner::default().feed(b"42"),
            Scan::Invalid(_)
        ));
    }
}
