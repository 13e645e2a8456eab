//! The target's sockets: one TCP listener per address, shared by every
//! subsystem listening there, and the per-connection I/O service.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use super::lock;
use super::subsystem::{Connection, ListenAddr};
use super::wire::{self, ControllerInfo, Header, IoOp, IoStatus};
use crate::sim::Sim;

/// How often a connection checks its namespaces for resizes.
const NS_POLL: Duration = Duration::from_millis(200);

/// Binds `addr` and serves connections on it until the returned task is aborted.
pub async fn bind(sim: Weak<Sim>, addr: ListenAddr) -> std::io::Result<tokio::task::AbortHandle> {
    let listener = TcpListener::bind(addr.socket_addr()).await?;
    let task = tokio::spawn(accept_loop(listener, sim, addr));
    Ok(task.abort_handle())
}

async fn accept_loop(listener: TcpListener, sim: Weak<Sim>, addr: ListenAddr) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve(stream, peer, sim.clone(), addr.clone()));
            }
            Err(e) => {
                tracing::warn!(error = %e, addr = %addr.socket_addr(), "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// What the first frame of a connection resolved to.
struct Admitted {
    id: u64,
    nqn: String,
    ctrlr: ControllerInfo,
    kill: watch::Receiver<bool>,
    outbox_rx: mpsc::UnboundedReceiver<(Header, Vec<u8>)>,
    outbox: super::subsystem::Outbox,
}

/// Checks a CONNECT against the subsystems and registers the connection.
fn admit(
    sim: &Sim,
    addr: &ListenAddr,
    peer: std::net::SocketAddr,
    subnqn: &str,
    hostnqn: &str,
    hostid: uuid::Uuid,
) -> Result<Admitted, i32> {
    let mut target = lock(&sim.nvmf.target);
    let id = target.next_conn_id;
    target.next_conn_id += 1;
    target.stats.qpairs += 1;
    let sub = target
        .subsystems
        .iter_mut()
        .find(|s| s.nqn == subnqn)
        .ok_or(-libc_errno::ENOENT)?;
    if sub.listener(addr).is_none() {
        return Err(-libc_errno::ENOENT);
    }
    if !sub.host_allowed(hostnqn) {
        return Err(-libc_errno::EACCES);
    }
    let cntlid = sub.next_cntlid;
    sub.next_cntlid = if cntlid >= sub.max_cntlid {
        sub.min_cntlid
    } else {
        cntlid + 1
    };
    let (outbox, outbox_rx) = mpsc::unbounded_channel();
    let (kill_tx, kill) = watch::channel(false);
    sub.connections.insert(
        id,
        Connection {
            cntlid,
            hostnqn: hostnqn.to_string(),
            hostid,
            listen: addr.clone(),
            peer,
            events: outbox.clone(),
            kill: kill_tx,
        },
    );
    let ctrlr = ControllerInfo {
        cntlid,
        serial_number: sub.serial_number.clone(),
        model_number: sub.model_number.clone(),
        subnqn: sub.nqn.clone(),
        ana_reporting: sub.ana_reporting,
        namespaces: sub.namespace_infos(addr),
    };
    Ok(Admitted {
        id,
        nqn: sub.nqn.clone(),
        ctrlr,
        kill,
        outbox_rx,
        outbox,
    })
}

/// errno values used on the wire.
mod libc_errno {
    pub const ENOENT: i32 = 2;
    pub const EIO: i32 = 5;
    pub const ENXIO: i32 = 6;
    pub const EACCES: i32 = 13;
    pub const EINVAL: i32 = 22;
}

async fn serve(stream: TcpStream, peer: std::net::SocketAddr, sim: Weak<Sim>, addr: ListenAddr) {
    let (mut rd, mut wr) = stream.into_split();
    let (subnqn, hostnqn, hostid) = match wire::read_frame(&mut rd).await {
        Ok(Some((
            Header::Connect {
                subnqn,
                hostnqn,
                hostid,
            },
            _,
        ))) => (subnqn, hostnqn, hostid.unwrap_or_default()),
        _ => return,
    };
    let Some(sim_arc) = sim.upgrade() else { return };
    let admitted = admit(&sim_arc, &addr, peer, &subnqn, &hostnqn, hostid);
    drop(sim_arc);
    let mut a = match admitted {
        Ok(a) => a,
        Err(errno) => {
            tracing::info!(%subnqn, %hostnqn, errno, "connect refused");
            let _ = wire::write_frame(&mut wr, &Header::Rejected { errno }, &[]).await;
            let _ = wr.shutdown().await;
            return;
        }
    };
    tracing::info!(%subnqn, %hostnqn, cntlid = a.ctrlr.cntlid, "host connected");
    let connected = Header::Connected {
        ctrlr: a.ctrlr.clone(),
    };
    if wire::write_frame(&mut wr, &connected, &[]).await.is_err() {
        forget(&sim, &a.nqn, a.id);
        return;
    }
    let mut outbox_rx = a.outbox_rx;
    let writer = tokio::spawn(async move {
        while let Some((h, data)) = outbox_rx.recv().await {
            if wire::write_frame(&mut wr, &h, &data).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    let watcher = tokio::spawn(watch_namespaces(
        sim.clone(),
        a.nqn.clone(),
        addr.clone(),
        a.ctrlr.namespaces.clone(),
        a.outbox.clone(),
    ));
    loop {
        tokio::select! {
            _ = a.kill.changed() => break,
            frame = wire::read_frame(&mut rd) => match frame {
                Ok(Some((Header::Io { tag, op, nsid, offset, len }, data))) => {
                    let sim = sim.clone();
                    let nqn = a.nqn.clone();
                    let addr = addr.clone();
                    let outbox = a.outbox.clone();
                    tokio::spawn(async move {
                        let (status, out) = run_io(&sim, &nqn, &addr, op, nsid, offset, len, data).await;
                        let _ = outbox.send((Header::IoDone { tag, status }, out));
                    });
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
    }
    watcher.abort();
    writer.abort();
    forget(&sim, &a.nqn, a.id);
    tracing::info!(%subnqn, "host disconnected");
}

/// Removes a connection from its subsystem.
fn forget(sim: &Weak<Sim>, nqn: &str, id: u64) {
    if let Some(sim) = sim.upgrade() {
        let mut target = lock(&sim.nvmf.target);
        if let Some(sub) = target.subsystems.iter_mut().find(|s| s.nqn == nqn) {
            sub.connections.remove(&id);
        }
    }
}

/// Sends a namespace update whenever a namespace's size or ANA state changes.
async fn watch_namespaces(
    sim: Weak<Sim>,
    nqn: String,
    addr: ListenAddr,
    mut last: Vec<super::wire::NamespaceInfo>,
    outbox: super::subsystem::Outbox,
) {
    loop {
        tokio::time::sleep(NS_POLL).await;
        let Some(sim) = sim.upgrade() else { return };
        let now = {
            let target = lock(&sim.nvmf.target);
            match target.subsystems.iter().find(|s| s.nqn == nqn) {
                Some(sub) => sub.namespace_infos(&addr),
                None => return,
            }
        };
        if now != last {
            if outbox
                .send((
                    Header::Namespaces {
                        namespaces: now.clone(),
                    },
                    Vec::new(),
                ))
                .is_err()
            {
                return;
            }
            last = now;
        }
    }
}

/// A namespace's in-flight I/O barrier.
type DrainLock = Arc<tokio::sync::RwLock<()>>;

/// Looks up the namespace for an I/O and checks its ANA state on this listener.
fn resolve(
    sim: &Sim,
    nqn: &str,
    addr: &ListenAddr,
    nsid: u32,
) -> Result<(Arc<dyn crate::bdev::Bdev>, DrainLock), IoStatus> {
    let target = lock(&sim.nvmf.target);
    let sub = target
        .subsystems
        .iter()
        .find(|s| s.nqn == nqn)
        .ok_or(IoStatus::Errno(-libc_errno::ENXIO))?;
    let ns = sub
        .namespaces
        .get(&nsid)
        .ok_or(IoStatus::Errno(-libc_errno::ENXIO))?;
    let state = sub
        .ana_state(addr, ns.anagrpid)
        .ok_or(IoStatus::Errno(-libc_errno::ENXIO))?;
    if state == super::wire::AnaState::Inaccessible {
        return Err(IoStatus::AnaInaccessible);
    }
    Ok((ns.bdev.clone(), ns.drain.clone()))
}

#[allow(clippy::too_many_arguments)]
async fn run_io(
    sim: &Weak<Sim>,
    nqn: &str,
    addr: &ListenAddr,
    op: IoOp,
    nsid: u32,
    offset: u64,
    len: u64,
    data: Vec<u8>,
) -> (IoStatus, Vec<u8>) {
    let Some(sim) = sim.upgrade() else {
        return (IoStatus::Errno(-libc_errno::EIO), Vec::new());
    };
    let (bdev, drain) = match resolve(&sim, nqn, addr, nsid) {
        Ok(x) => x,
        Err(status) => return (status, Vec::new()),
    };
    let _inflight = drain.read().await;
    // The ANA group may have moved while this I/O waited behind a barrier.
    if let Err(status) = resolve(&sim, nqn, addr, nsid) {
        return (status, Vec::new());
    }
    let r = match op {
        IoOp::Read => bdev.read(offset, len).await,
        IoOp::Write => bdev.write(offset, &data).await.map(|()| Vec::new()),
        IoOp::Flush => bdev.flush().await.map(|()| Vec::new()),
        IoOp::Unmap => bdev.unmap(offset, len).await.map(|()| Vec::new()),
    };
    lock(&sim.nvmf.target).stats.completed_nvme_io += 1;
    match r {
        Ok(out) => (IoStatus::Ok, out),
        Err(e) if e.0 == 0 => (IoStatus::Errno(-libc_errno::EINVAL), Vec::new()),
        Err(e) => (IoStatus::Errno(e.0), Vec::new()),
    }
}
