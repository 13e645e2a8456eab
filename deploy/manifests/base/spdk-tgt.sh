#!/bin/sh
# Entry point of the spdk-tgt container of the shorthorn-node DaemonSet.
# Runs stock spdk_tgt from the operator's SPDK image, then (re)creates this
# node's base bdev so that SPDK examines it and finds its lvstore again, and
# creates the lvstore the first time. Needs /bin/sh, $SPDK_TGT and $SPDK_RPC
# (SPDK's scripts/rpc.py) in the image. Parameters come from the environment
# (ConfigMap shorthorn-spdk and the pod spec).
set -eu

: "${SPDK_TGT:=spdk_tgt}"
: "${SPDK_RPC:=rpc.py}"
: "${SPDK_CPU_MASK:=0x1}"
: "${SPDK_MEM_SIZE_MB:=1024}"
: "${SPDK_EXTRA_ARGS:=}"
: "${SPDK_RPC_SOCKET:=/var/tmp/spdk/spdk.sock}"
: "${SPDK_HUGE_DIR:=/hugepages}"
: "${SPDK_BASE_BDEVS_DIR:=/etc/shorthorn/base-bdevs}"
: "${SPDK_LVSTORE:=shorthorn}"
: "${SPDK_CLUSTER_SIZE:=4194304}"
: "${NODE_NAME:?NODE_NAME must be set}"

log() { echo "spdk-tgt.sh: $*" >&2; }
rpc() { "$SPDK_RPC" -s "$SPDK_RPC_SOCKET" -t 30 "$@"; }

# The base bdev's name is the one the controller uses for an aio base bdev
# (controller/src/nodes/bootstrap.rs: shorthorn-base-<lvstore>).
BASE_BDEV="shorthorn-base-${SPDK_LVSTORE}"

lookup() { # lookup KEY -> value of this node's key, or of `default`
  for k in "$NODE_NAME$1" "default$1"; do
    if [ -s "$SPDK_BASE_BDEVS_DIR/$k" ]; then
      tr -d ' \t\r\n' <"$SPDK_BASE_BDEVS_DIR/$k"
      return 0
    fi
  done
  return 1
}

# A container restart keeps the hugepages emptyDir: remove the maps a killed
# spdk_tgt may have left behind, or DPDK runs out of pages.
rm -f "$SPDK_HUGE_DIR"/spdk*map_* 2>/dev/null || true
rm -f "$SPDK_RPC_SOCKET" "$SPDK_RPC_SOCKET.lock"

# shellcheck disable=SC2086 # SPDK_EXTRA_ARGS is a list of words
"$SPDK_TGT" -m "$SPDK_CPU_MASK" -s "$SPDK_MEM_SIZE_MB" -r "$SPDK_RPC_SOCKET" \
  --huge-dir "$SPDK_HUGE_DIR" $SPDK_EXTRA_ARGS &
tgt=$!
trap 'kill -TERM "$tgt" 2>/dev/null' TERM INT

i=0
until rpc spdk_get_version >/dev/null 2>&1; do
  if ! kill -0 "$tgt" 2>/dev/null; then
    wait "$tgt" || exit $?
    exit 1
  fi
  i=$((i + 1))
  if [ "$i" -ge 120 ]; then
    log "spdk_tgt did not answer on $SPDK_RPC_SOCKET within 120 s"
    kill -TERM "$tgt"
    exit 1
  fi
  sleep 1
done
rpc framework_wait_init >/dev/null

if path=$(lookup ""); then
  if [ ! -e "$path" ]; then
    if size=$(lookup .size); then
      log "creating sparse file $path of $size"
      mkdir -p "$(dirname "$path")"
      truncate -s "$size" "$path"
    else
      log "base bdev $path does not exist (and no size to create it); storing no replicas"
      path=""
    fi
  fi
  if [ -n "$path" ]; then
    if ! rpc bdev_get_bdevs -b "$BASE_BDEV" >/dev/null 2>&1; then
      log "creating aio bdev $BASE_BDEV over $path"
      rpc bdev_aio_create "$path" "$BASE_BDEV" 4096 >/dev/null
    fi
    rpc bdev_wait_for_examine >/dev/null
    if ! rpc bdev_lvol_get_lvstores -l "$SPDK_LVSTORE" >/dev/null 2>&1; then
      log "creating lvstore $SPDK_LVSTORE on $BASE_BDEV"
      rpc bdev_lvol_create_lvstore -c "$SPDK_CLUSTER_SIZE" "$BASE_BDEV" "$SPDK_LVSTORE" >/dev/null
    fi
  fi
else
  log "no base bdev for node $NODE_NAME in ConfigMap shorthorn-base-bdevs; storing no replicas"
fi

log "spdk_tgt ready (pid $tgt)"
# `wait` returns early when a trapped signal arrives: wait again until
# spdk_tgt has really exited, and exit with its status.
while :; do
  wait "$tgt" && rc=0 || rc=$?
  kill -0 "$tgt" 2>/dev/null || break
done
exit "$rc"
