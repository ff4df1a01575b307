"""Table-driven tests of cpu plans (cases from Eru's cpumem schedule_test.go, node_test.go and more)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from scheduling import CPUPlan, GiB, InvalidRequest, cpu_plan_count, cpu_plans


def maps(plans: list[CPUPlan]) -> list[dict[str, int]]:
    return [p.cpu_map for p in plans]


def usage_after(plans: list[CPUPlan]) -> dict[str, int]:
    used: dict[str, int] = {}
    for p in plans:
        for core, pieces in p.cpu_map.items():
            used[core] = used.get(core, 0) + pieces
    return used


def check(cpu_map: Mapping[str, int], cpu_request: float, **kwargs: Any) -> list[CPUPlan]:
    """cpu_plans, also checking that cpu_plan_count agrees and that all plans fit together."""
    plans = cpu_plans(cpu_map, cpu_request, **kwargs)
    assert cpu_plan_count(cpu_map, cpu_request, **kwargs) == len(plans)
    for core, pieces in usage_after(plans).items():
        assert pieces <= cpu_map[core]
    return plans


def full_cores(n: int, pieces: int = 100) -> dict[str, int]:
    return {str(i): pieces for i in range(n)}


@pytest.mark.parametrize(
    ("cpu_map", "request_", "expected"),
    [
        # whole cores: the least busy cores are taken, plans sorted busiest-first
        (
            {"0": 400, "1": 200, "2": 400},
            2,
            [
                {"0": 100, "1": 100},
                {"2": 100, "1": 100},
                {"2": 100, "0": 100},
                {"2": 100, "0": 100},
                {"0": 100, "2": 100},
            ],
        ),
        (
            {"0": 200, "1": 200, "2": 200},
            2,
            [{"0": 100, "1": 100}, {"0": 100, "2": 100}, {"1": 100, "2": 100}],
        ),
        ({"0": 100, "1": 100, "2": 100, "3": 100}, 1, [{"0": 100}, {"1": 100}, {"2": 100}, {"3": 100}]),
        ({"0": 100, "1": 100, "2": 100}, 2, [{"1": 100, "2": 100}]),
        # oversold cores serve several plans
        ({"0": 300, "1": 300}, 2, [{"0": 100, "1": 100}] * 3),
        ({"0": 300}, 0.5, [{"0": 50}] * 6),
        (
            {"0": 100, "1": 200, "2": 300},
            1,
            [{"0": 100}, {"1": 100}, {"1": 100}, {"2": 100}, {"2": 100}, {"2": 100}],
        ),
        # fragments only: busiest fragment cores first, whole cores become fragment cores
        ({"0": 70, "1": 50, "2": 90}, 0.5, [{"1": 50}, {"0": 50}, {"2": 50}]),
        ({"0": 100, "1": 40}, 0.3, [{"1": 30}, {"0": 30}, {"0": 30}, {"0": 30}]),
        # mixed: convert busy whole cores to fragment cores while that helps
        (
            {"0": 70, "1": 100, "2": 400},
            1.3,
            [{"0": 30, "2": 100}, {"0": 30, "2": 100}, {"1": 30, "2": 100}, {"1": 30, "2": 100}],
        ),
        ({"0": 230, "1": 200}, 1.7, [{"0": 70, "1": 100}, {"0": 70, "1": 100}]),
        (full_cores(4), 1.3, [{"0": 30, "1": 100}, {"0": 30, "2": 100}, {"0": 30, "3": 100}]),
        # nothing fits
        ({"0": 100, "1": 60}, 2, []),
        ({"0": 20, "1": 20}, 0.3, []),
        ({}, 1, []),
        ({"0": 0, "1": -5}, 0.1, []),
    ],
)
def test_plans(cpu_map: dict[str, int], request_: float, expected: list[dict[str, int]]) -> None:
    assert maps(check(cpu_map, request_)) == expected


@pytest.mark.parametrize(
    ("cpu_map", "request_", "take", "usage"),
    [
        # Eru's "stable fragment core": the same fragment core keeps being used
        ({"0": 230, "1": 200}, 1.7, 1, {"0": 70, "1": 100}),
        ({"0": 230, "1": 80, "2": 300, "3": 200}, 1.7, 2, {"0": 70, "1": 70, "3": 200}),
        ({"0": 70, "1": 50, "2": 100, "3": 100, "4": 100}, 1.7, 2, {"0": 70, "2": 70, "3": 100, "4": 100}),
        ({"0": 70, "1": 50, "2": 90}, 0.5, 2, {"0": 50, "1": 50}),
    ],
)
def test_taking_plans_from_the_front_packs_cores(
    cpu_map: dict[str, int], request_: float, take: int, usage: dict[str, int]
) -> None:
    assert usage_after(check(cpu_map, request_)[:take]) == usage


def test_same_fragment_core_after_applying_a_plan() -> None:
    first = check({"0": 230, "1": 200}, 1.7)[0]
    assert first.cpu_map == {"0": 70, "1": 100}
    again = check({"0": 230 - 70, "1": 200 - 100}, 1.7)[0]
    assert again.cpu_map == {"0": 70, "1": 100}


def test_share_base_10() -> None:
    # 24 cores of 10 pieces, 1.3 cpu = 1 whole core + 3 pieces: 6 cores become fragment cores.
    # Ties are broken by core id as a string, as in Go: "0" < "1" < "10" < ... < "13" < "14" < "2".
    plans = check(full_cores(24, 10), 1.3, share_base=10)
    assert len(plans) == 18
    assert plans[0].cpu_map == {"0": 3, "14": 10}
    split = {"0", "1", "10", "11", "12", "13"}
    assert usage_after(plans) == {str(i): 9 if str(i) in split else 10 for i in range(24)}


@pytest.mark.parametrize(
    ("cpu_map", "request_", "cap", "count"),
    [
        (full_cores(6), 1.7, 2, 2),  # Eru's maxshare = 2 test
        (full_cores(6), 1.7, -1, 3),
        (full_cores(6), 1.7, 0, 0),
        (full_cores(4), 0.5, 1, 2),  # only one whole core may be split
        (full_cores(4), 0.5, 0, 0),
        (full_cores(4), 1, 0, 4),  # whole-core requests are not capped
        ({"0": 50, "1": 100}, 0.5, 0, 1),  # already fragmented cores stay usable (Go would panic)
    ],
)
def test_max_fragment_cores(cpu_map: dict[str, int], request_: float, cap: int, count: int) -> None:
    assert len(check(cpu_map, request_, max_fragment_cores=cap)) == count


def test_memory_truncates_plans() -> None:
    plans = check(full_cores(4), 1.3, memory=4 * GiB, memory_request=3 * GiB)
    assert maps(plans) == [{"0": 30, "1": 100}]
    assert check(full_cores(4), 1.3, memory=0, memory_request=1) == []
    assert check(full_cores(4), 1.3, memory=-GiB, memory_request=1) == []
    assert len(check(full_cores(4), 1.3, memory=0, memory_request=0)) == 3


def test_numa_plans_then_cross_numa() -> None:
    numa = {"0": "0", "1": "0", "2": "1", "3": "1"}
    plans = check(
        full_cores(4),
        1.3,
        memory=4 * GiB,
        memory_request=1,
        numa=numa,
        numa_memory={"0": 2 * GiB, "1": 2 * GiB},
    )
    assert plans == [CPUPlan({"0": 30, "1": 100}, "0"), CPUPlan({"2": 30, "3": 100}, "1")]

    numa = {"0": "0", "1": "0", "2": "0", "3": "1", "4": "1", "5": "1"}
    plans = check(
        full_cores(6),
        2,
        memory=6 * GiB,
        memory_request=2 * GiB,
        numa=numa,
        numa_memory={"0": 3 * GiB, "1": 3 * GiB},
    )
    assert plans == [
        CPUPlan({"2": 100, "1": 100}, "0"),
        CPUPlan({"5": 100, "4": 100}, "1"),
        CPUPlan({"3": 100, "0": 100}, ""),
    ]


def test_numa_node_without_memory_gets_no_plans() -> None:
    numa = {"0": "0", "1": "1"}
    plans = check(full_cores(2), 1, memory=2 * GiB, memory_request=GiB, numa=numa, numa_memory={"1": GiB})
    assert plans == [CPUPlan({"1": 100}, "1"), CPUPlan({"0": 100}, "")]


@pytest.mark.parametrize(
    ("free", "origin", "request_", "expected"),
    [
        ({"0": 0, "1": 30, "2": 0}, {"0": 100, "1": 30, "2": 40}, 1, [{"0": 100}]),
        ({"0": 0, "1": 30, "2": 0}, {"0": 100, "1": 30, "2": 40}, 1.2, [{"0": 100, "1": 20}]),
        ({"0": 0, "1": 80, "2": 0, "3": 0}, {"0": 100, "1": 20, "2": 40, "3": 10}, 2, [{"0": 100, "1": 100}]),
        ({"0": 0, "1": 69, "2": 10}, {"0": 100, "1": 30, "2": 40}, 2, []),
        ({"0": 0, "1": 70, "2": 10}, {"0": 100, "1": 30, "2": 40}, 2, [{"0": 100, "1": 100}]),
        (
            {"0": 100, "1": 60, "2": 0, "3": 100, "4": 100},
            {"0": 100, "1": 30, "2": 40},
            2,
            [{"0": 100, "3": 100}, {"0": 100, "4": 100}],
        ),
        ({"0": 0, "1": 60, "2": 0}, {"0": 100, "1": 30, "2": 40}, 2, []),
    ],
)
def test_realloc_affinity(
    free: dict[str, int], origin: dict[str, int], request_: float, expected: list[dict[str, int]]
) -> None:
    available = {core: free[core] + origin.get(core, 0) for core in free}
    assert maps(check(available, request_, origin=origin)) == expected


@pytest.mark.parametrize(
    ("request_", "share_base", "field"),
    [
        (0.001, 100, "cpu_request"),
        (0.09, 10, "cpu_request"),
        (0, 100, "cpu_request"),
        (float("nan"), 100, "cpu_request"),
        (1, 0, "share_base"),
    ],
)
def test_request_below_one_piece_is_rejected(request_: float, share_base: int, field: str) -> None:
    with pytest.raises(InvalidRequest) as error:
        cpu_plans(full_cores(2), request_, share_base=share_base)
    assert error.value.field == field
    with pytest.raises(InvalidRequest):
        cpu_plan_count(full_cores(2), request_, share_base=share_base)


def test_pieces_truncate_like_go() -> None:
    # 0.29 * 100 = 28.999999999999996 in float64: Eru asks for 28 pieces
    assert maps(check({"0": 28}, 0.29)) == [{"0": 28}]


def test_inputs_not_mutated() -> None:
    cpu_map = {"0": 100, "1": 60}
    numa = {"0": "0", "1": "0"}
    numa_memory = {"0": GiB}
    origin = {"0": 40}
    check(cpu_map, 0.4, memory=GiB, memory_request=1, numa=numa, numa_memory=numa_memory, origin=origin)
    assert (cpu_map, numa, numa_memory, origin) == (
        {"0": 100, "1": 60},
        {"0": "0", "1": "0"},
        {"0": GiB},
        {"0": 40},
    )
