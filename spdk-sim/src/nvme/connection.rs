//! One live fabric connection from this host to a remote target: tagged,
//! pipelined I/O plus the target's unsolicited namespace updates.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use crate::nvmf::lock;
use crate::nvmf::wire::{self, ControllerInfo, Header, IoOp, IoStatus, NamespaceInfo};

/// How long a connect may take before it counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why connecting failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectFailure {
    /// Nothing answered at the address (or the socket broke).
    Unreachable,
    /// The target refused the CONNECT with this negated errno.
    Rejected(i32),
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<(IoStatus, Vec<u8>)>>>>;

/// A connected controller.
pub struct Connection {
    outbox: mpsc::UnboundedSender<(Header, Vec<u8>)>,
    pending: Pending,
    next_tag: AtomicU64,
    closed: Arc<AtomicBool>,
    tasks: Vec<tokio::task::AbortHandle>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Called with every namespace update from the target.
pub type NsUpdate = Box<dyn Fn(Vec<NamespaceInfo>) + Send + Sync>;

/// Called once when the connection breaks.
pub type OnClose = Box<dyn FnOnce() + Send>;

impl Connection {
    /// Connects and performs the CONNECT exchange.
    pub async fn open(
        addr: &str,
        subnqn: &str,
        hostnqn: &str,
        hostid: Option<uuid::Uuid>,
        on_update: NsUpdate,
        on_close: OnClose,
    ) -> Result<(Arc<Connection>, ControllerInfo), ConnectFailure> {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| ConnectFailure::Unreachable)?
            .map_err(|_| ConnectFailure::Unreachable)?;
        let _ = stream.set_nodelay(true);
        let (mut rd, mut wr) = stream.into_split();
        let connect = Header::Connect {
            subnqn: subnqn.to_string(),
            hostnqn: hostnqn.to_string(),
            hostid,
        };
        wire::write_frame(&mut wr, &connect, &[])
            .await
            .map_err(|_| ConnectFailure::Unreachable)?;
        let reply = tokio::time::timeout(CONNECT_TIMEOUT, wire::read_frame(&mut rd))
            .await
            .map_err(|_| ConnectFailure::Unreachable)?
            .map_err(|_| ConnectFailure::Unreachable)?;
        let ctrlr = match reply {
            Some((Header::Connected { ctrlr }, _)) => ctrlr,
            Some((Header::Rejected { errno }, _)) => return Err(ConnectFailure::Rejected(errno)),
            _ => return Err(ConnectFailure::Unreachable),
        };
        let (outbox, mut rx) = mpsc::unbounded_channel::<(Header, Vec<u8>)>();
        let pending: Pending = Arc::default();
        let closed = Arc::new(AtomicBool::new(false));
        let writer = tokio::spawn({
            let closed = closed.clone();
            async move {
                while let Some((h, data)) = rx.recv().await {
                    if wire::write_frame(&mut wr, &h, &data).await.is_err() {
                        break;
                    }
                }
                closed.store(true, Ordering::SeqCst);
            }
        });
        let reader = tokio::spawn({
            let pending = pending.clone();
            let closed = closed.clone();
            async move {
                loop {
                    match wire::read_frame(&mut rd).await {
                        Ok(Some((Header::IoDone { tag, status }, data))) => {
                            if let Some(tx) = lock(&pending).remove(&tag) {
                                let _ = tx.send((status, data));
                            }
                        }
                        Ok(Some((Header::Namespaces { namespaces }, _))) => on_update(namespaces),
                        Ok(Some(_)) => {}
                        Ok(None) | Err(_) => break,
                    }
                }
                closed.store(true, Ordering::SeqCst);
                // Fail every I/O still waiting: dropping the senders wakes them.
                lock(&pending).clear();
                on_close();
            }
        });
        let conn = Arc::new(Connection {
            outbox,
            pending,
            next_tag: AtomicU64::new(1),
            closed,
            tasks: vec![writer.abort_handle(), reader.abort_handle()],
        });
        Ok((conn, ctrlr))
    }

    /// Whether the connection has broken.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Sends one I/O and waits for its completion; `None` if the connection broke.
    pub async fn submit(
        &self,
        op: IoOp,
        nsid: u32,
        offset: u64,
        len: u64,
        data: Vec<u8>,
    ) -> Option<(IoStatus, Vec<u8>)> {
        if self.is_closed() {
            return None;
        }
        let tag = self.next_tag.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(tag, tx);
        let h = Header::Io {
            tag,
            op,
            nsid,
            offset,
            len,
        };
        if self.outbox.send((h, data)).is_err() {
            lock(&self.pending).remove(&tag);
            return None;
        }
        // The reader may have cleared the table just before the insert.
        if self.is_closed() {
            lock(&self.pending).remove(&tag);
            return None;
        }
        rx.await.ok()
    }
}
