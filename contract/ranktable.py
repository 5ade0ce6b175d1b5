"""HCCL rank tables v1.0 and v1.2 (Atlas A3): build them from hccn.conf or the device plugin's annotation, merge,
validate.

Pure Python (jobctl imports it). The format and the rules follow the model zoo's ``utils/hccl_tools``
(``hccl_tools.py``, ``merge_hccl.py``), MindSpore's ``rank_table.md`` and mind-cluster's
``hccl.json_file_description.md``: every value is a string, rank ids are global and numbered by server, then by
device inside a server. v1.2 adds each device's ``super_device_id`` and a top-level ``super_pod_list`` grouping the
servers by super pod. A table is v1.2 exactly when its devices carry super-device ids (the A3 device plugin reports
them), so every pod builds the same table from the same fragments without being told the product.
Which device sets one server may use and which version a generation needs are data: ``accelerators``.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from contract.accelerators import (
    ANNOTATION_KEYS,
    RANK_TABLE_V1_0,
    RANK_TABLE_V1_2,
    Accelerator,
    RankTableVersion,
)

# What the device plugin writes as device_ip when it could not look the NPU's address up.
FAILED_LOOKUP_IPS = ("-1", "")


class RankTableError(ValueError):
    """A rank table, hccn.conf, device range or annotation that cannot be used; the message says why."""


def _digits(value: object, what: str) -> object:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # merge_hccl.py writes rank_id as an int; accept and normalise
    if not isinstance(value, str) or not value.isdigit():
        raise ValueError(f'{what} must be a non-negative integer written as a string, like "0"')
    return str(int(value))


def _device_ip(value: object) -> str:
    """An NPU NIC address: IPv4, or IPv6 as the Ascend operator writes it on IPv6 networks."""
    text = str(value).strip()
    if text in FAILED_LOOKUP_IPS:
        raise ValueError(
            f"device_ip {text!r} is the device plugin's sign of a failed address lookup: the NPU's NIC has no IP "
            "(check hccn_tool -i N -ip -g and /etc/hccn.conf on that node, then restart the device plugin)"
        )
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ValueError(f"{value!r} is not a valid IPv4 or IPv6 address") from None


class Device(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    device_id: str
    device_ip: str
    # v1.2 (A3): the device's id inside its super pod, from the device plugin.
    super_device_id: str | None = None
    rank_id: str

    @field_validator("device_id", "rank_id", mode="before")
    @classmethod
    def _numeric(cls, value: object) -> object:
        return _digits(value, "device_id/rank_id")

    @field_validator("super_device_id", mode="before")
    @classmethod
    def _super_numeric(cls, value: object) -> object:
        return None if value is None else _digits(value, "super_device_id")

    @field_validator("device_ip", mode="before")
    @classmethod
    def _valid_ip(cls, value: object) -> str:
        return _device_ip(value)


class Server(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    server_id: str
    host_nic_ip: str = "reserve"
    device: list[Device]
    # The super pod of an A3 server: written into the table's super_pod_list, not into the server entry.
    super_pod_id: str | None = Field(None, exclude=True)

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


class SuperPodServer(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    server_id: str


class SuperPod(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    super_pod_id: str
    server_list: list[SuperPodServer]


def _duplicates(values: Sequence[str]) -> list[str]:
    return sorted({v for v in values if values.count(v) > 1})


class RankTable(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: RankTableVersion = RANK_TABLE_V1_0
    server_count: str
    status: Literal["completed"] = "completed"
    server_list: list[Server]
    super_pod_list: list[SuperPod] | None = None

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
        dupes = _duplicates([s.server_id for s in self.server_list])
        if dupes:
            raise ValueError(
                f"server_id {', '.join(dupes)} appears more than once (two pods on one node? add podAntiAffinity)"
            )
        ranks = [int(d.rank_id) for s in self.server_list for d in s.device]
        if ranks != list(range(len(ranks))):
            raise ValueError(f"rank ids must be 0..{len(ranks) - 1} numbered by server, then device; found {ranks}")
        _check_unique_device_ips(self.server_list)
        if self.version == RANK_TABLE_V1_2:
            _check_super_pods(self)
        elif self.super_pod_list is not None or any(d.super_device_id for s in self.server_list for d in s.device):
            raise ValueError("super_pod_list and super_device_id belong to version 1.2 (Atlas A3) tables")
        return self

    @property
    def rank_size(self) -> int:
        return sum(len(s.device) for s in self.server_list)

    def super_pod_of(self) -> dict[str, str]:
        """server_id -> super_pod_id (v1.2; empty for v1.0)."""
        return {entry.server_id: pod.super_pod_id for pod in self.super_pod_list or [] for entry in pod.server_list}

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.model_dump(mode="json", exclude_none=True), indent=indent) + "\n"

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


def _check_unique_device_ips(servers: Sequence[Server]) -> None:
    """HCCL refuses a table in which two devices share an address (two copies of one server's hccn.conf)."""
    owners: dict[str, str] = {}
    for server in servers:
        for device in server.device:
            where = f"server {server.server_id} device {device.device_id}"
            if device.device_ip in owners:
                raise ValueError(
                    f"device_ip {device.device_ip} is used by {owners[device.device_ip]} and {where}; HCCL refuses "
                    "duplicate device IPs: build each server's table from its own /etc/hccn.conf"
                )
            owners[device.device_ip] = where


def _check_super_pods(table: RankTable) -> None:
    missing = [f"{s.server_id}/{d.device_id}" for s in table.server_list for d in s.device if not d.super_device_id]
    if missing:
        raise ValueError(
            f"a version 1.2 table needs super_device_id on every device; missing on {', '.join(missing[:6])} "
            "(the A3 device plugin reports it in its annotation)"
        )
    listed = [entry.server_id for pod in table.super_pod_list or [] for entry in pod.server_list]
    servers = [s.server_id for s in table.server_list]
    if sorted(listed) != sorted(servers):
        raise ValueError(
            f"super_pod_list must name every server of server_list exactly once; it names {listed}, the servers are "
            f"{servers}"
        )
    pod_of = table.super_pod_of()
    seen: dict[tuple[str, str], str] = {}
    for server in table.server_list:
        for device in server.device:
            key = (pod_of[server.server_id], str(device.super_device_id))
            if key in seen:
                raise ValueError(
                    f"super_device_id {key[1]} appears twice in super pod {key[0]} ({seen[key]} and server "
                    f"{server.server_id}); HCCL refuses that (EI0014)"
                )
            seen[key] = f"server {server.server_id}"


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
            ips[device] = _device_ip(ip)
        except ValueError as exc:
            raise RankTableError(f"{source} line {lineno}: address_{device}: {exc}") from None
    if not ips:
        raise RankTableError(f"{source} has no address_N=IP lines; is this the Ascend server's /etc/hccn.conf?")
    return ips


def check_complete_server(device_ips: Mapping[int, str], accel: Accelerator, source: str = "hccn.conf") -> int:
    """The server's device count; RankTableError naming the missing address_N when hccn.conf lacks a device of a
    whole server (a missing line would otherwise shrink the table or hide a ring violation)."""
    sizes = accel.server_sizes
    size = next((n for n in sizes if n > max(device_ips)), sizes[-1])
    missing = [d for d in range(size) if d not in device_ips]
    extra = [d for d in device_ips if d >= size]
    if extra:
        raise RankTableError(
            f"{source} lists address_{extra[0]}, but one {accel.description} server has devices 0-{sizes[-1] - 1}; "
            "pass the right --accelerator"
        )
    if missing:
        names = ", ".join(f"address_{d}" for d in missing)
        raise RankTableError(
            f"{source} has no {names}: one {accel.description} server has {size} devices (0-{size - 1}) and every one "
            "needs its NPU IP; add the line (hccn_tool -i N -ip -g shows it) or fix the file"
        )
    return size


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


def check_device_set(devices: Sequence[int], accel: Accelerator, server_devices: int) -> None:
    """RankTableError when HCCL refuses these devices of one server (the generation's rule, from accelerators)."""
    problem = accel.device_set_problem(devices, server_devices)
    if problem:
        raise RankTableError(problem)


# --- building and merging ----------------------------------------------------------------------------------


def build_server(
    server_id: str,
    device_ips: Mapping[int, str],
    devices: Sequence[int] | None = None,
    *,
    super_device_ids: Mapping[int, str] | None = None,
    super_pod_id: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> Server:
    """One server's entry, devices in ascending id order with local rank ids 0..n-1 (build_table renumbers).

    ``devices`` defaults to every device in ``device_ips``. A3 servers add their super-device ids and super pod.
    No device-set rule is applied here: the device plugin chose the devices (see server_from_hccn for the CLI).
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
    supers = super_device_ids or {}
    entries = [
        {
            "device_id": str(d),
            "device_ip": device_ips[d],
            **({"super_device_id": supers[d]} if d in supers else {}),
            "rank_id": str(i),
        }
        for i, d in enumerate(sorted(chosen))
    ]
    data = {**(extra or {}), "server_id": server_id, "device": entries, "super_pod_id": super_pod_id}
    return _validated(Server, data, f"server {server_id}")


def server_from_hccn(
    server_id: str, text: str, devices: Sequence[int] | None, accel: Accelerator, source: str = "hccn.conf"
) -> Server:
    """``jobctl ranktable build``: the whole server must be in hccn.conf, and the chosen devices must be a set
    HCCL accepts on that generation (hccl_tools' checks, made strict)."""
    ips = parse_hccn_conf(text, source)
    size = check_complete_server(ips, accel, source)
    chosen = sorted(ips) if devices is None else list(devices)
    check_device_set(chosen, accel, size)
    return build_server(server_id, ips, chosen)


def build_table(servers: Sequence[Server], version: str | None = None) -> RankTable:
    """A completed table: ranks numbered by server order, then by each server's device order. Version 1.2 (with a
    super_pod_list in order of first appearance) when the servers carry super pods, else 1.0; ``version``, when
    given, must be the one the servers make."""
    if not servers:
        raise RankTableError("cannot build a rank table from no servers")
    with_pod = [s for s in servers if s.super_pod_id is not None]
    inferred = RANK_TABLE_V1_2 if with_pod else RANK_TABLE_V1_0
    if version is not None and version != inferred:
        hint = (
            "the servers carry no super_pod_id/super_device_id (an A3 table needs the A3 device plugin's annotation)"
            if version == RANK_TABLE_V1_2
            else "the servers carry A3 super pods; use --accelerator a3"
        )
        raise RankTableError(f"cannot build a version {version} rank table: {hint}")
    data: dict[str, Any] = {"version": inferred, "server_count": str(len(servers)), "server_list": _renumbered(servers)}
    if with_pod:
        if len(with_pod) != len(servers):
            lacking = ", ".join(s.server_id for s in servers if s.super_pod_id is None)
            raise RankTableError(f"servers {lacking} have no super_pod_id while others have one; mixed A3 and non-A3?")
        pods: dict[str, list[dict[str, str]]] = {}
        for server in servers:
            pods.setdefault(str(server.super_pod_id), []).append({"server_id": server.server_id})
        data["super_pod_list"] = [{"super_pod_id": p, "server_list": members} for p, members in pods.items()]
    return _validated(RankTable, data, "rank table")


def _renumbered(servers: Sequence[Server]) -> list[dict[str, Any]]:
    rank = 0
    out = []
    for server in servers:
        entry = server.model_dump(mode="json", exclude_none=True)
        for device in entry["device"]:
            device["rank_id"] = str(rank)
            rank += 1
        out.append(entry)
    return out


def merge_tables(tables: Sequence[RankTable], version: str | None = None) -> RankTable:
    """Like merge_hccl.py: servers in argument order, ranks renumbered (as strings); super pods kept."""
    if not tables:
        raise RankTableError("nothing to merge: give at least one rank table")
    servers = [
        server.model_copy(update={"super_pod_id": table.super_pod_of().get(server.server_id)})
        for table in tables
        for server in table.server_list
    ]
    return build_table(servers, version)


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
    "device_ip"}]}``; MindCluster's plugin adds ``host_ip``, ``super_pod_id`` and per-device ``super_device_id``
    (A3). Devices keep the plugin's physical ids, sorted; ``server_id`` falls back to the node IP."""
    try:
        data = json.loads(value)
    except json.JSONDecodeError as exc:
        raise RankTableError(f"device-plugin annotation is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("devices"), list) or not data["devices"]:
        raise RankTableError("device-plugin annotation has no devices list; is the pod allocated Ascend devices?")
    ips: dict[int, str] = {}
    supers: dict[int, str] = {}
    for item in data["devices"]:
        if not isinstance(item, dict) or not str(item.get("device_id", "")).isdigit():
            raise RankTableError(f"device-plugin annotation: bad device entry {item!r}")
        device = int(item["device_id"])
        ips[device] = str(item.get("device_ip", ""))
        if item.get("super_device_id") not in (None, ""):
            supers[device] = str(item["super_device_id"])
    server_id = str(data.get("server_id") or fallback_server_id)
    pod = data.get("super_pod_id")
    extra = {"host_ip": str(data["host_ip"])} if data.get("host_ip") else {}
    return build_server(
        server_id, ips, super_device_ids=supers, super_pod_id=None if pod in (None, "") else str(pod), extra=extra
    )


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


# --- rendezvous fragments: what one pod tells the others about its server ----------------------------------


def fragment_devices(server: Server) -> list[dict[str, str]]:
    """The server's devices as a rendezvous fragment lists them. Server-level facts of MindCluster's plugin (the
    A3 super pod, the node's host_ip) ride on each device, so the fragment format stays a list of devices."""
    shared = {k: str(v) for k, v in (("super_pod_id", server.super_pod_id), ("host_ip", _host_ip(server))) if v}
    return [
        {"device_id": d.device_id, "device_ip": d.device_ip, **shared}
        | ({"super_device_id": d.super_device_id} if d.super_device_id else {})
        for d in server.device
    ]


def _host_ip(server: Server) -> str | None:
    return (server.model_extra or {}).get("host_ip")


def server_from_fragment(server_id: str, devices: Sequence[Mapping[str, str]]) -> Server:
    """The inverse of fragment_devices (every pod rebuilds the same servers from the same fragments)."""
    ips = {int(d["device_id"]): d.get("device_ip", "") for d in devices}
    supers = {int(d["device_id"]): d["super_device_id"] for d in devices if d.get("super_device_id")}
    shared: dict[str, str] = {}
    for key in ("super_pod_id", "host_ip"):
        values = {d[key] for d in devices if d.get(key)}
        if len(values) > 1:
            raise RankTableError(f"server {server_id}: its devices name several {key} values {sorted(values)}")
        shared.update({key: values.pop()} if values else {})
    extra = {"host_ip": shared["host_ip"]} if "host_ip" in shared else {}
    return build_server(server_id, ips, super_device_ids=supers, super_pod_id=shared.get("super_pod_id"), extra=extra)
