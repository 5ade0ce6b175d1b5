"""The k8s backend's gang part (jobctl/backends/k8s_gang.py) through the real client against the API double."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

from jobctl.cli import app
from tests.k8s_double import KubeDouble

NS = "team-a"
runner = CliRunner()


def jobctl(*args: str) -> Any:
    return runner.invoke(app, list(args))


def submit(*extra: str) -> Any:
    return jobctl("submit", "--platform", "ascend", "--devices", "16", "--name", "gx", "-n", NS, *extra)


def test_podgroup_is_created_before_the_job_and_owned_by_it(double: KubeDouble) -> None:
    result = submit("--scheduler", "volcano", "--queue", "research")
    assert result.exit_code == 0, result.output
    posts = [c["path"] for c in double.calls("POST") if "dryRun" not in c["query"]]
    assert posts.index(next(p for p in posts if p.endswith("/podgroups"))) < posts.index(
        next(p for p in posts if p.endswith("/jobs"))
    )
    group, job = double.get("podgroups", NS, "gx"), double.get("jobs", NS, "gx")
    assert group is not None and job is not None
    assert group["spec"]["minMember"] == 2 and group["spec"]["queue"] == "research"
    assert [o["uid"] for o in group["metadata"]["ownerReferences"]] == [job["metadata"]["uid"]]
    assert jobctl("delete", "gx", "-n", NS).exit_code == 0
    assert double.get("podgroups", NS, "gx") is None  # owned: goes with the Job


def test_status_explains_a_waiting_gang(double: KubeDouble) -> None:
    assert submit("--scheduler", "volcano").exit_code == 0
    double.put(
        "podgroups",
        NS,
        {
            **(double.get("podgroups", NS, "gx") or {}),
            "status": {
                "phase": "Pending",
                "conditions": [
                    {"type": "Unschedulable", "status": "True", "reason": "NotEnoughResources",
                     "message": "1/2 tasks in gang unschedulable: 1 Insufficient huawei.com/Ascend910"},
                ],
            },
        },
    )  # fmt: skip
    status = jobctl("status", "gx", "-n", NS, "-o", "json")
    assert status.exit_code == 0, status.output
    assert (
        "waiting for its gang: PodGroup gx is Pending in Volcano queue default (needs 2 pods at once)" in status.stdout
    )
    assert "Insufficient huawei.com/Ascend910" in status.stdout


def test_status_explains_kueue_admission(double: KubeDouble) -> None:
    assert submit("--scheduler", "kueue", "--queue", "team-q").exit_code == 0
    job = double.get("jobs", NS, "gx") or {}
    double.put(
        "workloads",
        NS,
        {
            "metadata": {"name": "job-gx-1", "labels": {"kueue.x-k8s.io/job-uid": job["metadata"]["uid"]}},
            "status": {"conditions": [{"type": "QuotaReserved", "status": "False", "reason": "Pending",
                                       "message": "couldn't assign flavors to pod set main: insufficient quota"}]},
        },
    )  # fmt: skip
    status = jobctl("status", "gx", "-n", NS, "-o", "json")
    assert "waiting for Kueue admission in LocalQueue team-q: Pending: couldn't assign flavors" in status.stdout


def test_a_cluster_without_volcano_is_a_clear_error(double: KubeDouble, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests import k8s_double

    monkeypatch.delitem(k8s_double.KINDS, "podgroups")
    result = submit("--scheduler", "volcano")
    assert result.exit_code == 2
    assert "serves no podgroups.scheduling.volcano.sh API; install Volcano" in result.stderr
    assert double.names("jobs", NS) == [] and double.names("configmaps", NS) == []
