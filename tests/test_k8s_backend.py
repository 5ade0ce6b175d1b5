"""The Kubernetes backend through the official client, against the loopback API double (tests/k8s_double.py)."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from jobctl.backends.base import COMPLETE, FAILED, BackendError, WaitTimeout
from jobctl.backends.k8s.api import Caller
from jobctl.backends.k8s.backend import K8sBackend, api_client
from jobctl.backends.k8s.client import Client
from jobctl.cli import app
from jobctl.render import resolve_kube_version
from jobctl.spec import load_spec
from tests.k8s_double import KubeDouble

NS = "team-a"
runner = CliRunner()


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
    message: str | None = None,
    conditions: list[dict[str, Any]] | None = None,
) -> str:
    name = f"{job}-{index}-{suffix}"
    state: dict[str, Any] = {"running": {}}
    if exit_code is not None:
        state = {"terminated": {"exitCode": exit_code, "reason": reason or "Error", "message": message}}
    elif phase == "Pending" or reason is not None:
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
    owner = double.get("jobs", NS, job)  # as the Job controller does: pods are the Job's dependents
    owners = [{"apiVersion": "batch/v1", "kind": "Job", "name": job, "uid": owner["metadata"]["uid"]}] if owner else []
    double.put(
        "pods",
        NS,
        {
            "metadata": {"name": name, "labels": labels, "ownerReferences": owners},
            "spec": {"containers": [{"name": "trainer", "image": "i"}], "nodeName": f"node-{index}"},
            "status": {"phase": phase, "containerStatuses": [container], "conditions": conditions or []},
        },
    )
    return name


def wait_until(predicate: Callable[[], Any], what: str, timeout: float = 60) -> None:
    """Wait for an event (never a fixed sleep), with a generous deadline."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


class FakeClock:
    """Shared by the backend and the stand-in's controllers: sleeping advances it at once."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 10.0)


def fake_time(double: KubeDouble, k8s: K8sBackend) -> FakeClock:
    clock = FakeClock()
    double.clock = k8s.clock = clock
    k8s.sleep = clock.sleep
    return clock


def test_clamp_version_to_supported_range() -> None:
    supported = [f"1.{m}" for m in range(29, 38)]
    assert resolve_kube_version("1.28", older_as_oldest=True) == supported[0] == "1.29"
    assert resolve_kube_version("1.31", older_as_oldest=True) == "1.31"
    assert resolve_kube_version("v1.40.2", older_as_oldest=True) == supported[-1] == "1.37"


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
    assert len(dry) == 5 and creates.index(dry[-1]) < creates.index(real[0]), "dry run of every object first"
    assert dry[-1]["path"].endswith("/pods"), "and of a Pod from the Job's template, for pod admission"
    created = [c["path"].rsplit("/", 1)[-1] for c in real]
    assert created == ["configmaps", "networkpolicies", "jobs", "configmaps", "services"]
    assert real[0]["body"]["metadata"]["name"] == "rx-spec", "the spec record first: a crash leaves the name used"
    patched = [c["path"].rsplit("/", 2)[-2] for c in double.calls("PATCH")]
    assert patched == ["networkpolicies"], (
        "only the NetworkPolicy, which must exist before the pods, gets its owner later"
    )
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


def test_status_and_list_take_devices_and_platform_from_the_stored_spec(double: KubeDouble) -> None:
    assert submit().exit_code == 0
    job = double.get("jobs", NS, "rx")
    assert job is not None
    for container in job["spec"]["template"]["spec"]["containers"]:  # the rendered env says otherwise
        container["env"] = [{"name": "JOBCTL_PLATFORM", "value": "cpu"}, {"name": "JOBCTL_NUM_PODS", "value": "7"}]
    double.put("jobs", NS, job)
    info = json.loads(jobctl("status", "rx", "-n", NS, "-o", "json").stdout)
    assert (info["platform"], info["devices"]) == ("gpu", 16)
    listed = json.loads(jobctl("list", "-n", NS, "-o", "json").stdout)
    assert [(j["name"], j["platform"], j["devices"]) for j in listed] == [("rx", "gpu", 16)]


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


def follows(double: KubeDouble, pod: str) -> int:
    return len([c for c in double.calls("GET", f"/pods/{pod}/log") if c["query"].get("follow") == "true"])


def start_follower(double: KubeDouble, out: io.StringIO) -> threading.Thread:
    follower = threading.Thread(target=backend(double).logs, args=("rx", out), kwargs={"follow": True, "rank": None})
    follower.start()
    return follower


def end_pod(double: KubeDouble, pod: str, phase: str) -> None:
    double.close_log(NS, pod)
    double.put("pods", NS, {**(double.get("pods", NS, pod) or {}), "status": {"phase": phase}})


def test_logs_follow_reattaches_to_replacement_pods(double: KubeDouble) -> None:
    assert submit().exit_code == 0
    double.set_job_status(NS, "rx", {"active": 2})
    first = add_pod(double, "rx", 0, "Running", suffix="one")
    double.append_log(NS, first, "[rank 0] before the restart\n")
    out = io.StringIO()
    follower = start_follower(double, out)
    wait_until(lambda: follows(double, first) == 1, "the follower to attach to the first pod")
    double.append_log(NS, first, "[rank 0] rank=0 exiting 137\n")
    end_pod(double, first, "Failed")
    second = add_pod(double, "rx", 0, "Running", suffix="two")
    double.append_log(NS, second, "[rank 0] resumed\n")
    wait_until(lambda: follows(double, second) == 1, "the follower to attach to the replacement pod")
    double.append_log(NS, second, "[rank 0] done\n")
    complete_and_join(double, second, follower, succeeded=2)
    assert out.getvalue().splitlines() == [
        "[rank 0] before the restart",
        "[rank 0] rank=0 exiting 137",
        "[rank 0] resumed",
        "[rank 0] done",
    ]


def complete_and_join(double: KubeDouble, pod: str, follower: threading.Thread, succeeded: int) -> None:
    """The last pod ends, the Job completes: the follower must return."""
    end_pod(double, pod, "Succeeded")
    double.set_job_status(NS, "rx", {"succeeded": succeeded, "conditions": [{"type": "Complete", "status": "True"}]})
    follower.join(timeout=30)
    assert not follower.is_alive()


def test_logs_follow_reattaches_when_the_stream_is_cut_without_duplicates(double: KubeDouble) -> None:
    assert submit().exit_code == 0
    double.set_job_status(NS, "rx", {"active": 1})
    pod = add_pod(double, "rx", 0, "Running")
    double.append_log(NS, pod, "[rank 0] one\n")
    out = io.StringIO()
    follower = start_follower(double, out)
    wait_until(lambda: follows(double, pod) == 1, "the first attach")
    double.cut_streams(NS, pod)  # the kubelet's idle timeout: a clean end while the pod runs on
    wait_until(lambda: follows(double, pod) == 2, "a re-attach after a clean cut")
    double.append_log(NS, pod, "[rank 0] two\n")
    double.cut_streams(NS, pod, abrupt=True)  # an API server restart: the connection just goes
    wait_until(lambda: follows(double, pod) == 3, "a re-attach after a reset")
    double.append_log(NS, pod, "[rank 0] three\n")
    complete_and_join(double, pod, follower, succeeded=1)
    assert out.getvalue().splitlines() == ["[rank 0] one", "[rank 0] two", "[rank 0] three"]
    reattach = [c for c in double.calls("GET", f"/pods/{pod}/log") if c["query"].get("follow") == "true"][1]
    assert reattach["query"]["timestamps"] == "true" and int(reattach["query"]["sinceSeconds"]) >= 1


def finish_after_polls(double: KubeDouble, name: str, condition: str, polls: int = 2) -> threading.Thread:
    """Finish the Job once the backend has read it ``polls`` more times (so it saw it unfinished first)."""
    seen = len(double.calls("GET", f"/jobs/{name}"))

    def finish() -> None:
        wait_until(lambda: len(double.calls("GET", f"/jobs/{name}")) >= seen + polls, "the backend to poll")
        double.set_job_status(NS, name, {"conditions": [{"type": condition, "status": "True"}]})

    thread = threading.Thread(target=finish)
    thread.start()
    return thread


def test_wait_returns_the_phase_reached(double: KubeDouble) -> None:
    assert submit().exit_code == 0
    k8s = backend(double)
    with pytest.raises(WaitTimeout):
        k8s.wait("rx", for_phase=COMPLETE, timeout=0.2)
    finisher = finish_after_polls(double, "rx", "Complete")
    assert k8s.wait("rx", for_phase=COMPLETE, timeout=5) == COMPLETE
    finisher.join()
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
    assert double.get("jobs", NS, "rx-eval") is None, "jobctl deletes the eval Job once it has read the result"
    job = [c for c in double.calls("POST", "/jobs") if "dryRun" not in c["query"]][-1]["body"]
    assert "ttlSecondsAfterFinished" not in job["spec"], "no TTL: the controller could delete it before the read"
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:3] == ["python", "-m", "trainer.evaluate"]
    assert "/shared/jobs/rx/ckpt" in command and "/data/val" in command


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


# Real-cluster behaviour the stand-in models (issue 15) ----------------------------------------------------


def test_logs_skip_pods_that_have_not_started(double: KubeDouble) -> None:
    assert submit().exit_code == 0
    running = add_pod(double, "rx", 0, "Running")
    double.append_log(NS, running, "[rank 0] hello\n")
    pulling = add_pod(double, "rx", 1, "Pending", reason="ImagePullBackOff")
    result = jobctl("logs", "rx", "-n", NS)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["[rank 0] hello"]
    assert pulling in result.stderr and "trying and failing to pull image" in result.stderr


def test_status_of_a_pod_0_that_failed_before_starting(double: KubeDouble) -> None:
    assert submit().exit_code == 0
    add_pod(double, "rx", 0, "Failed", reason="ErrImagePull")  # Failed, yet its container never ran
    result = jobctl("status", "rx", "-n", NS, "-o", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["progress"] is None


def test_delete_waits_for_foreground_deletion_beyond_the_grace(double: KubeDouble) -> None:
    assert submit().exit_code == 0
    add_pod(double, "rx", 0, "Running")
    notes: list[str] = []
    k8s = K8sBackend(api_client(None), NS, poll_seconds=5, note=notes.append)
    clock = fake_time(double, k8s)
    double.deletion_delay = 330  # the pods save for longer than the 300 s grace; the Job stays until they are gone
    k8s.delete("rx", wait=True)
    assert double.names("jobs", NS) == [] and clock.now >= 1330
    assert notes and "1 pod(s) still stopping" in notes[0] and "grace 300 s" in notes[0]


def test_delete_gives_up_after_grace_and_margin(double: KubeDouble) -> None:
    assert submit().exit_code == 0
    add_pod(double, "rx", 0, "Running")
    k8s = K8sBackend(api_client(None), NS, poll_seconds=5, note=lambda _: None)
    fake_time(double, k8s)
    double.deletion_delay = 10_000
    with pytest.raises(BackendError, match=r"still being deleted after 420 s \(1 pod\(s\) left\)"):
        k8s.delete("rx", wait=True)


def test_wait_treats_a_job_removed_by_its_ttl_as_finished(double: KubeDouble) -> None:
    assert submit().exit_code == 0
    with double.lock:
        double.objects[("jobs", NS, "rx")]["spec"]["ttlSecondsAfterFinished"] = 0  # 0 is valid: at once
    notes: list[str] = []
    k8s = K8sBackend(api_client(None), NS, poll_seconds=0.05, note=notes.append)
    finisher = finish_after_polls(double, "rx", "Complete")
    assert k8s.wait("rx", for_phase=COMPLETE, timeout=10) == "Unknown"
    finisher.join()
    assert double.names("jobs", NS) == [] and "TTL" in notes[0]


def test_eval_reports_an_eval_job_deleted_under_it(double: KubeDouble) -> None:
    assert submit().exit_code == 0
    k8s = backend(double)

    def delete_it() -> None:
        wait_until(lambda: double.get("jobs", NS, "rx-eval") is not None, "the eval Job")
        wait_until(lambda: len(double.calls("GET", "/jobs/rx-eval")) >= 3, "the backend to poll it")
        with double.lock:
            double._remove(("jobs", NS, "rx-eval"))

    thread = threading.Thread(target=delete_it)
    thread.start()
    with pytest.raises(BackendError, match="deleted before jobctl read its result"):
        k8s.evaluate(k8s.load_spec("rx"), "latest", None)
    thread.join()


def test_an_interrupted_submit_leaves_nothing_behind(double: KubeDouble, monkeypatch: pytest.MonkeyPatch) -> None:
    real_create = Client.create

    def create(self: Client, obj: dict[str, Any], dry_run: bool = False) -> Any:
        if obj["kind"] == "Service" and not dry_run:
            raise KeyboardInterrupt  # Ctrl-C after the Job exists
        return real_create(self, obj, dry_run)

    monkeypatch.setattr(Client, "create", create)
    result = submit()
    assert result.exit_code == 130
    assert double.names("jobs", NS) == [] and double.names("configmaps", NS) == []
    assert double.names("services", NS) == []
    monkeypatch.setattr(Client, "create", real_create)
    assert submit().exit_code == 0, "the name is free again"


def test_leftovers_of_a_crashed_submit_get_a_hint_and_replace_clears_them(double: KubeDouble) -> None:
    double.put("configmaps", NS, {"metadata": {"name": "rx-config"}, "data": {}})  # no owner, no Job, no record
    double.put("services", NS, {"metadata": {"name": "rx"}, "spec": {}})
    clash = submit()
    assert clash.exit_code == 2 and "already exists" in clash.stderr and "--replace" in clash.stderr
    replaced = submit("rx", "--replace")
    assert replaced.exit_code == 0, replaced.output
    service = double.get("services", NS, "rx")
    assert service is not None and service["metadata"]["ownerReferences"][0]["name"] == "rx"


def test_status_shows_the_interim_failing_state_and_wait_waits_for_failed(double: KubeDouble) -> None:
    assert submit().exit_code == 0
    double.set_job_status(NS, "rx", {"active": 2})
    add_pod(double, "rx", 0, "Running")
    message = "rank 9: CUDA out of memory\nTraceback (most recent call last): ..."
    add_pod(double, "rx", 1, "Failed", exit_code=137, reason="OOMKilled", message=message)
    k8s = backend(double)
    clock = fake_time(double, k8s)
    double.finish_job(NS, "rx", "Failed", reason="BackoffLimitExceeded", message="Job has reached the limit", delay=300)
    info = json.loads(jobctl("status", "rx", "-n", NS, "-o", "json").stdout)
    assert info["phase"] == "Running"
    assert info["explanation"] == (
        "failing: BackoffLimitExceeded: Job has reached the limit; first failing pod rx-1-a exited 137 "
        "(OOMKilled): rank 9: CUDA out of memory; waiting for 2 pod(s) to terminate"
    )
    assert k8s.wait("rx", for_phase=FAILED, timeout=600) == FAILED and clock.now >= 1300
    failed = json.loads(jobctl("status", "rx", "-n", NS, "-o", "json").stdout)
    assert failed["phase"] == "Failed" and failed["explanation"].endswith("(OOMKilled): rank 9: CUDA out of memory")


def test_transient_errors_are_retried(double: KubeDouble) -> None:
    assert submit().exit_code == 0
    double.fail_next("GET", "/jobs/rx", 429, retry_after=1)  # API Priority and Fairness
    double.fail_next("GET", "/jobs/rx", 503, times=2)
    started = time.monotonic()
    result = jobctl("status", "rx", "-n", NS)
    assert result.exit_code == 0, result.output
    assert time.monotonic() - started >= 1, "Retry-After honoured"
    assert len(double.calls("GET", "/jobs/rx")) >= 4


def test_a_half_open_connection_times_out_and_is_retried(double: KubeDouble) -> None:
    assert submit().exit_code == 0
    hang = double.hang_next("GET", "/jobs/rx")
    k8s = K8sBackend(api_client(None), NS, caller=Caller(double.url, backoff=0.01, timeout=(1, 0.5)))
    try:
        assert k8s.status("rx").name == "rx"
    finally:
        hang.released.set()


def test_pod_admission_failures_fail_submit(double: KubeDouble) -> None:
    double.reject_pods = 'violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false'
    result = submit()
    assert result.exit_code == 2 and "PodSecurity" in result.stderr and "pod admission" in result.stderr
    assert double.names("jobs", NS) == [] and double.names("configmaps", NS) == []


def put_event(double: KubeDouble, kind: str, name: str, event: str, reason: str, message: str, when: str) -> None:
    double.put(
        "events",
        NS,
        {
            "metadata": {"name": event},
            "involvedObject": {"kind": kind, "name": name, "namespace": NS},
            "type": "Warning",
            "reason": reason,
            "message": message,
            "lastTimestamp": when,
        },
    )


def test_status_shows_the_jobs_warning_events_newest_first(double: KubeDouble) -> None:
    assert submit().exit_code == 0
    put_event(double, "Job", "rx", "rx.b", "FailedCreate", "old", "2026-01-01T00:00:00Z")
    forbidden = 'Error creating: pods "rx-0-x" is forbidden: exceeded quota: gpu, requested: nvidia.com/gpu=8'
    put_event(double, "Job", "rx", "rx.a", "FailedCreate", forbidden, "2026-01-01T00:05:00Z")
    info = json.loads(jobctl("status", "rx", "-n", NS, "-o", "json").stdout)
    assert info["explanation"] == f"job rx: FailedCreate: {forbidden}"


def test_rejected_credentials_and_rbac_get_hints(double: KubeDouble) -> None:
    double.token = "rotated"
    result = jobctl("status", "rx", "-n", NS)
    assert result.exit_code == 2 and "Unauthorized" in result.stderr and "credentials" in result.stderr
    double.token = "not-a-secret"
    double.deny("get", "jobs")
    forbidden = jobctl("status", "rx", "-n", NS)
    assert forbidden.exit_code == 2 and "cannot get resource" in forbidden.stderr and "rbac.yaml" in forbidden.stderr


def test_the_kubeconfig_contexts_namespace_is_the_default(double: KubeDouble, tmp_path: Path) -> None:
    assert submit().exit_code == 0
    double.write_kubeconfig(tmp_path / "kubeconfig", namespace=NS)
    result = jobctl("status", "rx")
    assert result.exit_code == 0, result.output


def test_a_client_side_argument_error_is_not_blamed_on_the_server(double: KubeDouble) -> None:
    k8s = backend(double)
    with pytest.raises(BackendError, match="rejected jobctl's arguments"):
        k8s.api.call("read pod log", k8s.api.core.read_namespaced_pod_log, "p", NS, tail_lines="x")


def test_restarts_are_read_from_the_launchers_lines() -> None:
    from jobctl.backends.base import latest_restart

    lines = [
        "[launcher] attempt 0: all 2 pod(s) joined; world size 16",
        "[launcher] attempt 1: all 2 pod(s) joined; world size 16; restart 1 of 3 after attempt 0: pod 1: rank 9 "
        "exited with code 137 at step 1200",
        "[rank 0] rank=0 epoch=1/150 step=1300/187650 loss=6.1 lr=0.01 img/s=900.0 eta=1d",
    ]
    assert latest_restart(lines) == (1, 3, "attempt 0: pod 1: rank 9 exited with code 137 at step 1200")
    assert latest_restart(lines[:1]) is None
