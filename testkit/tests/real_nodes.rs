//! Real SPDK nodes started by the shared launcher on this machine: every node
//! answers, replica-only nodes sleep, and the figures (start time, idle CPU
//! per role) are printed. Skips without `SHORTHORN_SPDK_TGT`.
//!
//! Rerun: `SHORTHORN_SPDK_TGT=/work/shared/spdk/bin/spdk_tgt cargo test -p testkit --test real_nodes -- --nocapture`

use std::time::{Duration, Instant};

use testkit::launch::{first_node_engine, Role};
use testkit::nodes::{Flavor, TestCluster};
use testkit::spdk_env::real_or_skip;

/// CPU time (user + system) of `pid` in clock ticks, from `/proc/<pid>/stat`.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 here.
    f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime")
}

fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { nix::libc::sysconf(nix::libc::_SC_CLK_TCK) };
    u64::try_from(t).unwrap_or(100)
}

#[test]
fn an_engine_polls_and_replica_nodes_sleep() {
    let Some(real) = real_or_skip("an_engine_polls_and_replica_nodes_sleep") else {
        return;
    };
    let started = Instant::now();
    let cluster = TestCluster::start_with(Flavor::Real(real), &first_node_engine(3))
        .expect("start 3 real nodes");
    println!("3 nodes ready in {:?}", started.elapsed());
    for n in cluster.nodes() {
        println!(
            "{} ({:?}) ready after {:?}: {}",
            n.name,
            n.role,
            n.ready_after().expect("started"),
            n.command_line()
        );
    }
    let pids: Vec<u32> = cluster
        .nodes()
        .iter()
        .map(|n| n.pid().expect("running"))
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let before: Vec<u64> = pids.iter().map(|p| cpu_ticks(*p)).collect();
    let window = Duration::from_secs(10);
    let t0 = Instant::now();
    std::thread::sleep(window);
    let secs = t0.elapsed().as_secs_f64();
    let hz = clock_ticks_per_sec() as f64;
    for (i, n) in cluster.nodes().iter().enumerate() {
        let used = (cpu_ticks(pids[i]) - before[i]) as f64 / hz;
        let percent = 100.0 * used / secs;
        println!(
            "{} ({:?}) idle CPU over {secs:.1} s: {percent:.1} % of a core",
            n.name, n.role
        );
        match n.role {
            Role::Replica => assert!(
                percent < 10.0,
                "{}: a replica-only node should sleep when idle, used {percent:.1} %",
                n.name
            ),
            Role::Engine => assert!(
                n.command_line().contains("spdk_tgt")
                    && !n.command_line().contains("--interrupt-mode"),
                "an engine must poll spdk_tgt: {}",
                n.command_line()
            ),
        }
    }
}
