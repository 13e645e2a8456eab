//! Which real SPDK binaries to use, from the environment.
//!
//! Users bring their own SPDK: nothing here ships or downloads a binary.
//! - `SHORTHORN_SPDK_TGT` names `spdk_tgt`; when it is unset the sim plays every node.
//! - `SHORTHORN_NVMF_TGT` names `nvmf_tgt` for replica-only nodes; when unset, an
//!   `nvmf_tgt` next to `spdk_tgt` is used if there is one. Set it to an empty
//!   string to run replica nodes as `spdk_tgt --interrupt-mode` instead.
//! - `SHORTHORN_SPDK_DD` names `spdk_dd`, the userspace initiator the data path
//!   uses on real nodes; when unset, an `spdk_dd` next to `spdk_tgt` is used.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::nodes::NodesError;

/// Environment variable naming a real `spdk_tgt` binary; when set, nodes run it.
pub const SPDK_TGT_ENV: &str = "SHORTHORN_SPDK_TGT";
/// Environment variable naming `nvmf_tgt` for replica-only nodes.
pub const NVMF_TGT_ENV: &str = "SHORTHORN_NVMF_TGT";
/// Environment variable naming `spdk_dd` for the data path on real nodes.
pub const SPDK_DD_ENV: &str = "SHORTHORN_SPDK_DD";

/// The real SPDK binaries the environment names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealSpdk {
    /// `spdk_tgt`: every node that assembles raids runs it (polling).
    pub spdk_tgt: PathBuf,
    /// `nvmf_tgt` for replica-only nodes (`--interrupt-mode`, about 1 % of a
    /// core when idle, against nearly 100 % for `spdk_tgt --interrupt-mode`);
    /// `None`: replica nodes run `spdk_tgt --interrupt-mode`.
    pub nvmf_tgt: Option<PathBuf>,
    /// `spdk_dd`, if found.
    pub spdk_dd: Option<PathBuf>,
}

impl RealSpdk {
    /// Reads [`SPDK_TGT_ENV`], [`NVMF_TGT_ENV`] and [`SPDK_DD_ENV`]. `Ok(None)`
    /// when no real spdk_tgt is asked for; an error when a named file is missing.
    pub fn from_env() -> Result<Option<Self>, NodesError> {
        Self::from_vars(
            std::env::var_os(SPDK_TGT_ENV),
            std::env::var_os(NVMF_TGT_ENV),
            std::env::var_os(SPDK_DD_ENV),
        )
    }

    /// [`Self::from_env`] on explicit values (for tests of the rules).
    pub fn from_vars(
        spdk_tgt: Option<OsString>,
        nvmf_tgt: Option<OsString>,
        spdk_dd: Option<OsString>,
    ) -> Result<Option<Self>, NodesError> {
        let Some(spdk_tgt) = spdk_tgt.filter(|v| !v.is_empty()).map(PathBuf::from) else {
            return Ok(None);
        };
        let spdk_tgt = existing(SPDK_TGT_ENV, spdk_tgt)?;
        let nvmf_tgt = match nvmf_tgt {
            Some(v) if v.is_empty() => None,
            Some(v) => Some(existing(NVMF_TGT_ENV, PathBuf::from(v))?),
            None => sibling(&spdk_tgt, "nvmf_tgt"),
        };
        let spdk_dd = match spdk_dd.filter(|v| !v.is_empty()) {
            Some(v) => Some(existing(SPDK_DD_ENV, PathBuf::from(v))?),
            None => sibling(&spdk_tgt, "spdk_dd"),
        };
        Ok(Some(Self {
            spdk_tgt,
            nvmf_tgt,
            spdk_dd,
        }))
    }

    /// `spdk_dd`, or an error saying how to name it.
    pub fn require_spdk_dd(&self) -> Result<&Path, NodesError> {
        self.spdk_dd.as_deref().ok_or_else(|| {
            NodesError::Binary(format!(
                "reading and writing bdevs on real SPDK needs spdk_dd: set {SPDK_DD_ENV}=/path/to/spdk_dd \
                 (none next to {})",
                self.spdk_tgt.display()
            ))
        })
    }
}

fn existing(var: &str, path: PathBuf) -> Result<PathBuf, NodesError> {
    if path.is_file() {
        Ok(path)
    } else {
        Err(NodesError::Binary(format!(
            "{var}={} is not a file",
            path.display()
        )))
    }
}

fn sibling(spdk_tgt: &Path, name: &str) -> Option<PathBuf> {
    let candidate = spdk_tgt.parent()?.join(name);
    candidate.is_file().then_some(candidate)
}

/// The message a test prints when it skips because no real spdk_tgt is named.
pub fn skip_message(test: &str) -> String {
    format!(
        "SKIPPED {test}: needs a real spdk_tgt. Point {SPDK_TGT_ENV} at one, e.g. \
         `{SPDK_TGT_ENV}=/work/shared/spdk/bin/spdk_tgt cargo test ...` (nvmf_tgt and spdk_dd are \
         taken from the same directory, or from {NVMF_TGT_ENV} and {SPDK_DD_ENV}); it needs 2 MiB \
         hugepages and hugetlbfs on /dev/hugepages (`SHORTHORN_SPDK_TGT=... scripts/setup.sh`)"
    )
}

/// The real binaries, or `None` after printing [`skip_message`] for `test`.
/// Panics when the environment names a binary that does not exist, so a
/// mistyped path fails loudly instead of skipping.
pub fn real_or_skip(test: &str) -> Option<RealSpdk> {
    match RealSpdk::from_env() {
        Ok(Some(real)) => Some(real),
        Ok(None) => {
            eprintln!("{}", skip_message(test));
            None
        }
        Err(e) => panic!("{test}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_or_empty_spdk_tgt_means_the_sim() {
        assert_eq!(RealSpdk::from_vars(None, None, None).unwrap(), None);
        assert_eq!(
            RealSpdk::from_vars(Some("".into()), None, None).unwrap(),
            None
        );
    }

    #[test]
    fn a_missing_binary_is_an_error_naming_the_variable() {
        let e = RealSpdk::from_vars(Some("/nonexistent/spdk_tgt".into()), None, None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(SPDK_TGT_ENV) && e.contains("/nonexistent/spdk_tgt"),
            "{e}"
        );
    }

    #[test]
    fn siblings_are_found_and_an_empty_nvmf_tgt_turns_it_off() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["spdk_tgt", "nvmf_tgt", "spdk_dd"] {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        let tgt: OsString = dir.path().join("spdk_tgt").into();
        let real = RealSpdk::from_vars(Some(tgt.clone()), None, None)
            .unwrap()
            .unwrap();
        assert_eq!(real.nvmf_tgt, Some(dir.path().join("nvmf_tgt")));
        assert_eq!(real.spdk_dd, Some(dir.path().join("spdk_dd")));
        let off = RealSpdk::from_vars(Some(tgt), Some("".into()), None)
            .unwrap()
            .unwrap();
        assert_eq!(off.nvmf_tgt, None);
    }
}
