//! Shared test support: running `spdk-sim` processes and talking JSON-RPC to them.
#![allow(dead_code)]

pub mod replay;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

/// A running `spdk-sim` process; killed (SIGKILL) and reaped on drop.
pub struct SimProcess {
    child: Option<Child>,
    /// The RPC socket.
    pub socket: PathBuf,
}

impl SimProcess {
    /// Starts the binary with its socket and data dir under `dir` and waits
    /// until it answers `spdk_get_version`.
    pub fn start(dir: &Path) -> SimProcess {
        let socket = dir.join("spdk.sock");
        let child = Command::new(env!("CARGO_BIN_EXE_spdk-sim"))
            .arg("--rpc-socket")
            .arg(&socket)
            .arg("--data-dir")
            .arg(dir.join("data"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn spdk-sim");
        let p = SimProcess {
            child: Some(child),
            socket,
        };
        for _ in 0..1000 {
            if let Ok(mut c) = Rpc::connect(&p.socket) {
                if c.call("spdk_get_version", Value::Null).is_ok() {
                    return p;
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("spdk-sim did not come up");
    }

    /// A new connection to this process.
    pub fn rpc(&self) -> Rpc {
        Rpc::connect(&self.socket).expect("connect")
    }

    /// Waits until the process exits on its own; panics if it has not
    /// exited after a generous grace period (then kills it).
    pub fn wait_exit(&mut self) {
        if let Some(c) = self.child.as_mut() {
            for _ in 0..2000 {
                if let Ok(Some(_)) = c.try_wait() {
                    self.child = None;
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        self.kill9();
        panic!("spdk-sim did not exit");
    }

    /// `kill -9` and reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A blocking JSON-RPC client on a Unix socket.
pub struct Rpc {
    stream: UnixStream,
    buf: Vec<u8>,
    next_id: u64,
}

/// A JSON-RPC error: code and message.
pub type RpcErr = (i64, String);

impl Rpc {
    /// Connects.
    pub fn connect(path: &Path) -> std::io::Result<Rpc> {
        let stream = UnixStream::connect(path)?;
        stream.set_read_timeout(Some(Duration::from_secs(120)))?;
        Ok(Rpc {
            stream,
            buf: Vec::new(),
            next_id: 1,
        })
    }

    /// Sends raw bytes and reads the next response object.
    pub fn raw(&mut self, bytes: &[u8]) -> Value {
        self.stream.write_all(bytes).expect("write");
        self.read_response()
    }

    fn read_response(&mut self) -> Value {
        loop {
            let mut it = serde_json::Deserializer::from_slice(&self.buf).into_iter::<Value>();
            match it.next() {
                Some(Ok(v)) => {
                    let used = it.byte_offset();
                    self.buf.drain(..used);
                    return v;
                }
                Some(Err(e)) if !e.is_eof() => panic!("bad response json: {e}"),
                _ => {}
            }
            let mut chunk = [0u8; 65536];
            let n = self.stream.read(&mut chunk).expect("read response");
            assert!(n > 0, "connection closed");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Calls `method`; `Value::Null` params are omitted.
    pub fn call(&mut self, method: &str, params: Value) -> Result<Value, RpcErr> {
        let id = self.next_id;
        self.next_id += 1;
        let mut req = json!({"jsonrpc": "2.0", "method": method, "id": id});
        if !params.is_null() {
            req["params"] = params;
        }
        let bytes = serde_json::to_vec(&req).expect("encode");
        let resp = self.raw(&bytes);
        assert_eq!(resp["id"], json!(id), "response id");
        if let Some(e) = resp.get("error") {
            return Err((
                e["code"].as_i64().unwrap_or(0),
                e["message"].as_str().unwrap_or("").to_string(),
            ));
        }
        Ok(resp["result"].clone())
    }

    /// Calls and expects success.
    pub fn ok(&mut self, method: &str, params: Value) -> Value {
        match self.call(method, params.clone()) {
            Ok(v) => v,
            Err(e) => {
                let p: String = params.to_string().chars().take(200).collect();
                panic!("{method} {p} failed: {e:?}")
            }
        }
    }

    /// Writes `data` at byte `offset` of bdev `name` (sim_bdev_write, 1 MiB pieces).
    pub fn write(&mut self, name: &str, offset: u64, data: &[u8]) {
        use base64::Engine;
        for (i, piece) in data.chunks(1 << 20).enumerate() {
            let b64 = base64::engine::general_purpose::STANDARD.encode(piece);
            self.ok(
                "sim_bdev_write",
                json!({"name": name, "offset": offset + (i as u64) * (1 << 20), "data": b64}),
            );
        }
    }

    /// Reads `len` bytes at `offset` of bdev `name` (sim_bdev_read).
    pub fn read(&mut self, name: &str, offset: u64, len: u64) -> Vec<u8> {
        use base64::Engine;
        let mut out = Vec::new();
        let mut at = offset;
        while at < offset + len {
            let n = (1u64 << 20).min(offset + len - at);
            let v = self.ok(
                "sim_bdev_read",
                json!({"name": name, "offset": at, "length": n}),
            );
            let d = base64::engine::general_purpose::STANDARD
                .decode(v["data"].as_str().expect("data"))
                .expect("base64");
            out.extend_from_slice(&d);
            at += n;
        }
        out
    }
}

/// A deterministic byte pattern derived from `seed`.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}
