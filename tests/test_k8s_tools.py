"""The cluster forms of `jobctl export` (a one-shot Job) and `jobctl tensorboard` (a Pod and a Service): rendered
objects (strict validation, Pod Security `restricted`, mounts), and the commands against the API double."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import yaml

from jobctl.render import SUPPORTED_KUBE_VERSIONS
from jobctl.render_tools import render_export, render_tensorboard
from jobctl.spec import JobSpec, SpecError, validate_spec
from jobctl.validate import validate_objects
from tests.k8s_double import KubeDouble
from tests.test_k8s_backend import NS, add_pod, jobctl, submit

# Pod Security Standards, `restricted` (kubernetes.io/docs/concepts/security/pod-security-standards), as checks.
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim"}
RESTRICTED_VOLUMES |= {"projected", "secret"}


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """What in a pod spec the `restricted` level refuses (empty: admitted)."""
    found = []
    security = pod.get("securityContext", {})
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(flag):
            found.append(flag)
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            found.append(f"volume {volume['name']}: {kinds}")
    for container in pod["containers"] + pod.get("initContainers", []):
        context = container.get("securityContext", {})
        where = container["name"]
        if context.get("privileged"):
            found.append(f"{where}: privileged")
        if context.get("allowPrivilegeEscalation") is not False:
            found.append(f"{where}: allowPrivilegeEscalation not false")
        caps = context.get("capabilities", {})
        if "ALL" not in caps.get("drop", []) or set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            found.append(f"{where}: capabilities")
        if not (context.get("runAsNonRoot") or security.get("runAsNonRoot")):
            found.append(f"{where}: runAsNonRoot")
        if 0 in (context.get("runAsUser"), security.get("runAsUser")):
            found.append(f"{where}: runAsUser 0")
        seccomp = (context.get("seccompProfile") or security.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            found.append(f"{where}: seccompProfile")
        if any(port.get("hostPort") for port in container.get("ports", [])):
            found.append(f"{where}: hostPort")
    return found


def test_the_restricted_checks_can_fail() -> None:
    pod = {"hostPID": True, "volumes": [{"name": "h", "hostPath": {"path": "/"}}], "containers": [{"name": "c"}]}
    assert len(restricted_violations(pod)) == 6


def spec(platform: str = "gpu", devices: int = 8, name: str = "rx", **fields: Any) -> JobSpec:
    return validate_spec({"name": name, "platform": platform, "devices": devices, **fields})


SPECS = [("cpu", 2), ("gpu", 16), ("ascend", 16)]


@pytest.mark.parametrize(("platform", "devices"), SPECS)
@pytest.mark.parametrize("version", [SUPPORTED_KUBE_VERSIONS[0], SUPPORTED_KUBE_VERSIONS[-1]])
def test_export_and_tensorboard_objects_validate_strictly(platform: str, devices: int, version: str) -> None:
    job = spec(platform, devices)
    validate_objects(render_export(job, job.ckpt_dir, "MINDIR", version), version)
    validate_objects(render_tensorboard([job, spec(platform, devices, name="other")], version), version)


@pytest.mark.parametrize(("platform", "devices"), SPECS)
def test_the_tensorboard_pod_meets_restricted_and_reads_only(platform: str, devices: int) -> None:
    jobs = [spec(platform, devices), spec(platform, devices, name="other")]
    policy, deployment, service = render_tensorboard(jobs)
    assert [policy["kind"], deployment["kind"], service["kind"]] == ["NetworkPolicy", "Deployment", "Service"]
    assert {o["metadata"]["name"] for o in (policy, deployment, service)} == {"rx-tb"}
    assert {o["metadata"]["namespace"] for o in (policy, deployment, service)} == {jobs[0].namespace}
    pod = deployment["spec"]["template"]
    body = pod["spec"]
    assert restricted_violations(body) == []
    (container,) = body["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    shared = [m for m in container["volumeMounts"] if m["name"].startswith("shared-")]
    assert [(m["mountPath"], m["subPath"], m["readOnly"]) for m in shared] == [
        ("/shared/jobs/rx", "jobs/rx", True),
        ("/shared/jobs/other", "jobs/other", True),
    ]
    writable = [m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")]
    assert writable == ["/tmp"] and next(v for v in body["volumes"] if v["name"] == "tmp")["emptyDir"]
    command = container["command"]
    assert command[:3] == ["python", "-m", "tensorboard.main"]  # from the image: nothing is installed at start
    assert "rx:/shared/jobs/rx/tensorboard,other:/shared/jobs/other/tensorboard" in command
    # No ingress (port-forward enters the pod's network namespace) and no egress: it needs no internet.
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert policy["spec"]["ingress"] == [] and policy["spec"]["egress"] == []
    labels = pod["metadata"]["labels"]
    assert all(labels[k] == v for k, v in policy["spec"]["podSelector"]["matchLabels"].items())
    assert service["spec"]["selector"] == policy["spec"]["podSelector"]["matchLabels"]
    assert deployment["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    assert service["spec"]["type"] == "ClusterIP" and service["spec"]["ports"][0]["port"] == 6006


def test_tensorboard_refuses_jobs_of_two_namespaces() -> None:
    with pytest.raises(SpecError, match="different namespaces"):
        render_tensorboard([spec("gpu", 8), spec("ascend", 8, name="other")])


@pytest.mark.parametrize(("platform", "devices"), SPECS)
def test_the_export_job_writes_only_its_export_folder(platform: str, devices: int) -> None:
    job = spec(platform, devices)
    policy, export_job = render_export(job, job.ckpt_dir, "ONNX")
    assert export_job["metadata"]["name"] == policy["metadata"]["name"] == "rx-export"
    assert policy["spec"]["ingress"] == []
    pod = export_job["spec"]["template"]["spec"]
    selector = policy["spec"]["podSelector"]["matchLabels"]
    template_labels = export_job["spec"]["template"]["metadata"]["labels"]
    assert all(template_labels[k] == v for k, v in selector.items()), "the NetworkPolicy selects the export pod"
    (container,) = pod["containers"]
    assert container["command"][:3] == ["python", "-m", "trainer.export"]
    args = container["command"]
    assert args[args.index("--ckpt_file") + 1] == "/shared/jobs/rx/ckpt"
    assert args[args.index("--output_dir") + 1] == "/shared/jobs/rx/export"
    shared = {m["mountPath"]: m for m in container["volumeMounts"] if m["name"] == "shared"}
    assert shared["/shared/jobs/rx"]["readOnly"] is True and shared["/shared/jobs/rx"]["subPath"] == "jobs/rx"
    assert shared["/shared/jobs/rx/export"]["subPath"] == "jobs/rx/export"
    assert not shared["/shared/jobs/rx/export"].get("readOnly")
    assert "data" not in {v["name"] for v in pod["volumes"]}
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["automountServiceAccountToken"] is False
    if platform != "ascend":
        with pytest.raises(SpecError, match="AIR needs Ascend"):
            render_export(job, job.ckpt_dir, "AIR")
    else:
        render_export(job, job.ckpt_dir, "AIR")


# against the API double ---------------------------------------------------------------------------------------


def play_export_pod(double: KubeDouble, last_line: str, condition: str = "Complete") -> threading.Thread:
    """Play the Job controller for rx-export: give it a pod whose log ends with ``last_line``, finish it."""

    def play() -> None:
        deadline = time.monotonic() + 10
        while double.get("jobs", NS, "rx-export") is None and time.monotonic() < deadline:
            time.sleep(0.02)
        pod = add_pod(double, "rx-export", 0, "Succeeded", exit_code=0)
        double.append_log(NS, pod, "some MindSpore chatter\n" + last_line + "\n")
        double.set_job_status(NS, "rx-export", {"conditions": [{"type": condition, "status": "True"}]})

    thread = threading.Thread(target=play)
    thread.start()
    return thread


def test_export_on_a_cluster_runs_a_one_shot_job_and_says_where_the_file_is(double: KubeDouble) -> None:
    assert submit().exit_code == 0
    player = play_export_pod(double, "/shared/jobs/rx/export/resnext101_64x4d-3_300.onnx")
    result = jobctl("export", "rx", "-n", NS, "--format", "ONNX")
    player.join()
    assert result.exit_code == 0, result.output
    line = result.stdout.strip()
    assert line.startswith("/shared/jobs/rx/export/resnext101_64x4d-3_300.onnx (in pods; ")
    assert "jobs/rx/export/resnext101_64x4d-3_300.onnx on" in line
    posted = [c["body"] for c in double.calls("POST", "") if "dryRun" not in c["query"]]
    kinds = [(b["kind"], b["metadata"]["name"]) for b in posted if b["metadata"]["name"].startswith("rx-export")]
    assert kinds == [("NetworkPolicy", "rx-export"), ("Job", "rx-export")], "no pod runs unprotected"
    command = next(b for b in posted if b["kind"] == "Job" and b["metadata"]["name"] == "rx-export")
    args = command["spec"]["template"]["spec"]["containers"][0]["command"]
    assert args[args.index("--file_format") + 1] == "ONNX"
    assert double.get("jobs", NS, "rx-export") is None, "jobctl deletes the export Job once it has read the path"


def test_a_failed_export_job_is_kept_and_explained(double: KubeDouble) -> None:
    assert submit().exit_code == 0
    player = play_export_pod(double, "error: checkpoint is corrupt", condition="Failed")
    result = jobctl("export", "rx", "-n", NS, "--format", "MINDIR", "--checkpoint", "a-1_1.ckpt")
    player.join()
    assert result.exit_code == 1 and "ended Failed without writing a file" in result.stderr
    assert "checkpoint is corrupt" in result.stderr
    job = double.get("jobs", NS, "rx-export")
    assert job is not None
    args = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert args[args.index("--ckpt_file") + 1] == "/shared/jobs/rx/ckpt/a-1_1.ckpt"
    assert jobctl("delete", "rx", "-n", NS).exit_code == 0
    assert double.get("jobs", NS, "rx-export") is None, "jobctl delete removes a kept export Job"


def test_air_is_refused_off_ascend_on_a_cluster(double: KubeDouble) -> None:
    assert submit().exit_code == 0
    result = jobctl("export", "rx", "-n", NS, "--format", "AIR")
    assert result.exit_code == 2 and "AIR" in result.stderr and "MINDIR or ONNX" in result.stderr
    local_folder = jobctl("export", "rx", "-n", NS, "-o", "./out")
    assert local_folder.exit_code == 2 and "export/ folder on the shared volume" in local_folder.stderr
    assert double.get("jobs", NS, "rx-export") is None


def test_tensorboard_on_a_cluster_creates_a_pod_and_prints_the_port_forward(double: KubeDouble) -> None:
    assert submit().exit_code == 0
    dry = jobctl("tensorboard", "rx", "-n", NS, "--dry-run", "-o", "yaml")
    assert dry.exit_code == 0, dry.output
    shown = list(yaml.safe_load_all(dry.stdout))
    assert [o["kind"] for o in shown] == ["NetworkPolicy", "Deployment", "Service"]
    assert double.get("deployments", NS, "rx-tb") is None, "a dry run creates nothing"
    result = jobctl("tensorboard", "rx", "-n", NS)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"kubectl port-forward -n {NS} svc/rx-tb 6006:6006"
    assert double.get("deployments", NS, "rx-tb") and double.get("services", NS, "rx-tb")
    assert double.get("networkpolicies", NS, "rx-tb")
    dry_pods = [c for c in double.calls("POST", "/pods") if c["query"].get("dryRun") == "All"]
    assert any(c["body"]["metadata"]["name"] == "rx-tb-admission-check" for c in dry_pods), "pod admission first"
    assert not [c for c in double.calls("POST", "/pods") if "dryRun" not in c["query"]], "no bare Pod is created"
    again = jobctl("tensorboard", "rx", "-n", NS, "--port", "16006")
    assert again.exit_code == 0, "a second run replaces the first"
    assert again.stdout.strip() == f"kubectl port-forward -n {NS} svc/rx-tb 16006:6006"
    removed = jobctl("tensorboard", "rx", "-n", NS, "--delete")
    assert removed.exit_code == 0, removed.output
    assert double.get("deployments", NS, "rx-tb") is None and double.get("services", NS, "rx-tb") is None
    assert double.get("networkpolicies", NS, "rx-tb") is None
    assert jobctl("tensorboard", "rx", "-n", NS, "--delete").exit_code == 1
    # `jobctl delete` of the job removes its TensorBoard too.
    assert jobctl("tensorboard", "rx", "-n", NS).exit_code == 0
    assert jobctl("delete", "rx", "-n", NS).exit_code == 0
    assert double.get("deployments", NS, "rx-tb") is None and double.get("services", NS, "rx-tb") is None


def test_tensorboard_on_a_cluster_needs_a_job_name(double: KubeDouble) -> None:
    result = jobctl("tensorboard", "-n", NS)
    assert result.exit_code == 2 and "name the job" in result.stderr
