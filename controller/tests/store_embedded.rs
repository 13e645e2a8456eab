//! Durability of the embedded (redb) backend across restarts and crashes.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shorthorn_controller::config::ControllerConfig;
use shorthorn_controller::server;

use shorthorn_controller::store::{
    EmbeddedStore, Expect, KvStore, ReplicaHealth, ReplicaRecord, Store, StoreError, TxnOp,
    VolumeRecord, SCHEMA_VERSION,
};

/// Set in the re-executed child: path of the database it should write to.
const CHILD_ENV: &str = "SHORTHORN_STORE_CRASH_CHILD";
/// Name of the test that doubles as the child's entry point.
const CRASH_TEST: &str = "sigkill_mid_transactions_leaves_only_whole_transactions";
/// Keys written by each child transaction.
const PARTS: [&str; 3] = ["a", "b", "c"];
/// Transactions the parent waits for before killing the child.
const COMMITS_BEFORE_KILL: u64 = 200;
/// Upper bound so an orphaned child stops by itself.
const CHILD_MAX_TXNS: u64 = 100_000;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

#[tokio::test]
async fn data_and_revisions_survive_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.redb");
    let volume = VolumeRecord {
        version: SCHEMA_VERSION,
        id: "vol-1".into(),
        name: "pvc-1".into(),
        capacity_bytes: 1 << 30,
        parameters: BTreeMap::new(),
        replica_count: 1,
        content_source: None,
        accessible_topology: Vec::new(),
        epoch: 0,
        unclean: None,
    };
    let replica = ReplicaRecord {
        version: SCHEMA_VERSION,
        volume_id: "vol-1".into(),
        node: "n1".into(),
        lvstore: "lvs0".into(),
        lvol_uuid: "u1".into(),
        health: ReplicaHealth::Rebuilding,
        generation: 7,
        reason: None,
        since: None,
    };
    let written = {
        let kv = EmbeddedStore::open(&path).await.expect("open");
        let store = Store::new(Arc::new(kv));
        store
            .create_volume(&volume, std::slice::from_ref(&replica))
            .await
            .expect("create")
    };

    let kv = EmbeddedStore::open(&path).await.expect("reopen");
    let store = Store::new(Arc::new(kv.clone()));
    let found = store.get_volume_by_name("pvc-1").await.expect("get");
    let found = found.expect("volume survives reopen");
    assert_eq!((found.record, found.revision), (volume, written));
    let replicas = store.list_replicas("vol-1").await.expect("replicas");
    assert_eq!(replicas.len(), 1);
    assert_eq!(replicas[0].record, replica);

    let next = kv
        .put("other", b"x".to_vec(), Expect::Absent)
        .await
        .expect("put");
    assert!(next > written, "revisions keep growing after reopen");
}

#[tokio::test]
async fn second_open_of_the_same_file_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.redb");
    let _first = EmbeddedStore::open(&path).await.expect("open");
    let second = EmbeddedStore::open(&path).await;
    assert!(
        matches!(&second, Err(StoreError::Locked { path: p, holder })
            if p.ends_with("state.redb") && holder.contains("this process")),
        "{second:?}"
    );
}

#[tokio::test]
async fn a_second_controller_on_the_same_file_fails_fast_naming_file_and_holder() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.redb");
    let config = ControllerConfig::from_toml(&format!(
        "[store]\nembedded = {:?}\n\n[[nodes]]\nname = \"n1\"\nspdk_socket = \"/nonexistent.sock\"\nnvmf_address = \"127.0.0.1\"\n",
        path.display().to_string()
    ))
    .expect("config");
    let _first = EmbeddedStore::open(&path).await.expect("open");
    let started = Instant::now();
    let second = server::start(&config).await;
    let took = started.elapsed();
    let err = second.expect_err("a second controller must not start on a held file");
    let message = err.to_string();
    println!("second controller refused after {took:?}: {message}");
    assert!(
        message.contains(&path.display().to_string())
            && message.contains(&format!("pid {}", std::process::id()))
            && message.contains("another controller is using it"),
        "{message}"
    );
    assert!(took < Duration::from_secs(2), "refused only after {took:?}");
}

/// Child mode: commit three-key transactions forever, announcing each.
fn run_child_writer(path: &Path) {
    runtime().block_on(async {
        let kv = EmbeddedStore::open(path).await.expect("child open");
        let mut stdout = std::io::stdout();
        for i in 0..CHILD_MAX_TXNS {
            let value = i.to_string().into_bytes();
            let ops = PARTS
                .iter()
                .map(|part| TxnOp::Put {
                    key: format!("t/{i:08}/{part}"),
                    value: value.clone(),
                    expect: Expect::Absent,
                })
                .collect();
            kv.txn(ops).await.expect("child txn");
            // A closed pipe (parent gone) ends the child.
            if writeln!(stdout, "committed {i}")
                .and_then(|()| stdout.flush())
                .is_err()
            {
                return;
            }
        }
    });
}

#[test]
fn sigkill_mid_transactions_leaves_only_whole_transactions() {
    if let Some(path) = std::env::var_os(CHILD_ENV) {
        run_child_writer(Path::new(&path));
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.redb");
    let exe = std::env::current_exe().expect("test binary path");
    let mut child = Command::new(exe)
        .args(["--exact", CRASH_TEST, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child writer");
    let stdout = child.stdout.take().expect("child stdout");
    let mut last_acknowledged = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read child output");
        if let Some(n) = line.strip_prefix("committed ") {
            let n: u64 = n.trim().parse().expect("txn number");
            last_acknowledged = Some(n);
            if n + 1 >= COMMITS_BEFORE_KILL {
                break;
            }
        }
    }
    let locked = runtime().block_on(EmbeddedStore::open(&path));
    let child_pid = format!("pid {}", child.id());
    let locked_while_child_runs = matches!(&locked,
        Err(StoreError::Locked { holder, .. }) if holder.contains(&child_pid));
    println!("open while the child writes: {locked:?}");
    drop(locked);
    child.kill().expect("SIGKILL child");
    child.wait().expect("reap child");
    assert!(
        locked_while_child_runs,
        "a store held by another process must be refused, naming it ({child_pid})"
    );
    let last_acknowledged = last_acknowledged.expect("child committed nothing");

    runtime().block_on(async {
        let kv = EmbeddedStore::open(&path)
            .await
            .expect("store opens after a crash");
        let mut groups: BTreeMap<u64, Vec<(String, Vec<u8>)>> = BTreeMap::new();
        for (key, value, _) in kv.list("t/").await.expect("list") {
            let (txn, _) = key["t/".len()..].split_once('/').expect("key shape");
            let txn: u64 = txn.parse().expect("txn number");
            groups.entry(txn).or_default().push((key, value));
        }
        for (txn, entries) in &groups {
            assert_eq!(
                entries.len(),
                PARTS.len(),
                "txn {txn} is partial: {entries:?}"
            );
            for (key, value) in entries {
                assert_eq!(
                    value,
                    txn.to_string().as_bytes(),
                    "{key} has a foreign value"
                );
            }
        }
        let present: Vec<u64> = groups.keys().copied().collect();
        let contiguous: Vec<u64> = (0..present.len() as u64).collect();
        assert_eq!(present, contiguous, "transactions must commit in order");
        assert!(
            present.len() as u64 > last_acknowledged,
            "acknowledged txn {last_acknowledged} lost; only {} present",
            present.len()
        );
    });
}
