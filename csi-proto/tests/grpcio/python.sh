#!/usr/bin/env bash
# Runs the venv python at $1 with the rest of the arguments, after creating
# the venv or bringing it to requirements.txt (beside this script) when it
# is not. Concurrent callers wait for each other's install.
set -euo pipefail
venv=$1
shift
req="$(cd "$(dirname "$0")" && pwd)/requirements.txt"
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9
# The check is the import client.py does, with the venv's own interpreter.
if ! cmp -s "$req" "$venv/requirements.txt" || ! "$venv/bin/python" -c 'import grpc' 2>/dev/null; then
  python3 -c 'import ensurepip, venv' 2>/dev/null || {
    echo "python.sh: python3 with venv is needed (apt-get install python3-venv; scripts/setup.sh does)" >&2
    exit 1
  }
  echo "python.sh: installing $(grep -v '^#' "$req" | tr '\n' ' ')into $venv" >&2
  python3 -m venv --clear "$venv" >&2
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$req" >&2
  cp "$req" "$venv/requirements.txt"
fi
exec 9>&-
exec "$venv/bin/python" "$@"
