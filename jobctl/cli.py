"""`jobctl`: submit, follow and evaluate ResNeXt training jobs on Kubernetes or locally (a thin typer app).

kubectl habits: `-n/--namespace`, `--context`, `-o table|yaml|json`; `--backend k8s|local` (default k8s, or env
JOBCTL_BACKEND). Errors go to stderr as one paragraph; exit 2 for bad input, 1 for failures.

`--data` names the dataset (a root holding train/ and val/): with the k8s backend a PVC claim name, or an absolute
path = a directory on every node (hostPath); with the local backend a directory on this machine. `--shared` is
the shared volume the same way (k8s: claim or node path; local: a directory, default ./shared).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import sys
import typing
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TypeVar

import typer

from jobctl import output
from jobctl.backends.base import COMPLETE, FAILED, Backend, BackendError
from jobctl.output import Format

if TYPE_CHECKING:  # imported when a command runs: `jobctl --help` stays fast
    from contract.accelerators import Accelerator
    from jobctl.spec import JobSpec

P = ParamSpec("P")
R = TypeVar("R")

app = typer.Typer(
    name="jobctl",
    help="Train ResNeXt with MindSpore on Kubernetes (Ascend/GPU) or locally on CPU.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
ranktable_app = typer.Typer(help="HCCL rank tables for bare-metal Ascend runs.", no_args_is_help=True)
app.add_typer(ranktable_app, name="ranktable")

DEFAULT_SHARED = "./shared"
WAIT_BAR_SECONDS = 2.0  # `jobctl wait`'s bar refresh on a terminal


class BackendName(StrEnum):
    k8s = "k8s"
    local = "local"


class WaitFor(StrEnum):
    complete = "complete"
    failed = "failed"


# Options shared by several commands.
NamespaceOpt = Annotated[str | None, typer.Option("--namespace", "-n", help="namespace (default: the spec's)")]
ContextOpt = Annotated[str | None, typer.Option("--context", help="kubeconfig context")]
BackendOpt = Annotated[BackendName, typer.Option("--backend", envvar="JOBCTL_BACKEND", help="k8s or local")]
SharedOpt = Annotated[
    str | None, typer.Option("--shared", help="shared volume: local dir (default ./shared); k8s: PVC or node path")
]
OutputOpt = Annotated[Format, typer.Option("--output", "-o", help="table, yaml or json")]
KubeVersionOpt = Annotated[
    str | None, typer.Option("--kube-version", help="target Kubernetes version (default: oldest supported)")
]


def fail_cleanly(fn: Callable[P, R]) -> Callable[P, R]:
    """Known errors → one paragraph on stderr and exit 2 (bad input) or 1 (failure); never a traceback."""
    from contract.config import ConfigError
    from contract.ranktable import RankTableError
    from jobctl.spec import SpecError
    from jobctl.validate import ManifestError

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except (SpecError, ConfigError, RankTableError, ManifestError) as exc:
            output.error(str(exc))
            raise typer.Exit(2) from None
        except BackendError as exc:
            output.error(exc.message)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            raise typer.Exit(130) from None

    return wrapper


def bad_input(message: str) -> BackendError:
    return BackendError(message, exit_code=2)


def make_backend(backend: BackendName, namespace: str | None, context: str | None, shared: str | None) -> Backend:
    if backend is BackendName.local:
        from jobctl.backends.local.backend import LocalBackend

        return LocalBackend(shared or DEFAULT_SHARED)
    from jobctl import platforms
    from jobctl.backends.k8s.backend import K8sBackend, api_client, default_namespace

    client = api_client(context)
    return K8sBackend(client, namespace or default_namespace(context, platforms.DEFAULT_NAMESPACE))


def key_values(items: list[str] | None, flag: str, example: str = "NCCL_DEBUG=INFO") -> dict[str, str]:
    values = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise bad_input(f"{flag} {item!r} is not KEY=VALUE; write e.g. {flag} {example}")
        values[key] = value
    return values


def volume_flags(field: str, value: str | None, backend: BackendName, flag: str) -> dict[str, str]:
    """--data/--shared → spec fields: a local directory, a node path (absolute) or a PVC claim name."""
    if value is None:
        return {}
    if backend is BackendName.local:
        path = Path(value).expanduser().resolve()
        if field == "shared":
            path.mkdir(parents=True, exist_ok=True)
        elif not path.is_dir():
            raise bad_input(f"{flag}: {value!r} is not a directory; pass the dataset root holding train/ and val/")
        return {f"{field}.host_path": str(path)}
    return {f"{field}.host_path" if value.startswith("/") else f"{field}.claim": value}


def build_spec(job: JobOptions, backend: BackendName) -> JobSpec:
    """The validated spec from the job options; with the local backend the volumes are directories here."""
    from jobctl import security
    from jobctl.spec import load_spec

    values: dict[str, Any] = job.spec_fields()
    values.update({f"env.{k}": v for k, v in key_values(job.env, "--env").items()})
    values.update(secret_flags(job))
    values.update(volume_flags("data", job.data, backend, "--data"))
    shared = job.shared or DEFAULT_SHARED if backend is BackendName.local else job.shared
    values.update(volume_flags("shared", shared, backend, "--shared"))
    spec = load_spec(job.file, values, list(job.set_ or []))
    if backend is BackendName.local:
        if spec.data.host_path is None:
            raise bad_input(
                "--data: the local backend needs the dataset as a directory on this machine (holding "
                f"{spec.data.train_subpath}/ and {spec.data.val_subpath}/); pass --data DIR"
            )
        train = Path(spec.data.host_path) / spec.data.train_subpath
        if not train.is_dir():
            raise bad_input(f"--data: {spec.data.host_path} has no {spec.data.train_subpath}/ folder of class folders")
    else:
        security.check_cluster_host_paths(spec)
    return spec


def secret_flags(job: JobOptions) -> dict[str, Any]:
    """--secret-env, --env-from-secret, --secret-volume as spec fields (added to the file's)."""
    values: dict[str, Any] = {}
    refs = key_values(job.secret_env, "--secret-env", "WANDB_API_KEY=wandb/api-key")
    values.update({f"secret_env.{name}": ref for name, ref in refs.items()})
    if job.env_from_secret:
        values["env_from_secrets"] = list(job.env_from_secret)
    if job.secret_volume:
        values["secret_volumes"] = key_values(job.secret_volume, "--secret-volume", "tls=/var/run/secrets/tls")
    return values


def render_checked(spec: JobSpec, kube_version: str) -> list[dict[str, Any]]:
    """Render, then validate strictly against the target version's schemas when kubernetes-validate is there."""
    from jobctl.render import render, resolve_kube_version

    version = resolve_kube_version(kube_version)
    objects = render(spec, version)
    try:
        import kubernetes_validate  # noqa: F401
    except ImportError:
        return objects
    from jobctl.validate import validate_objects

    validate_objects(objects, version)
    return objects


def print_objects(objects: list[dict[str, Any]], fmt: Format) -> None:
    from jobctl.render import to_yaml

    if fmt is Format.json:
        output.dump(objects, Format.json)
    else:
        print(to_yaml(objects), end="")


# Spec flags (render and submit) ------------------------------------------------------------------------------

FileOpt = Annotated[Path | None, typer.Option("--file", "-f", help="spec YAML file")]
NameOpt = Annotated[str | None, typer.Option("--name", help="job name (DNS-1035; default: generated)")]
PlatformOpt = Annotated[str | None, typer.Option("--platform", help="ascend, gpu or cpu")]
DevicesOpt = Annotated[int | None, typer.Option("--devices", help="devices in total")]
PerNodeOpt = Annotated[int | None, typer.Option("--devices-per-node", help="devices per pod (one pod per node)")]
ImageOpt = Annotated[str | None, typer.Option("--image", help="container image (default: make image's)")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="trainer key KEY=VALUE (repeatable)")]
EnvOpt = Annotated[list[str] | None, typer.Option("--env", help="extra env K=V for the pods (repeatable)")]
SecretEnvOpt = Annotated[
    list[str] | None, typer.Option("--secret-env", help="env NAME=SECRET/KEY from a Secret (secretKeyRef; repeatable)")
]
EnvFromSecretOpt = Annotated[
    list[str] | None, typer.Option("--env-from-secret", help="every key of Secret NAME as env (envFrom; repeatable)")
]
SecretVolumeOpt = Annotated[
    list[str] | None, typer.Option("--secret-volume", help="Secret NAME=/path as read-only files (repeatable)")
]
DataOpt = Annotated[
    str | None, typer.Option("--data", help="dataset root (train/, val/): k8s PVC name or node path; local dir")
]
QueueOpt = Annotated[str | None, typer.Option("--queue", help="Kueue LocalQueue or Volcano queue name")]
AcceleratorOpt = Annotated[
    str | None, typer.Option("--accelerator", help="device generation: Ascend 910, 910b (default) or a3")
]
SchedulerOpt = Annotated[
    str | None, typer.Option("--scheduler", help="default, volcano (PodGroup gang) or kueue (needs --queue)")
]
TopologyOpt = Annotated[
    str | None, typer.Option("--topology", help="node label KEY whose one domain holds all pods (rack, super pod)")
]
TopologyModeOpt = Annotated[str | None, typer.Option("--topology-mode", help="required (default) or preferred")]
PriorityOpt = Annotated[str | None, typer.Option("--priority-class", help="PriorityClass name")]
RestartsOpt = Annotated[int | None, typer.Option("--max-restarts", help="group restarts allowed (backoffLimit)")]
LauncherOpt = Annotated[str | None, typer.Option("--launcher", help="Ascend: ranktable (default), msrun, controller")]


SPEC_FIELD_OPTIONS = (
    "name", "platform", "devices", "devices_per_node", "image", "queue", "priority_class", "max_restarts", "launcher",
    "namespace", "accelerator", "scheduler",
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class JobOptions:
    """The options render and submit share, declared once; `with_job_options` adds them to a command."""

    file: FileOpt = None
    name: NameOpt = None
    platform: PlatformOpt = None
    devices: DevicesOpt = None
    devices_per_node: PerNodeOpt = None
    image: ImageOpt = None
    set_: SetOpt = None
    env: EnvOpt = None
    secret_env: SecretEnvOpt = None
    env_from_secret: EnvFromSecretOpt = None
    secret_volume: SecretVolumeOpt = None
    data: DataOpt = None
    shared: SharedOpt = None
    queue: QueueOpt = None
    priority_class: PriorityOpt = None
    max_restarts: RestartsOpt = None
    launcher: LauncherOpt = None
    namespace: NamespaceOpt = None
    accelerator: AcceleratorOpt = None
    scheduler: SchedulerOpt = None
    topology: TopologyOpt = None
    topology_mode: TopologyModeOpt = None

    def spec_fields(self) -> dict[str, str | int]:
        """The given options that are spec fields of the same name, and the topology's (build_spec maps the rest)."""
        given = {name: getattr(self, name) for name in SPEC_FIELD_OPTIONS}
        given |= {"topology.key": self.topology, "topology.mode": self.topology_mode}
        return {name: value for name, value in given.items() if value is not None}


def with_job_options(command: Callable[..., R]) -> Callable[..., R]:
    """Typer sees `command(job: JobOptions, ...)` as JobOptions' fields (as options, first), then its own options;
    the call packs the fields back into one JobOptions."""
    hints = typing.get_type_hints(JobOptions, include_extras=True)
    fields = dataclasses.fields(JobOptions)
    shared = [
        inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=hints[f.name])
        for f in fields
    ]
    own = [
        p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
        for p in inspect.signature(command, eval_str=True).parameters.values()
        if p.name != "job"
    ]

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> R:
        job = JobOptions(**{f.name: kwargs.pop(f.name) for f in fields})
        return command(job, **kwargs)

    parameters = shared + own
    wrapper.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters}  # typer also reads the hints
    return wrapper


@app.command()
@fail_cleanly
@with_job_options
def render(
    job: JobOptions,
    kube_version: KubeVersionOpt = None,
    out: Annotated[Format, typer.Option("--output", "-o", help="yaml or json")] = Format.yaml,
) -> None:
    """Print the Kubernetes objects of a job (multi-document YAML); never contacts a cluster."""
    from jobctl.render import DEFAULT_KUBE_VERSION

    spec = build_spec(job, BackendName.k8s)
    objects = render_checked(spec, kube_version or DEFAULT_KUBE_VERSION)
    print_warnings(spec)
    print_objects(objects, out)


@app.command()
@fail_cleanly
@with_job_options
def submit(
    job: JobOptions,
    context: ContextOpt = None,
    backend: BackendOpt = BackendName.k8s,
    kube_version: KubeVersionOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="render and validate only; print the objects")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="continue a job whose directory has checkpoints")] = False,
    replace: Annotated[bool, typer.Option("--replace", help="delete an earlier job of this name first")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="stream logs until the job ends; exit 1 if it failed")] = False,
    out: OutputOpt = Format.table,
) -> None:
    """Validate a job, create it, and print how to follow it."""
    from jobctl.render import DEFAULT_KUBE_VERSION

    spec = build_spec(job, backend)
    if backend is BackendName.k8s:
        print_warnings(spec)
    if dry_run:
        print_objects(render_checked(spec, kube_version or DEFAULT_KUBE_VERSION), out)
        return
    runner = make_backend(backend, spec.namespace, context, job.shared)
    version = kube_version or target_version(runner)
    objects = render_checked(spec, version)
    message = runner.submit(spec, objects, resume=resume, replace=replace)
    if out is Format.table:
        output.note(message)
    else:
        summary = {"name": spec.name, "namespace": spec.namespace, "backend": backend.value, "kubeVersion": version}
        output.dump({**summary, "objects": [f"{o['kind']}/{o['metadata']['name']}" for o in objects]}, out)
    if wait:
        # With -o json|yaml stdout stays machine-readable: the logs go to stderr.
        runner.logs(spec.name, sys.stdout if out is Format.table else sys.stderr, follow=True, rank=None)
        phase = runner.wait(spec.name, for_phase=None, timeout=None)
        output.note(f"job {spec.name}: {phase}")
        if phase != COMPLETE:
            info = runner.status(spec.name)
            if info.explanation:
                output.note(f"why: {info.explanation}")
            raise typer.Exit(1)


def print_warnings(spec: JobSpec) -> None:
    """On stderr: a multi-pod job on the default scheduler can start half its pods and hold their devices; and
    what is unsafe on a shared cluster (a moving image tag, a credential in plain env)."""
    from jobctl.render import gang_warning
    from jobctl.security import spec_warnings

    for warning in [gang_warning(spec), *spec_warnings(spec)]:
        if warning:
            output.note(warning)


def target_version(runner: Backend) -> str:
    """The cluster's version clamped to the supported range (k8s); the oldest supported otherwise."""
    from jobctl.backends.k8s.backend import K8sBackend
    from jobctl.render import DEFAULT_KUBE_VERSION, resolve_kube_version

    if not isinstance(runner, K8sBackend):
        return DEFAULT_KUBE_VERSION
    server = runner.api.server_version()
    version = resolve_kube_version(server, older_as_oldest=True)
    if version != server:
        output.note(f"note: the cluster runs Kubernetes {server}; rendering for {version} (supported range)")
    return version


# Job lifecycle -----------------------------------------------------------------------------------------------


@app.command()
@fail_cleanly
def status(
    name: str,
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
    backend: BackendOpt = BackendName.k8s,
    shared: SharedOpt = None,
    out: OutputOpt = Format.table,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="refresh until the job ends")] = False,
    interval: Annotated[float, typer.Option("--interval", min=0.1, help="seconds between refreshes")] = 5.0,
) -> None:
    """Per-rank pods, training progress, best top-1, a loss sparkline and the newest checkpoint; why a job is
    Pending or Failed. With --watch: refreshed in place until the job ends (plain lines when not a terminal)."""
    runner = make_backend(backend, namespace, context, shared)
    if watch:
        from jobctl.watch import watch_status

        watch_status(lambda: runner.status(name), interval, sys.stdout, terminal=sys.stdout.isatty())
        return
    info = runner.status(name)
    if out is Format.table:
        output.status_view(info)
    else:
        output.dump(info.to_dict(), out)


@app.command("list")
@fail_cleanly
def list_(
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
    backend: BackendOpt = BackendName.k8s,
    shared: SharedOpt = None,
    out: OutputOpt = Format.table,
) -> None:
    """The jobs of a namespace (k8s) or under --shared (local)."""
    jobs = make_backend(backend, namespace, context, shared).list_jobs()
    if out is Format.table:
        output.job_table(jobs)
    else:
        output.dump([job.to_dict() for job in jobs], out)


@app.command()
@fail_cleanly
def logs(
    name: str,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="stream until the job ends")] = False,
    rank: Annotated[int | None, typer.Option("--rank", min=0, help="only this global rank")] = None,
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
    backend: BackendOpt = BackendName.k8s,
    shared: SharedOpt = None,
) -> None:
    """All ranks' output merged, each line prefixed with its rank (or one rank with --rank)."""
    make_backend(backend, namespace, context, shared).logs(name, sys.stdout, follow=follow, rank=rank)


@app.command()
@fail_cleanly
def wait(
    name: str,
    for_: Annotated[WaitFor, typer.Option("--for", help="complete or failed")] = WaitFor.complete,
    timeout: Annotated[float | None, typer.Option("--timeout", min=0, help="seconds (default: no limit)")] = None,
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
    backend: BackendOpt = BackendName.k8s,
    shared: SharedOpt = None,
) -> None:
    """Block until the job is Complete or Failed; exit 0 if it reached --for, 1 otherwise or on timeout."""
    wanted = COMPLETE if for_ is WaitFor.complete else FAILED
    runner = make_backend(backend, namespace, context, shared)
    if sys.stderr.isatty():  # a person is watching: a bar of the training steps
        from jobctl.watch import wait_with_bar

        phase = wait_with_bar(lambda: runner.status(name), wanted, WAIT_BAR_SECONDS, timeout, sys.stderr)
    else:
        phase = runner.wait(name, for_phase=wanted, timeout=timeout)
    output.note(f"job {name}: {phase}")
    if phase != wanted:
        raise typer.Exit(1)


@app.command()
@fail_cleanly
def delete(
    name: str,
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
    backend: BackendOpt = BackendName.k8s,
    shared: SharedOpt = None,
) -> None:
    """Stop and delete a job (its pods, Service and ConfigMaps); the job directory with checkpoints stays."""
    make_backend(backend, namespace, context, shared).delete(name)
    output.note(f"job {name} deleted")


@app.command("eval")
@fail_cleanly
def eval_(
    name: str,
    checkpoint: Annotated[str, typer.Option("--checkpoint", help="latest, or a checkpoint path")] = "latest",
    data: Annotated[
        str | None, typer.Option("--data", help="validation set (default: the job's val/); k8s: an in-pod path")
    ] = None,
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
    backend: BackendOpt = BackendName.k8s,
    shared: SharedOpt = None,
    out: OutputOpt = Format.table,
) -> None:
    """Top-1/top-5 of a job's checkpoint (a one-device Job on k8s, a local process with --backend local)."""
    runner = make_backend(backend, namespace, context, shared)
    spec = runner.load_spec(name)
    if data is not None and backend is BackendName.local:
        data = str(Path(data).expanduser().resolve())
    result = runner.evaluate(spec, checkpoint, data)
    if out is Format.table:
        output.eval_view(result)
    else:
        output.dump(result, out)


@app.command()
@fail_cleanly
def plot(
    name: str,
    destination: Annotated[Path | None, typer.Option("--output", "-o", help="PNG file (default: NAME.png)")] = None,
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
    backend: BackendOpt = BackendName.k8s,
    shared: SharedOpt = None,
) -> None:
    """One PNG of a job's training curves (loss, learning rate, throughput, validation top-1/top-5 against the
    global step, restarts marked) from its metrics history; prints the file's path."""
    from jobctl.backends.base import JobNotFound
    from jobctl.plot import plot_history, require_matplotlib, title_of
    from jobctl.spec import train_config

    require_matplotlib()  # before any work: the missing extra is the first thing to say
    runner = make_backend(backend, namespace, context, shared)
    records = runner.history(name)
    if not records:
        raise BackendError(f"job {name} has no metrics history yet (metrics.jsonl); its trainer has not started")
    try:
        spec: JobSpec | None = runner.load_spec(name)
    except JobNotFound:
        spec = None
    title = title_of(records, name, train_config(spec).arch if spec else None, spec.devices if spec else None)
    path = plot_history(records, title, destination or Path(f"{name}.png"))
    print(path.resolve())


# Rank tables -------------------------------------------------------------------------------------------------


def write_text(text: str, destination: Path | None) -> None:
    if destination is None:
        print(text, end="")
        return
    from jobctl.jobdir import write_atomic

    try:
        write_atomic(destination, text)
    except OSError as exc:
        raise bad_input(f"-o {destination}: cannot write it: {exc.strerror}") from None


RankTableAcceleratorOpt = Annotated[
    str, typer.Option("--accelerator", help="Ascend generation: 910, 910b or a3 (rank-table version and device rules)")
]


@ranktable_app.command("build")
@fail_cleanly
def ranktable_build(
    hccn_conf: Annotated[Path, typer.Option("--hccn-conf", help="the server's /etc/hccn.conf")],
    server_id: Annotated[str, typer.Option("--server-id", help="the server's host IP")],
    devices: Annotated[str | None, typer.Option("--devices", help="0-7, 0,1,2,3 or [0,8)")] = None,
    accelerator: RankTableAcceleratorOpt = "910b",
    destination: Annotated[Path | None, typer.Option("--output", "-o", help="file (default: stdout)")] = None,
) -> None:
    """A one-server HCCL rank table from hccn.conf, like the model zoo's hccl_tools.py, with HCCL's own checks:
    every device of the server in hccn.conf, and a device set the generation accepts."""
    from contract.ranktable import build_table, parse_device_range, server_from_hccn

    accel = rank_table_accelerator(accelerator)
    if accel.rank_table_version != "1.0":
        raise bad_input(
            f"--accelerator {accelerator}: hccn.conf has no super-device ids, so it cannot make a version "
            f"{accel.rank_table_version} table; build A3 tables in the pods (launcher ranktable) or from the "
            "device plugin's annotations"
        )
    try:
        text = hccn_conf.read_text()
    except OSError as exc:
        raise bad_input(f"--hccn-conf {hccn_conf}: cannot read it: {exc.strerror}") from None
    chosen = parse_device_range(devices) if devices is not None else None
    server = server_from_hccn(server_id, text, chosen, accel, source=str(hccn_conf))
    write_text(build_table([server], accel.rank_table_version).to_json(), destination)


def rank_table_accelerator(name: str) -> Accelerator:
    from contract.accelerators import accelerator, rank_table_accelerators

    if name not in rank_table_accelerators():
        raise bad_input(
            f"--accelerator: {name!r} is not an Ascend generation; accepted: {', '.join(rank_table_accelerators())}"
        )
    return accelerator(name)


@ranktable_app.command("merge")
@fail_cleanly
def ranktable_merge(
    tables: Annotated[list[Path], typer.Argument(help="rank tables, in server order")],
    accelerator: RankTableAcceleratorOpt = "910b",
    destination: Annotated[Path | None, typer.Option("--output", "-o", help="file (default: stdout)")] = None,
) -> None:
    """One rank table from several (servers in argument order, ranks renumbered), like merge_hccl.py; refuses
    tables HCCL would refuse (duplicate device IPs, a version the generation does not use)."""
    from contract.ranktable import RankTable, merge_tables

    accel = rank_table_accelerator(accelerator)
    merged = merge_tables([RankTable.load(path) for path in tables], accel.rank_table_version)
    write_text(merged.to_json(), destination)


def main() -> None:
    app()
