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
# The guest reports through isa-debug-exit: QEMU exits 1 when every test
# passed, 3 when one failed; anything else (0: the guest died without a
# verdict, 124: timeout) is a failure too. The serial log is kept in
# target/vmtest/guest.log.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

CACHE=${SHORTHORN_VM_CACHE:-${HOME:-/root}/.cache/shorthorn-vm}
TIMEOUT=${SHORTHORN_VM_TIMEOUT:-300}
OUT=$ROOT/target/vmtest
LOG=$OUT/guest.log
SUITE=bookworm-backports
MIRROR=http://deb.debian.org/debian
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
# Modules the guest loads (their dependencies are resolved with modprobe).
MODULES=(configfs nvme-tcp nvmet-tcp dm-mod ext4 xfs loop brd ublk_drv crc32c_generic)
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
    if [[ -f $CACHE/kernel-$kver/.complete ]]; then
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
  if [[ ! -f $kdir/.complete ]]; then
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
    touch "$kdir/.complete"
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

# --- main -------------------------------------------------------------------

ensure_packages
mkdir -p "$CACHE" "$OUT"
KVER=$(fetch_kernel)
BASE=$(base_image "$KVER")
EXE=$(build_tests)

OVERLAY=$OUT/overlay
rm -rf "$OVERLAY"
# The same merged-/usr symlinks as the base: a real /lib here would replace them.
skeleton "$OVERLAY"
mkdir -p "$OVERLAY/shorthorn"
install -m 0755 "$ROOT/vmtest/init.sh" "$OVERLAY/init"
copy_libs "$EXE" "$OVERLAY"
strip --strip-debug -o "$OVERLAY/shorthorn/vm_guest" "$EXE"
printf '%s\n' "${SHORTHORN_VM_FILTER:-}" >"$OVERLAY/shorthorn/filter"
# The overlay's files replace the base's: the kernel unpacks both in order.
# An uncompressed archive must start 4-byte aligned; zero padding is skipped.
cat "$BASE" >"$OUT/initrd.img"
truncate -s %4 "$OUT/initrd.img"
pack "$OVERLAY" >>"$OUT/initrd.img"

say "booting $KVER (log: ${LOG#"$ROOT"/})"
start=$SECONDS
set +e
timeout "$TIMEOUT" qemu-system-x86_64 \
  -accel tcg -cpu max,-cx16 -smp 2 -m 1536 \
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
