#!/usr/bin/env bash
# The tests that need a real spdk_tgt (they skip with a message when
# SHORTHORN_SPDK_TGT is unset), run against one. A stage of scripts/test.sh;
# runs alone too: `scripts/test-real-spdk.sh`.
#
# What runs: every `real_spdk_*` test target of the workspace (any crate's
# tests/real_spdk_*.rs or tests/real_spdk_*/main.rs, found when the script
# runs), plus the tests named in `named` below.
#
#   SHORTHORN_SPDK_TGT        spdk_tgt (default: ../shared/spdk/bin/spdk_tgt
#                             beside the repository; absent: the stage skips)
#   SHORTHORN_SPDK_DD         spdk_dd (default: the one next to spdk_tgt)
#   SHORTHORN_SPDK_MAX_NODES  real SPDK nodes at once (testkit's budget, default 3)
#   SHORTHORN_REAL_SPDK_THREADS  override the --test-threads chosen below
#
# It runs scripts/setup-real-spdk.sh first (packages, hugepages, hugetlbfs;
# root when something is missing), gives back the hugepages it reserved when
# done, and prints one summary line with the tests run, passed, skipped and
# failed. A test that prints a skip message although the binary is present
# is counted as skipped, not passed, and fails the stage.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:${HOME:-/root}/.cargo/bin"
started=$SECONDS

# The tests outside `real_spdk_*` targets that need real SPDK: cargo target
# selection, then an optional test-name filter (a substring, so moving a test
# between modules keeps it selected; an entry that selects no test fails).
named=(
  "--test real_nodes"
  "--test differential"
  "--test data_path|the_real_data_path_reads_what_was_written"
  "--bin shorthorn|real_nodes_start_with_their_roles"
)

default_tgt="$(cd .. && pwd)/shared/spdk/bin/spdk_tgt"
tgt="${SHORTHORN_SPDK_TGT:-$default_tgt}"
if [[ ! -e $tgt ]]; then
  if [[ -n ${SHORTHORN_SPDK_TGT:-} ]]; then
    echo "real spdk_tgt tests: SHORTHORN_SPDK_TGT=$tgt does not exist" >&2
    exit 1
  fi
  echo "real spdk_tgt tests: skipped: no real spdk_tgt at $tgt (put SPDK v25.09's bin/ there or set SHORTHORN_SPDK_TGT)"
  exit 0
fi
tgt="$(cd "$(dirname "$tgt")" && pwd)/$(basename "$tgt")"
dd="${SHORTHORN_SPDK_DD:-$(dirname "$tgt")/spdk_dd}"
[[ -e $dd ]] || dd=""
export SHORTHORN_SPDK_TGT="$tgt" SHORTHORN_SPDK_DD="$dd"
echo "real spdk_tgt tests: $tgt${dd:+, spdk_dd $dd}"

# Hugepages: the stage needs at most SHORTHORN_SPDK_MAX_NODES nodes at once
# (an engine takes -s 512, a replica -s 256, plus what DPDK maps beyond -s).
# Whatever this stage adds to the reservation it gives back at the end, so the
# later stages of scripts/test.sh (QEMU, csi-sanity) keep that memory.
pages_before=$(cat /proc/sys/vm/nr_hugepages)
budget="${SHORTHORN_SPDK_MAX_NODES:-3}"
# 512 pages (1 GiB) per node of the budget: 3 nodes peaked at 805 pages in use.
export SHORTHORN_HUGEPAGES="${SHORTHORN_HUGEPAGES:-$((512 * budget))}"
restore_hugepages() {
  local now
  now=$(cat /proc/sys/vm/nr_hugepages)
  if ((now > pages_before)) && [[ -w /proc/sys/vm/nr_hugepages ]]; then
    echo "$pages_before" > /proc/sys/vm/nr_hugepages 2>/dev/null &&
      echo "real spdk_tgt tests: hugepages back to $pages_before (from $now)"
  fi
}
trap restore_hugepages EXIT
scripts/setup-real-spdk.sh

# --test-threads: each test's cluster has one polling engine that keeps a core
# busy, and the test process and the sim need CPU too, so one test per two
# cores; and no more tests at once than the node budget holds clusters of two
# (testkit's slots make a test that would exceed the budget wait anyway).
cores=$(nproc)
threads=$((cores / 2 < budget / 2 ? cores / 2 : budget / 2))
((threads >= 1)) || threads=1
threads="${SHORTHORN_REAL_SPDK_THREADS:-$threads}"
echo "real spdk_tgt tests: --test-threads=$threads ($cores cores, node budget $budget)"

# The entries to run: the real_spdk_* targets, then the named ones.
entries=()
shopt -s nullglob
for f in */tests/real_spdk_*.rs */tests/real_spdk_*/main.rs; do
  name="${f#*/tests/}"
  name="${name%.rs}"
  name="${name%/main}"
  entries+=("--test $name")
done
shopt -u nullglob
entries+=("${named[@]}")

logs="target/real-spdk"
mkdir -p "$logs"
rm -f "$logs"/*.log
run=0 passed=0 skipped=0 failed=0
problems=()
for entry in "${entries[@]}"; do
  selection="${entry%%|*}"
  filter=""
  [[ $entry == *"|"* ]] && filter="${entry#*|}"
  log="$logs/$(echo "$selection${filter:+-$filter}" | tr -c 'A-Za-z0-9_\n-' '_' | sed 's/^_*//').log"
  echo "== real spdk_tgt: cargo test $selection${filter:+ -- $filter}"
  t0=$SECONDS
  rc=0
  # --workspace: the same feature set as `cargo test --workspace`, so the
  # test binaries it built are reused instead of rebuilt.
  # shellcheck disable=SC2086 # $selection is several words on purpose
  cargo test --workspace --no-fail-fast $selection -- --test-threads="$threads" --show-output \
    ${filter:+"$filter"} 2>&1 | tee "$log" || rc=$?
  # Per test: its result line, and whether its captured output (shown by
  # --show-output for passed and failed tests) holds a skip message. Prints
  # "run passed skipped failed stray", then the skipped tests' names.
  mapfile -t counted < <(awk '
    /^ +Running .* \(.*\)$/ { bin = $NF }
    /^test .* \.\.\. (ok|FAILED)$/ { status[bin " " $2] = $NF; next }
    /^---- .* stdout ----$/ { section = bin " " $2; next }
    /^(successes|failures):$/ { section = "" }
    /SKIPPED|^skipping:/ { if (section != "") skip[section] = 1; else stray++ }
    END {
      for (n in status) {
        r++
        if (status[n] == "FAILED") f++
        else if (n in skip) { s++; names = names "\n" n }
        else o++
      }
      printf "%d %d %d %d %d%s\n", r, o, s, f, stray, names
    }' "$log")
  read -r e_run e_ok e_skip e_fail e_stray <<<"${counted[0]}"
  for n in "${counted[@]:1}"; do
    problems+=("${n#* } printed a skip message although $tgt is present")
  done
  run=$((run + e_run)) passed=$((passed + e_ok)) skipped=$((skipped + e_skip)) failed=$((failed + e_fail))
  ((e_stray == 0)) || problems+=("cargo test $selection: $e_stray skip message(s) outside any test's output")
  ((e_run > 0)) || problems+=("cargo test $selection${filter:+ -- $filter} ran no test (renamed? update scripts/test-real-spdk.sh)")
  ((rc == 0)) || ((e_fail > 0)) || problems+=("cargo test $selection exited with $rc")
  echo "== real spdk_tgt: $selection${filter:+ -- $filter}: $e_run run, $e_ok passed, $e_skip skipped, $e_fail failed in $((SECONDS - t0)) s"
done

for p in "${problems[@]}"; do
  echo "real spdk_tgt tests: $p" >&2
done
status=ok
((failed == 0 && skipped == 0 && ${#problems[@]} == 0)) || status=FAILED
echo "real spdk_tgt tests: $status: $run run, $passed passed, $skipped skipped, $failed failed in $((SECONDS - started)) s (logs in $logs/)"
[[ $status == ok ]]
