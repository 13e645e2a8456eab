#!/bin/sh
# PID 1 of the vmtest guest (busybox sh). Prepares a minimal system (proc,
# sys, dev, configfs, tmpfs, loopback network, NVMe host identity, kernel
# modules), runs the guest tests and reports the verdict to QEMU through
# isa-debug-exit. It never returns: PID 1 exiting would panic the kernel.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root

# Writes one byte to I/O port 0xf4 (isa-debug-exit): QEMU then exits with
# (byte << 1) | 1, so 0 -> 1 (pass) and 1 -> 3 (fail).
verdict() {
  echo "vmtest-guest: $2"
  sync
  printf '%b' "$1" | dd of=/dev/port bs=1 seek=244 count=1 conv=notrunc 2>/dev/null
  # Only reached when the port write failed: the host sees exit code 0.
  echo "vmtest-guest: cannot write to isa-debug-exit; powering off"
  poweroff -f
  sleep 60
}
pass() { verdict '\000' "PASS: $*"; }
fail() { verdict '\001' "FAIL: $*"; }

/usr/bin/busybox --install -s || fail "busybox --install failed"
mount -t proc proc /proc || fail "mount /proc"
mount -t sysfs sysfs /sys || fail "mount /sys"
mount -t devtmpfs devtmpfs /dev || fail "mount /dev"
mount -t tmpfs tmpfs /tmp || fail "mount /tmp"
mount -t tmpfs tmpfs /run || fail "mount /run"

for m in configfs crc32c_generic nvme-tcp nvmet nvmet-tcp dm-mod ext4 xfs loop ublk_drv; do
  modprobe "$m" || fail "modprobe $m"
done
mount -t configfs configfs /sys/kernel/config || fail "mount configfs"

ip link set lo up || fail "bring up lo"

# The kernel initiator (6.12) wants a host identity; the tests connect with
# the same one in the options string.
hostid=$(cat /proc/sys/kernel/random/uuid)
mkdir -p /etc/nvme
echo "nqn.2014-08.org.nvmexpress:uuid:$hostid" >/etc/nvme/hostnqn
echo "$hostid" >/etc/nvme/hostid

cd /tmp || fail "cd /tmp"
# --real-spdk mode (vmtest/run.sh): the full stack on real SPDK instead.
if [ -x /shorthorn/real-spdk-guest.sh ]; then
  echo "vmtest-guest: kernel $(uname -r), $(nproc) cpus; real SPDK steps"
  if /shorthorn/real-spdk-guest.sh; then
    pass "real-SPDK steps passed"
  else
    echo "vmtest-guest: dmesg tail:"
    dmesg | tail -n 40
    fail "a real-SPDK step failed"
  fi
fi

echo "vmtest-guest: kernel $(uname -r), $(nproc) cpus; running tests"
filter=$(cat /shorthorn/filter 2>/dev/null)
# shellcheck disable=SC2086 # an empty filter must vanish
SHORTHORN_VM_GUEST=1 RUST_BACKTRACE=1 RUST_LOG=info \
  /shorthorn/vm_guest --ignored --test-threads=1 --nocapture $filter
rc=$?
if [ "$rc" -eq 0 ]; then
  pass "guest tests passed"
else
  echo "vmtest-guest: dmesg tail:"
  dmesg | tail -n 40
  fail "guest tests exited with $rc"
fi
