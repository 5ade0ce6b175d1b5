"""A view of a directory with NFS-like client caching: a FUSE passthrough, one daemon per view (a test harness).

Each local "pod" can see the shared volume through its own view (``jobctl submit --backend local --shared-cache
30s``), so the job meets the staleness a pod on another node meets on NFS. What one view models, for a cache time T
(NFS ``actimeo=T``: acregmin = acregmax = acdirmin = acdirmax = T, ``lookupcache=all``, close-to-open on):

- attributes (size, mtime, mode; ``stat``) are cached for T after they were fetched;
- lookups are cached both ways for T: a name found stays found, a name not found ("negative" entry) stays not
  found, even after another node created it; a directory listing (``readdir``) is cached for T;
- close-to-open: ``open`` fetches the file's attributes afresh and reads its current content (the kernel drops its
  pages on every open), so whoever opens a file after its writer closed it (or renamed it into place) reads all of
  it; writes go through at once (``close`` has nothing left to flush);
- the view's own changes (create, write, mkdir, rename, unlink, ...) update its own caches at once, as an NFS client
  knows what it did itself; ``mkdir``, ``rename``, ``O_EXCL`` creates are decided by the real directory (the
  server), so they stay atomic across views.

Not modelled: NFS's adaptive attribute times (acregmin..acregmax growing with the file's age: here every item lives
exactly T), the tie of negative entries and listings to the directory's change attribute (here each cached item
expires on its own, with the same bound T), write-behind (NFS may hold written pages until close or fsync: here
others see written bytes at once once their attribute cache expires), stale file handles (ESTALE), locks,
``noac``/``actimeo`` per file type, server reboots and network partitions. A file opened by name always reaches the
current file (as NFS retries a lookup that meets a stale handle), and a file already open reads the current bytes.

The kernel is told to cache nothing itself (entry, attribute and negative timeouts 0): every lookup reaches this
daemon, whose caches are the only ones, so T is exact. ``python -m jobctl.cachedfs ROOT MOUNTPOINT --cache 30``
serves one view in the foreground; :class:`CachedView` starts and stops one from Python. Needs Linux, /dev/fuse,
libfuse 3 (Debian: ``fuse3``) and the ``mfusepy`` package (the dev extra). Imports nothing from the backends.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

READY = "cachedfs: ready"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
_STAT_KEYS = ("st_mode", "st_nlink", "st_uid", "st_gid", "st_size", "st_ino", "st_dev", "st_blocks")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min)?\s*$")


class ViewError(RuntimeError):
    """A view could not be mounted (no FUSE here, no libfuse 3, no mfusepy): the message says which and the fix."""


def parse_duration(text: str | float) -> float:
    """``30s``, ``30``, ``1.5s``, ``500ms``, ``1m`` -> seconds; ValueError naming the accepted forms."""
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        match = _DURATION.match(text)
        if not match:
            raise ValueError(f"{text!r} is not a duration; write e.g. 30s, 0.5s, 500ms, 1m or 0 (no cache)")
        number, unit = float(match.group(1)), match.group(2) or "s"
        seconds = number * {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0}[unit]
    if seconds < 0:
        raise ValueError(f"{text!r}: a cache time cannot be negative")
    return seconds


# The caches (pure: no FUSE, testable alone) ---------------------------------------------------------------------


class ClientCache:
    """What one NFS client remembers: attributes or "no such name" per path, and listings, each for ``seconds``."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.clock = clock
        self._attrs: dict[str, tuple[float, os.stat_result | None]] = {}
        self._listings: dict[str, tuple[float, list[str]]] = {}

    def stat(self, path: str, fetch: Callable[[], os.stat_result]) -> os.stat_result | None:
        """The cached attributes (None: the cached "not found"), fetched afresh once they are T old."""
        now = self.clock()
        cached = self._attrs.get(path)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            value: os.stat_result | None = fetch()
        except FileNotFoundError:
            value = None
        if self.seconds > 0:
            self._attrs[path] = (now + self.seconds, value)
        return value

    def listing(self, path: str, fetch: Callable[[], list[str]]) -> list[str]:
        now = self.clock()
        cached = self._listings.get(path)
        if cached is not None and cached[0] > now:
            return cached[1]
        names = fetch()
        if self.seconds > 0:
            self._listings[path] = (now + self.seconds, names)
        return names

    def forget(self, path: str) -> None:
        """This client changed ``path`` itself: its attributes and its parent's listing are known to be stale."""
        self._attrs.pop(path, None)
        self._listings.pop(path, None)
        self._listings.pop(os.path.dirname(path) or "/", None)

    def forget_attrs(self, path: str) -> None:
        """Close-to-open: ``open`` revalidates the file's attributes (not its parent's listing)."""
        self._attrs.pop(path, None)


# The FUSE passthrough ---------------------------------------------------------------------------------------------


def _mfusepy() -> Any:
    """mfusepy, loaded on first use so that importing this module needs no FUSE (it loads libfuse on import)."""
    try:
        import mfusepy
    except ImportError as exc:
        raise ViewError(f"cannot load mfusepy ({exc}); install the dev extra (pip install -e '.[dev]')") from exc
    except OSError as exc:  # mfusepy raises EnvironmentError when it finds no libfuse
        raise ViewError(f"cannot load libfuse ({exc}); install it (Debian: apt-get install fuse3)") from exc
    return mfusepy


class CachingPassthrough:
    """The FUSE operations of one view. mfusepy sets up only the operations a class defines and takes an OSError
    with an errno as the answer, so no base class of its is needed (importing this module loads no libfuse)."""

    use_ns = True

    def __init__(self, root: str, cache: ClientCache, ready: Callable[[], None]) -> None:
        self.root = root
        self.cache = cache
        self.ready = ready

    def real(self, path: str) -> str:
        return self.root + path if path != "/" else self.root

    def init_with_config(self, conn: Any, config: Any) -> None:
        if config is not None:
            # The kernel caches nothing: every lookup and getattr reaches ClientCache, whose T is exact.
            config.entry_timeout = config.attr_timeout = config.negative_timeout = 0.0
            config.hard_remove = 1  # no .fuse_hidden files in the shared directory for other views to list
        self.ready()

    def getattr(self, path: str | None, fh: int | None = None) -> dict[str, Any]:
        if path is None:  # an open file already unlinked: only its handle is left
            st: os.stat_result | None = os.fstat(fh) if fh is not None else None
        else:
            st = self.cache.stat(path, lambda: os.lstat(self.real(path)))
        if st is None:
            raise _error(errno.ENOENT)
        attrs = {key: getattr(st, key) for key in _STAT_KEYS}
        attrs.update(st_atime=st.st_atime_ns, st_mtime=st.st_mtime_ns, st_ctime=st.st_ctime_ns)
        return attrs

    def access(self, path: str, amode: int) -> int:
        self.getattr(path)  # a cached "not found" holds here too
        if not os.access(self.real(path), amode):
            raise _error(errno.EACCES)
        return 0

    def readdir(self, path: str, fh: int) -> list[str]:
        return [".", "..", *self.cache.listing(path, lambda: sorted(os.listdir(self.real(path))))]

    def readlink(self, path: str) -> str:
        return os.readlink(self.real(path))

    def statfs(self, path: str) -> dict[str, int]:
        sv = os.statvfs(self.real(path))
        keys = ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree", "f_files", "f_flag")
        return {key: getattr(sv, key) for key in (*keys, "f_frsize", "f_namemax")}

    # files: close-to-open -------------------------------------------------------------------------------

    def open(self, path: str, flags: int) -> int:
        self.cache.forget_attrs(path)
        fd = os.open(self.real(path), flags)
        if flags & (os.O_TRUNC | os.O_CREAT):
            self.cache.forget(path)
        return fd

    def create(self, path: str, mode: int, flags: int = os.O_WRONLY) -> int:
        fd = os.open(self.real(path), flags | os.O_CREAT, mode)
        self.cache.forget(path)
        return fd

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        return os.pread(fh, size, offset)

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        written = os.pwrite(fh, data, offset)
        if path:
            self.cache.forget_attrs(path)
        return written

    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        os.truncate(self.real(path), length)
        self.cache.forget_attrs(path)
        return 0

    def flush(self, path: str, fh: int) -> int:
        return 0  # writes went through already

    def fsync(self, path: str, datasync: int, fh: int) -> int:
        (os.fdatasync if datasync else os.fsync)(fh)
        return 0

    def fsyncdir(self, path: str, datasync: int, fh: int) -> int:
        fd = os.open(self.real(path), os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return 0

    def release(self, path: str, fh: int) -> int:
        os.close(fh)
        return 0

    # names: decided by the real directory, remembered by this view --------------------------------------

    def mkdir(self, path: str, mode: int) -> int:
        try:
            os.mkdir(self.real(path), mode)
        finally:
            self.cache.forget(path)  # EEXIST too: this client now knows the name exists
        return 0

    def rmdir(self, path: str) -> int:
        os.rmdir(self.real(path))
        self.cache.forget(path)
        return 0

    def unlink(self, path: str) -> int:
        os.unlink(self.real(path))
        self.cache.forget(path)
        return 0

    def rename(self, old: str, new: str) -> int:
        os.rename(self.real(old), self.real(new))
        self.cache.forget(old)
        self.cache.forget(new)
        return 0

    def symlink(self, target: str, source: str) -> int:
        os.symlink(source, self.real(target))
        self.cache.forget(target)
        return 0

    def link(self, target: str, source: str) -> int:
        os.link(self.real(source), self.real(target))
        self.cache.forget(target)
        return 0

    def chmod(self, path: str, mode: int) -> int:
        os.chmod(self.real(path), mode)
        self.cache.forget_attrs(path)
        return 0

    def chown(self, path: str, uid: int, gid: int) -> int:
        os.chown(self.real(path), uid, gid)
        self.cache.forget_attrs(path)
        return 0

    def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
        os.utime(self.real(path), ns=times) if times else os.utime(self.real(path))
        self.cache.forget_attrs(path)
        return 0


def _error(code: int) -> OSError:
    return OSError(code, os.strerror(code))


def serve(root: Path, mountpoint: Path, seconds: float, read_only: bool = False) -> None:
    """Mount the view and serve it in this process until it is unmounted or gets SIGTERM (``read_only``: as an
    eval pod's read-only mount, every write is refused with EROFS by the kernel)."""
    mfusepy = _mfusepy()

    def ready() -> None:
        print(READY, flush=True)

    ops = CachingPassthrough(str(root.resolve()), ClientCache(seconds), ready)
    # One thread: the caches need no lock, and a view serves one pod's few processes.
    options: dict[str, Any] = {"fsname": f"cachedfs:{root}", "subtype": "cachedfs"}
    if read_only:
        options["ro"] = True
    mfusepy.FUSE(ops, str(mountpoint), foreground=True, nothreads=True, **options)


# Starting and stopping a view ------------------------------------------------------------------------------------


def is_mounted(mountpoint: Path) -> bool:
    target = str(mountpoint.resolve())
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return False
    return any(line.split()[4] == target for line in lines if len(line.split()) > 4)


def unmount(mountpoint: Path) -> None:
    """Detach a view (lazily: processes still inside finish with ENOTCONN once its daemon is gone)."""
    if not is_mounted(mountpoint):
        return
    for argv in (["fusermount3", "-u", "-z", str(mountpoint)], ["umount", "-l", str(mountpoint)]):
        with contextlib.suppress(OSError):
            if subprocess.run(argv, capture_output=True, check=False).returncode == 0:
                return


class CachedView:
    """One view: ``root`` seen at ``mountpoint`` with ``seconds`` of caching, served by its own daemon process."""

    def __init__(
        self, root: Path, mountpoint: Path, seconds: float, log: Path | None = None, read_only: bool = False
    ) -> None:
        self.root = Path(root)
        self.read_only = read_only
        self.mountpoint = Path(mountpoint)
        self.seconds = seconds
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> CachedView:
        """Mount and return once the kernel has handshaken with the daemon (ViewError with its output if not)."""
        if not Path("/dev/fuse").exists():
            raise ViewError(
                "/dev/fuse does not exist: this machine or container has no FUSE (modprobe fuse, or "
                "run the container with --device /dev/fuse --cap-add SYS_ADMIN)"
            )
        unmount(self.mountpoint)  # a view left by a daemon that was killed
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        argv = [
            sys.executable,
            "-m",
            "jobctl.cachedfs",
            str(self.root),
            str(self.mountpoint),
            "--cache",
            str(self.seconds),
            *(["--read-only"] if self.read_only else []),
        ]
        err = self.log.open("ab") if self.log else subprocess.PIPE
        try:
            self.proc = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True
            )
        finally:
            if self.log and not isinstance(err, int):
                err.close()
        line = self._first_line(START_TIMEOUT)
        if line != READY:
            why = self._why(line)
            self.stop()
            raise ViewError(f"cannot mount a caching view of {self.root} at {self.mountpoint}: {why}")
        return self

    def _first_line(self, timeout: float) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        return self.proc.stdout.readline().decode(errors="replace").strip() if ready else ""

    def _why(self, line: str) -> str:
        if self.proc is None:
            return "no daemon"
        try:
            self.proc.wait(STOP_TIMEOUT)  # it closed its output: it is exiting
        except subprocess.TimeoutExpired:
            return f"the daemon did not answer within {START_TIMEOUT:g} s"
        text = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
        if self.log:
            text = self.log.read_text(errors="replace")
        said = [line, *text.strip().splitlines()[-3:]]  # its own one-line error comes last
        return " ".join(part.strip() for part in said if part.strip()) or f"the daemon exited {self.proc.returncode}"

    def stop(self) -> None:
        """Unmount and end the daemon (SIGTERM unmounts; SIGKILL and a lazy unmount if it does not end)."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc is not None and proc.stdout:
            proc.stdout.close()
        if proc is not None and proc.stderr:
            proc.stderr.close()
        unmount(self.mountpoint)

    def __enter__(self) -> CachedView:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobctl.cachedfs", description=__doc__.split("\n")[0])
    parser.add_argument("root", type=Path, help="the real directory (the shared volume)")
    parser.add_argument("mountpoint", type=Path, help="where this view appears (an empty directory)")
    parser.add_argument("--cache", default="30s", help="cache time T (actimeo=T, lookupcache=all); default 30s")
    parser.add_argument("--read-only", action="store_true", help="refuse every write (EROFS), as a ro mount")
    args = parser.parse_args(argv)
    try:
        serve(args.root, args.mountpoint, parse_duration(args.cache), args.read_only)
    except (ViewError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
