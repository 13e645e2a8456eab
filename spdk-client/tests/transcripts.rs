//! Checks the typed API against transcripts recorded from a real spdk_tgt
//! v25.09 (`/work/shared/spdk/transcripts`, or `$SPDK_TRANSCRIPTS_DIR`), and
//! against the recordings of real SPDK the differential conformance test
//! keeps (`spdk-sim/tests/differential/recorded`, same format; lines whose
//! method starts with `=` are the test's own observations and are skipped).
//!
//! For every recorded call of a supported method:
//! - a successful response decodes into the method's typed result, and the
//!   typed value re-serializes to the recorded values;
//! - its params decode into the params struct and serialize back to exactly
//!   the recorded params;
//! - every recorded error (of any method) maps to the expected [`ErrorKind`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use spdk_client::*;

fn transcripts_dir() -> PathBuf {
    std::env::var_os("SPDK_TRANSCRIPTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/work/shared/spdk/transcripts"))
}

/// One recorded JSON-RPC call.
struct Recorded {
    place: String,
    method: String,
    params: Value,
    outcome: Result<Value, (i32, String)>,
}

/// The differential test's recordings of real spdk_tgt v25.09.
fn differential_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../spdk-sim/tests/differential/recorded")
}

fn jsonl_files(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no transcripts in {}", dir.display());
    files
}

fn load() -> Vec<Recorded> {
    let mut files = jsonl_files(&transcripts_dir());
    files.extend(jsonl_files(&differential_dir()));
    let mut calls = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read transcript");
        for (index, line) in text.lines().enumerate() {
            let place = format!("{}:{}", file.display(), index + 1);
            let record: Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{place}: not JSON: {e}"));
            if record.get("note").is_some() {
                continue;
            }
            let Some(method) = record.get("method").and_then(Value::as_str) else {
                continue;
            };
            if method.starts_with('=') {
                continue;
            }
            let outcome = match (record.get("response"), record.get("error")) {
                (Some(response), _) => Ok(response.clone()),
                (None, Some(error)) => Err((
                    error["code"].as_i64().expect("error code") as i32,
                    error["message"].as_str().unwrap_or_default().to_owned(),
                )),
                (None, None) => panic!("{place}: call without response or error"),
            };
            calls.push(Recorded {
                place,
                method: method.to_owned(),
                params: record.get("params").cloned().unwrap_or(Value::Null),
                outcome,
            });
        }
    }
    calls
}

/// Params as they go on the wire: `{}` and `null` both mean "no params".
fn normalized(params: &Value) -> Option<Value> {
    match params {
        Value::Null => None,
        Value::Object(map) if map.is_empty() => None,
        other => Some(other.clone()),
    }
}

/// Decodes recorded params into `P` and checks they serialize back unchanged.
fn round_trip<P: DeserializeOwned + Serialize>(
    method: &str,
    recorded: &Value,
) -> Result<(), String> {
    let input = normalized(recorded).unwrap_or_else(|| Value::Object(Default::default()));
    let typed: P =
        serde_json::from_value(input).map_err(|e| format!("params do not decode: {e}"))?;
    let wire = wire_params(method, &typed).map_err(|e| e.to_string())?;
    if wire != normalized(recorded) {
        return Err(format!(
            "params round-trip changed them: recorded {recorded}, sent {}",
            wire.unwrap_or(Value::Null)
        ));
    }
    Ok(())
}

fn no_params(recorded: &Value) -> Result<(), String> {
    match normalized(recorded) {
        None => Ok(()),
        Some(p) => Err(format!("method takes no params but recorded {p}")),
    }
}

/// Is `v` what a missing field decodes to?
fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.values().all(is_empty),
    }
}

thread_local! {
    /// Typed result field paths (`method.result[].field`) seen in a recording.
    static PRESENT: std::cell::RefCell<BTreeSet<String>> = Default::default();
    /// Typed result field paths that a recording lacked.
    static ABSENT: std::cell::RefCell<BTreeSet<String>> = Default::default();
}

/// Every field of the typed value must equal the recorded field, or be
/// empty where the recording has none.
fn typed_matches(typed: &Value, recorded: &Value, path: &str) -> Result<(), String> {
    match (typed, recorded) {
        (Value::Object(t), Value::Object(r)) => {
            for (key, tv) in t {
                let sub = format!("{path}.{key}");
                match r.get(key) {
                    Some(rv) => {
                        PRESENT.with(|p| p.borrow_mut().insert(sub.clone()));
                        typed_matches(tv, rv, &sub)?
                    }
                    None if is_empty(tv) => {
                        ABSENT.with(|a| a.borrow_mut().insert(sub.clone()));
                    }
                    None => return Err(format!("{sub}: typed value {tv} not in recording")),
                }
            }
            Ok(())
        }
        (Value::Array(t), Value::Array(r)) if t.len() == r.len() => t
            .iter()
            .zip(r)
            .try_for_each(|(tv, rv)| typed_matches(tv, rv, &format!("{path}[]"))),
        (Value::Number(t), Value::Number(r)) if t.as_f64() == r.as_f64() => Ok(()),
        (t, r) if t == r => Ok(()),
        (t, r) => Err(format!("{path}: typed {t} != recorded {r}")),
    }
}

fn result<R: DeserializeOwned + Serialize>(response: &Value) -> Result<(), String> {
    let typed: R = serde_json::from_value(response.clone())
        .map_err(|e| format!("response does not decode: {e}"))?;
    let back = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
    typed_matches(&back, response, "")
}

/// Methods that answer `true`; the client turns that into `()`.
fn unit(response: &Value) -> Result<(), String> {
    match response {
        Value::Bool(true) => Ok(()),
        other => Err(format!("expected true, got {other}")),
    }
}

/// Checks one successful call of a supported method; `None` if unsupported.
fn check_success(method: &str, params: &Value, response: &Value) -> Option<Result<(), String>> {
    let p = params;
    let r = response;
    let checked = match method {
        "bdev_get_bdevs" => round_trip::<BdevGetBdevsParams>(method, p).and(result::<Vec<Bdev>>(r)),
        "bdev_aio_create" => round_trip::<BdevAioCreateParams>(method, p).and(result::<String>(r)),
        "bdev_aio_delete" => round_trip::<BdevAioDeleteParams>(method, p).and(unit(r)),
        "bdev_malloc_create" => {
            round_trip::<BdevMallocCreateParams>(method, p).and(result::<String>(r))
        }
        "bdev_malloc_delete" => round_trip::<BdevMallocDeleteParams>(method, p).and(unit(r)),
        "bdev_wait_for_examine" => no_params(p).and(unit(r)),
        "bdev_enable_histogram" => round_trip::<BdevEnableHistogramParams>(method, p).and(unit(r)),
        "bdev_get_histogram" => {
            round_trip::<BdevGetHistogramParams>(method, p).and(result::<BdevHistogram>(r))
        }
        "bdev_get_iostat" => {
            round_trip::<BdevGetIostatParams>(method, p).and(result::<BdevIostat>(r))
        }
        "bdev_lvol_create_lvstore" => {
            round_trip::<BdevLvolCreateLvstoreParams>(method, p).and(result::<String>(r))
        }
        "bdev_lvol_get_lvstores" => {
            round_trip::<BdevLvolGetLvstoresParams>(method, p).and(result::<Vec<Lvstore>>(r))
        }
        "bdev_lvol_create" => {
            round_trip::<BdevLvolCreateParams>(method, p).and(result::<String>(r))
        }
        "bdev_lvol_delete" => round_trip::<BdevLvolDeleteParams>(method, p).and(unit(r)),
        "bdev_lvol_resize" => round_trip::<BdevLvolResizeParams>(method, p).and(unit(r)),
        "bdev_lvol_rename" => round_trip::<BdevLvolRenameParams>(method, p).and(unit(r)),
        "bdev_lvol_snapshot" => {
            round_trip::<BdevLvolSnapshotParams>(method, p).and(result::<String>(r))
        }
        "bdev_lvol_clone" => round_trip::<BdevLvolCloneParams>(method, p).and(result::<String>(r)),
        "bdev_lvol_get_lvols" => {
            round_trip::<BdevLvolGetLvolsParams>(method, p).and(result::<Vec<Lvol>>(r))
        }
        "bdev_lvol_inflate" => round_trip::<BdevLvolInflateParams>(method, p).and(unit(r)),
        "bdev_lvol_decouple_parent" => {
            round_trip::<BdevLvolDecoupleParentParams>(method, p).and(unit(r))
        }
        "bdev_lvol_set_read_only" => {
            round_trip::<BdevLvolSetReadOnlyParams>(method, p).and(unit(r))
        }
        "bdev_lvol_start_shallow_copy" => round_trip::<BdevLvolStartShallowCopyParams>(method, p)
            .and(result::<ShallowCopyOperation>(r)),
        "bdev_lvol_check_shallow_copy" => round_trip::<BdevLvolCheckShallowCopyParams>(method, p)
            .and(result::<ShallowCopyStatus>(r)),
        "bdev_lvol_set_parent" => round_trip::<BdevLvolSetParentParams>(method, p).and(unit(r)),
        "bdev_raid_create" => round_trip::<BdevRaidCreateParams>(method, p).and(unit(r)),
        "bdev_raid_delete" => round_trip::<BdevRaidDeleteParams>(method, p).and(unit(r)),
        "bdev_raid_get_bdevs" => {
            round_trip::<BdevRaidGetBdevsParams>(method, p).and(result::<Vec<RaidBdev>>(r))
        }
        "bdev_raid_add_base_bdev" => {
            round_trip::<BdevRaidAddBaseBdevParams>(method, p).and(unit(r))
        }
        "bdev_raid_remove_base_bdev" => {
            round_trip::<BdevRaidRemoveBaseBdevParams>(method, p).and(unit(r))
        }
        "bdev_raid_set_options" => round_trip::<BdevRaidSetOptionsParams>(method, p).and(unit(r)),
        "nvmf_create_transport" => round_trip::<NvmfCreateTransportParams>(method, p).and(unit(r)),
        "nvmf_get_transports" => {
            round_trip::<NvmfGetTransportsParams>(method, p).and(result::<Vec<NvmfTransport>>(r))
        }
        "nvmf_create_subsystem" => round_trip::<NvmfCreateSubsystemParams>(method, p).and(unit(r)),
        "nvmf_delete_subsystem" => round_trip::<NvmfDeleteSubsystemParams>(method, p).and(unit(r)),
        "nvmf_get_subsystems" => {
            round_trip::<NvmfGetSubsystemsParams>(method, p).and(result::<Vec<NvmfSubsystem>>(r))
        }
        "nvmf_subsystem_add_ns" => {
            round_trip::<NvmfSubsystemAddNsParams>(method, p).and(result::<u32>(r))
        }
        "nvmf_subsystem_remove_ns" => {
            round_trip::<NvmfSubsystemRemoveNsParams>(method, p).and(unit(r))
        }
        "nvmf_subsystem_add_listener" => {
            round_trip::<NvmfSubsystemAddListenerParams>(method, p).and(unit(r))
        }
        "nvmf_subsystem_remove_listener" => {
            round_trip::<NvmfSubsystemRemoveListenerParams>(method, p).and(unit(r))
        }
        "nvmf_subsystem_add_host" => {
            round_trip::<NvmfSubsystemAddHostParams>(method, p).and(unit(r))
        }
        "nvmf_subsystem_get_listeners" => round_trip::<NvmfSubsystemGetListenersParams>(method, p)
            .and(result::<Vec<NvmfListener>>(r)),
        "nvmf_subsystem_remove_host" => {
            round_trip::<NvmfSubsystemRemoveHostParams>(method, p).and(unit(r))
        }
        "nvmf_subsystem_allow_any_host" => {
            round_trip::<NvmfSubsystemAllowAnyHostParams>(method, p).and(unit(r))
        }
        "nvmf_subsystem_get_controllers" => {
            round_trip::<NvmfSubsystemGetControllersParams>(method, p)
                .and(result::<Vec<NvmfController>>(r))
        }
        "bdev_null_create" => {
            round_trip::<BdevNullCreateParams>(method, p).and(result::<String>(r))
        }
        "bdev_null_delete" => round_trip::<BdevNullDeleteParams>(method, p).and(unit(r)),
        "bdev_examine" => round_trip::<BdevExamineParams>(method, p).and(unit(r)),
        "nvmf_subsystem_listener_set_ana_state" => {
            round_trip::<NvmfSubsystemListenerSetAnaStateParams>(method, p).and(unit(r))
        }
        "nvmf_subsystem_set_ns_ana_group" => {
            round_trip::<NvmfSubsystemSetNsAnaGroupParams>(method, p).and(unit(r))
        }
        "bdev_nvme_attach_controller" => {
            round_trip::<BdevNvmeAttachControllerParams>(method, p).and(result::<Vec<String>>(r))
        }
        "bdev_nvme_detach_controller" => {
            round_trip::<BdevNvmeDetachControllerParams>(method, p).and(unit(r))
        }
        "bdev_nvme_get_controllers" => round_trip::<BdevNvmeGetControllersParams>(method, p)
            .and(result::<Vec<NvmeController>>(r)),
        "bdev_nvme_set_options" => round_trip::<BdevNvmeSetOptionsParams>(method, p).and(unit(r)),
        "ublk_create_target" => round_trip::<UblkCreateTargetParams>(method, p).and(unit(r)),
        "ublk_destroy_target" => no_params(p).and(unit(r)),
        "ublk_start_disk" => round_trip::<UblkStartDiskParams>(method, p).and(result::<u32>(r)),
        "ublk_stop_disk" => round_trip::<UblkStopDiskParams>(method, p).and(unit(r)),
        "ublk_get_disks" => {
            round_trip::<UblkGetDisksParams>(method, p).and(result::<Vec<UblkDisk>>(r))
        }
        "spdk_get_version" => no_params(p).and(result::<SpdkVersion>(r)),
        "rpc_get_methods" => {
            round_trip::<RpcGetMethodsParams>(method, p).and(result::<Vec<String>>(r))
        }
        _ => return None,
    };
    Some(checked)
}

/// Every method the client supports.
const SUPPORTED: &[&str] = &[
    "bdev_get_bdevs",
    "bdev_aio_create",
    "bdev_aio_delete",
    "bdev_malloc_create",
    "bdev_malloc_delete",
    "bdev_wait_for_examine",
    "bdev_get_iostat",
    "bdev_enable_histogram",
    "bdev_get_histogram",
    "bdev_lvol_create_lvstore",
    "bdev_lvol_get_lvstores",
    "bdev_lvol_create",
    "bdev_lvol_delete",
    "bdev_lvol_resize",
    "bdev_lvol_rename",
    "bdev_lvol_snapshot",
    "bdev_lvol_clone",
    "bdev_lvol_get_lvols",
    "bdev_lvol_inflate",
    "bdev_lvol_decouple_parent",
    "bdev_lvol_set_read_only",
    "bdev_lvol_start_shallow_copy",
    "bdev_lvol_check_shallow_copy",
    "bdev_lvol_set_parent",
    "bdev_raid_create",
    "bdev_raid_delete",
    "bdev_raid_get_bdevs",
    "bdev_raid_add_base_bdev",
    "bdev_raid_remove_base_bdev",
    "bdev_raid_set_options",
    "nvmf_create_transport",
    "nvmf_get_transports",
    "nvmf_create_subsystem",
    "nvmf_delete_subsystem",
    "nvmf_get_subsystems",
    "nvmf_subsystem_add_ns",
    "nvmf_subsystem_remove_ns",
    "nvmf_subsystem_add_listener",
    "nvmf_subsystem_remove_listener",
    "nvmf_subsystem_add_host",
    "nvmf_subsystem_get_listeners",
    "nvmf_subsystem_remove_host",
    "nvmf_subsystem_allow_any_host",
    "nvmf_subsystem_get_controllers",
    "bdev_null_create",
    "bdev_null_delete",
    "bdev_examine",
    "nvmf_subsystem_listener_set_ana_state",
    "nvmf_subsystem_set_ns_ana_group",
    "bdev_nvme_attach_controller",
    "bdev_nvme_detach_controller",
    "bdev_nvme_get_controllers",
    "bdev_nvme_set_options",
    "ublk_create_target",
    "ublk_destroy_target",
    "ublk_start_disk",
    "ublk_stop_disk",
    "ublk_get_disks",
    "spdk_get_version",
    "rpc_get_methods",
];

/// Supported methods with no successful call in the transcripts, with a
/// request and response taken from SPDK's doc/jsonrpc.md examples.
fn doc_samples() -> Vec<(&'static str, Value, Value)> {
    use serde_json::json;
    vec![
        (
            "bdev_nvme_set_options",
            json!({"transport_retry_count": 5, "timeout_us": 10000000, "timeout_admin_us": 20000000,
                   "keep_alive_timeout_ms": 600000, "action_on_timeout": "reset"}),
            json!(true),
        ),
        ("bdev_aio_delete", json!({"name": "Aio0"}), json!(true)),
        ("ublk_create_target", json!({"cpumask": "0x2"}), json!(true)),
        ("ublk_destroy_target", Value::Null, json!(true)),
        (
            "ublk_start_disk",
            json!({"ublk_id": 1, "bdev_name": "Malloc1"}),
            json!(1),
        ),
        ("ublk_stop_disk", json!({"ublk_id": 1}), json!(true)),
        (
            "bdev_enable_histogram",
            json!({"name": "Nvme0n1", "enable": true, "opc": "read", "granularity": 7,
                   "min_nsec": 1000, "max_nsec": 1000000000}),
            json!(true),
        ),
        // The doc trims the base64; a real answer has 8 bytes per bucket.
        (
            "bdev_get_histogram",
            json!({"name": "Nvme0n1"}),
            json!({"histogram": "AAAAAAAAAAA=", "granularity": 7, "min_range": 5,
                   "max_range": 25, "tsc_rate": 2300000000u64}),
        ),
        // spdk_tgt runs with auto-examine on, where a manual examine is refused.
        ("bdev_examine", json!({"name": "Nvme0n1"}), json!(true)),
    ]
}

/// Result fields SPDK sends only in cases the transcripts do not record.
const NEVER_RECORDED_FIELDS: &[&str] = &[
    // Per-bdev and per-channel entries share one struct.
    "bdev_get_iostat.bdevs[].thread_id",
    "bdev_get_iostat.channels[].io_error",
    "bdev_get_iostat.channels[].name",
];

#[test]
fn recorded_successes_decode_and_params_round_trip() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for call in load() {
        let Ok(response) = &call.outcome else {
            continue;
        };
        let before: BTreeSet<String> = PRESENT.with(|p| p.borrow().clone());
        let outcome = check_success(&call.method, &call.params, response);
        // Prefix this call's new field paths with the method name.
        for cell in [&PRESENT, &ABSENT] {
            cell.with(|set| {
                let mut set = set.borrow_mut();
                let fresh: Vec<String> = set
                    .iter()
                    .filter(|k| k.starts_with('.') || k.starts_with('['))
                    .filter(|k| !before.contains(*k))
                    .cloned()
                    .collect();
                for key in fresh {
                    set.remove(&key);
                    set.insert(format!("{}{key}", call.method));
                }
            });
        }
        if let Some(outcome) = outcome {
            checked += 1;
            if let Err(why) = outcome {
                failures.push(format!("{} {}: {why}", call.place, call.method));
            }
        }
    }
    assert!(checked > 100, "only {checked} recorded calls checked");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // A typed field never present in any recording is probably misnamed,
    // unless it is one SPDK only sends in situations not recorded.
    let present = PRESENT.with(|p| p.borrow().clone());
    let never: BTreeSet<String> = ABSENT
        .with(|a| a.borrow().clone())
        .into_iter()
        .filter(|k| !present.contains(k))
        .collect();
    let allowed: BTreeSet<String> = NEVER_RECORDED_FIELDS
        .iter()
        .map(|s| s.to_string())
        .collect();
    let unexpected: Vec<&String> = never.difference(&allowed).collect();
    assert!(
        unexpected.is_empty(),
        "typed fields never seen in a recording: {unexpected:#?}"
    );
}

#[test]
fn every_supported_method_is_covered() {
    let recorded: BTreeSet<String> = load()
        .into_iter()
        .filter(|c| c.outcome.is_ok())
        .map(|c| c.method)
        .collect();
    let samples: BTreeSet<&str> = doc_samples().iter().map(|(m, _, _)| *m).collect();
    let uncovered: Vec<&str> = SUPPORTED
        .iter()
        .copied()
        .filter(|m| !recorded.contains(*m) && !samples.contains(m))
        .collect();
    assert!(
        uncovered.is_empty(),
        "no successful transcript line and no doc sample for {uncovered:?}"
    );
    for method in SUPPORTED {
        assert!(
            check_success(method, &Value::Null, &Value::Null).is_some(),
            "{method}: not handled by check_success"
        );
    }
    for sample in &samples {
        assert!(
            !recorded.contains(*sample),
            "{sample} is recorded now; drop its doc sample"
        );
    }
}

#[test]
fn doc_samples_decode_and_round_trip() {
    for (method, params, response) in doc_samples() {
        let outcome = check_success(method, &params, &response).expect("supported method");
        assert!(outcome.is_ok(), "{method}: {}", outcome.unwrap_err());
    }
}

/// What each recorded (code, message) must mean.
fn expected_kinds() -> BTreeMap<(i32, &'static str), ErrorKind> {
    use ErrorKind::*;
    [
        ((-32601, "Method not found"), MethodNotFound),
        ((-32600, "Invalid request"), InvalidRequest),
        ((-19, "No such device"), NotFound),
        ((-32602, "No such device"), NotFound),
        ((-19, "raid bdev r_bad3 not found"), NotFound),
        ((-19, "raid bdev nosuch not found"), NotFound),
        ((-19, "raid bdev r2 not found"), NotFound),
        ((-19, "raid bdev nosuch is not found in config"), NotFound),
        ((-19, "Failed to remove base bdev from raid bdev"), NotFound),
        ((-2, "No such file or directory"), NotFound),
        ((-32603, "No such file or directory"), NotFound),
        ((-17, "File exists"), AlreadyExists),
        ((-32602, "File exists"), AlreadyExists),
        ((-32602, "No space left on device"), NoSpace),
        ((-22, "Invalid argument"), InvalidArgument),
        ((-32602, "Invalid argument"), InvalidArgument),
        ((-22, "Failed to add base bdev nvCn1 to RAID bdev r1: Invalid argument"), InvalidArgument),
        ((-1, "Operation not permitted"), NotPermitted),
        ((-32602, "Operation not permitted"), NotPermitted),
        ((-32603, "Operation not permitted"), NotPermitted),
        ((-1, "Failed to create RAID bdev r_bad3: Operation not permitted"), NotPermitted),
        ((-1, "RPC not enabled if enable_io_path_stat is false"), NotPermitted),
        ((-1, "Method may only be called before framework is initialized. Use --wait-for-rpc command line parameter and then issue this RPC before the framework_start_init RPC."), NotPermitted),
        ((-32603, "spdk_json_decode_object failed"), InvalidParams),
        ((-32700, "spdk_json_decode_object failed"), InvalidParams),
        ((-32602, "Invalid parameters"), InvalidParams),
        ((-95, "Operation not supported"), NotSupported),
        ((-5, "Input/output error"), Io),
        ((-110, "Connection timed out"), TimedOut),
        ((-32603, "Unable to create subsystem not-an-nqn"), Other),
        ((-32603, "Failed to create transport."), Other),
        ((-32603, "error setting ANA state: -22"), InvalidArgument),
        ((-114, "A controller named r1 already exists with the specified network path"), AlreadyExists),
        ((-32603, "Transport type 'TCP' already exists"), AlreadyExists),
        ((-32603, "Unable to create subsystem nqn.2016-06.io.shorthorn:vol-1-r"), Other),
        ((-32603, "Internal error"), Other),
        ((-22, "Failed to create RAID bdev r: Invalid argument"), InvalidArgument),
        ((-17, "Failed to create RAID bdev r: File exists"), AlreadyExists),
        ((-22, "Failed to add base bdev lvs/m3 to RAID bdev r: Invalid argument"), InvalidArgument),
        ((-19, "raid bdev r not found"), NotFound),
    ]
    .into_iter()
    .collect()
}

#[test]
fn recorded_errors_classify_as_expected() {
    let table = expected_kinds();
    let mut failures = Vec::new();
    let mut seen = BTreeSet::new();
    for call in load() {
        let Err((code, message)) = &call.outcome else {
            continue;
        };
        let Some(expected) = table.get(&(*code, message.as_str())) else {
            failures.push(format!(
                "{} {}: ({code}, {message:?}) missing from the expected table",
                call.place, call.method
            ));
            continue;
        };
        seen.insert((*code, message.clone()));
        let error = SpdkError::rpc(*code, message.clone());
        if error.kind() != Some(*expected) {
            failures.push(format!(
                "{} {}: ({code}, {message:?}) classified {:?}, expected {expected:?}",
                call.place,
                call.method,
                error.kind()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(
        seen.len(),
        table.len(),
        "expected table has entries never recorded"
    );
}

#[test]
fn predicates_follow_the_kind() {
    let exists = SpdkError::rpc(-32602, "File exists");
    assert!(exists.is_already_exists() && !exists.is_not_found());
    assert!(SpdkError::rpc(-32602, "No space left on device").is_no_space());
    assert!(SpdkError::rpc(-32603, "Operation not permitted").is_not_permitted());
    assert!(SpdkError::rpc(-32602, "Invalid argument").is_invalid_argument());
    assert!(SpdkError::rpc(-19, "No such device").is_not_found());
    assert!(SpdkError::rpc(-32601, "Method not found").is_method_not_found());
    assert!(SpdkError::rpc(-32602, "Invalid parameters").is_invalid_params());
    assert!(SpdkError::rpc(-16, "Device or resource busy").is_busy());
    assert!(!SpdkError::Timeout.is_not_found() && SpdkError::Timeout.is_timeout());
}

/// The decoded values that callers branch on, from specific recordings.
#[test]
fn decoded_fields_carry_recorded_meaning() {
    let calls = load();
    let successes = |method: &str| -> Vec<Value> {
        calls
            .iter()
            .filter(|c| c.method == method)
            .filter_map(|c| c.outcome.clone().ok())
            .collect()
    };

    let bdevs: Vec<Bdev> = successes("bdev_get_bdevs")
        .into_iter()
        .flat_map(|v| serde_json::from_value::<Vec<Bdev>>(v).expect("bdevs"))
        .collect();
    let snapshot = bdevs
        .iter()
        .filter_map(|b| b.driver_specific.lvol.as_ref())
        .find(|l| l.snapshot && !l.clones.is_empty())
        .expect("a snapshot with clones is recorded");
    assert!(snapshot.thin_provision || snapshot.num_allocated_clusters > 0);
    assert!(bdevs
        .iter()
        .filter_map(|b| b.driver_specific.lvol.as_ref())
        .any(|l| l.clone && l.base_snapshot.is_some()));
    assert!(bdevs
        .iter()
        .filter_map(|b| b.driver_specific.lvol.as_ref())
        .any(|l| l.esnap_clone && l.external_snapshot_name.is_some()));
    assert!(bdevs
        .iter()
        .filter_map(|b| b.driver_specific.nvme.as_ref())
        .flatten()
        .any(|n| n.trid.trtype == "TCP" && n.ctrlr_data.cntlid > 0));
    let lvol_bdev = bdevs
        .iter()
        .find(|b| b.driver_specific.lvol.is_some())
        .expect("an lvol bdev");
    assert!(lvol_bdev.aliases.iter().any(|a| a.contains('/')));
    assert!(lvol_bdev.size_bytes() > 0);

    let raids: Vec<RaidBdev> = successes("bdev_raid_get_bdevs")
        .into_iter()
        .flat_map(|v| serde_json::from_value::<Vec<RaidBdev>>(v).expect("raids"))
        .collect();
    assert!(raids.iter().any(|r| r.state == RaidState::Configuring));
    assert!(raids.iter().any(|r| r.state == RaidState::Online));
    assert!(raids
        .iter()
        .filter_map(|r| r.process.as_ref())
        .any(|p| p.process_type == "rebuild" && !p.target.is_empty()));
    assert!(
        raids
            .iter()
            .flat_map(|r| &r.base_bdevs_list)
            .any(|b| b.name.is_none()),
        "an emptied raid slot decodes with no name"
    );

    let states: BTreeSet<String> = successes("bdev_lvol_check_shallow_copy")
        .into_iter()
        .map(|v| serde_json::from_value::<ShallowCopyStatus>(v).expect("status"))
        .map(|s| format!("{:?}", s.state))
        .collect();
    for state in ["InProgress", "Complete", "Error"] {
        assert!(states.contains(state), "{state} in {states:?}");
    }

    let version: SpdkVersion =
        serde_json::from_value(successes("spdk_get_version").remove(0)).expect("version");
    assert_eq!((version.fields.major, version.fields.minor), (25, 9));
}
