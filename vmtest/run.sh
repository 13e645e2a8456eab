#!/usr/bin/env bash
# Real-kernel VM tests (issue #10): boots a throwaway QEMU guest (TCG, no KVM
# needed) on a Debian bookworm-backports kernel that has nvme-tcp, nvmet,
# device-mapper and ublk, and runs node/tests/vm_guest.rs inside it as root
# (built with feature real-ublk, which needs libclang: installed when missing).
#
# The kernel and a base initramfs (busybox, mkfs/blkid/dmsetup tools, kernel
# modules) are cached under $SHORTHORN_VM_CACHE (default
# ~/.cache/shorthorn-vm); every run appends a small cpio holding /init and
# the freshly built test binary.
#
# Environment:
#   SHORTHORN_VM_CACHE        cache directory
#   SHORTHORN_VM_REFRESH=1    resolve the newest backports kernel again
#   SHORTHORN_VM_ALLOW_SKIP=1 exit 0 with a SKIP message when QEMU cannot be
#                             installed (never set in CI: there it fails)
#   SHORTHORN_VM_TIMEOUT      hard limit for the guest, seconds (300)
#   SHORTHORN_VM_FILTER       only run guest tests whose name contains this
#
# `vmtest/run.sh --real-spdk` boots the same kernel to run the full stack on
# real SPDK instead (vmtest/real-spdk-guest.sh): real spdk_tgt/nvmf_tgt
# processes under `shorthorn local up`, the demo, csi-sanity in mount and
# block mode, and a snapshot under a writer through the kernel NVMe/TCP
# initiator (shorthorn/tests/vm_real_spdk.rs). The SPDK binaries are never
# copied: their directory (SHORTHORN_SPDK_TGT's, default
# ../shared/spdk/bin beside the repository; absent: the mode skips) is
# shared read-only into the guest over 9p; only the host libraries they
# link are packed. TCG unless SHORTHORN_VM_ACCEL=kvm, and more memory
# (SHORTHORN_VM_MEM_MIB, default 4096; hugepages inside).
# SHORTHORN_VM_REAL_STEPS picks the guest's steps: `stack` (local up, the
# demo, the snapshot under a writer), `sanity` (csi-sanity, mount and
# block), `bench` (a small `shorthorn bench`); default all three. Not in
# the default: `rebuild` (the thin swap rebuild of a published volume under
# a kernel writer, shorthorn/tests/vm_real_spdk.rs).
#
# The guest reports through isa-debug-exit: QEMU exits 1 when every test
# passed, 3 when one failed; anything else (0: the guest died without a
# verdict, 124: timeout) is a failure too. The serial log is kept in
# target/vmtest/guest.log.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

MODE=kernel
case ${1:-} in
  "") ;;
  --real-spdk) MODE=real-spdk ;;
  *)
    echo "usage: vmtest/run.sh [--real-spdk]" >&2
    exit 2
    ;;
esac

CACHE=${SHORTHORN_VM_CACHE:-${HOME:-/root}/.cache/shorthorn-vm}
if [[ $MODE == real-spdk ]]; then
  TIMEOUT=${SHORTHORN_VM_TIMEOUT:-2400}
else
  TIMEOUT=${SHORTHORN_VM_TIMEOUT:-300}
fi
OUT=$ROOT/target/vmtest
LOG=$OUT/guest.log
SUITE=bookworm-backports
MIRROR=http://deb.debian.org/debian
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
# Modules the guest loads (their dependencies are resolved with modprobe).
# 9p and 9pnet_virtio mount the SPDK binaries' directory in --real-spdk mode.
MODULES=(configfs nvme-tcp nvmet-tcp dm-mod ext4 xfs loop brd ublk_drv crc32c_generic 9p 9pnet_virtio)
# Host tools the node's kernel layer runs, copied with their libraries.
TOOLS=(mkfs.ext4 resize2fs e2fsck blkid mkfs.xfs xfs_growfs dmsetup losetup dd)

say() { echo "vmtest: $*" >&2; }
die() {
  say "ERROR: $*"
  exit 1
}

# --- host packages ----------------------------------------------------------

apt_updated=0
apt_install() {
  command -v apt-get >/dev/null 2>&1 || return 1
  export DEBIAN_FRONTEND=noninteractive
  if ((apt_updated == 0)); then
    apt-get update -qq || return 1
    apt_updated=1
  fi
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# bindgen (spdk-sim's feature real-ublk, libublk's bindings) loads libclang
# where clang-sys looks for it; find-libclang.sh searches the same places.
# A broader probe took llvm-*-dev's libclang-cpp.so for libclang (issue #23).
has_libclang() {
  "$ROOT/vmtest/find-libclang.sh" >/dev/null
}

# The kernel header libublk's bindings are generated from (linux-libc-dev).
UBLK_HEADER=/usr/include/linux/ublk_cmd.h

ensure_packages() {
  local need=()
  want() { command -v "$1" >/dev/null 2>&1 || need+=("$2"); }
  want busybox busybox-static
  want mkfs.xfs xfsprogs
  want mkfs.ext4 e2fsprogs
  want dmsetup dmsetup
  want cpio cpio
  want xz xz-utils
  want depmod kmod               # and modprobe
  want losetup mount
  want blkid util-linux
  want strip binutils
  if ! command -v qemu-system-x86_64 >/dev/null 2>&1; then
    need+=(qemu-system-x86)
  fi
  # spdk-sim's feature real-ublk (libublk's bindings) runs bindgen.
  has_libclang || need+=(libclang-dev)
  [[ -f $UBLK_HEADER ]] || need+=(linux-libc-dev)
  # The private apt state that fetches the guest kernel verifies with it.
  [[ -f $KEYRING ]] || need+=(debian-archive-keyring)
  if ((${#need[@]})); then
    say "installing ${need[*]}"
    apt_install "${need[@]}" || say "could not install ${need[*]}"
  fi
  if ! command -v qemu-system-x86_64 >/dev/null 2>&1; then
    if [[ ${SHORTHORN_VM_ALLOW_SKIP:-} == 1 ]]; then
      echo "SKIP: real-kernel VM tests: qemu-system-x86_64 is missing and could not be installed"
      exit 0
    fi
    die "qemu-system-x86_64 is missing and could not be installed (set SHORTHORN_VM_ALLOW_SKIP=1 to skip)"
  fi
  for t in busybox cpio depmod modprobe xz strip "${TOOLS[@]}"; do
    command -v "$t" >/dev/null 2>&1 || die "$t is missing"
  done
  has_libclang || die "bindgen finds no libclang (vmtest/find-libclang.sh searches where it looks;" \
    "libclang-dev: $(dpkg-query -W -f='${Status}' libclang-dev 2>/dev/null || echo 'not installed'))"
  [[ -f $UBLK_HEADER ]] || die "$UBLK_HEADER is missing (apt-get install linux-libc-dev)"
  [[ -f $KEYRING ]] || die "$KEYRING is missing (apt-get install debian-archive-keyring)"
}

# --- kernel -----------------------------------------------------------------

# apt with a private state dir holding only bookworm-backports: this
# machine's own sources and packages are never touched.
APT_DIR=$CACHE/apt
apt_private() {
  local cmd=$1
  shift
  "$cmd" -o Dir::Etc::SourceList="$APT_DIR/sources.list" \
    -o Dir::Etc::SourceParts=/dev/null \
    -o Dir::State::Lists="$APT_DIR/lists" \
    -o Dir::Cache="$APT_DIR/cache" \
    -o Debug::NoLocking=1 "$@"
}

# Prints the kernel version (e.g. 6.12.95+deb12-amd64), fetching the
# kernel into $CACHE/kernel-<version> when it is not cached yet.
fetch_kernel() {
  local kver=""
  if [[ -f $CACHE/current && ${SHORTHORN_VM_REFRESH:-} != 1 ]]; then
    kver=$(<"$CACHE/current")
    if [[ -f $CACHE/kernel-$kver/.complete && $(<"$CACHE/kernel-$kver/.complete") == "${MODULES[*]}" ]]; then
      echo "$kver"
      return
    fi
  fi
  mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/cache/archives/partial"
  echo "deb [signed-by=$KEYRING] $MIRROR $SUITE main" >"$APT_DIR/sources.list"
  say "resolving linux-image-amd64 in $SUITE"
  apt_private apt-get update -qq >&2 || die "apt-get update for $SUITE failed"
  local pkg
  pkg=$(apt_private apt-cache depends linux-image-amd64 |
    sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -n1)
  [[ -n $pkg ]] || die "cannot resolve linux-image-amd64 in $SUITE"
  kver=${pkg#linux-image-}
  local kdir=$CACHE/kernel-$kver
  if [[ ! -f $kdir/.complete || $(<"$kdir/.complete") != "${MODULES[*]}" ]]; then
    local tmp
    tmp=$(mktemp -d "$CACHE/fetch.XXXXXX")
    say "downloading $pkg"
    chmod 755 "$tmp"
    (cd "$tmp" && apt_private apt-get download -qq "$pkg" >&2) || die "apt-get download $pkg failed"
    dpkg -x "$tmp"/*.deb "$tmp/root"
    prune_modules "$tmp/root" "$kver" "$tmp/mods"
    rm -rf "$kdir"
    mkdir -p "$kdir"
    cp "$tmp/root/boot/vmlinuz-$kver" "$kdir/vmlinuz"
    mv "$tmp/mods" "$kdir/modules"
    rm -rf "$tmp"
    # The module set it was pruned for: another set fetches it again.
    echo "${MODULES[*]}" >"$kdir/.complete"
  fi
  echo "$kver" >"$CACHE/current"
  echo "$kver"
}

# Copies MODULES and their dependencies, xz-decompressed, from the unpacked
# package under $1 into a module tree under $3, and indexes it with depmod.
prune_modules() {
  local src=$1 kver=$2 dst=$3 m line path rel
  say "indexing modules of $kver"
  depmod -b "$src" "$kver"
  local moddir=lib/modules/$kver
  [[ -d $src/$moddir ]] || moddir=usr/lib/modules/$kver
  mkdir -p "$dst/lib/modules/$kver"
  for m in "${MODULES[@]}"; do
    modprobe -d "$src" -S "$kver" --show-depends "$m" >"$dst/deps" ||
      die "module $m not found in $kver"
    while read -r line; do
      [[ $line == insmod* ]] || continue
      path=$(awk '{print $2}' <<<"$line")
      rel=${path#"$src/$moddir/"}
      mkdir -p "$dst/lib/modules/$kver/$(dirname "$rel")"
      case $rel in
        *.xz) xz -dc "$path" >"$dst/lib/modules/$kver/${rel%.xz}" ;;
        *.zst) zstd -qdc "$path" >"$dst/lib/modules/$kver/${rel%.zst}" ;;
        *) cp "$path" "$dst/lib/modules/$kver/$rel" ;;
      esac
    done <"$dst/deps"
  done
  rm -f "$dst/deps"
  cp "$src/$moddir/modules.builtin" "$src/$moddir/modules.order" "$dst/lib/modules/$kver/"
  cp "$src/$moddir/modules.builtin.modinfo" "$dst/lib/modules/$kver/" 2>/dev/null || true
  depmod -b "$dst" "$kver"
}

# --- initramfs --------------------------------------------------------------

# Copies the shared libraries executable $1 needs to the same paths under
# root $2 (nothing for a static executable).
copy_libs() {
  local bin=$1 root=$2 lib
  while read -r lib; do
    [[ -n $lib && ! -e $root/$lib ]] || continue
    install -D -m 0755 "$(readlink -f "$lib")" "$root/$lib"
  done < <(ldd "$bin" 2>/dev/null | grep -o '/[^ ]*' || true)
}

# Copies executable $1 to the same path under root $2, with its libraries.
copy_with_libs() {
  install -D -m 0755 "$(readlink -f "$1")" "$2/$1"
  copy_libs "$1" "$2"
}

# A merged-/usr skeleton.
skeleton() {
  local root=$1
  mkdir -p "$root"/usr/{bin,sbin,lib,lib64} "$root"/{dev,proc,sys,tmp,run,etc,root}
  ln -s usr/bin "$root/bin"
  ln -s usr/sbin "$root/sbin"
  ln -s usr/lib "$root/lib"
  ln -s usr/lib64 "$root/lib64"
}

pack() {
  (cd "$1" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc -R 0:0 --quiet)
}

# Prints the path of the cached base image for kernel $1, building it when
# the script or the host tools changed.
base_image() {
  local kver=$1 key t root img
  key=$(
    {
      sha256sum "$ROOT/vmtest/run.sh"
      for t in busybox "${TOOLS[@]}"; do
        stat -L -c '%n %s %Y' "$(command -v "$t")"
      done
    } | sha256sum | cut -c1-16
  )
  img=$CACHE/kernel-$kver/base-$key.cpio.gz
  if [[ ! -f $img ]]; then
    say "building base initramfs for $kver"
    root=$(mktemp -d "$CACHE/base.XXXXXX")
    skeleton "$root"
    install -m 0755 "$(readlink -f "$(command -v busybox)")" "$root/usr/bin/busybox"
    copy_libs "$(command -v busybox)" "$root"
    ln -s busybox "$root/usr/bin/sh"
    for t in "${TOOLS[@]}"; do
      copy_with_libs "$(command -v "$t")" "$root"
    done
    [[ -f /etc/mke2fs.conf ]] && cp /etc/mke2fs.conf "$root/etc/"
    cp -a "$CACHE/kernel-$kver/modules/lib/modules" "$root/usr/lib/"
    rm -f "$CACHE/kernel-$kver"/base-*.cpio.gz
    pack "$root" | gzip -1 >"$img.tmp"
    mv "$img.tmp" "$img"
    rm -rf "$root"
  fi
  echo "$img"
}

# Builds the guest test binary and prints its path. Feature real-ublk lets
# the in-process spdk-sim of the ublk test serve kernel ublk devices.
CARGO_TEST=(cargo test -p shorthorn-node --features real-ublk --test vm_guest --no-run)
build_tests() {
  local json exe
  say "building node/tests/vm_guest.rs"
  if ! json=$("${CARGO_TEST[@]}" --message-format=json); then
    # Show the compiler's messages in their usual form.
    "${CARGO_TEST[@]}" >&2 || true
    die "building the guest tests failed"
  fi
  exe=$(grep '"reason":"compiler-artifact"' <<<"$json" | grep '"name":"vm_guest"' |
    grep -o '"executable":"[^"]*"' | tail -n1 | cut -d'"' -f4)
  [[ -n $exe && -x $exe ]] || die "cannot find the vm_guest test executable in cargo's output"
  echo "$exe"
}

# --- real SPDK mode ---------------------------------------------------------

# The directory of the SPDK binaries (shared into the guest, never copied):
# SHORTHORN_SPDK_TGT's, or ../shared/spdk/bin beside the repository.
# Exits 0 with a SKIP line when there is none.
spdk_dir() {
  local tgt=${SHORTHORN_SPDK_TGT:-$(cd "$ROOT/.." && pwd)/shared/spdk/bin/spdk_tgt}
  if [[ ! -f $tgt ]]; then
    [[ -z ${SHORTHORN_SPDK_TGT:-} ]] || die "SHORTHORN_SPDK_TGT=$tgt is not a file"
    echo "SKIP: real-SPDK VM tests: no spdk_tgt at $tgt (set SHORTHORN_SPDK_TGT=/path/to/spdk_tgt;" \
      "nvmf_tgt and spdk_dd are taken from the same directory)" >&2
    exit 0
  fi
  [[ $(basename "$tgt") == spdk_tgt ]] || die "SHORTHORN_SPDK_TGT must name a file called spdk_tgt (got $tgt)"
  (cd "$(dirname "$tgt")" && pwd)
}

# The shorthorn binaries and the guest test against `local up`, with their paths
# printed one a line: shorthorn, shorthorn-sanity, vm_real_spdk.
REAL_TEST=(cargo test -p shorthorn --test vm_real_spdk --no-run)
build_real() {
  local json exe
  say "building shorthorn, shorthorn-sanity and shorthorn/tests/vm_real_spdk.rs"
  cargo build --bins -p shorthorn -p sanity-tests >&2 || die "building shorthorn failed"
  if ! json=$("${REAL_TEST[@]}" --message-format=json); then
    "${REAL_TEST[@]}" >&2 || true
    die "building the real-SPDK guest test failed"
  fi
  exe=$(grep '"reason":"compiler-artifact"' <<<"$json" | grep '"name":"vm_real_spdk"' |
    grep -o '"executable":"[^"]*"' | tail -n1 | cut -d'"' -f4)
  [[ -n $exe && -x $exe ]] || die "cannot find the vm_real_spdk test executable in cargo's output"
  echo "$ROOT/target/debug/shorthorn"
  echo "$ROOT/target/debug/shorthorn-sanity"
  echo "$exe"
}

# csi-sanity as shorthorn-sanity installs it (target/tools, go install).
csi_sanity() {
  local tools=$ROOT/target/tools version
  version=$(sed -n 's/.*CSI_TEST_VERSION: &str = "\(v[^"]*\)".*/\1/p' "$ROOT/sanity-tests/src/install.rs")
  [[ -n $version ]] || die "cannot read CSI_TEST_VERSION from sanity-tests/src/install.rs"
  if [[ ! -x $tools/csi-sanity || $(cat "$tools/csi-sanity.version" 2>/dev/null) != "$version" ]]; then
    local go
    go=$(command -v go || echo /usr/local/go/bin/go)
    [[ -x $go ]] || die "csi-sanity is not in $tools and there is no Go toolchain to install it"
    say "installing csi-sanity $version"
    mkdir -p "$tools"
    GOBIN=$tools "$go" install "github.com/kubernetes-csi/csi-test/v5/cmd/csi-sanity@$version" >&2 ||
      die "go install csi-sanity failed"
    echo "$version" >"$tools/csi-sanity.version"
  fi
  echo "$tools"
}

# --- main -------------------------------------------------------------------

if [[ $MODE == real-spdk ]]; then
  SPDK_DIR=$(spdk_dir)
  [[ -n $SPDK_DIR ]] || exit 0
fi
ensure_packages
mkdir -p "$CACHE" "$OUT"
KVER=$(fetch_kernel)
BASE=$(base_image "$KVER")

OVERLAY=$OUT/overlay
rm -rf "$OVERLAY"
# The same merged-/usr symlinks as the base: a real /lib here would replace them.
skeleton "$OVERLAY"
mkdir -p "$OVERLAY/shorthorn"
install -m 0755 "$ROOT/vmtest/init.sh" "$OVERLAY/init"
if [[ $MODE == real-spdk ]]; then
  STEPS=${SHORTHORN_VM_REAL_STEPS:-stack sanity bench}
  mapfile -t BINS < <(build_real)
  for b in "${BINS[@]}"; do
    copy_libs "$b" "$OVERLAY"
    strip --strip-debug -o "$OVERLAY/shorthorn/$(basename "$b" | sed 's/-[0-9a-f]\{16\}$//')" "$b"
  done
  if [[ " $STEPS " == *" sanity "* ]]; then
    TOOLS_DIR=$(csi_sanity)
    mkdir -p "$OVERLAY/shorthorn/tools"
    copy_libs "$TOOLS_DIR/csi-sanity" "$OVERLAY"
    install -m 0755 "$TOOLS_DIR/csi-sanity" "$OVERLAY/shorthorn/tools/"
    cp "$TOOLS_DIR/csi-sanity.version" "$OVERLAY/shorthorn/tools/"
  fi
  # What the SPDK binaries link (they stay on the host, mounted over 9p),
  # and OpenSSL's config, without which SPDK's env does not start.
  for b in "$SPDK_DIR"/spdk_tgt "$SPDK_DIR"/nvmf_tgt "$SPDK_DIR"/spdk_dd; do
    [[ -f $b ]] && copy_libs "$b" "$OVERLAY"
  done
  install -D -m 0644 /usr/lib/ssl/openssl.cnf "$OVERLAY/usr/lib/ssl/openssl.cnf"
  install -m 0755 "$ROOT/vmtest/real-spdk-guest.sh" "$OVERLAY/shorthorn/real-spdk-guest.sh"
  echo "$STEPS" >"$OVERLAY/shorthorn/steps"
  # TCG by default, like the kernel mode: KVM inside a VM is often unusable
  # (here nested KVM fails on its MSRs and CPUID). SHORTHORN_VM_ACCEL=kvm
  # opts in where it works. x86-64-v2 (the SPDK build's target) includes cx16.
  if [[ ${SHORTHORN_VM_ACCEL:-tcg} == kvm ]]; then
    ACCEL=(-accel kvm -cpu host)
  else
    ACCEL=(-accel tcg -cpu max)
  fi
  EXTRA=(-m "${SHORTHORN_VM_MEM_MIB:-4096}"
    -virtfs "local,path=$SPDK_DIR,mount_tag=spdk,security_model=none,readonly=on")
else
  EXE=$(build_tests)
  copy_libs "$EXE" "$OVERLAY"
  strip --strip-debug -o "$OVERLAY/shorthorn/vm_guest" "$EXE"
  printf '%s\n' "${SHORTHORN_VM_FILTER:-}" >"$OVERLAY/shorthorn/filter"
  ACCEL=(-accel tcg -cpu max,-cx16)
  EXTRA=(-m 1536)
fi
# The overlay's files replace the base's: the kernel unpacks both in order.
# An uncompressed archive must start 4-byte aligned; zero padding is skipped.
cat "$BASE" >"$OUT/initrd.img"
truncate -s %4 "$OUT/initrd.img"
pack "$OVERLAY" >>"$OUT/initrd.img"

# The real-SPDK guest needs its memory free on the host. After the
# real-SPDK host stage the host still reserves hugepages it no longer uses;
# when that is what stands in the way, they are lent to the guest (the
# reservation shrinks for the run and is put back after it).
lend_hugepages() {
  local mem_mib=$1 avail_kib free_pages page_kib short_pages total
  avail_kib=$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)
  local need_kib=$(((mem_mib + 512) * 1024))
  ((avail_kib >= need_kib)) && return 0
  free_pages=$(awk '/^HugePages_Free:/ {print $2}' /proc/meminfo)
  page_kib=$(awk '/^Hugepagesize:/ {print $2}' /proc/meminfo)
  short_pages=$(((need_kib - avail_kib + page_kib - 1) / page_kib))
  if ((EUID == 0 && free_pages >= short_pages)); then
    total=$(cat /proc/sys/vm/nr_hugepages)
    say "lending $short_pages of the host's $free_pages free hugepages to the guest's ${mem_mib} MiB (put back after the run)"
    echo $((total - short_pages)) >/proc/sys/vm/nr_hugepages
    trap "echo $total >/proc/sys/vm/nr_hugepages" EXIT
  else
    die "the real-SPDK guest needs ${mem_mib} MiB and 512 MiB for QEMU, but the host has $((avail_kib / 1024)) MiB available ($free_pages free hugepages of ${page_kib} KiB); free memory or lower SHORTHORN_VM_MEM_MIB (the guest's three nodes use about 1.6 GiB of hugepages)"
  fi
}
[[ $MODE == real-spdk ]] && lend_hugepages "${SHORTHORN_VM_MEM_MIB:-4096}"

say "booting $KVER, $MODE mode, ${ACCEL[1]} (log: ${LOG#"$ROOT"/})"
start=$SECONDS
set +e
timeout "$TIMEOUT" qemu-system-x86_64 \
  "${ACCEL[@]}" -smp 2 "${EXTRA[@]}" \
  -nodefaults -display none -no-reboot \
  -serial "file:$LOG" \
  -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
  -kernel "$CACHE/kernel-$KVER/vmlinuz" \
  -initrd "$OUT/initrd.img" \
  -append "console=ttyS0 panic=-1 oops=panic loglevel=4 rdinit=/init" </dev/null
rc=$?
set -e
elapsed=$((SECONDS - start))

case $rc in
  1)
    if [[ $MODE == real-spdk ]]; then
      # The guest script's step lines and summaries.
      grep -E '^(vmtest-real|sanity:|test result:)|MEASURE' "$LOG" || true
      say "real-SPDK guest steps passed in ${elapsed}s"
      exit 0
    fi
    # Test names (their log lines follow on the same line) and the verdict.
    grep -oE '^test [A-Za-z0-9_:]+ \.\.\.' "$LOG" | sed 's/$/ ok/' || true
    grep -E '^test result:' "$LOG" || true
    say "guest tests passed in ${elapsed}s"
    exit 0
    ;;
  3) why="a guest test failed" ;;
  124) why="the guest did not finish within ${TIMEOUT}s" ;;
  0) why="the guest stopped without reporting a result (kernel panic?)" ;;
  *) why="qemu-system-x86_64 failed with exit code $rc" ;;
esac
echo "---- guest log ($LOG) ----" >&2
cat "$LOG" >&2 || true
echo "---- end of guest log ----" >&2
die "$why after ${elapsed}s"
