"""Gang scheduling, Ascend generations and topology: every generation x scheduler renders objects that validate
strictly (Kubernetes 1.29-1.37 and Volcano's PodGroup CRD), with the gang, labels and placement each one needs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from jobctl.cli import app
from jobctl.render import SUPPORTED_KUBE_VERSIONS, gang_warning, render, render_eval
from jobctl.spec import JobSpec, validate_spec
from jobctl.validate import ManifestError, crd_validator, validate_object, validate_objects

CRD = yaml.safe_load((Path(__file__).parent / "crd_volcano_podgroups.yaml").read_text())
PODGROUP = {("scheduling.volcano.sh/v1beta1", "PodGroup"): crd_validator(CRD, "v1beta1")}

GENERATIONS = {"910": (16, 8), "910b": (16, 8), "a3": (32, 16)}  # devices, devices per node
SCHEDULERS = {"default": {}, "volcano": {"queue": "research"}, "kueue": {"queue": "team-a"}}


def make(accelerator: str, scheduler: str, **fields: Any) -> JobSpec:
    devices, _ = GENERATIONS[accelerator]
    base = {"name": "gx", "platform": "ascend", "accelerator": accelerator, "devices": devices}
    return validate_spec({**base, "scheduler": scheduler, **SCHEDULERS[scheduler], **fields})


def kinds(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["kind"]: o for o in objects if o["kind"] != "ConfigMap"}


@pytest.mark.parametrize("version", SUPPORTED_KUBE_VERSIONS)
@pytest.mark.parametrize("scheduler", sorted(SCHEDULERS))
@pytest.mark.parametrize("accelerator", sorted(GENERATIONS))
def test_generation_x_scheduler_validates_strictly(accelerator: str, scheduler: str, version: str) -> None:
    spec = make(accelerator, scheduler, priority_class="high", launcher="controller")
    objects = render(spec, version)
    validate_objects(objects, version, PODGROUP)
    validate_objects(render_eval(spec, spec.ckpt_dir, "/data/val", version), version, PODGROUP)
    assert ("PodGroup" in kinds(objects)) == (scheduler == "volcano")


@pytest.mark.parametrize("accelerator", sorted(GENERATIONS))
def test_volcano_gang(accelerator: str) -> None:
    spec = make(accelerator, "volcano", priority_class="high")
    objects = render(spec)
    assert [o["kind"] for o in objects][-2:] == ["PodGroup", "Job"]  # the group exists before the first pod
    group, job = kinds(objects)["PodGroup"], kinds(objects)["Job"]
    devices, per_node = GENERATIONS[accelerator]
    pods = devices // per_node
    assert group["metadata"]["name"] == "gx"
    template = job["spec"]["template"]
    # Each pod asks 32 Gi per device plus the in-memory snapshots' /dev/shm (counted in its memory request).
    memory = template["spec"]["containers"][0]["resources"]["requests"]["memory"]
    assert memory.endswith("Mi") and int(memory[:-2]) > 32 * per_node * 1024
    assert group["spec"] == {
        "minMember": pods,
        "minResources": {"cpu": str(12 * per_node * pods), "memory": f"{int(memory[:-2]) * pods}Mi",
                         "huawei.com/Ascend910": str(devices)},
        "queue": "research",
        "priorityClassName": "high",
    }  # fmt: skip
    assert template["spec"]["schedulerName"] == "volcano"
    assert template["metadata"]["annotations"] == {"scheduling.k8s.io/group-name": "gx"}
    assert "suspend" not in job["spec"] and "kueue.x-k8s.io/queue-name" not in job["metadata"]["labels"]
    ring = "ascend-910" if accelerator == "910" else "ascend-910b"
    for labels in (group["metadata"]["labels"], job["metadata"]["labels"], template["metadata"]["labels"]):
        assert labels["ring-controller.atlas"] == ring


@pytest.mark.parametrize(
    ("accelerator", "fields", "accelerator_type"),
    [
        ("910", {}, "module"),
        ("910b", {}, "module-910b-8"),
        ("910b", {"devices": 32, "devices_per_node": 16}, "module-910b-16"),
        ("a3", {}, "module-a3-16-super-pod"),
    ],
)
def test_generation_node_labels(accelerator: str, fields: dict[str, Any], accelerator_type: str) -> None:
    job = kinds(render(make(accelerator, "default", **fields)))["Job"]
    selector = job["spec"]["template"]["spec"]["nodeSelector"]
    assert selector["accelerator"] == "huawei-Ascend910" and selector["accelerator-type"] == accelerator_type
    x86 = kinds(render(make(accelerator, "default", node_selector={"host-arch": "huawei-x86"}, **fields)))["Job"]
    assert x86["spec"]["template"]["spec"]["nodeSelector"]["host-arch"] == "huawei-x86"  # the spec's label wins


def test_kueue_topology_annotations() -> None:
    job = kinds(render(make("910b", "kueue", topology={"key": "cloud.example.com/rack", "mode": "required"})))["Job"]
    assert job["spec"]["suspend"] is True and job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    template = job["spec"]["template"]
    assert template["metadata"]["annotations"] == {"kueue.x-k8s.io/podset-required-topology": "cloud.example.com/rack"}
    assert "podAffinity" not in template["spec"]["affinity"]  # Kueue places the pods
    a3 = kinds(render(make("a3", "kueue")))["Job"]["spec"]["template"]["metadata"]["annotations"]
    assert a3 == {"kueue.x-k8s.io/podset-preferred-topology": "jobctl.io/super-pod"}


@pytest.mark.parametrize(("mode", "field"), [("required", "requiredDuring"), ("preferred", "preferredDuring")])
def test_topology_is_pod_affinity_without_kueue(mode: str, field: str) -> None:
    job = kinds(render(make("910b", "volcano", topology={"key": "rack", "mode": mode})))["Job"]
    together = job["spec"]["template"]["spec"]["affinity"]["podAffinity"]
    (key,) = together
    assert key.startswith(field)
    term = together[key][0] if mode == "required" else together[key][0]["podAffinityTerm"]
    assert term["topologyKey"] == "rack"
    assert term["labelSelector"]["matchLabels"]["app.kubernetes.io/instance"] == "gx"


def test_a3_defaults_to_super_pod_placement_only_for_several_pods() -> None:
    assert make("a3", "default").topology is not None
    assert make("a3", "default", devices=16).topology is None
    assert make("910b", "default").topology is None


def test_default_generation_is_910b() -> None:
    assert validate_spec({"name": "d", "platform": "ascend", "devices": 8}).accelerator == "910b"
    assert validate_spec({"name": "d", "platform": "gpu", "devices": 8}).accelerator == "gpu"


def test_queue_alone_still_means_kueue() -> None:
    spec = validate_spec({"name": "q", "platform": "gpu", "devices": 16, "queue": "team-a"})
    assert spec.scheduler == "kueue" and gang_warning(spec) is None


def test_warning_names_the_flag_only_for_several_pods_on_default() -> None:
    warning = gang_warning(make("910b", "default"))
    assert warning is not None and "partial start" in warning and "--scheduler" in warning
    assert gang_warning(make("910b", "default", devices=8)) is None
    assert gang_warning(make("910b", "volcano")) is None


def test_podgroup_crd_is_strict() -> None:
    group = kinds(render(make("910b", "volcano")))["PodGroup"]
    validate_object(group, "1.29", PODGROUP)
    for corrupt, where in (
        (lambda g: g["spec"].update(minMembers=2), "spec"),  # a field the API server would prune
        (lambda g: g["spec"].update(minMember="2"), "spec.minMember"),
        (lambda g: g["spec"]["minResources"].update(cpu="lots"), "spec.minResources.cpu"),
    ):
        bad = yaml.safe_load(yaml.safe_dump(group))
        corrupt(bad)
        with pytest.raises(ManifestError, match=rf"PodGroup/gx .*: {where}"):
            validate_object(bad, "1.29", PODGROUP)


runner = CliRunner()


def cli(*args: str) -> Any:
    return runner.invoke(app, list(args))


def test_cli_warns_on_render_and_dry_run() -> None:
    for command in (["render"], ["submit", "--dry-run"]):
        result = cli(*command, "--name", "w", "--platform", "ascend", "--devices", "16")
        assert result.exit_code == 0, result.output
        assert "nothing prevents a partial start" in result.stderr and "--scheduler" in result.stderr
        assert "partial start" not in result.stdout
    quiet = cli("render", "--name", "w", "--platform", "ascend", "--devices", "16", "--scheduler", "volcano")
    assert quiet.exit_code == 0 and "warning" not in quiet.stderr


def test_cli_renders_the_readme_command() -> None:
    args = ["--platform", "ascend", "--accelerator", "910b", "--scheduler", "volcano", "--name", "r"]
    result = cli("submit", "--dry-run", "-o", "yaml", "--devices", "16", *args)
    assert result.exit_code == 0, result.output
    objects = list(yaml.safe_load_all(result.stdout))
    assert [o["kind"] for o in objects][-2:] == ["PodGroup", "Job"]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--scheduler", "slurm"], ["scheduler", "'default', 'volcano' or 'kueue'"]),
        (["--accelerator", "h100"], ["accelerator", "910, 910b, a3"]),
        (["--accelerator", "a3", "--devices", "12"], ["devices_per_node: 12", "1, 2, 4, 8, 16"]),
        (["--accelerator", "910", "--devices-per-node", "16"], ["devices_per_node: 16", "at most 8"]),
        (["--scheduler", "kueue"], ["scheduler: kueue needs queue", "--queue"]),
        (["--topology", "bad key!"], ["topology.key", "label key"]),
        (["--topology", "rack", "--topology-mode", "maybe"], ["topology.mode", "'required' or 'preferred'"]),
    ],
)
def test_cli_bad_gang_input(args: list[str], words: list[str]) -> None:
    base = ["render", "--name", "b", "--platform", "ascend", "--devices", "16"]
    result = cli(*base, *args)
    assert result.exit_code == 2, result.output
    assert result.stdout == "" and "Traceback" not in result.output
    for word in words:
        assert word in result.stderr, result.stderr
