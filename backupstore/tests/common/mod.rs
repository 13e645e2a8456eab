//! Helpers shared by the backupstore tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs::File;
use std::time::Duration;

use backupstore::{BackupStore, LockOptions, DEFAULT_BLOCK_SIZE};

pub const BS: u64 = DEFAULT_BLOCK_SIZE;

/// Lock timings short enough for tests; the protocol is the same.
pub fn fast_locks() -> LockOptions {
    LockOptions {
        check_wait: Duration::from_millis(0),
        duration: Duration::from_secs(150),
        refresh: Duration::from_secs(60),
    }
}

/// A local-directory backupstore with fast locks.
pub fn local_store(dir: &std::path::Path) -> BackupStore {
    let url = format!("file://{}", dir.display());
    backupstore::open(&url, &Default::default())
        .expect("open local target")
        .with_lock_options(fast_locks())
}

/// A deterministic 2 MiB block for `(seed, index)`.
pub fn block(seed: u8, index: u64) -> Vec<u8> {
    let mut v = vec![0u8; BS as usize];
    let mut x: u32 = 0x9e37_79b9 ^ (u32::from(seed) << 16) ^ index as u32;
    for chunk in v.chunks_mut(4) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    v
}

/// A "volume" image: which block indexes hold which seed.
pub type Image = BTreeMap<u64, u8>;

pub fn blocks_of(image: &Image) -> Vec<std::io::Result<(u64, Vec<u8>)>> {
    image
        .iter()
        .map(|(&i, &s)| Ok((i * BS, block(s, i))))
        .collect()
}

/// Asserts `file` holds exactly `image`: written blocks equal, every other
/// block a hole (not allocated, per SEEK_DATA) and zero.
pub fn assert_file_is(file: &std::path::Path, image: &Image, nblocks: u64) {
    let f = File::open(file).expect("open restored file");
    assert_eq!(f.metadata().unwrap().len(), nblocks * BS, "restored size");
    let data_blocks =
        backupstore::extents::data_block_offsets(&backupstore::extents::data_extents(&f).unwrap());
    let want: Vec<u64> = image.keys().map(|i| i * BS).collect();
    assert_eq!(data_blocks, want, "allocated blocks of the restored file");
    let bytes = std::fs::read(file).unwrap();
    for i in 0..nblocks {
        let got = &bytes[(i * BS) as usize..((i + 1) * BS) as usize];
        match image.get(&i) {
            Some(&s) => assert!(got == block(s, i).as_slice(), "block {i} differs"),
            None => assert!(got.iter().all(|&b| b == 0), "hole {i} is not zero"),
        }
    }
}
