"""jobctl.cachedfs: the NFS-like caching views (the pure caches with a fake clock, then real FUSE mounts).

The mounted tests need /dev/fuse, libfuse 3 (apt fuse3) and mfusepy: where they are missing the views raise
ViewError naming what is missing, and the tests fail with it (no skip). Each staleness test measures how long a
view keeps the stale answer: it must stay stale right after the change and turn fresh within the cache time plus a
margin for a loaded machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from jobctl.cachedfs import CachedView, ClientCache, ViewError, is_mounted, parse_duration

T = 2.0  # seconds of caching in the mounted tests
MARGIN = 3.0  # a loaded machine may answer late, never early


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def counting(values: list[object]) -> Callable[[], object]:
    calls = iter(values)

    def fetch() -> object:
        value = next(calls)
        if isinstance(value, Exception):
            raise value
        return value

    return fetch


# The caches alone ------------------------------------------------------------------------------------------------


def test_a_negative_lookup_is_remembered_for_the_cache_time() -> None:
    clock = Clock()
    cache = ClientCache(30, clock)
    st = os.stat(".")
    fetch = counting([FileNotFoundError(), st])
    assert cache.stat("/x", fetch) is None  # type: ignore[arg-type]
    clock.now += 29.9
    assert cache.stat("/x", fetch) is None  # type: ignore[arg-type]  # still "no such file", without asking
    clock.now += 0.2
    assert cache.stat("/x", fetch) is st  # type: ignore[arg-type]


def test_a_listing_is_remembered_and_own_changes_forget_it() -> None:
    clock = Clock()
    cache = ClientCache(30, clock)
    fetch = counting([["a"], ["a", "b"], ["a", "b", "c"]])
    assert cache.listing("/d", fetch) == ["a"]  # type: ignore[arg-type]
    assert cache.listing("/d", fetch) == ["a"]  # type: ignore[arg-type]
    cache.forget("/d/b")  # this client created /d/b itself
    assert cache.listing("/d", fetch) == ["a", "b"]  # type: ignore[arg-type]
    clock.now += 31
    assert cache.listing("/d", fetch) == ["a", "b", "c"]  # type: ignore[arg-type]


def test_cache_time_zero_asks_every_time() -> None:
    cache = ClientCache(0, Clock())
    fetch = counting([FileNotFoundError(), os.stat(".")])
    assert cache.stat("/x", fetch) is None  # type: ignore[arg-type]
    assert cache.stat("/x", fetch) is not None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30.0), ("30", 30.0), ("0", 0.0), ("1.5s", 1.5), ("500ms", 0.5), ("1m", 60.0)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "-1s", "30h", ""])
def test_bad_durations_name_the_accepted_forms(text: str) -> None:
    with pytest.raises(ValueError, match=r"30s|negative"):
        parse_duration(text)


# Real mounts -----------------------------------------------------------------------------------------------------


@pytest.fixture
def views(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """``views(seconds)`` mounts one more view of ``tmp_path/real``; all are unmounted afterwards."""
    real = tmp_path / "real"
    real.mkdir()
    mounted: list[CachedView] = []

    def mount(seconds: float, read_only: bool = False) -> Path:
        log = tmp_path / f"view-{len(mounted)}.log"
        view = CachedView(real, tmp_path / f"view-{len(mounted)}", seconds, log=log, read_only=read_only)
        mounted.append(view.start())
        return view.mountpoint

    yield mount
    for view in mounted:
        view.stop()
        assert not is_mounted(view.mountpoint)


def stale_for(check: Callable[[], bool], since: float, limit: float = T + MARGIN) -> float:
    """Seconds from ``since`` until ``check()`` holds (polled: this measures the cache, it synchronises nothing)."""
    while not check():
        assert time.monotonic() - since < limit, f"still stale after {limit} s"
        time.sleep(0.05)
    return time.monotonic() - since


def test_a_file_created_elsewhere_stays_invisible_until_the_negative_entry_expires(views, tmp_path: Path) -> None:
    a, b = views(T), views(T)
    looked = time.monotonic()
    assert not (b / "x").exists()  # b remembers "no x"
    (a / "x").write_text("hello")
    assert (a / "x").read_text() == "hello" and (tmp_path / "real" / "x").is_file()
    assert not (b / "x").exists() and not os.access(b / "x", os.R_OK)
    with pytest.raises(FileNotFoundError):
        (b / "x").read_text()  # open honours the negative entry, as NFS's lookupcache=all does
    assert stale_for(lambda: (b / "x").exists(), looked) >= T * 0.9
    assert (b / "x").read_text() == "hello"


def test_a_listing_stays_stale_until_it_expires_or_the_viewer_changes_the_directory(views, tmp_path: Path) -> None:
    a, b = views(T), views(T)
    assert os.listdir(b) == []
    listed = time.monotonic()
    (tmp_path / "real" / "by-server").write_text("")
    (a / "by-a").write_text("")
    assert os.listdir(b) == []
    assert stale_for(lambda: len(os.listdir(b)) == 2, listed) >= T * 0.9
    (a / "late").write_text("")
    assert "late" not in os.listdir(b)
    (b / "by-b").write_text("")  # b's own change: b drops its listing (NFS sees the directory change) and re-reads
    assert sorted(os.listdir(b)) == ["by-a", "by-b", "by-server", "late"]


def test_attributes_are_stale_but_open_after_close_reads_everything(views) -> None:
    a, b = views(T), views(T)
    (a / "f").write_text("short")
    assert (b / "f").stat().st_size == 5
    (a / "f").write_text("a much longer text")
    assert (b / "f").stat().st_size == 5  # cached attributes
    assert (b / "f").read_text() == "a much longer text"  # close-to-open: open revalidates, nothing truncated
    assert (b / "f").stat().st_size == len("a much longer text")
    tmp = a / ".f.tmp"
    tmp.write_text("replaced by rename")
    os.replace(tmp, a / "f")  # write_atomic's way: the name now means another file
    assert (b / "f").read_text() == "replaced by rename"


def test_mkdir_and_exclusive_create_are_decided_by_the_real_directory(views) -> None:
    a, b = views(T), views(T)
    assert not (b / "attempt-1").exists() and not (b / "lock").exists()  # b caches both as absent
    (a / "attempt-1").mkdir()
    with pytest.raises(FileExistsError):
        (b / "attempt-1").mkdir()
    assert (b / "attempt-1").is_dir()  # the refusal taught b the name
    os.close(os.open(a / "lock", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    with pytest.raises(FileExistsError):
        os.open(b / "lock", os.O_CREAT | os.O_EXCL | os.O_WRONLY)


def test_fsync_of_files_and_directories_and_rename_and_unlink(views, tmp_path: Path) -> None:
    a = views(T)
    fd = os.open(a / "g", os.O_CREAT | os.O_WRONLY)
    os.write(fd, b"data")
    os.fsync(fd)
    os.close(fd)
    fd = os.open(a, os.O_RDONLY)
    os.fsync(fd)  # write_atomic fsyncs the directory
    os.close(fd)
    os.rename(a / "g", a / "h")
    assert os.listdir(a) == ["h"] and (tmp_path / "real" / "h").read_bytes() == b"data"
    os.unlink(a / "h")
    assert os.listdir(a) == [] and not (tmp_path / "real" / "h").exists()


def test_cache_time_zero_is_the_plain_directory(views, tmp_path: Path) -> None:
    b = views(0)
    assert os.listdir(b) == [] and not (b / "x").exists()
    (tmp_path / "real" / "x").write_text("now")
    assert os.listdir(b) == ["x"] and (b / "x").read_text() == "now"
    (tmp_path / "real" / "x").write_text("longer now")
    assert (b / "x").stat().st_size == len("longer now")


def test_without_libfuse_a_view_fails_with_the_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "real").mkdir()
    monkeypatch.setenv("FUSE_LIBRARY_PATH", str(tmp_path / "no-libfuse.so"))  # what mfusepy loads
    with pytest.raises(ViewError, match=r"cannot mount a caching view of .*libfuse"):
        CachedView(tmp_path / "real", tmp_path / "view", T).start()
    assert not is_mounted(tmp_path / "view")


def test_submit_with_shared_cache_refuses_cleanly_without_fuse(tmp_path: Path) -> None:
    """The local backend probes a view before it starts anything: exit 2, the reason, nothing written."""
    data = tmp_path / "data" / "train" / "a"
    data.mkdir(parents=True)
    env = {**os.environ, "FUSE_LIBRARY_PATH": str(tmp_path / "no-libfuse.so")}
    cmd = [sys.executable, "-m", "jobctl", "submit", "--backend", "local", "--platform", "cpu", "--name", "nofuse"]
    cmd += ["--data", str(tmp_path / "data"), "--shared", str(tmp_path / "shared"), "--shared-cache", "5s"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "--shared-cache: cannot mount a caching view" in done.stderr and "libfuse" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "shared" / "jobs" / "nofuse").exists()


def test_shared_cache_is_refused_on_the_k8s_backend(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "jobctl", "submit", "--backend", "k8s", "--platform", "cpu", "--name", "x"]
    cmd += ["--shared-cache", "30s"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--shared-cache: only the local backend" in done.stderr, done.stderr


def test_the_checkpoint_lister_finds_what_status_json_names_through_a_stale_listing(views, tmp_path: Path) -> None:
    """ckpt/ listed by another node seconds ago misses the newest checkpoint; status.json (opened by name, read
    afresh) names it, so resume, eval and status still find it, and a pruned one is passed over."""
    from contract.ckpt_files import list_checkpoints
    from contract.progress import write_status

    real = tmp_path / "real"
    (real / "rx-1_2.ckpt").write_bytes(b"old")
    write_status(real / "status.json", state="running", checkpoint=None)  # rank 0 writes it before any save
    b = views(3600, read_only=True)  # as an eval pod's mount: no probe file, so a listing can be stale
    assert [p.name for p in list_checkpoints(b)] == ["rx-1_2.ckpt"]  # b caches this listing for an hour
    (real / "rx-1_4.ckpt").write_bytes(b"new")
    write_status(real / "status.json", checkpoint="/shared/jobs/j/ckpt/rx-1_4.ckpt")  # as rank 0 saw it
    assert "rx-1_4.ckpt" not in os.listdir(b)
    assert [p.name for p in list_checkpoints(b)] == ["rx-1_2.ckpt", "rx-1_4.ckpt"]
    assert list_checkpoints(b, rank=1) == []  # status.json is rank 0's


def test_a_writable_reader_lists_checkpoints_fresh_and_a_read_only_view_refuses_writes(views, tmp_path: Path) -> None:
    """fresh_listdir: the probe file is this client's own change, after which it re-reads the listing."""
    from contract.ckpt_files import list_checkpoints
    from contract.files import fresh_listdir

    real = tmp_path / "real"
    b, ro = views(3600), views(3600, read_only=True)
    assert os.listdir(b) == [] and list_checkpoints(b) == [] and os.listdir(ro) == []
    (real / "rx-1_2.ckpt").write_bytes(b"x")
    assert os.listdir(b) == [] and os.listdir(ro) == []  # both cache the empty listing
    assert fresh_listdir(b) == ["rx-1_2.ckpt"] and [p.name for p in list_checkpoints(b)] == ["rx-1_2.ckpt"]
    assert fresh_listdir(ro) == []  # cannot write its probe: as stale as its cache
    with pytest.raises(OSError, match="Read-only"):
        (ro / "x").write_text("")
    assert sorted(os.listdir(real)) == ["rx-1_2.ckpt"], "no probe file left behind"
