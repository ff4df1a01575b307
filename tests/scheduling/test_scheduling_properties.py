"""Property tests: the fast algorithms agree with step-by-step references of Eru's Go code, and
plans never break capacity, totals or limits."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from scheduling import (
    NodeInfo,
    NodeResources,
    SchedulingError,
    allocate,
    cpu_plan_count,
    cpu_plans,
    node_deploy_capacity,
    normalize_request,
    plan,
    release,
)
from tests.scheduling.scheduling_oracle import GoPanic, go_cpu_plans, heap_auto, heap_global

# SCHEDULING_EXAMPLES=20000 for a long soak; the default keeps the suite at a few seconds.
MAX_EXAMPLES = int(os.environ.get("SCHEDULING_EXAMPLES", "200"))
EXAMPLES = settings(max_examples=MAX_EXAMPLES, deadline=None)


@st.composite
def node_infos(draw: st.DrawFn, max_nodes: int = 8) -> list[NodeInfo]:
    size = draw(st.integers(0, max_nodes))
    return [
        NodeInfo(
            f"n{i}",
            draw(st.integers(0, 30)),
            draw(st.integers(0, 30)),
            draw(st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.7])),
            draw(st.sampled_from([0.0, 0.01, 0.05, 0.1, 0.3])),
        )
        for i in range(size)
    ]


def outcome(
    method: Callable[[Sequence[NodeInfo], int, int, int], dict[str, int]],
    infos: Sequence[NodeInfo],
    need: int,
    total: int,
    limit: int,
) -> dict[str, int] | tuple[str, str]:
    try:
        return method(infos, need, total, limit)
    except SchedulingError as error:
        return (type(error).__name__, str(error))


def fast(strategy: str) -> Callable[[Sequence[NodeInfo], int, int, int], dict[str, int]]:
    return lambda infos, need, total, limit: plan(strategy, infos, need, total, limit)


@EXAMPLES
@given(node_infos(), st.integers(1, 300), st.integers(0, 35), st.booleans(), st.integers(0, 400))
def test_auto_is_the_heap_algorithm(
    infos: list[NodeInfo], need: int, limit: int, true_total: bool, total: int
) -> None:
    if true_total:
        total = sum(i.capacity for i in infos)
    assert outcome(fast("AUTO"), infos, need, total, limit) == outcome(heap_auto, infos, need, total, limit)


@EXAMPLES
@given(
    st.lists(st.tuples(st.integers(0, 2000), st.integers(1, 3000)), max_size=40),
    st.integers(1, 20000),
    st.integers(0, 2500),
)
def test_auto_is_the_heap_algorithm_at_scale(nodes: list[tuple[int, int]], need: int, limit: int) -> None:
    infos = [NodeInfo(f"n{i}", capacity, count) for i, (count, capacity) in enumerate(nodes)]
    total = sum(capacity for _, capacity in nodes)
    assert outcome(fast("AUTO"), infos, need, total, limit) == outcome(heap_auto, infos, need, total, limit)


@EXAMPLES
@given(node_infos(), st.integers(1, 200))
def test_global_is_the_heap_algorithm(infos: list[NodeInfo], need: int) -> None:
    total = sum(i.capacity for i in infos)
    assert outcome(fast("GLOBAL"), infos, need, total, 0) == outcome(heap_global, infos, need, total, 0)


@EXAMPLES
@given(
    node_infos(12), st.integers(1, 200), st.integers(0, 14), st.sampled_from(["AUTO", "GLOBAL", "DRAINED"])
)
def test_plans_fit_and_sum_to_need(infos: list[NodeInfo], need: int, limit: int, strategy: str) -> None:
    total = sum(i.capacity for i in infos)
    try:
        deploy = plan(strategy, infos, need, total, limit)
    except SchedulingError:
        if strategy != "AUTO" or limit == 0:
            assert total < need
        return
    assert sum(deploy.values()) == need
    by_name = {i.name: i for i in infos}
    for name, n in deploy.items():
        assert 0 <= n <= by_name[name].capacity
        if strategy == "AUTO" and limit:
            assert by_name[name].count + n <= limit
        if strategy != "DRAINED":
            assert n > 0


@EXAMPLES
@given(node_infos(), st.integers(1, 40))
def test_auto_counts_are_even(infos: list[NodeInfo], need: int) -> None:
    """Without caps in the way, final counts of the nodes that got instances differ by at most one
    from the lowest final count, and no node is left below a node that received one."""
    roomy = [NodeInfo(i.name, 1000, i.count) for i in infos]
    if not roomy:
        return
    deploy = plan("AUTO", roomy, need, 1000 * len(roomy))
    final = {i.name: i.count + deploy.get(i.name, 0) for i in roomy}
    lowest = min(final.values())
    for name in deploy:
        assert final[name] <= lowest + 1


@EXAMPLES
@given(node_infos(12), st.integers(1, 35), st.integers(0, 14))
def test_fill_and_each_respect_limit(infos: list[NodeInfo], need: int, limit: int) -> None:
    chosen = limit or len(infos)
    by_name = {i.name: i for i in infos}
    try:
        deploy = plan("FILL", infos, need, 0, limit)
    except SchedulingError:
        pass
    else:
        assert len(deploy) == chosen
        for name, n in deploy.items():
            assert n <= by_name[name].capacity
            assert by_name[name].count + n >= need
    try:
        deploy = plan("EACH", infos, need, 0, limit)
    except SchedulingError:
        assert sum(1 for i in infos if i.capacity >= need) < max(chosen, 1) or len(infos) < chosen
    else:
        assert len(deploy) == chosen
        assert all(n == need and by_name[name].capacity >= need for name, n in deploy.items())


# --- cpu plans -------------------------------------------------------------------------------


@st.composite
def cpu_cases(draw: st.DrawFn) -> dict[str, Any]:
    share_base = draw(st.sampled_from([100, 10]))
    cores = draw(st.integers(0, 7))
    piece_values = st.one_of(
        st.sampled_from([0, share_base, 2 * share_base, 3 * share_base]), st.integers(0, 4 * share_base)
    )
    cpu_map = {str(i): draw(piece_values) for i in range(cores)}
    case: dict[str, Any] = {
        "cpu_map": cpu_map,
        "cpu_request": draw(st.integers(1, 4 * share_base)) / share_base,
        "share_base": share_base,
        "max_fragment_cores": draw(st.one_of(st.just(-1), st.integers(0, cores))),
    }
    if draw(st.booleans()):
        case["memory_request"] = draw(st.integers(1, 4))
        case["memory"] = draw(st.integers(0, 24))
    if cores and draw(st.booleans()):
        numa = {core: draw(st.sampled_from(["0", "1", "2"])) for core in cpu_map}
        case["numa"] = numa
        case["numa_memory"] = {n: draw(st.integers(0, 12)) for n in set(numa.values())}
    if cores and draw(st.booleans()):
        case["origin"] = {
            core: draw(st.integers(0, 2 * share_base)) for core in cpu_map if draw(st.booleans())
        }
    return case


def fits(plans: Sequence[Mapping[str, int]], case: Mapping[str, Any]) -> None:
    share_base = case["share_base"]
    pieces = int(case["cpu_request"] * share_base)
    used: dict[str, int] = {}
    for cpu in plans:
        assert sum(cpu.values()) == pieces
        assert sum(1 for p in cpu.values() if p == share_base) == pieces // share_base
        for core, p in cpu.items():
            used[core] = used.get(core, 0) + p
    for core, p in used.items():
        assert p <= case["cpu_map"][core]


@EXAMPLES
@given(cpu_cases())
def test_cpu_plans_are_eru_plans(case: dict[str, Any]) -> None:
    plans = cpu_plans(**case)
    fits([p.cpu_map for p in plans], case)
    try:
        expected = go_cpu_plans(**case)
    except GoPanic:  # Eru would crash; we keep the already fragmented cores usable
        return
    assert [(p.cpu_map, p.numa_node) for p in plans] == expected


@EXAMPLES
@given(cpu_cases())
def test_cpu_plan_count_is_the_number_of_plans(case: dict[str, Any]) -> None:
    assert cpu_plan_count(**case) == len(cpu_plans(**case))


@settings(max_examples=max(MAX_EXAMPLES // 2, 1), deadline=None)
@given(
    st.integers(1, 12),
    st.sampled_from([10, 100]),
    st.integers(1, 400),
    st.one_of(st.just(-1), st.integers(0, 12)),
    st.lists(st.integers(0, 400), min_size=12, max_size=12),
)
def test_counting_matches_plans_on_bigger_nodes(
    cores: int, share_base: int, pieces: int, cap: int, available: list[int]
) -> None:
    cpu_map = {str(i): available[i] * share_base // 100 for i in range(cores)}
    cpu_request = pieces / 100
    if int(cpu_request * share_base) == 0:
        return
    count = cpu_plan_count(cpu_map, cpu_request, share_base=share_base, max_fragment_cores=cap)
    try:
        expected = go_cpu_plans(cpu_map, cpu_request, share_base=share_base, max_fragment_cores=cap)
    except GoPanic:
        return
    assert count == len(expected)


# --- allocation ------------------------------------------------------------------------------


@EXAMPLES
@given(
    st.lists(st.integers(0, 300), min_size=1, max_size=6),
    st.integers(1, 300),
    st.booleans(),
    st.integers(0, 4),
    st.integers(0, 8),
)
def test_allocate_within_capacity_and_release_restores(
    free: list[int], pieces: int, bind: bool, memory_request: int, memory: int
) -> None:
    n = NodeResources(
        "n",
        {str(i): 300 for i in range(len(free))},
        memory,
        {str(i): 300 - f for i, f in enumerate(free)},
        0.0,
        0,
    )
    req = normalize_request(cpu_request=pieces / 100, memory_request=memory_request, cpu_bind=bind)
    info = node_deploy_capacity(n, req)
    capacity = 0 if info is None else min(info.capacity, 50)
    a = allocate(n, req, capacity)
    assert len(a.cpu_maps) == capacity
    for core, used in a.used_cpu_map.items():
        assert used <= n.cpu_map[core]
    assert a.used_memory <= max(memory, 0) or memory_request == 0
    state = NodeResources("n", n.cpu_map, memory, a.used_cpu_map, a.used_cpu, a.used_memory)
    for cpu in a.cpu_maps:
        used_cpu_map, used_cpu, used_memory = release(state, req, cpu)
        state = NodeResources("n", n.cpu_map, memory, used_cpu_map, used_cpu, used_memory)
    assert {c: p for c, p in state.used_cpu_map.items() if p} == {
        c: p for c, p in n.used_cpu_map.items() if p
    }
    assert abs(state.used_cpu) < 1e-6
    assert state.used_memory == 0
