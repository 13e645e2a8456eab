//! `shorthorn-sanity`: runs the real csi-sanity against `shorthorn local up`
//! in every topology and access mode, writes JUnit reports, and ends with one
//! summary line: `sanity: N passed, N failed, N skipped`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use anyhow::Context as _;
use clap::Parser;
use sanity_tests::cluster::LocalCluster;
use sanity_tests::install::ensure_csi_sanity;
use sanity_tests::junit::{tally, Tally};
use sanity_tests::plan::{all_topologies, Mode, Topology};

/// Volume size the suite provisions (fits the sims' lvstores many times over).
const TEST_VOLUME_BYTES: u64 = 64 << 20;
/// Size the suite expands volumes to.
const EXPAND_VOLUME_BYTES: u64 = 128 << 20;

/// Command-line arguments.
#[derive(Debug, Parser)]
#[command(about = "Run csi-sanity against shorthorn local up")]
struct Args {
    /// The shorthorn binary under test.
    #[arg(long, default_value = "target/debug/shorthorn")]
    shorthorn: PathBuf,
    /// Where JUnit reports, logs and state directories go.
    #[arg(long, default_value = "target/sanity")]
    out: PathBuf,
    /// Where csi-sanity is installed.
    #[arg(long, default_value = "target/tools")]
    tools: PathBuf,
    /// Only these access modes (default: mount and block).
    #[arg(long, value_enum)]
    mode: Vec<Mode>,
    /// Only the topology with this name (default: all).
    #[arg(long)]
    topology: Option<String>,
    /// Extra arguments passed to csi-sanity (e.g. `--ginkgo.focus=...`).
    #[arg(last = true)]
    extra: Vec<String>,
}

/// One suite run's outcome.
struct RunResult {
    label: String,
    tally: Tally,
    failed_specs: Vec<String>,
    log: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("shorthorn-sanity: {e:#}");
            println!("sanity: 0 passed, 1 failed, 0 skipped");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> anyhow::Result<bool> {
    let shorthorn = absolute(&args.shorthorn)?;
    let out = absolute(&args.out)?;
    std::fs::create_dir_all(&out)?;
    let csi_sanity = ensure_csi_sanity(&absolute(&args.tools)?)?;
    let modes = if args.mode.is_empty() {
        vec![Mode::Mount, Mode::Block]
    } else {
        args.mode.clone()
    };
    let topologies: Vec<Topology> = all_topologies()
        .into_iter()
        .filter(|t| args.topology.as_deref().is_none_or(|n| n == t.name))
        .collect();
    let mut results = Vec::new();
    for topology in &topologies {
        for &mode in &modes {
            results.push(run_one(
                &shorthorn,
                &csi_sanity,
                &out,
                topology,
                mode,
                &args.extra,
            )?);
        }
    }
    let mut total = Tally::default();
    println!();
    println!(
        "{:<24} {:>7} {:>7} {:>8}",
        "csi-sanity run", "passed", "failed", "skipped"
    );
    for r in &results {
        println!(
            "{:<24} {:>7} {:>7} {:>8}",
            r.label, r.tally.passed, r.tally.failed, r.tally.skipped
        );
        for spec in &r.failed_specs {
            println!("    FAILED: {spec}  (log: {})", r.log.display());
        }
        total.add(r.tally);
    }
    println!("JUnit reports: {}", out.display());
    println!("sanity: {total}");
    Ok(total.failed == 0 && total.passed > 0)
}

fn run_one(
    shorthorn: &Path,
    csi_sanity: &Path,
    out: &Path,
    topology: &Topology,
    mode: Mode,
    extra: &[String],
) -> anyhow::Result<RunResult> {
    let label = format!("{}/{}", topology.name, mode.as_str());
    println!("== csi-sanity {label}: {}", topology.purpose);
    let stem = format!("{}-{}", topology.name, mode.as_str());
    let state_dir = out.join(format!("state-{stem}"));
    let params = out.join(format!("params-{stem}.yaml"));
    std::fs::write(
        &params,
        format!("numberOfReplicas: \"{}\"\n", topology.replicas),
    )?;
    // ModifyVolume changes the count: 3 -> 2 on 3-of-3, 2 -> 3 on 2-of-4-small.
    let mutable = out.join(format!("mutable-params-{stem}.yaml"));
    std::fs::write(
        &mutable,
        format!("numberOfReplicas: \"{}\"\n", topology.mutable_replicas),
    )?;
    let junit = out.join(format!("junit-{stem}.xml"));
    let _ = std::fs::remove_file(&junit);
    let log = out.join(format!("csi-sanity-{stem}.log"));

    let mut cluster = LocalCluster::start(shorthorn, &state_dir, topology)?;
    let status = Command::new(csi_sanity)
        .arg(format!("--csi.endpoint={}", cluster.endpoint()))
        .arg(format!("--csi.testvolumesize={TEST_VOLUME_BYTES}"))
        .arg(format!("--csi.testvolumeexpandsize={EXPAND_VOLUME_BYTES}"))
        .arg("--csi.testnodevolumeattachlimit")
        .arg(format!("--csi.testvolumeaccesstype={}", mode.as_str()))
        .arg(format!("--csi.testvolumeparameters={}", params.display()))
        .arg(format!(
            "--csi.testvolumemutableparameters={}",
            mutable.display()
        ))
        .arg(format!(
            "--csi.mountdir={}",
            cluster.state_dir().join("sanity-target").display()
        ))
        .arg(format!(
            "--csi.stagingdir={}",
            cluster.state_dir().join("sanity-staging").display()
        ))
        .arg(format!("--ginkgo.junit-report={}", junit.display()))
        .arg("--ginkgo.no-color")
        .args(extra)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log)?)
        .stderr(std::fs::File::create(log.with_extension("stderr"))?)
        .status()
        .context("running csi-sanity")?;
    cluster.stop()?;
    let xml = std::fs::read_to_string(&junit).with_context(|| {
        format!(
            "csi-sanity ({status}) wrote no JUnit report; see {}",
            log.display()
        )
    })?;
    let (tally, failed_specs) = tally(&xml);
    println!("   {label}: {tally}");
    Ok(RunResult {
        label,
        tally,
        failed_specs,
        log,
    })
}

fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    Ok(if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()?.join(p)
    })
}
