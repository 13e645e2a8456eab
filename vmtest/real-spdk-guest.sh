#!/bin/sh
# The steps of `vmtest/run.sh --real-spdk`, run by the guest's /init (busybox
# sh, root, 6.12 kernel with nvme-tcp, ublk and dm): the full stack on real
# SPDK. The SPDK binaries' directory is the host's, mounted read-only over 9p
# (tag `spdk`); nothing of SPDK is packed into the guest but the libraries it
# links.
#
# 1. `shorthorn local up` on real SPDK (node-1 polls in spdk_tgt and
#    assembles raids, node-2 and node-3 serve replicas from
#    `nvmf_tgt --interrupt-mode`; testkit::launch decides), then
#    `shorthorn ctl demo` against it, then the snapshot under a writer through
#    the kernel NVMe/TCP initiator (shorthorn/tests/vm_real_spdk.rs), then
#    `local down`.
# 2. csi-sanity in mount and block mode (shorthorn-sanity, 3 replicas on 3
#    nodes), each mode on a fresh `local up`.
# 3. `shorthorn bench` with small sizes: the real-SPDK table through the
#    kernel initiator (printed; it asserts nothing about time).
#
# /shorthorn/steps names the steps to run (`stack`, `sanity`, `bench`; from
# SHORTHORN_VM_REAL_STEPS on the host, default all three). Each prints
# `vmtest-real: <step> ok in <s>s` or fails the run with the logs that
# explain it. Exit status: 0 when every step passed.
set -u
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
SH=/shorthorn/shorthorn
STATE=/var/tmp/local

say() { echo "vmtest-real: $*"; }
now() { cut -d. -f1 /proc/uptime; }
die() {
  say "FAILED: $*"
  exit 1
}
# Prints the last lines of each file given (the logs of a failed step).
tails() {
  for f in "$@"; do
    [ -f "$f" ] || continue
    echo "---- tail of $f ----"
    tail -n 60 "$f"
  done
}

# --- what SPDK needs in a minimal guest -------------------------------------
modprobe 9pnet_virtio || die "modprobe 9pnet_virtio"
modprobe 9p || die "modprobe 9p"
mkdir -p /spdk
mount -t 9p -o trans=virtio,version=9p2000.L,ro spdk /spdk || die "mount the SPDK directory (9p tag spdk)"
[ -x /spdk/spdk_tgt ] || die "no spdk_tgt in the shared directory"
# DPDK's runtime files, shm_open (spdk_trace), SPDK's core locks; the storage
# nodes' sparse disk files on a tmpfs, which takes O_DIRECT since 6.6.
mkdir -p /var/run /var/tmp /dev/shm /dev/hugepages
mount -t tmpfs tmpfs /dev/shm || die "mount /dev/shm"
mount -t tmpfs -o size=12g tmpfs /var/tmp || die "mount /var/tmp"
# Three nodes (-s 512 and 2 x -s 256) peak at about 805 pages: DPDK maps more than -s.
echo "${SHORTHORN_VM_HUGEPAGES:-1100}" >/proc/sys/vm/nr_hugepages
mount -t hugetlbfs nodev /dev/hugepages || die "mount hugetlbfs"
say "hugepages: $(grep HugePages_Total /proc/meminfo | tr -s ' ')"
export SHORTHORN_SPDK_TGT=/spdk/spdk_tgt
export RUST_BACKTRACE=1
# Plain log lines, so the steps below can grep them.
export NO_COLOR=1
export RUST_LOG=${RUST_LOG:-info}

steps=$(cat /shorthorn/steps 2>/dev/null || echo "stack sanity bench")
wants() { case " $steps " in *" $1 "*) return 0 ;; esac; return 1; }
say "steps: $steps"

# --- 1. local up, the demo, the snapshot under a writer ---------------------
start_local() {
t0=$(now)
rm -rf "$STATE"
mkdir -p "$STATE"
"$SH" local up --state-dir "$STATE" --disk-mib 1024 >/var/tmp/local.log 2>&1 &
up=$!
i=0
while [ ! -e "$STATE/ready" ]; do
  kill -0 "$up" 2>/dev/null || {
    tails /var/tmp/local.log "$STATE"/nodes/*/spdk.log
    die "shorthorn local up exited before it was ready"
  }
  i=$((i + 1))
  [ "$i" -lt 1200 ] || {
    tails /var/tmp/local.log "$STATE"/nodes/*/spdk.log
    die "shorthorn local up not ready within 120 s"
  }
  sleep 0.1
done
say "local up ready in $(($(now) - t0))s"
}
step_failed() {
  tails /var/tmp/local.log "$STATE"/nodes/*/spdk.log
  "$SH" local down --state-dir "$STATE" >/dev/null 2>&1
  die "$1"
}

if wants stack; then
start_local
grep 'storage node started' /var/tmp/local.log | grep -o 'command=.* ready_ms=[0-9]*' | sed 's/^/vmtest-real:   /'

t=$(now)
"$SH" ctl demo --csi-endpoint "unix://$STATE/csi.sock" || step_failed "shorthorn ctl demo"
say "demo ok in $(($(now) - t))s"

t=$(now)
SHORTHORN_VM_LOCAL_STATE=$STATE /shorthorn/vm_real_spdk --ignored --test-threads=1 --nocapture \
  --exact snapshot_under_a_kernel_nvme_tcp_writer_is_the_same_prefix_on_every_replica ||
  step_failed "snapshot under a writer through the kernel initiator (vm_real_spdk)"
# The controller fenced that snapshot (and the demo's) with ANA, not a node quiesce.
fences=$(grep 'fence lifted' /var/tmp/local.log)
echo "$fences" | grep -q 'fence="\?ana' || {
  echo "$fences"
  step_failed "no ANA fence was lifted during the snapshots (controller log: fence lifted)"
}
! echo "$fences" | grep -q 'fence="\?node-quiesce' || step_failed "a snapshot was fenced by node quiesce, not ANA"
say "snapshot under a kernel NVMe/TCP writer ok in $(($(now) - t))s; fences: $(echo "$fences" | grep -o 'fence="\?[a-z-]*"\? held_ms=[0-9.]*' | tr '\n' ' ')"

"$SH" local down --state-dir "$STATE" || step_failed "shorthorn local down"
wait "$up" || die "shorthorn local up exited with an error after local down"
say "local up, demo, snapshot, local down ok in $(($(now) - t0))s"
fi

# --- 2. csi-sanity, mount and block mode ------------------------------------
if wants rebuild; then
start_local
t=$(now)
SHORTHORN_VM_LOCAL_STATE=$STATE /shorthorn/vm_real_spdk --ignored --test-threads=1 --nocapture \
  --exact thin_swap_rebuilds_a_published_replica_under_a_kernel_writer ||
  step_failed "thin swap rebuild of a published volume under a kernel writer (vm_real_spdk)"
grep -q 'thin swap complete' /var/tmp/local.log || step_failed "the controller logged no completed thin swap"
say "thin swap rebuild ok in $(($(now) - t))s; fence hold: $(grep 'client I/O resumed after the raid swap' /var/tmp/local.log | grep -o 'hold_ms=[0-9]*' | tr '\n' ' ')"
grep -E 'rebuild round copied|thin swap complete|thin swap hold by phase|dm device (suspended|resumed)' /var/tmp/local.log | sed 's/^/vmtest-real:   /'
"$SH" local down --state-dir "$STATE" || step_failed "shorthorn local down"
wait "$up" || die "shorthorn local up exited with an error after local down"
fi

if wants sanity; then
t=$(now)
/shorthorn/shorthorn-sanity --shorthorn "$SH" --tools /shorthorn/tools --out /var/tmp/sanity \
  --topology 3-of-3 >/var/tmp/sanity.out 2>&1 || {
  cat /var/tmp/sanity.out
  tails /var/tmp/sanity/*.log /var/tmp/sanity/state-*/nodes/*/spdk.log
  die "csi-sanity"
}
grep -E '^(3-of-3/|sanity:)' /var/tmp/sanity.out | sed 's/^/vmtest-real:   /'
say "csi-sanity (mount and block) ok in $(($(now) - t))s"
fi

# --- 3. the bench, small ----------------------------------------------------
if wants bench; then
t=$(now)
RUST_LOG=warn "$SH" bench --runs "${SHORTHORN_VM_BENCH_RUNS:-5}" --scale-volumes 20 --skip-fio \
  --state-dir /var/tmp/bench >/var/tmp/bench.txt 2>/var/tmp/bench.log || {
  tails /var/tmp/bench.log /var/tmp/bench/nodes/*/spdk.log
  die "shorthorn bench"
}
sed 's/^/vmtest-real: | /' /var/tmp/bench.txt
say "bench ok in $(($(now) - t))s"
fi
exit 0
