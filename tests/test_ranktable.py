"""HCCL rank tables v1.0 and v1.2: properties of build/merge/round-trip on random servers, and clear rejections."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contract.accelerators import accelerator, ring_sets
from contract.ranktable import (
    RankTable,
    RankTableError,
    Server,
    build_server,
    build_table,
    check_device_set,
    merge_tables,
    parse_annotations,
    parse_device_range,
    parse_hccn_conf,
    read_device_annotation,
    server_from_annotation,
    server_from_hccn,
)

ipv4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
device_sets = st.sets(st.integers(0, 7), min_size=1, max_size=8).map(sorted)


@st.composite
def server_specs(draw: st.DrawFn) -> list[tuple[str, dict[int, str], list[int]]]:
    """1..64 servers with unique ids, each with 1..8 devices (only the chosen devices have IPs)."""
    ids = draw(st.lists(ipv4, min_size=1, max_size=64, unique=True))
    # Device IPs are unique across the table (HCCL refuses duplicates).
    addresses = iter(draw(st.lists(ipv4, min_size=8 * len(ids), max_size=8 * len(ids), unique=True)))
    specs = []
    for server_id in ids:
        devices = draw(device_sets)
        ips = {d: next(addresses) for d in devices}
        specs.append((server_id, ips, list(reversed(devices))))  # unsorted input: build_server sorts
    return specs


def _servers(specs: list[tuple[str, dict[int, str], list[int]]]) -> list[Server]:
    return [build_server(sid, ips, devices) for sid, ips, devices in specs]


@settings(max_examples=40, deadline=None)
@given(server_specs())
def test_build_table_numbers_ranks_by_server_then_device(specs) -> None:
    table = build_table(_servers(specs))
    assert table.server_count == str(len(specs))
    assert [s.server_id for s in table.server_list] == [sid for sid, _, _ in specs]
    ranks = [d.rank_id for s in table.server_list for d in s.device]
    assert ranks == [str(i) for i in range(len(ranks))]
    for server, (_, ips, devices) in zip(table.server_list, specs, strict=True):
        assert [d.device_id for d in server.device] == [str(d) for d in sorted(devices)]
        assert [d.device_ip for d in server.device] == [ips[d] for d in sorted(devices)]
    assert table.rank_size == sum(len(devices) for _, _, devices in specs)


@settings(max_examples=40, deadline=None)
@given(server_specs())
def test_json_round_trip_keeps_strings(specs) -> None:
    table = build_table(_servers(specs))
    text = table.to_json()
    assert RankTable.from_json(text) == table
    raw = json.loads(text)
    assert raw["version"] == "1.0" and raw["status"] == "completed"
    assert all(isinstance(v, str) for s in raw["server_list"] for d in s["device"] for v in d.values())


@settings(max_examples=40, deadline=None)
@given(server_specs(), st.data())
def test_merge_renumbers_in_argument_order(specs, data) -> None:
    cut = data.draw(st.integers(0, len(specs)))
    parts = [p for p in (specs[:cut], specs[cut:]) if p]
    tables = [build_table(_servers(p)) for p in parts]
    merged = merge_tables(tables)
    assert merged == build_table(_servers(specs))
    assert [s.server_id for s in merged.server_list] == [s.server_id for t in tables for s in t.server_list]


def test_merge_rejects_the_same_server_twice() -> None:
    table = build_table([build_server("10.0.0.1", {0: "192.168.1.1"})])
    with pytest.raises(RankTableError, match=r"server_id 10\.0\.0\.1 appears more than once"):
        merge_tables([table, table])


def test_merge_accepts_merge_hccl_integer_rank_ids() -> None:
    raw = build_table([build_server("10.0.0.1", {0: "192.168.1.1", 1: "192.168.1.2"})]).model_dump()
    for i, device in enumerate(raw["server_list"][0]["device"]):
        device["rank_id"] = i
    table = RankTable.from_json(json.dumps(raw))
    assert [d.rank_id for d in table.server_list[0].device] == ["0", "1"]


def _table_dict() -> dict:
    servers = [build_server(f"10.0.0.{i}", {0: f"192.168.{i}.1", 1: f"192.168.{i}.2"}) for i in (1, 2)]
    return build_table(servers).model_dump()


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda t: t.update(server_count="3"), "server_count is 3 but server_list has 2"),
        (lambda t: t["server_list"][1]["device"][0].update(rank_id="1"), "rank ids must be 0..3"),
        (lambda t: t["server_list"][1]["device"].reverse(), "rank ids must be 0..3"),
        (lambda t: t["server_list"][0]["device"][0].update(device_ip="192.168.1"), "not a valid IPv4 or IPv6"),
        (lambda t: t["server_list"][0]["device"][0].update(device_ip="-1"), "sign of a failed address lookup"),
        (lambda t: t["server_list"][0]["device"][0].update(device_ip=""), "sign of a failed address lookup"),
        (lambda t: t["server_list"][1]["device"][0].update(device_ip="192.168.1.1"), "HCCL refuses duplicate"),
        (lambda t: t["server_list"][1].update(server_id="10.0.0.1"), "appears more than once"),
        (lambda t: t["server_list"][0]["device"][1].update(device_id="0"), "device_id 0 more than once"),
        (lambda t: t.update(version="1.2"), "needs super_device_id on every device"),
        (lambda t: t.update(version="2.0"), "version"),
        (lambda t: t.update(status="initializing"), "status"),
        (lambda t: t.update(server_list=[], server_count="0"), "server_list is empty"),
        (lambda t: t["server_list"][0]["device"][0].update(device_id="x"), "non-negative integer"),
    ],
)
def test_invalid_tables_are_rejected_with_the_reason(corrupt, message) -> None:
    data = _table_dict()
    corrupt(data)
    with pytest.raises(RankTableError, match=message) as info:
        RankTable.from_json(json.dumps(data))
    assert str(info.value).startswith("invalid rank table")


@settings(max_examples=30, deadline=None)
@given(server_specs(), st.data())
def test_any_swapped_rank_pair_is_rejected(specs, data) -> None:
    raw = build_table(_servers(specs)).model_dump()
    devices = [d for s in raw["server_list"] for d in s["device"]]
    if len(devices) < 2:
        return
    i, j = data.draw(st.lists(st.integers(0, len(devices) - 1), min_size=2, max_size=2, unique=True))
    devices[i]["rank_id"], devices[j]["rank_id"] = devices[j]["rank_id"], devices[i]["rank_id"]
    with pytest.raises(RankTableError, match="rank ids must be"):
        RankTable.from_json(json.dumps(raw))


def test_not_json_is_a_clear_error() -> None:
    with pytest.raises(RankTableError, match="not valid JSON"):
        RankTable.from_json("{")


def test_parse_hccn_conf() -> None:
    text = "# hccn\naddress_0=192.168.100.101\nnetmask_0=255.255.255.0\naddress_1 = 192.168.101.101\n"
    assert parse_hccn_conf(text) == {0: "192.168.100.101", 1: "192.168.101.101"}
    with pytest.raises(RankTableError, match="no address_N=IP lines"):
        parse_hccn_conf("netmask_0=255.255.255.0\n")
    with pytest.raises(RankTableError, match="line 2: address_0 is given twice"):
        parse_hccn_conf("address_0=1.1.1.1\naddress_0=1.1.1.2\n")
    with pytest.raises(RankTableError, match=r"line 1: address_3: '1\.1\.1\.300' is not a valid IPv4"):
        parse_hccn_conf("address_3=1.1.1.300\n")


@pytest.mark.parametrize(
    ("spec", "devices"),
    [("0-7", list(range(8))), ("[0,8)", list(range(8))), ("0,1,2,3", [0, 1, 2, 3]), ("4-5", [4, 5]), ("3", [3])],
)
def test_parse_device_range(spec, devices) -> None:
    assert parse_device_range(spec) == devices


@pytest.mark.parametrize(("spec", "message"), [("7-0", "is empty"), ("0,0", "more than once"), ("a-b", "write it")])
def test_parse_device_range_rejects(spec, message) -> None:
    with pytest.raises(RankTableError, match=message):
        parse_device_range(spec)


def test_910_ring_rule_follows_hccl() -> None:
    conf = "".join(f"address_{d}=192.168.{d}.1\n" for d in range(8))
    accel = accelerator("910")
    for ok in ([0, 1, 2, 3], [4, 5, 6, 7], [5], [6, 7], list(range(8)), [0, 1, 4, 5], [2, 3, 6, 7], [0, 2, 4, 6]):
        assert len(server_from_hccn("10.0.0.1", conf, ok, accel).device) == len(ok)
    with pytest.raises(RankTableError, match=r"devices \[2, 3, 4, 5\] do not form an HCCL ring"):
        server_from_hccn("10.0.0.1", conf, parse_device_range("2-5"), accel)
    for bad, message in (([3, 4], "do not form"), ([0, 1, 2], "takes 1, 2, 4, 8 devices"), ([8], "0-7 only")):
        with pytest.raises(RankTableError, match=message):
            check_device_set(bad, accel, 8)
    assert (0, 1, 4, 5) in ring_sets(4) and (0, 1, 5, 6) not in ring_sets(4)


def test_910b_and_a3_take_any_allowed_count() -> None:
    check_device_set([1, 3, 5], accelerator("910b"), 8)  # 910B: one HCCS mesh, any 1-8
    check_device_set(list(range(16)), accelerator("a3"), 16)
    with pytest.raises(RankTableError, match="takes 1, 2, 4, 8, 16 devices in one job, not 12"):
        check_device_set(list(range(12)), accelerator("a3"), 16)


@pytest.mark.parametrize("devices", [None, [0, 1, 2, 3]])
def test_build_names_a_missing_hccn_address(devices) -> None:
    """hccl_tools skipped the ring check (and built 7 devices) when hccn.conf lacked a line; we refuse."""
    conf = "".join(f"address_{d}=192.168.{d}.1\n" for d in range(8) if d != 5)
    with pytest.raises(RankTableError, match=r"hccn.conf has no address_5: one Atlas 800 \(Ascend 910\) server has 8"):
        server_from_hccn("10.0.0.1", conf, devices, accelerator("910"))
    truncated = "".join(f"address_{d}=192.168.{d}.1\n" for d in range(7))
    with pytest.raises(RankTableError, match="no address_7"):
        server_from_hccn("10.0.0.1", truncated, None, accelerator("910b"))


def test_merge_rejects_two_servers_with_the_same_device_ips() -> None:
    ips = {d: f"192.168.{d}.1" for d in range(8)}
    first, second = (build_table([build_server(f"10.0.0.{i}", ips)]) for i in (1, 2))
    with pytest.raises(RankTableError, match=r"device_ip 192\.168\.0\.1 is used by server 10\.0\.0\.1 device 0"):
        merge_tables([first, second])


def test_build_server_names_missing_devices() -> None:
    with pytest.raises(RankTableError, match=r"no IP for device\(s\) 2 \(hccn.conf lists devices 0,1\)"):
        build_server("10.0.0.1", {0: "1.1.1.1", 1: "1.1.1.2"}, [0, 2])


ANNOTATION = {
    "pod_name": "job-0",
    "server_id": "10.0.0.11",
    "devices": [{"device_id": "5", "device_ip": "192.168.101.5"}, {"device_id": "4", "device_ip": "192.168.100.4"}],
}


def _downward_api_file(value: str) -> str:
    """What the kubelet writes: sorted key="Go-quoted value" lines."""
    quoted = json.dumps(value)  # JSON string escaping coincides with Go's %q for this ASCII text
    return f'a.b/other="x"\nascend.kubectl.kubernetes.io/ascend-910-configuration={quoted}\n'


def test_annotation_file_gives_the_server(tmp_path) -> None:
    path = tmp_path / "annotations"
    path.write_text(_downward_api_file(json.dumps(ANNOTATION)))
    server = read_device_annotation(path)
    assert server is not None and server.server_id == "10.0.0.11"
    assert [(d.device_id, d.device_ip) for d in server.device] == [("4", "192.168.100.4"), ("5", "192.168.101.5")]
    assert read_device_annotation(tmp_path / "missing") is None


def test_annotation_parsing_edge_cases() -> None:
    assert parse_annotations('k="a\\tb\\x41\\u00e9"\nnot a line\n') == {"k": "a\tbAé"}
    without_id = {**ANNOTATION, "server_id": ""}
    assert server_from_annotation(json.dumps(without_id), fallback_server_id="10.9.9.9").server_id == "10.9.9.9"
    with pytest.raises(RankTableError, match="no devices list"):
        server_from_annotation('{"pod_name": "job-0"}')
    with pytest.raises(RankTableError, match="not valid JSON"):
        server_from_annotation("{")
