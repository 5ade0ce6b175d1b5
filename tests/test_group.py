"""contract.group: the ranks, sizes and batch splits of a (possibly shrunk) group."""

from __future__ import annotations

import pytest

from contract.env import Var
from contract.group import (
    Group,
    GroupError,
    format_members,
    group_sizes,
    parse_members,
    rank_batch,
    unsplittable_sizes,
)


def test_a_shrunk_group_numbers_its_ranks_by_member_position() -> None:
    group = Group((0, 2), num_pods=3, devices_per_pod=2)
    assert [group.rank(2, i) for i in range(2)] == [2, 3]
    assert (group.world_size, group.full_world_size, group.missing, group.first) == (4, 6, (1,), 0)
    assert group.describe() == "4/6 (pod(s) 1 missing)"
    assert Group.full(3, 2).describe() == "6/6"


def test_members_round_trip_and_bad_lists_are_refused() -> None:
    assert parse_members(format_members((1, 3))) == (1, 3)
    for bad in ("", "a", "2,1", "1,1", "-1"):
        with pytest.raises(GroupError):
            parse_members(bad)
    with pytest.raises(GroupError):
        Group((3,), num_pods=3, devices_per_pod=1)


def test_the_trainer_reads_its_group_and_checks_it_against_mindspore() -> None:
    env = {Var.MEMBERS: "1,2", Var.NUM_PODS: "3", Var.DEVICES_PER_POD: "2"}
    assert Group.from_environ(env, world_size=4) == Group((1, 2), 3, 2)
    assert Group.from_environ({}, world_size=4) == Group.full(1, 4)
    with pytest.raises(GroupError, match="disagree"):
        Group.from_environ(env, world_size=6)


def test_the_global_batch_splits_evenly_or_is_refused() -> None:
    assert rank_batch(96, 4) == 24
    with pytest.raises(GroupError, match="cannot be split evenly over 5"):
        rank_batch(96, 5)
    assert group_sizes(4, 2, 2) == [8, 6, 4]
    assert unsplittable_sizes(32, 4, 2, 2) == [6]
    assert unsplittable_sizes(48, 4, 2, 2) == []
