"""The pod contract round trip: render -> the local backend's pod plan -> the launcher's parse, per launch mode."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from contract.env import ContractError, PodEnv, Var
from contract.layout import JobLayout
from jobctl.backends.local.pods import LOCALHOST, plan_pods, termination_log
from jobctl.jobdir import JobDir
from jobctl.render import pod_env, render
from jobctl.spec import JobSpec, validate_spec
from launcher.main import trainer_command


def spec_for(platform: str, launcher: str | None, tmp_path: Path) -> JobSpec:
    fields = {"name": "rt", "platform": platform, "devices": 4, "devices_per_node": 2}
    fields |= {"rendezvous_timeout": 90, "stall_timeout": 300, "data": {"host_path": str(tmp_path / "data")}}
    fields |= {"shared": {"host_path": str(tmp_path / "shared")}}
    return validate_spec({**fields, **({"launcher": launcher} if launcher else {})})


@pytest.mark.parametrize(("platform", "launcher"), [("cpu", None), ("ascend", "ranktable"), ("ascend", "controller")])
def test_render_plan_parse_round_trip(tmp_path, platform, launcher) -> None:
    spec = spec_for(platform, launcher, tmp_path)
    rendered = pod_env(spec)
    job_dir = JobDir.of(tmp_path / "shared", spec.name)
    plans = plan_pods(render(spec), job_dir, tmp_path / "shared", master_port=12345)
    assert len(plans) == 2
    for plan in plans:
        parsed = PodEnv.from_environ(plan.env)
        # Cluster values become local ones; everything else arrives exactly as rendered.
        local = {"job_dir": job_dir.root, "data_dir": str(tmp_path / "data" / "train")}
        local |= {"val_dir": str(tmp_path / "data" / "val"), "master_addr": LOCALHOST, "master_port": 12345}
        local |= {"train_config": job_dir.local_dir / "volumes" / "config" / "train.yaml"}
        local |= {"termination_log": termination_log(job_dir, plan.index), "pod_index": plan.index}
        local |= {"pod_name": f"rt-{plan.index}", "pod_ip": LOCALHOST, "node_ip": LOCALHOST}
        assert parsed == replace(rendered, **local, run_id=parsed.run_id)
        assert parsed.family == platform and parsed.launcher == rendered.launcher
        assert parsed.train_config.is_file()  # the ConfigMap's train.yaml, materialised


def test_launch_keys_travel_once(tmp_path) -> None:
    """platform, data/ckpt paths and is_distributed come from the env as flags, never from train.yaml."""
    spec = spec_for("cpu", None, tmp_path)
    job_dir = JobDir.of(tmp_path / "shared", spec.name)
    plan = plan_pods(render(spec), job_dir, tmp_path / "shared", master_port=1)[0]
    env = PodEnv.from_environ(plan.env)
    argv = trainer_command(env, [])
    assert argv[argv.index("--platform") + 1] == "CPU"
    assert argv[argv.index("--ckpt_path") + 1] == str(JobLayout(job_dir.root).ckpt_dir)
    text = env.train_config.read_text()
    for key in ("platform:", "data_dir:", "val_dir:", "ckpt_path:", "is_distributed:"):
        assert key not in text


def test_parse_names_every_problem() -> None:
    with pytest.raises(ContractError) as info:
        PodEnv.from_environ({Var.FAMILY: "tpu", Var.NUM_PODS: "2", Var.POD_INDEX: "5", Var.STALL_TIMEOUT: "x"})
    message = str(info.value)
    for expected in ("JOBCTL_PLATFORM='tpu'", "JOB_COMPLETION_INDEX='5' must be between 0 and 1", "JOBCTL_JOB_NAME"):
        assert expected in message
    assert "JOBCTL_STALL_TIMEOUT='x' is not a number" in message
