"""Everyday tools around a job: export (MINDIR/ONNX/AIR), tensorboard and version."""

from __future__ import annotations

import os
import subprocess
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from jobctl.backends.base import BackendError
from jobctl.cli.common import (
    BackendName,
    BackendOpt,
    ContextOpt,
    NameArg,
    NamespaceOpt,
    SharedOpt,
    app,
    bad_input,
    cluster_configured,
    fail_cleanly,
    job_name,
    make_backend,
    resolve_backend,
)  # fmt: skip

if TYPE_CHECKING:
    from jobctl.jobdir import JobDir

TENSORBOARD_PORT = 6006  # TensorBoard's own default
VERSION_TIMEOUT_SECONDS = 5  # `jobctl version` waits no longer for a server that does not answer


class ExportFormat(StrEnum):
    MINDIR = "MINDIR"
    ONNX = "ONNX"
    AIR = "AIR"


@app.command()
@fail_cleanly
def export(
    name: NameArg,
    fmt: Annotated[ExportFormat, typer.Option("--format", help="MINDIR, ONNX, or AIR (Ascend only)")] = (
        ExportFormat.MINDIR
    ),
    checkpoint: Annotated[str, typer.Option("--checkpoint", help="latest, or a checkpoint file")] = "latest",
    out_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="folder for the file (default: here)")] = Path(),
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
    backend: BackendOpt = None,
    shared: SharedOpt = None,
) -> None:
    """Export a job's checkpoint for inference (trainer.export: BatchNorm folded, input [1, 3, S, S] float32);
    prints the file's path."""
    from jobctl.backends.local.backend import LocalBackend
    from jobctl.platforms import platform_info

    runner = make_backend(backend, namespace, context, shared)
    spec = runner.load_spec(name)
    if fmt is ExportFormat.AIR and spec.platform != "ascend":
        raise bad_input(
            f"--format AIR: job {name} runs on {spec.platform}; AIR is Ascend's offline-model format and MindSpore "
            "writes it only on an Ascend device; use MINDIR or ONNX"
        )
    if not isinstance(runner, LocalBackend):
        raise BackendError(
            "jobctl export runs locally over the job's folder; on a cluster, run it where the shared volume is "
            "mounted (--backend local --shared DIR) — a one-shot export Job is not built yet",
            exit_code=2,
        )
    ckpt = export_checkpoint(runner.job_dir(name), checkpoint)
    if out_dir.exists() and not out_dir.is_dir():
        raise bad_input(f"-o {out_dir}: not a folder; pass the folder the exported file goes into")
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir.resolve() / f"{name}-{ckpt.stem}"
    argv = [sys.executable, "-m", "trainer.export", "--device_target", platform_info(spec.platform).trainer_platform]
    argv += ["--ckpt_file", str(ckpt), "--file_format", fmt.value, "--file_name", str(target)]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, env={**os.environ, "GLOG_v": "3"})
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        why = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise BackendError(f"export of {ckpt.name} failed (trainer.export exit {proc.returncode}): {why}")
    print(lines[-1])


def export_checkpoint(job_dir: JobDir, checkpoint: str) -> Path:
    """``latest``: the job's newest complete step checkpoint; else a file (relative to the job's ckpt/ if not here)."""
    if checkpoint == "latest":
        newest = job_dir.newest_checkpoint()
        if newest is None:
            raise bad_input(f"--checkpoint latest: {job_dir.ckpt_dir} holds no complete checkpoint yet")
        return newest.path
    path = Path(checkpoint)
    if not path.is_absolute() and not path.exists():
        path = job_dir.ckpt_dir / checkpoint
    if not path.is_file():
        raise bad_input(f"--checkpoint: {checkpoint} is not a file; pass latest or a .ckpt file of the job")
    return path


@app.command()
@fail_cleanly
def tensorboard(
    names: Annotated[list[str] | None, typer.Argument(help="jobs to show (default: every job)")] = None,
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="local port")] = TENSORBOARD_PORT,
    backend: BackendOpt = None,
    context: ContextOpt = None,
    shared: SharedOpt = None,
) -> None:
    """TensorBoard over jobs' event files (<job dir>/tensorboard), on 127.0.0.1 only; Ctrl-C stops it."""
    from jobctl.backends.local.backend import LocalBackend
    from jobctl.jobdir import list_job_dirs

    if resolve_backend(backend, context) is not BackendName.local:
        raise bad_input(
            "jobctl tensorboard reads the job folders on this machine; with a cluster, run it where the shared "
            "volume is mounted (--backend local --shared DIR)"
        )
    runner = make_backend(BackendName.local, None, None, shared)
    assert isinstance(runner, LocalBackend)
    chosen = [runner.job_dir(job_name(n)) for n in names or []] or list_job_dirs(runner.shared)
    folders = {jd.root.name: jd.tensorboard_dir for jd in chosen if jd.tensorboard_dir.is_dir()}
    if not folders:
        raise BackendError(
            f"no TensorBoard event files under {runner.shared}/jobs for {' '.join(names or ['any job'])}"
        )
    try:
        import tensorboard as _tb  # noqa: F401
    except ImportError:
        raise BackendError("TensorBoard is not installed here: pip install tensorboard", exit_code=2) from None
    spec = ",".join(f"{job}:{folder}" for job, folder in sorted(folders.items()))
    argv = [sys.executable, "-m", "tensorboard.main", "--logdir_spec", spec, "--host", "127.0.0.1"]
    print(f"TensorBoard for {', '.join(sorted(folders))}: http://127.0.0.1:{port}/ (Ctrl-C stops it)", flush=True)
    raise typer.Exit(subprocess.call([*argv, "--port", str(port)]))


@app.command()
def version() -> None:
    """jobctl's version, the pod contract's, MindSpore's (if installed) and the cluster's (if reachable)."""
    from importlib import metadata

    from contract import CONTRACT_VERSION

    def installed(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    print(f"jobctl: {installed('resnext-jobs')}")
    print(f"contract: {CONTRACT_VERSION}")
    print(f"mindspore: {installed('mindspore')}")
    print(f"kubernetes: {server_version()}")


def server_version() -> str:
    """The API server's version, or why there is none; never fails."""
    if not cluster_configured(None):
        return "no cluster configured"
    try:
        from kubernetes.client import VersionApi

        from jobctl.backends.k8s.api import api_client

        info = VersionApi(api_client(None)).get_code(_request_timeout=VERSION_TIMEOUT_SECONDS)
        return str(info.git_version)
    except BackendError as exc:
        return f"not reachable ({exc.message.splitlines()[0][:120]})"
    except Exception as exc:
        return f"not reachable ({type(exc).__name__})"
