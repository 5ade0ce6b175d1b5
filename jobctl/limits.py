"""Size limits, each written once: a spec file, a rendered Kubernetes object, a local process's exec.

Past these the input is refused with one line (exit 2) before it is parsed, sent or started: a 50 MB spec would be
parsed for minutes, Kubernetes refuses a ConfigMap/Secret over 1 MiB or a request over etcd's 1.5 MiB, and Linux
refuses an exec whose one argument/env string or whole argument+env block is too long (E2BIG). Each check returns
the one-line reason (None: within the limit); the caller raises its own bad-input error with it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from typing import Any

MIB = 1024 * 1024
MAX_SPEC_FILE_BYTES = MIB  # a real spec is a few KiB
MAX_CONFIG_DATA_BYTES = MIB  # Kubernetes' limit on a ConfigMap's or Secret's data
MAX_OBJECT_BYTES = 3 * MIB // 2  # etcd's default request limit (--max-request-bytes), which any object must fit
MAX_ARG_STRLEN = 32 * 4096  # Linux: one argv or env string ("KEY=value"), MAX_ARG_STRLEN
_EXEC_RESERVE = 4096  # pointers and the auxiliary vector share ARG_MAX with the strings


def _size(text: str) -> int:
    return len(text.encode())


def spec_file_too_big(size: int, file: object) -> str | None:
    if size <= MAX_SPEC_FILE_BYTES:
        return None
    return (
        f"spec file {file} is {size} bytes, over the {MAX_SPEC_FILE_BYTES} byte (1 MiB) limit of a spec file; "
        "a spec is a few KiB: keep data out of it (put files on the data volume, credentials in Secrets)"
    )


def _leaves(value: Any, path: str) -> Iterator[tuple[str, int]]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _leaves(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves(item, f"{path}[{index}]")
    else:
        yield path, _size(json.dumps(value))


def oversized_object(objects: list[dict[str, Any]]) -> str | None:
    """Why Kubernetes would refuse one of ``objects`` for its size, naming the object and its largest field."""
    for obj in objects:
        what = f"{obj.get('kind')} {obj.get('metadata', {}).get('name')}"
        if obj.get("kind") in ("ConfigMap", "Secret"):
            data = {**(obj.get("data") or {}), **(obj.get("binaryData") or {})}
            total = sum(_size(key) + _size(str(value)) for key, value in data.items())
            if total > MAX_CONFIG_DATA_BYTES:
                key = max(data, key=lambda k: _size(str(data[k])))
                return (
                    f"{what}: its data is {total} bytes, over Kubernetes' {MAX_CONFIG_DATA_BYTES} byte (1 MiB) "
                    f"limit; the largest field is data[{key!r}] ({_size(str(data[key]))} bytes). Shrink what fills "
                    "it (an env value? a long list?); large inputs belong on the data volume"
                )
        size = _size(json.dumps(obj))
        if size > MAX_OBJECT_BYTES:
            path, biggest = max(_leaves(obj, ""), key=lambda leaf: leaf[1])
            return (
                f"{what}: it is {size} bytes, over the {MAX_OBJECT_BYTES} byte limit of one Kubernetes object; the "
                f"largest field is {path} ({biggest} bytes). Shrink it; large inputs belong on the data volume"
            )
    return None


def check_exec_size(argv: list[str], env: Mapping[str, str], what: str) -> str | None:
    """Why Linux would refuse to start ``argv`` with ``env`` (E2BIG), or None."""
    for key, value in env.items():
        if _size(f"{key}={value}") + 1 > MAX_ARG_STRLEN:
            return (
                f"env {key} of {what} is {_size(value)} bytes; one variable may hold at most {MAX_ARG_STRLEN - 2} "
                "bytes when a process starts (Linux MAX_ARG_STRLEN). Pass large values as a file (a Secret volume or "
                "the data volume) instead"
            )
    for arg in argv:
        if _size(arg) + 1 > MAX_ARG_STRLEN:
            return f"an argument of {what} is {_size(arg)} bytes, over Linux's {MAX_ARG_STRLEN} byte limit"
    total = sum(_size(s) + 1 for s in argv) + sum(_size(f"{k}={v}") + 1 for k, v in env.items())
    limit = os.sysconf("SC_ARG_MAX") - _EXEC_RESERVE
    if total > limit:
        return (
            f"the environment and arguments of {what} take {total} bytes, over this machine's {limit} byte limit "
            "(ARG_MAX); drop or shorten --env values"
        )
    return None
