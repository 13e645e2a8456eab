//! A blocking `spdk_get_version` round trip on a node's socket: the readiness
//! probe, with no async runtime needed.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// One `spdk_get_version` round trip; `Err` carries why it did not answer.
pub fn get_version(socket: &Path) -> Result<(), String> {
    let mut stream = UnixStream::connect(socket).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(br#"{"jsonrpc":"2.0","method":"spdk_get_version","id":1}"#)
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed before a response".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if balanced(&buf) {
            let text = String::from_utf8_lossy(&buf);
            return if text.contains("\"result\"") {
                Ok(())
            } else {
                Err(format!("unexpected answer: {text}"))
            };
        }
    }
}

/// Whether `buf` holds one complete JSON object (braces balanced outside strings).
fn balanced(buf: &[u8]) -> bool {
    let (mut depth, mut in_str, mut escaped, mut seen) = (0i32, false, false, false);
    for &b in buf {
        if in_str {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'{' => {
                depth += 1;
                seen = true;
            }
            b'}' => depth -= 1,
            _ => {}
        }
    }
    seen && depth == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_complete_json_objects() {
        assert!(balanced(br#"{"result":{"version":"SPDK v25.09"}}"#));
        assert!(!balanced(br#"{"result":{"version":"#));
        assert!(balanced(br#"{"a":"}{"}"#));
        assert!(!balanced(b""));
    }
}
