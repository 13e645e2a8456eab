//! The target's data model: subsystems, namespaces, listeners and the
//! connections through them, and their JSON as `nvmf_get_subsystems` shows it.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use super::wire::{AnaState, Header, NamespaceInfo};
use crate::bdev::Bdev;

/// Sends frames (header and data) to one connected host.
pub type Outbox = mpsc::UnboundedSender<(Header, Vec<u8>)>;

/// The NQN of the discovery subsystem every target has.
pub const DISCOVERY_NQN: &str = "nqn.2014-08.org.nvmexpress.discovery";

/// A transport address as JSON-RPC spells it (`listen_address`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ListenAddr {
    /// "TCP".
    pub trtype: String,
    /// "IPv4" or "IPv6".
    #[serde(default = "default_adrfam")]
    pub adrfam: String,
    /// IP address.
    pub traddr: String,
    /// Port.
    pub trsvcid: String,
}

fn default_adrfam() -> String {
    "IPv4".to_string()
}

impl ListenAddr {
    /// Canonical spelling (SPDK reports "TCP" and "IPv4" whatever the case sent).
    pub fn normalized(&self) -> Self {
        Self {
            trtype: self.trtype.to_ascii_uppercase(),
            adrfam: match self.adrfam.to_ascii_lowercase().as_str() {
                "ipv6" => "IPv6".to_string(),
                _ => "IPv4".to_string(),
            },
            traddr: self.traddr.clone(),
            trsvcid: self.trsvcid.clone(),
        }
    }

    /// `host:port` for binding a socket.
    pub fn socket_addr(&self) -> String {
        if self.adrfam == "IPv6" {
            format!("[{}]:{}", self.traddr, self.trsvcid)
        } else {
            format!("{}:{}", self.traddr, self.trsvcid)
        }
    }

    /// The JSON object SPDK reports for the address.
    pub fn to_json(&self) -> Value {
        json!({
            "trtype": self.trtype,
            "adrfam": self.adrfam,
            "traddr": self.traddr,
            "trsvcid": self.trsvcid,
        })
    }
}

/// One namespace of a subsystem.
pub struct Namespace {
    /// Namespace id.
    pub nsid: u32,
    /// The bdev, as taken from the registry.
    pub bdev: Arc<dyn Bdev>,
    /// Registry name of the bdev (for releasing the claim).
    pub bdev_name: String,
    /// Namespace UUID (given, or the bdev's).
    pub uuid: Uuid,
    /// Namespace NGUID (given, or the bdev's UUID). Initiators name their
    /// bdev's UUID after it, as SPDK's bdev_nvme does.
    pub nguid: Uuid,
    /// ANA group.
    pub anagrpid: u32,
    /// In-flight I/O hold a read guard; ANA group changes take the write guard.
    pub drain: Arc<tokio::sync::RwLock<()>>,
}

/// One listener of a subsystem, with its per-ANA-group states.
pub struct Listener {
    /// Address.
    pub addr: ListenAddr,
    /// ANA state by ANA group; groups not present are optimized.
    pub ana: BTreeMap<u32, AnaState>,
}

impl Listener {
    /// ANA state of `group` on this listener.
    pub fn ana_state(&self, group: u32) -> AnaState {
        self.ana.get(&group).copied().unwrap_or(AnaState::Optimized)
    }
}

/// One host connection (controller) to a subsystem.
pub struct Connection {
    /// Controller id.
    pub cntlid: u16,
    /// Host NQN.
    pub hostnqn: String,
    /// Host identifier the host sent.
    pub hostid: Uuid,
    /// Listener the host came through.
    pub listen: ListenAddr,
    /// Peer address.
    pub peer: std::net::SocketAddr,
    /// Frames to the host (completions and unsolicited namespace updates).
    pub events: Outbox,
    /// Set to true to drop the connection.
    pub kill: watch::Sender<bool>,
}

/// One NVMe-oF subsystem.
pub struct Subsystem {
    /// NQN.
    pub nqn: String,
    /// Serial number.
    pub serial_number: String,
    /// Model number.
    pub model_number: String,
    /// Whether any host may connect.
    pub allow_any_host: bool,
    /// Hosts allowed when `allow_any_host` is false.
    pub hosts: Vec<String>,
    /// Whether ANA is reported.
    pub ana_reporting: bool,
    /// Maximum namespaces.
    pub max_namespaces: u32,
    /// Lowest controller id.
    pub min_cntlid: u16,
    /// Highest controller id.
    pub max_cntlid: u16,
    /// Next controller id to hand out.
    pub next_cntlid: u16,
    /// Namespaces by nsid.
    pub namespaces: BTreeMap<u32, Namespace>,
    /// Listeners in the order added.
    pub listeners: Vec<Listener>,
    /// Live connections by a sim-internal id.
    pub connections: BTreeMap<u64, Connection>,
}

impl Subsystem {
    /// Whether `hostnqn` may connect.
    pub fn host_allowed(&self, hostnqn: &str) -> bool {
        self.allow_any_host || self.hosts.iter().any(|h| h == hostnqn)
    }

    /// The listener with this address, if any.
    pub fn listener(&self, addr: &ListenAddr) -> Option<&Listener> {
        self.listeners.iter().find(|l| &l.addr == addr)
    }

    /// ANA state of `group` through `addr` as hosts see it: always optimized
    /// when the subsystem does not report ANA; `None` without such a listener.
    pub fn ana_state(&self, addr: &ListenAddr, group: u32) -> Option<AnaState> {
        let l = self.listener(addr)?;
        Some(if self.ana_reporting {
            l.ana_state(group)
        } else {
            AnaState::Optimized
        })
    }

    /// Namespaces as seen through `addr`.
    pub fn namespace_infos(&self, addr: &ListenAddr) -> Vec<NamespaceInfo> {
        self.namespaces
            .values()
            .map(|ns| NamespaceInfo {
                nsid: ns.nsid,
                uuid: ns.nguid,
                block_size: ns.bdev.block_size(),
                num_blocks: ns.bdev.num_blocks(),
                anagrpid: ns.anagrpid,
                ana_state: self
                    .ana_state(addr, ns.anagrpid)
                    .unwrap_or(AnaState::Inaccessible),
            })
            .collect()
    }

    /// Tells every connected host about the current namespaces.
    pub fn broadcast_namespaces(&self) {
        for c in self.connections.values() {
            let namespaces = self.namespace_infos(&c.listen);
            let _ = c
                .events
                .send((Header::Namespaces { namespaces }, Vec::new()));
        }
    }

    /// Drops the connections that match `pred`.
    pub fn drop_connections(&mut self, pred: impl Fn(&Connection) -> bool) {
        self.connections.retain(|_, c| {
            if pred(c) {
                let _ = c.kill.send(true);
                false
            } else {
                true
            }
        });
    }

    /// The subsystem's entry in `nvmf_get_subsystems`.
    pub fn to_json(&self) -> Value {
        let namespaces: Vec<Value> = self
            .namespaces
            .values()
            .map(|ns| {
                let mut o = json!({
                    "nsid": ns.nsid,
                    "bdev_name": ns.bdev.name(),
                    "name": ns.bdev.name(),
                    "nguid": ns.nguid.simple().to_string().to_ascii_uppercase(),
                    "uuid": ns.uuid.to_string(),
                });
                if self.ana_reporting {
                    o["anagrpid"] = json!(ns.anagrpid);
                }
                o
            })
            .collect();
        json!({
            "nqn": self.nqn,
            "subtype": "NVMe",
            "listen_addresses": self.listeners.iter().map(|l| l.addr.to_json()).collect::<Vec<_>>(),
            "allow_any_host": self.allow_any_host,
            "hosts": self.hosts.iter().map(|h| json!({"nqn": h})).collect::<Vec<_>>(),
            "serial_number": self.serial_number,
            "model_number": self.model_number,
            "max_namespaces": self.max_namespaces,
            "min_cntlid": self.min_cntlid,
            "max_cntlid": self.max_cntlid,
            "namespaces": namespaces,
        })
    }

    /// The listener's entry in `nvmf_subsystem_get_listeners`.
    pub fn listener_json(&self, l: &Listener) -> Value {
        let mut o = json!({ "address": l.addr.to_json() });
        if self.ana_reporting {
            let states: Vec<Value> = (1..=self.max_namespaces)
                .map(|g| json!({"ana_group": g, "ana_state": l.ana_state(g).as_str()}))
                .collect();
            o["ana_states"] = Value::Array(states);
        }
        o
    }
}

/// The discovery subsystem's entry in `nvmf_get_subsystems`.
pub fn discovery_json() -> Value {
    json!({
        "nqn": DISCOVERY_NQN,
        "subtype": "Discovery",
        "listen_addresses": [],
        "allow_any_host": true,
        "hosts": [],
    })
}
