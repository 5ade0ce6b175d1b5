"""`jobctl plot` and status's history summary on a cluster, through the loopback API double: from rank 0's pod
logs while the pods exist, else from the shared volume by a reader Job."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from contract.metrics import format_validation, log_record_line
from contract.progress import format_progress
from jobctl.backends.k8s.history import reader_job
from jobctl.spec import load_spec
from tests.k8s_double import KubeDouble
from tests.plot_checks import assert_is_a_real_plot
from tests.test_k8s_backend import NS, add_pod, jobctl, submit


def rank0_log(restarted: bool = True) -> str:
    """What pod 0 prints: an attempt record, progress and validation lines of rank 0 and rank 1, a resume."""
    start = {"kind": "start", "step": 0, "epoch": 0, "checkpoint": None, "arch": "resnext50_32x4d", "restarts": 0}
    lines = [log_record_line(start)]
    for step in range(10, 101, 10):
        loss = 6.0 / (1 + step / 20)
        lines += [format_progress(rank, 1 + step // 50, 4, step, 200, loss, 0.1, 250.0, 60.0) for rank in (0, 1)]
        if step % 50 == 0:
            lines.append(
                format_validation(step // 50, 4, step, 200, {"top1": step / 200, "top5": step / 120, "images": 500})
            )
    if restarted:
        resume = {"kind": "resume", "step": 100, "epoch": 2, "checkpoint": "/shared/jobs/rx/ckpt/x-2_100.ckpt",
                  "restarts": 1}  # fmt: skip
        lines.append(log_record_line(resume))
        lines += [format_progress(0, 3, 4, step, 200, 2.0, 0.05, 240.0, 30.0) for step in range(110, 151, 10)]
    return "".join(
        f"[rank 0] rank=0 {line}\n" if not line.startswith("rank=") else f"[rank 0] {line}\n" for line in lines
    )


def test_plot_and_status_from_rank0_logs(double: KubeDouble, tmp_path: Path) -> None:
    assert submit().exit_code == 0
    double.set_job_status(NS, "rx", {"active": 2})
    old = add_pod(double, "rx", 0, "Failed", suffix="old", exit_code=137)
    new = add_pod(double, "rx", 0, "Running", suffix="new")
    add_pod(double, "rx", 1, "Running")
    text = rank0_log()
    cut = text.index('[rank 0] rank=0 metrics {"kind":"resume"')
    double.append_log(NS, old, text[:cut])  # the first attempt in the replaced pod, the resume in its successor
    double.append_log(NS, new, text[cut:])
    out = tmp_path / "rx.png"
    result = jobctl("plot", "rx", "-n", NS, "-o", str(out))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out.resolve())
    assert_is_a_real_plot(out)
    status = json.loads(jobctl("status", "rx", "-n", NS, "-o", "json").stdout)
    assert status["best"] == {"top1": 0.5, "step": 100, "checkpoint": "/shared/jobs/rx/ckpt/best.ckpt"}
    assert len(status["loss_trend"]) == 15 and status["loss_trend"][-1] == 2.0  # rank 0 only, one curve
    table = jobctl("status", "rx", "-n", NS).stdout
    assert "best top-1: 50.00% at step 100" in table and "loss: " in table


def test_plot_after_cleanup_reads_the_shared_volume_with_a_reader_job(double: KubeDouble, tmp_path: Path) -> None:
    assert submit().exit_code == 0
    with double.lock:  # TTL cleanup: the Job and its pods are gone; the spec record stays
        for key in [k for k in double.objects if k[2] in ("rx", "rx-config")]:
            del double.objects[key]
    records = [
        {"kind": "start", "step": 0, "epoch": 0, "arch": "resnext50_32x4d", "rank_size": 16, "restarts": 0},
        *({"kind": "train", "step": s, "epoch": 1, "loss": 5.0 / s, "lr": 0.1, "img_per_sec": 300.0} for s in (5, 10)),
        {"kind": "val", "step": 10, "epoch": 1, "top1": 0.25, "top5": 0.5, "images": 100},
    ]

    def play() -> None:  # the Job controller and kubelet for rx-metrics
        deadline = time.monotonic() + 10
        while double.get("jobs", NS, "rx-metrics") is None and time.monotonic() < deadline:
            time.sleep(0.02)
        pod = add_pod(double, "rx-metrics", 0, "Succeeded", exit_code=0)
        double.append_log(NS, pod, "".join(json.dumps(r) + "\n" for r in records))
        double.set_job_status(NS, "rx-metrics", {"conditions": [{"type": "Complete", "status": "True"}]})

    player = threading.Thread(target=play)
    player.start()
    out = tmp_path / "rx.png"
    result = jobctl("plot", "rx", "-n", NS, "-o", str(out))
    player.join()
    assert result.exit_code == 0, result.output
    assert_is_a_real_plot(out)
    created = [c for c in double.calls("POST", "/jobs") if "dryRun" not in c["query"]]
    assert [c["body"]["metadata"]["name"] for c in created][-1] == "rx-metrics"
    assert double.get("jobs", NS, "rx-metrics") is None  # deleted after reading


def test_reader_job_mounts_only_the_shared_volume_and_asks_for_no_device() -> None:
    spec = load_spec(None, {"name": "rx", "platform": "ascend", "devices": 16}, [])
    job = reader_job(spec, "1.31")
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["cat", "/shared/jobs/rx/metrics.jsonl"]
    assert [m["name"] for m in container["volumeMounts"]] == ["shared"]
    assert "huawei.com/Ascend910" not in json.dumps(container["resources"])
    assert job["spec"]["template"]["spec"]["nodeSelector"]  # the shared volume may be a path on those nodes
