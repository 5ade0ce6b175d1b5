"""`submit --resume`: the job's stored spec is the base; the submit's file, `--set`s and flags change only what they
name. What changed is said (key: old -> new); what the checkpoints cannot follow is refused before anything is
written.

Refused: ``train.arch`` (the checkpoint's weights are that network's) and ``train.num_classes`` (the classifier's
shape). Allowed, because the checkpoint takes it: ``image_size`` (ResNeXt ends in global average pooling, so its
weights fit any input size; progressive resizing relies on it), batch size, devices, epochs and the schedule (the
trainer resumes at the saved global step and says when steps per epoch changed), ``min_devices``/``shrink_after``
(the group size is each attempt's; the global batch stays the full job's), platform (checkpoints are
platform-neutral). A different dataset is the trainer's to refuse: it compares the checkpoint's class names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jobctl.spec.errors import SpecError
from jobctl.spec.models import JobSpec, train_config

# What the checkpoints were trained for and a resume cannot change: key -> why.
FIXED_TRAIN_KEYS = {
    "arch": "the checkpoints hold that network's weights",
    "num_classes": "the checkpoints' classifier has that many outputs",
}
UNSET = "(unset)"


def overlay(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``top``'s values; mappings in both are overlaid key by key (so a file's train keys add to the
    stored ones instead of replacing them all)."""
    merged = dict(base)
    for key, value in top.items():
        below = merged.get(key)
        merged[key] = overlay(below, value) if isinstance(below, Mapping) and isinstance(value, Mapping) else value
    return merged


def stored_values(stored: JobSpec) -> dict[str, Any]:
    """The stored spec as the values a submit starts from."""
    return stored.model_dump(mode="json", exclude_none=True)


def _flat(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping) and value:
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def changes(before: JobSpec, after: JobSpec) -> list[str]:
    """``key: old -> new`` for every spec field (train keys as ``train.<key>``) the resume changes."""
    old, new = _flat(stored_values(before)), _flat(stored_values(after))
    return [
        f"{key}: {old.get(key, UNSET)} -> {new.get(key, UNSET)}"
        for key in sorted(old.keys() | new.keys())
        if old.get(key, UNSET) != new.get(key, UNSET)
    ]


def check_resumable(before: JobSpec, after: JobSpec) -> None:
    """SpecError (exit 2) when the resumed spec changes what the job's checkpoints were trained for."""
    was, now = train_config(before), train_config(after)
    for key, why in FIXED_TRAIN_KEYS.items():
        if getattr(was, key) != getattr(now, key):
            raise SpecError(
                f"train.{key}: {getattr(now, key)!r} differs from the {getattr(was, key)!r} of job {after.name!r}, "
                f"and --resume continues its checkpoints ({why}). Drop --set {key}=... to resume, or start over "
                "with --replace (deletes the checkpoints) or another --name"
            )
