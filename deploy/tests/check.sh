#!/usr/bin/env bash
# Manifest checks: installs the pinned kustomize (go install) and
# kubernetes-validate (pip, in a venv) under target/deploy-tools, renders every
# kustomization under deploy/manifests into target/deploy-rendered, validates
# them and deploy/examples against the Kubernetes schemas, then runs the Rust
# cross-checks against the binary (sanity-tests/tests/manifests.rs).
set -euo pipefail
cd "$(dirname "$0")/../.."

# shellcheck source=deploy/tests/tools.env
. deploy/tests/tools.env
tools="$PWD/target/deploy-tools"
kustomize="$tools/bin/kustomize"
venv="$tools/venv"

if ! "$kustomize" version 2>/dev/null | grep -qx "$KUSTOMIZE_VERSION"; then
  command -v go >/dev/null || { echo "check.sh: go is needed to install kustomize" >&2; exit 1; }
  echo "check.sh: installing kustomize $KUSTOMIZE_VERSION"
  GOBIN="$tools/bin" GOFLAGS=-mod=mod go install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION"
fi
# The check is the import validate.py does, with the venv's own interpreter.
if ! "$venv/bin/python" -c "import kubernetes_validate.version as v, sys; sys.exit(v.__version__ != '$KUBERNETES_VALIDATE_VERSION')" 2>/dev/null; then
  echo "check.sh: installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION"
  python3 -c 'import ensurepip, venv' 2>/dev/null ||
    { echo "check.sh: python3 with venv is needed (apt-get install python3-venv; scripts/setup.sh does)" >&2; exit 1; }
  # A venv whose interpreter no longer runs (made by another python3) is rebuilt.
  clear=()
  "$venv/bin/python" -c '' 2>/dev/null || clear=(--clear)
  python3 -m venv "${clear[@]}" "$venv"
  "$venv/bin/python" -m pip install -q "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
fi

if command -v shellcheck >/dev/null; then
  shellcheck -x deploy/manifests/base/spdk-tgt.sh deploy/tests/check.sh
fi

versions=()
for v in $KUBERNETES_VERSIONS; do versions+=(--kubernetes-version "$v"); done
"$venv/bin/python" deploy/tests/validate.py --kustomize "$kustomize" \
  --out target/deploy-rendered "${versions[@]}"

SHORTHORN_KUSTOMIZE="$kustomize" cargo test -p sanity-tests --test manifests
