//! The JSON-RPC 2.0 server on a Unix socket, framed like spdk_tgt: requests
//! are JSON values back to back on the stream, each answered by one bare
//! JSON object carrying the request's id.

use std::future::Future;
use std::sync::Arc;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::error::SimError;
use crate::rpc_error::RpcError;
use crate::sim::{Sim, SimConfig};

/// Serves the sim on `config.rpc_socket` until `shutdown` resolves or a
/// client calls `spdk_kill_instance`.
pub async fn run(config: SimConfig, shutdown: impl Future<Output = ()>) -> Result<(), SimError> {
    let sim = Arc::new(Sim::new(config));
    serve(sim, shutdown).await
}

/// Serves an existing [`Sim`] (lets in-process tests keep a handle on its state).
pub async fn serve(sim: Arc<Sim>, shutdown: impl Future<Output = ()>) -> Result<(), SimError> {
    let path = sim.config.rpc_socket.clone();
    std::fs::create_dir_all(&sim.config.data_dir).map_err(|source| SimError::DataDir {
        path: sim.config.data_dir.clone(),
        source,
    })?;
    crate::ublk::cleanup_stale(&sim.config.data_dir);
    match std::fs::remove_file(&path) {
        Ok(()) => debug!(path = %path.display(), "removed stale rpc socket"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(SimError::StaleSocket { path, source }),
    }
    let listener = UnixListener::bind(&path).map_err(|source| SimError::Listen {
        path: path.clone(),
        source,
    })?;
    info!(socket = %path.display(), "spdk-sim listening");
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            () = sim.killed.notified() => break,
            accepted = listener.accept() => {
                let (stream, _) = accepted.map_err(SimError::Accept)?;
                tokio::spawn(connection(sim.clone(), stream));
            }
        }
    }
    let _ = std::fs::remove_file(&path);
    info!("spdk-sim stopped");
    Ok(())
}

/// Reads requests off one connection and answers each from its own task.
async fn connection(sim: Arc<Sim>, stream: UnixStream) {
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let writer = tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            if wr.write_all(&bytes).await.is_err() {
                break;
            }
        }
    });
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    'conn: loop {
        let n = match rd.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        loop {
            let mut stream = serde_json::Deserializer::from_slice(&buf).into_iter::<Value>();
            match stream.next() {
                None => {
                    buf.clear();
                    break;
                }
                Some(Ok(value)) => {
                    let used = stream.byte_offset();
                    buf.drain(..used);
                    let sim = sim.clone();
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        if let Some(resp) = handle_request(&sim, value).await {
                            let _ = tx.send(resp);
                        }
                    });
                }
                Some(Err(e)) if e.is_eof() => break,
                Some(Err(e)) => {
                    // Like spdk_tgt: no resync point in a stream, so close.
                    warn!(error = %e, "malformed JSON on rpc socket; closing connection");
                    break 'conn;
                }
            }
        }
    }
    drop(tx);
    let _ = writer.await;
}

/// Validates one request, runs it, and renders the response bytes
/// (`None` when SPDK would send nothing: a successful call without id).
async fn handle_request(sim: &Arc<Sim>, value: Value) -> Option<Vec<u8>> {
    let (id, method, params) = match validate(&value) {
        Ok(parts) => parts,
        Err(e) => return Some(render(&Value::Null, Err(e))),
    };
    debug!(%method, "rpc");
    let result = crate::methods::dispatch(sim, &method, params.as_ref()).await;
    let has_id = !matches!(id, Value::Null);
    if result.is_ok() && !has_id {
        return None;
    }
    Some(render(&id, result))
}

type Parts = (Value, String, Option<Value>);

/// SPDK's request checks: an object; `jsonrpc`, if present, is "2.0"; a
/// string `method`; an id that is a string, number or null; params that are
/// an object, array or null.
fn validate(value: &Value) -> Result<Parts, RpcError> {
    let obj = value.as_object().ok_or_else(RpcError::invalid_request)?;
    if obj
        .keys()
        .any(|k| !matches!(k.as_str(), "jsonrpc" | "method" | "params" | "id"))
    {
        return Err(RpcError::invalid_request());
    }
    if let Some(v) = obj.get("jsonrpc") {
        if v.as_str() != Some("2.0") {
            return Err(RpcError::invalid_request());
        }
    }
    let method = obj
        .get("method")
        .and_then(Value::as_str)
        .ok_or_else(RpcError::invalid_request)?
        .to_string();
    let id = match obj.get("id") {
        None => Value::Null,
        Some(v @ (Value::String(_) | Value::Number(_) | Value::Null)) => v.clone(),
        Some(_) => return Err(RpcError::invalid_request()),
    };
    let params = match obj.get("params") {
        None | Some(Value::Null) => None,
        Some(v @ (Value::Object(_) | Value::Array(_))) => Some(v.clone()),
        Some(_) => return Err(RpcError::invalid_request()),
    };
    Ok((id, method, params))
}

fn render(id: &Value, result: Result<Value, RpcError>) -> Vec<u8> {
    let body = match result {
        Ok(v) => json!({"jsonrpc": "2.0", "id": id, "result": v}),
        Err(e) => json!({"jsonrpc": "2.0", "id": id, "error": e.to_json()}),
    };
    let mut bytes = serde_json::to_vec(&body).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_matches_spdk() {
        assert!(validate(&json!({"jsonrpc":"2.0","id":7})).is_err());
        assert!(validate(&json!({"jsonrpc":"1.0","method":"x","id":8})).is_err());
        assert!(validate(&json!({"method":"x","id":8})).is_ok());
        assert!(validate(&json!({"jsonrpc":"2.0","method":"x","id":[1]})).is_err());
        assert!(validate(&json!({"jsonrpc":"2.0","method":"x","params":3})).is_err());
        assert!(validate(&json!([1, 2])).is_err());
    }
}
