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

/// What a [`Responder`] answers to one call.
pub enum FakeReply {
    /// A JSON-RPC result.
    Result(Value),
    /// A JSON-RPC error.
    Error(i64, String),
    /// No answer, ever.
    Hang,
}

/// Answers chosen calls (method, params); `None` falls back to the defaults.
pub type Responder = Arc<dyn Fn(&str, &Value) -> Option<FakeReply> + Send + Sync>;

/// A Unix-socket JSON-RPC server standing in for spdk_tgt.
///
/// By default `bdev_get_bdevs` succeeds, `bdev_lvol_delete` fails with an
/// SPDK error, `bdev_wait_for_examine` never answers, `nvmf_get_subsystems`
/// lists none, anything else answers `true`; a [`Responder`] can answer
/// first. Every call received is recorded with its params.
pub struct FakeSpdk {
    pub socket: PathBuf,
    pub received: Arc<Mutex<Vec<(String, Value)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeSpdk {
    pub async fn start(dir: &Path) -> Self {
        Self::start_with(dir, Arc::new(|_, _| None)).await
    }

    pub async fn start_with(dir: &Path, responder: Responder) -> Self {
        let socket = dir.join("spdk.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&received);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let log = Arc::clone(&log);
                let responder = Arc::clone(&responder);
                tokio::spawn(serve_connection(stream, log, responder));
            }
        });
        FakeSpdk {
            socket,
            received,
            task,
        }
    }

    pub fn methods(&self) -> Vec<String> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .map(|(m, _)| m.clone())
            .collect()
    }

    /// The params of every call of `method`, in order.
    pub fn params_of(&self, method: &str) -> Vec<Value> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|(m, _)| m == method)
            .map(|(_, p)| p.clone())
            .collect()
    }

    pub fn clear(&self) {
        self.received.lock().unwrap().clear();
    }
}

/// Answers the requests of one connection, each as soon as it is ready
/// (the spdk-client Unix transport sends concurrent calls on one
/// connection and matches answers by id, as spdk_tgt allows).
async fn serve_connection(
    stream: tokio::net::UnixStream,
    log: Arc<Mutex<Vec<(String, Value)>>>,
    responder: Responder,
) {
    let (mut reader, writer) = stream.into_split();
    let writer = Arc::new(tokio::sync::Mutex::new(writer));
    let mut buf = Vec::new();
    loop {
        let request: Value = loop {
            let mut de = serde_json::Deserializer::from_slice(&buf).into_iter::<Value>();
            match de.next() {
                Some(Ok(v)) => {
                    let used = de.byte_offset();
                    buf.drain(..used);
                    break v;
                }
                Some(Err(e)) if !e.is_eof() => return,
                _ => {}
            }
            let mut chunk = [0u8; 4096];
            let n = match reader.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            buf.extend_from_slice(&chunk[..n]);
        };
        let method = request["method"].as_str().unwrap_or("").to_owned();
        let params = request.get("params").cloned().unwrap_or(Value::Null);
        log.lock().unwrap().push((method.clone(), params.clone()));
        let reply = responder(&method, &params);
        let writer = Arc::clone(&writer);
        tokio::spawn(async move {
            let id = request["id"].clone();
            let reply = match reply {
                Some(FakeReply::Result(v)) => json!({"jsonrpc":"2.0","id":id,"result":v}),
                Some(FakeReply::Error(code, message)) => {
                    json!({"jsonrpc":"2.0","id":id,"error":{"code":code,"message":message}})
                }
                Some(FakeReply::Hang) => return,
                None => match method.as_str() {
                    "bdev_get_bdevs" => json!({"jsonrpc":"2.0","id":id,
                        "result":[{"name":"lvs0/vol-1","num_blocks":2048,"block_size":512}]}),
                    "bdev_lvol_delete" => json!({"jsonrpc":"2.0","id":id,
                        "error":{"code":-19,"message":"No such device"}}),
                    "nvmf_get_subsystems" => json!({"jsonrpc":"2.0","id":id,"result":[]}),
                    "bdev_wait_for_examine" => return,
                    _ => json!({"jsonrpc":"2.0","id":id,"result":true}),
                },
            };
            // Pretty-printed and split in two writes, as a real socket may deliver.
            let text = serde_json::to_vec_pretty(&reply).unwrap();
            let (a, b) = text.split_at(text.len() / 2);
            let mut w = writer.lock().await;
            let _ = w.write_all(a).await;
            let _ = w.flush().await;
            let _ = w.write_all(b).await;
        });
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
        Self::start_scripted(Arc::new(|_, _| None), tweak).await
    }

    /// An agent over a [`FakeSpdk`] that asks `responder` first. Returns once
    /// the agent's start-up check of fences left by a previous run has
    /// reached SPDK (and clears that from the record), when its socket is
    /// the fake's.
    pub async fn start_scripted(
        responder: Responder,
        tweak: impl FnOnce(&mut AgentConfig),
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let spdk = FakeSpdk::start_with(dir.path(), responder).await;
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
        let behind_fake = config.spdk_socket == spdk.socket;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(serve_agent(config, listener, async move {
            let _ = stopped.await;
        }));
        if behind_fake {
            let started = std::time::Instant::now();
            while !spdk.methods().iter().any(|m| m == "nvmf_get_subsystems") {
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "the agent never checked for fences left by a previous run"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            spdk.clear();
        }
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
