"""A spec from a YAML file, `--set KEY=VALUE` trainer keys and command-line flags (flags win over `--set`, which
wins over the file); a generated name when none is given."""

from __future__ import annotations

import secrets
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from contract import config as trainer_config
from jobctl import platforms, strict_yaml
from jobctl.spec.errors import TRAIN_REFERENCE, SpecError, shorten
from jobctl.spec.models import LAUNCH_KEY_HINTS, JobSpec, validate_spec
from jobctl.strict_yaml import short_repr


def _read_file(file: Path) -> dict[str, Any]:
    try:
        text = file.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read spec file {file}: {exc}; check the path given to -f") from None
    try:
        data = strict_yaml.load(text)
    except yaml.YAMLError as exc:
        raise SpecError(shorten(f"spec file {file} is not valid YAML: {strict_yaml.describe(exc)}")) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SpecError(f"spec file {file} must hold a mapping of spec fields, not {type(data).__name__}")
    return data


def _parse_sets(sets: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for item in sets:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise SpecError(f"--set {short_repr(item)} is not KEY=VALUE; write e.g. --set max_epoch=2")
        if key in LAUNCH_KEY_HINTS:
            raise SpecError(f"--set {key}: {key} is set by jobctl: {LAUNCH_KEY_HINTS[key]}")
        values[key] = _set_value(key, raw)
    return values


def _set_value(key: str, raw: str) -> object:
    """A --set value typed as the trainer types its flags (parse_value), but first read by the strict loader:
    parse_value's yaml.safe_load crashes on a huge integer or deep nesting instead of raising YAMLError."""
    try:
        strict_yaml.load(raw)
        return trainer_config.parse_value(key, raw)
    except yaml.YAMLError as exc:
        raise SpecError(shorten(f"--set {key}: {strict_yaml.describe(exc, lines=False)}")) from None
    except trainer_config.ConfigError as exc:
        raise SpecError(shorten(f"--set {key}: {exc} (see {TRAIN_REFERENCE})")) from None


# A volume is a claim or a host path: a flag choosing one replaces the other one from the file.
_VOLUME_SOURCES = {"claim": "host_path", "host_path": "claim"}


def _merge_flags(base: dict[str, Any], flags: Mapping[str, Any]) -> dict[str, Any]:
    """Flags win; None means "not given"; `a.b` keys set nested fields (data.claim)."""
    merged = dict(base)
    for key, value in flags.items():
        head, _, source = key.partition(".")
        chosen = value is not None and head in ("data", "shared") and source in _VOLUME_SOURCES
        if chosen and isinstance(merged.get(head), Mapping):
            merged[head] = {k: v for k, v in merged[head].items() if k != _VOLUME_SOURCES[source]}
    for key, value in flags.items():
        if value is None:
            continue
        head, _, rest = key.partition(".")
        if rest:
            nested = merged.get(head)
            nested = dict(nested) if isinstance(nested, Mapping) else {}
            merged[head] = _merge_flags(nested, {rest: value})
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):  # train, secret_volumes
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def load_spec(file: Path | None, flags: Mapping[str, Any], sets: list[str]) -> JobSpec:
    """The spec from a YAML file, `--set` trainer keys and flags (flags > --set > file); SpecError when invalid."""
    values = _read_file(file) if file is not None else {}
    set_values = _parse_sets(sets)
    if set_values:
        train = values.get("train") or {}
        if not isinstance(train, Mapping):
            raise SpecError(f"train: must be a mapping of trainer keys, not {type(train).__name__}")
        values["train"] = {**train, **set_values}
    values = _merge_flags(values, flags)
    if not values.get("name"):
        platform = values.get("platform")
        values["name"] = generated_name(platform if platform in platforms.PLATFORMS else "job")
    return validate_spec(values)


def generated_name(platform: str) -> str:
    alphabet = string.ascii_lowercase + string.digits
    return f"resnext-{platform}-" + "".join(secrets.choice(alphabet) for _ in range(6))
