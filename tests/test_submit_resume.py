"""`submit --resume` continues the stored spec; one winner of racing submits; size limits at the edges."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from jobctl.backends.base import BackendError
from jobctl.backends.k8s import backend as k8s_backend
from jobctl.backends.k8s.backend import K8sBackend, api_client
from jobctl.backends.local import backend as local_backend
from jobctl.backends.local.backend import LocalBackend
from jobctl.backends.local.pods import training_job
from jobctl.cli import app
from jobctl.jobdir import JobDir
from jobctl.limits import MAX_ARG_STRLEN, MAX_SPEC_FILE_BYTES
from jobctl.render import render
from jobctl.spec import JobSpec, load_spec
from tests.k8s_double import KubeDouble

JOBCTL = [sys.executable, "-m", "jobctl"]
COMPLETE_CKPT = b"\x0a\x00" + b"crc_num" + bytes(10)  # passes the truncation scan (see test_local_backend)
RECIPE = ["per_batch_size=16", "max_epoch=4", "image_size=32", "arch=resnext_tiny"]
NS = "team-a"
cli = CliRunner()


def dataset(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    for split in ("train", "val"):
        (data / split / "a").mkdir(parents=True, exist_ok=True)
    return data


def stored_job(tmp_path: Path, name: str = "demo") -> JobDir:
    """A local job that ran with a small recipe: its spec.yaml and one checkpoint, no controller."""
    flags = {"name": name, "platform": "cpu", "devices": 1, "data.host_path": str(dataset(tmp_path))}
    flags["shared.host_path"] = str(tmp_path / "shared")
    spec = load_spec(None, flags, RECIPE)
    job_dir = JobDir.of(tmp_path / "shared", name)
    job_dir.create()
    job_dir.spec_file.write_text(spec.to_yaml())
    (job_dir.ckpt_dir / "resnext_tiny-1_10.ckpt").write_bytes(COMPLETE_CKPT)
    return job_dir


def resume(tmp_path: Path, *args: str, name: str = "demo") -> subprocess.CompletedProcess[str]:
    cmd = [*JOBCTL, "submit", "--backend", "local", "--shared", str(tmp_path / "shared"), "--name", name]
    return subprocess.run([*cmd, "--resume", *args], capture_output=True, text=True, timeout=120)


def train_yaml_of(objects: list[dict[str, Any]]) -> dict[str, Any]:
    config = next(o for o in objects if o["kind"] == "ConfigMap" and "train.yaml" in o["data"])
    return dict(yaml.safe_load(config["data"]["train.yaml"]))


def test_resume_without_sets_keeps_the_stored_recipe(tmp_path: Path) -> None:
    stored_job(tmp_path)
    result = resume(tmp_path, "--dry-run", "-o", "json")
    assert result.returncode == 0, result.stderr
    train = train_yaml_of(json.loads(result.stdout))
    assert (train["per_batch_size"], train["max_epoch"], train["image_size"]) == (16, 4, 32)
    assert "resume changes nothing" in result.stderr


def test_resume_with_a_set_changes_only_that_and_says_so(tmp_path: Path) -> None:
    stored_job(tmp_path)
    result = resume(tmp_path, "--set", "max_epoch=6", "--dry-run", "-o", "json")
    assert result.returncode == 0, result.stderr
    train = train_yaml_of(json.loads(result.stdout))
    assert (train["per_batch_size"], train["max_epoch"], train["image_size"]) == (16, 6, 32)
    said = [line for line in result.stderr.splitlines() if line.startswith("resume changes")]
    assert said == ["resume changes train.max_epoch: 4 -> 6"], result.stderr


@pytest.mark.parametrize("change", ["arch=resnext50", "num_classes=7"])
def test_a_change_the_checkpoints_cannot_take_exits_2_writing_nothing(tmp_path: Path, change: str) -> None:
    job_dir = stored_job(tmp_path)
    before = job_dir.spec_file.read_text()
    result = resume(tmp_path, "--set", change)
    key = change.split("=")[0]
    assert result.returncode == 2 and f"train.{key}" in result.stderr and "Traceback" not in result.stderr
    assert job_dir.spec_file.read_text() == before and not job_dir.local_dir.exists(), "nothing written"
    assert not job_dir.train_file.exists()


def test_k8s_resume_continues_the_spec_record(double: KubeDouble) -> None:
    base = ["submit", "--platform", "gpu", "--devices", "8", "--name", "rx", "-n", NS]
    first = cli.invoke(app, [*base, *[arg for kv in RECIPE for arg in ("--set", kv)]])
    assert first.exit_code == 0, first.output
    double.set_job_status(NS, "rx", {"conditions": [{"type": "Complete", "status": "True"}]})
    resumed = cli.invoke(app, ["submit", "--name", "rx", "-n", NS, "--resume", "--set", "max_epoch=6"])
    assert resumed.exit_code == 0, resumed.output
    assert "resume changes train.max_epoch: 4 -> 6" in resumed.stderr and resumed.stderr.count("resume changes") == 1
    record = double.get("configmaps", NS, "rx-spec")
    assert record is not None
    spec = yaml.safe_load(record["data"]["spec.yaml"])
    assert spec["devices"] == 8 and spec["train"]["per_batch_size"] == 16 and spec["train"]["max_epoch"] == 6


# 24.2: racing submits --------------------------------------------------------------------------------------


def race_submit(tmp_path: Path, start: Any, inside: Any, results: Any) -> None:
    """One contender: both start together; the winner pauses inside the claim until the other has answered."""

    def hold(spec: JobSpec) -> None:  # runs inside the claimed section (after the name checks)
        with contextlib.suppress(threading.BrokenBarrierError):  # the other was refused and broke it: carry on
            inside.wait(timeout=30)

    local_backend._check_batch_fits = hold  # type: ignore[assignment]
    spec = load_spec(
        None, {"name": "race", "platform": "cpu", "devices": 1, "data.host_path": str(dataset(tmp_path))}, []
    )
    objects = render(spec)
    container = training_job(objects)["spec"]["template"]["spec"]["containers"][0]
    container["command"] = ["python", "-c", "import time; time.sleep(60)"]
    start.wait(timeout=30)
    try:
        LocalBackend(tmp_path / "shared").submit(spec, objects, resume=False, replace=False)
        results.put(("won", 0, ""))
    except BackendError as exc:
        inside.abort()
        results.put(("refused", exc.exit_code, str(exc)))
    except BaseException as exc:  # e.g. both contenders writing one directory at once
        inside.abort()
        results.put(("crashed", 1, repr(exc)))


def test_two_same_name_submits_at_once_exactly_one_wins(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    start, inside, results = ctx.Barrier(2), ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=race_submit, args=(tmp_path, start, inside, results)) for _ in range(2)]
    for proc in procs:
        proc.start()
    outcomes = sorted(results.get(timeout=60) for _ in procs)
    for proc in procs:
        proc.join(timeout=30)
    backend = LocalBackend(tmp_path / "shared")
    try:
        assert [o[0] for o in outcomes] == ["refused", "won"], outcomes
        refused = outcomes[0]
        assert refused[1] == 2 and "race" in refused[2] and "won the name" in refused[2]
        assert backend.is_active(backend.job_dir("race"))
    finally:
        backend.delete("race")


def test_the_k8s_spec_record_create_is_the_claim(double: KubeDouble) -> None:
    spec = load_spec(None, {"name": "rx", "platform": "gpu", "devices": 8, "namespace": NS}, [])
    k8s = K8sBackend(api_client(None), NS, poll_seconds=0.05)
    k8s.write_record(spec)  # the other submit, which passed the same name checks a moment earlier
    with pytest.raises(BackendError) as refused:
        k8s.write_record(spec)
    assert refused.value.exit_code == 2 and "won the name" in str(refused.value)


def test_of_two_racing_k8s_resumes_the_loser_changes_nothing(double: KubeDouble, monkeypatch) -> None:
    base = ["submit", "--platform", "gpu", "--devices", "8", "--name", "rx", "-n", NS, "--set", "max_epoch=4"]
    assert cli.invoke(app, base).exit_code == 0
    double.set_job_status(NS, "rx", {"conditions": [{"type": "Complete", "status": "True"}]})
    assert cli.invoke(app, ["submit", "--name", "rx", "-n", NS, "--resume"]).exit_code == 0  # the winner
    record = double.get("configmaps", NS, "rx-spec")
    # The loser passed the same name checks and dry runs a moment before the winner created its objects.
    monkeypatch.setattr(K8sBackend, "check_name", lambda self, spec, **_: None)
    monkeypatch.setattr(k8s_backend, "admit_objects", lambda api, objects: None)
    loser = cli.invoke(app, ["submit", "--name", "rx", "-n", NS, "--resume", "--set", "max_epoch=9"])
    assert loser.exit_code == 2 and "won the name" in loser.stderr, loser.output
    assert double.get("configmaps", NS, "rx-spec") == record, "the loser rewrote nothing"


# 24.6: size limits -----------------------------------------------------------------------------------------


def test_a_spec_file_over_the_limit_is_refused_before_parsing(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text(
        "name: big\nplatform: gpu\ndevices: 8\nenv:\n"
        + "".join(f"  K{i}: v\n" for i in range(MAX_SPEC_FILE_BYTES // 8))
    )
    began = time.monotonic()
    result = subprocess.run([*JOBCTL, "render", "-f", str(big)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "1 MiB" in result.stderr and str(big) in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and time.monotonic() - began < 60


def test_a_rendered_config_map_over_1_mib_is_refused_naming_it(tmp_path: Path) -> None:
    value = "x" * (2 * 1024 * 1024)
    result = cli.invoke(app, ["render", "--platform", "gpu", "--devices", "8", "--name", "big", "--env", f"V={value}"])
    assert result.exit_code == 2, result.output[-500:]
    assert "ConfigMap big-config" in result.stderr and "spec.yaml" in result.stderr and len(result.stderr) < 1000


def test_an_env_value_over_the_exec_limit_is_refused_at_local_submit(tmp_path: Path) -> None:
    data = dataset(tmp_path)
    cmd = [*JOBCTL, "submit", "--backend", "local", "--platform", "cpu", "--name", "env", "--data", str(data)]
    spec_file = tmp_path / "env.yaml"  # a value this long cannot be a command-line argument either
    spec_file.write_text(yaml.safe_dump({"env": {"BIG": "x" * (MAX_ARG_STRLEN + 100)}}))
    cmd += ["--shared", str(tmp_path / "shared"), "-f", str(spec_file)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "BIG" in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not JobDir.of(tmp_path / "shared", "env").exists(), "nothing written"
