"""Every object name jobctl creates for a job of the longest valid name fits the 63-character limit, and each
comes from contract.names (the length rule is derived from the longest of them)."""

from __future__ import annotations

from typing import Any

import pytest

from contract import names
from jobctl.backends.k8s.backend import K8sBackend
from jobctl.backends.k8s.history import reader_job
from jobctl.render import SUPPORTED_KUBE_VERSIONS, render, render_eval
from jobctl.spec import JobSpec, SpecError, validate_spec

SPECS: list[dict[str, Any]] = [
    {"platform": "cpu", "devices": 1},
    {"platform": "gpu", "devices": 16, "scheduler": "volcano"},
    {"platform": "gpu", "devices": 4096, "devices_per_node": 1},  # pod index 4095
    {"platform": "ascend", "devices": 16, "launcher": "controller"},  # rings-config-<name>
]


def created_names(spec: JobSpec) -> set[str]:
    """The name of every object jobctl can create for ``spec``, and its pods' hostnames."""
    version = SUPPORTED_KUBE_VERSIONS[-1]
    objects = [*render(spec, version), *render_eval(spec, spec.ckpt_dir, "/data", version)]
    objects.append(reader_job(spec, version))
    found = {o["metadata"]["name"] for o in objects}
    found.add(K8sBackend.record_of(spec)["metadata"]["name"])
    job = next(o for o in objects if o["kind"] == "Job" and o["metadata"]["name"] == spec.name)
    found |= {names.pod_hostname(spec.name, i) for i in (0, job["spec"]["completions"] - 1)}
    return found


@pytest.mark.parametrize("fields", SPECS, ids=lambda f: f"{f['platform']}-{f['devices']}")
def test_every_name_of_the_longest_valid_job_name_fits(fields: dict[str, Any]) -> None:
    probe = validate_spec({"name": "a", **fields})
    most = names.max_name_length(probe.pods, rings=probe.launcher == "controller")
    spec = validate_spec({"name": "a" * most, **fields})
    created = created_names(spec)
    assert max(len(n) for n in created) == names.MAX_NAME, "the rule is tight: the longest name is exactly 63"
    generated = set(names.generated(spec.name, spec.pods, rings=spec.launcher == "controller").values())
    assert created <= generated | {names.pod_hostname(spec.name, 0)}, created - generated
    with pytest.raises(SpecError, match=f"at most {most} characters"):
        validate_spec({"name": "a" * (most + 1), **fields})
