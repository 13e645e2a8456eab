#!/usr/bin/env bash
# Prepares this machine to run real SPDK (SHORTHORN_SPDK_TGT) for tests, CI,
# `shorthorn local up` and `shorthorn bench`. Called by scripts/setup.sh when
# SHORTHORN_SPDK_TGT is set; safe to run again (only adds what is missing).
#   - the Debian runtime packages the SPDK v25.09 binaries link against;
#   - 2 MiB hugepages (SHORTHORN_HUGEPAGES, default 2048 = 4 GiB; never lowers
#     a larger reservation): an engine node takes about 440 pages with -s 512;
#   - hugetlbfs mounted on /dev/hugepages;
#   - /var/run and a tmpfs on /dev/shm, which DPDK needs in minimal containers.
# Needs root only for what is missing: on a machine already prepared it runs
# as any user; otherwise it says what it cannot do and the command that would.
set -euo pipefail

bin="${SHORTHORN_SPDK_TGT:?set SHORTHORN_SPDK_TGT to the spdk_tgt binary}"
pages="${SHORTHORN_HUGEPAGES:-2048}"

if [[ ! -x "$bin" ]]; then
  echo "setup: SHORTHORN_SPDK_TGT=$bin is not an executable file" >&2
  exit 1
fi

# Stops with what is missing and how to do it by hand, when not root.
need_root() {
  if ((EUID != 0)); then
    echo "setup: real SPDK needs $1, which needs root (this runs as $(id -un)):" \
         "rerun as root (sudo -E $0) or do it by hand: $2" >&2
    exit 1
  fi
}

runtime_pkgs=(libaio1 libbsd0 libfuse3-3 libkeyutils1 libnuma1 libssl3 liburing2 libuuid1 openssl)
missing=()
for p in "${runtime_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  need_root "the packages ${missing[*]}" "apt-get install ${missing[*]}"
  echo "setup: installing SPDK runtime packages ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
for b in "$bin" "$(dirname "$bin")/nvmf_tgt" "$(dirname "$bin")/spdk_dd" ${SHORTHORN_NVMF_TGT:+"$SHORTHORN_NVMF_TGT"} ${SHORTHORN_SPDK_DD:+"$SHORTHORN_SPDK_DD"}; do
  [[ -x "$b" ]] || continue
  if ldd "$b" 2>/dev/null | grep -q "not found"; then
    echo "setup: $b misses shared libraries:" >&2
    ldd "$b" | grep "not found" >&2
    exit 1
  fi
done

have=$(cat /proc/sys/vm/nr_hugepages)
if ((have < pages)); then
  need_root "$pages hugepages of 2 MiB (has $have)" "sysctl -w vm.nr_hugepages=$pages"
  echo "setup: reserving $pages hugepages of 2 MiB (had $have)"
  if ! { echo "$pages" > /proc/sys/vm/nr_hugepages; } 2>/dev/null; then
    echo "setup: cannot write /proc/sys/vm/nr_hugepages (read-only: a container without" \
         "privileges?); reserve $pages hugepages on the host (sysctl vm.nr_hugepages=$pages)" >&2
    exit 1
  fi
  have=$(cat /proc/sys/vm/nr_hugepages)
  if ((have < pages)); then
    echo "setup: the kernel reserved only $have of $pages hugepages (memory is fragmented or short);" \
         "free memory or set SHORTHORN_HUGEPAGES lower" >&2
    exit 1
  fi
fi

if ! awk '$2 == "/dev/hugepages" && $3 == "hugetlbfs" { found = 1 } END { exit !found }' /proc/mounts; then
  need_root "hugetlbfs on /dev/hugepages" "mkdir -p /dev/hugepages && mount -t hugetlbfs nodev /dev/hugepages"
  echo "setup: mounting hugetlbfs on /dev/hugepages"
  mkdir -p /dev/hugepages
  if ! mount -t hugetlbfs nodev /dev/hugepages; then
    echo "setup: mounting hugetlbfs failed (a container without CAP_SYS_ADMIN?);" \
         "mount it on the host or give the container /dev/hugepages" >&2
    exit 1
  fi
fi

[[ -d /var/run ]] || need_root "/var/run" "mkdir -p /var/run"
mkdir -p /var/run
if ! awk '$2 == "/dev/shm" && $3 == "tmpfs" { found = 1 } END { exit !found }' /proc/mounts; then
  need_root "a tmpfs on /dev/shm" "mount -t tmpfs tmpfs /dev/shm"
  echo "setup: mounting a tmpfs on /dev/shm (DPDK's shm_open)"
  mkdir -p /dev/shm
  mount -t tmpfs tmpfs /dev/shm
fi

if [[ ! -w /dev/hugepages ]]; then
  echo "setup: $(id -un) cannot create files in /dev/hugepages, where spdk_tgt maps its memory:" \
       "run as root, or mount hugetlbfs for this user (mount -t hugetlbfs -o uid=$(id -u) nodev /dev/hugepages)" >&2
  exit 1
fi

free=$(awk '/^HugePages_Free:/ { print $2 }' /proc/meminfo)
echo "setup: real SPDK ready: $bin, $free of $have hugepages free, hugetlbfs on /dev/hugepages"
