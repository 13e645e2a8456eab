//! Differential conformance: every SPDK call sequence the controller depends
//! on runs against the sim and against real spdk_tgt, and the answers are
//! compared (result shapes, error codes and messages, and the bytes read
//! back). A difference is a sim bug.
//!
//! - The sim side always runs. With `SHORTHORN_SPDK_TGT` set, the same
//!   scenario runs on real SPDK (A: a polling `spdk_tgt`, B: `nvmf_tgt
//!   --interrupt-mode`) and the two are compared live. Without it, the sim is
//!   compared against the last recording of real SPDK in
//!   `tests/differential/recorded/<scenario>.jsonl` (the transcript format of
//!   `shared/spdk/transcripts`, with paths and ports as tokens).
//! - `SHORTHORN_RECORD_CONFORMANCE=1` (with `SHORTHORN_SPDK_TGT`) rewrites
//!   the recordings.
//! - `SHORTHORN_CONFORMANCE_DUMP=<dir>` writes the sim's side of each
//!   scenario there, in the same format.
//! - What is not compared: ids (numbered instead), list order, and clocks and
//!   latencies (`compare::MASKED`). Timing the sim does not reproduce
//!   (reconnects, rebuild progress, shallow copy progress) is compared only
//!   once settled (`Side::settle`).
//!
//! Rerun: `SHORTHORN_SPDK_TGT=/work/shared/spdk/bin/spdk_tgt cargo test -p spdk-sim --test differential`

#[path = "differential/compare.rs"]
mod compare;
#[path = "differential/harness.rs"]
mod harness;
#[path = "differential/scenarios.rs"]
mod scenarios;

use std::path::PathBuf;

use compare::{differences, normalized, tokenized};
use harness::{Entry, Side};
use serde_json::Value;
use testkit::nodes::Flavor;
use testkit::spdk_env::{skip_message, RealSpdk};

/// A directory to write the sim's log of each scenario into (for debugging).
const DUMP_ENV: &str = "SHORTHORN_CONFORMANCE_DUMP";

/// Set to rewrite the recordings from real SPDK.
const RECORD_ENV: &str = "SHORTHORN_RECORD_CONFORMANCE";

fn recording(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/differential/recorded")
        .join(format!("{name}.jsonl"))
}

fn read_recording(name: &str) -> Vec<Value> {
    let path = recording(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "no recording of real SPDK at {} ({e}): record it with {RECORD_ENV}=1 SHORTHORN_SPDK_TGT=... \
             cargo test -p spdk-sim --test differential",
            path.display()
        )
    });
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("recording line is JSON"))
        .collect()
}

fn write_recording(name: &str, lines: &[Value]) {
    let path = recording(name);
    std::fs::create_dir_all(path.parent().expect("dir")).expect("create dir");
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&path, text).expect("write recording");
    eprintln!("recorded {}", path.display());
}

fn check(name: &str, against: &str, sim: &[Value], real: &[Value]) {
    let diffs = differences(&normalized(sim), &normalized(real));
    assert!(
        diffs.is_empty(),
        "{name}: the sim differs from {against} in {} places:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}

macro_rules! differential {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let name = stringify!($name);
            let sim_lines = {
                let mut sim = Side::start(Flavor::sim().expect("sim")).await;
                scenarios::$name(&mut sim).await;
                tokenized(&sim.log, &sim.tokens())
            };
            if let Some(dir) = std::env::var_os(DUMP_ENV) {
                let path = PathBuf::from(dir).join(format!("{name}.sim.jsonl"));
                let text: String = sim_lines.iter().map(|l| format!("{l}\n")).collect();
                std::fs::write(&path, text).expect("write the sim's log");
            }
            match RealSpdk::from_env().expect("SHORTHORN_SPDK_TGT") {
                Some(real) => {
                    let mut side = Side::start(Flavor::Real(real)).await;
                    scenarios::$name(&mut side).await;
                    let real_lines = tokenized(&side.log, &side.tokens());
                    drop(side);
                    if std::env::var_os(RECORD_ENV).is_some() {
                        write_recording(name, &real_lines);
                    }
                    check(name, "real SPDK", &sim_lines, &real_lines);
                }
                None => {
                    eprintln!("{}", skip_message(&format!("{name} (real side)")));
                    eprintln!("{name}: comparing the sim with {}", recording(name).display());
                    check(name, "the recording of real SPDK", &sim_lines, &read_recording(name));
                }
            }
        }
    )*};
}

differential!(
    bootstrap_node,
    lvols,
    exports,
    ana,
    attach_detach,
    raid,
    raid_over_nvme,
    shallow_copy,
    restart_engine,
    restart_replica,
);

/// The recordings decode as entries (the transcript format the other tests read).
#[test]
fn recordings_are_transcripts() {
    let dir = recording("x");
    let dir = dir.parent().expect("dir");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries {
        let path = e.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read");
        for line in text.lines() {
            let v: Value = serde_json::from_str(line).expect("JSON line");
            let entry = Entry::from_line(&v);
            assert!(!entry.method.is_empty(), "{}: {line}", path.display());
        }
    }
}
