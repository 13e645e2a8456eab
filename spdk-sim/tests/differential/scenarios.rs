//! The SPDK call sequences the controller depends on, each with its error
//! cases and a check of the bytes where data moves. A scenario must not
//! branch on what it gets back: both sides run exactly the same calls.

use std::time::Duration;

use serde_json::{json, Value};

use super::harness::{Answer, Node, Side};

const LVS: &str = "lvs";
const CLUSTER: u64 = 4 << 20;
const HOST_A: &str = "nqn.2014-08.io.shorthorn:node-a";
const HOST_X: &str = "nqn.2014-08.io.shorthorn:node-x";
const NQN: &str = "nqn.2016-06.io.shorthorn:vol-1-r";
const NS_UUID: &str = "5a1c9b2e-7d3f-4e8a-9b6c-0d2e4f6a8b1c";
const SETTLE: Duration = Duration::from_secs(30);

/// A recognisable pattern of `len` bytes.
pub fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(seed | 1).wrapping_add(seed) ^ (i >> 12) as u8)
        .collect()
}

/// FNV-1a of `data`, as hex: a compact fact to compare.
fn digest(data: &[u8]) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

/// Writes `data` at `offset` of `bdev` on `node` and records that it worked.
async fn write(s: &mut Side, node: Node, bdev: &str, offset: u64, data: &[u8]) {
    let r = s.data().write(s.node(node), bdev, offset, data).await;
    let fact = match r {
        Ok(()) => json!({"bdev": bdev, "offset": offset, "len": data.len()}),
        Err(e) => json!({"bdev": bdev, "error": e.to_string()}),
    };
    s.fact(node, "written", fact);
}

/// Reads `len` bytes at `offset` of `bdev` on `node`, records their digest.
async fn read(s: &mut Side, node: Node, bdev: &str, offset: u64, len: u64) -> Option<Vec<u8>> {
    let r = s.data().read(s.node(node), bdev, offset, len).await;
    let (fact, data) = match r {
        Ok(d) => (
            json!({"bdev": bdev, "offset": offset, "digest": digest(&d)}),
            Some(d),
        ),
        Err(e) => (json!({"bdev": bdev, "error": e.to_string()}), None),
    };
    s.fact(node, "read", fact);
    data
}

/// Records whether `got` equals `want` (a readable fact when it does not).
fn same(s: &mut Side, node: Node, what: &str, got: Option<&[u8]>, want: &[u8]) {
    let v = match got {
        Some(g) if g == want => json!("identical"),
        Some(g) => {
            let first = g.iter().zip(want).position(|(a, b)| a != b);
            json!({"differs_at": first, "len": g.len()})
        }
        None => json!("unreadable"),
    };
    s.fact(node, what, v);
}

/// Base bdev, examine, lvstore and TCP transport on `node`, as the controller
/// bootstraps a node.
async fn bootstrap(s: &mut Side, node: Node) {
    let aio = s.aio(node);
    s.call(node, "bdev_get_bdevs", json!({"name": "aio0"}))
        .await;
    s.ok(
        node,
        "bdev_aio_create",
        json!({"name": "aio0", "filename": aio, "block_size": 4096}),
    )
    .await;
    s.ok(node, "bdev_wait_for_examine", Value::Null).await;
    s.call(node, "bdev_lvol_get_lvstores", Value::Null).await;
    s.ok(
        node,
        "bdev_lvol_create_lvstore",
        json!({"bdev_name": "aio0", "lvs_name": LVS, "cluster_sz": CLUSTER}),
    )
    .await;
    s.call(node, "nvmf_get_transports", Value::Null).await;
    s.ok(node, "nvmf_create_transport", json!({"trtype": "TCP"}))
        .await;
}

async fn lvol(s: &mut Side, node: Node, name: &str, mib: u64, thin: bool) -> Value {
    s.ok(
        node,
        "bdev_lvol_create",
        json!({"lvol_name": name, "size_in_mib": mib, "lvs_name": LVS, "thin_provision": thin}),
    )
    .await
}

fn listener(port: u16) -> Value {
    json!({"trtype": "TCP", "adrfam": "IPv4", "traddr": "127.0.0.1", "trsvcid": port.to_string()})
}

/// Exports `bdev` on `node` as the controller exports a replica: one
/// namespace, one admitted host, ANA reporting, one listener.
async fn export(s: &mut Side, node: Node, nqn: &str, bdev: &str, host: &str) {
    s.ok(
        node,
        "nvmf_create_subsystem",
        json!({"nqn": nqn, "serial_number": "SHORTHORN0001", "model_number": "Shorthorn replica",
               "allow_any_host": false, "ana_reporting": true, "max_namespaces": 1}),
    )
    .await;
    s.ok(
        node,
        "nvmf_subsystem_add_ns",
        json!({"nqn": nqn, "namespace": {"bdev_name": bdev, "uuid": NS_UUID}}),
    )
    .await;
    s.ok(
        node,
        "nvmf_subsystem_add_host",
        json!({"nqn": nqn, "host": host}),
    )
    .await;
    let port = s.port(node);
    s.ok(
        node,
        "nvmf_subsystem_add_listener",
        json!({"nqn": nqn, "listen_address": listener(port)}),
    )
    .await;
}

/// Attaches `nqn` of `from` on A as controller `name`, with the controller's
/// reconnect options.
async fn attach(s: &mut Side, name: &str, nqn: &str, host: &str) {
    let port = s.port(Node::B);
    s.call(
        Node::A,
        "bdev_nvme_attach_controller",
        json!({"name": name, "trtype": "TCP", "traddr": "127.0.0.1", "adrfam": "IPv4",
               "trsvcid": port.to_string(), "subnqn": nqn, "hostnqn": host,
               "ctrlr_loss_timeout_sec": 5, "reconnect_delay_sec": 1, "fast_io_fail_timeout_sec": 2}),
    )
    .await
}

fn no_process(a: &Answer) -> bool {
    a.as_ref()
        .ok()
        .and_then(Value::as_array)
        .is_some_and(|raids| raids.iter().all(|r| r.get("process").is_none()))
}

/// Bootstrap of a fresh node, with the errors a retried or racing bootstrap meets.
pub async fn bootstrap_node(s: &mut Side) {
    s.step("version");
    s.call(Node::A, "spdk_get_version", Value::Null).await;
    s.step("bootstrap");
    bootstrap(s, Node::B).await;
    s.step("bootstrap again");
    let aio = s.aio(Node::B);
    s.call(
        Node::B,
        "bdev_aio_create",
        json!({"name": "aio0", "filename": aio, "block_size": 4096}),
    )
    .await;
    s.call(
        Node::B,
        "bdev_lvol_create_lvstore",
        json!({"bdev_name": "aio0", "lvs_name": LVS, "cluster_sz": CLUSTER}),
    )
    .await;
    s.call(
        Node::B,
        "bdev_lvol_create_lvstore",
        json!({"bdev_name": "nosuch", "lvs_name": "other"}),
    )
    .await;
    s.call(Node::B, "nvmf_create_transport", json!({"trtype": "TCP"}))
        .await;
    s.step("state");
    s.call(Node::B, "bdev_lvol_get_lvstores", Value::Null).await;
    s.call(Node::B, "bdev_lvol_get_lvstores", json!({"lvs_name": LVS}))
        .await;
    s.call(
        Node::B,
        "bdev_lvol_get_lvstores",
        json!({"lvs_name": "nosuch"}),
    )
    .await;
    s.call(Node::B, "nvmf_get_transports", Value::Null).await;
    s.call(Node::B, "nvmf_get_transports", json!({"trtype": "TCP"}))
        .await;
    s.call(Node::B, "bdev_get_bdevs", json!({"name": "aio0"}))
        .await;
}

/// lvol create, snapshot, clone, resize and delete with children, and the
/// data each step keeps.
pub async fn lvols(s: &mut Side) {
    s.step("setup");
    bootstrap(s, Node::B).await;
    let b = Node::B;
    s.step("create");
    lvol(s, b, "r1", 16, true).await;
    lvol(s, b, "r2", 8, false).await;
    s.call(
        b,
        "bdev_lvol_create",
        json!({"lvol_name": "r1", "size_in_mib": 4, "lvs_name": LVS, "thin_provision": true}),
    )
    .await;
    s.call(
        b,
        "bdev_lvol_create",
        json!({"lvol_name": "x".repeat(64), "size_in_mib": 4, "lvs_name": LVS}),
    )
    .await;
    s.call(
        b,
        "bdev_lvol_create",
        json!({"lvol_name": "r3", "size_in_mib": 4, "lvs_name": "nosuch"}),
    )
    .await;
    s.call(
        b,
        "bdev_lvol_create",
        json!({"lvol_name": "huge", "size_in_mib": 1 << 20, "lvs_name": LVS, "thin_provision": false}),
    )
    .await;
    s.call(b, "bdev_get_bdevs", json!({"name": "lvs/r1"})).await;
    s.call(b, "bdev_get_bdevs", json!({"name": "lvs/r2"})).await;
    s.step("write");
    let a = pattern(1, 1 << 20);
    write(s, b, "lvs/r1", 0, &a).await;
    write(s, b, "lvs/r1", 5 << 20, &a).await;
    s.call(b, "bdev_get_bdevs", json!({"name": "lvs/r1"})).await;
    s.step("snapshot");
    s.ok(
        b,
        "bdev_lvol_snapshot",
        json!({"lvol_name": "lvs/r1", "snapshot_name": "s1"}),
    )
    .await;
    s.call(
        b,
        "bdev_lvol_snapshot",
        json!({"lvol_name": "lvs/s1", "snapshot_name": "s1s"}),
    )
    .await;
    s.call(
        b,
        "bdev_lvol_snapshot",
        json!({"lvol_name": "lvs/r1", "snapshot_name": "s1"}),
    )
    .await;
    s.call(
        b,
        "bdev_lvol_snapshot",
        json!({"lvol_name": "lvs/nosuch", "snapshot_name": "s9"}),
    )
    .await;
    s.call(b, "bdev_get_bdevs", json!({"name": "lvs/s1"})).await;
    s.call(b, "bdev_get_bdevs", json!({"name": "lvs/r1"})).await;
    s.step("clone");
    s.ok(
        b,
        "bdev_lvol_clone",
        json!({"snapshot_name": "lvs/s1", "clone_name": "c1"}),
    )
    .await;
    s.call(
        b,
        "bdev_lvol_clone",
        json!({"snapshot_name": "lvs/r1", "clone_name": "c2"}),
    )
    .await;
    s.call(b, "bdev_get_bdevs", json!({"name": "lvs/c1"})).await;
    let got = read(s, b, "lvs/c1", 5 << 20, 1 << 20).await;
    same(s, b, "clone holds the snapshot's data", got.as_deref(), &a);
    let bb = pattern(2, 64 << 10);
    write(s, b, "lvs/r1", 5 << 20, &bb).await;
    let got = read(s, b, "lvs/s1", 5 << 20, 64 << 10).await;
    same(
        s,
        b,
        "snapshot unchanged by a write",
        got.as_deref(),
        &a[..64 << 10],
    );
    s.step("resize");
    s.ok(
        b,
        "bdev_lvol_resize",
        json!({"name": "lvs/r1", "size_in_mib": 32}),
    )
    .await;
    s.call(
        b,
        "bdev_lvol_resize",
        json!({"name": "lvs/r2", "size_in_mib": 1 << 20}),
    )
    .await;
    s.call(
        b,
        "bdev_lvol_resize",
        json!({"name": "lvs/nosuch", "size_in_mib": 8}),
    )
    .await;
    s.call(b, "bdev_get_bdevs", json!({"name": "lvs/r1"})).await;
    s.call(b, "bdev_lvol_get_lvstores", json!({"lvs_name": LVS}))
        .await;
    s.step("delete with children");
    s.call(b, "bdev_lvol_delete", json!({"name": "lvs/s1"}))
        .await;
    s.ok(b, "bdev_lvol_delete", json!({"name": "lvs/c1"})).await;
    s.call(b, "bdev_get_bdevs", json!({"name": "lvs/s1"})).await;
    s.ok(b, "bdev_lvol_delete", json!({"name": "lvs/s1"})).await;
    s.call(b, "bdev_get_bdevs", json!({"name": "lvs/r1"})).await;
    let got = read(s, b, "lvs/r1", 0, 1 << 20).await;
    same(
        s,
        b,
        "merged lvol keeps the snapshot's data",
        got.as_deref(),
        &a,
    );
    let got = read(s, b, "lvs/r1", 5 << 20, 64 << 10).await;
    same(
        s,
        b,
        "merged lvol keeps its own writes",
        got.as_deref(),
        &bb,
    );
    s.call(b, "bdev_lvol_get_lvols", json!({"lvs_name": LVS}))
        .await;
    s.ok(b, "bdev_lvol_delete", json!({"name": "lvs/r1"})).await;
    s.ok(b, "bdev_lvol_delete", json!({"name": "lvs/r2"})).await;
    s.call(b, "bdev_lvol_delete", json!({"name": "lvs/r1"}))
        .await;
    s.call(b, "bdev_lvol_get_lvols", json!({"lvs_name": LVS}))
        .await;
}

/// Subsystem, namespace, listener and host, added and removed, with errors.
pub async fn exports(s: &mut Side) {
    s.step("setup");
    bootstrap(s, Node::B).await;
    let b = Node::B;
    lvol(s, b, "r1", 16, true).await;
    lvol(s, b, "r2", 16, true).await;
    s.step("export");
    export(s, b, NQN, "lvs/r1", HOST_A).await;
    s.call(b, "nvmf_get_subsystems", Value::Null).await;
    s.call(b, "nvmf_get_subsystems", json!({"nqn": NQN})).await;
    s.call(b, "nvmf_subsystem_get_listeners", json!({"nqn": NQN}))
        .await;
    s.call(b, "bdev_get_bdevs", json!({"name": "lvs/r1"})).await;
    s.step("export errors");
    s.call(b, "nvmf_create_subsystem", json!({"nqn": NQN}))
        .await;
    s.call(b, "nvmf_create_subsystem", json!({"nqn": "not-an-nqn"}))
        .await;
    s.call(
        b,
        "nvmf_subsystem_add_ns",
        json!({"nqn": NQN, "namespace": {"bdev_name": "lvs/r2"}}),
    )
    .await;
    s.call(
        b,
        "nvmf_subsystem_add_ns",
        json!({"nqn": "nqn.2016-06.io.shorthorn:nosuch", "namespace": {"bdev_name": "lvs/r2"}}),
    )
    .await;
    s.call(
        b,
        "nvmf_subsystem_add_host",
        json!({"nqn": NQN, "host": HOST_A}),
    )
    .await;
    s.call(
        b,
        "nvmf_subsystem_add_host",
        json!({"nqn": "nqn.2016-06.io.shorthorn:nosuch", "host": HOST_A}),
    )
    .await;
    let port = s.port(b);
    s.call(
        b,
        "nvmf_subsystem_add_listener",
        json!({"nqn": NQN, "listen_address": listener(port)}),
    )
    .await;
    s.call(
        b,
        "nvmf_get_subsystems",
        json!({"nqn": "nqn.2016-06.io.shorthorn:nosuch"}),
    )
    .await;
    s.step("second export of a claimed bdev");
    s.ok(
        b,
        "nvmf_create_subsystem",
        json!({"nqn": "nqn.2016-06.io.shorthorn:other", "allow_any_host": false}),
    )
    .await;
    s.call(
        b,
        "nvmf_subsystem_add_ns",
        json!({"nqn": "nqn.2016-06.io.shorthorn:other", "namespace": {"bdev_name": "lvs/r1"}}),
    )
    .await;
    s.ok(
        b,
        "nvmf_delete_subsystem",
        json!({"nqn": "nqn.2016-06.io.shorthorn:other"}),
    )
    .await;
    s.step("hosts");
    s.ok(
        b,
        "nvmf_subsystem_add_host",
        json!({"nqn": NQN, "host": HOST_X}),
    )
    .await;
    s.call(b, "nvmf_get_subsystems", json!({"nqn": NQN})).await;
    s.ok(
        b,
        "nvmf_subsystem_remove_host",
        json!({"nqn": NQN, "host": HOST_X}),
    )
    .await;
    s.call(
        b,
        "nvmf_subsystem_remove_host",
        json!({"nqn": NQN, "host": HOST_X}),
    )
    .await;
    s.call(
        b,
        "nvmf_subsystem_remove_host",
        json!({"nqn": "nqn.2016-06.io.shorthorn:nosuch", "host": HOST_X}),
    )
    .await;
    s.ok(
        b,
        "nvmf_subsystem_allow_any_host",
        json!({"nqn": NQN, "allow_any_host": true}),
    )
    .await;
    s.call(b, "nvmf_get_subsystems", json!({"nqn": NQN})).await;
    s.ok(
        b,
        "nvmf_subsystem_allow_any_host",
        json!({"nqn": NQN, "allow_any_host": false}),
    )
    .await;
    s.step("teardown");
    s.ok(
        b,
        "nvmf_subsystem_remove_listener",
        json!({"nqn": NQN, "listen_address": listener(port)}),
    )
    .await;
    s.call(
        b,
        "nvmf_subsystem_remove_listener",
        json!({"nqn": NQN, "listen_address": listener(port)}),
    )
    .await;
    s.call(b, "nvmf_subsystem_get_listeners", json!({"nqn": NQN}))
        .await;
    s.ok(
        b,
        "nvmf_subsystem_remove_ns",
        json!({"nqn": NQN, "nsid": 1}),
    )
    .await;
    s.call(
        b,
        "nvmf_subsystem_remove_ns",
        json!({"nqn": NQN, "nsid": 1}),
    )
    .await;
    s.call(b, "bdev_get_bdevs", json!({"name": "lvs/r1"})).await;
    s.ok(b, "nvmf_delete_subsystem", json!({"nqn": NQN})).await;
    s.call(b, "nvmf_delete_subsystem", json!({"nqn": NQN}))
        .await;
    s.call(b, "nvmf_get_subsystems", Value::Null).await;
}

/// ANA states per listener and group, the namespace's group, and errors.
pub async fn ana(s: &mut Side) {
    s.step("setup");
    bootstrap(s, Node::B).await;
    let b = Node::B;
    lvol(s, b, "r1", 16, true).await;
    export(s, b, NQN, "lvs/r1", HOST_A).await;
    let port = s.port(b);
    s.step("states");
    s.call(b, "nvmf_subsystem_get_listeners", json!({"nqn": NQN}))
        .await;
    s.ok(
        b,
        "nvmf_subsystem_listener_set_ana_state",
        json!({"nqn": NQN, "listen_address": listener(port), "ana_state": "inaccessible"}),
    )
    .await;
    s.call(b, "nvmf_subsystem_get_listeners", json!({"nqn": NQN}))
        .await;
    s.ok(
        b,
        "nvmf_subsystem_set_ns_ana_group",
        json!({"nqn": NQN, "nsid": 1, "anagrpid": 1}),
    )
    .await;
    s.ok(
        b,
        "nvmf_subsystem_listener_set_ana_state",
        json!({"nqn": NQN, "listen_address": listener(port), "ana_state": "optimized", "anagrpid": 1}),
    )
    .await;
    s.call(b, "nvmf_subsystem_get_listeners", json!({"nqn": NQN}))
        .await;
    s.call(b, "nvmf_get_subsystems", json!({"nqn": NQN})).await;
    s.step("errors");
    s.call(
        b,
        "nvmf_subsystem_listener_set_ana_state",
        json!({"nqn": NQN, "listen_address": listener(port), "ana_state": "sideways"}),
    )
    .await;
    s.call(
        b,
        "nvmf_subsystem_listener_set_ana_state",
        json!({"nqn": NQN, "listen_address": listener(1), "ana_state": "optimized"}),
    )
    .await;
    s.call(
        b,
        "nvmf_subsystem_listener_set_ana_state",
        json!({"nqn": NQN, "listen_address": listener(port), "ana_state": "optimized", "anagrpid": 9}),
    )
    .await;
    s.call(
        b,
        "nvmf_subsystem_set_ns_ana_group",
        json!({"nqn": NQN, "nsid": 7, "anagrpid": 1}),
    )
    .await;
    s.ok(
        b,
        "nvmf_create_subsystem",
        json!({"nqn": "nqn.2016-06.io.shorthorn:no-ana", "allow_any_host": false}),
    )
    .await;
    s.ok(
        b,
        "nvmf_subsystem_add_listener",
        json!({"nqn": "nqn.2016-06.io.shorthorn:no-ana", "listen_address": listener(port)}),
    )
    .await;
    s.call(
        b,
        "nvmf_subsystem_listener_set_ana_state",
        json!({"nqn": "nqn.2016-06.io.shorthorn:no-ana", "listen_address": listener(port), "ana_state": "inaccessible"}),
    )
    .await;
    s.call(
        b,
        "nvmf_subsystem_get_listeners",
        json!({"nqn": "nqn.2016-06.io.shorthorn:no-ana"}),
    )
    .await;
}

/// A attaches B's export with the reconnect options; removing A's host on B
/// disconnects it; detach; data written on A's NVMe bdev lands in B's lvol.
pub async fn attach_detach(s: &mut Side) {
    s.step("setup");
    bootstrap(s, Node::B).await;
    lvol(s, Node::B, "r1", 16, true).await;
    export(s, Node::B, NQN, "lvs/r1", HOST_A).await;
    s.step("attach");
    attach(s, "r1", NQN, HOST_A).await;
    attach(s, "rx", NQN, HOST_X).await;
    attach(s, "r1", NQN, HOST_A).await;
    s.call(Node::A, "bdev_nvme_get_controllers", Value::Null)
        .await;
    s.call(Node::A, "bdev_nvme_get_controllers", json!({"name": "r1"}))
        .await;
    s.call(Node::A, "bdev_get_bdevs", json!({"name": "r1n1"}))
        .await;
    s.call(
        Node::B,
        "nvmf_subsystem_get_controllers",
        json!({"nqn": NQN}),
    )
    .await;
    s.step("data through the attachment");
    let a = pattern(3, 256 << 10);
    write(s, Node::A, "r1n1", 1 << 20, &a).await;
    let got = read(s, Node::B, "lvs/r1", 1 << 20, 256 << 10).await;
    same(s, Node::B, "replica holds what A wrote", got.as_deref(), &a);
    s.step("remove host");
    s.ok(
        Node::B,
        "nvmf_subsystem_remove_host",
        json!({"nqn": NQN, "host": HOST_A}),
    )
    .await;
    let _ = s
        .settle(
            Node::B,
            "nvmf_subsystem_get_controllers",
            json!({"nqn": NQN}),
            SETTLE,
            |a| {
                a.as_ref()
                    .ok()
                    .and_then(Value::as_array)
                    .is_some_and(Vec::is_empty)
            },
        )
        .await;
    // The controller is dropped once ctrlr_loss_timeout_sec (5 s) has passed.
    let _ = s
        .settle(
            Node::A,
            "bdev_nvme_get_controllers",
            Value::Null,
            SETTLE,
            |a| {
                a.as_ref()
                    .ok()
                    .and_then(Value::as_array)
                    .is_some_and(Vec::is_empty)
            },
        )
        .await;
    s.call(Node::A, "bdev_get_bdevs", json!({"name": "r1n1"}))
        .await;
    s.step("reattach and detach");
    s.ok(
        Node::B,
        "nvmf_subsystem_add_host",
        json!({"nqn": NQN, "host": HOST_A}),
    )
    .await;
    attach(s, "r1", NQN, HOST_A).await;
    s.ok(
        Node::A,
        "bdev_nvme_detach_controller",
        json!({"name": "r1"}),
    )
    .await;
    s.call(
        Node::A,
        "bdev_nvme_detach_controller",
        json!({"name": "r1"}),
    )
    .await;
    s.call(Node::A, "bdev_nvme_get_controllers", Value::Null)
        .await;
    let _ = s
        .settle(
            Node::B,
            "nvmf_subsystem_get_controllers",
            json!({"nqn": NQN}),
            SETTLE,
            |a| {
                a.as_ref()
                    .ok()
                    .and_then(Value::as_array)
                    .is_some_and(Vec::is_empty)
            },
        )
        .await;
}

fn raid1(name: &str, bases: &[&str], superblock: bool) -> Value {
    json!({"name": name, "raid_level": "raid1", "base_bdevs": bases, "superblock": superblock})
}

async fn raids(s: &mut Side, node: Node) -> Answer {
    s.get(node, "bdev_raid_get_bdevs", json!({"category": "all"}))
        .await
}

/// raid1 create (refused with one base, configuring with a missing one),
/// remove base (degraded), add base (rebuild), delete, superblock, and a
/// degraded raid1 made over a null placeholder.
pub async fn raid(s: &mut Side) {
    let a = Node::A;
    s.step("setup");
    bootstrap(s, a).await;
    for m in ["m1", "m2", "m3"] {
        lvol(s, a, m, 16, true).await;
    }
    s.step("one base");
    s.call(a, "bdev_raid_create", raid1("r", &["lvs/m1"], false))
        .await;
    s.call(a, "bdev_raid_create", raid1("r", &[], false)).await;
    s.call(a, "bdev_get_bdevs", json!({"name": "lvs/m1"})).await;
    s.step("missing member");
    s.ok(
        a,
        "bdev_raid_create",
        raid1("rc", &["lvs/m1", "nosuch"], false),
    )
    .await;
    let _ = raids(s, a).await;
    s.call(a, "bdev_raid_get_bdevs", json!({"category": "configuring"}))
        .await;
    s.call(a, "bdev_raid_remove_base_bdev", json!({"name": "nosuch"}))
        .await;
    s.call(a, "bdev_get_bdevs", json!({"name": "rc"})).await;
    s.ok(a, "bdev_raid_delete", json!({"name": "rc"})).await;
    s.call(a, "bdev_get_bdevs", json!({"name": "lvs/m1"})).await;
    s.step("online");
    s.ok(
        a,
        "bdev_raid_create",
        raid1("r", &["lvs/m1", "lvs/m2"], false),
    )
    .await;
    s.call(
        a,
        "bdev_raid_create",
        raid1("r", &["lvs/m3", "lvs/m2"], false),
    )
    .await;
    let _ = raids(s, a).await;
    s.call(a, "bdev_raid_get_bdevs", json!({"category": "online"}))
        .await;
    s.call(a, "bdev_get_bdevs", json!({"name": "r"})).await;
    s.call(a, "bdev_get_bdevs", json!({"name": "lvs/m2"})).await;
    let data = pattern(4, 1 << 20);
    write(s, a, "r", 2 << 20, &data).await;
    for m in ["lvs/m1", "lvs/m2"] {
        let got = read(s, a, m, 2 << 20, 1 << 20).await;
        same(s, a, "member holds the raid's write", got.as_deref(), &data);
    }
    s.step("remove base");
    s.ok(a, "bdev_raid_remove_base_bdev", json!({"name": "lvs/m2"}))
        .await;
    let _ = raids(s, a).await;
    s.call(a, "bdev_get_bdevs", json!({"name": "lvs/m2"})).await;
    s.call(a, "bdev_raid_remove_base_bdev", json!({"name": "lvs/m2"}))
        .await;
    let degraded = pattern(5, 64 << 10);
    write(s, a, "r", 8 << 20, &degraded).await;
    s.step("add base");
    s.ok(
        a,
        "bdev_raid_add_base_bdev",
        json!({"raid_bdev": "r", "base_bdev": "lvs/m2"}),
    )
    .await;
    let _ = s
        .settle(
            a,
            "bdev_raid_get_bdevs",
            json!({"category": "all"}),
            SETTLE,
            no_process,
        )
        .await;
    let got = read(s, a, "lvs/m2", 8 << 20, 64 << 10).await;
    same(
        s,
        a,
        "rebuilt member holds the degraded write",
        got.as_deref(),
        &degraded,
    );
    s.call(
        a,
        "bdev_raid_add_base_bdev",
        json!({"raid_bdev": "r", "base_bdev": "lvs/m3"}),
    )
    .await;
    s.call(
        a,
        "bdev_raid_add_base_bdev",
        json!({"raid_bdev": "nosuch", "base_bdev": "lvs/m3"}),
    )
    .await;
    s.step("delete");
    s.ok(a, "bdev_raid_delete", json!({"name": "r"})).await;
    s.call(a, "bdev_raid_delete", json!({"name": "r"})).await;
    s.call(a, "bdev_get_bdevs", json!({"name": "lvs/m1"})).await;
    let _ = raids(s, a).await;
    s.step("superblock");
    s.ok(
        a,
        "bdev_raid_create",
        raid1("rs", &["lvs/m1", "lvs/m2"], true),
    )
    .await;
    let _ = raids(s, a).await;
    s.call(a, "bdev_get_bdevs", json!({"name": "rs"})).await;
    s.ok(a, "bdev_raid_remove_base_bdev", json!({"name": "lvs/m2"}))
        .await;
    let _ = raids(s, a).await;
    s.ok(a, "bdev_raid_delete", json!({"name": "rs"})).await;
    s.step("null placeholder");
    s.ok(
        a,
        "bdev_null_create",
        json!({"name": "ph", "num_blocks": 1u64 << 30, "block_size": 4096}),
    )
    .await;
    s.call(
        a,
        "bdev_null_create",
        json!({"name": "ph", "num_blocks": 1024, "block_size": 4096}),
    )
    .await;
    s.call(
        a,
        "bdev_null_create",
        json!({"name": "ph2", "num_blocks": 0, "block_size": 4096}),
    )
    .await;
    s.call(
        a,
        "bdev_null_create",
        json!({"name": "ph3", "num_blocks": 1024, "block_size": 1000}),
    )
    .await;
    s.call(a, "bdev_get_bdevs", json!({"name": "ph"})).await;
    s.ok(a, "bdev_raid_create", raid1("rn", &["lvs/m3", "ph"], false))
        .await;
    s.ok(a, "bdev_raid_remove_base_bdev", json!({"name": "ph"}))
        .await;
    let _ = raids(s, a).await;
    s.call(a, "bdev_get_bdevs", json!({"name": "rn"})).await;
    let data = pattern(6, 128 << 10);
    write(s, a, "rn", 0, &data).await;
    let got = read(s, a, "lvs/m3", 0, 128 << 10).await;
    same(
        s,
        a,
        "the one real member holds the write",
        got.as_deref(),
        &data,
    );
    s.ok(a, "bdev_null_delete", json!({"name": "ph"})).await;
    s.call(a, "bdev_null_delete", json!({"name": "ph"})).await;
    s.ok(a, "bdev_raid_delete", json!({"name": "rn"})).await;
}

/// A raid1 over a local lvol and B's lvol over NVMe/TCP, as publish builds it.
pub async fn raid_over_nvme(s: &mut Side) {
    s.step("setup");
    bootstrap(s, Node::A).await;
    bootstrap(s, Node::B).await;
    lvol(s, Node::A, "l1", 16, true).await;
    lvol(s, Node::B, "r1", 16, true).await;
    export(s, Node::B, NQN, "lvs/r1", HOST_A).await;
    attach(s, "r1", NQN, HOST_A).await;
    s.step("raid");
    s.ok(
        Node::A,
        "bdev_raid_create",
        raid1("vol", &["lvs/l1", "r1n1"], false),
    )
    .await;
    let _ = raids(s, Node::A).await;
    let data = pattern(7, 512 << 10);
    write(s, Node::A, "vol", 3 << 20, &data).await;
    let got = read(s, Node::A, "lvs/l1", 3 << 20, 512 << 10).await;
    same(s, Node::A, "local leg", got.as_deref(), &data);
    let got = read(s, Node::B, "lvs/r1", 3 << 20, 512 << 10).await;
    same(s, Node::B, "remote leg", got.as_deref(), &data);
    s.step("iostat");
    s.call(Node::A, "bdev_get_iostat", json!({"name": "vol"}))
        .await;
    s.call(Node::A, "bdev_get_iostat", json!({"name": "r1n1"}))
        .await;
    s.call(Node::B, "bdev_get_iostat", json!({"name": "lvs/r1"}))
        .await;
    s.call(Node::A, "bdev_get_iostat", json!({"name": "nosuch"}))
        .await;
    s.step("teardown");
    s.ok(Node::A, "bdev_raid_delete", json!({"name": "vol"}))
        .await;
    s.ok(
        Node::A,
        "bdev_nvme_detach_controller",
        json!({"name": "r1"}),
    )
    .await;
    s.ok(Node::B, "nvmf_delete_subsystem", json!({"nqn": NQN}))
        .await;
    s.call(Node::B, "bdev_get_bdevs", json!({"name": "lvs/r1"}))
        .await;
}

/// Shallow copy of a snapshot into B's lvol over NVMe/TCP, and set_parent.
pub async fn shallow_copy(s: &mut Side) {
    s.step("setup");
    bootstrap(s, Node::A).await;
    bootstrap(s, Node::B).await;
    lvol(s, Node::A, "src", 16, true).await;
    lvol(s, Node::B, "dst", 16, true).await;
    export(s, Node::B, NQN, "lvs/dst", HOST_A).await;
    attach(s, "dst", NQN, HOST_A).await;
    let data = pattern(8, 1 << 20);
    write(s, Node::A, "lvs/src", 4 << 20, &data).await;
    s.step("errors");
    s.call(
        Node::A,
        "bdev_lvol_start_shallow_copy",
        json!({"src_lvol_name": "lvs/src", "dst_bdev_name": "dstn1"}),
    )
    .await;
    s.call(
        Node::A,
        "bdev_lvol_start_shallow_copy",
        json!({"src_lvol_name": "lvs/src", "dst_bdev_name": "nosuch"}),
    )
    .await;
    s.call(
        Node::A,
        "bdev_lvol_check_shallow_copy",
        json!({"operation_id": 9999}),
    )
    .await;
    s.step("copy");
    s.ok(
        Node::A,
        "bdev_lvol_snapshot",
        json!({"lvol_name": "lvs/src", "snapshot_name": "snap"}),
    )
    .await;
    let op = s
        .ok(
            Node::A,
            "bdev_lvol_start_shallow_copy",
            json!({"src_lvol_name": "lvs/snap", "dst_bdev_name": "dstn1"}),
        )
        .await;
    let id = op["operation_id"].clone();
    let _ = s
        .settle(
            Node::A,
            "bdev_lvol_check_shallow_copy",
            json!({"operation_id": id}),
            SETTLE,
            |a| a.as_ref().ok().is_some_and(|v| v["state"] != "in progress"),
        )
        .await;
    s.call(
        Node::A,
        "bdev_lvol_check_shallow_copy",
        json!({"operation_id": id}),
    )
    .await;
    s.ok(
        Node::A,
        "bdev_nvme_detach_controller",
        json!({"name": "dst"}),
    )
    .await;
    s.ok(Node::B, "nvmf_delete_subsystem", json!({"nqn": NQN}))
        .await;
    let got = read(s, Node::B, "lvs/dst", 4 << 20, 1 << 20).await;
    same(
        s,
        Node::B,
        "copy holds the snapshot's data",
        got.as_deref(),
        &data,
    );
    s.call(Node::B, "bdev_get_bdevs", json!({"name": "lvs/dst"}))
        .await;
    s.step("set_parent");
    lvol(s, Node::B, "base", 16, true).await;
    s.ok(
        Node::B,
        "bdev_lvol_snapshot",
        json!({"lvol_name": "lvs/base", "snapshot_name": "bsnap"}),
    )
    .await;
    s.ok(
        Node::B,
        "bdev_lvol_set_parent",
        json!({"lvol_name": "lvs/dst", "parent_name": "lvs/bsnap"}),
    )
    .await;
    s.call(
        Node::B,
        "bdev_lvol_set_parent",
        json!({"lvol_name": "lvs/dst", "parent_name": "lvs/base"}),
    )
    .await;
    s.call(
        Node::B,
        "bdev_lvol_set_parent",
        json!({"lvol_name": "lvs/dst", "parent_name": "lvs/nosuch"}),
    )
    .await;
    s.call(Node::B, "bdev_get_bdevs", json!({"name": "lvs/dst"}))
        .await;
    s.call(Node::B, "bdev_get_bdevs", json!({"name": "lvs/bsnap"}))
        .await;
    let got = read(s, Node::B, "lvs/dst", 4 << 20, 1 << 20).await;
    same(
        s,
        Node::B,
        "set_parent keeps the copied data",
        got.as_deref(),
        &data,
    );
}

/// After `kill -9`, re-creating the base bdev brings the lvstore, its lvols
/// and a superblock raid (reassembled, degraded) back by examine.
pub async fn restart_engine(s: &mut Side) {
    let a = Node::A;
    s.step("setup");
    bootstrap(s, a).await;
    lvol(s, a, "m1", 16, true).await;
    lvol(s, a, "m2", 16, true).await;
    s.ok(
        a,
        "bdev_raid_create",
        raid1("rs", &["lvs/m1", "lvs/m2"], true),
    )
    .await;
    let data = pattern(9, 256 << 10);
    write(s, a, "rs", 1 << 20, &data).await;
    s.ok(a, "bdev_raid_remove_base_bdev", json!({"name": "lvs/m2"}))
        .await;
    let later = pattern(10, 64 << 10);
    write(s, a, "rs", 6 << 20, &later).await;
    let _ = raids(s, a).await;
    s.step("restart");
    s.crash_and_restart(a);
    s.call(a, "bdev_get_bdevs", Value::Null).await;
    s.call(a, "bdev_lvol_get_lvstores", Value::Null).await;
    let aio = s.aio(a);
    s.ok(
        a,
        "bdev_aio_create",
        json!({"name": "aio0", "filename": aio, "block_size": 4096}),
    )
    .await;
    s.ok(a, "bdev_wait_for_examine", Value::Null).await;
    s.step("examined");
    s.call(a, "bdev_lvol_get_lvstores", Value::Null).await;
    s.call(a, "bdev_lvol_get_lvols", json!({"lvs_name": LVS}))
        .await;
    let _ = raids(s, a).await;
    s.call(a, "bdev_get_bdevs", json!({"name": "rs"})).await;
    s.call(a, "bdev_get_bdevs", json!({"name": "lvs/m2"})).await;
    let got = read(s, a, "rs", 1 << 20, 256 << 10).await;
    same(s, a, "reassembled raid keeps data", got.as_deref(), &data);
    let got = read(s, a, "rs", 6 << 20, 64 << 10).await;
    same(
        s,
        a,
        "reassembled raid keeps the degraded write",
        got.as_deref(),
        &later,
    );
    s.call(a, "nvmf_get_transports", Value::Null).await;
    s.ok(a, "bdev_raid_delete", json!({"name": "rs"})).await;
}

/// A replica node restarts under a superblock raid: examine on the replica
/// builds a configuring raid there that claims the lvol and blocks its
/// export until deleted.
pub async fn restart_replica(s: &mut Side) {
    s.step("setup");
    bootstrap(s, Node::A).await;
    bootstrap(s, Node::B).await;
    lvol(s, Node::A, "l1", 16, true).await;
    lvol(s, Node::B, "r1", 16, true).await;
    export(s, Node::B, NQN, "lvs/r1", HOST_A).await;
    attach(s, "r1", NQN, HOST_A).await;
    s.ok(
        Node::A,
        "bdev_raid_create",
        raid1("vol", &["lvs/l1", "r1n1"], true),
    )
    .await;
    let r = raids(s, Node::A).await;
    // Where the raid's data starts on the replica, as the raid reports it.
    let offset = r
        .ok()
        .and_then(|r| {
            r.pointer("/0/base_bdevs_list/1/data_offset")
                .and_then(Value::as_u64)
        })
        .unwrap_or(0)
        * 4096;
    let data = pattern(11, 128 << 10);
    write(s, Node::A, "vol", 0, &data).await;
    s.step("restart");
    s.crash_and_restart(Node::B);
    let aio = s.aio(Node::B);
    s.ok(
        Node::B,
        "bdev_aio_create",
        json!({"name": "aio0", "filename": aio, "block_size": 4096}),
    )
    .await;
    s.ok(Node::B, "bdev_wait_for_examine", Value::Null).await;
    s.step("examined");
    let _ = raids(s, Node::B).await;
    s.call(Node::B, "bdev_get_bdevs", json!({"name": "lvs/r1"}))
        .await;
    s.ok(Node::B, "nvmf_create_transport", json!({"trtype": "TCP"}))
        .await;
    s.ok(
        Node::B,
        "nvmf_create_subsystem",
        json!({"nqn": NQN, "allow_any_host": false, "ana_reporting": true, "max_namespaces": 1}),
    )
    .await;
    s.call(
        Node::B,
        "nvmf_subsystem_add_ns",
        json!({"nqn": NQN, "namespace": {"bdev_name": "lvs/r1"}}),
    )
    .await;
    s.step("release");
    s.ok(Node::B, "bdev_raid_delete", json!({"name": "vol"}))
        .await;
    s.call(Node::B, "bdev_get_bdevs", json!({"name": "lvs/r1"}))
        .await;
    s.ok(
        Node::B,
        "nvmf_subsystem_add_ns",
        json!({"nqn": NQN, "namespace": {"bdev_name": "lvs/r1"}}),
    )
    .await;
    s.ok(Node::B, "nvmf_delete_subsystem", json!({"nqn": NQN}))
        .await;
    let got = read(s, Node::B, "lvs/r1", offset, 128 << 10).await;
    same(
        s,
        Node::B,
        "replica data after its superblock",
        got.as_deref(),
        &data,
    );
    s.ok(Node::A, "bdev_raid_delete", json!({"name": "vol"}))
        .await;
}
