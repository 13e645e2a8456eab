//! One attached NVMe-oF controller: its connection, the reconnect loop with
//! SPDK's timeouts, and the retry policy for I/O while a path is unusable.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::connection::{ConnectFailure, Connection};
use crate::bdev::{IoError, IoResult};
use crate::nvmf::lock;
use crate::nvmf::wire::{ControllerInfo, IoOp, IoStatus, NamespaceInfo};
use crate::sim::Sim;

/// How often a waiting I/O looks again at a path that was unusable.
const RETRY_POLL: Duration = Duration::from_millis(20);
/// Reconnect pace when `reconnect_delay_sec` is 0 (SPDK retries in a tight loop).
const TIGHT_RECONNECT: Duration = Duration::from_millis(100);

/// The transport id of a controller, as `bdev_nvme_get_controllers` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trid {
    /// "TCP".
    pub trtype: String,
    /// "IPv4" or "IPv6".
    pub adrfam: String,
    /// Target address.
    pub traddr: String,
    /// Target port.
    pub trsvcid: String,
    /// Subsystem NQN.
    pub subnqn: String,
}

impl Trid {
    /// `host:port` to connect to.
    pub fn socket_addr(&self) -> String {
        if self.adrfam == "IPv6" {
            format!("[{}]:{}", self.traddr, self.trsvcid)
        } else {
            format!("{}:{}", self.traddr, self.trsvcid)
        }
    }

    /// JSON as SPDK reports it.
    pub fn to_json(&self) -> Value {
        json!({"trtype": self.trtype, "adrfam": self.adrfam, "traddr": self.traddr,
               "trsvcid": self.trsvcid, "subnqn": self.subnqn})
    }
}

/// SPDK's I/O error resiliency options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Resiliency {
    /// Seconds to keep reconnecting before deleting the controller; -1 forever, 0 no deadline
    /// (SPDK then leaves the controller failed and keeps trying).
    pub ctrlr_loss_timeout_sec: i64,
    /// Seconds between reconnect attempts.
    pub reconnect_delay_sec: u64,
    /// Seconds after which queued I/O fails while reconnecting; 0 keeps it until loss.
    pub fast_io_fail_timeout_sec: u64,
}

impl Resiliency {
    /// SPDK's consistency rules for the three timeouts.
    pub fn is_valid(&self) -> bool {
        let (loss, delay, fail) = (
            self.ctrlr_loss_timeout_sec,
            self.reconnect_delay_sec,
            self.fast_io_fail_timeout_sec,
        );
        match loss {
            l if l < -1 => false,
            -1 => delay != 0 && (fail == 0 || fail >= delay),
            0 => delay == 0 && fail == 0,
            l => {
                let l = l.unsigned_abs();
                delay != 0 && delay <= l && (fail == 0 || (fail >= delay && fail <= l))
            }
        }
    }
}

struct State {
    conn: Option<Arc<Connection>>,
    info: ControllerInfo,
    failed_at: Option<Instant>,
    reconnecting: bool,
    deleting: bool,
}

/// One attached controller.
pub struct Controller {
    /// Name given at attach (`<name>n<nsid>` are its bdevs).
    pub name: String,
    /// Where it connects.
    pub trid: Trid,
    /// Our host NQN.
    pub hostnqn: String,
    /// Timeouts.
    pub opts: Resiliency,
    state: Mutex<State>,
    namespaces: Arc<Mutex<BTreeMap<u32, NamespaceInfo>>>,
    sim: Weak<Sim>,
}

impl Controller {
    /// Connects to the target; fails like SPDK's attach when nothing answers or the host is refused.
    pub async fn connect(
        sim: Weak<Sim>,
        name: String,
        trid: Trid,
        hostnqn: String,
        opts: Resiliency,
    ) -> Result<Arc<Controller>, ConnectFailure> {
        let namespaces: Arc<Mutex<BTreeMap<u32, NamespaceInfo>>> = Arc::default();
        let ctrlr = Arc::new(Controller {
            name,
            trid,
            hostnqn,
            opts,
            state: Mutex::new(State {
                conn: None,
                info: ControllerInfo {
                    cntlid: 0,
                    serial_number: String::new(),
                    model_number: String::new(),
                    subnqn: String::new(),
                    ana_reporting: false,
                    namespaces: Vec::new(),
                },
                failed_at: None,
                reconnecting: false,
                deleting: false,
            }),
            namespaces,
            sim,
        });
        ctrlr.try_connect().await?;
        Ok(ctrlr)
    }

    async fn try_connect(self: &Arc<Self>) -> Result<(), ConnectFailure> {
        let ns_map = self.namespaces.clone();
        let (sim, me) = (self.sim.clone(), Arc::downgrade(self));
        let on_update = Box::new(move |list: Vec<NamespaceInfo>| {
            let (removed, added): (Vec<u32>, Vec<u32>) = {
                let mut m = lock(&ns_map);
                let gone = m
                    .keys()
                    .filter(|id| !list.iter().any(|n| n.nsid == **id))
                    .copied()
                    .collect();
                let new = list
                    .iter()
                    .filter(|n| !m.contains_key(&n.nsid))
                    .map(|n| n.nsid)
                    .collect();
                m.clear();
                m.extend(list.into_iter().map(|n| (n.nsid, n)));
                (gone, new)
            };
            if let (Some(sim), Some(ctrlr)) = (sim.upgrade(), me.upgrade()) {
                for nsid in removed {
                    super::remove_ns_bdev(&sim, &format!("{}n{nsid}", ctrlr.name));
                }
                for nsid in added {
                    if let Some(name) = super::register_ns_bdev(&sim, &ctrlr, nsid) {
                        let sim = sim.clone();
                        tokio::spawn(async move { crate::raid::examine(&sim, &name).await });
                    }
                }
            }
        });
        let weak = Arc::downgrade(self);
        let on_close = Box::new(move || {
            if let Some(c) = weak.upgrade() {
                c.on_disconnect();
            }
        });
        let hostid = self.sim.upgrade().map(|s| s.nvme.hostid());
        let (conn, info) = Connection::open(
            &self.trid.socket_addr(),
            &self.trid.subnqn,
            &self.hostnqn,
            hostid,
            on_update,
            on_close,
        )
        .await?;
        {
            let mut m = lock(&self.namespaces);
            m.clear();
            m.extend(info.namespaces.iter().cloned().map(|n| (n.nsid, n)));
        }
        let mut st = lock(&self.state);
        st.conn = Some(conn);
        st.info = info;
        st.failed_at = None;
        Ok(())
    }

    /// Identify data from the last successful connect.
    pub fn info(&self) -> ControllerInfo {
        lock(&self.state).info.clone()
    }

    /// Current namespaces as the target last described them.
    pub fn namespace(&self, nsid: u32) -> Option<NamespaceInfo> {
        lock(&self.namespaces).get(&nsid).cloned()
    }

    /// Namespace ids present at attach.
    pub fn nsids(&self) -> Vec<u32> {
        lock(&self.namespaces).keys().copied().collect()
    }

    /// SPDK's state string for `bdev_nvme_get_controllers`.
    pub fn state_str(&self) -> &'static str {
        let st = lock(&self.state);
        if st.deleting {
            "deleting"
        } else if st.conn.is_none() {
            "failed"
        } else {
            "enabled"
        }
    }

    /// Stops reconnecting and drops the connection (detach).
    pub fn shutdown(&self) {
        let mut st = lock(&self.state);
        st.deleting = true;
        st.conn = None;
    }

    /// Marks the path failed and starts reconnecting.
    fn on_disconnect(self: &Arc<Self>) {
        let mut st = lock(&self.state);
        if st.deleting {
            return;
        }
        if st.conn.as_ref().is_some_and(|c| c.is_closed()) {
            st.conn = None;
        }
        if st.conn.is_none() {
            if st.failed_at.is_none() {
                tracing::warn!(ctrlr = %self.name, "controller lost its connection");
                st.failed_at = Some(Instant::now());
            }
            if !st.reconnecting {
                st.reconnecting = true;
                tokio::spawn(self.clone().reconnect_loop());
            }
        }
    }

    async fn reconnect_loop(self: Arc<Self>) {
        let delay = if self.opts.reconnect_delay_sec == 0 {
            TIGHT_RECONNECT
        } else {
            Duration::from_secs(self.opts.reconnect_delay_sec)
        };
        loop {
            tokio::time::sleep(delay).await;
            let failed_at = {
                let st = lock(&self.state);
                if st.deleting {
                    return;
                }
                st.failed_at.unwrap_or_else(Instant::now)
            };
            match self.try_connect().await {
                Ok(()) => {
                    tracing::info!(ctrlr = %self.name, "controller reconnected");
                    lock(&self.state).reconnecting = false;
                    return;
                }
                Err(e) => tracing::debug!(ctrlr = %self.name, ?e, "reconnect failed"),
            }
            let loss = self.opts.ctrlr_loss_timeout_sec;
            if loss > 0 && failed_at.elapsed() >= Duration::from_secs(loss.unsigned_abs()) {
                tracing::warn!(ctrlr = %self.name, "ctrlr_loss_timeout_sec expired; deleting controller");
                lock(&self.state).deleting = true;
                if let Some(sim) = self.sim.upgrade() {
                    super::remove_controller(&sim, &self.name);
                }
                return;
            }
        }
    }

    /// The live connection, noticing a broken one.
    fn current(self: &Arc<Self>) -> Result<Option<Arc<Connection>>, IoError> {
        let conn = {
            let st = lock(&self.state);
            if st.deleting {
                return Err(IoError::ENXIO);
            }
            st.conn.clone()
        };
        match conn {
            Some(c) if c.is_closed() => {
                self.on_disconnect();
                Ok(None)
            }
            other => Ok(other),
        }
    }

    /// Whether an I/O waiting for a reconnect should fail now.
    fn should_fail_while_down(&self) -> bool {
        let st = lock(&self.state);
        if self.opts.ctrlr_loss_timeout_sec == 0 {
            return true;
        }
        let fail = self.opts.fast_io_fail_timeout_sec;
        fail > 0
            && st
                .failed_at
                .is_some_and(|t| t.elapsed() >= Duration::from_secs(fail))
    }

    /// Runs one I/O with SPDK's multipath/reconnect semantics.
    pub async fn io(
        self: &Arc<Self>,
        op: IoOp,
        nsid: u32,
        offset: u64,
        len: u64,
        data: &[u8],
    ) -> IoResult<Vec<u8>> {
        let started = Instant::now();
        let ana_limit = (self.opts.ctrlr_loss_timeout_sec > 0)
            .then(|| Duration::from_secs(self.opts.ctrlr_loss_timeout_sec.unsigned_abs()));
        loop {
            match self.current()? {
                Some(conn) => match conn.submit(op, nsid, offset, len, data.to_vec()).await {
                    Some((IoStatus::Ok, out)) => return Ok(out),
                    Some((IoStatus::Errno(e), _)) => return Err(IoError(e)),
                    Some((IoStatus::AnaInaccessible, _)) => {
                        if ana_limit.is_some_and(|l| started.elapsed() >= l) {
                            return Err(IoError::EIO);
                        }
                        tokio::time::sleep(RETRY_POLL).await;
                    }
                    None => self.on_disconnect(),
                },
                None => {
                    if self.should_fail_while_down() {
                        return Err(IoError::EIO);
                    }
                    tokio::time::sleep(RETRY_POLL).await;
                }
            }
        }
    }
}
