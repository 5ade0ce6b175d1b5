"""Scan every rendered variant and the k8s/ base with checkov and Trivy; fail on any finding not accepted below.

`make lint` runs it (`python tests/scan_manifests.py`, scanners from the `scan` dependency group in .venv-scan,
or SCAN_BIN). Variants: the k8s/examples/ specs, Ascend 8 and 2x8 per launcher, GPU 8 and 2x8, CPU, an eval Job,
an export Job and a TensorBoard Deployment per platform, and a GPU job with Secret references and narrowed egress;
plus the k8s/ kustomization's objects.
All of it goes to one folder and each scanner runs once (checkov starts slowly). Offline: checkov without its
platform download, Trivy with its built-in checks.

ACCEPTED is the documented list: each check that may still fail, where, and why it cannot apply. A finding not in
it fails the scan, and so does an accepted entry that no longer fires (keep the list true).
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from jobctl.examples import EXAMPLES, example_spec  # noqa: E402
from jobctl.render import DEFAULT_KUBE_VERSION, render, render_eval, to_yaml  # noqa: E402
from jobctl.render_tools import render_export, render_tensorboard  # noqa: E402

SCAN_BIN = Path(os.environ.get("SCAN_BIN", ROOT / ".venv-scan" / "bin"))
PODS = "job-*.yaml"  # every rendered variant
ASCEND = "job-ascend-*.yaml"
BASE = "kustomize.yaml"

# check id -> (files it may fail in, why it cannot apply). Both scanners' ids.
ACCEPTED: dict[str, tuple[str, str]] = {
    "CKV_K8S_11": (PODS, "no CPU limit on purpose: CFS quotas throttle the data-loader threads; requests reserve"),
    "KSV-0011": (PODS, "same as CKV_K8S_11 (CPU limit)"),
    "CKV_K8S_40": (PODS, "uid/gid 1000 is HwHiAiUser, whose group owns the Ascend devices; one uid on every platform"),
    "KSV-0020": (PODS, "same as CKV_K8S_40 (uid > 10000)"),
    "KSV-0021": (PODS, "same as CKV_K8S_40 (gid > 10000)"),
    "CKV_K8S_43": (PODS, "the examples name make image's tag; jobctl warns on :latest, a digest is up to the user"),
    "CKV_K8S_15": (PODS, "IfNotPresent by default (multi-GB images, pinned tags); image_pull_policy: Always exists"),
    "KSV-0023": (ASCEND, "the five read-only Ascend driver hostPaths; k8s/pod-policy.yaml admits exactly those"),
    "KSV-01010": (
        PODS,
        "spec.yaml in <name>-config holds the words topology key and secret_env's variable names: "
        "references, never values (the check matches names)",
    ),
    "CKV_K8S_35": ("job-gpu-secrets.yaml", "secret_env is the user's choice; secret_volumes gives files"),
    "KSV-0048": (BASE, "jobctl's Role creates and deletes Jobs: that is its purpose (no pods/create)"),
    "KSV-0049": (BASE, "jobctl's Role creates the job's ConfigMaps (trainer config, spec record)"),
    "KSV-0056": (BASE, "jobctl's Role creates each job's NetworkPolicy (owned by the Job)"),
}


def variants() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """(file name, objects) of every rendered variant."""
    for filename, fields in EXAMPLES.items():
        yield f"job-{filename}", render(example_spec(fields), DEFAULT_KUBE_VERSION)
    specs: dict[str, dict[str, object]] = {
        f"ascend-{shape}-{launcher}": {"platform": "ascend", "devices": devices, "launcher": launcher}
        for launcher in ("ranktable", "msrun", "controller")
        for shape, devices in (("8", 8), ("2x8", 16))
    }
    specs |= {"gpu-8": {"platform": "gpu", "devices": 8}, "gpu-2x8": {"platform": "gpu", "devices": 16}}
    specs |= {"cpu-2": {"platform": "cpu", "devices": 2}}
    specs["gpu-secrets"] = {
        "platform": "gpu",
        "devices": 8,
        "secret_env": {"WANDB_API_KEY": "wandb/api-key"},
        "env_from_secrets": ["s3-credentials"],
        "secret_volumes": {"registry-ca": "/var/run/secrets/registry-ca"},
        "egress_cidrs": ["10.0.0.0/8"],
    }
    for name, fields in specs.items():
        spec = example_spec({"name": f"rx-{name}", **fields})
        yield f"job-{name}.yaml", render(spec, DEFAULT_KUBE_VERSION)
        if name.endswith(("-8-ranktable", "gpu-8", "cpu-2")):
            yield f"job-{name}-eval.yaml", render_eval(spec, spec.ckpt_dir, spec.val_dir, DEFAULT_KUBE_VERSION)
            yield f"job-{name}-export.yaml", render_export(spec, spec.ckpt_dir, "ONNX", DEFAULT_KUBE_VERSION)
            yield f"job-{name}-tensorboard.yaml", render_tensorboard([spec], DEFAULT_KUBE_VERSION)


def kustomize_objects() -> list[dict[str, Any]]:
    """The k8s/ base as `kubectl kustomize k8s/` builds it: its resources in order (it has no transformers)."""
    kustomization = yaml.safe_load((ROOT / "k8s" / "kustomization.yaml").read_text())
    assert set(kustomization) <= {"apiVersion", "kind", "resources"}, "kustomization grew transformers: use kubectl"
    objects = []
    for resource in kustomization["resources"]:
        objects += [doc for doc in yaml.safe_load_all((ROOT / "k8s" / resource).read_text()) if doc]
    return objects


def checkov_failures(folder: Path) -> set[tuple[str, str]]:
    argv = [str(SCAN_BIN / "checkov"), "-d", str(folder), "--framework", "kubernetes", "--skip-download"]
    proc = subprocess.run([*argv, "--quiet", "--compact", "-o", "json"], capture_output=True, text=True, check=False)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"checkov exited with {proc.returncode}: {proc.stderr[-2000:]}")
    reports = json.loads(proc.stdout)
    found = set()
    for report in reports if isinstance(reports, list) else [reports]:
        for check in report.get("results", {}).get("failed_checks", []):
            found.add((check["check_id"], Path(check["file_path"]).name))
    return found


def trivy_failures(folder: Path, cache: Path) -> set[tuple[str, str]]:
    argv = [str(SCAN_BIN / "trivy"), "config", "--skip-check-update", "--cache-dir", str(cache), "--quiet"]
    proc = subprocess.run([*argv, "--format", "json", str(folder)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"trivy exited with {proc.returncode}: {proc.stderr[-2000:]}")
    found = set()
    for result in json.loads(proc.stdout).get("Results", []):
        for item in result.get("Misconfigurations") or []:
            if item["Status"] == "FAIL":
                found.add((item["ID"], Path(result["Target"]).name))
    return found


def judge(found: set[tuple[str, str]]) -> list[str]:
    """Problems: findings outside ACCEPTED, and accepted entries that no longer fire."""
    problems = [
        f"{check} in {file}: not accepted (fix the manifests, or add it to ACCEPTED with the reason)"
        for check, file in sorted(found)
        if check not in ACCEPTED or not fnmatch.fnmatch(file, ACCEPTED[check][0])
    ]
    fired = {check for check, _ in found}
    problems += [f"{check}: accepted but no longer reported; remove it from ACCEPTED" for check in ACCEPTED
                 if check not in fired]  # fmt: skip
    return problems


def main() -> int:
    missing = [tool for tool in ("checkov", "trivy") if not (SCAN_BIN / tool).exists()]
    if missing:
        print(
            f"error: {', '.join(missing)} not in {SCAN_BIN}; run `make scan-tools` (or set SCAN_BIN)", file=sys.stderr
        )
        return 2
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="jobctl-scan-") as tmp:
        folder, cache = Path(tmp) / "manifests", Path(tmp) / "cache"
        folder.mkdir()
        files = dict(variants())
        files[BASE] = kustomize_objects()
        for name, objects in files.items():
            (folder / name).write_text(to_yaml(objects))
        found = checkov_failures(folder) | trivy_failures(folder, cache)
        shutil.rmtree(cache, ignore_errors=True)
    problems = judge(found)
    for problem in problems:
        print(f"scan: {problem}", file=sys.stderr)
    accepted = len({check for check, _ in found})
    print(f"scan: {len(files)} files, checkov + trivy, {accepted} accepted check ids, {len(problems)} problems, "
          f"{time.monotonic() - start:.0f} s")  # fmt: skip
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
