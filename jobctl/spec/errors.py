"""Spec errors: one short paragraph naming the field, the bad value and the fix."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, get_args

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from jobctl.strict_yaml import short_repr


class SpecError(ValueError):
    """An invalid job spec: the message names the field, the bad value and the fix."""


# An error is one short paragraph: the first problems in full, the rest named; long lists of names are cut.
MAX_PROBLEMS = 2
MAX_NAMES = 6
MAX_MESSAGE = 600
SPEC_REFERENCE = "the job spec reference in README.md"
TRAIN_REFERENCE = "python -m trainer.train --help"
_PLAIN_NAME = re.compile(r"^[\w.-]{1,40}$")
_NAME_LIST = re.compile(rf"(known (?:keys|fields): )([\w.-]+(?:, [\w.-]+){{{MAX_NAMES},}})")


def format_validation_error(err: ValidationError, root: type[BaseModel], prefix: str = "invalid job spec") -> str:
    """One paragraph: the first bad fields, each with its value and what is expected; the others named (an unknown
    field with the fields ``root``, or the model below it, knows)."""
    errors = err.errors()
    unknown: dict[tuple[int | str, ...], list[str]] = {}  # parent path -> its unknown fields, listed together
    for item in errors:
        if item["type"] == "extra_forbidden":
            unknown.setdefault(tuple(item["loc"][:-1]), []).append(_path(item["loc"][-1:]))
    # field(s) -> what is wrong, in pydantic's order; one entry for the same field of many list items
    problems: dict[str, str] = {}
    for item in errors:
        loc = tuple(item["loc"])
        if item["type"] != "extra_forbidden":
            problems.setdefault(_path(tuple("*" if isinstance(p, int) else p for p in loc)), _problem(item))
            continue
        names = _some(unknown[loc[:-1]])
        where = f"{_path(loc[:-1])}." if loc[:-1] else ""
        plural = "s" if len(unknown[loc[:-1]]) > 1 else ""
        problems.setdefault(where + names, f"{where}{names}: unknown field{plural}; {_known(root, loc[:-1])}")
    return _paragraph(prefix, problems)


def _problem(item: ErrorDetails) -> str:
    loc = _path(item["loc"])
    msg = item["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if item["type"] == "missing":
        return f"{loc}: required" + ("; pass --platform ascend|gpu|cpu" if loc == "platform" else "")
    bad = item.get("input")
    shown = "" if isinstance(bad, Mapping | list) else f" (got {short_repr(bad)})"
    return f"{loc}: {msg}{shown}" if loc and not msg.startswith(f"{loc}:") else f"{msg}{shown}"


def _path(loc: tuple[int | str, ...] | list[int | str]) -> str:
    """A field path such as tolerations.0.key; odd names (a key of the user's) quoted and cut."""
    return ".".join(str(p) if _PLAIN_NAME.fullmatch(str(p)) else short_repr(p, 24) for p in loc)


def _paragraph(prefix: str, problems: dict[str, str]) -> str:
    shown = "; ".join(list(problems.values())[:MAX_PROBLEMS])
    rest = [field or "(spec)" for field in list(problems)[MAX_PROBLEMS:]]
    if rest:
        shown += f"; also {_some(rest)}"
    return shorten(f"{prefix}: {shown}")


def _some(names: list[str]) -> str:
    """The first MAX_NAMES names, then "…"."""
    return ", ".join(names[:MAX_NAMES]) + (", …" if len(names) > MAX_NAMES else "")


def shorten(message: str) -> str:
    """A message cut to one short paragraph: lists of known names cut to a few, then the whole to MAX_MESSAGE."""

    def cut(match: re.Match[str]) -> str:
        names = match.group(2).split(", ")
        return f"{match.group(1)}{', '.join(names[:MAX_NAMES])}, … ({len(names)} in all)"

    text = " ".join(_NAME_LIST.sub(cut, message).split())
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


def _known(root: type[BaseModel], parent: tuple[int | str, ...]) -> str:
    names = _known_fields(root, parent)
    return f"known fields: {_some(names)} (all {len(names)} in {SPEC_REFERENCE})"


def _known_fields(root: type[BaseModel], parent: tuple[int | str, ...]) -> list[str]:
    model = root
    for part in parent:
        annotation = model.model_fields[str(part)].annotation if str(part) in model.model_fields else None
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        elif (item := _list_item_model(annotation)) is not None:  # tolerations.0.key: the list's item model
            model = item
    return list(model.model_fields)


def _list_item_model(annotation: Any) -> type[BaseModel] | None:
    """``M`` of ``list[M]`` or ``list[M] | None``."""
    for arg in get_args(annotation):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
        if (inner := _list_item_model(arg)) is not None:
            return inner
    return None
