"""Everyday tools around a job: export (MINDIR/ONNX/AIR), tensorboard and version."""

from __future__ import annotations

import os
import subprocess
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from jobctl import output
from jobctl.backends.base import BackendError
from jobctl.cli.common import (
    BackendName,
    BackendOpt,
    ContextOpt,
    NameArg,
    NamespaceOpt,
    OutputOpt,
    SharedOpt,
    app,
    bad_input,
    cluster_configured,
    fail_cleanly,
    job_name,
    make_backend,
    print_objects,
    resolve_backend,
)  # fmt: skip
from jobctl.output import Format
from jobctl.render_tools import TENSORBOARD_PORT

if TYPE_CHECKING:
    from jobctl.backends.base import Backend
    from jobctl.jobdir import JobDir
    from jobctl.spec import JobSpec

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
    out_dir: Annotated[
        Path | None, typer.Option("--output-dir", "-o", help="local: folder for the file (default: here)")
    ] = None,
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
    backend: BackendOpt = None,
    shared: SharedOpt = None,
) -> None:
    """Export a job's checkpoint for inference (trainer.export: BatchNorm folded, input [1, 3, S, S] float32);
    prints the file's path. On a cluster a one-shot Job `NAME-export` writes it into the job's export/ folder on
    the shared volume."""
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
        if out_dir is not None:
            raise bad_input(
                f"-o {out_dir}: on a cluster the export Job writes into the job's export/ folder on the shared "
                "volume (printed at the end); drop -o, or export locally with --backend local --shared DIR"
            )
        print(export_on_cluster(runner, spec, checkpoint, fmt))
        return
    out_dir = out_dir or Path()
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


def export_on_cluster(runner: Backend, spec: JobSpec, checkpoint: str, fmt: ExportFormat) -> str:
    """The one-shot Job ``<name>-export`` writes the file into the job's export/ on the shared volume."""
    from jobctl.backends.k8s import tools as k8s_tools
    from jobctl.backends.k8s.backend import K8sBackend
    from jobctl.cli.submit import target_version

    assert isinstance(runner, K8sBackend)
    written = k8s_tools.export(runner.api, spec, checkpoint, fmt.value, target_version(runner))
    return f"{written} (in pods; {k8s_tools.on_volume(spec, written)})"


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
    names: Annotated[list[str] | None, typer.Argument(help="jobs to show (default: every local job)")] = None,
    port: Annotated[
        int, typer.Option("--port", min=1, max=65535, help="local port (cluster: of the port-forward)")
    ] = TENSORBOARD_PORT,
    delete: Annotated[bool, typer.Option("--delete", help="cluster: remove the TensorBoard pod of NAME")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="cluster: print the objects, create nothing")] = False,
    out: OutputOpt = Format.yaml,
    namespace: NamespaceOpt = None,
    backend: BackendOpt = None,
    context: ContextOpt = None,
    shared: SharedOpt = None,
) -> None:
    """TensorBoard over jobs' event files (<job dir>/tensorboard). Locally on 127.0.0.1 (Ctrl-C stops it); on a
    cluster a pod and Service in the jobs' namespace, reached with the printed kubectl port-forward line."""
    if resolve_backend(backend, context) is BackendName.k8s:
        tensorboard_on_cluster([job_name(n) for n in names or []], delete, dry_run, out, namespace, context, port)
        return
    if delete or dry_run:
        raise bad_input("--delete and --dry-run are for the cluster form (a pod); locally Ctrl-C stops TensorBoard")
    local_tensorboard(names or [], port, shared)


def tensorboard_on_cluster(
    jobs: list[str],
    delete: bool,
    dry_run: bool,
    out: Format,
    namespace: str | None,
    context: str | None,
    port: int = TENSORBOARD_PORT,
) -> None:
    """Create (or with ``delete`` remove) the TensorBoard Pod and Service of ``jobs``; print how to reach it."""
    from contract import names
    from jobctl.backends.k8s import tools as k8s_tools
    from jobctl.backends.k8s.backend import K8sBackend
    from jobctl.cli.submit import target_version
    from jobctl.render_tools import port_forward_line, render_tensorboard

    if not jobs:
        raise bad_input("jobctl tensorboard on a cluster: name the job(s) to show, e.g. jobctl tensorboard my-job")
    runner = make_backend(BackendName.k8s, namespace, context, None)
    assert isinstance(runner, K8sBackend)
    name = names.tensorboard(jobs[0])
    if delete:
        if not k8s_tools.delete_tensorboard(runner.api, name):
            raise BackendError(f"no TensorBoard pod {name} in namespace {runner.namespace}", exit_code=1)
        output.note(f"deleted pod/{name}, service/{name}, networkpolicy/{name}")
        return
    specs = [runner.load_spec(job) for job in jobs]
    version = target_version(runner)
    if dry_run:
        print_objects(validated(render_tensorboard(specs, version), version), out)
        return
    k8s_tools.start_tensorboard(runner.api, specs, version)
    output.note(f"created pod/{name} and service/{name} in {runner.namespace}; once it runs, reach it with:")
    print(port_forward_line(runner.namespace, name, port))
    output.note(f"then open http://127.0.0.1:{port}/ ; `jobctl tensorboard {jobs[0]} --delete` removes it")


def validated(objects: list[dict[str, Any]], version: str) -> list[dict[str, Any]]:
    """Strict validation against the target version's schemas when kubernetes-validate is installed."""
    try:
        from jobctl.validate import validate_objects
    except ImportError:
        return objects
    validate_objects(objects, version)
    return objects


def local_tensorboard(names: list[str], port: int, shared: str | None) -> None:
    from jobctl.backends.local.backend import LocalBackend
    from jobctl.jobdir import list_job_dirs

    runner = make_backend(BackendName.local, None, None, shared)
    assert isinstance(runner, LocalBackend)
    chosen = [runner.job_dir(job_name(n)) for n in names] or list_job_dirs(runner.shared)
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
