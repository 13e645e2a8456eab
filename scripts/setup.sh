#!/usr/bin/env bash
# Installs what Shorthorn's build, tests and local mode need on a fresh Debian machine.
# Idempotent: installs only what is missing. Needs root for apt (CI runs as root).
set -euo pipefail

# Each check tests the file or command that is used, the way it is used
# (issue #23): the tools by name on PATH, as the node and the tests run them.
need_pkgs=()
want() { command -v "$1" >/dev/null 2>&1 || need_pkgs+=("$2"); }
# cargo links through cc, and ring's build script compiles C: compile and link.
cc_links() {
  local out rc
  out=$(mktemp) || return 1
  printf 'int main(void) { return 0; }\n' | cc -x c -o "$out" - >/dev/null 2>&1
  rc=$?
  rm -f "$out"
  return "$rc"
}
# Controller state store: testkit starts this binary, not whichever etcd is on PATH.
[[ -x ${SHORTHORN_ETCD_BIN:-/usr/bin/etcd} ]] || need_pkgs+=(etcd-server)
want mkfs.xfs xfsprogs         # xfs volumes
want mkfs.ext4 e2fsprogs       # ext4 volumes
want fusermount3 fuse3         # the sim's ublk stand-in serves bdevs through FUSE
want losetup mount             # loop devices
want blkid util-linux
want kill procps               # testkit stops storage nodes with kill(1)
cc_links || need_pkgs+=(gcc libc6-dev)
# deploy/tests/check.sh and the grpcio interop test create Python venvs;
# Debian ships venv's ensurepip apart from python3.
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need_pkgs+=(python3-venv)

if ((${#need_pkgs[@]})); then
  echo "setup: installing ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install Rust with rustup (https://rustup.rs) and re-run" >&2
  exit 1
fi
# scripts/test.sh runs `cargo fmt` and `cargo clippy`: check those, not rustup.
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  rustup component add rustfmt clippy >/dev/null 2>&1 || true
  cargo fmt --version >/dev/null 2>&1 && cargo clippy --version >/dev/null 2>&1 || {
    echo "setup: cargo fmt and cargo clippy are needed (rustup component add rustfmt clippy)" >&2
    exit 1
  }
fi

# Backup tests (issue #17) run against a real S3 server: moto's. Kept in a
# venv of its own (Debian's python3 refuses pip installs system-wide);
# backupstore/tests/s3_moto.rs looks for it there when moto_server is not on PATH.
moto_dir=${SHORTHORN_MOTO_DIR:-/opt/shorthorn/moto}
if ! command -v moto_server >/dev/null 2>&1 && [[ ! -x $moto_dir/bin/moto_server ]]; then
  echo "setup: installing moto[server] into $moto_dir"
  python3 -m venv "$moto_dir"
  "$moto_dir/bin/pip" install -q 'moto[server]'
fi

# Real SPDK (issue #20): when a real spdk_tgt is asked for, its runtime
# packages, hugepages and hugetlbfs. Kept in its own script.
if [[ -n "${SHORTHORN_SPDK_TGT:-}" ]]; then
  "$(dirname "$0")/setup-real-spdk.sh"
fi
