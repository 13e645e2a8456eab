//! The demo's test data: a deterministic, incompressible pattern file and
//! its SHA-256.

use std::io::{Read, Write};
use std::path::Path;

use anyhow::Context as _;
use sha2::{Digest, Sha256};

/// `len` bytes of an xorshift sequence seeded by `seed`: the same bytes on
/// every run, and no two 8-byte words alike in practice.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Lower-case hex SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes `data` to `path` and makes it durable (file and directory).
pub fn write_durably(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    let mut file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(data)
        .with_context(|| format!("writing {}", path.display()))?;
    file.sync_all()
        .with_context(|| format!("syncing {}", path.display()))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("syncing {}", dir.display()))?;
    }
    Ok(())
}

/// SHA-256 and length of the file at `path`.
pub fn file_sha256(path: &Path) -> anyhow::Result<(String, usize)> {
    let mut data = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut data))
        .with_context(|| format!("reading {}", path.display()))?;
    Ok((sha256(&data), data.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pattern_is_reproducible_and_checksummed() {
        let a = pattern(1 << 20, 7);
        assert_eq!(a, pattern(1 << 20, 7));
        assert_ne!(a, pattern(1 << 20, 8));
        assert_eq!(
            sha256(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        write_durably(&path, &a).expect("write");
        assert_eq!(file_sha256(&path).expect("read"), (sha256(&a), a.len()));
    }
}
