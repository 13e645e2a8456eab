//! The `nvmf_*` JSON-RPC methods.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::params::invalid_params;
use super::subsystem::{discovery_json, ListenAddr, Listener, Namespace, Subsystem};
use super::wire::AnaState;
use super::{lock, server, Target};
use crate::rpc_error::RpcError;
use crate::sim::Sim;

/// Decodes nvmf params; SPDK's nvmf RPCs answer a decode failure with
/// -32602 "Invalid parameters".
fn decode<T: serde::de::DeserializeOwned>(params: Option<&Value>) -> Result<T, RpcError> {
    super::params::decode(params).map_err(|_| invalid_params())
}

/// The error SPDK gives when setting an ANA state fails with -EINVAL.
fn ana_error() -> RpcError {
    RpcError::new(-32603, "error setting ANA state: -22")
}

/// Module name under which namespaces claim their bdev.
const CLAIM_MODULE: &str = "nvmf";

/// Routes one `nvmf_*` method.
pub async fn handle(
    sim: &Arc<Sim>,
    method: &str,
    params: Option<&Value>,
) -> Option<Result<Value, RpcError>> {
    let r = match method {
        "nvmf_create_transport" => create_transport(sim, params),
        "nvmf_get_transports" => get_transports(sim, params),
        "nvmf_create_subsystem" => create_subsystem(sim, params),
        "nvmf_delete_subsystem" => delete_subsystem(sim, params),
        "nvmf_get_subsystems" => get_subsystems(sim, params),
        "nvmf_subsystem_add_ns" => add_ns(sim, params),
        "nvmf_subsystem_remove_ns" => remove_ns(sim, params),
        "nvmf_subsystem_add_listener" => add_listener(sim, params).await,
        "nvmf_subsystem_remove_listener" => remove_listener(sim, params),
        "nvmf_subsystem_get_listeners" => get_listeners(sim, params),
        "nvmf_subsystem_add_host" => add_host(sim, params),
        "nvmf_subsystem_remove_host" => remove_host(sim, params),
        "nvmf_subsystem_allow_any_host" => allow_any_host(sim, params),
        "nvmf_subsystem_get_controllers" => get_controllers(sim, params),
        "nvmf_subsystem_get_qpairs" => get_qpairs(sim, params),
        "nvmf_subsystem_listener_set_ana_state" => set_ana_state(sim, params),
        "nvmf_subsystem_set_ns_ana_group" => set_ns_ana_group(sim, params).await,
        "nvmf_get_stats" => get_stats(sim),
        _ => return None,
    };
    Some(r)
}

fn find<'a>(t: &'a mut Target, nqn: &str) -> Result<&'a mut Subsystem, RpcError> {
    t.subsystems
        .iter_mut()
        .find(|s| s.nqn == nqn)
        .ok_or_else(invalid_params)
}

#[derive(Deserialize)]
struct TransportParams {
    trtype: String,
}

fn create_transport(sim: &Sim, params: Option<&Value>) -> Result<Value, RpcError> {
    let p: TransportParams = decode(params)?;
    let trtype = p.trtype.to_ascii_uppercase();
    if trtype != "TCP" {
        return Err(RpcError::new(-32602, "Invalid parameters"));
    }
    let mut t = lock(&sim.nvmf.target);
    if t.transports.contains(&trtype) {
        return Err(RpcError::new(
            -32603,
            format!("Transport type '{trtype}' already exists"),
        ));
    }
    t.transports.push(trtype);
    Ok(json!(true))
}

#[derive(Deserialize)]
struct GetTransportsParams {
    trtype: Option<String>,
}

fn get_transports(sim: &Sim, params: Option<&Value>) -> Result<Value, RpcError> {
    let p: GetTransportsParams = decode(params)?;
    let t = lock(&sim.nvmf.target);
    if let Some(want) = &p.trtype {
        if !t.transports.contains(&want.to_ascii_uppercase()) {
            return Err(RpcError::no_such_device());
        }
    }
    let list: Vec<Value> = t
        .transports
        .iter()
        .map(|tr| {
            json!({
                "trtype": tr, "max_queue_depth": 128, "max_io_qpairs_per_ctrlr": 127,
                "in_capsule_data_size": 4096, "max_io_size": 131072, "io_unit_size": 131072,
                "max_aq_depth": 128, "num_shared_buffers": 511, "buf_cache_size": 4294967295u64,
                "dif_insert_or_strip": false, "zcopy": false, "c2h_success": true,
                "sock_priority": 0, "abort_timeout_sec": 1, "ack_timeout": 0, "data_wr_pool_size": 0
            })
        })
        .collect();
    Ok(Value::Array(list))
}

#[derive(Deserialize)]
struct CreateSubsystemParams {
    nqn: String,
    serial_number: Option<String>,
    model_number: Option<String>,
    #[serde(default)]
    allow_any_host: bool,
    #[serde(default)]
    ana_reporting: bool,
    #[serde(default)]
    max_namespaces: u32,
    min_cntlid: Option<u16>,
    max_cntlid: Option<u16>,
}

/// SPDK's NQN rule: "nqn." prefix, 11 to 223 bytes.
fn nqn_valid(nqn: &str) -> bool {
    (11..=223).contains(&nqn.len()) && nqn.starts_with("nqn.")
}

fn create_subsystem(sim: &Sim, params: Option<&Value>) -> Result<Value, RpcError> {
    let p: CreateSubsystemParams = decode(params)?;
    let fail = || RpcError::new(-32603, format!("Unable to create subsystem {}", p.nqn));
    let mut t = lock(&sim.nvmf.target);
    if !nqn_valid(&p.nqn)
        || p.nqn == super::subsystem::DISCOVERY_NQN
        || t.subsystems.iter().any(|s| s.nqn == p.nqn)
    {
        return Err(fail());
    }
    let min_cntlid = p.min_cntlid.unwrap_or(1);
    let max_cntlid = p.max_cntlid.unwrap_or(65519);
    if min_cntlid == 0 || min_cntlid > max_cntlid || max_cntlid > 65519 {
        return Err(fail());
    }
    t.subsystems.push(Subsystem {
        nqn: p.nqn.clone(),
        serial_number: p
            .serial_number
            .unwrap_or_else(|| "00000000000000000000".to_string()),
        model_number: p
            .model_number
            .unwrap_or_else(|| "SPDK bdev Controller".to_string()),
        allow_any_host: p.allow_any_host,
        hosts: Vec::new(),
        ana_reporting: p.ana_reporting,
        max_namespaces: if p.max_namespaces == 0 {
            32
        } else {
            p.max_namespaces
        },
        min_cntlid,
        max_cntlid,
        next_cntlid: min_cntlid,
        namespaces: BTreeMap::new(),
        listeners: Vec::new(),
        connections: BTreeMap::new(),
    });
    tracing::info!(nqn = %p.nqn, "subsystem created");
    Ok(json!(true))
}

#[derive(Deserialize)]
struct NqnParams {
    nqn: String,
}

fn delete_subsystem(sim: &Sim, params: Option<&Value>) -> Result<Value, RpcError> {
    let p: NqnParams = decode(params)?;
    let released = {
        let mut t = lock(&sim.nvmf.target);
        let idx = t
            .subsystems
            .iter()
            .position(|s| s.nqn == p.nqn)
            .ok_or_else(invalid_params)?;
        let mut sub = t.subsystems.remove(idx);
        sub.drop_connections(|_| true);
        t.close_unused_sockets();
        sub.namespaces
            .values()
            .map(|ns| ns.bdev_name.clone())
            .collect::<Vec<_>>()
    };
    let mut reg = lock(&sim.bdevs);
    for name in released {
        reg.release(&name);
    }
    tracing::info!(nqn = %p.nqn, "subsystem deleted");
    Ok(json!(true))
}

#[derive(Deserialize)]
struct GetSubsystemsParams {
    nqn: Option<String>,
}

fn get_subsystems(sim: &Sim, params: Option<&Value>) -> Result<Value, RpcError> {
    let p: GetSubsystemsParams = decode(params)?;
    let t = lock(&sim.nvmf.target);
    let mut all = vec![(
        super::subsystem::DISCOVERY_NQN.to_string(),
        discovery_json(),
    )];
    all.extend(t.subsystems.iter().map(|s| (s.nqn.clone(), s.to_json())));
    match p.nqn {
        Some(nqn) => {
            let one: Vec<Value> = all
                .into_iter()
                .filter(|(n, _)| *n == nqn)
                .map(|(_, v)| v)
                .collect();
            if one.is_empty() {
                Err(RpcError::no_such_device())
            } else {
                Ok(Value::Array(one))
            }
        }
        None => Ok(Value::Array(all.into_iter().map(|(_, v)| v).collect())),
    }
}

#[derive(Deserialize)]
struct NsSpec {
    bdev_name: String,
    #[serde(default)]
    nsid: u32,
    uuid: Option<Uuid>,
    nguid: Option<String>,
    #[serde(default)]
    anagrpid: u32,
}

#[derive(Deserialize)]
struct AddNsParams {
    nqn: String,
    namespace: NsSpec,
}

fn add_ns(sim: &Sim, params: Option<&Value>) -> Result<Value, RpcError> {
    let p: AddNsParams = decode(params)?;
    let mut t = lock(&sim.nvmf.target);
    let sub = find(&mut t, &p.nqn)?;
    let nsid = if p.namespace.nsid == 0 {
        (1..=sub.max_namespaces)
            .find(|n| !sub.namespaces.contains_key(n))
            .ok_or_else(invalid_params)?
    } else {
        p.namespace.nsid
    };
    if nsid > sub.max_namespaces || sub.namespaces.contains_key(&nsid) {
        return Err(invalid_params());
    }
    let bdev = {
        let mut reg = lock(&sim.bdevs);
        reg.claim(&p.namespace.bdev_name, CLAIM_MODULE)
            .map_err(|_| invalid_params())?
    };
    let uuid = p.namespace.uuid.unwrap_or_else(|| bdev.uuid());
    let nguid = match &p.namespace.nguid {
        Some(hex) => Uuid::try_parse(hex).map_err(|_| invalid_params())?,
        None => bdev.uuid(),
    };
    let anagrpid = if p.namespace.anagrpid == 0 {
        nsid
    } else {
        p.namespace.anagrpid
    };
    sub.namespaces.insert(
        nsid,
        Namespace {
            nsid,
            bdev_name: bdev.name(),
            bdev,
            uuid,
            nguid,
            anagrpid,
            drain: Arc::new(tokio::sync::RwLock::new(())),
        },
    );
    sub.broadcast_namespaces();
    Ok(json!(nsid))
}

#[derive(Deserialize)]
struct RemoveNsParams {
    nqn: String,
    nsid: u32,
}

fn remove_ns(sim: &Sim, params: Option<&Value>) -> Result<Value, RpcError> {
    let p: RemoveNsParams = decode(params)?;
    let name = {
        let mut t = lock(&sim.nvmf.target);
        let sub = find(&mut t, &p.nqn)?;
        let ns = sub.namespaces.remove(&p.nsid).ok_or_else(invalid_params)?;
        sub.broadcast_namespaces();
        ns.bdev_name
    };
    lock(&sim.bdevs).release(&name);
    Ok(json!(true))
}

#[derive(Deserialize)]
struct ListenerParams {
    nqn: String,
    listen_address: ListenAddr,
    ana_state: Option<String>,
}

async fn add_listener(sim: &Arc<Sim>, params: Option<&Value>) -> Result<Value, RpcError> {
    let p: ListenerParams = decode(params)?;
    let addr = p.listen_address.normalized();
    let initial = match p.ana_state.as_deref() {
        None => None,
        Some(s) => Some(AnaState::parse(s).ok_or_else(invalid_params)?),
    };
    let need_socket = {
        let mut t = lock(&sim.nvmf.target);
        if !t.transports.contains(&addr.trtype) {
            return Err(invalid_params());
        }
        let need = !t.sockets.contains_key(&addr.socket_addr());
        let sub = find(&mut t, &p.nqn)?;
        if sub.listener(&addr).is_some() {
            return Err(invalid_params());
        }
        need
    };
    let task = if need_socket {
        match server::bind(Arc::downgrade(sim), addr.clone()).await {
            Ok(task) => Some(task),
            Err(e) => {
                tracing::warn!(addr = %addr.socket_addr(), error = %e, "listen failed");
                return Err(invalid_params());
            }
        }
    } else {
        None
    };
    let mut t = lock(&sim.nvmf.target);
    if let Some(task) = task {
        if let Some(old) = t.sockets.insert(addr.socket_addr(), task) {
            old.abort();
        }
    }
    let sub = match find(&mut t, &p.nqn) {
        Ok(sub) => sub,
        Err(e) => {
            t.close_unused_sockets();
            return Err(e);
        }
    };
    let mut ana = BTreeMap::new();
    if let Some(state) = initial {
        for g in 1..=sub.max_namespaces {
            ana.insert(g, state);
        }
    }
    sub.listeners.push(Listener { addr, ana });
    Ok(json!(true))
}

fn remove_listener(sim: &Sim, params: Option<&Value>) -> Result<Value, RpcError> {
    let p: ListenerParams = decode(params)?;
    let addr = p.listen_address.normalized();
    let mut t = lock(&sim.nvmf.target);
    let sub = find(&mut t, &p.nqn)?;
    let idx = sub
        .listeners
        .iter()
        .position(|l| l.addr == addr)
        .ok_or_else(invalid_params)?;
    sub.listeners.remove(idx);
    sub.drop_connections(|c| c.listen == addr);
    t.close_unused_sockets();
    Ok(json!(true))
}

fn get_listeners(sim: &Sim, params: Option<&Value>) -> Result<Value, RpcError> {
    let p: NqnParams = decode(params)?;
    let mut t = lock(&sim.nvmf.target);
    let sub = find(&mut t, &p.nqn)?;
    Ok(Value::Array(
        sub.listeners.iter().map(|l| sub.listener_json(l)).collect(),
    ))
}

#[derive(Deserialize)]
struct HostParams {
    nqn: String,
    host: String,
}

/// -32603 "Internal error": what SPDK answers when adding a host that is
/// already allowed (or not a valid NQN), or removing one that is not.
fn internal_error() -> RpcError {
    RpcError::new(-32603, "Internal error")
}

fn add_host(sim: &Sim, params: Option<&Value>) -> Result<Value, RpcError> {
    let p: HostParams = decode(params)?;
    let mut t = lock(&sim.nvmf.target);
    let sub = find(&mut t, &p.nqn)?;
    if sub.hosts.contains(&p.host) || !nqn_valid(&p.host) {
        return Err(internal_error());
    }
    // SPDK keeps the newest host first.
    sub.hosts.insert(0, p.host);
    Ok(json!(true))
}

/// Removes the host and disconnects every controller it has on the
/// subsystem, whether or not the subsystem also allows any host (SPDK's
/// `spdk_nvmf_subsystem_disconnect_host`).
fn remove_host(sim: &Sim, params: Option<&Value>) -> Result<Value, RpcError> {
    let p: HostParams = decode(params)?;
    let mut t = lock(&sim.nvmf.target);
    let sub = find(&mut t, &p.nqn)?;
    let before = sub.hosts.len();
    sub.hosts.retain(|h| *h != p.host);
    if sub.hosts.len() == before {
        return Err(internal_error());
    }
    let host = p.host.clone();
    sub.drop_connections(|c| c.hostnqn == host);
    Ok(json!(true))
}

#[derive(Deserialize)]
struct AllowAnyHostParams {
    nqn: String,
    allow_any_host: bool,
}

fn allow_any_host(sim: &Sim, params: Option<&Value>) -> Result<Value, RpcError> {
    let p: AllowAnyHostParams = decode(params)?;
    let mut t = lock(&sim.nvmf.target);
    let sub = find(&mut t, &p.nqn)?;
    sub.allow_any_host = p.allow_any_host;
    Ok(json!(true))
}

fn get_controllers(sim: &Sim, params: Option<&Value>) -> Result<Value, RpcError> {
    let p: NqnParams = decode(params)?;
    let mut t = lock(&sim.nvmf.target);
    let sub = find(&mut t, &p.nqn)?;
    Ok(Value::Array(
        sub.connections
            .values()
            .map(|c| {
                json!({"cntlid": c.cntlid, "cntrltype": "io", "hostnqn": c.hostnqn,
                       "hostid": c.hostid.to_string(), "num_io_qpairs": 1})
            })
            .collect(),
    ))
}

fn get_qpairs(sim: &Sim, params: Option<&Value>) -> Result<Value, RpcError> {
    let p: NqnParams = decode(params)?;
    let mut t = lock(&sim.nvmf.target);
    let sub = find(&mut t, &p.nqn)?;
    Ok(Value::Array(
        sub.connections
            .values()
            .map(|c| {
                json!({"cntlid": c.cntlid, "qid": 0, "state": "enabled",
                       "thread": "nvmf_tgt_poll_group_000", "hostnqn": c.hostnqn,
                       "listen_address": c.listen.to_json(),
                       "peer_address": {"trtype": c.listen.trtype, "adrfam": c.listen.adrfam,
                                        "traddr": c.peer.ip().to_string(),
                                        "trsvcid": c.peer.port().to_string()}})
            })
            .collect(),
    ))
}

#[derive(Deserialize)]
struct SetAnaParams {
    nqn: String,
    listen_address: ListenAddr,
    ana_state: String,
    anagrpid: Option<u32>,
}

fn set_ana_state(sim: &Sim, params: Option<&Value>) -> Result<Value, RpcError> {
    let p: SetAnaParams = decode(params)?;
    let state = AnaState::parse(&p.ana_state).ok_or_else(invalid_params)?;
    let addr = p.listen_address.normalized();
    let mut t = lock(&sim.nvmf.target);
    let sub = find(&mut t, &p.nqn)?;
    if !sub.ana_reporting {
        return Err(ana_error());
    }
    let max = sub.max_namespaces;
    let listener = sub
        .listeners
        .iter_mut()
        .find(|l| l.addr == addr)
        .ok_or_else(ana_error)?;
    match p.anagrpid {
        Some(g) if g == 0 || g > max => return Err(ana_error()),
        Some(g) => {
            listener.ana.insert(g, state);
        }
        None => {
            for g in 1..=max {
                listener.ana.insert(g, state);
            }
        }
    }
    tracing::info!(nqn = %p.nqn, addr = %addr.socket_addr(), state = state.as_str(), "ANA state set");
    sub.broadcast_namespaces();
    Ok(json!(true))
}

#[derive(Deserialize)]
struct SetNsAnaGroupParams {
    nqn: String,
    nsid: u32,
    anagrpid: u32,
}

/// Moves a namespace to another ANA group once its in-flight I/O has completed.
async fn set_ns_ana_group(sim: &Sim, params: Option<&Value>) -> Result<Value, RpcError> {
    let p: SetNsAnaGroupParams = decode(params)?;
    let drain = {
        let mut t = lock(&sim.nvmf.target);
        let sub = find(&mut t, &p.nqn)?;
        if p.anagrpid == 0 || p.anagrpid > sub.max_namespaces {
            return Err(invalid_params());
        }
        sub.namespaces
            .get(&p.nsid)
            .ok_or_else(invalid_params)?
            .drain
            .clone()
    };
    let _barrier = drain.write().await;
    let mut t = lock(&sim.nvmf.target);
    let sub = find(&mut t, &p.nqn)?;
    let ns = sub.namespaces.get_mut(&p.nsid).ok_or_else(invalid_params)?;
    ns.anagrpid = p.anagrpid;
    sub.broadcast_namespaces();
    Ok(json!(true))
}

fn get_stats(sim: &Sim) -> Result<Value, RpcError> {
    let t = lock(&sim.nvmf.target);
    let current: usize = t.subsystems.iter().map(|s| s.connections.len()).sum();
    Ok(json!({
        "tick_rate": crate::bdev_rpc::TICK_RATE,
        "poll_groups": [{
            "name": "nvmf_tgt_poll_group_000",
            "admin_qpairs": t.stats.qpairs,
            "io_qpairs": t.stats.qpairs,
            "current_admin_qpairs": current,
            "current_io_qpairs": current,
            "pending_bdev_io": 0,
            "completed_nvme_io": t.stats.completed_nvme_io,
            "transports": t.transports.iter().map(|tr| json!({"trtype": tr})).collect::<Vec<_>>(),
        }]
    }))
}
