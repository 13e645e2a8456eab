#!/usr/bin/env python3
"""Validates Shorthorn's rendered manifests and examples against the
Kubernetes OpenAPI schemas shipped by the pinned `kubernetes-validate`.

Every kustomization under deploy/manifests (the base and each overlay) is
rendered with the given kustomize binary into --out, then every object of the
renders and of deploy/examples/*.yaml is validated, strictly (unknown fields
fail), for each --kubernetes-version. CRD-backed kinds (VolumeSnapshotClass,
VolumeSnapshot, the Prometheus Operator's ServiceMonitor) have no core
schema: they get a structural check instead and the skip is printed with its
reason. A ConfigMap holding a Grafana dashboard must hold valid JSON.
"""

import argparse
import json
import pathlib
import subprocess
import sys

import kubernetes_validate
import yaml

DEPLOY = pathlib.Path(__file__).resolve().parent.parent

# Kinds served by CRDs (kubernetes-csi/external-snapshotter, the Prometheus
# Operator), not core schemas.
CRD_KINDS = {
    ("snapshot.storage.k8s.io/v1", "VolumeSnapshotClass"),
    ("snapshot.storage.k8s.io/v1", "VolumeSnapshot"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
}

# ServiceMonitor endpoint fields used here (monitoring.coreos.com/v1).
SERVICE_MONITOR_ENDPOINT = {"port", "path", "scheme", "interval", "scrapeTimeout", "tlsConfig"}


def kustomizations():
    root = DEPLOY / "manifests"
    return sorted(p.parent for p in root.rglob("kustomization.yaml"))


def render(kustomize, kdir, out):
    rel = kdir.relative_to(DEPLOY / "manifests")
    target = out / (str(rel).replace("/", "_") + ".yaml")
    text = subprocess.run(
        [kustomize, "build", str(kdir)], check=True, capture_output=True, text=True
    ).stdout
    target.write_text(text)
    return target


def crd_check(doc):
    """Structural checks of the CRD kinds we ship; returns a list of problems."""
    problems = []
    kind = doc.get("kind")
    if not doc.get("metadata", {}).get("name"):
        problems.append("metadata.name missing")
    if kind == "VolumeSnapshotClass":
        for key in ("driver", "deletionPolicy"):
            if key not in doc:
                problems.append(f"{key} missing")
        if doc.get("deletionPolicy") not in ("Delete", "Retain"):
            problems.append("deletionPolicy must be Delete or Retain")
        extra = set(doc) - {"apiVersion", "kind", "metadata", "driver", "deletionPolicy", "parameters"}
        if extra:
            problems.append(f"unknown fields {sorted(extra)}")
    elif kind == "ServiceMonitor":
        spec = doc.get("spec", {})
        extra = set(doc) - {"apiVersion", "kind", "metadata", "spec"}
        if extra:
            problems.append(f"unknown fields {sorted(extra)}")
        if not spec.get("selector", {}).get("matchLabels"):
            problems.append("spec.selector.matchLabels must select the Service")
        endpoints = spec.get("endpoints") or []
        if not endpoints:
            problems.append("spec.endpoints is empty")
        for e in endpoints:
            unknown = set(e) - SERVICE_MONITOR_ENDPOINT
            if unknown:
                problems.append(f"endpoint fields {sorted(unknown)} are not used here")
            if not e.get("port"):
                problems.append("an endpoint names no Service port")
            if e.get("scheme", "http") not in ("http", "https"):
                problems.append(f"scheme {e.get('scheme')} is neither http nor https")
            if e.get("scheme") == "https" and not e.get("tlsConfig", {}).get("ca"):
                problems.append("https without tlsConfig.ca would not verify the agents")
    elif kind == "VolumeSnapshot":
        source = doc.get("spec", {}).get("source", {})
        if len(source) != 1 or next(iter(source)) not in (
            "persistentVolumeClaimName",
            "volumeSnapshotContentName",
        ):
            problems.append("spec.source must name exactly one PVC or content")
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kustomize", required=True)
    ap.add_argument("--out", required=True, type=pathlib.Path)
    ap.add_argument("--kubernetes-version", action="append", required=True)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    files = [render(args.kustomize, k, args.out) for k in kustomizations()]
    files += sorted((DEPLOY / "examples").glob("*.yaml"))

    passed = failed = skipped = 0
    for path in files:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        if not docs:
            print(f"FAIL {path}: no objects")
            failed += 1
        for doc in docs:
            name = f"{path.name}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
            if (doc.get("apiVersion"), doc.get("kind")) in CRD_KINDS:
                problems = crd_check(doc)
                if problems:
                    print(f"FAIL {name}: {'; '.join(problems)}")
                    failed += 1
                else:
                    print(f"SKIP {name}: CRD-backed kind, no core schema; structural check passed")
                    skipped += 1
                continue
            if doc.get("kind") == "ConfigMap" and doc.get("metadata", {}).get("labels", {}).get("grafana_dashboard"):
                for key, text in (doc.get("data") or {}).items():
                    try:
                        json.loads(text)
                    except ValueError as e:
                        print(f"FAIL {name}: dashboard {key} is not JSON: {e}")
                        failed += 1
            for version in args.kubernetes_version:
                try:
                    kubernetes_validate.validate(doc, version, strict=True)
                except kubernetes_validate.ValidationError as e:
                    where = "/".join(str(p) for p in e.path)
                    print(f"FAIL {name} (k8s {version}) at {where}: {e.message}")
                    failed += 1
                except kubernetes_validate.SchemaNotFoundError as e:
                    print(f"FAIL {name} (k8s {version}): no schema: {e}")
                    failed += 1
                else:
                    passed += 1
    print(f"manifests: {passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
