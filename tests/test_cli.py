"""The jobctl command line: bad input, render, submit --dry-run, rank tables (no cluster, no processes)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner

from jobctl.cli import JobOptions, app
from jobctl.render import DEFAULT_KUBE_VERSION, render
from jobctl.spec import load_spec

runner = CliRunner()


@pytest.fixture(autouse=True)
def no_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to reach a cluster fails loudly: these commands must not need one."""
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("JOBCTL_BACKEND", raising=False)


def jobctl(*args: str) -> Any:
    return runner.invoke(app, list(args))


def assert_bad_input(result: Any, *words: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.stdout == ""
    for word in words:
        assert word in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--set", "platform=gpu"], ["platform", "--platform"]),
        (["--set", "data_dir=/x"], ["data_dir"]),
        (["--set", "no_such_key=1"], ["no_such_key"]),
        (["--set", "max_epoch"], ["KEY=VALUE"]),
        (["--set", "max_epoch=-3"], ["max_epoch"]),
        (["--name", "Bad_Name"], ["name", "Bad_Name"]),
        (["--devices", "12", "--devices-per-node", "8", "--platform", "gpu"], ["devices", "12"]),
        (["--devices-per-node", "32", "--devices", "32", "--platform", "gpu"], ["devices_per_node"]),
        (["--env", "NOEQUALS"], ["--env", "NOEQUALS"]),
        (["--env", "MS_ROLE=x"], ["MS_ROLE"]),
        (["--launcher", "ranktable", "--platform", "gpu"], ["launcher"]),
        (["--kube-version", "1.20"], ["1.20", "oldest supported"]),
        (["-f", "/no/such/spec.yaml"], ["/no/such/spec.yaml"]),
    ],
)
def test_bad_input_is_one_clean_paragraph(args: list[str], words: list[str]) -> None:
    base = ["--platform", "cpu"] if "--platform" not in args else []
    for command in ("render", "submit"):
        extra = ["--dry-run"] if command == "submit" else []
        assert_bad_input(jobctl(command, *base, *args, *extra), *words)


@pytest.mark.parametrize(
    ("spec", "sets", "words"),
    [
        (None, ["max_epoch=" + "9" * 5000], ["--set max_epoch", "more than 4300 digits"]),
        ("platform: cpu\ntrain: " + "[" * 3000 + "]" * 3000 + "\n", [], ["spec.yaml", "nested more than 64 levels"]),
        (None, ["max_epoch=" + "{a: " * 3000 + "}" * 3000], ["--set max_epoch", "nested more than 64 levels"]),
        ("platform: cpu\nname: a\nname: b\n", [], ["spec.yaml", "key 'name' is given twice", "line 3"]),
        ("platform: cpu\n" + "".join(f"bogus{i}: 1\n" for i in range(100)), [], ["bogus0", "README.md"]),
    ],
)
def test_hostile_specs_are_one_short_line(tmp_path: Path, spec: str | None, sets: list[str], words: list[str]) -> None:
    args = ["--platform", "cpu", "--name", "a"]
    if spec is not None:
        (tmp_path / "spec.yaml").write_text(spec)
        args = ["-f", str(tmp_path / "spec.yaml")]
    args += [item for value in sets for item in ("--set", value)]
    for command in (["render"], ["submit", "--dry-run"]):
        result = jobctl(*command, *args)
        assert_bad_input(result, *words)
        assert result.stderr.count("\n") == 1 and len(result.stderr) < 600, result.stderr[:300]


def test_render_and_submit_take_the_job_options_first_and_alike() -> None:
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    fields = [field.name for field in dataclasses.fields(JobOptions)]
    shown = {name: [(p.name, p.opts, getattr(p, "help", None)) for p in commands[name].params] for name in commands}
    assert [name for name, _, _ in shown["render"][: len(fields)]] == fields
    assert shown["render"][: len(fields)] == shown["submit"][: len(fields)]
    assert ("set_", ["--set"], "trainer key KEY=VALUE (repeatable)") in shown["submit"]


def test_missing_platform_is_named() -> None:
    assert_bad_input(jobctl("render"), "platform")


def test_local_backend_needs_a_dataset_directory(tmp_path: Path) -> None:
    shared = ["--shared", str(tmp_path / "shared")]
    assert_bad_input(jobctl("submit", "--backend", "local", "--platform", "cpu", *shared), "--data")
    missing = jobctl("submit", "--backend", "local", "--platform", "cpu", "--data", str(tmp_path / "none"), *shared)
    assert_bad_input(missing, "--data", "not a directory")
    (tmp_path / "empty").mkdir()
    no_train = jobctl("submit", "--backend", "local", "--platform", "cpu", "--data", str(tmp_path / "empty"), *shared)
    assert_bad_input(no_train, "train/")


def test_render_prints_what_render_returns() -> None:
    args = ["--platform", "gpu", "--devices", "16", "--name", "rx", "--set", "max_epoch=2", "--env", "NCCL_DEBUG=INFO"]
    result = jobctl("render", *args)
    assert result.exit_code == 0, result.output
    spec = load_spec(None, {"name": "rx", "platform": "gpu", "devices": 16, "env.NCCL_DEBUG": "INFO"}, ["max_epoch=2"])
    assert list(yaml.safe_load_all(result.stdout)) == render(spec, DEFAULT_KUBE_VERSION)
    as_json = jobctl("render", *args, "--kube-version", "1.35", "-o", "json")
    assert json.loads(as_json.stdout) == render(spec, "1.35")


def test_render_takes_a_spec_file_with_flags_winning(tmp_path: Path) -> None:
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(
        yaml.safe_dump({"name": "from-file", "platform": "ascend", "devices": 8, "train": {"lr": 0.1}})
    )
    result = jobctl("render", "-f", str(spec_file), "--name", "from-flag", "--data", "imagenet-b")
    assert result.exit_code == 0, result.output
    job = next(o for o in yaml.safe_load_all(result.stdout) if o["kind"] == "Job")
    assert job["metadata"]["name"] == "from-flag"
    volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == "imagenet-b"


def test_submit_dry_run_renders_without_a_cluster(tmp_path: Path) -> None:
    result = jobctl("submit", "--platform", "ascend", "--devices", "8", "--name", "a8", "--dry-run")
    assert result.exit_code == 0, result.output
    spec = load_spec(None, {"name": "a8", "platform": "ascend", "devices": 8}, [])
    assert list(yaml.safe_load_all(result.stdout)) == render(spec, DEFAULT_KUBE_VERSION)


def test_submit_dry_run_local_maps_volumes_to_host_paths(tmp_path: Path) -> None:
    (tmp_path / "data" / "train").mkdir(parents=True)
    args = ["--backend", "local", "--platform", "cpu", "--devices", "2", "--name", "loc", "--dry-run", "-o", "json"]
    result = jobctl("submit", *args, "--data", str(tmp_path / "data"), "--shared", str(tmp_path / "shared"))
    assert result.exit_code == 0, result.output
    job = next(o for o in json.loads(result.stdout) if o["kind"] == "Job")
    volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"]["hostPath"]["path"] == str(tmp_path / "data")
    assert volumes["shared"]["hostPath"]["path"] == str(tmp_path / "shared")
    assert not (tmp_path / "shared" / "jobs").exists(), "a dry run writes no job directory"


def test_commands_without_a_cluster_fail_cleanly() -> None:
    result = jobctl("status", "rx", "--backend", "k8s")
    assert result.exit_code == 2 and "no Kubernetes cluster configured" in result.stderr
    assert "Traceback" not in result.output


def test_local_commands_on_an_unknown_job(tmp_path: Path) -> None:
    for command in ("status", "logs", "wait", "delete"):
        result = jobctl(command, "ghost", "--backend", "local", "--shared", str(tmp_path))
        assert result.exit_code == 1 and "no local job named 'ghost'" in result.stderr, command
    result = jobctl("eval", "ghost", "--backend", "local", "--shared", str(tmp_path))
    assert result.exit_code == 1 and "spec.yaml" in result.stderr


def test_backend_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBCTL_BACKEND", "local")
    result = jobctl("list", "--shared", str(tmp_path), "-o", "json")
    assert result.exit_code == 0 and json.loads(result.stdout) == []
    monkeypatch.setenv("JOBCTL_BACKEND", "nomad")
    assert jobctl("list").exit_code == 2


def hccn_conf(server: int = 0) -> str:
    """One 8-device server's /etc/hccn.conf; each server has its own NPU addresses."""
    return (
        "\n".join(f"address_{d}=192.168.{d % 4}.{10 * server + 10 + d}" for d in range(8))
        + "\nnetdetect_0=192.168.0.1\n"
    )


HCCN = hccn_conf()


def test_ranktable_build_and_merge(tmp_path: Path) -> None:
    hccn = tmp_path / "hccn.conf"
    hccn.write_text(HCCN)
    for index, server in enumerate(("10.0.0.1", "10.0.0.2")):
        own = tmp_path / f"hccn-{index}.conf"
        own.write_text(hccn_conf(index))
        args = ["--hccn-conf", str(own), "--server-id", server, "-o", str(tmp_path / f"{server}.json")]
        result = jobctl("ranktable", "build", *args)
        assert result.exit_code == 0, result.output
    one = json.loads((tmp_path / "10.0.0.1.json").read_text())
    assert one["server_count"] == "1" and [d["rank_id"] for d in one["server_list"][0]["device"]] == [
        str(r) for r in range(8)
    ]
    half = json.loads(
        jobctl("ranktable", "build", "--hccn-conf", str(hccn), "--server-id", "10.0.0.3", "--devices", "4-7").stdout
    )
    assert [d["device_id"] for d in half["server_list"][0]["device"]] == ["4", "5", "6", "7"]
    merged = jobctl("ranktable", "merge", str(tmp_path / "10.0.0.1.json"), str(tmp_path / "10.0.0.2.json"))
    assert merged.exit_code == 0, merged.output
    table = json.loads(merged.stdout)
    ranks = [(s["server_id"], d["rank_id"]) for s in table["server_list"] for d in s["device"]]
    assert [r for _, r in ranks] == [str(r) for r in range(16)] and ranks[8][0] == "10.0.0.2"


def test_ranktable_bad_input(tmp_path: Path) -> None:
    hccn = tmp_path / "hccn.conf"
    hccn.write_text(HCCN)
    assert_bad_input(
        jobctl("ranktable", "build", "--hccn-conf", str(tmp_path / "nope"), "--server-id", "1.2.3.4"), "nope"
    )
    build = ["ranktable", "build", "--hccn-conf", str(hccn), "--server-id", "1.2.3.4"]
    assert_bad_input(jobctl(*build, "--devices", "2-5", "--accelerator", "910"), "do not form an HCCL ring")
    jobctl(*build, "--devices", "0,1,4,5", "--accelerator", "910", "-o", str(tmp_path / "cross.json"))
    assert json.loads((tmp_path / "cross.json").read_text())["server_count"] == "1"  # HCCL's cross-ring 4-set
    assert_bad_input(jobctl(*build, "--accelerator", "h100"), "accepted: 910, 910b, a3")
    assert_bad_input(jobctl(*build, "--accelerator", "a3"), "cannot make a version 1.2 table")
    seven = tmp_path / "seven.conf"
    seven.write_text("\n".join(HCCN.splitlines()[:7]))
    for devices in ([], ["--devices", "0-3"]):
        assert_bad_input(
            jobctl("ranktable", "build", "--hccn-conf", str(seven), "--server-id", "1.2.3.4", *devices), "no address_7"
        )
    jobctl(*build, "-o", str(tmp_path / "a.json"))
    jobctl("ranktable", "build", "--hccn-conf", str(hccn), "--server-id", "1.2.3.5", "-o", str(tmp_path / "b.json"))
    same_ips = jobctl("ranktable", "merge", str(tmp_path / "a.json"), str(tmp_path / "b.json"))
    assert_bad_input(same_ips, "HCCL refuses duplicate device IPs")
    (tmp_path / "broken.json").write_text("{not json")
    assert_bad_input(jobctl("ranktable", "merge", str(tmp_path / "broken.json")), "broken.json")


def test_plot_of_an_unknown_local_job_is_a_clean_error(tmp_path: Path) -> None:
    result = jobctl("plot", "nope", "--backend", "local", "--shared", str(tmp_path))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "no job directory for 'nope'" in result.stderr


def test_plot_before_the_first_progress_line_says_so(tmp_path: Path) -> None:
    job_dir = tmp_path / "jobs" / "early"
    job_dir.mkdir(parents=True)
    (job_dir / "metrics.jsonl").write_text('{"kind":"start","step":0,"epoch":0,"restarts":0}\n')
    result = jobctl("plot", "early", "--backend", "local", "--shared", str(tmp_path), "-o", str(tmp_path / "p.png"))
    assert result.exit_code == 1 and "no training progress" in result.stderr
    assert not (tmp_path / "p.png").exists()
