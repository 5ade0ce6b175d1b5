"""Strict schema validation: every rendered object and every k8s/ manifest, for every supported version."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from jobctl.render import SUPPORTED_KUBE_VERSIONS, render, render_eval
from jobctl.spec import JobSpec, validate_spec
from jobctl.validate import ManifestError, crd_validator, validate_object, validate_objects

K8S_DIR = Path(__file__).resolve().parents[1] / "k8s"
# Volcano's PodGroup CRD (source in the file's header): the examples' PodGroups validate against it strictly.
PODGROUP_CRD = yaml.safe_load((Path(__file__).parent / "crd_volcano_podgroups.yaml").read_text())
CUSTOM = {("scheduling.volcano.sh/v1beta1", "PodGroup"): crd_validator(PODGROUP_CRD, "v1beta1")}

SPECS: dict[str, dict[str, Any]] = {
    "ascend-1": {"platform": "ascend", "devices": 1},
    "ascend-8": {"platform": "ascend", "devices": 8},
    "ascend-2x8": {"platform": "ascend", "devices": 16},
    "ascend-64x8-controller": {"platform": "ascend", "devices": 512, "launcher": "controller"},
    "ascend-msrun-2x16": {"platform": "ascend", "devices": 32, "devices_per_node": 16, "launcher": "msrun"},
    "gpu-8": {"platform": "gpu", "devices": 8},
    "gpu-2x8-everything": {
        "platform": "gpu",
        "devices": 16,
        "queue": "team-a",
        "priority_class": "high",
        "node_selector": {"nvidia.com/gpu.product": "A100-SXM4-80GB"},
        "tolerations": [{"key": "spot", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60}],
        "image_pull_secrets": ["regcred"],
        "env": {"NCCL_IB_HCA": "mlx5"},
        "ttl_seconds_after_finished": None,
    },
    "cpu-2": {"platform": "cpu", "devices": 2},
    "cpu-host-paths-root": {
        "platform": "cpu",
        "devices": 4,
        "data": {"host_path": "/data/imagenet", "val_subpath": None},
        "shared": {"host_path": "/srv/shared"},
        "run_as_user": None,
    },
}


def spec(key: str) -> JobSpec:
    return validate_spec({"name": f"job-{key}"[:40].rstrip("-"), **SPECS[key]})


@pytest.mark.parametrize("version", SUPPORTED_KUBE_VERSIONS)
@pytest.mark.parametrize("key", sorted(SPECS))
def test_rendered_objects_validate_strictly(key: str, version: str) -> None:
    job_spec = spec(key)
    validate_objects(render(job_spec, version), version)
    validate_objects(render_eval(job_spec, f"{job_spec.ckpt_dir}", "/data/val", version), version)


def manifests() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(K8S_DIR.rglob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        found += [(str(path.relative_to(K8S_DIR)), doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return found


@pytest.mark.parametrize("version", SUPPORTED_KUBE_VERSIONS)
def test_k8s_manifests_validate_strictly(version: str) -> None:
    found = manifests()
    assert {name for name, _ in found} >= {"namespace.yaml", "pvc-shared.yaml", "rbac.yaml", "examples/gpu-8.yaml"}
    assert any(doc["kind"] == "PodGroup" for _, doc in found), "an example renders a Volcano gang"
    for name, doc in found:
        if doc["kind"].startswith("ValidatingAdmissionPolicy") and version < "1.30":
            continue  # admissionregistration.k8s.io/v1 from 1.30 (k8s/pod-policy.yaml says what 1.29 needs)
        try:
            validate_object(doc, version, CUSTOM)
        except ManifestError as exc:
            pytest.fail(f"k8s/{name}: {exc}")


def test_kustomization_lists_every_base_manifest() -> None:
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    base = {p.name for p in K8S_DIR.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(base)
    kinds = {doc["kind"] for name, doc in manifests() if not name.startswith("examples/")}
    assert kinds == {"Namespace", "PersistentVolumeClaim", "ServiceAccount", "Role", "RoleBinding"} | {
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    }
    admission = ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")  # cluster-scoped
    namespaces = {
        doc["metadata"].get("name" if doc["kind"] == "Namespace" else "namespace")
        for _, doc in manifests()
        if doc["kind"] not in admission
    }
    assert namespaces == {"mindspore-jobs", "mindspore-jobs-ascend"}


def test_role_grants_what_the_backend_uses() -> None:
    roles = [doc for _, doc in manifests() if doc["kind"] == "Role"]
    assert {r["metadata"]["namespace"] for r in roles} == {"mindspore-jobs", "mindspore-jobs-ascend"}
    assert roles[0]["rules"] == roles[1]["rules"]
    role = roles[0]
    grants = {
        (g, r): set(rule["verbs"]) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]
    }
    assert grants == {
        ("batch", "jobs"): {"create", "get", "list", "delete"},
        ("batch", "jobs/finalizers"): {"update"},
        ("", "pods"): {"create", "get", "list"},  # create: only as a server-side dry run (pod admission at submit)
        ("", "pods/log"): {"get"},
        ("apps", "deployments"): {"create", "get", "delete"},  # jobctl tensorboard
        ("", "services"): {"create", "delete"},
        ("", "configmaps"): {"create", "get", "delete"},
        ("networking.k8s.io", "networkpolicies"): {"create", "delete", "patch"},
        ("", "events"): {"list"},
        ("scheduling.volcano.sh", "podgroups"): {"create", "get", "delete", "patch"},
        ("kueue.x-k8s.io", "workloads"): {"list"},
    }
    shared = next(
        doc
        for _, doc in manifests()
        if doc["kind"] == "PersistentVolumeClaim" and doc["metadata"]["name"] == "jobctl-shared"
    )
    assert shared["spec"]["accessModes"] == ["ReadWriteMany"]


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda job: job["spec"]["template"]["spec"].update(bogus=1), r"spec\.template\.spec: Additional properties"),
        (lambda job: job["spec"].update(completions="two"), r"spec\.completions: 'two' is not of type"),
        (
            lambda job: job["spec"]["template"]["spec"]["containers"][0].pop("name"),
            r"containers\.0: 'name' is a required",
        ),
        (lambda job: job["metadata"].update(labels={"a": 1}), r"metadata\.labels\.a"),
    ],
)
def test_invalid_objects_name_the_object_and_field(mutate: Any, needle: str) -> None:
    job = render(spec("gpu-8"))[-1]
    mutate(job)
    with pytest.raises(ManifestError, match=needle) as err:
        validate_objects([job], "1.31")
    assert str(err.value).startswith("Job/job-gpu-8 (batch/v1) does not validate against Kubernetes 1.31")


def test_unknown_kinds_and_versions() -> None:
    with pytest.raises(ManifestError, match="no schema"):
        validate_object({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}, "1.29")
    with pytest.raises(ManifestError, match="apiVersion and kind"):
        validate_object({"metadata": {"name": "w"}}, "1.29")
    # A newer server validates against the newest schemas shipped.
    validate_objects(render(spec("cpu-2"), "1.40"), "1.40")
