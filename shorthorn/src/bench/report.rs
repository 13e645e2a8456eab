//! The bench's one table, as text or JSON.

use std::fmt::Write as _;

use super::figures::OpFigures;
use super::latency::LatencyFigures;
use super::scale::{ListFigures, ScaleFigures};
use super::stats::Samples;
use super::table::{num, Table};
use super::throughput::Throughput;

/// What was run, and on what.
#[derive(Debug, Clone)]
pub struct Setup {
    /// Storage nodes.
    pub nodes: usize,
    /// `sim` or the spdk_tgt path.
    pub engine: String,
    /// Frontend of published volumes.
    pub frontend: String,
    /// Runs per latency figure.
    pub runs: usize,
    /// `debug` or `release`.
    pub build: &'static str,
    /// Logical CPUs of this machine.
    pub cpus: usize,
}

/// The latency section on sim nodes, next to the real nodes' figures.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// Sim nodes, controller-side operations (NVMe/TCP publish, ANA fence).
    pub sim: LatencyFigures,
    /// Whether the real run attached volumes through the kernel (then its
    /// CreateSnapshot ran under a writer; the sim's never does).
    pub real_kernel_attach: bool,
}

/// Everything measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// Set-up.
    pub setup: Setup,
    /// Whether volumes were attached through this machine's kernel (else only
    /// the controller-side operations ran).
    pub kernel_attach: bool,
    /// Sections 1 to 3.
    pub latency: LatencyFigures,
    /// Section 4.
    pub scale: ScaleFigures,
    /// Section 5.
    pub throughput: Throughput,
    /// Section 6, with real storage nodes.
    pub comparison: Option<Comparison>,
}

const NOT_OFFERED: &str = "n/a (not offered)";

/// Why node-side figures are missing on a machine without a kernel initiator.
const NO_KERNEL_ATTACH_NOTE: &str =
    "this kernel has neither nvme-tcp nor ublk, so volumes are published over NVMe/TCP and \
     nothing attaches them; NodeStage, NodeUnstage and the snapshot's writer run where a \
     kernel initiator is (`vmtest/run.sh --real-spdk`)";

fn ms(s: &Samples) -> [String; 2] {
    [num(s.p50(), 1), num(s.p99(), 1)]
}

fn op_row(op: &OpFigures) -> Vec<String> {
    if !op.offered {
        return vec![op.name.to_string(), "0".into(), NOT_OFFERED.into()];
    }
    if op.skipped.is_some() {
        return vec![op.name.to_string(), "0".into(), "n/a".into(), "n/a".into()];
    }
    let [p50, p99] = ms(&op.latency);
    let calls = &op.calls.per_run;
    let min = op.minimum.map(|m| m.calls);
    let gap = match (calls.p50(), min) {
        (Some(c), Some(m)) => format!("{:+}", c as i64 - m as i64),
        _ => "-".into(),
    };
    vec![
        op.name.to_string(),
        op.latency.len().to_string(),
        p50,
        p99,
        num(calls.p50(), 0),
        num(calls.p99(), 0),
        min.map_or("-".into(), |m| m.to_string()),
        gap,
    ]
}

/// Where the calls of one operation went: mean per run, by method.
fn breakdown(op: &OpFigures) -> Option<String> {
    let runs = op.calls.per_run.len();
    if op.calls.per_run.is_empty() || op.calls.by_method.is_empty() {
        return None;
    }
    let parts: Vec<String> = op
        .calls
        .by_method
        .iter()
        .map(|(m, n)| {
            let mean = *n as f64 / runs as f64;
            if mean.fract() == 0.0 {
                format!("{m} {mean:.0}")
            } else {
                format!("{m} {mean:.1}")
            }
        })
        .collect();
    Some(format!("    {}: {}", op.name, parts.join(", ")))
}

fn list_row(name: &str, l: &ListFigures) -> Vec<String> {
    let [p50, p99] = ms(&l.page);
    let [w50, w99] = ms(&l.walk);
    vec![
        name.to_string(),
        format!("{} in {} pages", l.entries, l.pages),
        l.walk.len().to_string(),
        format!("{p50} / {p99}"),
        format!("{w50} / {w99}"),
        num(l.calls.p50(), 0),
    ]
}

impl Report {
    /// The human table.
    pub fn render_text(&self) -> String {
        let s = &self.setup;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Shorthorn bench: {} storage nodes ({}), frontend {}, {} build, {} CPUs, {} runs per figure",
            s.nodes, s.engine, s.frontend, s.build, s.cpus, s.runs
        );
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "1-2. CSI latency (ms) and SPDK JSON-RPC calls per operation, 3 replicas, 64 MiB ext4"
        );
        let mut t = Table::new(&[
            "operation",
            "runs",
            "p50 ms",
            "p99 ms",
            "calls p50",
            "calls p99",
            "min",
            "gap",
        ]);
        for op in &self.latency.ops {
            t.row(op_row(op));
            if op.name.starts_with("NodeStageVolume") && op.measured() {
                let st = &self.latency.stage;
                for (name, samples) in [
                    ("  attach", &st.attach),
                    ("  format", &st.format),
                    ("  mount", &st.mount),
                ] {
                    let [p50, p99] = ms(samples);
                    t.row(vec![name.into(), samples.len().to_string(), p50, p99]);
                }
            }
        }
        out.push_str(&t.render());
        if !self.kernel_attach {
            let _ = writeln!(out, "  n/a: {NO_KERNEL_ATTACH_NOTE}");
        }
        let _ = writeln!(out, "  calls per run by method (mean):");
        for line in self.latency.ops.iter().filter_map(breakdown) {
            let _ = writeln!(out, "{line}");
        }
        let _ = writeln!(out);

        let _ = writeln!(out, "3. Snapshot quiesce window (ms)");
        match &self.latency.quiesce {
            None => {
                let _ = writeln!(out, "  {NOT_OFFERED}");
            }
            Some(q) => {
                let mut t = Table::new(&["figure", "runs", "p50 ms", "p99 ms"]);
                if self.kernel_attach {
                    let [p50, p99] = ms(&q.writer_gap);
                    t.row(vec![
                        "writer's longest gap during CreateSnapshot".into(),
                        q.writer_gap.len().to_string(),
                        p50,
                        p99,
                    ]);
                } else {
                    t.row(vec![
                        "writer's longest gap during CreateSnapshot".into(),
                        "0".into(),
                        "n/a".into(),
                        "n/a".into(),
                    ]);
                }
                let [p50, p99] = ms(&q.fence_hold);
                let kinds = if q.fence_kinds.is_empty() {
                    "none".to_string()
                } else {
                    q.fence_kinds.join(", ")
                };
                t.row(vec![
                    format!("controller's fence hold ({kinds})"),
                    q.fence_hold.len().to_string(),
                    p50,
                    p99,
                ]);
                out.push_str(&t.render());
            }
        }
        let _ = writeln!(out);

        let sc = &self.scale;
        let _ = writeln!(
            out,
            "4. Scale: {} volumes x 3 replicas (16 MiB thin), {} snapshots",
            sc.volumes, sc.snapshots
        );
        let mut t = Table::new(&["operation", "count", "runs", "p50 / p99 ms", "total"]);
        let [p50, p99] = ms(&sc.create);
        t.row(vec![
            "CreateVolume".into(),
            sc.volumes.to_string(),
            sc.create.len().to_string(),
            format!("{p50} / {p99}"),
            format!("{:.1} s", sc.create_total.as_secs_f64()),
        ]);
        for (which, samples) in [("first", &sc.create_first), ("last", &sc.create_last)] {
            let [p50, p99] = ms(samples);
            t.row(vec![
                format!("  {which} {}", samples.len()),
                String::new(),
                samples.len().to_string(),
                format!("{p50} / {p99}"),
                String::new(),
            ]);
        }
        let mut lt = Table::new(&[
            "list (max_entries 100)",
            "entries",
            "walks",
            "page p50 / p99 ms",
            "walk p50 / p99 ms",
            "SPDK calls / walk",
        ]);
        lt.row(list_row("ListVolumes", &sc.list_volumes));
        match &sc.list_snapshots {
            Some(l) => lt.row(list_row("ListSnapshots", l)),
            None => lt.row(vec!["ListSnapshots".into(), NOT_OFFERED.into()]),
        }
        let [p50, p99] = ms(&sc.delete);
        t.row(vec![
            "DeleteVolume (after DeleteSnapshot)".into(),
            sc.volumes.to_string(),
            sc.delete.len().to_string(),
            format!("{p50} / {p99}"),
            format!("{:.1} s", sc.delete_total.as_secs_f64()),
        ]);
        out.push_str(&t.render());
        out.push_str(&lt.render());
        let sf = &sc.scrape;
        let mut mt = Table::new(&[
            "/metrics scrape",
            "cold ms",
            "warm p50 / p99 ms",
            "SPDK calls cold / warm",
            "bytes",
        ]);
        let [w50, w99] = ms(&sf.warm);
        mt.row(vec![
            format!("{} volumes", sc.volumes),
            ms(&sf.cold)[0].clone(),
            format!("{w50} / {w99}"),
            format!(
                "{} / {}",
                num(sf.calls_cold.p50(), 0),
                num(sf.calls_warm.p50(), 0)
            ),
            sf.bytes.to_string(),
        ]);
        out.push_str(&mt.render());
        let _ = writeln!(
            out,
            "  peak RSS (bench process: controller + node service): {}",
            sc.peak_rss_kib
                .map_or("-".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
        );
        let _ = writeln!(
            out,
            "  store size (redb file, everything created): {}",
            sc.store_bytes
                .map_or("-".into(), |b| format!("{:.1} MiB", b as f64 / 1048576.0))
        );
        let _ = writeln!(
            out,
            "  lvols of these volumes/snapshots left on storage nodes after deletion: {}",
            sc.leftover_lvols
        );
        let _ = writeln!(out);

        match &self.throughput {
            Throughput::Skipped(why) => {
                let _ = writeln!(out, "5. Throughput: skipped ({why})");
            }
            Throughput::Measured { seconds, rows } => {
                let _ = writeln!(
                    out,
                    "5. Throughput through the stack (fio, raw block, 256 MiB, {seconds} s per job)"
                );
                let mut t = Table::new(&[
                    "pattern",
                    "3 replicas MB/s",
                    "IOPS",
                    "1 replica MB/s",
                    "IOPS",
                    "3/1",
                ]);
                for r in rows {
                    let ratio = (r.one.mb_per_s > 0.0).then(|| r.three.mb_per_s / r.one.mb_per_s);
                    t.row(vec![
                        r.pattern.into(),
                        num(Some(r.three.mb_per_s), 1),
                        num(Some(r.three.iops), 0),
                        num(Some(r.one.mb_per_s), 1),
                        num(Some(r.one.iops), 0),
                        num(ratio, 2),
                    ]);
                }
                out.push_str(&t.render());
                if !self.kernel_attach {
                    let _ = writeln!(out, "  n/a: {NO_KERNEL_ATTACH_NOTE}");
                }
            }
        }
        if let Some(c) = &self.comparison {
            let _ = writeln!(out);
            out.push_str(&self.render_comparison(c));
        }
        out
    }

    /// Section 6: the same operations on sim nodes and on real ones.
    fn render_comparison(&self, c: &Comparison) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "6. Sim against real spdk_tgt, same operations, 3 replicas, {} runs each (ms; SPDK calls per run)",
            self.setup.runs
        );
        let _ = writeln!(
            out,
            "   sim: controller-side only, NVMe/TCP publish, ANA fence, no writer; real: {}",
            if c.real_kernel_attach {
                "kernel-attached, snapshots under an ext4 writer"
            } else {
                "the same controller-side operations"
            }
        );
        let mut t = Table::new(&[
            "operation",
            "sim p50",
            "sim p99",
            "real p50",
            "real p99",
            "real/sim p50",
            "sim calls",
            "real calls",
        ]);
        for real in &self.latency.ops {
            let Some(sim) = c.sim.ops.iter().find(|o| o.name == real.name) else {
                continue;
            };
            if !sim.measured() || !real.measured() {
                continue;
            }
            let [s50, s99] = ms(&sim.latency);
            let [r50, r99] = ms(&real.latency);
            let ratio = match (sim.latency.p50(), real.latency.p50()) {
                (Some(s), Some(r)) if s > 0.0 => num(Some(r / s), 1),
                _ => "-".into(),
            };
            t.row(vec![
                real.name.to_string(),
                s50,
                s99,
                r50,
                r99,
                ratio,
                num(sim.calls.per_run.p50(), 0),
                num(real.calls.per_run.p50(), 0),
            ]);
        }
        if let (Some(sq), Some(rq)) = (&c.sim.quiesce, &self.latency.quiesce) {
            let [s50, s99] = ms(&sq.fence_hold);
            let [r50, r99] = ms(&rq.fence_hold);
            let ratio = match (sq.fence_hold.p50(), rq.fence_hold.p50()) {
                (Some(s), Some(r)) if s > 0.0 => num(Some(r / s), 1),
                _ => "-".into(),
            };
            let kinds = |k: &[&str]| {
                if k.is_empty() {
                    "none".to_string()
                } else {
                    k.join(", ")
                }
            };
            t.row(vec![
                format!(
                    "fence hold (sim {}, real {})",
                    kinds(&sq.fence_kinds),
                    kinds(&rq.fence_kinds)
                ),
                s50,
                s99,
                r50,
                r99,
                ratio,
            ]);
        }
        out.push_str(&t.render());
        out
    }

    /// The JSON document.
    pub fn to_json(&self) -> serde_json::Value {
        let s = &self.setup;
        let q = self.latency.quiesce.as_ref().map(|q| {
            serde_json::json!({
                "writer_longest_gap_ms": q.writer_gap.to_json(),
                "writes_per_window": q.writes.to_json(),
                "fence_hold_ms": q.fence_hold.to_json(),
                "fence_kinds": q.fence_kinds,
            })
        });
        let list = |l: &ListFigures| {
            serde_json::json!({
                "entries": l.entries,
                "pages": l.pages,
                "page_ms": l.page.to_json(),
                "walk_ms": l.walk.to_json(),
                "spdk_calls_per_walk": l.calls.to_json(),
            })
        };
        let sc = &self.scale;
        let throughput = match &self.throughput {
            Throughput::Skipped(why) => serde_json::json!({ "skipped": why }),
            Throughput::Measured { seconds, rows } => serde_json::json!({
                "seconds_per_job": seconds,
                "rows": rows.iter().map(|r| serde_json::json!({
                    "pattern": r.pattern,
                    "three_replicas": { "mb_per_s": r.three.mb_per_s, "iops": r.three.iops },
                    "one_replica": { "mb_per_s": r.one.mb_per_s, "iops": r.one.iops },
                    "ratio_mb_per_s": (r.one.mb_per_s > 0.0).then(|| r.three.mb_per_s / r.one.mb_per_s),
                })).collect::<Vec<_>>(),
            }),
        };
        serde_json::json!({
            "setup": {
                "nodes": s.nodes, "engine": s.engine, "frontend": s.frontend,
                "runs": s.runs, "build": s.build, "cpus": s.cpus,
            },
            "operations": self.latency.ops.iter().map(OpFigures::to_json).collect::<Vec<_>>(),
            "node_stage_split_ms": {
                "attach": self.latency.stage.attach.to_json(),
                "format": self.latency.stage.format.to_json(),
                "mount": self.latency.stage.mount.to_json(),
            },
            "snapshot_quiesce": q,
            "scale": {
                "volumes": sc.volumes,
                "snapshots": sc.snapshots,
                "create_volume_ms": sc.create.to_json(),
                "create_volume_first_tenth_ms": sc.create_first.to_json(),
                "create_volume_last_tenth_ms": sc.create_last.to_json(),
                "create_total_s": sc.create_total.as_secs_f64(),
                "list_volumes": list(&sc.list_volumes),
                "list_snapshots": sc.list_snapshots.as_ref().map(list),
                "metrics_scrape": {
                    "cold_ms": sc.scrape.cold.to_json(),
                    "warm_ms": sc.scrape.warm.to_json(),
                    "spdk_calls_cold": sc.scrape.calls_cold.to_json(),
                    "spdk_calls_warm": sc.scrape.calls_warm.to_json(),
                    "bytes": sc.scrape.bytes,
                },
                "peak_rss_kib": sc.peak_rss_kib,
                "store_bytes": sc.store_bytes,
                "delete_volume_ms": sc.delete.to_json(),
                "delete_total_s": sc.delete_total.as_secs_f64(),
                "leftover_lvols": sc.leftover_lvols,
            },
            "throughput": throughput,
            "kernel_attach": self.kernel_attach,
            "sim_comparison": self.comparison.as_ref().map(|c| serde_json::json!({
                "sim_operations": c.sim.ops.iter().map(OpFigures::to_json).collect::<Vec<_>>(),
                "sim_fence_hold_ms": c.sim.quiesce.as_ref().map(|q| q.fence_hold.to_json()),
                "sim_fence_kinds": c.sim.quiesce.as_ref().map(|q| q.fence_kinds.clone()),
                "real_kernel_attach": c.real_kernel_attach,
            })),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::figures::{QuiesceFigures, StageFigures};
    use crate::bench::scale::ScaleFigures;

    fn op(name: &'static str, ms: &[f64], calls: u64) -> OpFigures {
        let mut o = OpFigures::new(name, true, None);
        for &m in ms {
            o.latency.push(m);
            o.calls
                .record(&[("x".to_string(), calls)].into_iter().collect());
        }
        o
    }

    fn latency(ops: Vec<OpFigures>, hold_ms: f64) -> LatencyFigures {
        let mut q = QuiesceFigures::default();
        q.fence_hold.push(hold_ms);
        q.fence_kinds.push("ana");
        LatencyFigures {
            ops,
            stage: StageFigures::default(),
            quiesce: Some(q),
        }
    }

    fn report(real: LatencyFigures, sim: Option<LatencyFigures>) -> Report {
        Report {
            setup: Setup {
                nodes: 3,
                engine: "spdk_tgt /x/spdk_tgt".into(),
                frontend: "NvmeTcp".into(),
                runs: 1,
                build: "debug",
                cpus: 2,
            },
            kernel_attach: false,
            latency: real,
            scale: ScaleFigures::default(),
            throughput: Throughput::Skipped("--skip-fio".into()),
            comparison: sim.map(|sim| Comparison {
                sim,
                real_kernel_attach: false,
            }),
        }
    }

    #[test]
    fn the_comparison_puts_sim_and_real_side_by_side_for_operations_both_measured() {
        let real = latency(
            vec![
                op("CreateVolume", &[80.0], 9),
                op("NodeStageVolume (ext4)", &[], 0).skip(Some("no kernel")),
            ],
            30.0,
        );
        let sim = latency(
            vec![
                op("CreateVolume", &[20.0], 3),
                op("NodeStageVolume (ext4)", &[], 0).skip(Some("no kernel")),
            ],
            6.0,
        );
        let text = report(real, Some(sim)).render_text();
        let section = text.split("6. Sim against real").nth(1).expect("section 6");
        let create = section
            .lines()
            .find(|l| l.trim_start().starts_with("CreateVolume"))
            .expect("CreateVolume row");
        let cells: Vec<&str> = create.split_whitespace().collect();
        assert_eq!(
            cells,
            [
                "CreateVolume",
                "20.0",
                "20.0",
                "80.0",
                "80.0",
                "4.0",
                "3",
                "9"
            ]
        );
        assert!(
            !section.contains("NodeStageVolume"),
            "an operation measured on neither side has no row: {section}"
        );
        assert!(
            section.contains("fence hold (sim ana, real ana)"),
            "{section}"
        );
        // Section 1-2 marks the skipped row and says why once.
        let stage = text
            .lines()
            .find(|l| l.trim_start().starts_with("NodeStageVolume"))
            .expect("NodeStageVolume row");
        assert_eq!(
            stage.split_whitespace().collect::<Vec<_>>(),
            ["NodeStageVolume", "(ext4)", "0", "n/a", "n/a"]
        );
        assert!(
            text.contains("n/a: this kernel has neither nvme-tcp nor ublk"),
            "{text}"
        );
    }

    #[test]
    fn without_real_nodes_there_is_no_comparison() {
        let text = report(latency(vec![op("CreateVolume", &[5.0], 3)], 1.0), None).render_text();
        assert!(!text.contains("6. Sim against real"), "{text}");
    }
}
