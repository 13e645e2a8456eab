#!/usr/bin/env bash
# Sets up this machine, starts Shorthorn's single-machine mode (three simulated
# storage nodes, embedded store, controller and node service) and runs the
# guided demo against it. The cluster keeps running until Ctrl-C.
# Set SHORTHORN_SPDK_TGT=/path/to/spdk_tgt to use real spdk_tgt processes.
set -euo pipefail
cd "$(dirname "$0")/.."
# Toolchains where rustup and the Go tarball install them, even when this
# shell's PATH lacks them (a fresh login before ~/.cargo/env is sourced);
# the same as scripts/test.sh.
export PATH="$PATH:/usr/local/go/bin:${HOME:-/root}/.cargo/bin:${HOME:-/root}/go/bin"

state_dir=${SHORTHORN_STATE_DIR:-/var/tmp/shorthorn-local}
scripts/setup.sh
cargo build --release -p shorthorn
bin=target/release/shorthorn

"$bin" local down --state-dir "$state_dir" >/dev/null 2>&1 || true
mkdir -p "$state_dir"
log="$state_dir.log"
echo "Starting the local cluster (state: $state_dir, log: $log) ..."
"$bin" local up --state-dir "$state_dir" >"$log" 2>&1 &
up_pid=$!
stop() {
  "$bin" local down --state-dir "$state_dir" || true
  wait "$up_pid" 2>/dev/null || true
}
trap stop INT TERM

for _ in $(seq 1 600); do
  [[ -e "$state_dir/ready" ]] && break
  kill -0 "$up_pid" 2>/dev/null || { echo "shorthorn local up exited; see $log" >&2; tail -n 20 "$log" >&2; exit 1; }
  sleep 0.1
done
[[ -e "$state_dir/ready" ]] || { echo "shorthorn local up did not become ready; see $log" >&2; stop; exit 1; }
echo "Up: CSI on unix://$state_dir/csi.sock, admin API on unix://$state_dir/ctl.sock"
echo

"$bin" ctl demo --csi-endpoint "unix://$state_dir/csi.sock" || { stop; exit 1; }

echo
echo "The local cluster keeps running. Try: $bin ctl --endpoint unix://$state_dir/ctl.sock nodes"
echo "Its log: $log. Press Ctrl-C (or run: $bin local down --state-dir $state_dir) to stop it."
wait "$up_pid"
