"""Strict OpenAPI validation of rendered objects against the upstream schemas of one Kubernetes version.

Uses the strict (additionalProperties: false) JSON schemas kubernetes-validate ships for 1.29–1.37, exactly as
`kubernetes_validate.validate(obj, version, strict=True)` resolves them, but builds each validator once: loading
the 1.2 MB definitions file per object would dominate render+validate time.

Custom resources (Volcano's PodGroup) have no schema in that set: `crd_validator` turns a CRD's openAPIV3Schema
into a strict validator. The API server prunes fields a structural schema does not list (silently dropping them);
strict mode models pruning as rejection (additionalProperties: false wherever an object lists its properties and
says nothing else), because a pruned field is one the renderer meant and the cluster would never see. Callers pass
such validators in; without one a custom kind is skipped (the CLI ships no CRDs; the tests validate with them).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any

from jobctl.render import resolve_kube_version

_GROUP = re.compile(r"^([^./]*)(?:\.[^/]*)?/")


class ManifestError(ValueError):
    """A rendered object the target Kubernetes version would reject; names the object, the field and the problem."""


def _kubernetes_validate() -> Any:
    # Imported on use: the base install (submit from a laptop) does not need the validate extra.
    try:
        from kubernetes_validate import utils
    except ImportError:
        raise ManifestError(
            "strict validation needs kubernetes-validate: pip install 'resnext-jobs[validate]'"
        ) from None
    return utils


def _schema_file(api_version: str, kind: str) -> str:
    # kubernetes-validate's naming: rbac.authorization.k8s.io/v1 -> rbac-v1; core v1 stays v1.
    group_version = _GROUP.sub(r"\1-", api_version)
    return f"{kind.lower()}-{group_version}.json"


@cache
def _schema_dir(version: str) -> str:
    utils = _kubernetes_validate()
    # The newest schema set not newer than the target (the package's own rule).
    known = [v for v in utils.all_versions() if _minor_tuple(v) <= _minor_tuple(version)]
    if not known:
        raise ManifestError(f"kubernetes-validate has no schemas for Kubernetes {version}; upgrade kubernetes-validate")
    return f"kubernetes-json-schema/v{known[-1]}-local-strict"


def _minor_tuple(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


@cache
def _definitions(schema_dir: str) -> Any:
    from referencing import Resource

    utils = _kubernetes_validate()
    return Resource.from_contents(utils.schema_contents(f"{schema_dir}/_definitions.json", schema_dir))


@cache
def _validator(schema_dir: str, filename: str) -> Any:
    import jsonschema
    from referencing import Registry, Resource

    utils = _kubernetes_validate()
    try:
        schema = utils.schema_contents(f"{schema_dir}/{filename}", schema_dir)
    except FileNotFoundError:
        return None
    registry = _definitions(schema_dir) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


def _describe(obj: dict[str, Any]) -> str:
    name = (obj.get("metadata") or {}).get("name", "<unnamed>")
    return f"{obj.get('kind', '<no kind>')}/{name} ({obj.get('apiVersion', '<no apiVersion>')})"


# Custom kinds jobctl renders: (apiVersion, kind). Validated when a CRD validator is given, skipped otherwise.
CUSTOM_KINDS = frozenset({("scheduling.volcano.sh/v1beta1", "PodGroup")})
CustomValidators = Mapping[tuple[str, str], Any]


def strict_structural(schema: dict[str, Any]) -> dict[str, Any]:
    """A CRD openAPIV3Schema with pruning modelled as rejection (see the module docstring)."""
    out = copy.deepcopy(schema)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            listed = node.get("type") == "object" and "properties" in node and "additionalProperties" not in node
            if listed and not node.get("x-kubernetes-preserve-unknown-fields"):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(out)
    return out


def crd_validator(crd: Mapping[str, Any], version: str) -> Any:
    """A strict validator for one served version of a CustomResourceDefinition."""
    import jsonschema

    served = [v for v in crd["spec"]["versions"] if v["name"] == version]
    if not served:
        raise ManifestError(f"the CRD {crd['metadata']['name']} has no version {version}")
    schema = strict_structural(served[0]["schema"]["openAPIV3Schema"])
    return jsonschema.validators.Draft7Validator(schema)


def validate_object(obj: dict[str, Any], kube_version: str, custom: CustomValidators | None = None) -> None:
    """Raise ManifestError unless `obj` validates in strict mode against the target version's schema (or, for a
    custom kind, against its CRD's validator in `custom`)."""
    import jsonschema

    version = resolve_kube_version(kube_version)
    if not isinstance(obj.get("apiVersion"), str) or not isinstance(obj.get("kind"), str):
        raise ManifestError(f"{_describe(obj)}: every object needs string apiVersion and kind fields")
    key = (obj["apiVersion"], obj["kind"])
    if key in CUSTOM_KINDS:
        validator = (custom or {}).get(key)
        if validator is None:
            return
    else:
        validator = _validator(_schema_dir(version), _schema_file(obj["apiVersion"], obj["kind"]))
    if validator is None:
        raise ManifestError(f"{_describe(obj)}: Kubernetes {version} has no schema for this kind and apiVersion")
    error = jsonschema.exceptions.best_match(validator.iter_errors(obj))
    if error is not None:
        path = ".".join(str(p) for p in error.absolute_path) or "(object)"
        raise ManifestError(
            f"{_describe(obj)} does not validate against Kubernetes {version} (strict schema): {path}: {error.message}"
        )


def validate_objects(
    objects: Iterable[dict[str, Any]], kube_version: str, custom: CustomValidators | None = None
) -> None:
    """Validate every object; the first invalid one raises ManifestError."""
    for obj in objects:
        validate_object(obj, kube_version, custom)
