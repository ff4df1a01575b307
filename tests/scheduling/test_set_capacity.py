"""A node's new capacity (Eru's SetNodeResourceCapacity, `erucli node set --cpu --memory [--delta]`):
absolute and delta, empty cores dropped, and the refusals that would leave less than is held."""

from __future__ import annotations

from typing import Any

import pytest

from scheduling import GiB, InvalidRequest, NodeResources, set_capacity


def node(**fields: Any) -> NodeResources:
    """2 cores of 100 pieces and 4 GiB; core 1 has 30 pieces held, 1 GiB of memory is used."""
    values: dict[str, Any] = {
        "name": "n1",
        "cpu_map": {"0": 100, "1": 100},
        "memory": 4 * GiB,
        "used_cpu_map": {"1": 30},
        "used_cpu": 0.3,
        "used_memory": GiB,
        **fields,
    }
    return NodeResources(**values)


def refused(field: str, **kwargs: Any) -> str:
    with pytest.raises(InvalidRequest) as err:
        set_capacity(node(**kwargs.pop("node", {})), **kwargs)
    assert err.value.field == field
    return str(err.value)


def test_nothing_given_changes_nothing() -> None:
    assert set_capacity(node()) == ({"0": 100, "1": 100}, 4 * GiB)


@pytest.mark.parametrize(
    ("cpu", "expected"),
    [
        (3, {"0": 100, "1": 100, "2": 100}),
        ("3", {"0": 100, "1": 100, "2": 100}),
        ("0:100, 1:200", {"0": 100, "1": 200}),
        ({"1": 50, "3": 100}, {"1": 50, "3": 100}),
        ("01:40,0:0", {"1": 40}),  # core ids normalised; an empty unused core is dropped
    ],
)
def test_absolute_cpu_replaces_the_map_and_keeps_memory(cpu: Any, expected: dict[str, int]) -> None:
    assert set_capacity(node(), cpu=cpu) == (expected, 4 * GiB)


def test_a_number_of_cores_takes_the_nodes_share_base() -> None:
    assert set_capacity(node(share_base=10, used_cpu_map={}), cpu=2)[0] == {"0": 10, "1": 10}


def test_absolute_memory_replaces_it_and_keeps_the_cpu_map() -> None:
    assert set_capacity(node(), memory=8 * GiB) == ({"0": 100, "1": 100}, 8 * GiB)


def test_delta_adds_per_core_like_eru() -> None:
    cpu_map, memory = set_capacity(node(), cpu="0:-100,1:50,2:100", memory=-GiB, delta=True)
    assert cpu_map == {"1": 150, "2": 100}  # core 0 at 0 and unused: dropped; core 2 is new
    assert memory == 3 * GiB


def test_a_delta_of_n_cores_adds_share_base_pieces_to_cores_0_to_n_minus_1() -> None:
    """Eru parses `--cpu 3` into {0: 100, 1: 100, 2: 100} before adding it, delta or not."""
    assert set_capacity(node(), cpu=3, delta=True)[0] == {"0": 200, "1": 200, "2": 100}


def test_a_core_held_by_workloads_is_kept_at_what_they_hold() -> None:
    assert set_capacity(node(), cpu="0:100,1:30")[0] == {"0": 100, "1": 30}
    assert set_capacity(node(), cpu="1:-70", delta=True)[0] == {"0": 100, "1": 30}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cpu": "0:100,1:29"}, "cpu: core 1 would have 29 pieces, but its workloads hold 30 of it"),
        ({"cpu": "0:100"}, "cpu: core 1 would have 0 pieces, but its workloads hold 30 of it"),
        ({"cpu": 1}, "cpu: core 1 would have 0 pieces, but its workloads hold 30 of it"),
        ({"cpu": "1:-71", "delta": True}, "cpu: core 1 would have 29 pieces, but its workloads hold 30"),
        ({"cpu": "0:-101", "delta": True}, "cpu: core 0 would have -1 pieces"),
        ({"cpu": "0:0", "node": {"used_cpu_map": {}}}, "invalid cpu map"),
        ({"cpu": "0:-100,1:-100", "delta": True, "node": {"used_cpu_map": {}}}, "invalid cpu map"),
        ({"cpu": 0}, "cpu: 0 cores: give 1 to 4096 cores"),
        ({"cpu": -1, "delta": True}, "(0:-100 takes pieces away)"),
        ({"cpu": 5000}, "cpu: 5000 cores: give 1 to 4096 cores"),
        ({"cpu": "0:-5"}, "cpu: core 0: -5 pieces; give 0 to 2147483647 (negative pieces only with delta)"),
        ({"cpu": "0:100,0:50"}, "cpu: core 0 is given twice"),
        ({"cpu": "a:100"}, "cpu: core 'a' is not a core number"),
        ({"cpu": "-1:100"}, "cpu: core '-1' is not a core number"),
        ({"cpu": "0=100"}, "cpu: '0=100' is not core:pieces"),
        ({"cpu": "0:lots"}, "cpu: core 0: 'lots' is not a number of pieces"),
        ({"cpu": {"0": True}}, "cpu: core 0: True is not a number of pieces"),
        ({"cpu": True}, "cpu: True is not a number of cores or a cpu map"),
        ({"cpu": 1.5}, "cpu: 1.5 is not a number of cores or a cpu map"),
    ],
)
def test_cpu_refusals_name_the_field_and_the_numbers(kwargs: dict[str, Any], message: str) -> None:
    assert message in refused("cpu", **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"memory": GiB - 1}, f"memory: {GiB - 1} bytes would be below the {GiB} bytes its workloads hold"),
        (
            {"memory": -3 * GiB - 1, "delta": True},
            f"memory: {GiB - 1} bytes (now {4 * GiB}, change {-3 * GiB - 1}) would be below the {GiB}",
        ),
        ({"memory": 0, "node": {"used_memory": 0}}, "memory: 0 bytes; a node needs more than 0 bytes"),
        ({"memory": -4 * GiB, "delta": True}, "memory: 0 bytes (now 4294967296, change -4294967296)"),
        ({"memory": 1 << 61}, "is above the limit of 1 EiB"),
        ({"memory": 1.5}, "memory: 1.5 is not a whole number of bytes"),
        ({"memory": "4G"}, "memory: '4G' is not a number of bytes"),
    ],
)
def test_memory_refusals_name_the_field_and_the_numbers(kwargs: dict[str, Any], message: str) -> None:
    assert message in refused("memory", **kwargs)


def test_a_drifted_field_does_not_block_changing_the_other() -> None:
    assert set_capacity(node(used_cpu_map={"1": 300}), memory=16 * GiB)[1] == 16 * GiB
    assert set_capacity(node(used_memory=8 * GiB), cpu="0:50", delta=True)[0] == {"0": 150, "1": 100}


def test_cores_the_engine_does_not_have_need_over_commit() -> None:
    message = refused("cpu", cpu=4, ncpu=2)
    assert message == (
        "cpu: the engine reports 2 cores (NCPU), but core 2, 3 would be beyond them (4 cores in all); "
        "set over_commit to declare them anyway"
    )
    assert "core 5" in refused("cpu", cpu="0:100,1:30,5:100", ncpu=2)
    assert set_capacity(node(), cpu=4, ncpu=2, over_commit=True)[0] == {str(i): 100 for i in range(4)}
    assert set_capacity(node(), cpu="0:300,1:100", ncpu=2)[0] == {"0": 300, "1": 100}  # pieces: fine
    assert set_capacity(node(), cpu=4)[0] == {str(i): 100 for i in range(4)}  # NCPU unknown
    assert set_capacity(node(cpu_map={str(i): 100 for i in range(4)}), memory=GiB * 2, ncpu=2)[1] == 2 * GiB


def test_the_result_is_in_core_order() -> None:
    cpu_map, _ = set_capacity(node(), cpu="10:100,2:100,1:100")
    assert list(cpu_map) == ["1", "2", "10"]
