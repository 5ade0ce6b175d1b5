"""In-memory snapshots: the file format (contract.snapshot_file), the launchers' agreement
(launcher.recovery), a writer killed during the copy, and the state sizes jobctl reserves memory for."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from contract import snapshot_file
from contract.rendezvous import Fragment
from launcher.recovery import Plan, decide, local_snapshot, newest_checkpoint

ARRAYS = [
    ("conv.weight", np.arange(10, dtype=np.float32)),
    ("bn.moving_mean", np.ones((3, 3), np.float32)),
    ("global_step", np.array([7], np.int32)),  # 4 bytes: the payload ends off the alignment
]


def write_arrays(directory: Path, step: int, arrays: list[tuple[str, np.ndarray]] = ARRAYS) -> Path:
    entries, size = snapshot_file.layout_arrays([(n, str(a.dtype), a.shape, a.nbytes) for n, a in arrays])
    buffers = [np.ascontiguousarray(a).data.cast("B") for _, a in arrays]
    header = snapshot_file.SnapshotHeader(
        step=step,
        epoch=1,
        payload_bytes=size,
        crc32=snapshot_file.payload_crc(buffers, entries),
        arrays=entries,
        meta={"step": step, "epoch": 1},
    )
    return snapshot_file.write(directory, header, buffers)


def test_a_snapshot_reads_back_and_reuses_the_superseded_ones_memory(tmp_path: Path) -> None:
    path = write_arrays(tmp_path, 1)
    header, start = snapshot_file.read_header(path)
    assert header.step == 1 and [a["name"] for a in header.arrays] == [n for n, _ in ARRAYS]
    data = path.read_bytes()[start:]
    for entry, (_, array) in zip(header.arrays, ARRAYS, strict=True):
        assert entry["offset"] % snapshot_file.ALIGN == 0
        assert data[entry["offset"] : entry["offset"] + entry["nbytes"]] == array.tobytes()
    write_arrays(tmp_path, 2)
    spare = tmp_path / snapshot_file.SPARE
    first_inode = spare.stat().st_ino  # step 1's file, kept for its pages
    write_arrays(tmp_path, 3)
    assert (tmp_path / snapshot_file.NAME).stat().st_ino == first_inode  # step 3 was written into step 1's file
    assert snapshot_file.read_header(tmp_path / snapshot_file.NAME)[0].step == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([snapshot_file.NAME, snapshot_file.SPARE])


def test_a_spare_that_is_the_current_snapshot_is_never_written_into(tmp_path: Path) -> None:
    """A writer killed between its two renames leaves the spare as a second name of the current snapshot."""
    write_arrays(tmp_path, 1)
    current = tmp_path / snapshot_file.NAME
    (tmp_path / snapshot_file.SPARE).unlink(missing_ok=True)
    os.link(current, tmp_path / snapshot_file.SPARE)
    before = current.read_bytes()
    write_arrays(tmp_path, 2)
    assert snapshot_file.read_header(current)[0].step == 2
    old = tmp_path / snapshot_file.SPARE
    assert old.read_bytes() == before  # the superseded snapshot stayed whole while step 2 was written


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda p: os.truncate(p, p.stat().st_size - 3), "is cut short"),
        (lambda p: os.truncate(p, 10), "is cut short"),
        (lambda p: _flip(p, -2), "is damaged (checksum"),
        (lambda p: _flip(p, 25), "damaged header"),
        (lambda p: p.write_bytes(b"not a snapshot at all"), "is not a snapshot"),
    ],
)
def test_a_damaged_snapshot_is_refused_with_the_reason(tmp_path: Path, damage, reason: str) -> None:
    path = write_arrays(tmp_path, 1)
    damage(path)
    with pytest.raises(snapshot_file.SnapshotError, match=reason.replace("(", r"\(")):
        snapshot_file.read_header(path)


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_the_launcher_skips_a_damaged_snapshot_with_a_line_and_removes_it(tmp_path: Path) -> None:
    path = write_arrays(tmp_path, 4)
    _flip(path, -1)
    said: list[str] = []
    assert local_snapshot(tmp_path, said.append) is None
    assert said and said[0].startswith(f"skipping snapshot {path} is damaged") and not path.exists()


# A writer killed during the copy: a real process writing a 64 MB snapshot again and again, killed while the test
# sees its temporary file only partly written. Its previous snapshot must be the one used.
WRITER = """
import sys
from pathlib import Path
import numpy as np
sys.path.insert(0, {root!r})
from tests.test_snapshot import write_arrays
big = [("w", np.random.default_rng(0).random(8 << 20))]  # 64 MB
step = 0
while True:
    step += 1
    write_arrays(Path(sys.argv[1]), step, big)
    print(step, flush=True)
"""


def test_a_snapshot_cut_short_by_a_kill_is_skipped_and_the_previous_one_used(tmp_path: Path) -> None:
    folder = tmp_path / "shm"
    script = WRITER.format(root=str(Path(__file__).parents[1]))
    for _ in range(20):  # the writer may finish between the look and the kill: then try again
        proc = subprocess.Popen([sys.executable, "-c", script, str(folder)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        proc.stdout.readline()  # one complete snapshot is in place
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            partial = [t for t in snapshot_file.temporaries(folder) if 0 < _size(t) < 64 << 20]
            if partial:
                os.kill(proc.pid, signal.SIGKILL)
                break
        proc.wait()
        if snapshot_file.temporaries(folder):
            break
        proc.stdout.close()
        folder = tmp_path / f"shm-{_}"
    else:
        pytest.fail("never caught the writer during a copy")
    previous = snapshot_file.read_header(folder / snapshot_file.NAME)[0].step
    said: list[str] = []
    found = local_snapshot(folder, said.append)
    assert found is not None and found["step"] == previous
    assert said[0].startswith("skipping the half-written snapshot ") and "stopped during the copy" in said[0]
    assert not snapshot_file.temporaries(folder)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def fragment(pod: int, step: int | None) -> Fragment:
    snap = {"step": step, "checksum": "00000000", "bytes": 1} if step is not None else None
    return Fragment(pod, snapshot=snap)


def test_the_newest_state_anywhere_is_chosen() -> None:
    assert decide([fragment(0, 812), fragment(1, 811)], (800, "x-1_800.ckpt")) == Plan(812, (0,), (800, "x-1_800.ckpt"))
    assert decide([fragment(0, 812), fragment(1, 812), fragment(2, None)], None).holders == (0, 1)
    assert decide([fragment(0, None), fragment(1, 9)], None).publisher == 1  # the replaced pod 0 takes pod 1's
    newer_checkpoint = decide([fragment(0, 5), fragment(1, None)], (6, "x-1_6.ckpt"))
    assert newer_checkpoint.step is None and "checkpoint x-1_6.ckpt at step 6" in newer_checkpoint.describe()
    assert decide([fragment(0, 6)], (6, "x-1_6.ckpt")).step == 6  # memory wins a tie: quicker to read
    assert decide([fragment(0, None)], None).describe().startswith("the start")
    assert Plan(812, (1,)).source(1) == "snapshot of pod 1 at step 812"


def test_the_launcher_sees_only_complete_checkpoints(tmp_path: Path) -> None:
    whole = b"\x0a\x00" + b"crc_num" + bytes(10)  # the smallest file the structural check passes
    (tmp_path / "resnext_tiny-1_4.ckpt").write_bytes(whole)
    (tmp_path / "resnext_tiny-2_8.ckpt").write_bytes(whole[:5])
    assert newest_checkpoint(tmp_path) == (4, "resnext_tiny-1_4.ckpt")


@pytest.mark.parametrize("arch", ["resnext_tiny", "resnext50_32x4d"])
def test_the_state_sizes_jobctl_reserves_memory_for_match_the_model(arch: str) -> None:
    """The bytes of every parameter of the training network, as a snapshot holds them (but the learning-rate
    table, 4 bytes a step, which MARGIN_BYTES covers)."""
    import mindspore as ms
    from mindspore import nn

    from trainer.loop import param_groups
    from trainer.loss import LabelSmoothingCrossEntropy
    from trainer.model import build_model

    for classes in (10, 1000):
        net = build_model(arch, classes)
        optimizer = nn.Momentum(param_groups(net, 1e-4), ms.Tensor(np.zeros(1, np.float32)), 0.9)
        train_net = ms.amp.build_train_network(net, optimizer, LabelSmoothingCrossEntropy(classes, 0.1), level="O0")
        nbytes = sum(p.data.nbytes for _, p in train_net.parameters_and_names() if p.name != "learning_rate")
        assert nbytes == snapshot_file.state_bytes(arch, classes)


def test_the_default_interval_keeps_the_measured_cost_under_3_percent_of_a_step() -> None:
    from trainer.snapshot import SnapshotPacer

    said: list[str] = []
    pacer = SnapshotPacer(None, said.append)
    pacer.step_done(30.0, 1, writing=False)  # the first step compiles: not a step time
    assert pacer.due(1)
    for _ in range(5):
        pacer.step_done(2.0, 1, writing=False)
    pacer.taken(6, copy_seconds=0.2)
    pacer.step_done(2.3, 1, writing=True)  # the write slows one step by 0.3 s
    pacer.step_done(2.0, 1, writing=False)  # the write is done: cost 0.5 s, a step 2 s -> 0.5 / 0.06 = 9 steps
    assert pacer.interval == 9 and not pacer.due(14) and pacer.due(15)
    assert said == ["snapshot interval now 9 step(s): a snapshot costs 0.500 s (copy 0.200 s), a step 2.000 s"]
    fixed = SnapshotPacer(1, said.append)
    fixed.taken(3, copy_seconds=5.0)
    fixed.step_done(9.0, 1, writing=False)
    assert fixed.interval == 1 and fixed.due(4)
