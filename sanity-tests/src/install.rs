//! Installs the real csi-sanity from the Go module proxy.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _};

/// The csi-test release: the newest the Go module proxy serves, and one that
/// knows the GET_SNAPSHOT capability.
pub const CSI_TEST_VERSION: &str = "v5.6.0";

/// The module path of the csi-sanity command.
pub const CSI_SANITY_MODULE: &str = "github.com/kubernetes-csi/csi-test/v5/cmd/csi-sanity";

/// Returns the csi-sanity binary in `tools_dir`, installing it with
/// `go install` when it is missing or of another version.
pub fn ensure_csi_sanity(tools_dir: &Path) -> anyhow::Result<PathBuf> {
    let bin = tools_dir.join("csi-sanity");
    let stamp = tools_dir.join("csi-sanity.version");
    let installed = std::fs::read_to_string(&stamp).unwrap_or_default();
    if bin.exists() && installed.trim() == CSI_TEST_VERSION {
        return Ok(bin);
    }
    std::fs::create_dir_all(tools_dir)
        .with_context(|| format!("creating {}", tools_dir.display()))?;
    let go = which("go").context(
        "the Go toolchain is needed to install csi-sanity: install Go (https://go.dev/dl) and re-run",
    )?;
    println!("installing csi-sanity {CSI_TEST_VERSION} with go install ...");
    let status = Command::new(go)
        .arg("install")
        .arg(format!("{CSI_SANITY_MODULE}@{CSI_TEST_VERSION}"))
        .env("GOBIN", tools_dir)
        .status()
        .context("running go install")?;
    if !status.success() {
        bail!("go install {CSI_SANITY_MODULE}@{CSI_TEST_VERSION} failed ({status})");
    }
    std::fs::write(&stamp, CSI_TEST_VERSION)?;
    Ok(bin)
}

/// Finds `name` on PATH, or in Go's usual install directory.
fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/local/go/bin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}
