"""render(): the objects per platform and size, the Pod contract, version gates, and the checked-in examples."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from contract.env import LAUNCH_KEYS
from jobctl.examples import render_examples
from jobctl.render import (
    SUPPORTED_KUBE_VERSIONS,
    render,
    render_eval,
    resolve_kube_version,
    snapshot_memory,
    snapshot_note,
    to_yaml,
)
from jobctl.spec import JobSpec, SpecError, train_config, validate_spec

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "k8s" / "examples"
CONTRACT_ENV = {
    "JOBCTL_JOB_NAME",
    "JOBCTL_PLATFORM",
    "JOBCTL_LAUNCHER",
    "JOBCTL_NUM_PODS",
    "JOBCTL_DEVICES_PER_POD",
    "JOBCTL_MASTER_ADDR",
    "JOBCTL_MASTER_PORT",
    "JOBCTL_JOB_DIR",
    "JOBCTL_TRAIN_CONFIG",
    "JOBCTL_DATA_DIR",
    "JOBCTL_VAL_DIR",
    "JOBCTL_RENDEZVOUS_TIMEOUT",
    "JOBCTL_STALL_TIMEOUT",
    "POD_NAME",
    "POD_IP",
    "NODE_IP",
}


def make(platform: str, devices: int, **fields: Any) -> JobSpec:
    return validate_spec({"name": "rx", "namespace": "ml", "platform": platform, "devices": devices, **fields})


def by_kind(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in objects}


def pod_of(job: dict[str, Any]) -> dict[str, Any]:
    return job["spec"]["template"]["spec"]


def container_of(job: dict[str, Any]) -> dict[str, Any]:
    containers = pod_of(job)["containers"]
    assert len(containers) == 1
    return containers[0]


def env_of(job: dict[str, Any]) -> dict[str, Any]:
    env = container_of(job)["env"]
    names = [e["name"] for e in env]
    assert len(names) == len(set(names)), "duplicate env names"
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in env}


def mounts_of(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["mountPath"]: m for m in container_of(job)["volumeMounts"]}


def volumes_of(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in pod_of(job)["volumes"]}


SIZES = [
    ("ascend", 1, 1, 1),
    ("ascend", 8, 1, 8),
    ("ascend", 16, 2, 8),
    ("ascend", 512, 64, 8),
    ("gpu", 1, 1, 1),
    ("gpu", 8, 1, 8),
    ("gpu", 16, 2, 8),
    ("gpu", 512, 64, 8),
    ("cpu", 2, 1, 2),
]


@pytest.mark.parametrize(("platform", "devices", "pods", "per_pod"), SIZES)
def test_job_service_configmap(platform: str, devices: int, pods: int, per_pod: int) -> None:
    spec = make(platform, devices)
    objects = by_kind(render(spec))
    assert set(objects) == {"ConfigMap/rx-config", "Service/rx", "NetworkPolicy/rx", "Job/rx"}
    job = objects["Job/rx"]
    body = job["spec"]
    assert body["completionMode"] == "Indexed"
    assert body["completions"] == body["parallelism"] == pods
    assert body["backoffLimit"] == spec.max_restarts
    assert body["ttlSecondsAfterFinished"] == spec.ttl_seconds_after_finished
    assert "suspend" not in body
    pod = pod_of(job)
    assert pod["restartPolicy"] == "Never"
    assert pod["subdomain"] == "rx"
    assert pod["automountServiceAccountToken"] is False
    assert all(o["metadata"]["namespace"] == "ml" for o in objects.values())

    # The Service selects exactly this job's trainer pods and publishes them before they are ready.
    service = objects["Service/rx"]["spec"]
    pod_labels = job["spec"]["template"]["metadata"]["labels"]
    assert service["clusterIP"] == "None" and service["publishNotReadyAddresses"] is True
    assert service["selector"].items() <= pod_labels.items()
    assert pod_labels["app.kubernetes.io/component"] == "trainer"
    assert [(p["name"], p["port"]) for p in service["ports"]] == [("scheduler", 8118)]
    assert container_of(job)["ports"][0] == {"name": "scheduler", "containerPort": 8118, "protocol": "TCP"}

    env = env_of(job)
    assert env["JOBCTL_NUM_PODS"] == str(pods) and env["JOBCTL_DEVICES_PER_POD"] == str(per_pod)

    affinity = pod.get("affinity")
    if pods == 1:
        assert affinity is None
    else:
        (term,) = affinity["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert term["topologyKey"] == "kubernetes.io/hostname"
        assert term["labelSelector"]["matchLabels"].items() <= pod_labels.items()


def test_labels() -> None:
    objects = render(make("gpu", 16, queue="team-a"))
    for obj in objects:
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "resnext-jobs"
        assert labels["app.kubernetes.io/instance"] == "rx"
        assert labels["app.kubernetes.io/managed-by"] == "jobctl"
        assert labels["jobctl.io/platform"] == "gpu"
        assert all(isinstance(v, str) and len(v) <= 63 for v in labels.values())
    job = by_kind(objects)["Job/rx"]
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    assert job["spec"]["suspend"] is True


def test_pod_contract_env() -> None:
    spec = make("gpu", 16, rendezvous_timeout=120, stall_timeout=900)
    env = env_of(by_kind(render(spec))["Job/rx"])
    assert env.keys() >= CONTRACT_ENV
    assert env["JOBCTL_MASTER_ADDR"] == "rx-0.rx.ml.svc"
    assert env["JOBCTL_MASTER_PORT"] == "8118"
    assert env["JOBCTL_JOB_DIR"] == "/shared/jobs/rx"
    assert env["JOBCTL_TRAIN_CONFIG"] == "/etc/jobctl/train.yaml"
    assert (env["JOBCTL_DATA_DIR"], env["JOBCTL_VAL_DIR"]) == ("/data/train", "/data/val")
    assert (env["JOBCTL_RENDEZVOUS_TIMEOUT"], env["JOBCTL_STALL_TIMEOUT"]) == ("120", "900")
    assert (env["JOBCTL_PLATFORM"], env["JOBCTL_LAUNCHER"]) == ("gpu", "msrun")
    assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_IP"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert env["NODE_IP"] == {"fieldRef": {"fieldPath": "status.hostIP"}}
    # Kubernetes sets it for Indexed Jobs; rendering it too would shadow nothing but invite drift.
    assert "JOB_COMPLETION_INDEX" not in env
    # The Job's uid keys the rendezvous directory, so a re-submitted job never reads an earlier one's attempts.
    assert env["JOBCTL_RUN_ID"] == {"fieldRef": {"fieldPath": "metadata.labels['batch.kubernetes.io/controller-uid']"}}
    assert all(isinstance(v, str) for k, v in env.items() if k.startswith("JOBCTL_") and k != "JOBCTL_RUN_ID")
    no_val = env_of(by_kind(render(make("gpu", 8, data={"val_subpath": None})))["Job/rx"])
    assert "JOBCTL_VAL_DIR" not in no_val


@pytest.mark.parametrize(
    ("launcher", "expected"), [(None, "ranktable"), ("msrun", "msrun"), ("controller", "controller")]
)
def test_ascend_launchers(launcher: str | None, expected: str) -> None:
    spec = make("ascend", 16, launcher=launcher)
    objects = by_kind(render(spec))
    job = objects["Job/rx"]
    assert env_of(job)["JOBCTL_LAUNCHER"] == expected
    rings = objects.get("ConfigMap/rings-config-rx")
    if launcher != "controller":
        assert rings is None
        assert "/user/serverid/devindex/config" not in mounts_of(job)
        return
    label = ("ring-controller.atlas", "ascend-910b")  # the default generation, 910B
    for labels in (
        rings["metadata"]["labels"],
        job["metadata"]["labels"],
        job["spec"]["template"]["metadata"]["labels"],
    ):
        assert label in labels.items()
    assert rings["data"] == {"hccl.json": '{"status":"initializing"}'}
    mount = mounts_of(job)["/user/serverid/devindex/config"]
    assert volumes_of(job)[mount["name"]]["configMap"]["name"] == "rings-config-rx"


def test_ascend_pod() -> None:
    job = by_kind(render(make("ascend", 16)))["Job/rx"]
    resources = container_of(job)["resources"]
    assert resources["requests"]["huawei.com/Ascend910"] == resources["limits"]["huawei.com/Ascend910"] == 8
    env = env_of(job)
    assert env["HCCL_WHITELIST_DISABLE"] == "1"
    assert int(env["HCCL_CONNECT_TIMEOUT"]) >= 120 and int(env["HCCL_EXEC_TIMEOUT"]) > 0
    mounts, volumes = mounts_of(job), volumes_of(job)
    for path in ("/usr/local/Ascend/driver", "/etc/hccn.conf", "/usr/local/dcmi", "/usr/local/bin/npu-smi"):
        assert mounts[path]["readOnly"] is True
        assert volumes[mounts[path]["name"]]["hostPath"]["path"] == path
    podinfo = volumes[mounts["/etc/podinfo"]["name"]]["downwardAPI"]["items"]
    assert podinfo == [{"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}}]
    assert pod_of(job)["securityContext"]["runAsUser"] == 1000


def test_gpu_pod() -> None:
    job = by_kind(render(make("gpu", 8, env={"NCCL_SOCKET_IFNAME": "ib0", "EXTRA": "1"})))["Job/rx"]
    resources = container_of(job)["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == 8
    assert "nvidia.com/gpu" not in resources["requests"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod_of(job)["tolerations"]
    env = env_of(job)
    assert env["NCCL_SOCKET_IFNAME"] == "ib0"  # the spec's env overrides the preset
    assert env["EXTRA"] == "1"
    assert "NVIDIA_VISIBLE_DEVICES" not in env
    assert not any(m.startswith("/usr/local/Ascend") for m in mounts_of(job))


def test_cpu_pod() -> None:
    job = by_kind(render(make("cpu", 2)))["Job/rx"]
    resources = container_of(job)["resources"]
    assert set(resources["requests"]) == {"cpu", "memory"} and set(resources["limits"]) == {"memory"}
    assert env_of(job)["NVIDIA_VISIBLE_DEVICES"] == "void"
    assert "tolerations" not in pod_of(job)
    assert not any(v.get("hostPath") for v in volumes_of(job).values())


@pytest.mark.parametrize("platform", ["ascend", "gpu", "cpu"])
def test_hardening_and_common_mounts(platform: str) -> None:
    spec = make(platform, 8 if platform != "cpu" else 2)
    for job in (
        by_kind(render(spec))["Job/rx"],
        by_kind(render_eval(spec, "/shared/jobs/rx/ckpt", "/data/val"))["Job/rx-eval"],
    ):
        pod = pod_of(job)
        security = pod["securityContext"]
        assert security["seccompProfile"] == {"type": "RuntimeDefault"}
        assert security["runAsNonRoot"] is True and security["runAsUser"] == 1000
        assert security["fsGroup"] == 1000
        container = container_of(job)["securityContext"]
        assert container["allowPrivilegeEscalation"] is False
        assert container["capabilities"] == {"drop": ["ALL"]}
        mounts, volumes = mounts_of(job), volumes_of(job)
        assert all(m["readOnly"] for m in mounts.values() if volumes[m["name"]].get("hostPath"))
        assert mounts["/data"]["readOnly"] is True
        assert volumes[mounts["/data"]["name"]]["persistentVolumeClaim"] == {"claimName": "imagenet", "readOnly": True}
        assert volumes[mounts["/shared/jobs/rx"]["name"]]["persistentVolumeClaim"] == {"claimName": "jobctl-shared"}
        assert mounts["/shared/jobs/rx"]["subPath"] == "jobs/rx" and "/shared" not in mounts
        shm = volumes[mounts["/dev/shm"]["name"]]["emptyDir"]
        assert shm["medium"] == "Memory" and shm["sizeLimit"]


def test_resources_and_shm_come_from_the_spec() -> None:
    spec = make("gpu", 8, cpu="30", memory="100Gi", shm_size="10Gi", train={"snapshot_interval": 0})
    job = by_kind(render(spec))["Job/rx"]
    resources = container_of(job)["resources"]
    assert resources["requests"]["cpu"] == "30"
    assert resources["requests"]["memory"] == resources["limits"]["memory"] == "100Gi"
    assert volumes_of(job)["shm"]["emptyDir"]["sizeLimit"] == "10Gi"


def test_host_path_volumes_and_root() -> None:
    spec = make(
        "cpu", 2, data={"host_path": "/datasets/imagenet"}, shared={"host_path": "/srv/shared"}, run_as_user=None
    )
    job = by_kind(render(spec))["Job/rx"]
    volumes = volumes_of(job)
    assert volumes["data"]["hostPath"] == {"path": "/datasets/imagenet", "type": "Directory"}
    assert volumes["shared"]["hostPath"] == {"path": "/srv/shared", "type": "Directory"}
    # Without a uid the kubelet still refuses an image that runs as root.
    assert pod_of(job)["securityContext"] == {"seccompProfile": {"type": "RuntimeDefault"}, "runAsNonRoot": True}


def test_scheduling_fields() -> None:
    spec = make(
        "gpu",
        8,
        node_selector={"accelerator": "a100"},
        tolerations=[{"key": "team", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}],
        priority_class="high",
        image_pull_secrets=["regcred"],
    )
    pod = pod_of(by_kind(render(spec))["Job/rx"])
    assert pod["nodeSelector"] == {"accelerator": "a100"}
    assert {"key": "team", "operator": "Equal", "value": "ml", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["priorityClassName"] == "high"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]


def test_failure_policy() -> None:
    rules = by_kind(render(make("gpu", 16)))["Job/rx"]["spec"]["podFailurePolicy"]["rules"]
    exits = {r["onExitCodes"]["values"][0]: r["action"] for r in rules if "onExitCodes" in r}
    assert exits == {2: "FailJob", 75: "Ignore"}
    assert all(r["onExitCodes"]["containerName"] == "trainer" for r in rules if "onExitCodes" in r)
    disruption = [r for r in rules if "onPodConditions" in r]
    assert disruption == [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}]


@pytest.mark.parametrize("version", SUPPORTED_KUBE_VERSIONS)
def test_version_gated_fields(version: str) -> None:
    minor = int(version.split(".")[1])
    body = by_kind(render(make("ascend", 16), version))["Job/rx"]["spec"]
    assert ("successPolicy" in body) == (minor >= 33)
    assert ("podReplacementPolicy" in body) == (minor >= 34)
    if minor >= 33:
        assert body["successPolicy"] == {"rules": [{"succeededIndexes": "0"}]}
    if minor >= 34:
        assert body["podReplacementPolicy"] == "Failed"
    assert "managedBy" not in body and "backoffLimitPerIndex" not in body


@pytest.mark.parametrize(
    ("given", "resolved"), [("v1.31.4", "1.31"), ("1.29", "1.29"), ("1.40", "1.37"), ("2.0", "1.37")]
)
def test_kube_versions(given: str, resolved: str) -> None:
    assert resolve_kube_version(given) == resolved


@pytest.mark.parametrize("given", ["1.28", "0.9", "latest", "1", ""])
def test_bad_kube_versions(given: str) -> None:
    with pytest.raises(SpecError, match="kube_version"):
        render(make("cpu", 2), given)


def test_config_map_holds_the_trainer_config_and_spec() -> None:
    spec = make("gpu", 16, train={"max_epoch": 3, "lr_epochs": [5, 10]})
    data = by_kind(render(spec))["ConfigMap/rx-config"]["data"]
    train = yaml.safe_load(data["train.yaml"])
    # The launch keys reach the trainer once, as the launcher's flags from the pod env (contract.env).
    assert not set(train) & set(LAUNCH_KEYS)
    resolved = train_config(spec).resolved(spec.devices)
    assert train == {k: v for k, v in resolved.flat().items() if k not in LAUNCH_KEYS}
    assert validate_spec(yaml.safe_load(data["spec.yaml"])) == spec


def test_train_yaml_shows_the_effective_learning_rate_and_period() -> None:
    """Issue 23.4: never `lr: null`; the seed's rule (0.05 x global batch / 64) resolved for the job's devices,
    and T_max follows max_epoch unless set."""
    train = yaml.safe_load(
        by_kind(render(make("gpu", 16, train={"max_epoch": 90})))["ConfigMap/rx-config"]["data"]["train.yaml"]
    )
    assert (train["lr"], train["T_max"], train["max_epoch"]) == (0.8, 90, 90)  # 16 devices x 64 = batch 1024
    given = make("cpu", 2, train={"lr": 0.01, "T_max": 150, "max_epoch": 90, "per_batch_size": 16})
    train = yaml.safe_load(by_kind(render(given))["ConfigMap/rx-config"]["data"]["train.yaml"])
    assert (train["lr"], train["T_max"]) == (0.01, 150)  # what is set stays as set


def test_render_is_pure_and_deterministic() -> None:
    spec = make("ascend", 16, launcher="controller", queue="q")
    before = copy.deepcopy(spec.model_dump())
    first, second = render(spec, "1.35"), render(spec, "1.35")
    assert first == second
    assert spec.model_dump() == before
    first[0]["data"]["x"] = "mutated"
    assert "x" not in render(spec, "1.35")[0]["data"]


def test_to_yaml_round_trips() -> None:
    objects = render(make("ascend", 16, env={"MULTI": "a\nb"}))
    text = to_yaml(objects)
    assert list(yaml.safe_load_all(text)) == objects
    assert "train.yaml: |" in text
    awkward = [{"k": v} for v in ("a \nb", "\n", "x\n\n", " lead\nx", "tab\t\nx", "ünï\ncode", "a\r\nb")]
    assert list(yaml.safe_load_all(to_yaml(awkward))) == awkward


def test_eval_job() -> None:
    spec = make("ascend", 16, queue="q", node_selector={"accelerator": "huawei-Ascend910"})
    policy, job = render_eval(spec, "/shared/jobs/rx/ckpt/resnext-3_100.ckpt", "/data/val", "1.34")
    assert policy["kind"] == "NetworkPolicy" and policy["metadata"]["name"] == "rx-eval"
    assert job["metadata"]["name"] == "rx-eval"
    labels = job["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == "eval" and labels["app.kubernetes.io/instance"] == "rx"
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == 1
    assert "completionMode" not in job["spec"]
    container = container_of(job)
    assert container["image"] == spec.image
    assert container["command"] == [
        "python",
        "-m",
        "trainer.evaluate",
        "--data_dir",
        "/data/val",
        "--platform",
        "Ascend",
        "--pretrained",
        "/shared/jobs/rx/ckpt/resnext-3_100.ckpt",
        "--output_dir",
        "/shared/jobs/rx/eval",
    ]
    resources = container["resources"]
    assert resources["requests"]["huawei.com/Ascend910"] == resources["limits"]["huawei.com/Ascend910"] == 1
    assert resources["requests"]["cpu"] == "12"  # one device's share, not the 8-device pod's
    pod = pod_of(job)
    assert "subdomain" not in pod and "affinity" not in pod
    assert pod["nodeSelector"] == {
        "accelerator": "huawei-Ascend910",
        "host-arch": "huawei-arm",
        "accelerator-type": "module-910b-8",
    }
    assert {"/shared/jobs/rx", "/shared/jobs/rx/eval", "/data", "/dev/shm", "/usr/local/Ascend/driver"} <= mounts_of(
        job
    ).keys()
    assert "/etc/jobctl" not in mounts_of(job)
    assert job["spec"]["suspend"] is True


def test_eval_sizes_never_exceed_the_training_pod() -> None:
    _, job = render_eval(make("cpu", 2, cpu="1", memory="3Gi", shm_size="1Gi"), "/shared/jobs/rx/ckpt", "/data/val")
    resources = container_of(job)["resources"]
    assert (resources["requests"]["cpu"], resources["limits"]["memory"]) == ("1", "3Gi")


@pytest.mark.parametrize(
    ("checkpoint", "data_dir", "field"),
    [
        ("ckpt/x.ckpt", "/data/val", "checkpoint"),
        ("/shared/../etc", "/data/val", "checkpoint"),
        ("/shared/jobs/rx/ckpt", None, "data_dir"),
        # the eval pod sees only its job's folder and the dataset
        ("/shared/jobs/other/ckpt/x.ckpt", "/data/val", "checkpoint"),
        ("/shared/jobs/rx/ckpt", "/shared/jobs/other/val", "data_dir"),
    ],
)
def test_eval_bad_paths(checkpoint: str, data_dir: str | None, field: str) -> None:
    with pytest.raises(SpecError, match=field):
        render_eval(make("gpu", 8), checkpoint, data_dir)


def test_examples_are_up_to_date() -> None:
    expected = render_examples()
    assert set(expected) == {
        "ascend-8.yaml",
        "ascend-2x8.yaml",
        "gpu-8.yaml",
        "ascend-a3-2x16-volcano.yaml",
        "ascend-910b-2x8-kueue.yaml",
        "gpu-3x8-elastic-volcano.yaml",
    }
    on_disk = {p.name: p.read_text() for p in EXAMPLES_DIR.glob("*.yaml")}
    assert on_disk == expected, "k8s/examples/ is stale: run `make render`"
    ascend = list(yaml.safe_load_all(expected["ascend-2x8.yaml"]))
    assert by_kind(ascend)["Job/resnext-ascend-2x8"]["spec"]["completions"] == 2
    a3 = by_kind(list(yaml.safe_load_all(expected["ascend-a3-2x16-volcano.yaml"])))
    assert a3["PodGroup/resnext-a3-2x16"]["spec"]["minMember"] == 2
    kueue = by_kind(list(yaml.safe_load_all(expected["ascend-910b-2x8-kueue.yaml"])))["Job/resnext-910b-2x8"]
    assert kueue["spec"]["suspend"] is True


def test_snapshots_add_their_memory_to_shm_and_the_pod_and_say_so() -> None:
    """Two copies of ResNeXt101-64x4d's training state (1000 classes when unset) plus margins, in /dev/shm."""
    spec = make("gpu", 8, memory="100Gi", shm_size="10Gi")
    extra = snapshot_memory(spec)
    assert extra == 2 * (668_453_704 + (16 << 20))
    job = by_kind(render(spec))["Job/rx"]
    resources = container_of(job)["resources"]
    mib = lambda gib: f"{-(-(gib * 2**30 + extra) // 2**20)}Mi"  # noqa: E731
    assert resources["requests"]["memory"] == resources["limits"]["memory"] == mib(100)
    assert volumes_of(job)["shm"]["emptyDir"]["sizeLimit"] == mib(10)
    env = {e["name"]: e.get("value") for e in container_of(job)["env"]}
    assert env["JOBCTL_SNAPSHOT_DIR"] == "/dev/shm/jobctl-snapshot"
    note = snapshot_note(spec)
    assert note is not None and "1.28 GiB of /dev/shm per pod" in note and f"100Gi -> {mib(100)}" in note
    tiny = make("cpu", 2, train={"arch": "resnext_tiny", "num_classes": 10, "snapshot_interval": 5})
    assert snapshot_memory(tiny) == 2 * (2_895_368 + 10 * 4_104 + (16 << 20))
    assert "every 5 step(s)" in (snapshot_note(tiny) or "")
    off = make("gpu", 8, train={"snapshot_interval": 0})
    assert snapshot_memory(off) == 0 and snapshot_note(off) is None
    assert "JOBCTL_SNAPSHOT_DIR" not in {e["name"] for e in container_of(by_kind(render(off))["Job/rx"])["env"]}
