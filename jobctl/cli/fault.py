"""`jobctl fault`: rehearse a lost node on a local job (jobctl.backends.local.faults)."""

from __future__ import annotations

from typing import Annotated

import typer

from jobctl import output
from jobctl.cli.common import (
    BackendName,
    BackendOpt,
    ContextOpt,
    NameArg,
    NamespaceOpt,
    SharedOpt,
    app,
    bad_input,
    fail_cleanly,
    make_backend,
    resolve_backend,
)  # fmt: skip
from jobctl.cli.lifecycle import parse_since

CLUSTER_REFUSAL = (
    "jobctl fault works with the local backend only; on a cluster, rehearse a lost node with kubectl cordon <node> "
    "&& kubectl delete pod <pod> --grace-period=0 --force (or kubectl drain)"
)


@app.command()
@fail_cleanly
def fault(
    name: NameArg,
    pod: Annotated[int, typer.Option("--pod", help="the pod's index (0 .. pods-1)", show_default=False)],
    down: Annotated[
        bool | None,
        typer.Option(
            "--down/--up", help="take the pod down as a lost node / bring a held pod back", show_default=False
        ),
    ] = None,
    for_: Annotated[
        str | None,
        typer.Option("--for", help="with --down: how long its replacement waits (30s, 2m, 1h30m; default: until --up)"),
    ] = None,
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
    backend: BackendOpt = None,
    shared: SharedOpt = None,
) -> None:
    """Rehearse a lost node (local backend): --down kills the pod's processes at once (SIGKILL to its launcher,
    trainers and scheduler, nothing saved) and holds its replacement back for --for (or until --up); the
    replacement then starts as for any failed pod, with empty emptyDirs (/dev/shm snapshots, scratch)."""
    if resolve_backend(backend, context) is not BackendName.local:
        raise bad_input(CLUSTER_REFUSAL)
    if down is None:
        raise bad_input(f"jobctl fault: say --down (take pod {pod} down) or --up (bring it back)")
    if for_ is not None and not down:
        raise bad_input("--for: only --down takes a duration; --up brings the pod back now")
    seconds = None if for_ is None else parse_since(for_, "--for")
    runner = make_backend(backend, namespace, context, shared)
    from jobctl.backends.local.backend import LocalBackend

    assert isinstance(runner, LocalBackend)  # resolved to local above
    output.note(runner.fault(name, pod, down=down, seconds=seconds))
