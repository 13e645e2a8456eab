//! A JSON-RPC proxy on a Unix socket in front of a node's SPDK socket that
//! refuses or delays chosen calls: fault injection between a caller (the
//! controller, or a node agent) and SPDK, so neither SPDK nor the sim needs
//! to know about tests. Every call that passes is recorded with its arrival
//! time.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

/// What the proxy does with one call.
#[derive(Debug, Clone)]
pub enum Action {
    /// Answer this JSON-RPC error instead of forwarding.
    Refuse(i64, String),
    /// Forward after this pause.
    Delay(Duration),
}

/// Chooses an action for a call (method, params); `None` forwards it.
pub type Rule = Arc<dyn Fn(&str, &Value) -> Option<Action> + Send + Sync>;

/// One call seen.
#[derive(Debug, Clone)]
pub struct Seen {
    /// When it arrived.
    pub at: Instant,
    /// Its method.
    pub method: String,
    /// Its params.
    pub params: Value,
    /// Whether it was refused.
    pub refused: bool,
}

/// A running proxy.
pub struct RpcProxy {
    /// The socket to point callers at.
    pub socket: PathBuf,
    rule: Arc<Mutex<Option<Rule>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl RpcProxy {
    /// A proxy listening on `socket`, forwarding to `upstream`.
    pub async fn start(socket: &Path, upstream: &Path) -> Self {
        let _ = std::fs::remove_file(socket);
        let listener = UnixListener::bind(socket).expect("bind proxy socket");
        let rule: Arc<Mutex<Option<Rule>>> = Arc::new(Mutex::new(None));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn({
            let (rule, seen, upstream) = (rule.clone(), seen.clone(), upstream.to_path_buf());
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    tokio::spawn(serve(stream, upstream.clone(), rule.clone(), seen.clone()));
                }
            }
        });
        Self {
            socket: socket.to_path_buf(),
            rule,
            seen,
            task,
        }
    }

    /// Applies `rule` to every call from now on.
    pub fn set_rule(&self, rule: impl Fn(&str, &Value) -> Option<Action> + Send + Sync + 'static) {
        *self.rule.lock().expect("rule") = Some(Arc::new(rule));
    }

    /// Forwards every call from now on.
    pub fn clear_rule(&self) {
        *self.rule.lock().expect("rule") = None;
    }

    /// Every call seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("seen").clone()
    }

    /// The calls of `method` seen so far.
    pub fn seen_of(&self, method: &str) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.method == method)
            .collect()
    }

    /// Waits until a call of `method` arrives (after the `after`-th one);
    /// its arrival time.
    pub async fn wait_for(&self, method: &str, after: usize, limit: Duration) -> Instant {
        let started = Instant::now();
        loop {
            if let Some(s) = self.seen_of(method).get(after) {
                return s.at;
            }
            assert!(
                started.elapsed() < limit,
                "no {method} call reached the proxy within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for RpcProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One client connection: each request is handled on its own (callers
/// multiplex calls on a connection and match answers by id).
async fn serve(
    stream: UnixStream,
    upstream: PathBuf,
    rule: Arc<Mutex<Option<Rule>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
) {
    let (mut reader, writer) = stream.into_split();
    let writer = Arc::new(tokio::sync::Mutex::new(writer));
    let mut buf = Vec::new();
    loop {
        let request = match next_value(&mut reader, &mut buf).await {
            Some(v) => v,
            None => return,
        };
        let method = request["method"].as_str().unwrap_or_default().to_string();
        let params = request.get("params").cloned().unwrap_or(Value::Null);
        let current = rule.lock().expect("rule").clone();
        let action = current.and_then(|r| r(&method, &params));
        seen.lock().expect("seen").push(Seen {
            at: Instant::now(),
            method,
            params,
            refused: matches!(action, Some(Action::Refuse(..))),
        });
        let (writer, upstream) = (writer.clone(), upstream.clone());
        tokio::spawn(async move {
            let reply = match action {
                Some(Action::Refuse(code, message)) => json!({
                    "jsonrpc": "2.0", "id": request["id"],
                    "error": {"code": code, "message": message},
                }),
                Some(Action::Delay(pause)) => {
                    tokio::time::sleep(pause).await;
                    match forward(&upstream, &request).await {
                        Some(r) => r,
                        None => return,
                    }
                }
                None => match forward(&upstream, &request).await {
                    Some(r) => r,
                    None => return,
                },
            };
            let bytes = serde_json::to_vec(&reply).expect("encode");
            let _ = writer.lock().await.write_all(&bytes).await;
        });
    }
}

/// One request on a fresh upstream connection; its answer.
async fn forward(upstream: &Path, request: &Value) -> Option<Value> {
    let mut stream = UnixStream::connect(upstream).await.ok()?;
    stream
        .write_all(&serde_json::to_vec(request).ok()?)
        .await
        .ok()?;
    let mut buf = Vec::new();
    let (mut reader, _w) = stream.into_split();
    next_value(&mut reader, &mut buf).await
}

/// The next complete JSON value on `reader` (bytes kept in `buf`).
async fn next_value(reader: &mut (impl AsyncReadExt + Unpin), buf: &mut Vec<u8>) -> Option<Value> {
    loop {
        let mut values = serde_json::Deserializer::from_slice(buf).into_iter::<Value>();
        match values.next() {
            Some(Ok(v)) => {
                let used = values.byte_offset();
                buf.drain(..used);
                return Some(v);
            }
            Some(Err(e)) if !e.is_eof() => return None,
            _ => {}
        }
        let mut chunk = [0u8; 16 * 1024];
        match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}
