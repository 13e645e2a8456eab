//! Replays the recorded spdk_tgt v25.09 transcripts against a sim process:
//! every storage-side call must answer like the real target did.

mod common;

use std::path::PathBuf;

use common::replay::Replayer;

fn transcripts() -> PathBuf {
    let dir = std::env::var_os("SHORTHORN_SPDK_TRANSCRIPTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/work/shared/spdk/transcripts"));
    assert!(dir.is_dir(), "transcripts not found at {}", dir.display());
    dir
}

#[test]
fn storage_transcripts_replay_like_spdk_tgt_including_restart() {
    let dir = transcripts();
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut r = Replayer::new(tmp.path());
    // Target A's history in recording order; d*, g, h, i, j are mostly network
    // lines, but their storage lines change A's state and are replayed too.
    // e was recorded on a fresh target.
    r.replay_file(&dir.join("e_rpc_methods_and_info.jsonl"));
    for f in [
        "a_base_bdevs_lvol",
        "b_snapshots_clones",
        "c_errors",
        "d_nvmf_raid1",
        "d2_datapath_verify",
        "d3_raid1_superblock_and_target_loss",
        "d4_raid1_io_with_failed_leg",
        "f_shallow_copy_set_parent",
        "g_ublk_nbd",
        "h_iostat",
        "i_bdevperf",
        "j_interrupt_mode",
    ] {
        r.replay_file(&dir.join(format!("{f}.jsonl")));
    }
    // k and l each start from a restarted spdk_tgt (SIGTERM); the sim is
    // killed with SIGKILL instead, which must lose nothing either.
    for f in ["k_restart_persistence", "l_final_smoke_s512"] {
        r.restart();
        r.replay_file(&dir.join(format!("{f}.jsonl")));
    }
    r.report();
    assert!(r.checked > 150, "too few calls checked: {}", r.checked);
    assert!(
        r.failures.is_empty(),
        "{} mismatches (see stderr)",
        r.failures.len()
    );
}
