"""Rank table v1.2 (Atlas A3): built from two A3 servers' device-plugin annotations the way every pod builds it, and
tables as the Ascend operator writes them (mind-cluster docs/en/scheduling/api/hccl.json_file_description.md)."""

from __future__ import annotations

import json

import pytest

from contract.accelerators import accelerator
from contract.ranktable import (
    RankTable,
    RankTableError,
    build_table,
    fragment_devices,
    merge_tables,
    server_from_annotation,
    server_from_fragment,
)


def a3_annotation(node: int, super_pod: str) -> str:
    """MindCluster's device plugin on an A3 node: pod UID as server_id, host_ip, super_pod_id, super_device_id."""
    devices = [
        {"device_id": str(d), "device_ip": f"10.20.{node}.{d + 1}", "super_device_id": str(37748736 + 16 * node + d)}
        for d in range(16)
    ]
    return json.dumps(
        {
            "pod_name": f"job-{node}",
            "server_id": f"uid-{node}",
            "host_ip": f"10.0.0.{node}",
            "super_pod_id": super_pod,
            "rack_id": "0",
            "devices": devices,
        }
    )


def pods_table(super_pods: tuple[str, str]) -> RankTable:
    """Each pod publishes its fragment; every pod rebuilds the servers from the fragments and builds the table."""
    fragments = []
    for node, pod in enumerate(super_pods):
        server = server_from_annotation(a3_annotation(node, pod))
        fragments.append((server.server_id, fragment_devices(server)))
    return build_table([server_from_fragment(sid, devices) for sid, devices in fragments])


def test_two_a3_servers_make_a_v1_2_table() -> None:
    table = pods_table(("0", "0"))
    raw = json.loads(table.to_json())
    assert raw["version"] == "1.2" == accelerator("a3").rank_table_version
    assert raw["super_pod_list"] == [
        {"super_pod_id": "0", "server_list": [{"server_id": "uid-0"}, {"server_id": "uid-1"}]}
    ]
    first = raw["server_list"][1]["device"][0]
    assert first == {"device_id": "0", "device_ip": "10.20.1.1", "super_device_id": "37748752", "rank_id": "16"}
    assert [s["host_ip"] for s in raw["server_list"]] == ["10.0.0.0", "10.0.0.1"]
    assert "super_pod_id" not in raw["server_list"][0]
    assert RankTable.from_json(table.to_json()) == table
    assert pods_table(("0", "0")).to_json() == table.to_json()  # identical on every pod


def test_servers_of_two_super_pods_are_grouped() -> None:
    raw = json.loads(pods_table(("7", "3")).to_json())
    assert [(p["super_pod_id"], p["server_list"]) for p in raw["super_pod_list"]] == [
        ("7", [{"server_id": "uid-0"}]),
        ("3", [{"server_id": "uid-1"}]),
    ]


def test_merge_keeps_super_pods_and_checks_the_version() -> None:
    one = build_table([server_from_annotation(a3_annotation(0, "0"))])
    two = build_table([server_from_annotation(a3_annotation(1, "1"))])
    merged = merge_tables([one, two], version="1.2")
    assert merged.super_pod_of() == {"uid-0": "0", "uid-1": "1"}
    with pytest.raises(RankTableError, match="servers carry A3 super pods; use --accelerator a3"):
        merge_tables([one, two], version="1.0")


OPERATOR_V1_2 = {
    "status": "completed",
    "server_list": [
        {
            "device": [
                {"device_id": "0", "device_ip": "fd00::1", "super_device_id": "37748736", "rank_id": "0"},
                {"device_id": "1", "device_ip": "fd00::2", "super_device_id": "37748737", "rank_id": "1"},
            ],
            "server_id": "5e4c-11",
            "host_ip": "10.0.0.11",
            "container_ip": "192.168.149.5",
            "hardware_type": "800I-A3-64G",
        }
    ],
    "server_count": "1",
    "version": "1.2",
    "super_pod_list": [{"super_pod_id": "0", "server_list": [{"server_id": "5e4c-11"}]}],
}


def test_operator_tables_of_both_versions_are_accepted_with_ipv6() -> None:
    table = RankTable.from_json(json.dumps(OPERATOR_V1_2))
    assert table.version == "1.2" and table.server_list[0].device[1].device_ip == "fd00::2"
    assert table.server_list[0].host_ip == "10.0.0.11"
    v1_0 = {k: v for k, v in OPERATOR_V1_2.items() if k != "super_pod_list"} | {"version": "1.0"}
    v1_0["server_list"] = [
        {**s, "device": [{k: v for k, v in d.items() if k != "super_device_id"} for d in s["device"]]}
        for s in OPERATOR_V1_2["server_list"]
    ]
    assert RankTable.from_json(json.dumps(v1_0)).version == "1.0"


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda t: t["server_list"][0]["device"][0].update(device_ip="-1"), "device_ip '-1' is the device plugin"),
        (lambda t: t["server_list"][0]["device"][1].pop("super_device_id"), r"missing on 5e4c-11/1"),
        (lambda t: t["server_list"][0]["device"][1].update(super_device_id="37748736"), r"EI0014"),
        (lambda t: t.update(super_pod_list=[]), "must name every server"),
        (lambda t: t.update(version="1.0"), "belong to version 1.2"),
    ],
)
def test_bad_v1_2_tables_are_refused(corrupt, message) -> None:
    data = json.loads(json.dumps(OPERATOR_V1_2))
    corrupt(data)
    with pytest.raises(RankTableError, match=message):
        RankTable.from_json(json.dumps(data))


def test_annotation_with_a_failed_lookup_is_a_clear_error() -> None:
    data = json.loads(a3_annotation(0, "0"))
    data["devices"][3]["device_ip"] = "-1"
    with pytest.raises(RankTableError, match=r"device\[3\]\.device_ip: device_ip '-1' is the device plugin's sign"):
        server_from_annotation(json.dumps(data))
