//! Normalizes two logs of the same scenario and lists where they differ.
//!
//! What differs between two runs of the same calls without meaning anything
//! is taken out first, and nothing else:
//! - paths and ports of the nodes become tokens (`<aio:B>`, `<port:A>`);
//! - UUIDs (and NGUIDs, the same value without dashes) become `<id:N>`,
//!   numbered in order of first appearance, so a UUID that comes back where
//!   it was given must still match;
//! - list results are sorted by a stable key (name, alias, NQN);
//! - clocks and timing counters ([`MASKED`]) are masked, and in
//!   `bdev_get_iostat` the counters that depend on the test's own I/O
//!   ([`MASKED_IN_IOSTAT`]).

use std::collections::HashMap;

use serde_json::Value;

use super::harness::Entry;

/// Keys whose values are clocks or timing, never compared, and why.
pub const MASKED: &[(&str, &str)] = &[
    ("ticks", "a clock"),
    ("tick_rate", "the CPU's tick rate"),
    ("read_latency_ticks", "timing"),
    ("write_latency_ticks", "timing"),
    ("unmap_latency_ticks", "timing"),
    ("copy_latency_ticks", "timing"),
    ("max_read_latency_ticks", "timing"),
    ("min_read_latency_ticks", "timing"),
    ("max_write_latency_ticks", "timing"),
    ("min_write_latency_ticks", "timing"),
    ("max_unmap_latency_ticks", "timing"),
    ("min_unmap_latency_ticks", "timing"),
    ("max_copy_latency_ticks", "timing"),
    ("min_copy_latency_ticks", "timing"),
];

fn masked(key: &str) -> bool {
    MASKED.iter().any(|(k, _)| *k == key)
}

/// Counters of `bdev_get_iostat` that depend on how the test itself moves
/// data, not on SPDK: spdk_dd over NVMe/TCP splits I/O at the transport's
/// 128 KiB `max_io_size` and reads a claimed lvol through a snapshot, where
/// `sim_bdev_*` is one I/O on the bdev itself; and examine reads differ
/// (SPDK's modules probe a new bdev at several offsets, the sim's raid module
/// reads one block). Bytes written are compared.
pub const MASKED_IN_IOSTAT: &[&str] = &[
    "bytes_read",
    "num_read_ops",
    "num_write_ops",
    "num_unmap_ops",
];

/// Methods whose result is a list in an order the caller must not rely on.
const LISTS: &[&str] = &[
    "bdev_get_bdevs",
    "bdev_lvol_get_lvols",
    "bdev_lvol_get_lvstores",
    "bdev_raid_get_bdevs",
    "nvmf_get_subsystems",
    "nvmf_get_transports",
    "bdev_nvme_get_controllers",
];

fn sort_key(v: &Value) -> String {
    for k in ["aliases", "alias"] {
        if let Some(a) = v.get(k) {
            if let Some(s) = a.as_str().or_else(|| a.get(0).and_then(Value::as_str)) {
                return s.to_string();
            }
        }
    }
    for k in ["name", "nqn", "trtype"] {
        if let Some(s) = v.get(k).and_then(Value::as_str) {
            return s.to_string();
        }
    }
    v.to_string()
}

fn is_hex(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Start of a dashed UUID at `i` of `s`, if one is there.
fn uuid_at(s: &str, i: usize) -> bool {
    let b = s.as_bytes();
    if i + 36 > b.len() {
        return false;
    }
    let u = &s[i..i + 36];
    u.split('-').map(str::len).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
        && u.split('-').all(is_hex)
        && (i == 0 || !b[i - 1].is_ascii_hexdigit())
        && (i + 36 == b.len() || !b[i + 36].is_ascii_hexdigit())
}

/// Replaces ids with `<id:N>` placeholders, sharing one numbering per log.
struct Ids(HashMap<String, usize>);

impl Ids {
    fn id(&mut self, uuid: &str) -> String {
        let n = self.0.len();
        let k = *self.0.entry(uuid.to_ascii_lowercase()).or_insert(n);
        if uuid.chars().all(|c| c == '0' || c == '-') {
            return "<zero-id>".to_string();
        }
        format!("<id:{k}>")
    }

    fn string(&mut self, s: &str) -> String {
        if s.len() == 32 && is_hex(s) {
            let dashed = format!(
                "{}-{}-{}-{}-{}",
                &s[0..8],
                &s[8..12],
                &s[12..16],
                &s[16..20],
                &s[20..32]
            );
            return self.id(&dashed);
        }
        let mut out = String::new();
        let mut i = 0;
        while i < s.len() {
            if s.is_char_boundary(i) && uuid_at(s, i) {
                out.push_str(&self.id(&s[i..i + 36]));
                i += 36;
            } else {
                let c = s[i..].chars().next().unwrap_or(' ');
                out.push(c);
                i += c.len_utf8();
            }
        }
        out
    }

    fn value(&mut self, v: &Value, iostat: bool) -> Value {
        match v {
            Value::String(s) => Value::String(self.string(s)),
            Value::Array(a) => Value::Array(a.iter().map(|x| self.value(x, iostat)).collect()),
            Value::Object(o) => Value::Object(
                o.iter()
                    .map(|(k, x)| {
                        let x = if masked(k) || (iostat && MASKED_IN_IOSTAT.contains(&k.as_str())) {
                            Value::String("<masked>".into())
                        } else {
                            self.value(x, iostat)
                        };
                        (k.clone(), x)
                    })
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

fn substitute(v: &Value, tokens: &[(String, String)]) -> Value {
    match v {
        Value::String(s) => {
            let mut s = s.clone();
            for (raw, token) in tokens {
                if !raw.is_empty() {
                    s = s.replace(raw.as_str(), token);
                }
            }
            Value::String(s)
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| substitute(x, tokens)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| (k.clone(), substitute(x, tokens)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The transcript lines of `log` with paths and ports replaced by tokens
/// (ids kept): what is recorded as the golden file.
pub fn tokenized(log: &[Entry], tokens: &[(String, String)]) -> Vec<Value> {
    let mut tokens = tokens.to_vec();
    // Longest first, so a directory does not eat the file inside it.
    tokens.sort_by_key(|t| std::cmp::Reverse(t.0.len()));
    log.iter()
        .map(|e| substitute(&e.to_line(), &tokens))
        .collect()
}

/// `lines` (already tokenized) with ids numbered, lists sorted and timing masked.
pub fn normalized(lines: &[Value]) -> Vec<Value> {
    let mut ids = Ids(HashMap::new());
    lines
        .iter()
        .map(|line| {
            let mut line = line.clone();
            let method = line["method"].as_str().unwrap_or_default().to_string();
            if LISTS.contains(&method.as_str()) {
                if let Some(Value::Array(items)) = line.get_mut("response") {
                    items.sort_by_key(sort_key);
                }
            }
            if method == "bdev_get_iostat" {
                if let Some(Value::Array(items)) = line.pointer_mut("/response/bdevs") {
                    items.sort_by_key(sort_key);
                }
            }
            // Params first: ids given by the caller are numbered before answers.
            let mut out = serde_json::Map::new();
            let iostat = method == "bdev_get_iostat";
            for k in ["step", "target", "method", "params", "response", "error"] {
                if let Some(v) = line.get(k) {
                    out.insert(k.to_string(), ids.value(v, iostat && k == "response"));
                }
            }
            Value::Object(out)
        })
        .collect()
}

fn diff_value(path: &str, sim: &Value, real: &Value, out: &mut Vec<String>) {
    match (sim, real) {
        (Value::Object(s), Value::Object(r)) => {
            for (k, rv) in r {
                match s.get(k) {
                    Some(sv) => diff_value(&format!("{path}.{k}"), sv, rv, out),
                    None => out.push(format!("{path}.{k}: missing in the sim (real: {rv})")),
                }
            }
            for (k, sv) in s {
                if !r.contains_key(k) {
                    out.push(format!("{path}.{k}: only in the sim ({sv})"));
                }
            }
        }
        (Value::Array(s), Value::Array(r)) => {
            if s.len() != r.len() {
                out.push(format!(
                    "{path}: sim has {} entries, real {}: sim {sim}, real {real}",
                    s.len(),
                    r.len()
                ));
                return;
            }
            for (i, (sv, rv)) in s.iter().zip(r).enumerate() {
                diff_value(&format!("{path}[{i}]"), sv, rv, out);
            }
        }
        (Value::Number(s), Value::Number(r)) if s.as_f64() == r.as_f64() => {}
        (s, r) if s == r => {}
        (s, r) => out.push(format!("{path}: sim {s}, real {r}")),
    }
}

/// Where two normalized logs differ, one line per difference.
pub fn differences(sim: &[Value], real: &[Value]) -> Vec<String> {
    let mut out = Vec::new();
    for (i, (s, r)) in sim.iter().zip(real).enumerate() {
        let mut here = Vec::new();
        diff_value("", s, r, &mut here);
        let head = format!(
            "#{i} [{}] {} {}",
            r["step"].as_str().unwrap_or_default(),
            r["target"].as_str().unwrap_or_default(),
            r["method"].as_str().unwrap_or_default()
        );
        for d in here {
            out.push(format!("{head}: {d}"));
        }
    }
    if sim.len() != real.len() {
        out.push(format!(
            "the sim made {} calls, real SPDK {}",
            sim.len(),
            real.len()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_are_numbered_in_order_and_nguids_match_their_uuid() {
        let lines = vec![
            json!({"method": "x", "response": "0b1f6e3c-1d2a-4c5b-9e8f-0123456789ab"}),
            json!({"method": "y", "response": {"nguid": "0B1F6E3C1D2A4C5B9E8F0123456789AB",
                    "msg": "lvol 11111111-2222-3333-4444-555555555555 busy"}}),
        ];
        let n = normalized(&lines);
        assert_eq!(n[0]["response"], "<id:0>");
        assert_eq!(n[1]["response"]["nguid"], "<id:0>");
        assert_eq!(n[1]["response"]["msg"], "lvol <id:1> busy");
    }

    #[test]
    fn a_differing_value_is_reported_with_its_path() {
        let sim = normalized(&[json!({"method": "m", "response": {"a": [1, {"b": 2}]}})]);
        let real = normalized(&[json!({"method": "m", "response": {"a": [1, {"b": 3}], "c": 1}})]);
        let d = differences(&sim, &real);
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d[0].contains(".response.a[1].b: sim 2, real 3"), "{d:?}");
        assert!(d[1].contains(".response.c: missing in the sim"), "{d:?}");
    }
}
