"""Table-driven tests of the deploy strategies (cases from Eru's strategy/*_test.go and §3.10)."""

from __future__ import annotations

import pytest

from scheduling import (
    AlreadyFilled,
    InvalidRequest,
    NodeInfo,
    NotEnoughResource,
    SchedulingError,
    plan,
)

RESOURCE = "cannot alloc a plan, not enough resource"
CAPACITY = "cannot alloc a plan, not enough nodes capacity"


def nodes(capacities: list[int], counts: list[int]) -> list[NodeInfo]:
    return [
        NodeInfo(str(i), cap, count) for i, (cap, count) in enumerate(zip(capacities, counts, strict=True))
    ]


def deployed() -> list[NodeInfo]:
    return [NodeInfo("n1", 10, 2), NodeInfo("n2", 10, 3), NodeInfo("n3", 10, 5), NodeInfo("n4", 10, 7)]


def final_counts(deploy: dict[str, int], infos: list[NodeInfo]) -> list[int]:
    return sorted(info.count + deploy.get(info.name, 0) for info in infos)


# --- AUTO ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("need", "expected"),
    [
        (1, [3, 3, 5, 7]),
        (2, [3, 4, 5, 7]),
        (3, [4, 4, 5, 7]),
        (4, [4, 5, 5, 7]),
        (29, [11, 11, 12, 12]),
        (37, [12, 13, 14, 15]),
        (40, [12, 13, 15, 17]),
    ],
)
def test_auto_evens_out_counts(need: int, expected: list[int]) -> None:
    infos = deployed()
    assert final_counts(plan("AUTO", infos, need, 100), infos) == expected


@pytest.mark.parametrize(
    ("capacities", "counts", "need", "expected"),
    [
        # equal counts: the node with the most capacity first
        ([1, 2, 1, 5, 10], [0, 0, 0, 0, 0], 3, {"1": 1, "3": 1, "4": 1}),
        ([10, 4, 4], [1, 1, 10], 5, {"0": 3, "1": 2}),
        ([4, 5, 4, 10], [2, 2, 4, 0], 3, {"3": 3}),
        ([3, 4, 5, 10], [0, 0, 0, 0], 3, {"1": 1, "2": 1, "3": 1}),
        # equal counts and capacities: input order
        ([5, 5, 5], [0, 0, 0], 2, {"0": 1, "1": 1}),
        # capacity runs out, the rest spills over
        ([1, 10], [0, 0], 5, {"0": 1, "1": 4}),
        # every instance used
        ([2, 3], [4, 0], 5, {"0": 2, "1": 3}),
    ],
)
def test_auto_capacity_priority(
    capacities: list[int], counts: list[int], need: int, expected: dict[str, int]
) -> None:
    infos = nodes(capacities, counts)
    assert plan("AUTO", infos, need, sum(capacities)) == expected


def test_auto_limit_is_max_instances_per_node() -> None:
    infos = nodes([3, 4, 5, 10], [3, 5, 7, 10])
    with pytest.raises(NotEnoughResource) as error:
        plan("AUTO", infos, 3, 10, 5)
    assert str(error.value) == f"reached nodelimit, a node can host at most 5 instances: {RESOURCE}"
    assert plan("AUTO", infos, 3, 10, 6) == {"0": 2, "1": 1}
    assert plan("AUTO", infos, 3, 100, 8) == {"0": 2, "1": 1}


def test_auto_total_below_need() -> None:
    with pytest.raises(NotEnoughResource) as error:
        plan("AUTO", deployed(), 2, 1)
    assert str(error.value) == f"need: 2, available: 1: {RESOURCE}"


def test_auto_total_overstated_runs_out_of_nodes() -> None:
    with pytest.raises(NotEnoughResource) as error:
        plan("AUTO", nodes([1, 1], [0, 0]), 3, 100)
    assert str(error.value) == f"reached nodelimit, a node can host at most 0 instances: {RESOURCE}"


def test_auto_with_unlimited_capacity() -> None:
    big = 2**63 - 1
    infos = [NodeInfo("a", big, 3), NodeInfo("b", big, 0), NodeInfo("c", 2, 0)]
    assert plan("AUTO", infos, 7, big) == {"a": 1, "b": 4, "c": 2}


# --- FILL ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("need", "limit", "expected"),
    [
        (10, 0, [10, 10, 10, 10]),
        (5, 0, [5, 5, 5, 7]),
        (10, 2, [2, 3, 10, 10]),  # the nodes with most instances are topped up first
    ],
)
def test_fill(need: int, limit: int, expected: list[int]) -> None:
    infos = deployed()
    assert final_counts(plan("FILL", infos, need, 0, limit), infos) == expected


def test_fill_counts_nodes_already_there() -> None:
    infos = nodes([1, 2, 3, 4, 5], [3, 3, 3, 3, 3])
    deploy = plan("FILL", infos, 4, 0, 3)
    assert deploy == {"4": 1, "3": 1, "2": 1}
    deploy = plan("FILL", deployed(), 5, 0, 0)
    assert deploy == {"n4": 0, "n3": 0, "n2": 2, "n1": 3}


@pytest.mark.parametrize(
    ("infos", "need", "limit", "error_type", "message"),
    [
        (
            deployed(),
            15,
            0,
            NotEnoughResource,
            f"not enough nodes that can fill up to 15 instances, require 2 nodes: {RESOURCE}",
        ),
        (deployed(), 1, 0, AlreadyFilled, "cannot alloc a fill node plan, each node has enough workloads"),
        (
            [NodeInfo("65", 0, 0), NodeInfo("67", 10, 0)],
            1,
            3,
            NotEnoughResource,
            f"node len 2 cannot alloc a fill node plan: {RESOURCE}",
        ),
        (
            nodes([1, 2, 3, 4, 5], [3] * 5),
            5,
            0,
            NotEnoughResource,
            f"not enough nodes that can fill up to 5 instances, require 1 nodes: {RESOURCE}",
        ),
        (
            [],
            3,
            0,
            NotEnoughResource,
            f"not enough nodes that can fill up to 3 instances, require 0 nodes: {RESOURCE}",
        ),
        ([], 3, 2, NotEnoughResource, f"node len 0 cannot alloc a fill node plan: {RESOURCE}"),
    ],
)
def test_fill_errors(
    infos: list[NodeInfo], need: int, limit: int, error_type: type[SchedulingError], message: str
) -> None:
    with pytest.raises(error_type) as error:
        plan("FILL", infos, need, 1000, limit)
    assert str(error.value) == message


# --- EACH ------------------------------------------------------------------------------------


def test_each() -> None:
    infos = deployed()
    assert final_counts(plan("EACH", infos, 1, 0, 0), infos) == [3, 4, 6, 8]
    assert plan("EACH", infos, 1, 1, 1) == {"n1": 1}
    # largest capacity first, ties in input order
    assert plan("EACH", nodes([1, 5, 3, 5], [0] * 4), 2, 0, 2) == {"1": 2, "3": 2}


@pytest.mark.parametrize(
    ("infos", "need", "limit", "message"),
    [
        (deployed(), 100, 5, f"node len 4 < limit, cannot alloc an average node plan: {RESOURCE}"),
        (deployed(), 100, 0, f"insufficient nodes, at least 1 needed: {CAPACITY}"),
        (
            nodes([1, 2, 3, 4, 5], [3] * 5),
            4,
            4,
            f"not enough nodes with capacity of 4, require 4 nodes: {RESOURCE}",
        ),
        (
            nodes([1, 2, 3, 4, 5], [3] * 5),
            2,
            0,
            f"not enough nodes with capacity of 2, require 5 nodes: {RESOURCE}",
        ),
        ([], 3, 0, f"insufficient nodes, at least 1 needed: {CAPACITY}"),
        ([], 3, 2, f"node len 0 < limit, cannot alloc an average node plan: {RESOURCE}"),
    ],
)
def test_each_errors(infos: list[NodeInfo], need: int, limit: int, message: str) -> None:
    with pytest.raises(NotEnoughResource) as error:
        plan("EACH", infos, need, 100, limit)
    assert str(error.value) == message


# --- GLOBAL ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("infos", "need", "expected"),
    [
        (
            [
                NodeInfo("n1", 1, 0, 0.8, 0.05),
                NodeInfo("n2", 2, 0, 0.5, 0.12),
                NodeInfo("n3", 1, 0, 2.2, 0.05),
            ],
            3,
            {"n1": 1, "n2": 2},
        ),
        (
            [
                NodeInfo("n1", 4, 0, 0.8, 0.05),
                NodeInfo("n2", 1, 0, 0.5, 0.35),
                NodeInfo("n3", 1, 0, 2.2, 0.05),
            ],
            3,
            {"n1": 2, "n2": 1},
        ),
        (
            [
                NodeInfo("n1", 10**10, 0, 0.8, 0),
                NodeInfo("n2", 10**10, 0, 0.5, 0),
                NodeInfo("n3", 10**10, 0, 2.2),
            ],
            10,
            {"n2": 10},
        ),
        ([NodeInfo("n2", 100, 0, 0.5, 0.11), NodeInfo("n1", 100, 0, 1.6, 0.05)], 2, {"n2": 2}),
        ([NodeInfo("n1", 100, 0, 0.5259232954545454, 0.0000712)], 1, {"n1": 1}),
        ([NodeInfo("n1", 100, 21, 1, 0.3)], 10, {"n1": 10}),
        # white paper's example: HEAD gives 3/0/0
        (
            [
                NodeInfo("a", 10, 0, 0.01, 0.004),
                NodeInfo("b", 10, 0, 0.02, 0.006),
                NodeInfo("c", 10, 0, 0.03, 0.01),
            ],
            3,
            {"a": 3},
        ),
        # equal keys: input order
        ([NodeInfo("x", 5, 0, 0.5, 0.1), NodeInfo("y", 5, 0, 0.5, 0.1)], 3, {"x": 2, "y": 1}),
    ],
)
def test_global(infos: list[NodeInfo], need: int, expected: dict[str, int]) -> None:
    assert plan("GLOBAL", infos, need, 100) == expected


def test_global_issue_455_tiny_rates() -> None:
    rate = 3.725290298461914e-08
    infos = [
        NodeInfo("spp-qa-vm-node-1", 10726691, 7, 0.07999999999999996, rate),
        NodeInfo("spp-qa-vm-node-2", 4290676, 5, 0.24, rate),
        NodeInfo("spp-qa-vm-node-3", 4290676, 6, 0.45999999999999996, rate),
    ]
    assert plan("GLOBAL", infos, 1, 19308043, 1) == {"spp-qa-vm-node-1": 1}


@pytest.mark.parametrize(
    ("need", "total", "message"), [(100, 6, "need: 100, available: 6"), (10, 100, "need: 10, available: 6")]
)
def test_global_errors(need: int, total: int, message: str) -> None:
    infos = [
        NodeInfo("n1", 4, 0, 0.8, 0.05),
        NodeInfo("n2", 1, 0, 0.5, 0.35),
        NodeInfo("n3", 1, 0, 2.2, 0.05),
    ]
    with pytest.raises(NotEnoughResource) as error:
        plan("GLOBAL", infos, need, total)
    assert str(error.value) == f"{message}: {RESOURCE}"


# --- DRAINED ---------------------------------------------------------------------------------


def drained_nodes() -> list[NodeInfo]:
    return [NodeInfo("n1", 10, 2), NodeInfo("n2", 9, 3), NodeInfo("n3", 10, 5), NodeInfo("n4", 8, 7)]


@pytest.mark.parametrize(
    ("need", "expected"),
    [
        (1, [2, 3, 5, 8]),
        (2, [2, 3, 5, 9]),
        (3, [2, 3, 5, 10]),
        (10, [2, 5, 5, 15]),
        (25, [5, 10, 12, 15]),
        (29, [7, 12, 12, 15]),
        (37, [12, 12, 15, 15]),
    ],
)
def test_drained(need: int, expected: list[int]) -> None:
    infos = drained_nodes()
    assert final_counts(plan("DRAINED", infos, need, 100), infos) == expected


def test_drained_prefers_busier_node_on_equal_capacity() -> None:
    infos = [NodeInfo("idle", 5, 0, 0.1), NodeInfo("busy", 5, 0, 0.9), NodeInfo("big", 9, 0, 0.0)]
    assert plan("DRAINED", infos, 7, 19) == {"busy": 5, "idle": 2}


def test_drained_follows_gos_comparator_for_small_pods() -> None:
    # Eru's less() is "capacity smaller OR usage larger": with 12 nodes or fewer Go's insertion sort
    # puts the busier node first even though it has more capacity.
    infos = [NodeInfo("small", 3, 0, 0.1), NodeInfo("busy", 6, 0, 0.9)]
    assert plan("DRAINED", infos, 4, 9) == {"busy": 4}


def test_drained_errors() -> None:
    with pytest.raises(NotEnoughResource) as error:
        plan("DRAINED", drained_nodes(), 2, 1)
    assert str(error.value) == f"need: 2, available: 1: {RESOURCE}"


# --- common ----------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["AUTO", "GLOBAL", "DRAINED"])
def test_no_node_has_capacity(strategy: str) -> None:
    with pytest.raises(NotEnoughResource) as error:
        plan(strategy, [], 3, 0)
    assert str(error.value) == f"need: 3, available: 0: {RESOURCE}"


@pytest.mark.parametrize("strategy", ["DUMMY", "auto", "RANDOM", ""])
def test_unknown_strategy(strategy: str) -> None:
    with pytest.raises(InvalidRequest) as error:
        plan(strategy, deployed(), 1, 100)
    assert str(error.value) == "deploy method not support yet"
    assert error.value.field == "strategy"


@pytest.mark.parametrize("count", [0, -1])
def test_invalid_count(count: int) -> None:
    with pytest.raises(InvalidRequest) as error:
        plan("AUTO", deployed(), count, 100)
    assert str(error.value) == "invalid deploy count"
    assert error.value.field == "count"


def test_negative_nodes_limit() -> None:
    with pytest.raises(InvalidRequest) as error:
        plan("FILL", deployed(), 1, 100, -1)
    assert error.value.field == "nodes_limit"


@pytest.mark.parametrize("strategy", ["AUTO", "FILL", "EACH", "GLOBAL", "DRAINED"])
def test_inputs_not_mutated(strategy: str) -> None:
    infos = [NodeInfo("b", 3, 4, 0.3, 0.1), NodeInfo("a", 7, 1, 0.1, 0.2), NodeInfo("c", 5, 1, 0.2, 0.1)]
    snapshot = list(infos)
    plan(strategy, infos, 2, 15, 0)  # the list itself: a sort in place would show here
    assert infos == snapshot


def test_node_info_rejects_negative_numbers() -> None:
    with pytest.raises(ValueError, match="capacity and count must be >= 0"):
        NodeInfo("x", -1)
    with pytest.raises(ValueError, match="capacity and count must be >= 0"):
        NodeInfo("x", 1, -2)
