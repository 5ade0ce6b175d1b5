"""HCCL rank table v1.0: build it from hccn.conf or the Ascend device plugin's annotation, merge, validate.

Pure Python (jobctl imports it). The format and the rules follow the model zoo's ``utils/hccl_tools``
(``hccl_tools.py``, ``merge_hccl.py``) and MindSpore's ``rank_table.md``: every value is a string, rank ids
are global and numbered by server, then by device inside a server.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

ANNOTATION_KEYS = (
    "ascend.kubectl.kubernetes.io/ascend-910-configuration",
    "ascend.kubectl.kubernetes.io/ascend-npu-configuration",
)
# A 910 server has two 4-chip HCCS rings; a job may use one ring or the whole server (hccl_tools rule).
RING_SIZE = 4
SERVER_DEVICES_910 = 8


class RankTableError(ValueError):
    """A rank table, hccn.conf, device range or annotation that cannot be used; the message says why."""


def _digits(value: object, what: str) -> object:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # merge_hccl.py writes rank_id as an int; accept and normalise
    if not isinstance(value, str) or not value.isdigit():
        raise ValueError(f'{what} must be a non-negative integer written as a string, like "0"')
    return str(int(value))


def _ipv4(value: object) -> str:
    try:
        return str(ipaddress.IPv4Address(str(value).strip()))
    except ValueError:
        raise ValueError(f"{value!r} is not a valid IPv4 address") from None


class Device(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    device_id: str
    device_ip: str
    rank_id: str

    @field_validator("device_id", "rank_id", mode="before")
    @classmethod
    def _numeric(cls, value: object) -> object:
        return _digits(value, "device_id/rank_id")

    @field_validator("device_ip", mode="before")
    @classmethod
    def _valid_ip(cls, value: object) -> str:
        return _ipv4(value)


class Server(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    server_id: str
    host_nic_ip: str = "reserve"
    device: list[Device]

    @field_validator("server_id")
    @classmethod
    def _non_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("server_id must not be empty (use the node IP)")
        return value.strip()

    @model_validator(mode="after")
    def _unique_devices(self) -> Server:
        if not self.device:
            raise ValueError(f"server {self.server_id} lists no devices")
        ids = [d.device_id for d in self.device]
        dupes = sorted({i for i in ids if ids.count(i) > 1}, key=int)
        if dupes:
            raise ValueError(f"server {self.server_id} lists device_id {', '.join(dupes)} more than once")
        return self


class RankTable(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal["1.0"] = "1.0"
    server_count: str
    status: Literal["completed"] = "completed"
    server_list: list[Server]

    @field_validator("server_count", mode="before")
    @classmethod
    def _count(cls, value: object) -> object:
        return _digits(value, "server_count")

    @model_validator(mode="after")
    def _consistent(self) -> RankTable:
        if not self.server_list:
            raise ValueError("server_list is empty")
        if int(self.server_count) != len(self.server_list):
            raise ValueError(f"server_count is {self.server_count} but server_list has {len(self.server_list)} servers")
        ids = [s.server_id for s in self.server_list]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(
                f"server_id {', '.join(dupes)} appears more than once (two pods on one node? add podAntiAffinity)"
            )
        ranks = [int(d.rank_id) for s in self.server_list for d in s.device]
        if ranks != list(range(len(ranks))):
            raise ValueError(f"rank ids must be 0..{len(ranks) - 1} numbered by server, then device; found {ranks}")
        return self

    @property
    def rank_size(self) -> int:
        return sum(len(s.device) for s in self.server_list)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=indent) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = "rank table") -> RankTable:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RankTableError(f"{source} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise RankTableError(f"{source} must be a JSON object, not {type(data).__name__}")
        return _validated(cls, data, source)

    @classmethod
    def load(cls, path: str | Path) -> RankTable:
        p = Path(path)
        try:
            text = p.read_text()
        except OSError as exc:
            raise RankTableError(f"cannot read rank table {p}: {exc.strerror}") from exc
        return cls.from_json(text, source=f"rank table {p}")


def _validated(model: Any, data: Mapping[str, Any], source: str) -> Any:
    try:
        return model.model_validate(dict(data))
    except ValidationError as err:
        parts = []
        for item in err.errors():
            loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in item["loc"]).lstrip(".")
            msg = item["msg"].removeprefix("Value error, ")
            parts.append(f"{loc}: {msg}" if loc else msg)
        raise RankTableError(f"invalid {source}: " + "; ".join(parts)) from None


# --- inputs: hccn.conf, device ranges --------------------------------------------------------------------

_HCCN_LINE = re.compile(r"^\s*address_(\d+)\s*=\s*(\S+)\s*$")


def parse_hccn_conf(text: str, source: str = "hccn.conf") -> dict[int, str]:
    """Device id -> NPU NIC IP from ``/etc/hccn.conf`` lines ``address_N=IP`` (other lines are ignored)."""
    ips: dict[int, str] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        match = _HCCN_LINE.match(line)
        if not match:
            continue
        device, ip = int(match.group(1)), match.group(2)
        if device in ips:
            raise RankTableError(f"{source} line {lineno}: address_{device} is given twice")
        try:
            ips[device] = _ipv4(ip)
        except ValueError as exc:
            raise RankTableError(f"{source} line {lineno}: address_{device}: {exc}") from None
    if not ips:
        raise RankTableError(f"{source} has no address_N=IP lines; is this the Ascend server's /etc/hccn.conf?")
    return ips


_HALF_OPEN = re.compile(r"^\[\s*(\d+)\s*,\s*(\d+)\s*\)$")
_DASH = re.compile(r"^(\d+)\s*-\s*(\d+)$")


def parse_device_range(spec: str) -> list[int]:
    """Device ids from ``"0-7"`` (inclusive), ``"0,1,2,3"`` or hccl_tools' half-open ``"[0,8)"``."""
    text = spec.strip()
    if match := _HALF_OPEN.match(text):
        first, end = int(match.group(1)), int(match.group(2))
    elif match := _DASH.match(text):
        first, end = int(match.group(1)), int(match.group(2)) + 1
    elif re.fullmatch(r"\d+(\s*,\s*\d+)*", text):
        devices = [int(part) for part in text.split(",")]
        if len(set(devices)) != len(devices):
            raise RankTableError(f"device list {spec!r} names a device more than once")
        return devices
    else:
        raise RankTableError(f"cannot read device range {spec!r}; write it as 0-7, 0,1,2,3 or [0,8)")
    if end <= first:
        raise RankTableError(f"device range {spec!r} is empty; the first device must come before the last")
    return list(range(first, end))


def check_910_groups(devices: Sequence[int]) -> None:
    """On an 8-device 910 server a job uses devices of one 4-chip ring, or all eight (hccl_tools' rule)."""
    chosen = set(devices)
    if chosen == set(range(SERVER_DEVICES_910)):
        return
    if any(d >= SERVER_DEVICES_910 for d in chosen):
        raise RankTableError(f"devices {sorted(chosen)}: a 910 server has devices 0-7 only")
    if any(d < RING_SIZE for d in chosen) and any(d >= RING_SIZE for d in chosen):
        raise RankTableError(
            f"devices {sorted(chosen)} span both 910 rings; use devices within 0-3 or within 4-7, or all of 0-7"
        )


# --- building and merging ----------------------------------------------------------------------------------


def build_server(
    server_id: str,
    device_ips: Mapping[int, str],
    devices: Sequence[int] | None = None,
    *,
    check_groups_910: bool = True,
) -> Server:
    """One server's entry, devices in ascending id order with local rank ids 0..n-1 (build_table renumbers).

    ``devices`` defaults to every device in ``device_ips``. When ``device_ips`` describes an 8-device server
    (ids 0-7) and ``check_groups_910`` is set, the selection must respect the 910 ring rule.
    """
    chosen = sorted(device_ips) if devices is None else list(devices)
    if not chosen:
        raise RankTableError(f"server {server_id}: no devices selected")
    if len(set(chosen)) != len(chosen):
        raise RankTableError(f"server {server_id}: devices {chosen} name a device more than once")
    missing = [d for d in chosen if d not in device_ips]
    if missing:
        known = ",".join(str(d) for d in sorted(device_ips)) or "none"
        raise RankTableError(
            f"server {server_id}: no IP for device(s) {', '.join(map(str, missing))} "
            f"(hccn.conf lists devices {known}); fix the device range or the address_N lines"
        )
    if check_groups_910 and set(device_ips) == set(range(SERVER_DEVICES_910)):
        check_910_groups(chosen)
    entries = [
        {"device_id": str(d), "device_ip": device_ips[d], "rank_id": str(i)} for i, d in enumerate(sorted(chosen))
    ]
    return _validated(Server, {"server_id": server_id, "device": entries}, f"server {server_id}")


def _renumbered(servers: Sequence[Server]) -> list[dict[str, Any]]:
    rank = 0
    out = []
    for server in servers:
        entry = server.model_dump(mode="json")
        for device in entry["device"]:
            device["rank_id"] = str(rank)
            rank += 1
        out.append(entry)
    return out


def build_table(servers: Sequence[Server]) -> RankTable:
    """A completed table: ranks numbered by server order, then by each server's device order."""
    if not servers:
        raise RankTableError("cannot build a rank table from no servers")
    data = {"server_count": str(len(servers)), "server_list": _renumbered(servers)}
    return _validated(RankTable, data, "rank table")


def merge_tables(tables: Sequence[RankTable]) -> RankTable:
    """Like merge_hccl.py: servers in argument order, ranks renumbered (as strings)."""
    if not tables:
        raise RankTableError("nothing to merge: give at least one rank table")
    return build_table([server for table in tables for server in table.server_list])


# --- the device plugin's annotation ------------------------------------------------------------------------

_GO_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|[abfnrtv\\\"'])")
_SIMPLE = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\", '"': '"', "'": "'"}


def _go_unquote(quoted: str) -> str:
    """Undo Go's %q quoting (what the kubelet writes into downward-API annotation files)."""
    body = quoted[1:-1]

    def replace(match: re.Match[str]) -> str:
        code = match.group(1)
        if code[0] in "xuU":
            return chr(int(code[1:], 16))
        return _SIMPLE[code]

    return _GO_ESCAPE.sub(replace, body)


def parse_annotations(text: str) -> dict[str, str]:
    """A downward-API annotations file (``key="quoted value"`` per line) as a dict."""
    annotations: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        value = value.strip()
        if not sep or len(value) < 2 or not (value.startswith('"') and value.endswith('"')):
            continue
        annotations[key.strip()] = _go_unquote(value)
    return annotations


def server_from_annotation(value: str, fallback_server_id: str = "") -> Server:
    """The server entry from the device plugin's JSON: ``{"pod_name","server_id","devices":[{"device_id",
    "device_ip"}]}``. Devices keep the plugin's physical ids, sorted; ``server_id`` falls back to the node IP."""
    try:
        data = json.loads(value)
    except json.JSONDecodeError as exc:
        raise RankTableError(f"device-plugin annotation is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("devices"), list) or not data["devices"]:
        raise RankTableError("device-plugin annotation has no devices list; is the pod allocated Ascend devices?")
    ips: dict[int, str] = {}
    for item in data["devices"]:
        if not isinstance(item, dict) or not str(item.get("device_id", "")).isdigit():
            raise RankTableError(f"device-plugin annotation: bad device entry {item!r}")
        ips[int(item["device_id"])] = str(item.get("device_ip", ""))
    server_id = str(data.get("server_id") or fallback_server_id)
    return build_server(server_id, ips, check_groups_910=False)


def read_device_annotation(path: str | Path, fallback_server_id: str = "") -> Server | None:
    """The server entry from a downward-API annotations file, or None if the file or the annotation is absent."""
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise RankTableError(f"cannot read {p}: {exc.strerror}") from exc
    annotations = parse_annotations(text)
    for key in ANNOTATION_KEYS:
        if annotations.get(key):
            return server_from_annotation(annotations[key], fallback_server_id)
    return None
