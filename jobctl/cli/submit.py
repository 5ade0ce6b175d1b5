"""`jobctl render` and `jobctl submit`: a spec from flags and files, rendered, validated and created."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from jobctl import output
from jobctl.backends.base import COMPLETE, Backend
from jobctl.cli.common import (
    BackendName,
    BackendOpt,
    ContextOpt,
    JobOptions,
    KubeVersionOpt,
    OutputOpt,
    app,
    bad_input,
    build_spec,
    cache_seconds,
    fail_cleanly,
    make_backend,
    print_objects,
    render_checked,
    resolve_backend,
    with_job_options,
)  # fmt: skip
from jobctl.output import Format

if TYPE_CHECKING:
    from jobctl.spec import JobSpec


SubmitKubeVersionOpt = Annotated[
    str | None,
    typer.Option(
        "--kube-version",
        help="target Kubernetes version (default: the cluster's, clamped to the supported "
        "range; the oldest supported with --dry-run or --backend local)",
    ),
]


@app.command()
@fail_cleanly
@with_job_options
def render(
    job: JobOptions,
    kube_version: KubeVersionOpt = None,
    out: Annotated[
        Format, typer.Option("--output", "-o", help="yaml, json or table (kind, name, summary)")
    ] = Format.yaml,
) -> None:
    """Print the Kubernetes objects of a job (multi-document YAML); never contacts a cluster."""
    from jobctl.render import DEFAULT_KUBE_VERSION

    spec = build_spec(job, BackendName.k8s)
    objects = render_checked(spec, kube_version or DEFAULT_KUBE_VERSION)
    print_warnings(spec)
    print_objects(objects, out)


def resume_base(job: JobOptions, backend: BackendName, context: str | None) -> tuple[Backend, JobSpec | None]:
    """The backend and the stored spec that `submit --resume` continues (None: no job of that name stored one)."""
    from jobctl.backends.base import JobNotFound
    from jobctl.spec.load import file_name

    name = job.name or file_name(job.file)
    if not name:
        raise bad_input("--resume: name the job to continue with --name NAME (its stored spec is the base)")
    runner = make_backend(backend, job.namespace, context, job.shared)
    try:
        return runner, runner.load_spec(name)
    except JobNotFound:
        output.note(f"resume: job {name!r} has no stored spec; starting from the options given here")
        return runner, None


@app.command()
@fail_cleanly
@with_job_options
def submit(
    job: JobOptions,
    context: ContextOpt = None,
    backend: BackendOpt = None,
    kube_version: SubmitKubeVersionOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="render and validate only; print the objects")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="continue a job whose directory has checkpoints")] = False,
    replace: Annotated[bool, typer.Option("--replace", help="delete an earlier job of this name first")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="stream logs until the job ends; exit 1 if it failed")] = False,
    out: OutputOpt = Format.table,
    shared_cache: Annotated[
        str,
        typer.Option(
            "--shared-cache",
            help="local backend: each pod sees --shared through its own view with NFS-like caching for this "
            "long (e.g. 30s; 0 = off), to rehearse NFS storage; needs FUSE (docs/INTERFACES.md)",
        ),
    ] = "0",
) -> None:
    """Validate a job, create it, and print how to follow it."""
    from jobctl.render import DEFAULT_KUBE_VERSION

    # A dry run renders the cluster objects and contacts nothing: it needs no cluster to choose k8s.
    backend = chosen_backend(BackendName.k8s if dry_run and backend is None else backend, context)
    runner, stored = resume_base(job, backend, context) if resume else (None, None)
    spec = build_spec(job, backend, stored)
    if stored is not None:
        from jobctl.spec.resume import changes, check_resumable

        check_resumable(stored, spec)
        for change in changes(stored, spec) or ["nothing: the stored spec as it was"]:
            output.note(f"resume changes {change}")
    print_warnings(spec, cluster=backend is BackendName.k8s)
    if dry_run:  # the objects themselves (YAML unless -o json), as before any table existed
        shown = Format.json if out is Format.json else Format.yaml
        print_objects(render_checked(spec, kube_version or DEFAULT_KUBE_VERSION), shown)
        return
    runner = runner or make_backend(backend, spec.namespace, context, job.shared, cache_seconds(shared_cache, backend))
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


def chosen_backend(backend: BackendName | None, context: str | None) -> BackendName:
    """The backend, said on stderr when jobctl chose it (no --backend, no JOBCTL_BACKEND)."""
    chosen = resolve_backend(backend, context)
    if backend is None:
        why = "a cluster is configured" if chosen is BackendName.k8s else "no Kubernetes cluster is configured"
        output.note(f"backend: {chosen.value} ({why}; choose with --backend or JOBCTL_BACKEND)")
    return chosen


def print_warnings(spec: JobSpec, cluster: bool = True) -> None:
    """On stderr: a recipe key the chosen schedule ignores; on a cluster also a multi-pod job on the default
    scheduler (it can start half its pods and hold their devices) and what is unsafe on a shared cluster (a
    moving image tag, a credential in plain env)."""
    from contract.config import recipe_warnings
    from jobctl.render import gang_warning, snapshot_note
    from jobctl.security import spec_warnings
    from jobctl.spec import train_config

    warnings: list[str | None] = [*recipe_warnings(train_config(spec)), spec.elastic_note()]
    if cluster:
        warnings += [gang_warning(spec), *spec_warnings(spec), snapshot_note(spec)]
    for warning in warnings:
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
