//! The network-side answers have the shapes a real spdk_tgt v25.09 gave in
//! `d_nvmf_raid1` (same keys, same value types, recursively).

mod net_common;

use std::path::PathBuf;

use net_common::*;
use serde_json::{json, Value};

fn transcripts_dir() -> PathBuf {
    std::env::var_os("SPDK_TRANSCRIPTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/work/shared/spdk/transcripts"))
}

/// The first recorded response of `method` (with these params, if given).
fn recorded(method: &str, params: Option<Value>) -> Value {
    let path = transcripts_dir().join("d_nvmf_raid1.jsonl");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("jsonl"))
        .find(|o| o["method"] == method && params.as_ref().is_none_or(|p| &o["params"] == p))
        .and_then(|o| o.get("response").cloned())
        .unwrap_or_else(|| panic!("no recorded {method}"))
}

/// Asserts `got` has the same structure as `want`: same object keys and
/// JSON types, recursively (arrays compared through their first element).
fn same_shape(path: &str, want: &Value, got: &Value) {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            let wk: Vec<&String> = w.keys().collect();
            let gk: Vec<&String> = g.keys().collect();
            assert_eq!(wk, gk, "keys differ at {path}");
            for (k, wv) in w {
                same_shape(&format!("{path}.{k}"), wv, &g[k]);
            }
        }
        (Value::Array(w), Value::Array(g)) => {
            if let (Some(w0), Some(g0)) = (w.first(), g.first()) {
                same_shape(&format!("{path}[0]"), w0, g0);
            }
        }
        (Value::Number(_), Value::Number(_))
        | (Value::String(_), Value::String(_))
        | (Value::Bool(_), Value::Bool(_))
        | (Value::Null, Value::Null) => {}
        _ => panic!("type differs at {path}: recorded {want}, sim {got}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d_nvmf_raid1_shapes() {
    let a = TestSim::new();
    let b = TestSim::new();
    let port = free_port();
    let nqn = "nqn.2016-06.io.spdk:rep-b";
    b.malloc("mB", 16).await;
    b.ok("nvmf_create_transport", json!({"trtype": "TCP"}))
        .await;
    same_shape(
        "transports",
        &recorded("nvmf_get_transports", None),
        &b.ok("nvmf_get_transports", json!(null)).await,
    );
    b.export_with(json!({"nqn": nqn, "allow_any_host": true, "serial_number": "SPDKREPB", "model_number": "SPDK lvol replica"}), "mB", port)
        .await;
    let want = recorded("nvmf_get_subsystems", None);
    let got = b.ok("nvmf_get_subsystems", json!(null)).await;
    same_shape("subsystems[0]", &want[0], &got[0]);
    same_shape("subsystems[1]", &want[1], &got[1]);
    same_shape(
        "listeners",
        &recorded("nvmf_subsystem_get_listeners", None),
        &b.ok("nvmf_subsystem_get_listeners", json!({"nqn": nqn}))
            .await,
    );

    a.malloc("mA", 16).await;
    a.ok(
        "bdev_nvme_attach_controller",
        attach_params("nvB", nqn, port),
    )
    .await;
    same_shape(
        "controllers",
        &recorded("bdev_nvme_get_controllers", None),
        &a.ok("bdev_nvme_get_controllers", json!(null)).await,
    );
    same_shape(
        "target controllers",
        &recorded("nvmf_subsystem_get_controllers", None),
        &b.ok("nvmf_subsystem_get_controllers", json!({"nqn": nqn}))
            .await,
    );
    same_shape(
        "qpairs",
        &recorded("nvmf_subsystem_get_qpairs", None),
        &b.ok("nvmf_subsystem_get_qpairs", json!({"nqn": nqn})).await,
    );
    same_shape(
        "nvme bdev",
        &recorded("bdev_get_bdevs", Some(json!({"name": "nvBn1"}))),
        &a.ok("bdev_get_bdevs", json!({"name": "nvBn1"})).await,
    );

    a.ok(
        "bdev_raid_create",
        json!({"name": "r1", "raid_level": "raid1", "base_bdevs": ["mA", "nvBn1"], "superblock": false}),
    )
    .await;
    same_shape(
        "raid",
        &recorded("bdev_raid_get_bdevs", Some(json!({"category": "all"}))),
        &a.ok("bdev_raid_get_bdevs", json!({"category": "all"}))
            .await,
    );
    same_shape(
        "raid bdev",
        &recorded("bdev_get_bdevs", Some(json!({"name": "r1"}))),
        &a.ok("bdev_get_bdevs", json!({"name": "r1"})).await,
    );
}
