#!/usr/bin/env bash
# Runs the README's two commands the way a new user would (issue #23):
#   - in a fresh clone of this repository (HEAD, or --rev);
#   - with HOME, and so cargo's registry, Go's module and build caches,
#     pip's cache and the VM test's kernel cache, in a new temporary
#     directory (CARGO_HOME, GOPATH, GOCACHE and GOMODCACHE are set to
#     their defaults under that HOME, and the build starts from no target/);
#   - with PATH the system default (/etc/login.defs), and none of this
#     shell's other variables (only proxies, TERM and LANG pass through).
# scripts/run-local.sh runs until its guided demo has passed, then is
# stopped the way its README line says (it cleans up after itself);
# scripts/test.sh runs to the end. The result is its exit status.
#
# What a new user has before the README's commands, and is taken from this
# machine: its packages as they are (setup.sh and the test steps install
# what is missing, as for that user; run as root), Rust through rustup (its
# toolchains, RUSTUP_HOME, are used read-only; the rustup proxies are linked
# into the new ~/.cargo/bin as rustup's installer puts them there) and Go
# under /usr/local/go (where test.sh looks).
#
# CI clones the project with ../shared beside it (the real SPDK binaries);
# so does this script: when this repository has a ../shared, the clone gets
# a symlink to it in the same place, and the real-SPDK stages run as in CI.
# Without it (or with --no-shared) they skip, as for a user who has no SPDK.
#
# It costs a cold build (release for run-local.sh, then debug, clippy, the
# VM guest) and full downloads: about an hour on 2 cores.
#
# Usage: scripts/fresh-check.sh [--rev REV] [--only local|test] [--keep] [--dry-run]
#   --rev REV   commit to check (default: HEAD; uncommitted changes are not part of it)
#   --only X    run only scripts/run-local.sh (local) or scripts/test.sh (test)
#   --keep      keep the temporary directory (it is removed after a pass)
#   --no-shared do not lay ../shared beside the clone (see below)
#   --dry-run   clone and prepare, print the environment, what each tool
#               resolves to in it and the commands, then stop
#   FRESH_CHECK_ROOT  parent of the temporary directory (default /var/tmp)
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
rev=HEAD
only=""
keep=0
dry_run=0
with_shared=1
while (($#)); do
  case $1 in
    --rev) rev=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    --no-shared) with_shared=0; shift ;;
    --dry-run) dry_run=1; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "fresh-check: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
case $only in "" | local | test) ;; *) echo "fresh-check: --only local|test" >&2; exit 2 ;; esac

say() { echo "fresh-check: $*"; }
die() { echo "fresh-check: ERROR: $*" >&2; exit 1; }
command -v git >/dev/null || die "git is needed to clone"

commit=$(git -C "$src" rev-parse --verify "$rev^{commit}") || die "no commit $rev in $src"
if [[ $rev == HEAD ]] && [[ -n $(git -C "$src" status --porcelain --untracked-files=no) ]]; then
  say "note: $src has uncommitted changes; they are not part of this check"
fi

# The README's two commands, taken from its first sh block: this script
# runs these two (and must be updated if they change).
readme_commands=$(git -C "$src" show "$commit:README.md" |
  awk '/^```sh/ {inside=1; next} inside && /^```/ {exit} inside {print $1}')
[[ $readme_commands == $'scripts/run-local.sh\nscripts/test.sh' ]] ||
  die "the README's commands are now: $(tr '\n' ' ' <<<"$readme_commands")- update fresh-check.sh"

# The system default PATH, as login(1) sets it.
if ((EUID == 0)); then
  sys_path=$(sed -n 's/^ENV_SUPATH[[:space:]]\{1,\}PATH=//p' /etc/login.defs 2>/dev/null)
  : "${sys_path:=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin}"
else
  sys_path=$(sed -n 's/^ENV_PATH[[:space:]]\{1,\}PATH=//p' /etc/login.defs 2>/dev/null)
  : "${sys_path:=/usr/local/bin:/usr/bin:/bin:/usr/local/games:/usr/games}"
fi

# A short root: tests put Unix sockets under TMPDIR (108-byte limit).
root=$(mktemp -d "${FRESH_CHECK_ROOT:-/var/tmp}/fresh.XXXXXX")
chmod 755 "$root"
home=$root/home
clone=$root/shorthorn
mkdir -p "$home" "$root/tmp"
cleanup() {
  local rc=$?
  if ((rc == 0 && keep == 0)); then
    # Go's telemetry child may still be writing under the new HOME.
    rm -rf "$root" 2>/dev/null || { sleep 2; rm -rf "$root"; }
  else
    say "kept $root (logs: $root/*.log)"
  fi
}
trap cleanup EXIT

say "cloning $commit into $clone"
git clone -q --no-local --no-checkout "$src" "$clone"
if ! git -C "$clone" cat-file -e "$commit^{commit}" 2>/dev/null; then
  git -C "$src" push -q "$clone" "$commit:refs/heads/fresh-check" # not on a branch
fi
git -C "$clone" -c advice.detachedHead=false checkout -q --detach "$commit"
# ../shared beside the clone, as CI has it (read-only data and SPDK binaries).
shared_note="none (real-SPDK stages will skip)"
if ((with_shared)) && [[ -d $src/../shared ]]; then
  ln -s "$(cd "$src/../shared" && pwd -P)" "$root/shared"
  shared_note="$root/shared -> $(readlink "$root/shared")"
fi

# rustup's proxies, as its installer lays them out in ~/.cargo/bin.
rustup_bin=$(command -v rustup || true)
rustup_home=""
if [[ -n $rustup_bin ]]; then
  rustup_bin=$(readlink -f "$rustup_bin")
  rustup_home=${RUSTUP_HOME:-$HOME/.rustup}
  mkdir -p "$home/.cargo/bin"
  ln -s "$rustup_bin" "$home/.cargo/bin/rustup"
  for proxy in "$(dirname "$(command -v rustup)")"/*; do
    name=${proxy##*/}
    [[ $name != rustup && $proxy -ef $rustup_bin ]] && ln -s rustup "$home/.cargo/bin/$name"
  done
fi

env_vars=(
  "HOME=$home"
  "PATH=$sys_path"
  "USER=$(id -un)"
  "LOGNAME=$(id -un)"
  "SHELL=/bin/bash"
  "TERM=${TERM:-dumb}"
  "LANG=${LANG:-C.UTF-8}"
  # Go's and cargo's defaults under the new HOME, spelled out.
  "CARGO_HOME=$home/.cargo"
  "GOPATH=$home/go"
  "GOMODCACHE=$home/go/pkg/mod"
  "GOCACHE=$home/.cache/go-build"
  # Kept apart from other users of this machine's /tmp.
  "TMPDIR=$root/tmp"
)
[[ -n $rustup_home ]] && env_vars+=("RUSTUP_HOME=$rustup_home")
for v in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
  [[ -n ${!v:-} ]] && env_vars+=("$v=${!v}")
done
# Runs "$@" in the clone with only env_vars (exec: the caller's $! is it).
in_fresh_env() { (cd "$clone" && exec env -i "${env_vars[@]}" "$@"); }

libclang_state() {
  local p s out=()
  for p in llvm-14-dev libclang-dev; do
    s=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
    [[ $s == ii* ]] && out+=("$p installed") || out+=("$p not installed")
  done
  local found
  found=$("$clone/vmtest/find-libclang.sh" 2>/dev/null | head -n1 || true)
  echo "${out[0]}, ${out[1]}; bindgen's libclang: ${found:-none}"
}

say "commit $commit ($(git -C "$clone" log -1 --format=%s))"
say "machine: $(. /etc/os-release && echo "$PRETTY_NAME"), $(nproc) CPUs; $(libclang_state)"
say "../shared beside the clone: $shared_note"
say "environment: ${env_vars[*]}"
say "commands (in $clone): $(tr '\n' ' ' <<<"$readme_commands")${only:+(only $only)}"

if ((dry_run)); then
  say "dry run: what the commands will find"
  # The same PATH additions scripts/test.sh makes.
  in_fresh_env bash -c '
    export PATH="$PATH:/usr/local/go/bin:$HOME/.cargo/bin:$HOME/go/bin"
    for t in cargo rustc go python3 etcd git cc; do
      printf "  %-8s %s\n" "$t" "$(command -v "$t" || echo MISSING)"
    done
    printf "  %-8s %s\n" cargo-home "$(cargo --version 2>&1) (registry: ${CARGO_HOME}/registry $(test -e "$CARGO_HOME/registry" && echo exists || echo absent))"
    printf "  %-8s %s\n" go-env "$(go env GOPATH GOMODCACHE GOCACHE 2>&1 | tr "\n" " ")"
    printf "  %-8s %s\n" target "$(test -e target && echo exists || echo absent)"
    printf "  %-8s %s\n" env "$(env | cut -d= -f1 | sort | tr "\n" " ")"
  '
  exit 0
fi

start=$SECONDS
elapsed() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }
result=()

if [[ -z $only || $only == local ]]; then
  say "running scripts/run-local.sh (log: $root/run-local.log)"
  t0=$SECONDS
  # Its state directory is kept apart from a run-local.sh of this machine.
  (cd "$clone" && exec env -i "${env_vars[@]}" SHORTHORN_STATE_DIR="$root/local-state" \
    scripts/run-local.sh) >"$root/run-local.log" 2>&1 &
  pid=$!
  # The demo passed when run-local.sh says the cluster keeps running; it
  # stops the cluster on SIGTERM (its trap runs `shorthorn local down`).
  ok=0
  while kill -0 "$pid" 2>/dev/null; do
    if grep -q "The local cluster keeps running" "$root/run-local.log"; then
      ok=1
      break
    fi
    ((SECONDS - t0 < 5400)) || break
    sleep 5
  done
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" || true
  if ((ok)) && grep -q "Nothing left running, mounted or attached" "$root/run-local.log"; then
    result+=("run-local.sh: demo passed and local down cleaned up ($(elapsed $((SECONDS - t0))))")
  else
    tail -n 40 "$root/run-local.log" >&2
    result+=("run-local.sh: FAILED ($(elapsed $((SECONDS - t0))); see $root/run-local.log)")
    ok=0
  fi
  local_ok=$ok
else
  local_ok=1
fi

test_ok=1
if [[ -z $only || $only == test ]]; then
  say "running scripts/test.sh (log: $root/test.log)"
  t0=$SECONDS
  if in_fresh_env scripts/test.sh 2>&1 | tee "$root/test.log"; then
    result+=("test.sh: passed ($(elapsed $((SECONDS - t0))))")
  else
    test_ok=0
    result+=("test.sh: FAILED ($(elapsed $((SECONDS - t0))); see $root/test.log)")
  fi
fi

echo
say "commit $commit; $(. /etc/os-release && echo "$PRETTY_NAME"), $(nproc) CPUs"
say "packages after the run: $(libclang_state)"
for r in "${result[@]}"; do say "$r"; done
if ((local_ok && test_ok)); then
  say "PASS in $(elapsed $((SECONDS - start)))"
else
  say "FAIL after $(elapsed $((SECONDS - start)))"
  exit 1
fi
