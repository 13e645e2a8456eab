//! JSON-RPC over the spdk_tgt Unix stream socket.
//!
//! spdk_tgt writes bare JSON objects back to back with no framing, so the
//! reader parses incrementally from a growing buffer. One connection carries
//! many concurrent calls: a writer task sends whole requests in order (so a
//! caller that gives up mid-write cannot leave half a request on the socket),
//! and a reader task hands each response to the caller waiting on its id. When the socket
//! breaks, every in-flight call fails and the next call reconnects.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::Transport;
use crate::error::{Result, SpdkError};
use crate::protocol::{Request, Response};

/// Size of one socket read.
const READ_CHUNK: usize = 64 * 1024;

/// Transport over spdk_tgt's RPC Unix socket (e.g. `/var/tmp/spdk.sock`).
///
/// Connects lazily on the first call and again after the socket drops.
#[derive(Debug)]
pub struct UnixTransport {
    path: PathBuf,
    connection: tokio::sync::Mutex<Option<Arc<Connection>>>,
}

impl UnixTransport {
    /// Creates a transport for the socket at `path`; does not connect yet.
    pub fn new(path: impl Into<PathBuf>) -> UnixTransport {
        UnixTransport {
            path: path.into(),
            connection: tokio::sync::Mutex::new(None),
        }
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Returns the live connection, opening a new one if there is none.
    async fn connection(&self) -> Result<Arc<Connection>> {
        let mut slot = self.connection.lock().await;
        if let Some(conn) = slot.as_ref() {
            if conn.pending.is_open() {
                return Ok(Arc::clone(conn));
            }
        }
        let stream = UnixStream::connect(&self.path).await.map_err(|e| {
            SpdkError::Transport(format!("connect to {}: {e}", self.path.display()))
        })?;
        tracing::debug!(path = %self.path.display(), "connected to SPDK socket");
        let conn = Arc::new(Connection::start(stream));
        *slot = Some(Arc::clone(&conn));
        Ok(conn)
    }
}

#[async_trait]
impl Transport for UnixTransport {
    async fn send(&self, request: &Request) -> Result<Response> {
        let bytes = serde_json::to_vec(request).map_err(|source| SpdkError::Encode {
            method: request.method.clone(),
            source,
        })?;
        let conn = self.connection().await?;
        let receiver = conn.pending.register(request.id)?;
        // Forget the waiter if this future is dropped (e.g. on timeout).
        let _guard = ForgetOnDrop {
            pending: &conn.pending,
            id: request.id,
        };
        conn.outbox
            .send(bytes)
            .map_err(|_| SpdkError::Transport("connection writer stopped".to_owned()))?;
        receiver.await.unwrap_or_else(|_| {
            Err(SpdkError::Transport(
                "connection closed before the response arrived".to_owned(),
            ))
        })
    }
}

/// One open socket: the writer task's queue, the waiters and the reader task.
#[derive(Debug)]
struct Connection {
    outbox: mpsc::UnboundedSender<Vec<u8>>,
    pending: Arc<Pending>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl Connection {
    fn start(stream: UnixStream) -> Connection {
        let (read_half, write_half) = stream.into_split();
        let pending = Arc::new(Pending::default());
        let (outbox, queue) = mpsc::unbounded_channel();
        let reader = tokio::spawn(read_loop(read_half, Arc::clone(&pending)));
        let writer = tokio::spawn(write_loop(write_half, queue, Arc::clone(&pending)));
        Connection {
            outbox,
            pending,
            reader,
            writer,
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
        self.pending.close("connection dropped");
    }
}

type Waiter = oneshot::Sender<Result<Response>>;

/// Calls waiting for their response, keyed by request id.
#[derive(Debug, Default)]
struct Pending {
    state: Mutex<PendingState>,
}

#[derive(Debug, Default)]
struct PendingState {
    closed: bool,
    waiters: HashMap<u64, Waiter>,
}

impl Pending {
    fn lock(&self) -> MutexGuard<'_, PendingState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn is_open(&self) -> bool {
        !self.lock().closed
    }

    /// Registers a waiter for `id`; fails if the connection already broke.
    fn register(&self, id: u64) -> Result<oneshot::Receiver<Result<Response>>> {
        let mut state = self.lock();
        if state.closed {
            return Err(SpdkError::Transport("connection closed".to_owned()));
        }
        if state.waiters.contains_key(&id) {
            return Err(SpdkError::Protocol(format!(
                "request id {id} is already in flight"
            )));
        }
        let (sender, receiver) = oneshot::channel();
        state.waiters.insert(id, sender);
        Ok(receiver)
    }

    /// Hands a response to the caller waiting for its id.
    fn complete(&self, response: Response) {
        let Some(id) = response.numeric_id() else {
            tracing::warn!(id = ?response.id, error = ?response.error, "SPDK response without a usable id");
            return;
        };
        match self.lock().waiters.remove(&id) {
            // The caller may have given up meanwhile; nothing to do then.
            Some(waiter) => drop(waiter.send(Ok(response))),
            None => tracing::debug!(id, "response for a call nobody waits for"),
        }
    }

    fn forget(&self, id: u64) {
        self.lock().waiters.remove(&id);
    }

    /// Marks the connection broken and fails every waiting call.
    fn close(&self, reason: &str) {
        let waiters = {
            let mut state = self.lock();
            state.closed = true;
            std::mem::take(&mut state.waiters)
        };
        if !waiters.is_empty() {
            tracing::debug!(
                reason,
                in_flight = waiters.len(),
                "failing in-flight SPDK calls"
            );
        }
        for (_, waiter) in waiters {
            drop(waiter.send(Err(SpdkError::Transport(reason.to_owned()))));
        }
    }
}

/// Removes a waiter when its call is abandoned.
struct ForgetOnDrop<'a> {
    pending: &'a Pending,
    id: u64,
}

impl Drop for ForgetOnDrop<'_> {
    fn drop(&mut self) {
        self.pending.forget(self.id);
    }
}

/// Writes queued requests whole and in order until the queue or socket ends.
async fn write_loop(
    mut writer: OwnedWriteHalf,
    mut queue: mpsc::UnboundedReceiver<Vec<u8>>,
    pending: Arc<Pending>,
) {
    while let Some(bytes) = queue.recv().await {
        if let Err(e) = writer.write_all(&bytes).await {
            pending.close(&format!("write to SPDK socket failed: {e}"));
            return;
        }
    }
}

/// Reads responses until the socket ends, then fails what is still waiting.
async fn read_loop(mut reader: OwnedReadHalf, pending: Arc<Pending>) {
    let mut buffer = Vec::with_capacity(READ_CHUNK);
    let mut chunk = vec![0u8; READ_CHUNK];
    let reason = loop {
        match reader.read(&mut chunk).await {
            Ok(0) => break "connection closed by SPDK".to_owned(),
            Ok(n) => {
                buffer.extend_from_slice(&chunk[..n]);
                if let Err(reason) = dispatch_complete(&mut buffer, &pending) {
                    break reason;
                }
            }
            Err(e) => break format!("read from SPDK socket failed: {e}"),
        }
    };
    tracing::debug!(%reason, "SPDK socket reader stopped");
    pending.close(&reason);
}

/// Dispatches every complete JSON value at the start of `buffer` and drops
/// the consumed bytes, keeping an incomplete trailing value for later.
fn dispatch_complete(buffer: &mut Vec<u8>, pending: &Pending) -> Result<(), String> {
    let mut stream = serde_json::Deserializer::from_slice(buffer).into_iter::<Value>();
    let outcome = loop {
        match stream.next() {
            None => break Ok(()),
            Some(Ok(value)) => match serde_json::from_value::<Response>(value) {
                Ok(response) => pending.complete(response),
                Err(e) => {
                    tracing::warn!(error = %e, "ignoring a non-response JSON value from SPDK")
                }
            },
            Some(Err(e)) if e.is_eof() => break Ok(()),
            Some(Err(e)) => break Err(format!("malformed JSON from SPDK: {e}")),
        }
    };
    let consumed = stream.byte_offset();
    buffer.drain(..consumed);
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(pending: &Pending, id: u64) -> oneshot::Receiver<Result<Response>> {
        pending.register(id).expect("register")
    }

    #[test]
    fn keeps_partial_value_until_complete() {
        let pending = Pending::default();
        let mut rx = waiting(&pending, 1);
        let full = br#"{"jsonrpc":"2.0","id":1,"result":true}"#;
        let mut buffer = full[..10].to_vec();
        dispatch_complete(&mut buffer, &pending).expect("partial is fine");
        assert_eq!(buffer.len(), 10);
        assert!(rx.try_recv().is_err());
        buffer.extend_from_slice(&full[10..]);
        dispatch_complete(&mut buffer, &pending).expect("complete");
        assert!(buffer.is_empty());
        let response = rx.try_recv().expect("delivered").expect("ok");
        assert_eq!(response.result, Some(Value::Bool(true)));
    }

    #[test]
    fn garbage_is_a_protocol_failure() {
        let pending = Pending::default();
        let mut buffer = b"{\"id\":1,]".to_vec();
        assert!(dispatch_complete(&mut buffer, &pending).is_err());
    }

    #[test]
    fn close_fails_waiters_and_refuses_new_ones() {
        let pending = Pending::default();
        let mut rx = waiting(&pending, 7);
        pending.close("gone");
        assert!(matches!(rx.try_recv(), Ok(Err(SpdkError::Transport(_)))));
        assert!(pending.register(8).is_err());
    }
}
