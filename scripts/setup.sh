#!/usr/bin/env bash
# Installs what Shorthorn's build, tests and local mode need on a fresh Debian machine.
# Idempotent: installs only what is missing. Needs root for apt (CI runs as root).
set -euo pipefail

need_pkgs=()
want() { command -v "$1" >/dev/null 2>&1 || need_pkgs+=("$2"); }
want etcd etcd-server          # controller state store (tests start a real etcd)
want mkfs.xfs xfsprogs         # xfs volumes
want mkfs.ext4 e2fsprogs       # ext4 volumes
want fusermount3 fuse3         # the sim's ublk stand-in serves bdevs through FUSE
want losetup mount             # loop devices
want blkid util-linux

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
rustup component add rustfmt clippy >/dev/null 2>&1 || true

# Real SPDK (issue #20): when a real spdk_tgt is asked for, its runtime
# packages, hugepages and hugetlbfs. Kept in its own script.
if [[ -n "${SHORTHORN_SPDK_TGT:-}" ]]; then
  "$(dirname "$0")/setup-real-spdk.sh"
fi
