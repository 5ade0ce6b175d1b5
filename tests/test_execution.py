"""The two execution paths (trainer.execution): how ``auto`` resolves, the same losses from the same weights and
batches, and a 2-rank PyNative run that never touches the static-graph parallel API."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.test_train import env, finish, start_cluster
from trainer.execution import GRAPH, PYNATIVE, resolve, version_tuple

ROOT = Path(__file__).resolve().parents[1]

# One process per path: the mode is process-wide. The first run saves the initial weights, the second loads them.
LOSSES = """
import json, sys
import numpy as np, mindspore as ms
from mindspore import nn
from trainer import execution
from trainer.loss import LabelSmoothingCrossEntropy
from trainer.model import build_model
from trainer.loop import param_groups
path, init = sys.argv[1], sys.argv[2]
execution.set_mode(path)
ms.set_device("CPU")
ms.set_seed(1)
net = build_model("resnext_tiny", 10)
try:
    ms.load_param_into_net(net, ms.load_checkpoint(init), strict_load=True)
except (ValueError, RuntimeError, OSError):
    ms.save_checkpoint(net, init)
lrs = ms.Tensor(np.linspace(0.05, 0.1, 8).astype(np.float32))
optimizer = nn.Momentum(param_groups(net, 1e-4), lrs, 0.9)
step = execution.build_train_step(path, net, optimizer, LabelSmoothingCrossEntropy(10, 0.1), "O0", None, 1)
batches = np.random.RandomState(0)
losses = []
for _ in range(6):
    images = ms.Tensor(batches.rand(8, 3, 32, 32).astype(np.float32))
    labels = ms.Tensor(batches.randint(0, 10, 8).astype(np.int32))
    losses.append(step(images, labels))
print(json.dumps(losses))
"""

# Any call of the static-graph parallel API raises; the run then reports the parallel mode it ended in.
NO_PARALLEL_CONTEXT = """
import sys
import mindspore as ms
import mindspore.context

def refuse(*args, **kwargs):
    raise AssertionError("set_auto_parallel_context was called")

ms.set_auto_parallel_context = refuse
mindspore.context.set_auto_parallel_context = refuse
from trainer.train import main
code = main()
print(f"parallel_mode={ms.get_auto_parallel_context('parallel_mode')}", flush=True)
sys.exit(code)
"""


def test_auto_is_graph_while_mindspore_has_static_graph_parallel() -> None:
    assert [resolve("auto", v) for v in ("2.7.0", "2.10.0", "2.11.0rc1", "2.12.0", "3.0.0")] == [
        GRAPH,
        GRAPH,
        GRAPH,
        PYNATIVE,
        PYNATIVE,
    ]
    assert resolve("pynative", "2.7.0") == PYNATIVE and resolve("graph", "2.12.0") == GRAPH
    assert version_tuple("2.10.0") == (2, 10) and version_tuple("dev") == (99, 0)


@pytest.mark.slow
def test_graph_and_pynative_agree_on_the_first_losses(tmp_path: Path) -> None:
    """Same initial weights, same 6 batches, same recipe (weight decay groups, momentum, a learning-rate table):
    the per-step losses agree to 1e-4 relative (measured: ~1e-6; fp32 kernels in another order)."""
    init = tmp_path / "init.ckpt"
    losses = {}
    for path in (GRAPH, PYNATIVE):
        done = subprocess.run(
            [sys.executable, "-c", LOSSES, path, str(init)], capture_output=True, text=True, cwd=ROOT, env=env()
        )
        assert done.returncode == 0, done.stderr[-3000:]
        losses[path] = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(losses[GRAPH]) == 6 and len(set(losses[GRAPH])) == 6  # the steps moved the weights
    np.testing.assert_allclose(losses[PYNATIVE], losses[GRAPH], rtol=1e-4)


@pytest.mark.slow
def test_pynative_two_ranks_average_gradients_without_the_parallel_context(data: Path, tmp_path: Path) -> None:
    """set_auto_parallel_context raises in every process: PyNative trains 2 ranks to identical parameters and
    moments (the explicit gradient mean), and checkpoints as safetensors."""
    ckpt = tmp_path / "ckpt"
    args = ("--execution", "pynative", "--ckpt_format", "safetensors", "--max_steps", "4", "--ckpt_interval", "2")
    results = finish(start_cluster(data, ckpt, *args, "--is_save_on_master", "false", script=NO_PARALLEL_CONTEXT))
    for code, output in results:
        assert code == 0, output[-3000:]
    for _, output in results[1:]:
        assert "execution pynative" in output and "parallel_mode=stand_alone" in output
    script = (
        "import sys, json, numpy as np\n"
        "from trainer.checkpoint import load\n"
        "a, b = (load(p).params for p in sys.argv[1:])\n"
        "trained = [k for k in a if not k.endswith(('moving_mean', 'moving_variance'))]\n"
        "same = [k for k in trained if np.array_equal(a[k].asnumpy(), b[k].asnumpy())]\n"
        "print(json.dumps({'trained': trained, 'same': same}))\n"
    )
    files = [str(ckpt / "resnext_tiny-1_4.safetensors"), str(ckpt / "resnext_tiny-1_4-rank1.safetensors")]
    out = subprocess.run([sys.executable, "-c", script, *files], capture_output=True, text=True, env=env(), cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    compared = json.loads(out.stdout.strip().splitlines()[-1])
    assert any(k.startswith("moments.") for k in compared["trained"]) and "global_step" in compared["trained"]
    assert len(compared["trained"]) > 50 and compared["same"] == compared["trained"]


def test_only_graph_sets_the_static_graph_parallel_context(monkeypatch: pytest.MonkeyPatch) -> None:
    import mindspore as ms

    from trainer import execution

    calls: list[dict[str, object]] = []
    monkeypatch.setattr(ms, "set_auto_parallel_context", lambda **kwargs: calls.append(kwargs))
    execution.join_data_parallel(PYNATIVE, 2)
    execution.join_data_parallel(GRAPH, 1)  # one process: nothing to reduce
    assert calls == []
    execution.join_data_parallel(GRAPH, 2)
    assert calls == [{"parallel_mode": ms.ParallelMode.DATA_PARALLEL, "gradients_mean": True, "device_num": 2}]
