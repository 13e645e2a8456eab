#!/usr/bin/env bash
# Runs every Shorthorn check: formatting, lints and the whole test suite.
# This is the command in the README and the one CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
# Toolchains installed outside the default PATH on Debian images (Go for
# csi-sanity and kustomize; rustup's cargo).
export PATH="$PATH:/usr/local/go/bin:${HOME:-/root}/.cargo/bin:${HOME:-/root}/go/bin"

scripts/setup.sh
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
cargo test --workspace

# The tests that need a real spdk_tgt (they skip without SHORTHORN_SPDK_TGT),
# against ../shared/spdk/bin/spdk_tgt when it is there (or SHORTHORN_SPDK_TGT);
# prints "skipped: no real spdk_tgt at ..." otherwise. About 75 s, reusing
# the test binaries `cargo test --workspace` built.
echo "== real spdk_tgt tests"
scripts/test-real-spdk.sh

# Kubernetes manifests (deploy/): render with the pinned kustomize, validate
# against the Kubernetes schemas, cross-check with the binary (issue #8).
echo "== deploy manifests"
deploy/tests/check.sh

# Real-kernel tests of the node's NVMe/TCP and device-mapper paths in a
# throwaway QEMU VM (issue #10); vmtest/run.sh installs what it needs.
echo "== real-kernel VM tests"
vmtest/run.sh
SHORTHORN_VM_REAL_STEPS=stack vmtest/run.sh --real-spdk

# shorthorn bench with tiny sizes (issue #9): proves the harness runs end to
# end and prints its table; it asserts nothing about time.
echo "== shorthorn bench (smoke)"
cargo build --bins -p shorthorn
RUST_LOG=warn target/debug/shorthorn bench --runs 2 --scale-volumes 10 --skip-fio --state-dir "${TMPDIR:-/tmp}/shorthorn-bench-smoke"

# CSI conformance: the real csi-sanity (installed with go install) against
# `shorthorn local up`, two topologies, mount and block mode (issue #7).
# It runs last so its summary line is the last line CI prints.
echo "== csi-sanity"
cargo build --bins -p shorthorn -p sanity-tests
target/debug/shorthorn-sanity
