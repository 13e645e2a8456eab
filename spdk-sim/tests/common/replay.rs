//! Replays recorded spdk_tgt transcripts against a sim process and checks
//! that every answer matches: same error code and message, or a result of
//! the same shape with the same stable values.
//!
//! Recorded identifiers (UUIDs, operation ids) are learnt from responses and
//! mapped to the sim's own; recorded paths under `/var/tmp/rec/` are moved
//! into a temp dir. Lines that need the network side (nvmf, nvme, raid,
//! ublk, nbd) or other recorded processes are skipped and reported.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use super::{pattern, SimProcess};

const REC_DIR: &str = "/var/tmp/rec/";

/// Replay state across transcript files (one simulated target "A").
pub struct Replayer {
    /// Temp dir holding the aio files and the process.
    pub dir: PathBuf,
    proc: SimProcess,
    ids: HashMap<String, String>,
    network_names: HashSet<String>,
    raid_bases: HashMap<String, Vec<String>>,
    tainted: bool,
    last_ns_bdev: Option<String>,
    lines: Vec<Value>,
    /// Why lines were skipped, with counts.
    pub skipped: BTreeMap<String, usize>,
    /// Lines checked.
    pub checked: usize,
    /// Mismatches found.
    pub failures: Vec<String>,
}

fn is_network(method: &str) -> bool {
    ["nvmf_", "bdev_nvme_", "bdev_raid_", "ublk_", "nbd_"]
        .iter()
        .any(|p| method.starts_with(p))
}

fn looks_like_uuid(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok() && s.len() == 36
}

/// Keys whose values are never compared (identifiers, clocks, paths).
fn volatile_key(k: &str) -> bool {
    k == "ticks"
        || k == "tick_rate"
        || k == "filename"
        || k.ends_with("latency_ticks")
        || k.starts_with("bytes_")
        || k.starts_with("num_") && k.ends_with("_ops")
}

impl Replayer {
    /// Starts a fresh sim process in `dir`.
    pub fn new(dir: &Path) -> Replayer {
        Replayer {
            dir: dir.to_path_buf(),
            proc: SimProcess::start(dir),
            ids: HashMap::new(),
            network_names: HashSet::new(),
            raid_bases: HashMap::new(),
            tainted: false,
            last_ns_bdev: None,
            lines: Vec::new(),
            skipped: BTreeMap::new(),
            checked: 0,
            failures: Vec::new(),
        }
    }

    /// `kill -9` the sim and start a new process on the same files.
    pub fn restart(&mut self) {
        self.proc.kill9();
        self.proc = SimProcess::start(&self.dir);
    }

    fn skip(&mut self, why: String) {
        *self.skipped.entry(why).or_default() += 1;
    }

    fn rewrite(&self, v: &Value) -> Value {
        match v {
            Value::String(s) => {
                if let Some(m) = self.ids.get(s) {
                    return json!(m);
                }
                if let Some(rest) = s.strip_prefix(REC_DIR) {
                    return json!(self.dir.join(rest).to_string_lossy());
                }
                v.clone()
            }
            Value::Array(a) => Value::Array(a.iter().map(|x| self.rewrite(x)).collect()),
            Value::Object(o) => Value::Object(
                o.iter()
                    .map(|(k, x)| {
                        let mapped = match (k.as_str(), x) {
                            ("operation_id", Value::Number(n)) => self
                                .ids
                                .get(&format!("#{n}"))
                                .and_then(|m| m.parse::<u64>().ok())
                                .map(|m| json!(m)),
                            _ => None,
                        };
                        (k.clone(), mapped.unwrap_or_else(|| self.rewrite(x)))
                    })
                    .collect(),
            ),
            _ => v.clone(),
        }
    }

    fn mentions_network(&self, v: &Value) -> bool {
        match v {
            Value::String(s) => self.network_names.contains(s),
            Value::Array(a) => a.iter().any(|x| self.mentions_network(x)),
            Value::Object(o) => o.values().any(|x| self.mentions_network(x)),
            _ => false,
        }
    }

    /// Size of bdev `name` as a later `bdev_get_bdevs` of the transcript shows it.
    fn lookahead_size(&self, from: usize, name: &str) -> Option<u64> {
        self.lines[from + 1..].iter().find_map(|l| {
            if l["method"] == "bdev_get_bdevs" && l["params"]["name"] == name {
                let b = l["response"].get(0)?;
                Some(b["num_blocks"].as_u64()? * b["block_size"].as_u64()?)
            } else {
                None
            }
        })
    }

    /// Replays one transcript file (only target "A" lines).
    pub fn replay_file(&mut self, path: &Path) {
        let text = std::fs::read_to_string(path).expect("read transcript");
        self.lines = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("transcript json"))
            .collect();
        let file = path
            .file_name()
            .map(|f| f.to_string_lossy().to_string())
            .unwrap_or_default();
        for i in 0..self.lines.len() {
            let line = self.lines[i].clone();
            if line.get("note").is_some() {
                self.note(&file, &line);
                continue;
            }
            let method = line["method"].as_str().unwrap_or("").to_string();
            if line["target"] != "A" {
                self.skip(format!(
                    "target {} (another recorded process)",
                    line["target"]
                ));
                continue;
            }
            if is_network(&method) {
                self.track_network(&method, &line);
                self.skip(format!("network method {method}"));
                continue;
            }
            if self.mentions_network(&line["params"]) {
                self.skip(format!("{method} on a network-side bdev"));
                continue;
            }
            let claimed_by_raid = line["params"]["name"]
                .as_str()
                .is_some_and(|n| self.raid_bases.values().flatten().any(|b| b == n));
            if method == "bdev_get_bdevs" && claimed_by_raid {
                self.skip("bdev_get_bdevs of a bdev claimed by a network-side raid".into());
                continue;
            }
            self.call(&file, i, &method, &line);
        }
    }

    fn track_network(&mut self, method: &str, line: &Value) {
        match method {
            "nvmf_subsystem_add_ns" => {
                self.last_ns_bdev = line["params"]["namespace"]["bdev_name"]
                    .as_str()
                    .map(String::from);
            }
            "bdev_raid_create" => {
                if let Some(n) = line["params"]["name"].as_str() {
                    self.network_names.insert(n.to_string());
                    let bases = line["params"]["base_bdevs"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|b| b.as_str().map(String::from))
                        .collect();
                    self.raid_bases.insert(n.to_string(), bases);
                }
                // Its base lvols get written through the raid: their
                // allocation counts no longer follow from this replay.
                self.tainted = true;
            }
            "bdev_raid_delete" => {
                if let Some(n) = line["params"]["name"].as_str() {
                    self.raid_bases.remove(n);
                }
            }
            "bdev_raid_add_base_bdev" => {
                if let (Some(r), Some(b)) = (
                    line["params"]["raid_bdev"].as_str(),
                    line["params"]["base_bdev"].as_str(),
                ) {
                    self.raid_bases
                        .entry(r.to_string())
                        .or_default()
                        .push(b.to_string());
                }
            }
            "bdev_nvme_attach_controller" => {
                if let Some(a) = line["response"].as_array() {
                    for n in a.iter().filter_map(Value::as_str) {
                        self.network_names.insert(n.to_string());
                    }
                }
            }
            _ => {}
        }
    }

    /// Notes: `spdk_dd` writes into an exported lvol are redone with
    /// `sim_bdev_write` (same size and offset, a pattern per input file).
    fn note(&mut self, file: &str, line: &Value) {
        let note = line["note"].as_str().unwrap_or("");
        if note != "spdk_dd run" {
            self.skip(format!(
                "note ({file}): {}",
                note.chars().take(60).collect::<String>()
            ));
            return;
        }
        let cmd: Vec<&str> = line["cmd"]
            .as_str()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        let arg = |k: &str| {
            cmd.iter()
                .position(|a| *a == k)
                .and_then(|p| cmd.get(p + 1))
                .copied()
        };
        let (Some(input), Some(_)) = (arg("--if"), arg("--ob")) else {
            self.skip("note: spdk_dd read-back (data checked by storage_* tests)".into());
            return;
        };
        let Some(bdev) = self.last_ns_bdev.clone() else {
            self.skip("note: spdk_dd with unknown target bdev".into());
            return;
        };
        if line["target"] != "A" || self.network_names.contains(&bdev) {
            self.skip("note: spdk_dd into a network-side bdev".into());
            return;
        }
        let mib: u64 = input
            .rsplit('_')
            .next()
            .and_then(|s| s.strip_suffix("m.bin"))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let bs: u64 = arg("--bs").and_then(|s| s.parse().ok()).unwrap_or(1 << 20);
        let seek: u64 = arg("--seek").and_then(|s| s.parse().ok()).unwrap_or(0);
        let seed = input
            .bytes()
            .fold(7u64, |a, b| a.wrapping_mul(31).wrapping_add(u64::from(b)));
        let data = pattern(seed, (mib << 20) as usize);
        let mut rpc = self.proc.rpc();
        rpc.write(&bdev, seek * bs, &data);
        self.checked += 1;
    }

    fn prepare(&mut self, i: usize, method: &str, params: &Value, line: &Value) {
        let name = params["name"].as_str().unwrap_or("");
        match method {
            "bdev_aio_create" if line.get("response").is_some() => {
                let Some(path) = params["filename"].as_str() else {
                    return;
                };
                let path = PathBuf::from(path);
                if !path.exists() {
                    let size = self.lookahead_size(i, name).unwrap_or(1 << 30);
                    let f = std::fs::File::create(&path).expect("create aio file");
                    f.set_len(size).expect("size aio file");
                }
            }
            "bdev_aio_rescan" => {
                if let Some(size) = self.lookahead_size(i, name) {
                    let path = self.dir.join("a_aio0.img");
                    if let Ok(f) = std::fs::OpenOptions::new().write(true).open(path) {
                        let _ = f.set_len(size);
                    }
                }
            }
            _ => {}
        }
    }

    fn call(&mut self, file: &str, i: usize, method: &str, line: &Value) {
        let mut rpc = self.proc.rpc();
        let got = if method == "MISSING_METHOD" || method == "WRONG_JSONRPC_VERSION" {
            let raw = line["params"]["raw_request"].as_str().unwrap_or("");
            let resp = rpc.raw(raw.as_bytes());
            match resp.get("error") {
                Some(e) => Err((
                    e["code"].as_i64().unwrap_or(0),
                    e["message"].as_str().unwrap_or("").to_string(),
                )),
                None => Ok(resp["result"].clone()),
            }
        } else {
            let params = self.rewrite(&line["params"]);
            self.prepare(i, method, &params, line);
            if method == "bdev_lvol_check_shallow_copy" {
                if line["response"]["state"] == "in progress" {
                    self.skip("check_shallow_copy 'in progress' (timing-dependent)".into());
                    return;
                }
                let mut r = rpc.call(method, params.clone());
                for _ in 0..5000 {
                    match &r {
                        Ok(v) if v["state"] == "in progress" => {
                            std::thread::sleep(Duration::from_millis(5));
                            r = rpc.call(method, params.clone());
                        }
                        _ => break,
                    }
                }
                r
            } else {
                rpc.call(method, params)
            }
        };
        self.checked += 1;
        let at = format!("{file}:{} {method}", i + 1);
        match (line.get("error"), got) {
            (Some(e), Err((code, msg))) => {
                if e["code"].as_i64() != Some(code) || e["message"].as_str() != Some(msg.as_str()) {
                    self.failures
                        .push(format!("{at}: want error {e}, got {code} {msg}"));
                }
            }
            (Some(e), Ok(v)) => self
                .failures
                .push(format!("{at}: want error {e}, got result {v}")),
            (None, Err(e)) => self
                .failures
                .push(format!("{at}: want result, got error {e:?}")),
            (None, Ok(v)) => {
                let want = &line["response"];
                let mut diffs = Vec::new();
                let shape_only_list = method == "rpc_get_methods" || method == "bdev_get_iostat";
                if method == "rpc_get_methods" {
                    let rec: HashSet<&str> = want
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect();
                    for m in v.as_array().into_iter().flatten().filter_map(Value::as_str) {
                        if !rec.contains(m) {
                            diffs.push(format!("lists {m}, which spdk_tgt does not have"));
                        }
                    }
                } else if shape_only_list && want.get("bdevs").is_some() {
                    // iostat of all bdevs includes network ones: compare entry shapes.
                    let proto = &want["bdevs"][0];
                    for b in v["bdevs"].as_array().into_iter().flatten() {
                        let mut p = proto.clone();
                        if b.get("driver_specific").is_none() {
                            if let Some(o) = p.as_object_mut() {
                                o.remove("driver_specific");
                            }
                        }
                        self.compare("$.bdevs[]", &p, b, true, &mut diffs);
                    }
                } else {
                    // Reactor statistics are per process: compare their shape only.
                    let shape_only = method == "framework_get_reactors";
                    self.compare("$", want, &v, shape_only, &mut diffs);
                }
                if !diffs.is_empty() {
                    self.failures.push(format!("{at}: {}", diffs.join("; ")));
                }
            }
        }
    }

    fn compare(
        &mut self,
        path: &str,
        want: &Value,
        got: &Value,
        shape_only: bool,
        diffs: &mut Vec<String>,
    ) {
        match (want, got) {
            (Value::Object(w), Value::Object(g)) => {
                let mut wk: Vec<&String> = w.keys().collect();
                let mut gk: Vec<&String> = g.keys().collect();
                wk.sort();
                gk.sort();
                if wk != gk {
                    diffs.push(format!("{path}: keys {wk:?} != {gk:?}"));
                    return;
                }
                for (k, wv) in w {
                    let vol = shape_only
                        || volatile_key(k)
                        || self.tainted && (k == "num_allocated_clusters" || k == "free_clusters");
                    self.compare(&format!("{path}.{k}"), wv, &g[k], vol, diffs);
                }
            }
            (Value::Array(w), Value::Array(g)) => {
                if w.len() != g.len() {
                    diffs.push(format!("{path}: {} elements, want {}", g.len(), w.len()));
                    return;
                }
                for (n, (wv, gv)) in w.iter().zip(g).enumerate() {
                    self.compare(&format!("{path}[{n}]"), wv, gv, shape_only, diffs);
                }
            }
            (Value::String(w), Value::String(g)) => {
                if let Some(m) = self.ids.get(w) {
                    if m != g && !shape_only {
                        diffs.push(format!("{path}: {g} (want {w} = {m})"));
                    }
                } else if looks_like_uuid(w) {
                    self.ids.insert(w.clone(), g.clone());
                } else if !shape_only && w != g && !w.starts_with(REC_DIR) {
                    diffs.push(format!("{path}: {g:?}, want {w:?}"));
                }
            }
            (Value::Number(w), Value::Number(g)) => {
                if path.ends_with(".operation_id") {
                    self.ids.insert(format!("#{w}"), g.to_string());
                } else if !shape_only && w != g {
                    diffs.push(format!("{path}: {g}, want {w}"));
                }
            }
            (Value::Bool(w), Value::Bool(g)) => {
                if !shape_only && w != g {
                    diffs.push(format!("{path}: {g}, want {w}"));
                }
            }
            (Value::Null, Value::Null) => {}
            _ => diffs.push(format!("{path}: type differs: {got} vs want {want}")),
        }
    }

    /// Prints the skipped-line summary.
    pub fn report(&self) {
        eprintln!("replay: {} calls checked", self.checked);
        for (why, n) in &self.skipped {
            eprintln!("replay: skipped {n:>3} x {why}");
        }
        for f in &self.failures {
            eprintln!("replay MISMATCH: {f}");
        }
    }
}
