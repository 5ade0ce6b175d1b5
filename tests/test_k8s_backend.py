"""The Kubernetes backend through the official client, against the loopback API double (tests/k8s_double.py)."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from jobctl.backends.base import COMPLETE, FAILED, BackendError, WaitTimeout
from jobctl.backends.k8s import K8sBackend, api_client, clamp_version
from jobctl.cli import app
from jobctl.spec import load_spec
from tests.k8s_double import KubeDouble

NS = "team-a"
runner = CliRunner()


@pytest.fixture
def double(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[KubeDouble]:
    with KubeDouble(minor="31") as server:
        monkeypatch.setenv("KUBECONFIG", str(server.write_kubeconfig(tmp_path / "kubeconfig")))
        monkeypatch.delenv("JOBCTL_BACKEND", raising=False)
        yield server


def backend(double: KubeDouble) -> K8sBackend:
    return K8sBackend(api_client(None), NS, poll_seconds=0.05)


def jobctl(*args: str) -> Any:
    return runner.invoke(app, list(args))


def submit(name: str = "rx", *extra: str) -> Any:
    return jobctl("submit", "--platform", "gpu", "--devices", "16", "--name", name, "-n", NS, *extra)


def add_pod(
    double: KubeDouble,
    job: str,
    index: int,
    phase: str,
    *,
    suffix: str = "a",
    exit_code: int | None = None,
    reason: str | None = None,
    conditions: list[dict[str, Any]] | None = None,
) -> str:
    name = f"{job}-{index}-{suffix}"
    state: dict[str, Any] = {"running": {}}
    if exit_code is not None:
        state = {"terminated": {"exitCode": exit_code, "reason": reason or "Error"}}
    elif phase == "Pending":
        state = {"waiting": {"reason": reason or "ContainerCreating"}}
    container = {
        "name": "trainer",
        "ready": phase == "Running",
        "restartCount": 0,
        "image": "i",
        "imageID": "",
        "state": state,
    }
    labels = {"batch.kubernetes.io/job-name": job, "batch.kubernetes.io/job-completion-index": str(index)}
    double.put(
        "pods",
        NS,
        {
            "metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{"name": "trainer", "image": "i"}], "nodeName": f"node-{index}"},
            "status": {"phase": phase, "containerStatuses": [container], "conditions": conditions or []},
        },
    )
    time.sleep(0.01)  # distinct creation timestamps: replacements sort after the pods they replace
    return name


def test_clamp_version_to_supported_range() -> None:
    supported = [f"1.{m}" for m in range(29, 38)]
    assert clamp_version("1.28", supported) == "1.29"
    assert clamp_version("1.31", supported) == "1.31"
    assert clamp_version("1.40", supported) == "1.37"


@pytest.mark.parametrize(("minor", "expected"), [("31+", "1.31"), ("27", "1.29"), ("41", "1.37")])
def test_submit_renders_for_the_cluster_version(double: KubeDouble, minor: str, expected: str) -> None:
    double.version["minor"] = minor
    result = submit("rx", "-o", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["kubeVersion"] == expected
    job = double.get("jobs", NS, "rx")
    assert job is not None
    # successPolicy is GA from 1.33: present exactly when the cluster has it.
    assert ("successPolicy" in job["spec"]) == (expected >= "1.33")


def test_submit_creates_objects_and_owner_references(double: KubeDouble) -> None:
    result = submit()
    assert result.exit_code == 0, result.output
    assert double.names("jobs", NS) == ["rx"]
    assert double.names("services", NS) == ["rx"]
    assert double.names("configmaps", NS) == ["rx-config", "rx-spec"]
    assert double.names("networkpolicies", NS) == ["rx"]
    creates = double.calls("POST")
    dry = [c for c in creates if c["query"].get("dryRun") == "All"]
    real = [c for c in creates if "dryRun" not in c["query"]]
    assert len(dry) == 4 and creates.index(dry[-1]) < creates.index(real[0]), "dry run of every object first"
    job = double.get("jobs", NS, "rx")
    assert job is not None and job["spec"]["completions"] == 2 and job["spec"]["completionMode"] == "Indexed"
    for plural, name in (("services", "rx"), ("configmaps", "rx-config"), ("networkpolicies", "rx")):
        obj = double.get(plural, NS, name)
        assert obj is not None
        assert obj["metadata"]["ownerReferences"] == [
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "name": "rx",
                "uid": job["metadata"]["uid"],
                "blockOwnerDeletion": True,
            }
        ]
    record = double.get("configmaps", NS, "rx-spec")
    assert record is not None and "ownerReferences" not in record["metadata"], "the spec record outlives the Job"
    assert "how" not in result.output and "jobctl logs rx -f -n team-a" in result.output


def test_submit_refuses_a_used_name_without_resume(double: KubeDouble) -> None:
    assert submit().exit_code == 0
    again = submit()
    assert again.exit_code == 2
    assert "still running" in again.stderr and "--replace" in again.stderr
    double.set_job_status(NS, "rx", {"conditions": [{"type": "Complete", "status": "True"}]})
    finished = submit()
    assert finished.exit_code == 2 and "--resume" in finished.stderr and "Traceback" not in finished.output
    resumed = submit("rx", "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert double.get("jobs", NS, "rx") is not None
    assert "status" not in (double.get("jobs", NS, "rx") or {}), "a new Job replaced the finished one"


def test_submit_rolls_back_when_a_create_fails(double: KubeDouble) -> None:
    double.put("jobs", NS, {"metadata": {"name": "other"}, "spec": {}})
    double.put("services", NS, {"metadata": {"name": "rx"}, "spec": {}})  # a clash the dry run reports
    result = submit()
    assert result.exit_code == 2 and "already exists" in result.stderr
    assert double.names("configmaps", NS) == [] and double.names("jobs", NS) == ["other"]


def test_status_shows_pods_progress_and_checkpoint(double: KubeDouble) -> None:
    assert submit().exit_code == 0
    double.set_job_status(NS, "rx", {"active": 2})
    add_pod(double, "rx", 0, "Failed", suffix="old", exit_code=137, reason="OOMKilled")
    pod0 = add_pod(double, "rx", 0, "Running", suffix="new")
    add_pod(double, "rx", 1, "Running")
    double.append_log(
        NS,
        pod0,
        "[rank 0] rank=0 saved /shared/jobs/rx/ckpt/resnext101_64x4d-1_100.ckpt\n"
        "[rank 0] rank=0 epoch=2/150 step=120/187650 loss=4.1234 lr=0.049000 img/s=196.3 eta=1d02h03m\n",
    )
    result = jobctl("status", "rx", "-n", NS, "-o", "json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["phase"] == "Running" and info["platform"] == "gpu" and info["devices"] == 16
    assert [(p["index"], p["name"], p["restarts"]) for p in info["pods"]] == [(0, pod0, 1), (1, "rx-1-a", 0)]
    assert info["progress"]["step"] == 120 and info["progress"]["img_per_sec"] == 196.3
    assert info["checkpoint"] == "/shared/jobs/rx/ckpt/resnext101_64x4d-1_100.ckpt"
    table = jobctl("status", "rx", "-n", NS)
    assert table.exit_code == 0 and "step 120/187650" in table.stdout and "node-1" in table.stdout


def test_status_explains_pending_and_failed(double: KubeDouble) -> None:
    assert submit().exit_code == 0
    unschedulable = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": "0/4 nodes are available: 4 Insufficient nvidia.com/gpu.",
    }
    add_pod(double, "rx", 0, "Pending", conditions=[unschedulable])
    pending = json.loads(jobctl("status", "rx", "-n", NS, "-o", "json").stdout)
    assert pending["phase"] == "Pending" and "Insufficient nvidia.com/gpu" in pending["explanation"]
    add_pod(double, "rx", 1, "Failed", exit_code=2)
    failed_condition = {
        "type": "Failed",
        "status": "True",
        "reason": "PodFailurePolicy",
        "message": "Container trainer for pod team-a/rx-1-a failed with exit code 2 matching FailJob rule at index 0",
    }
    double.set_job_status(NS, "rx", {"failed": 1, "conditions": [failed_condition]})
    failed = json.loads(jobctl("status", "rx", "-n", NS, "-o", "json").stdout)
    assert failed["phase"] == "Failed"
    assert failed["explanation"].startswith("PodFailurePolicy:") and "rx-1-a exited 2" in failed["explanation"]


def test_status_explains_pending_from_events(double: KubeDouble) -> None:
    assert submit().exit_code == 0
    pod = add_pod(double, "rx", 0, "Pending")
    for kind, reason, message in (
        ("Normal", "Scheduled", "assigned team-a/rx-0-a to node-0"),
        ("Warning", "FailedMount", 'persistentvolumeclaim "imagenet" not found'),
    ):
        event = {
            "metadata": {"name": f"{pod}.{reason.lower()}"},
            "involvedObject": {"kind": "Pod", "name": pod, "namespace": NS},
            "type": kind,
            "reason": reason,
            "message": message,
        }
        double.put("events", NS, event)
    info = json.loads(jobctl("status", "rx", "-n", NS, "-o", "json").stdout)
    assert info["explanation"] == f'pod {pod}: FailedMount: persistentvolumeclaim "imagenet" not found'


def test_status_of_a_missing_job_fails_cleanly(double: KubeDouble) -> None:
    result = jobctl("status", "nope", "-n", NS)
    assert result.exit_code == 1 and "no Job 'nope'" in result.stderr and "Traceback" not in result.output


def test_list_shows_jobctl_jobs(double: KubeDouble) -> None:
    assert submit("rx").exit_code == 0 and submit("ry").exit_code == 0
    result = jobctl("list", "-n", NS, "-o", "json")
    assert result.exit_code == 0
    assert [j["name"] for j in json.loads(result.stdout)] == ["rx", "ry"]


def test_logs_merge_ranks_and_filter_one(double: KubeDouble) -> None:
    assert submit().exit_code == 0
    for index in (0, 1):
        pod = add_pod(double, "rx", index, "Running")
        ranks = range(index * 8, index * 8 + 2)
        double.append_log(NS, pod, "".join(f"[rank {r}] hello from {r}\n" for r in ranks))
    merged = jobctl("logs", "rx", "-n", NS)
    assert merged.exit_code == 0
    assert merged.stdout.splitlines() == [f"[rank {r}] hello from {r}" for r in (0, 1, 8, 9)]
    one = jobctl("logs", "rx", "-n", NS, "--rank", "9")
    assert one.stdout.splitlines() == ["[rank 9] hello from 9"]


def test_logs_follow_reattaches_to_replacement_pods(double: KubeDouble) -> None:
    assert submit().exit_code == 0
    double.set_job_status(NS, "rx", {"active": 2})
    first = add_pod(double, "rx", 0, "Running", suffix="one")
    double.append_log(NS, first, "[rank 0] before the restart\n")
    out = io.StringIO()
    follower = threading.Thread(target=backend(double).logs, args=("rx", out), kwargs={"follow": True, "rank": None})
    follower.start()
    time.sleep(0.3)
    double.append_log(NS, first, "[rank 0] rank=0 exiting 137\n")
    double.close_log(NS, first)
    second = add_pod(double, "rx", 0, "Running", suffix="two")
    double.append_log(NS, second, "[rank 0] resumed\n")
    time.sleep(0.3)
    double.append_log(NS, second, "[rank 0] done\n")
    double.close_log(NS, second)
    double.set_job_status(NS, "rx", {"succeeded": 2, "conditions": [{"type": "Complete", "status": "True"}]})
    follower.join(timeout=10)
    assert not follower.is_alive()
    assert out.getvalue().splitlines() == [
        "[rank 0] before the restart",
        "[rank 0] rank=0 exiting 137",
        "[rank 0] resumed",
        "[rank 0] done",
    ]


def finish_later(double: KubeDouble, name: str, condition: str, delay: float = 0.3) -> threading.Thread:
    def finish() -> None:
        time.sleep(delay)
        double.set_job_status(NS, name, {"conditions": [{"type": condition, "status": "True"}]})

    thread = threading.Thread(target=finish)
    thread.start()
    return thread


def test_wait_returns_the_phase_reached(double: KubeDouble) -> None:
    assert submit().exit_code == 0
    k8s = backend(double)
    with pytest.raises(WaitTimeout):
        k8s.wait("rx", for_phase=COMPLETE, timeout=0.2)
    finish_later(double, "rx", "Complete").join(0)
    assert k8s.wait("rx", for_phase=COMPLETE, timeout=5) == COMPLETE
    double.set_job_status(NS, "rx", {"conditions": [{"type": "Failed", "status": "True"}]})
    assert k8s.wait("rx", for_phase=COMPLETE, timeout=5) == FAILED
    cli = jobctl("wait", "rx", "-n", NS, "--for", "complete", "--timeout", "5")
    assert cli.exit_code == 1 and "Failed" in cli.stderr
    assert jobctl("wait", "rx", "-n", NS, "--for", "failed").exit_code == 0


def test_delete_cascades_and_removes_the_record(double: KubeDouble) -> None:
    assert submit().exit_code == 0
    result = jobctl("delete", "rx", "-n", NS)
    assert result.exit_code == 0, result.output
    job_delete = [c for c in double.calls("DELETE", "/jobs/rx") if c["path"].endswith("/jobs/rx")]
    assert job_delete and job_delete[0]["query"]["propagationPolicy"] == "Foreground"
    assert (
        double.names("jobs", NS) == [] and double.names("configmaps", NS) == [] and double.names("services", NS) == []
    )
    again = jobctl("delete", "rx", "-n", NS)
    assert again.exit_code == 1 and "no job 'rx'" in again.stderr


def run_eval_pod(double: KubeDouble, result_line: str, condition: str = "Complete") -> threading.Thread:
    """Play the Job controller for rx-eval: once it exists, give it a pod with a log and finish it."""

    def play() -> None:
        deadline = time.monotonic() + 10
        while double.get("jobs", NS, "rx-eval") is None and time.monotonic() < deadline:
            time.sleep(0.02)
        pod = add_pod(double, "rx-eval", 0, "Succeeded", exit_code=0)
        double.append_log(NS, pod, "checkpoint   top1   top5\n" + result_line + "\n")
        double.set_job_status(NS, "rx-eval", {"conditions": [{"type": condition, "status": "True"}]})

    thread = threading.Thread(target=play)
    thread.start()
    return thread


def test_eval_runs_an_eval_job_also_after_cleanup(double: KubeDouble) -> None:
    assert submit().exit_code == 0
    # TTL cleanup: the Job goes, and with it everything it owns; the spec record stays.
    with double.lock:
        for key in [k for k in double.objects if k[2] in ("rx", "rx-config")]:
            del double.objects[key]
    k8s = backend(double)
    spec = k8s.load_spec("rx")
    line = '{"top1": 0.71, "top5": 0.9, "images": 50000, "checkpoint": "/shared/jobs/rx/ckpt/a-1_1.ckpt"}'
    player = run_eval_pod(double, line)
    result = k8s.evaluate(spec, "latest", None)
    player.join()
    assert result["top1"] == 0.71 and result["images"] == 50000
    job = double.get("jobs", NS, "rx-eval")
    assert job is not None
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:3] == ["python", "-m", "trainer.evaluate"]
    assert "/shared/jobs/rx/ckpt" in command and "/data/val" in command
    for name in double.names("configmaps", NS):  # whatever else render_eval made is owned by the eval Job
        if name.startswith("rx-eval"):
            owners = (double.get("configmaps", NS, name) or {})["metadata"]["ownerReferences"]
            assert owners[0]["uid"] == job["metadata"]["uid"]


def test_eval_reports_a_failed_eval_job(double: KubeDouble) -> None:
    assert submit().exit_code == 0
    k8s = backend(double)
    player = run_eval_pod(double, "Traceback: out of memory", condition="Failed")
    with pytest.raises(BackendError, match="ended Failed without a result"):
        k8s.evaluate(k8s.load_spec("rx"), "resnext101_64x4d-3_300.ckpt", "/data/other-val")
    player.join()


def test_missing_kubeconfig_is_a_clean_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    result = jobctl("status", "rx")
    assert result.exit_code == 2 and "--backend local" in result.stderr and "Traceback" not in result.output


def test_spec_round_trips_through_the_record(double: KubeDouble) -> None:
    assert submit("rx", "--set", "max_epoch=3").exit_code == 0
    spec = backend(double).load_spec("rx")
    expected = load_spec(None, {"name": "rx", "platform": "gpu", "devices": 16, "namespace": NS}, ["max_epoch=3"])
    assert spec == expected


def test_unreachable_api_server_is_a_clean_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with KubeDouble() as server:
        kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))  # the double has stopped: nothing listens there now
    result = jobctl("status", "rx", "-n", NS)
    assert result.exit_code == 1 and "cannot reach the Kubernetes API" in result.stderr
    assert "Traceback" not in result.output
