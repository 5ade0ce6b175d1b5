"""jobctl's side of elastic data parallel (min_devices, shrink_after): the spec's checks, the flags, the render
(pod env, Volcano's minMember, Kueue's partial admission, the success policy), and the group in `jobctl status`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from contract.env import DEFAULT_SHRINK_AFTER, Var
from contract.lines import format_joined
from contract.metrics import log_record_line
from contract.progress import write_status
from jobctl import output
from jobctl.backends.base import COMPLETE, JobInfo
from jobctl.backends.local.backend import LocalBackend
from jobctl.cli import app
from jobctl.render import SUPPORTED_KUBE_VERSIONS, render
from jobctl.render_gang import KUEUE_MIN_PARALLELISM_ANNOTATION
from jobctl.spec import JobSpec, SpecError, validate_spec
from jobctl.spec.resume import changes, check_resumable
from jobctl.validate import crd_validator, validate_objects
from tests.k8s_double import KubeDouble

runner = CliRunner()
CRD = yaml.safe_load((Path(__file__).parent / "crd_volcano_podgroups.yaml").read_text())
PODGROUP = {("scheduling.volcano.sh/v1beta1", "PodGroup"): crd_validator(CRD, "v1beta1")}
NS = "team-a"


def gpu(**fields: Any) -> JobSpec:
    """A 3-pod GPU job (8 per pod) by default."""
    return validate_spec({"name": "el", "platform": "gpu", "devices": 24, "devices_per_node": 8, **fields})


def refused(**fields: Any) -> str:
    with pytest.raises(SpecError) as err:
        gpu(**fields)
    return str(err.value)


def env_of(objects: list[dict[str, Any]]) -> dict[str, str]:
    job = next(o for o in objects if o["kind"] == "Job")
    return {e["name"]: e.get("value", "") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == kind)


# The spec -------------------------------------------------------------------------------------------------------


def test_an_elastic_spec_resolves_its_fewest_pods_and_keeps_both_keys() -> None:
    spec = gpu(min_devices=16, shrink_after=90)
    assert (spec.elastic, spec.min_pods, spec.shrink_seconds) == (True, 2, 90)
    stored = yaml.safe_load(spec.to_yaml())
    assert (stored["min_devices"], stored["shrink_after"]) == (16, 90)
    assert gpu(min_devices=16).shrink_seconds == DEFAULT_SHRINK_AFTER


def test_a_spec_that_is_not_elastic_stores_what_it_always_did() -> None:
    spec = gpu()
    assert (spec.elastic, spec.min_pods) == (False, 3)
    assert "min_devices" not in spec.to_yaml() and "shrink_after" not in spec.to_yaml()
    full = gpu(min_devices=24)  # = devices: said explicitly, still not elastic
    assert (full.elastic, full.min_pods) == (False, 3)


@pytest.mark.parametrize(
    ("fields", "needles"),
    [
        ({"min_devices": 32}, ["min_devices: 32 is more than devices 24", "at most 24"]),
        ({"min_devices": 12}, ["min_devices: 12 is not a whole number of pods", "8 devices per pod", "8, 16"]),
        ({"devices": 8, "min_devices": 4}, ["single-pod job cannot", "--devices-per-node"]),
        ({"min_devices": 16, "max_restarts": 0}, ["max_restarts: 0 with min_devices 16", "--max-restarts 1"]),
        ({"shrink_after": 30}, ["shrink_after: 30 does nothing without min_devices", "--min-devices"]),
        ({"min_devices": 16, "shrink_after": 600}, ["shrink_after: 600 s is not below rendezvous_timeout 600 s"]),
    ],
)
def test_elastic_fields_that_cannot_work_are_refused_with_the_fix(fields: dict[str, Any], needles: list[str]) -> None:
    message = refused(**fields)
    for needle in needles:
        assert needle in message, message


def test_the_controller_launcher_cannot_resize() -> None:
    with pytest.raises(SpecError, match=r"min_devices: 8 .*launcher controller.*--launcher ranktable"):
        validate_spec({"name": "el", "platform": "ascend", "devices": 16, "launcher": "controller", "min_devices": 8})
    for launcher in ("ranktable", "msrun"):
        spec = validate_spec(
            {"name": "el", "platform": "ascend", "devices": 16, "launcher": launcher, "min_devices": 8}
        )
        assert spec.elastic
    full = validate_spec(
        {"name": "el", "platform": "ascend", "devices": 16, "launcher": "controller", "min_devices": 16}
    )
    assert not full.elastic


def test_every_group_size_must_split_the_global_batch() -> None:
    # 6 pods of 8, per_batch_size 32: global 1536; 40 devices (5 pods) do not split it, 32/24/16/8 do.
    fields = {"devices": 48, "min_devices": 8, "train": {"per_batch_size": 32}}
    message = refused(**fields)
    assert "global batch 1536 (per_batch_size 32 x devices 48)" in message
    assert "over 40 device(s)" in message and "--set per_batch_size=40" in message, message
    fixed = gpu(**{**fields, "train": {"per_batch_size": 40}})  # what the message suggests works
    assert fixed.elastic
    # 3 pods of 8, per_batch_size 21: 504 splits over 24 and 8, not 16; no min_devices below 24 works.
    message = refused(min_devices=8, train={"per_batch_size": 21})
    assert "over 16 device(s)" in message and "--set per_batch_size=22" in message, message
    assert "--min-devices" not in message
    # 6 pods, per_batch_size 5: 240 splits over 48 and 40, not over 32: min_devices 40 works, or per_batch_size 10.
    message = refused(devices=48, min_devices=8, train={"per_batch_size": 5})
    assert "over 32 device(s)" in message and "--min-devices 40 or --set per_batch_size=10" in message, message
    assert gpu(devices=48, min_devices=40, train={"per_batch_size": 5}).elastic
    assert gpu(devices=48, min_devices=8, train={"per_batch_size": 10}).elastic


def test_resume_may_change_min_devices() -> None:
    before, after = gpu(), gpu(min_devices=16)
    check_resumable(before, after)
    assert "min_devices: (unset) -> 16" in changes(before, after)


def test_flags_on_render_and_submit() -> None:
    args = ["--platform", "gpu", "--devices", "24", "--devices-per-node", "8", "--name", "el"]
    result = runner.invoke(app, ["render", *args, "--min-devices", "16", "--shrink-after", "45", "-o", "json"])
    assert result.exit_code == 0, result.output
    env = env_of(json.loads(result.stdout))
    assert (env[Var.MIN_PODS], env[Var.SHRINK_AFTER]) == ("2", "45")
    bad = runner.invoke(app, ["submit", *args, "--min-devices", "12", "--dry-run"])
    assert bad.exit_code == 2 and "min_devices: 12 is not a whole number of pods" in bad.stderr


def test_render_says_what_shrinking_costs_each_device() -> None:
    args = ["render", "--platform", "gpu", "--devices", "24", "--devices-per-node", "8", "--name", "el", "-o", "json"]
    elastic = runner.invoke(app, [*args, "--min-devices", "16"])
    assert "each device takes 64 images a step at full size and up to 96 while shrunk" in elastic.stderr
    assert "elastic" not in runner.invoke(app, args).stderr


# The render -----------------------------------------------------------------------------------------------------


def test_only_elastic_jobs_get_the_elastic_pod_env() -> None:
    assert Var.MIN_PODS not in env_of(render(gpu())) and Var.SHRINK_AFTER not in env_of(render(gpu()))
    assert Var.MIN_PODS not in env_of(render(gpu(min_devices=24)))
    env = env_of(render(gpu(min_devices=8, shrink_after=120)))
    assert (env[Var.MIN_PODS], env[Var.SHRINK_AFTER]) == ("1", "120")
    assert env_of(render(gpu(min_devices=16)))[Var.SHRINK_AFTER] == str(DEFAULT_SHRINK_AFTER)


def test_volcano_gang_of_an_elastic_job_is_its_fewest_pods() -> None:
    full = by_kind(render(gpu(scheduler="volcano", queue="research")), "PodGroup")["spec"]
    group = by_kind(render(gpu(scheduler="volcano", queue="research", min_devices=16)), "PodGroup")["spec"]
    assert (full["minMember"], group["minMember"]) == (3, 2)
    assert full["minResources"]["nvidia.com/gpu"] == "24" and group["minResources"]["nvidia.com/gpu"] == "16"
    assert int(full["minResources"]["cpu"]) * 2 == int(group["minResources"]["cpu"]) * 3


def test_kueue_admits_an_elastic_job_partially() -> None:
    objects = render(gpu(scheduler="kueue", queue="team-a", min_devices=8))
    job = by_kind(objects, "Job")
    assert job["metadata"]["annotations"] == {KUEUE_MIN_PARALLELISM_ANNOTATION: "1"}
    # The Indexed Job still asks for every pod; Kueue lowers parallelism only when the quota cannot hold them.
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == 3 and job["spec"]["suspend"] is True
    plain = by_kind(render(gpu(scheduler="kueue", queue="team-a")), "Job")
    assert "annotations" not in plain["metadata"]
    volcano = by_kind(render(gpu(scheduler="volcano", queue="q", min_devices=8)), "Job")
    assert "annotations" not in volcano["metadata"]


@pytest.mark.parametrize("version", SUPPORTED_KUBE_VERSIONS)
def test_the_success_policy_stays_rank_0s_pod(version: str) -> None:
    """A count rule could end the job while the first member still writes the final checkpoint (render.py)."""
    job = by_kind(render(gpu(min_devices=8), version), "Job")
    policy = job["spec"].get("successPolicy")
    assert policy == by_kind(render(gpu(), version), "Job")["spec"].get("successPolicy")
    assert policy is None or policy == {"rules": [{"succeededIndexes": "0"}]}


@pytest.mark.parametrize("version", SUPPORTED_KUBE_VERSIONS)
@pytest.mark.parametrize("scheduler", ["default", "volcano", "kueue"])
def test_elastic_renders_validate_strictly(scheduler: str, version: str) -> None:
    queue = {} if scheduler == "default" else {"queue": "team-a"}
    for spec in (
        gpu(min_devices=8, scheduler=scheduler, **queue),
        validate_spec(
            {
                "name": "el",
                "platform": "ascend",
                "devices": 16,
                "launcher": "msrun",
                "min_devices": 8,
                "shrink_after": 0,
                "scheduler": scheduler,
                **queue,
            }
        ),
    ):
        objects = render(spec, version)
        validate_objects(objects, version, PODGROUP)
        assert env_of(objects)[Var.MIN_PODS] == str(spec.min_pods)


# Status ---------------------------------------------------------------------------------------------------------

SHRUNK = {"devices": 16, "full_devices": 24, "members": [0, 1], "missing": [2]}


def test_the_group_line_uses_the_groups_own_words() -> None:
    info = JobInfo(name="el", namespace="local", phase="Running", group=SHRUNK, last_restart="pod 2 lost: silent")
    assert output.group_line(info) == "devices: 16/24 (pod(s) 2 missing), shrunk; last failure: pod 2 lost: silent"
    info.group = {"devices": 24, "full_devices": 24, "members": [0, 1, 2], "missing": []}
    assert output.group_line(info) == "devices: 24/24"
    for bad in (None, {"devices": 16}, {"devices": 16, "full_devices": 24, "members": [0, 5]}, "16/24"):
        info.group = bad  # type: ignore[assignment]
        assert output.group_line(info) is None


def local_job(tmp_path: Path, group: dict[str, Any]) -> tuple[LocalBackend, str]:
    """A finished local job as its files say (no process): the stored spec, job.json, state.json, status.json."""
    spec = validate_spec({"name": "el", "platform": "cpu", "devices": 3, "devices_per_node": 1, "min_devices": 2})
    backend = LocalBackend(tmp_path / "shared")
    job_dir = backend.job_dir(spec.name)
    job_dir.local_dir.mkdir(parents=True)
    job_dir.ckpt_dir.mkdir(parents=True, exist_ok=True)
    job_dir.spec_file.write_text(spec.to_yaml())
    meta = {"objects": render(spec), "submitted": "2020-01-01T00:00:00Z"}
    (job_dir.local_dir / "job.json").write_text(json.dumps(meta))
    (job_dir.local_dir / "state.json").write_text(json.dumps({"phase": COMPLETE, "pods": []}))
    write_status(job_dir.status_file, state="completed", step=20, total_steps=20, group=group)
    return backend, spec.name


def test_local_status_shows_the_shrunk_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shrunk = {"devices": 2, "full_devices": 3, "members": [0, 2], "missing": [1]}
    backend, name = local_job(tmp_path, shrunk)
    assert backend.status(name).group == shrunk
    monkeypatch.setenv("JOBCTL_BACKEND", "local")
    shared = ["--shared", str(backend.shared)]
    text = runner.invoke(app, ["status", name, *shared])
    assert text.exit_code == 0, text.output
    assert "devices: 2/3 (pod(s) 1 missing), shrunk" in text.stdout
    for fmt, load in (("json", json.loads), ("yaml", yaml.safe_load)):
        shown = runner.invoke(app, ["status", name, *shared, "-o", fmt])
        assert shown.exit_code == 0 and load(shown.stdout)["group"] == shrunk


def test_status_says_the_step_a_group_took_its_size_at(tmp_path: Path) -> None:
    """A group shrunk at step 8 and restarted in place, still shrunk, at step 12: shrunk at step 8."""
    shrunk = {"devices": 2, "full_devices": 3, "members": [0, 2], "missing": [1]}
    backend, name = local_job(tmp_path, shrunk)
    segment = {"kind": "segment", "epoch": 0, "full_devices": 3}
    records = [
        {"kind": "start", "step": 0, "epoch": 0},
        {**segment, "step": 0, "devices": 3, "members": [0, 1, 2]},
        {"kind": "resume", "step": 8, "epoch": 0},
        {**segment, "step": 8, "devices": 2, "members": [0, 2]},
        {"kind": "resume", "step": 12, "epoch": 0},
        {**segment, "step": 12, "devices": 2, "members": [0, 2]},
    ]
    backend.job_dir(name).metrics_file.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert output.group_line(backend.status(name)) == "devices: 2/3 (pod(s) 1 missing), shrunk at step 8"


def test_local_status_of_a_full_group(tmp_path: Path) -> None:
    full = {"devices": 3, "full_devices": 3, "members": [0, 1, 2], "missing": []}
    backend, name = local_job(tmp_path, full)
    assert output.group_line(backend.status(name)) == "devices: 3/3"


def test_k8s_status_shows_the_group_of_the_newest_segment(double: KubeDouble) -> None:
    from tests.test_k8s_backend import add_pod

    args = ["--platform", "gpu", "--devices", "24", "--devices-per-node", "8", "--min-devices", "16", "-n", NS]
    assert runner.invoke(app, ["submit", *args, "--name", "el"]).exit_code == 0
    double.set_job_status(NS, "el", {"active": 2})
    pod0 = add_pod(double, "el", 0, "Running")
    add_pod(double, "el", 1, "Running")
    add_pod(double, "el", 2, "Pending")
    full = {"kind": "segment", "step": 0, "epoch": 0, "devices": 24, "full_devices": 24, "members": [0, 1, 2]}
    shrunk = {**full, "step": 40, "devices": 16, "members": [0, 1]}
    joined = format_joined(2, 3, 16, 1, 3, "pod 2 lost: no heartbeat for 30 s")
    lines = [
        f"[rank 0] rank=0 {log_record_line(full)}",
        f"[launcher] {joined}",
        f"[rank 0] rank=0 {log_record_line(shrunk)}",
    ]
    double.append_log(NS, pod0, "\n".join(lines) + "\n")
    info = json.loads(runner.invoke(app, ["status", "el", "-n", NS, "-o", "json"]).stdout)
    assert info["group"] == {"devices": 16, "full_devices": 24, "members": [0, 1], "missing": [2], "since_step": 40}
    text = runner.invoke(app, ["status", "el", "-n", NS]).stdout
    assert "devices: 16/24 (pod(s) 2 missing), shrunk at step 40; last failure: pod 2 lost: no heartbeat" in text
