"""The Ascend namespace's ValidatingAdmissionPolicy (k8s/pod-policy.yaml), evaluated: its CEL runs here (cel-python,
the same expressions the API server runs) on what jobctl renders and on pods Pod Security `restricted` refuses,
ephemeral containers (`kubectl debug`, the `pods/ephemeralcontainers` subresource) included."""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import celpy
import pytest
import yaml

from jobctl.render import render, render_eval
from jobctl.spec import JobSpec, validate_spec

POLICY_FILE = Path(__file__).resolve().parents[1] / "k8s" / "pod-policy.yaml"
POLICY, BINDING = (doc for doc in yaml.safe_load_all(POLICY_FILE.read_text()) if doc)
ENV = celpy.Environment()


@functools.cache
def program(expression: str) -> Any:
    return ENV.program(ENV.compile(expression))


def denials(obj: dict[str, Any]) -> list[str]:
    """The messages of the validations `obj` fails, as the API server evaluates them: the variables in order, each
    seeing the ones before; an expression that errors denies (failurePolicy: Fail)."""
    assert POLICY["spec"]["failurePolicy"] == "Fail"
    variables = celpy.celtypes.MapType({})
    activation = {"object": celpy.json_to_cel(obj), "variables": variables}
    for variable in POLICY["spec"]["variables"]:
        variables[celpy.celtypes.StringType(variable["name"])] = program(variable["expression"]).evaluate(activation)
    failed = []
    for validation in POLICY["spec"]["validations"]:
        result = program(validation["expression"]).evaluate(activation)
        if not (isinstance(result, celpy.celtypes.BoolType) and bool(result)):  # False, or an evaluation error
            failed.append(validation["message"])
    return failed


def ascend(devices: int = 8, **fields: Any) -> JobSpec:
    return validate_spec({"name": "rx", "platform": "ascend", "devices": devices, **fields})


def as_pod(job: dict[str, Any]) -> dict[str, Any]:
    """The Pod the Job controller creates from the Job's template."""
    template = copy.deepcopy(job["spec"]["template"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": template["metadata"], "spec": template["spec"]}


def rendered_jobs() -> list[dict[str, Any]]:
    jobs = []
    for launcher in ("ranktable", "msrun", "controller"):
        for devices in (8, 16):
            spec = ascend(devices, launcher=launcher)
            objects = render(spec) + render_eval(spec, spec.ckpt_dir, spec.val_dir)
            jobs += [o for o in objects if o["kind"] == "Job"]
    return jobs


def trainer_pod() -> dict[str, Any]:
    return as_pod(next(o for o in render(ascend()) if o["kind"] == "Job"))


# `kubectl debug POD -it --image busybox --target trainer`: the ephemeral container as kubectl sends it, with
# and without `--profile restricted` (which adds exactly restricted's container fields).
DEBUG = {"name": "debugger", "image": "busybox:1.37", "targetContainerName": "trainer", "stdin": True, "tty": True}
RESTRICTED_DEBUG = {
    **DEBUG,
    "securityContext": {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    },
}


def with_ephemeral(container: dict[str, Any]) -> dict[str, Any]:
    pod = trainer_pod()
    pod["spec"]["ephemeralContainers"] = [container]
    return pod


def test_the_policy_also_checks_ephemeral_containers_added_to_running_pods() -> None:
    """`kubectl debug` adds a container through the pods/ephemeralcontainers subresource (an UPDATE whose object is
    the whole Pod); a rule for `pods` alone never sees it."""
    rules = POLICY["spec"]["matchConstraints"]["resourceRules"]
    core = [r for r in rules if r["apiGroups"] == [""]]
    resources = {res for r in core if "UPDATE" in r["operations"] for res in r["resources"]}
    assert {"pods", "pods/ephemeralcontainers"} <= resources


@pytest.mark.parametrize("job", rendered_jobs(), ids=lambda j: j["metadata"]["name"])
def test_every_rendered_ascend_job_and_its_pods_are_admitted(job: dict[str, Any]) -> None:
    assert denials(job) == []
    assert denials(as_pod(job)) == []


def test_a_debug_container_that_meets_restricted_is_admitted() -> None:
    assert denials(with_ephemeral(RESTRICTED_DEBUG)) == []


def container_fields(**security: Any) -> dict[str, Any]:
    return {**RESTRICTED_DEBUG, "securityContext": {**RESTRICTED_DEBUG["securityContext"], **security}}


@pytest.mark.parametrize(
    ("container", "message"),
    [
        (DEBUG, "allowPrivilegeEscalation: false"),  # plain `kubectl debug`: no securityContext at all
        (container_fields(privileged=True), "privileged containers"),
        (container_fields(capabilities={"drop": ["ALL"], "add": ["SYS_ADMIN"]}), "drop ALL capabilities"),
        (container_fields(runAsUser=0), "runAsUser 0"),
        (container_fields(runAsNonRoot=False), "runAsNonRoot"),
        (container_fields(seccompProfile={"type": "Unconfined"}), "seccompProfile"),
        (container_fields(procMount="Unmasked"), "procMount"),
        ({**RESTRICTED_DEBUG, "volumeMounts": [{"name": "ascend-driver", "mountPath": "/d"}]}, "mounted readOnly"),
    ],
    ids=["kubectl-debug", "privileged", "capability", "root", "non-root-off", "seccomp", "procmount", "driver-rw"],
)
def test_ephemeral_containers_are_held_to_restricted(container: dict[str, Any], message: str) -> None:
    pod = with_ephemeral(container)
    assert any(v["name"] == "ascend-driver" and "hostPath" in v for v in pod["spec"]["volumes"])
    found = denials(pod)
    assert any(message in m for m in found), found
    assert container is DEBUG or len(found) == 1, found  # each departure is caught by its own rule


def mutate(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    pod = trainer_pod()
    change(pod["spec"])
    return pod


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p["volumes"].append({"name": "x", "hostPath": {"path": "/var/run"}}), "Ascend driver paths"),
        (lambda p: p["containers"][0]["volumeMounts"][-1].pop("readOnly", None), "mounted readOnly"),
        (lambda p: p.update(hostNetwork=True), "hostNetwork"),
        (lambda p: p["containers"][0]["securityContext"].update(privileged=True), "privileged containers"),
        (lambda p: p["securityContext"].pop("seccompProfile"), "seccompProfile"),
        (lambda p: p["securityContext"].update(runAsUser=0), "runAsUser 0"),
        (lambda p: p["volumes"].append({"name": "n", "nfs": {"server": "s", "path": "/"}}), "only configMap"),
        (lambda p: p.setdefault("initContainers", []).append(dict(DEBUG)), "allowPrivilegeEscalation"),
    ],
    ids=["host-path", "driver-rw", "host-network", "privileged", "seccomp", "root", "nfs", "init-container"],
)
def test_pods_that_restricted_refuses_are_denied(change: Callable[[dict[str, Any]], None], message: str) -> None:
    """The evaluator is not vacuous: each of these departures from the rendered pod is denied, with its reason."""
    found = denials(mutate(change))
    assert any(message in m for m in found), found
