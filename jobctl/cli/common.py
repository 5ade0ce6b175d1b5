"""`jobctl`: submit, follow and evaluate ResNeXt training jobs on Kubernetes or locally (a thin typer app).

kubectl habits: `-n/--namespace`, `--context`, `-o table|yaml|json`; `--backend k8s|local` (or env JOBCTL_BACKEND;
default: k8s when a cluster is configured — a kubeconfig, --context or running in a pod — else local). Errors go to
stderr as one paragraph; exit 2 for bad input, 1 for failures (usage errors too: OneParagraphGroup).

`--data` names the dataset (a root holding train/ and val/): with the k8s backend a PVC claim name, or an absolute
path = a directory on every node (hostPath); with the local backend a directory on this machine. `--shared` is
the shared volume the same way (k8s: claim or node path; local: a directory, default ./shared).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TypeVar

import typer
from typer._click import Context  # typer vendors click: its parser and errors live here
from typer._click.exceptions import BadParameter, UsageError
from typer.core import TyperGroup

from jobctl import output
from jobctl.backends.base import Backend, BackendError
from jobctl.output import Format

if TYPE_CHECKING:  # imported when a command runs: `jobctl --help` stays fast
    from jobctl.spec import JobSpec

P = ParamSpec("P")
R = TypeVar("R")


class OneParagraphGroup(TyperGroup):
    """Usage errors (a bad option value, an unknown option or command) as one paragraph naming the option, the
    value and where the accepted values are, exit 2 — not click's multi-line box."""

    def parse_args(self, ctx: Context, args: list[str]) -> list[str]:
        # kubectl habit: --dry-run=client is --dry-run (jobctl's dry runs never reach a server); =none is no dry run.
        args = [{"--dry-run=client": "--dry-run"}.get(a, a) for a in args if a != "--dry-run=none"]
        return super().parse_args(ctx, args)

    def invoke(self, ctx: Context) -> Any:
        try:
            return super().invoke(ctx)
        except UsageError as exc:
            output.error(usage_paragraph(exc))
            raise typer.Exit(2) from None


def usage_paragraph(exc: UsageError) -> str:
    command = exc.ctx.command_path if exc.ctx is not None else "jobctl"
    message = exc.message.removeprefix("Value error, ").rstrip(".")
    where = f"run `{command} --help` for the accepted options and values"
    if isinstance(exc, BadParameter) and exc.param is not None and exc.ctx is not None:
        given = exc.param_hint or getattr(exc.param, "opts", [])
        hint = given if isinstance(given, str) else " / ".join(given)
        if exc.param.param_type_name == "argument":
            hint = str(exc.param.name).upper()  # NAME, as the usage line shows it
        hint = hint.replace("'", "")
        return f"{command}: {hint}: {message}; {where}"
    return f"{command}: {message}; {where}"


app = typer.Typer(
    name="jobctl",
    cls=OneParagraphGroup,
    help="Train ResNeXt with MindSpore on Kubernetes (Ascend/GPU) or locally on CPU.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish, PowerShell)
    pretty_exceptions_enable=False,
)

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
BackendOpt = Annotated[
    BackendName | None,
    typer.Option(
        "--backend", envvar="JOBCTL_BACKEND", help="k8s or local (default: k8s if a cluster is configured, else local)"
    ),
]
SharedOpt = Annotated[
    str | None, typer.Option("--shared", help="shared volume: local dir (default ./shared); k8s: PVC or node path")
]
OutputOpt = Annotated[Format, typer.Option("--output", "-o", help="table, yaml or json")]
KubeVersionOpt = Annotated[
    str | None,
    typer.Option(
        "--kube-version",
        help="target Kubernetes version (default: the oldest supported; one newer than the "
        "newest known renders for the newest, with a note)",
    ),
]


def fail_cleanly(fn: Callable[P, R]) -> Callable[P, R]:
    """Known errors → one paragraph on stderr and exit 2 (bad input) or 1 (failure); never a traceback."""
    from contract.config import ConfigError
    from contract.ranktable import RankTableError
    from jobctl.jobdir import JobPathError
    from jobctl.spec import SpecError
    from jobctl.validate import ManifestError

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except (SpecError, ConfigError, RankTableError, ManifestError, JobPathError) as exc:
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


def cluster_configured(context: str | None) -> bool:
    """A cluster to talk to: --context, a kubeconfig ($KUBECONFIG's files or ~/.kube/config) or a pod's
    service account (in-cluster config)."""
    import os

    if context or os.environ.get("KUBERNETES_SERVICE_HOST"):
        return True
    paths = os.environ.get("KUBECONFIG", "").split(os.pathsep) if os.environ.get("KUBECONFIG") else []
    return any(Path(p).expanduser().is_file() for p in paths or ["~/.kube/config"])


def resolve_backend(backend: BackendName | None, context: str | None) -> BackendName:
    """--backend / JOBCTL_BACKEND when given; else k8s where a cluster is configured, local on a laptop."""
    if backend is not None:
        return backend
    return BackendName.k8s if cluster_configured(context) else BackendName.local


def make_backend(
    backend: BackendName | None,
    namespace: str | None,
    context: str | None,
    shared: str | None,
    shared_cache: float = 0.0,
) -> Backend:
    if resolve_backend(backend, context) is BackendName.local:
        from jobctl.backends.local.backend import LocalBackend

        return LocalBackend(local_shared(shared or DEFAULT_SHARED), shared_cache)
    from jobctl import platforms
    from jobctl.backends.k8s.backend import K8sBackend, api_client, default_namespace

    client = api_client(context)
    return K8sBackend(client, namespace or default_namespace(context, platforms.DEFAULT_NAMESPACE))


def cache_seconds(text: str, backend: BackendName) -> float:
    """--shared-cache DURATION -> seconds (0: off); only the local backend has views to cache in."""
    from jobctl.cachedfs import parse_duration

    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise bad_input(f"--shared-cache: {exc}") from None
    if seconds > 0 and backend is not BackendName.local:
        raise bad_input(
            "--shared-cache: only the local backend mounts caching views (a cluster's storage caches by itself); "
            "drop the flag or pass --backend local"
        )
    return seconds


def key_values(items: list[str] | None, flag: str, example: str = "NCCL_DEBUG=INFO") -> dict[str, str]:
    values = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise bad_input(f"{flag} {item!r} is not KEY=VALUE; write e.g. {flag} {example}")
        values[key] = value
    return values


def volume_flags(field: str, value: str | None, backend: BackendName, flag: str) -> dict[str, str]:
    """--data/--shared → spec fields: a local directory, a node path (absolute) or a PVC claim name. Nothing is
    created here: the local shared directory is made by the backend once the whole spec is valid."""
    if value is None:
        return {}
    if backend is BackendName.local:
        if field == "shared":
            return {f"{field}.host_path": str(local_shared(value))}
        path = Path(value).expanduser().resolve()
        if not path.is_dir():
            raise bad_input(f"{flag}: {value!r} is not a directory; pass the dataset root holding train/ and val/")
        return {f"{field}.host_path": str(path)}
    return {f"{field}.host_path" if value.startswith("/") else f"{field}.claim": value}


PSEUDO_FILESYSTEMS = ("/proc", "/sys", "/dev")  # the kernel's views: no job folder can live there


def local_shared(value: str) -> Path:
    """The local --shared directory, checked without creating anything: a directory, or a path whose nearest
    existing ancestor is a directory; never a file, a socket or a kernel pseudo-filesystem."""
    path = Path(value).expanduser().resolve()
    fix = "pass a directory of your own, e.g. --shared ./shared"
    if any(path == Path(root) or Path(root) in path.parents for root in PSEUDO_FILESYSTEMS):
        raise bad_input(f"--shared: {value!r} is inside /{path.parts[1]}, a kernel pseudo-filesystem; {fix}")
    existing = next((p for p in (path, *path.parents) if p.exists()), Path("/"))
    if not existing.is_dir():
        kind = "a socket" if existing.is_socket() else "not a directory"
        where = "" if existing == path else f" (its parent {existing} is {kind})"
        raise bad_input(f"--shared: {value!r} is {kind if existing == path else 'not usable'}{where}; {fix}")
    return path


def job_name(name: str) -> str:
    """A job name given on the command line, held to submit's grammar before any path or object is built."""
    from jobctl.spec import check_job_name

    try:
        return check_job_name(name)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


NameArg = Annotated[str, typer.Argument(help="the job's name", callback=job_name, show_default=False)]


def build_spec(job: JobOptions, backend: BackendName, base: JobSpec | None = None) -> JobSpec:
    """The validated spec from the job options (over ``base``, a resumed job's stored spec); with the local
    backend the volumes are directories here."""
    from jobctl import security
    from jobctl.spec import load_spec
    from jobctl.spec.resume import stored_values

    values: dict[str, Any] = job.spec_fields()
    values.update({f"env.{k}": v for k, v in key_values(job.env, "--env").items()})
    values.update(secret_flags(job))
    values.update(volume_flags("data", job.data, backend, "--data"))
    shared = job.shared or DEFAULT_SHARED if backend is BackendName.local else job.shared
    values.update(volume_flags("shared", shared, backend, "--shared"))
    spec = load_spec(job.file, values, list(job.set_ or []), None if base is None else stored_values(base))
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
    from jobctl.limits import oversized_object
    from jobctl.render import render, resolve_kube_version

    version = resolve_kube_version(kube_version)
    if version != ".".join(kube_version.lstrip("v").split(".")[:2]):
        output.note(
            f"note: Kubernetes {kube_version} is newer than the newest version jobctl knows; rendering for "
            f"{version} (objects valid there are accepted by newer servers)"
        )
    objects = render(spec, version)
    too_big = oversized_object(objects)
    if too_big:
        raise bad_input(too_big)
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
    elif fmt is Format.table:
        output.objects_table(objects)
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
MinDevicesOpt = Annotated[
    int | None,
    typer.Option("--min-devices", help="elastic: train on as few devices (whole pods) while a node is lost"),
]
ShrinkAfterOpt = Annotated[
    int | None,
    typer.Option("--shrink-after", help="elastic: seconds to wait for a missing pod before training without it (60)"),
]


SPEC_FIELD_OPTIONS = (
    "name", "platform", "devices", "devices_per_node", "image", "queue", "priority_class", "max_restarts", "launcher",
    "namespace", "accelerator", "scheduler", "min_devices", "shrink_after",
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
    min_devices: MinDevicesOpt = None
    shrink_after: ShrinkAfterOpt = None

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
