"""The local backend: the rendered Indexed Job as local process groups (no cluster).

`submit` writes the job directory and starts a detached local Job controller (jobctl.backends.local.controller)
that runs each index of the rendered Job as a local "pod" (jobctl.backends.local.pods) and replaces failed ones
under the Job's rules. The other commands read what it records.

Everything the other commands need lives in ``<job_dir>/local/``: ``state.json`` (written only by the controller),
``controller.pid``, ``pod-<i>.log`` (each pod's stdout, appended across replacements), ``volumes/`` (ConfigMap
files and emptyDirs) and ``work/pod-<i>`` (each pod's working directory).

``submit --shared-cache T`` (``LocalBackend(shared, shared_cache=T)``) gives each pod its own NFS-like caching view
of the shared directory (jobctl.cachedfs), mounted by the controller for the pod's life; submit first mounts a probe
view, so a machine without FUSE refuses the job (exit 2) before anything is written.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from contract.env import EXIT_BAD_INPUT
from contract.files import utc_timestamp
from contract.group import Group
from contract.imagefolder import class_dirs, count_images, too_few_classes
from contract.lines import format_prefix, rank_label
from contract.metrics import read_history
from contract.rendezvous import Rendezvous
from contract.restarts import RestartRecord, restart_record
from jobctl.backends.base import (
    COMPLETE,
    FAILED,
    FINISHED,
    PENDING,
    RUNNING,
    UNKNOWN,
    Backend,
    BackendError,
    JobInfo,
    JobNotFound,
    PodInfo,
    WaitTimeout,
    add_history_summary,
    keep_line,
    last_json_line,
    latest_progress,
    spec_from_yaml,
)
from jobctl.backends.local.controller import process_alive
from jobctl.backends.local.faults import Fault, read_fault, write_fault
from jobctl.backends.local.pods import (
    MAX_GRACE_SECONDS,
    POLL_SECONDS,
    PROGRESS_KEYS,
    find_kind,
    plan_pods,
    training_job,
    view_mountpoint,
)
from jobctl.backends.local.procs import job_groups, stop_groups
from jobctl.cachedfs import CachedView, ViewError, unmount
from jobctl.jobdir import JobDir, list_job_dirs, tail_lines, write_atomic
from jobctl.limits import check_exec_size
from jobctl.platforms import platform_info
from jobctl.spec import SpecError, train_config
from jobctl.spec.resume import check_resumable

if TYPE_CHECKING:
    from jobctl.spec import JobSpec


class LocalBackend(Backend):
    name = "local"

    def __init__(self, shared: str | Path, shared_cache: float = 0.0) -> None:
        self.shared = Path(shared).resolve()
        self.shared_cache = shared_cache  # submit: seconds of NFS-like caching per pod's view (jobctl.cachedfs)

    def job_dir(self, name: str) -> JobDir:
        return JobDir.of(self.shared, name)

    def read_state(self, job_dir: JobDir) -> dict[str, Any] | None:
        try:
            state = json.loads((job_dir.local_dir / "state.json").read_text())
        except (OSError, ValueError):
            return None
        return state if isinstance(state, dict) else None

    def controller_pid(self, job_dir: JobDir) -> int | None:
        for name in ("controller.pid", "supervisor.pid"):  # the latter: job directories of jobctl before 0.2
            with contextlib.suppress(OSError, ValueError):
                return int((job_dir.local_dir / name).read_text())
        return None

    def is_active(self, job_dir: JobDir) -> bool:
        pid = self.controller_pid(job_dir)
        return pid is not None and process_alive(pid, job_dir.root)

    def phase(self, job_dir: JobDir) -> str:
        state = self.read_state(job_dir)
        if state is None:
            return PENDING if self.is_active(job_dir) else UNKNOWN
        if state["phase"] in FINISHED or self.is_active(job_dir):
            return str(state["phase"])
        # The controller died without a final state: its pods may still run (orphaned), or have ended since.
        if job_groups(job_dir.root, state.get("pods", [])):
            return RUNNING
        return _outcome_of_orphans(job_dir, state) or UNKNOWN

    def require(self, name: str) -> JobDir:
        job_dir = self.job_dir(name)
        if not job_dir.local_dir.is_dir() and job_dir.exists():
            kept = len(job_dir.checkpoints())
            raise JobNotFound(
                f"job {name} was deleted; its job directory stays at {job_dir.root} with {kept} checkpoint(s) in "
                f"{job_dir.ckpt_dir.name}/ (jobctl submit --resume with the same name continues from them; remove "
                "the folder to forget the job)"
            )
        if not job_dir.local_dir.is_dir():
            raise JobNotFound(
                f"no local job named {name!r} under {self.shared}/jobs; check the name and --shared "
                "(jobctl list --backend local --shared DIR shows the jobs there)"
            )
        return job_dir

    # submit / delete -----------------------------------------------------------------------------------

    def submit(self, spec: JobSpec, objects: list[dict[str, Any]], *, resume: bool, replace: bool) -> str:
        with self._claim(spec.name):
            return self._submit(spec, objects, resume=resume, replace=replace)

    @contextlib.contextmanager
    def _claim(self, name: str) -> Iterator[None]:
        """Exactly one submit of a name at a time: an exclusive lock on ``<shared>/jobs/.<name>.submit`` held from
        the checks until the controller's pid is recorded. The file is never removed (a lock on a removed file
        would not exclude one on its successor), and a lock dies with its process, so a crash frees the name."""
        jobs = self.shared / "jobs"
        jobs.mkdir(parents=True, exist_ok=True)
        with (jobs / f".{name}.submit").open("a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise BackendError(
                    f"name: another `jobctl submit` of {name!r} is creating that job under {self.shared} at this "
                    "moment, and it won the name; this one started nothing. Choose another --name, or "
                    f"`jobctl status {name} --backend local --shared {self.shared}`",
                    exit_code=2,
                ) from None
            yield

    def _submit(self, spec: JobSpec, objects: list[dict[str, Any]], *, resume: bool, replace: bool) -> str:
        job_dir = self.job_dir(spec.name)
        if replace:
            if job_dir.local_dir.is_dir():
                self.delete(spec.name)
            job_dir.remove()
        elif self.is_active(job_dir):
            raise BackendError(
                f"a local job named {spec.name!r} is still running; pick another --name, "
                f"`jobctl delete {spec.name} --backend local` it, or pass --replace",
                exit_code=2,
            )
        if job_dir.has_checkpoints() and not resume:
            raise BackendError(
                f"name: the job directory {job_dir.root} already holds checkpoints; pass --resume to continue "
                "from them, --replace to start over (deletes them), or choose another --name",
                exit_code=2,
            )
        # What the pods would refuse seconds later, refused now, before anything of this submission is written.
        if resume and job_dir.has_checkpoints():
            _check_resumable(job_dir, spec)
        _check_batch_fits(spec)
        if self.shared_cache > 0:
            _check_views(self.shared_cache)
        config_map = _config_map_data(objects)
        existed = job_dir.exists()
        try:
            pid = self._start(job_dir, objects, config_map)
        except BaseException:  # nothing half written: a failed submit leaves no job behind
            shutil.rmtree(job_dir.local_dir, ignore_errors=True)
            if not existed:
                job_dir.remove()
            raise
        flags = f"--backend local --shared {self.shared}"
        return (
            f"job {spec.name} started locally (controller pid {pid}, job directory {job_dir.root}); follow it "
            f"with `jobctl logs {spec.name} -f {flags}` or `jobctl status {spec.name} {flags}`"
        )

    def _start(self, job_dir: JobDir, objects: list[dict[str, Any]], config_map: dict[str, str]) -> int:
        """Write the job directory and start the detached controller; returns its pid."""
        shutil.rmtree(job_dir.rendezvous_dir, ignore_errors=True)  # belongs to one submission (INTERFACES.md)
        job_dir.create()
        write_atomic(job_dir.spec_file, config_map.get("spec.yaml", ""))
        write_atomic(job_dir.train_file, config_map.get("train.yaml", ""))
        shutil.rmtree(job_dir.local_dir, ignore_errors=True)
        job_dir.local_dir.mkdir(parents=True)
        training_job(objects)["metadata"]["uid"] = str(uuid.uuid4())  # as the API server assigns one on create
        meta = {
            "objects": objects,
            "shared": str(self.shared),
            "shared_cache": self.shared_cache,
            "submitted": utc_timestamp(),
        }
        write_atomic(job_dir.local_dir / "job.json", json.dumps(meta, indent=1))
        # Fail here, not in the detached process, on unmappable pods and on an exec Linux would refuse (E2BIG).
        for plan in plan_pods(objects, job_dir, self.shared, 0):
            too_big = check_exec_size(plan.argv, plan.process_env(), f"pod {plan.name}")
            if too_big:
                raise BackendError(too_big, exit_code=2)
        with (job_dir.local_dir / "controller.log").open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "jobctl.backends.local.controller", "run", str(job_dir.root)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # survives the CLI and its terminal
                close_fds=True,
            )
        write_atomic(job_dir.local_dir / "controller.pid", f"{proc.pid}\n")
        return proc.pid

    def delete(self, name: str) -> None:
        job_dir = self.require(name)
        pid = self.controller_pid(job_dir)
        if pid is not None and process_alive(pid, job_dir.root):
            os.kill(pid, signal.SIGTERM)  # the controller stops its pods: SIGTERM, then SIGKILL after the grace
            deadline = time.monotonic() + MAX_GRACE_SECONDS + 10
            while process_alive(pid, job_dir.root) and time.monotonic() < deadline:
                time.sleep(POLL_SECONDS)
            if process_alive(pid, job_dir.root):
                os.killpg(pid, signal.SIGKILL)
        # Pods whose controller died earlier still run in their own groups: stop those the same way, and only
        # groups that are still this job's (a pid in a stale state.json may belong to anyone by now).
        meta = _read_json(job_dir.local_dir / "job.json")
        stop_groups(job_dir.root, (self.read_state(job_dir) or {}).get("pods", []), _grace(meta))
        for pod in (self.read_state(job_dir) or {}).get("pods", []):
            unmount(view_mountpoint(job_dir, int(pod["index"])))  # a view its dead controller left mounted
        shutil.rmtree(job_dir.local_dir, ignore_errors=True)

    # status / list -------------------------------------------------------------------------------------

    def status(self, name: str) -> JobInfo:
        return self._info(self.require(name))

    def list_jobs(self) -> list[JobInfo]:
        return [self._info(jd, brief=True) for jd in list_job_dirs(self.shared) if jd.local_dir.is_dir()]

    def _info(self, job_dir: JobDir, brief: bool = False) -> JobInfo:
        state = self.read_state(job_dir) or {}
        meta = _read_json(job_dir.local_dir / "job.json")
        job = training_job(meta["objects"]) if meta else {}
        spec = self._stored_spec(job_dir)
        pods = [
            PodInfo(
                index=p["index"],
                name=p["name"],
                phase=p["phase"],
                restarts=p["restarts"],
                node="localhost",
                exit_code=p["exit_codes"][-1] if p["exit_codes"] else None,
                reason=_held(p, job_dir.name) or p.get("message"),
            )
            for p in state.get("pods", [])
        ]
        phase = self.phase(job_dir)
        record = _restart_record(job_dir, job, running=phase not in FINISHED)
        info = JobInfo(
            name=job_dir.name,
            namespace="local",
            phase=phase,
            platform=spec.platform if spec is not None else "",
            devices=spec.devices if spec is not None else 0,
            pods_total=int(job.get("spec", {}).get("completions", 0)) if job else 0,
            restarts=record.count if record else sum(p.restarts for p in pods),
            max_restarts=spec.max_restarts if spec is not None else None,
            last_restart=record.last if record else None,
            created=meta.get("submitted") if meta else None,
            pods=pods,
        )
        if brief:
            return info
        # The trainer's status.json is on this machine (unlike on a cluster): it beats parsing a log tail, once
        # this submission's trainer has written it (after a resume the file is the previous run's until then).
        status = _fresh_status(job_dir, meta.get("submitted") if meta else None)
        if status is not None and status.get("total_steps"):
            info.progress = {key: status.get(key) for key in PROGRESS_KEYS}
        else:
            lines = [line for i in range(len(pods)) for line in tail_lines(job_dir.local_dir / f"pod-{i}.log")]
            info.progress = latest_progress(lines)
        newest = job_dir.newest_checkpoint()
        info.checkpoint = str(newest.path) if newest else None
        group = Group.from_record((status or {}).get("group"))  # elastic: the group training now, as the trainer says
        info.group = group.to_record() if group is not None else None
        best = (status or {}).get("best") or {}
        add_history_summary(info, read_history(job_dir.metrics_file), best.get("checkpoint"))
        orphaned = state.get("phase") not in FINISHED and not self.is_active(job_dir)
        if phase == UNKNOWN:
            info.explanation = (
                f"the local controller is gone without a final state (see {job_dir.local_dir}/controller.log); "
                "`jobctl delete` it and resubmit"
            )
        elif orphaned and phase != PENDING:
            now = "its pods still run; none is replaced if it fails" if phase == RUNNING else "the outcome is"
            if phase != RUNNING:
                now += f" what this run's status.json says: {phase}"
            info.explanation = f"the local controller is gone (see {job_dir.local_dir}/controller.log); {now}"
        elif phase == FAILED:
            info.explanation = f"{state.get('reason')}: {state.get('message')}"
        elif phase == PENDING:
            info.explanation = "the controller is starting the pods"
        elif phase == RUNNING and info.progress is None and status is None and job_dir.read_status() is not None:
            info.explanation = "resuming: the new attempt has not reported yet (the previous run's progress is hidden)"
        held = [f"pod {p['index']}: {_held(p, job_dir.name)}" for p in state.get("pods", []) if _held(p, job_dir.name)]
        if held and phase == RUNNING:
            info.explanation = "; ".join(filter(None, [*held, info.explanation]))
        return info

    # fault ---------------------------------------------------------------------------------------------

    def fault(self, name: str, index: int, *, down: bool, seconds: float | None) -> str:
        """`jobctl fault`: ask the controller to take pod ``index`` down as a lost node (``down``), for ``seconds``
        or until asked to bring it up (``down`` False). Every refusal is exit 2, before anything is written."""
        try:
            job_dir = self.require(name)
        except JobNotFound as exc:
            raise BackendError(exc.message, exit_code=2) from None
        count = int(training_job(_read_json(job_dir.local_dir / "job.json")["objects"])["spec"]["completions"])
        if not 0 <= index < count:
            raise BackendError(f"--pod {index}: job {name} has pods 0-{count - 1}; pass one of them", exit_code=2)
        phase = self.phase(job_dir)
        if phase in FINISHED or not self.is_active(job_dir):
            why = f"is {phase}" if phase in FINISHED else "has no local controller running (it is gone)"
            raise BackendError(
                f"job {name} {why}: no pod of it can be taken down or brought up; "
                f"`jobctl status {name} --backend local --shared {self.shared}` shows it",
                exit_code=2,
            )
        pod = f"pod {index} of job {name}"
        if down:
            fault = Fault.down(index, seconds)
            write_fault(job_dir, fault)
            return f"{pod}: {fault.describe(name)} (its processes killed at once, as with a lost node)"
        request = read_fault(job_dir, index)
        pods = (self.read_state(job_dir) or {}).get("pods", [])
        if request is None or (request.over() and not any(p.get("fault") for p in pods if p["index"] == index)):
            raise BackendError(f"--up: {pod} is not down (no `jobctl fault --down` holds it)", exit_code=2)
        write_fault(job_dir, request.up())
        return f"{pod}: up; its replacement starts now"

    # logs / wait ---------------------------------------------------------------------------------------

    def logs(self, name: str, out: TextIO, *, follow: bool, rank: int | None, since: int | None = None) -> None:
        job_dir = self.require(name)
        if since is not None:  # the pod logs here are plain lines: no time to filter by, and none is guessed
            raise BackendError(
                "--since: local pod logs carry no time per line, so jobctl cannot tell which lines are recent; "
                "use --tail N (the last N lines) instead",
                exit_code=EXIT_BAD_INPUT,
            )
        count = int(training_job(_read_json(job_dir.local_dir / "job.json")["objects"])["spec"]["completions"])
        paths = [job_dir.local_dir / f"pod-{i}.log" for i in range(count)]
        prefix = ""
        if rank is not None and job_dir.rank_log(rank).is_file():
            # The pods' merged view holds rank 0's progress lines only; the launcher's file of the rank holds all.
            paths, prefix = [job_dir.rank_log(rank)], format_prefix(rank_label(rank))
        if not follow:
            for path in paths:
                for line in _read_lines(path):
                    if prefix or keep_line(line, rank):
                        out.write(prefix + line + "\n")
            return
        positions = dict.fromkeys(paths, 0)
        partial = dict.fromkeys(paths, "")
        while True:
            finished = self.phase(job_dir) in (*FINISHED, UNKNOWN) or not job_dir.local_dir.is_dir()
            for path in paths:
                try:
                    with path.open("rb") as handle:
                        handle.seek(positions[path])
                        chunk = handle.read()
                        positions[path] = handle.tell()
                except OSError:
                    continue
                text = partial[path] + chunk.decode("utf-8", "replace")
                *complete, partial[path] = text.split("\n")
                for line in complete:
                    if prefix or keep_line(line, rank):
                        out.write(prefix + line + "\n")
            out.flush()
            if finished:  # one last read after the final state, so nothing written before it is lost
                return
            time.sleep(0.5)

    def wait(self, name: str, *, for_phase: str | None, timeout: float | None) -> str:
        job_dir = self.require(name)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            phase = self.phase(job_dir)
            if phase in FINISHED or phase == UNKNOWN:
                return phase
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"job {name} is still {phase} after {timeout:g} s")
            time.sleep(0.5)

    # eval ----------------------------------------------------------------------------------------------

    def _stored_spec(self, job_dir: JobDir) -> JobSpec | None:
        """The job's spec.yaml (what status shows of the spec), None when it cannot be read."""
        try:
            return self.load_spec(job_dir.name)
        except BackendError:
            return None

    def load_spec(self, name: str) -> JobSpec:
        spec_file = self.job_dir(name).spec_file
        try:
            text = spec_file.read_text()
        except OSError:
            raise JobNotFound(
                f"no job directory with a spec.yaml for {name!r} under {self.shared}/jobs; check the name and --shared"
            ) from None
        return spec_from_yaml(text, str(spec_file))

    def history(self, name: str) -> list[dict[str, Any]]:
        job_dir = self.job_dir(name)  # kept after `jobctl delete`: the history is still there
        if not job_dir.exists():
            raise JobNotFound(f"no job directory for {name!r} under {self.shared}/jobs; check the name and --shared")
        return read_history(job_dir.metrics_file)

    def evaluate(self, spec: JobSpec, checkpoint: str, data: str | None) -> dict[str, Any]:
        job_dir = self.job_dir(spec.name)
        ckpt = _resolve_checkpoint(job_dir, checkpoint)
        data_dir = data or _local_val_dir(spec)
        if not data_dir or not Path(data_dir).is_dir():
            raise BackendError(
                f"--data: {data_dir!r} is not a directory; pass the validation set (class folders) with --data DIR",
                exit_code=2,
            )
        platform = platform_info(spec.platform).trainer_platform
        argv = [sys.executable, "-m", "trainer.evaluate", "--data_dir", str(data_dir), "--platform", platform]
        # This machine's cores, not a cluster node's: MindSpore refuses more data workers than CPUs.
        workers = min(int(spec.train.get("num_parallel_workers", 8)), os.cpu_count() or 1)
        argv += ["--pretrained", str(ckpt), "--num_parallel_workers", str(workers)]
        argv += ["--output_dir", str(job_dir.eval_dir)]  # eval/<checkpoint stem>.json, as the eval Job writes it
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        for line in proc.stderr.splitlines():
            if line.startswith("skipping "):  # a checkpoint it passed over, and why: the user must know
                print(line, file=sys.stderr)
        result = last_json_line(proc.stdout)
        errors = [line.removeprefix("error: ") for line in proc.stderr.splitlines() if line.startswith("error: ")]
        if proc.returncode == EXIT_BAD_INPUT and errors:  # trainer.evaluate said what is wrong, in one line
            raise BackendError(f"--checkpoint {checkpoint}: {errors[-1]}", exit_code=2)
        if proc.returncode != 0 or result is None:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            raise BackendError(f"trainer.evaluate exited with code {proc.returncode} on {ckpt}:\n{tail}")
        return result


def _held(pod: dict[str, Any], job_name: str) -> str | None:
    """A pod `jobctl fault` holds down, as status shows it ("down (fault) until 23:41:05Z, then replaced")."""
    try:
        return Fault.from_json(pod["fault"]).describe(job_name) if pod.get("fault") else None
    except ValueError:
        return None


def _check_views(seconds: float) -> None:
    """--shared-cache needs FUSE here: mount one probe view now, so a job never starts that its pods cannot run."""
    with tempfile.TemporaryDirectory(prefix="jobctl-view-probe-") as tmp:
        (Path(tmp) / "real").mkdir()
        try:
            CachedView(Path(tmp) / "real", Path(tmp) / "view", seconds).start().stop()
        except ViewError as exc:
            raise BackendError(f"--shared-cache: {exc}; or submit without --shared-cache", exit_code=2) from None


def _config_map_data(objects: list[dict[str, Any]]) -> dict[str, str]:
    for cm in find_kind(objects, "ConfigMap"):
        if "spec.yaml" in cm.get("data", {}):
            return dict(cm["data"])
    raise BackendError("the rendered objects hold no ConfigMap with spec.yaml; this is a jobctl.render bug")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()
    except OSError:
        return []


def _resolve_checkpoint(job_dir: JobDir, checkpoint: str) -> Path:
    if checkpoint == "latest":
        if job_dir.newest_checkpoint() is None:
            raise BackendError(
                f"--checkpoint latest: {job_dir.ckpt_dir} holds no checkpoint yet; wait for the job to save one "
                "(`jobctl status` shows the newest) or pass --checkpoint PATH",
                exit_code=2,
            )
        # The directory, as the eval Job gets it: trainer.evaluate loads the newest checkpoint that reads back
        # whole and sets unreadable ones aside, the same choice resume makes.
        return job_dir.ckpt_dir
    path = Path(checkpoint)
    if not path.is_absolute() and not path.exists():
        path = job_dir.ckpt_dir / checkpoint
    if not path.exists():
        raise BackendError(
            f"--checkpoint: {checkpoint} does not exist; pass latest or a .ckpt or .safetensors file", exit_code=2
        )
    return path


def _restart_record(job_dir: JobDir, job: dict[str, Any], running: bool) -> RestartRecord | None:
    """The group's restarts, as the launchers count them, from this submission's rendezvous directory."""
    run_id = job.get("metadata", {}).get("uid", "") if job else ""
    rendezvous = Rendezvous(job_dir.root, 0, run_id=run_id)
    newest = rendezvous.newest()
    if newest is None:
        return None
    # The newest attempt is the running one until a pod marks it failed: without a marker it is not "lost"
    # (the launchers count a silent attempt as lost only once a newer one exists, and so does this).
    ended = not running or bool(rendezvous.failures(newest))
    return restart_record(rendezvous, newest + 1 if ended else newest)


def _fresh_status(job_dir: JobDir, submitted: str | None) -> dict[str, Any] | None:
    """status.json once this submission's trainer wrote it (ISO 8601 UTC stamps compare as text)."""
    status = job_dir.read_status()
    if status is None or (submitted and str(status.get("updated", "")) < submitted):
        return None
    return status


def _outcome_of_orphans(job_dir: JobDir, state: dict[str, Any]) -> str | None:
    """Complete or Failed as this run's status.json says, once the pods of a dead controller have all ended."""
    status = _fresh_status(job_dir, state.get("started"))
    outcome = {"completed": COMPLETE, "failed": FAILED, "stopped": FAILED}
    return outcome.get(str(status.get("state"))) if status else None


def _grace(meta: dict[str, Any]) -> float:
    """The pods' terminationGracePeriodSeconds, at most MAX_GRACE_SECONDS (as the controller uses it)."""
    try:
        pod = training_job(meta["objects"])["spec"]["template"]["spec"]
        return min(float(pod.get("terminationGracePeriodSeconds", MAX_GRACE_SECONDS)), MAX_GRACE_SECONDS)
    except (KeyError, TypeError, ValueError, BackendError):
        return MAX_GRACE_SECONDS


def _check_batch_fits(spec: JobSpec) -> None:
    """At least two classes (contract.imagefolder), and each rank needs at least one batch of its share of the
    training images (drop_remainder)."""
    if spec.data.host_path is None:
        return
    root = Path(spec.data.host_path) / spec.data.train_subpath
    try:
        images = count_images(root)
        problem = too_few_classes(root, class_dirs(root)) if images else None
    except OSError:
        images, problem = 0, None
    if problem:
        raise BackendError(f"--data: {problem}", exit_code=2)
    if not images:
        return  # no class folders or images: the pods' own check says what is wrong with the directory
    batch = train_config(spec).per_batch_size
    share = -(-images // spec.devices)  # ceil: the trainer's sharding
    if share < batch:
        raise BackendError(
            f"train.per_batch_size: {batch} is larger than each rank's share of {root} ({images} images over "
            f"{spec.devices} device(s) = {share} per rank); lower per_batch_size to at most {max(share, 1)} "
            "(--set per_batch_size=N), use fewer devices or add images",
            exit_code=2,
        )


def _check_resumable(job_dir: JobDir, spec: JobSpec) -> None:
    """--resume continues the job's checkpoints: what they were trained for must not change (jobctl.spec.resume)."""
    try:
        previous = spec_from_yaml(job_dir.spec_file.read_text(), str(job_dir.spec_file))
    except (OSError, ValueError, BackendError):
        return  # no readable record: the trainer checks the checkpoint itself
    try:
        check_resumable(previous, spec)
    except SpecError as exc:
        raise BackendError(str(exc), exit_code=2) from None


def _local_val_dir(spec: JobSpec) -> str | None:
    """The job's validation directory on this machine (the data volume is a host path locally)."""
    if spec.data.host_path is None or spec.data.val_subpath is None:
        return None
    return str(Path(spec.data.host_path) / spec.data.val_subpath)
