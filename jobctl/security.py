"""Whole-spec policy for a shared cluster, above the models: the k8s backend's host-path roots, and the warnings
`render`/`submit` print. The field checks (host paths, secrets, networks) are jobctl.spec.checks.

Pure (no I/O except reading JOBCTL_HOST_PATH_ROOTS). `check_cluster_host_paths` runs for the k8s backend only,
because with the local backend a host path is a directory of the user's own machine.

The cluster enforces the same in the namespaces k8s/ creates (Pod Security and the ValidatingAdmissionPolicy in
k8s/pod-policy.yaml); these checks give the clear error before anything is sent.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from jobctl.spec.checks import HOST_PATH_ROOTS_ENV, host_path_roots
from jobctl.spec.errors import SpecError
from jobctl.spec.models import JobSpec

# Env names that look like credentials (a plain env value is stored in the Job, the ConfigMaps and spec.yaml).
CREDENTIAL_NAME = re.compile(r"TOKEN|PASSWORD|PASSWD|SECRET|KEY|CREDENTIAL", re.IGNORECASE)


def check_cluster_host_paths(spec: JobSpec, environ: Mapping[str, str] = os.environ) -> None:
    """The k8s backend: data/shared host paths only under the allowed roots; SpecError otherwise."""
    try:
        roots = host_path_roots(environ)
    except ValueError as exc:
        raise SpecError(f"${HOST_PATH_ROOTS_ENV}: {exc}") from None
    for field, volume in (("data", spec.data), ("shared", spec.shared)):
        path = volume.host_path
        if path is None or any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots):
            continue
        raise SpecError(
            f"{field}.host_path: {path} is outside the node folders jobctl may mount ({', '.join(roots)}); use a "
            f"PVC (--{field} CLAIM) or a folder under them, or have the admin add a root to ${HOST_PATH_ROOTS_ENV}. "
            "The namespaces k8s/ creates refuse node paths for data and shared storage anyway"
        )


# Warnings (printed on stderr by render and submit; nothing is refused) --------------------------------------


def image_warning(image: str) -> str | None:
    if "@" in image:
        return None
    last = image.rsplit("/", 1)[-1]
    tag = last.partition(":")[2]
    if tag and tag != "latest":
        return None
    what = "has no tag (so :latest)" if not tag else "uses :latest"
    return (
        f"warning: image {image} {what}; a tag can move to another image between the pods of one job, a digest "
        "(image@sha256:...) cannot: pin a version tag or better a digest"
    )


def credential_warnings(env: Mapping[str, str]) -> list[str]:
    return [
        f"warning: env {name} looks like a credential; its value is stored in plain text in the Job, the ConfigMaps "
        f"and spec.yaml: put it in a Secret and use secret_env: {{{name}: SECRET/KEY}} (--secret-env "
        f"{name}=SECRET/KEY)"
        for name in env
        if CREDENTIAL_NAME.search(name)
    ]


def spec_warnings(spec: JobSpec) -> list[str]:
    """The one-line warnings for a spec that is valid but unsafe to run on a shared cluster."""
    found = [image_warning(str(spec.image))]
    return [w for w in found if w] + credential_warnings(spec.env)
