//! Shared by the agent tests: a fake spdk_tgt that records what reaches it,
//! an in-process agent, and a tiny HTTP client.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use shorthorn_node::agent::{serve_agent, AgentConfig};
use shorthorn_node::probe::KernelFeatures;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixListener};
use tokio::sync::oneshot;

/// The token the tests' agent accepts.
pub const TOKEN: &str = "tok-7f3a9c1e5b2d4608a1c3e5f7092b4d6e";

/// A Unix-socket JSON-RPC server standing in for spdk_tgt.
///
/// `bdev_get_bdevs` succeeds, `bdev_lvol_delete` fails with an SPDK error,
/// `bdev_wait_for_examine` never answers; every method received is recorded.
pub struct FakeSpdk {
    pub socket: PathBuf,
    pub received: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeSpdk {
    pub async fn start(dir: &Path) -> Self {
        let socket = dir.join("spdk.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&received);
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let log = Arc::clone(&log);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let request: Value = loop {
                        let mut chunk = [0u8; 4096];
                        let n = stream.read(&mut chunk).await.unwrap();
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        if let Ok(v) = serde_json::from_slice(&buf) {
                            break v;
                        }
                    };
                    let method = request["method"].as_str().unwrap_or("").to_owned();
                    log.lock().unwrap().push(method.clone());
                    let id = request["id"].clone();
                    let reply = match method.as_str() {
                        "bdev_get_bdevs" => json!({"jsonrpc":"2.0","id":id,
                            "result":[{"name":"lvs0/vol-1","num_blocks":2048,"block_size":512}]}),
                        "bdev_lvol_delete" => json!({"jsonrpc":"2.0","id":id,
                            "error":{"code":-19,"message":"No such device"}}),
                        "bdev_wait_for_examine" => {
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                            return;
                        }
                        _ => json!({"jsonrpc":"2.0","id":id,"result":true}),
                    };
                    // Pretty-printed and split in two writes, as a real socket may deliver.
                    let text = serde_json::to_vec_pretty(&reply).unwrap();
                    let (a, b) = text.split_at(text.len() / 2);
                    stream.write_all(a).await.unwrap();
                    stream.flush().await.unwrap();
                    stream.write_all(b).await.unwrap();
                });
            }
        });
        FakeSpdk {
            socket,
            received,
            task,
        }
    }

    pub fn methods(&self) -> Vec<String> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for FakeSpdk {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An agent running in-process in front of a [`FakeSpdk`].
pub struct TestAgent {
    pub addr: std::net::SocketAddr,
    pub spdk: FakeSpdk,
    pub dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    pub task: Option<tokio::task::JoinHandle<Result<(), shorthorn_node::error::NodeError>>>,
}

impl TestAgent {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut AgentConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let spdk = FakeSpdk::start(dir.path()).await;
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
        let mut config = AgentConfig::new(
            "node-a",
            token_file,
            spdk.socket.clone(),
            dir.path().join("state"),
        );
        config.nvme_etc_dir = dir.path().join("etc-nvme");
        config.nvmf_address = "10.0.0.7".to_owned();
        config
            .topology
            .insert("topology.kubernetes.io/zone".to_owned(), "z1".to_owned());
        config.kernel = Some(KernelFeatures::default());
        tweak(&mut config);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(serve_agent(config, listener, async move {
            let _ = stopped.await;
        }));
        TestAgent {
            addr,
            spdk,
            dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Sends one request; `auth` is the whole Authorization header value.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        auth: Option<&str>,
        body: impl Into<Bytes>,
    ) -> (http::StatusCode, Bytes) {
        let stream = TcpStream::connect(self.addr).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr))
            .header("host", "agent");
        if let Some(auth) = auth {
            req = req.header("authorization", auth);
        }
        let req = req.body(Full::new(body.into())).unwrap();
        let resp = sender.send_request(req).await.unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, body)
    }

    /// POSTs a JSON-RPC call with the right token.
    pub async fn rpc(&self, method: &str, params: Value) -> (http::StatusCode, Value) {
        let body = json!({"jsonrpc":"2.0","method":method,"params":params,"id":42}).to_string();
        let (status, body) = self.send("POST", "/jsonrpc", Some(&bearer()), body).await;
        (status, serde_json::from_slice(&body).unwrap())
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

pub fn bearer() -> String {
    format!("Bearer {TOKEN}")
}
