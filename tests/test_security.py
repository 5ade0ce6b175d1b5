"""Multi-tenant safety: refused host paths and root, Secret references, the per-job NetworkPolicy and the job's
own folder of the shared volume (render, CLI, the local backend's pod plan)."""

from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from jobctl.backends.base import BackendError
from jobctl.backends.local.pods import LOCAL_SECRETS_ENV, plan_pods
from jobctl.cli import app
from jobctl.jobdir import JobDir
from jobctl.render import SUPPORTED_KUBE_VERSIONS, render, render_eval, to_yaml
from jobctl.spec import JobSpec, SpecError, load_spec, validate_spec
from jobctl.validate import validate_objects
from tests.test_cli import assert_bad_input

runner = CliRunner()
SECRET_FIELDS: dict[str, Any] = {
    "secret_env": {"WANDB_API_KEY": "wandb/api-key"},
    "env_from_secrets": ["s3-credentials"],
    "secret_volumes": {"registry-ca": "/var/run/secrets/registry-ca"},
}


@pytest.fixture(autouse=True)
def no_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("JOBCTL_BACKEND", raising=False)
    monkeypatch.delenv("JOBCTL_HOST_PATH_ROOTS", raising=False)
    monkeypatch.delenv(LOCAL_SECRETS_ENV, raising=False)


def make(platform: str = "gpu", devices: int = 16, **fields: Any) -> JobSpec:
    return validate_spec({"name": "rx", "platform": platform, "devices": devices, **fields})


def kinds(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in objects}


def template(job: dict[str, Any]) -> dict[str, Any]:
    return dict(job["spec"]["template"])


# Refused input --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/etc",
        "/etc/",
        "/proc/1/root",
        "/sys",
        "/dev",
        "/var/run/docker.sock",
        "/run/containerd/containerd.sock",
        "/srv/cri/crio.sock",
        "/var",
        "/var/lib/kubelet/pods",
        "/root/.ssh",
        "/boot",
        "//etc",
        "/usr",
    ],
)
@pytest.mark.parametrize("field", ["data", "shared"])
def test_dangerous_host_paths_are_refused(field: str, path: str) -> None:
    with pytest.raises(SpecError, match=rf"{field}\.host_path.*refused"):
        make(**{field: {"host_path": path}})


def test_the_k8s_backend_allows_host_paths_only_under_the_admins_roots(monkeypatch: pytest.MonkeyPatch) -> None:
    args = ["render", "--platform", "gpu", "--devices", "8", "--data", "/datasets/imagenet"]
    assert_bad_input(runner.invoke(app, args), "data.host_path", "/mnt/jobctl", "JOBCTL_HOST_PATH_ROOTS")
    assert runner.invoke(app, [*args[:-1], "/mnt/jobctl/imagenet"]).exit_code == 0
    monkeypatch.setenv("JOBCTL_HOST_PATH_ROOTS", "/datasets:/scratch")
    ok = runner.invoke(app, args)
    assert ok.exit_code == 0, ok.output
    assert_bad_input(runner.invoke(app, [*args, "--shared", "/etc/jobs"]), "shared.host_path", "refused")


def test_root_is_refused_except_on_cpu_with_allow_root() -> None:
    with pytest.raises(SpecError, match="run_as_user: 0"):
        make(run_as_user=0)
    with pytest.raises(SpecError, match="allow_root"):
        make("gpu", 8, run_as_user=0, allow_root=True)
    with pytest.raises(SpecError, match="allow_root"):
        make("ascend", 8, allow_root=True)
    pod = template(kinds(render(make("cpu", 2, run_as_user=0, allow_root=True)))["Job/rx"])["spec"]
    assert pod["securityContext"]["runAsUser"] == 0 and "runAsNonRoot" not in pod["securityContext"]
    result = runner.invoke(app, ["render", "--platform", "gpu", "--devices", "8", "--set", "max_epoch=1"])
    assert result.exit_code == 0
    for job in (kinds(render(make(run_as_user=None)))["Job/rx"], kinds(render(make()))["Job/rx"]):
        assert template(job)["spec"]["securityContext"]["runAsNonRoot"] is True


def test_moving_image_tags_and_credentials_in_env_are_warned_about() -> None:
    args = ["render", "--platform", "gpu", "--devices", "8", "--image", "registry:5000/rx", "--env", "HF_TOKEN=abc"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "image registry:5000/rx has no tag" in result.stderr and "digest" in result.stderr
    assert "env HF_TOKEN looks like a credential" in result.stderr and "--secret-env HF_TOKEN=" in result.stderr
    pinned = runner.invoke(app, ["render", "--platform", "gpu", "--devices", "8", "--image", "rx@sha256:" + "a" * 64])
    assert "warning: image" not in pinned.stderr
    latest = runner.invoke(app, ["render", "--platform", "gpu", "--devices", "8", "--image", "rx:latest"])
    assert "uses :latest" in latest.stderr


# Secrets by reference -----------------------------------------------------------------------------------------


def test_secret_references_render_as_refs_and_no_value_anywhere() -> None:
    spec = make(env={"NCCL_DEBUG": "INFO"}, **SECRET_FIELDS)
    objects = render(spec) + render_eval(spec, spec.ckpt_dir, spec.val_dir)
    for job in (o for o in objects if o["kind"] == "Job"):
        container = template(job)["spec"]["containers"][0]
        env = {e["name"]: e for e in container["env"]}
        assert env["WANDB_API_KEY"] == {
            "name": "WANDB_API_KEY",
            "valueFrom": {"secretKeyRef": {"name": "wandb", "key": "api-key"}},
        }
        assert container["envFrom"] == [{"secretRef": {"name": "s3-credentials"}}]
        volumes = {v["name"]: v for v in template(job)["spec"]["volumes"]}
        mount = next(m for m in container["volumeMounts"] if m["mountPath"] == "/var/run/secrets/registry-ca")
        assert mount["readOnly"] is True
        assert volumes[mount["name"]]["secret"] == {"secretName": "registry-ca", "defaultMode": 0o440}
    # Only the references travel: no object (Job, ConfigMap with spec.yaml) has a value for a Secret-backed name.
    text = to_yaml(objects)
    assert "wandb/api-key" in text  # the reference in spec.yaml
    assert all(
        "value" not in e for o in objects if o["kind"] == "Job" for e in env_of(o) if e["name"] == "WANDB_API_KEY"
    )
    for version in SUPPORTED_KUBE_VERSIONS:
        validate_objects(render(spec, version), version)


def env_of(job: dict[str, Any]) -> list[dict[str, Any]]:
    return list(template(job)["spec"]["containers"][0]["env"])


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"secret_env": {"TOKEN": "no-slash"}}, "SECRET/KEY"),
        ({"secret_env": {"TOKEN": "Bad_Name/key"}}, "Secret name"),
        ({"secret_env": {"JOBCTL_X": "s/k"}}, "JOBCTL_X"),
        ({"secret_env": {"A": "s/k"}, "env": {"A": "1"}}, "both set A"),
        ({"env_from_secrets": ["s", "s"]}, "listed twice"),
        ({"secret_volumes": {"s": "/shared/x"}}, "overlaps /shared"),
        ({"secret_volumes": {"s": "/etc"}}, "overlaps /etc/jobctl"),
        ({"secret_volumes": {"a": "/var/run/s", "b": "/var/run/s/b"}}, "overlaps /var/run/s"),
        ({"egress_cidrs": ["10.0.0.1/8"]}, "egress_cidrs"),
    ],
)
def test_bad_secret_references_are_refused(fields: dict[str, Any], words: str) -> None:
    with pytest.raises(SpecError, match=words):
        make(**fields)


def test_secret_flags_reach_the_spec() -> None:
    flags = ["--secret-env", "WANDB_API_KEY=wandb/api-key", "--env-from-secret", "s3-credentials"]
    flags += ["--secret-volume", "registry-ca=/var/run/secrets/registry-ca"]
    result = runner.invoke(app, ["render", "--platform", "gpu", "--devices", "8", *flags, "-o", "json"])
    assert result.exit_code == 0, result.output
    job = next(o for o in json.loads(result.stdout) if o["kind"] == "Job")
    container = template(job)["spec"]["containers"][0]
    assert {"name": "WANDB_API_KEY", "valueFrom": {"secretKeyRef": {"name": "wandb", "key": "api-key"}}} in container[
        "env"
    ]
    assert container["envFrom"] == [{"secretRef": {"name": "s3-credentials"}}]
    assert_bad_input(runner.invoke(app, ["render", "--platform", "gpu", "--secret-env", "X"]), "--secret-env", "X")


def test_the_local_backend_reads_secrets_from_its_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = make("cpu", 2, data={"host_path": str(tmp_path)}, shared={"host_path": str(tmp_path)}, **SECRET_FIELDS)
    objects = render(spec)
    job_dir = JobDir.of(tmp_path, "rx")
    with pytest.raises(BackendError, match=LOCAL_SECRETS_ENV) as err:
        plan_pods(objects, job_dir, tmp_path, 1234)
    assert err.value.exit_code == 2
    secrets = tmp_path / "secrets"
    for secret, key, value in [("wandb", "api-key", "s3kr1t"), ("s3-credentials", "AWS_ACCESS_KEY_ID", "AKIA")]:
        (secrets / secret).mkdir(parents=True)
        (secrets / secret / key).write_text(value + "\n")
    (secrets / "registry-ca").mkdir()
    monkeypatch.setenv(LOCAL_SECRETS_ENV, str(secrets))
    plan = plan_pods(objects, job_dir, tmp_path, 1234)[0]
    assert plan.env["WANDB_API_KEY"] == "s3kr1t" and plan.env["AWS_ACCESS_KEY_ID"] == "AKIA"
    assert "s3kr1t" not in to_yaml(objects) and "AKIA" not in to_yaml(objects)


# The job's NetworkPolicy ----------------------------------------------------------------------------------------


def selects(policy: dict[str, Any], pod_labels: dict[str, str]) -> bool:
    wanted = policy["spec"]["podSelector"]["matchLabels"]
    return all(pod_labels.get(k) == v for k, v in wanted.items())


def pod_labels(job: dict[str, Any]) -> dict[str, str]:
    # What the Job controller adds to every pod (the job-name label it sets anyway is rendered too).
    return {**template(job)["metadata"]["labels"], "batch.kubernetes.io/controller-uid": "u"}


def test_the_network_policy_selects_exactly_the_jobs_pods() -> None:
    objects = kinds(render(make()))
    policy, job = objects["NetworkPolicy/rx"], objects["Job/rx"]
    other = kinds(render(validate_spec({"name": "rx2", "platform": "gpu", "devices": 16})))["Job/rx2"]
    spec = make()
    evaluation = kinds(render_eval(spec, spec.ckpt_dir, spec.val_dir))
    assert selects(policy, pod_labels(job))
    assert not selects(policy, pod_labels(other)) and not selects(policy, pod_labels(evaluation["Job/rx-eval"]))
    # A pod of another job that copies the app labels is still not selected: the job-name label is the Job's own.
    assert not selects(
        policy,
        {**pod_labels(other), **policy["spec"]["podSelector"]["matchLabels"], "x": "1"}
        | {"batch.kubernetes.io/job-name": "rx2"},
    )
    assert policy["spec"]["policyTypes"] == ["Ingress"]  # egress open by default
    (rule,) = policy["spec"]["ingress"]
    assert "ports" not in rule, "every port: the launcher's, the scheduler's and the collectives'"
    assert rule["from"] == [{"podSelector": policy["spec"]["podSelector"]}]
    eval_policy = evaluation["NetworkPolicy/rx-eval"]
    assert selects(eval_policy, pod_labels(evaluation["Job/rx-eval"])) and not selects(eval_policy, pod_labels(job))
    assert eval_policy["spec"]["ingress"] == [] and eval_policy["spec"]["policyTypes"] == ["Ingress"]
    created = [o["kind"] for o in render(make())]
    assert created.index("NetworkPolicy") < created.index("Job"), "no pod runs before its policy exists"


def test_egress_is_narrowed_only_when_the_spec_says_so() -> None:
    policy = kinds(render(make(egress_cidrs=["10.0.0.0/8"])))["NetworkPolicy/rx"]
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    to = [rule.get("to") for rule in policy["spec"]["egress"]]
    assert to[0] == [{"podSelector": policy["spec"]["podSelector"]}] and to[-1] == [{"ipBlock": {"cidr": "10.0.0.0/8"}}]
    assert {"protocol": "UDP", "port": 53} in policy["spec"]["egress"][1]["ports"]
    closed = kinds(render(make(egress_cidrs=[])))["NetworkPolicy/rx"]
    assert len(closed["spec"]["egress"]) == 2  # the job's pods and DNS only


@pytest.mark.parametrize("version", SUPPORTED_KUBE_VERSIONS)
def test_network_policies_validate_strictly(version: str) -> None:
    spec = make(egress_cidrs=["10.0.0.0/8", "2001:db8::/32"])
    validate_objects(render(spec, version) + render_eval(spec, spec.ckpt_dir, spec.val_dir, version), version)


# The job's own folder of the shared volume ----------------------------------------------------------------------


def test_pods_mount_only_their_jobs_folder_at_the_contracts_path(tmp_path: Path) -> None:
    spec = make("cpu", 2, data={"host_path": str(tmp_path)}, shared={"host_path": str(tmp_path / "shared")})
    objects = render(spec)
    mounts = template(kinds(objects)["Job/rx"])["spec"]["containers"][0]["volumeMounts"]
    shared = [m for m in mounts if m["name"] == "shared"]
    assert shared == [{"name": "shared", "mountPath": "/shared/jobs/rx", "subPath": "jobs/rx"}]
    plan = plan_pods(objects, JobDir.of(tmp_path / "shared", "rx"), tmp_path / "shared", 1234)[0]
    assert plan.env["JOBCTL_JOB_DIR"] == str(tmp_path / "shared" / "jobs" / "rx")
    (evaluation,) = [o for o in render_eval(spec, spec.ckpt_dir, spec.val_dir) if o["kind"] == "Job"]
    eval_mounts = [m for m in template(evaluation)["spec"]["containers"][0]["volumeMounts"] if m["name"] == "shared"]
    assert eval_mounts == [
        {"name": "shared", "mountPath": "/shared/jobs/rx", "subPath": "jobs/rx", "readOnly": True},
        {"name": "shared", "mountPath": "/shared/jobs/rx/eval", "subPath": "jobs/rx/eval"},
    ]


def test_evaluate_keeps_its_result_when_the_checkpoints_are_read_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trainer import evaluate

    written: dict[str, str] = {}

    def write(path: str | Path, text: str | bytes) -> None:
        if str(path).endswith(".eval.json"):
            raise OSError(errno.EROFS, "Read-only file system")
        written[str(path)] = str(text)

    monkeypatch.setattr(evaluate, "write_atomic", write)
    evaluate.write_result({"top1": 0.5}, tmp_path / "ckpt" / "rx-1_2.ckpt", str(tmp_path / "eval"))
    assert json.loads(written[str(tmp_path / "eval" / "rx-1_2.json")]) == {"top1": 0.5}
    with pytest.raises(OSError):
        evaluate.write_result({"top1": 0.5}, tmp_path / "ckpt" / "rx-1_2.ckpt", None)


def test_spec_yaml_holds_references_only(tmp_path: Path) -> None:
    spec = load_spec(None, {"platform": "gpu", "devices": 8, "name": "rx", "secret_env.TOKEN": "s/k"}, [])
    record = yaml.safe_load(spec.to_yaml())
    assert record["secret_env"] == {"TOKEN": "s/k"} and record["namespace"] == "mindspore-jobs"
    assert make("ascend", 8).namespace == "mindspore-jobs-ascend"


# The namespaces k8s/ creates admit what jobctl renders for them -------------------------------------------------

K8S = Path(__file__).resolve().parents[1] / "k8s"


def allowed_host_paths() -> set[str]:
    policy = next(yaml.safe_load_all((K8S / "pod-policy.yaml").read_text()))
    expression = next(v["expression"] for v in policy["spec"]["variables"] if v["name"] == "allowedHostPaths")
    return set(yaml.safe_load(expression))


def namespace_levels() -> dict[str, dict[str, str]]:
    docs = yaml.safe_load_all((K8S / "namespace.yaml").read_text())
    return {d["metadata"]["name"]: d["metadata"]["labels"] for d in docs}


@pytest.mark.parametrize(("platform", "devices"), [("ascend", 8), ("ascend", 16), ("gpu", 16), ("cpu", 2)])
def test_rendered_pods_pass_the_namespace_they_are_meant_for(platform: str, devices: int) -> None:
    spec = make(platform, devices)
    levels = namespace_levels()[str(spec.namespace)]
    binding = list(yaml.safe_load_all((K8S / "pod-policy.yaml").read_text()))[1]
    policed = binding["spec"]["matchResources"]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
    for job in (o for o in render(spec) + render_eval(spec, spec.ckpt_dir, spec.val_dir) if o["kind"] == "Job"):
        pod = template(job)["spec"]
        host_paths = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}
        container = pod["containers"][0]
        security = container["securityContext"]
        assert security["allowPrivilegeEscalation"] is False and security["capabilities"] == {"drop": ["ALL"]}
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        if levels["pod-security.kubernetes.io/enforce"] == "restricted":
            assert not host_paths  # restricted: no hostPath at all
            continue
        # The Ascend namespace: the policy admits exactly these paths, read-only.
        assert spec.namespace == policed
        assert set(host_paths.values()) <= allowed_host_paths() and host_paths
        assert all(m["readOnly"] for m in container["volumeMounts"] if m["name"] in host_paths)
