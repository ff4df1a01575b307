"""Eru's deploy strategies (``core/strategy/*.go``): pure functions from node infos to a deploy map.

Every strategy receives only the nodes that can take at least one more instance, each as a
:class:`NodeInfo` (``capacity`` = how many more instances fit, ``count`` = instances of the same
app/entrypoint already there, ``usage``/``rate`` = utilisation now and per instance), plus ``need``,
``total`` (the sum of capacities, as Eru computes it upstream) and ``limit`` (``nodes_limit``).

Ties among equal keys are broken by input order (Eru's are broken by Go map iteration order, i.e.
at random), so the result is deterministic. Inputs are never mutated.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import compress

from scheduling.errors import AlreadyFilled, InvalidRequest, NotEnoughResource
from scheduling.waterlevel import level_counts

__all__ = [
    "AUTO",
    "DRAINED",
    "DUMMY",
    "EACH",
    "FILL",
    "GLOBAL",
    "STRATEGIES",
    "NodeInfo",
    "plan",
]

AUTO = "AUTO"
FILL = "FILL"
EACH = "EACH"
GLOBAL = "GLOBAL"
DRAINED = "DRAINED"
DUMMY = "DUMMY"  # capacity dry run only (see resources.deploy_capacity); not a deploy strategy

# Go's sort.Slice sorts up to 12 elements with a (stable) insertion sort.
_GO_INSERTION_SORT_MAX = 12
# GLOBAL pops a heap when it places at most one instance per this many nodes.
_HEAP_PER_NODE = 4


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """What a strategy knows about one node (Eru's ``strategy.Info``)."""

    name: str
    capacity: int
    count: int = 0
    usage: float = 0.0
    rate: float = 0.0

    def __post_init__(self) -> None:
        if self.capacity < 0 or self.count < 0:
            raise ValueError(
                f"node {self.name!r}: capacity and count must be >= 0 "
                f"(got capacity={self.capacity}, count={self.count})"
            )


Strategy = Callable[[Sequence[NodeInfo], int, int, int], dict[str, int]]


def plan(strategy: str, infos: Sequence[NodeInfo], need: int, total: int, limit: int = 0) -> dict[str, int]:
    """Eru's ``strategy.Deploy``: how many new instances go on which node.

    ``need``, ``total`` and ``limit`` mean what they mean in Eru for each strategy:

    * AUTO: ``need`` instances in all, final per-node counts as even as possible; ``limit`` = the
      maximum instances (old + new) a node may hold, 0 = no maximum.
    * FILL: top ``limit`` nodes (0 = all) up to ``need`` instances each; nodes already there count.
    * EACH: ``need`` new instances on each of ``limit`` nodes (0 = all), largest capacity first.
    * GLOBAL: ``need`` instances in all, evening out resource utilisation; ``limit`` is ignored.
    * DRAINED: ``need`` instances in all, filling the node with the least room first.

    The map holds the nodes that get instances (FILL also lists nodes that get 0).
    """
    method = _PLANS.get(strategy)
    if method is None:
        raise InvalidRequest("deploy method not support yet", field="strategy")
    if need <= 0:
        raise InvalidRequest("invalid deploy count", field="count")
    if limit < 0:
        raise InvalidRequest(f"nodes_limit: {limit} must be 0 (no limit) or more", field="nodes_limit")
    return method(infos, need, total, limit)


def _need_vs_total(need: int, total: int) -> None:
    if total < need:
        raise NotEnoughResource.resource(f"need: {need}, available: {total}")


def _add(deploy: dict[str, int], name: str, n: int) -> None:
    deploy[name] = deploy.get(name, 0) + n


def auto_plan(infos: Sequence[NodeInfo], need: int, total: int, limit: int) -> dict[str, int]:
    """AUTO (Eru's ``CommunismPlan``), computed from a water level instead of one heap pop per instance.

    Eru pops the node with the fewest instances (tie: the most capacity) ``need`` times. Every node
    ``i`` can rise from ``count_i`` to ``ceil_i = min(count_i + capacity_i, limit or inf)``, so the
    pops fill all nodes up to a level ``L`` (``f(L) = sum(clamp(L) - count) <= need < f(L + 1)``) and
    the ``r = need - f(L)`` leftovers go to the nodes sitting at ``L`` that can still rise, in heap
    order: most capacity left (largest ``count + capacity``) first, then input order.
    O(nodes * log nodes), independent of ``need``.
    """
    _need_vs_total(need, total)
    eligible: list[tuple[int, int, int, int]] = []  # (index, count, ceil, count + capacity)
    room = 0
    for index, info in enumerate(infos):
        count = info.count
        if info.capacity <= 0 or (limit > 0 and count >= limit):
            continue
        top = count + info.capacity
        ceil = limit if 0 < limit < top else top
        eligible.append((index, count, ceil, top))
        room += ceil - count
    if need > room:
        raise NotEnoughResource.resource(f"reached nodelimit, a node can host at most {limit} instances")

    deploy: dict[str, int] = {}
    if need == room:
        for index, count, ceil, _ in eligible:
            _add(deploy, infos[index].name, ceil - count)
        return deploy

    # f(L) is piecewise linear: its slope between breakpoints is the number of nodes with
    # count <= L < ceil. Walk the breakpoints until f would pass need.
    slope_change: dict[int, int] = {}
    for _, count, ceil, _ in eligible:
        slope_change[count] = slope_change.get(count, 0) + 1
        slope_change[ceil] = slope_change.get(ceil, 0) - 1
    breakpoints = sorted(slope_change)
    level, filled, slope = breakpoints[0], 0, 0
    for point in breakpoints:
        gain = slope * (point - level)
        if filled + gain > need:
            break
        filled += gain
        level = point
        slope += slope_change[point]
    # Here filled = f(level) <= need and slope > 0 nodes rise together past level.
    steps = (need - filled) // slope
    level += steps
    extra = need - filled - steps * slope  # 0 <= extra < slope

    chosen: set[int] = set()
    if extra:
        at_level = [(-top, index) for index, count, ceil, top in eligible if count <= level < ceil]
        at_level.sort()
        chosen = {index for _, index in at_level[:extra]}
    for index, count, ceil, _ in eligible:
        final = min(max(count, level), ceil)
        if index in chosen:
            final += 1
        if final > count:
            _add(deploy, infos[index].name, final - count)
    return deploy


def fill_plan(infos: Sequence[NodeInfo], need: int, total: int, limit: int) -> dict[str, int]:
    """FILL (Eru's ``FillPlan``): bring ``limit`` nodes (0 = all) up to ``need`` instances each."""
    length = len(infos)
    if limit == 0:
        limit = length
    if length < limit:
        raise NotEnoughResource.resource(f"node len {length} cannot alloc a fill node plan")
    order = sorted(range(length), key=lambda i: (-infos[i].count, -infos[i].capacity))
    deploy: dict[str, int] = {}
    to_deploy = 0
    for index in order:
        info = infos[index]
        if info.count + info.capacity >= need:
            add = max(need - info.count, 0)
            _add(deploy, info.name, add)
            to_deploy += add
            limit -= 1
            if limit == 0:
                if to_deploy == 0:
                    raise AlreadyFilled()
                return deploy
    raise NotEnoughResource.resource(
        f"not enough nodes that can fill up to {need} instances, require {limit} nodes"
    )


def each_plan(infos: Sequence[NodeInfo], need: int, total: int, limit: int) -> dict[str, int]:
    """EACH (Eru's ``AveragePlan``): ``need`` more instances on each of ``limit`` nodes (0 = all)."""
    length = len(infos)
    if limit == 0:
        limit = length
    if length < limit:
        raise NotEnoughResource.resource(f"node len {length} < limit, cannot alloc an average node plan")
    order = sorted(range(length), key=lambda i: -infos[i].capacity)
    able = sum(1 for info in infos if info.capacity >= need)
    if able == 0:
        raise NotEnoughResource.capacity("insufficient nodes, at least 1 needed")
    if able < limit:
        raise NotEnoughResource.resource(f"not enough nodes with capacity of {need}, require {limit} nodes")
    deploy: dict[str, int] = {}
    for index in order[:limit]:
        _add(deploy, infos[index].name, need)
    return deploy


def global_plan(infos: Sequence[NodeInfo], need: int, total: int, limit: int) -> dict[str, int]:
    """GLOBAL (Eru's ``GlobalPlan``): each instance goes where ``usage + rate`` is lowest.

    Eru pops a heap once per instance and adds ``rate`` to the node's usage in float64; the result
    is the ``need`` smallest keys ``(usage ⊕ rate ⊕ … ⊕ rate, input order)``, which
    :func:`scheduling.waterlevel.level_counts` finds from a water level in two passes over the
    nodes, float sums and all, whatever ``need``. A few instances over many nodes pop the heap
    instead (cheaper there), as do inputs outside the level's exact range (negative or non-finite
    numbers).
    """
    _need_vs_total(need, total)
    if need * _HEAP_PER_NODE <= len(infos):
        return _global_heap(infos, need)
    caps = [info.capacity for info in infos]
    room = infos
    if min(caps, default=0) <= 0:
        room = [info for info in infos if info.capacity > 0]
        caps = [info.capacity for info in room]
    available = sum(caps)
    if available < need:
        raise NotEnoughResource.resource(f"need: {need}, available: {available}")
    if available == need:
        counts = caps
    else:
        level = level_counts([info.usage for info in room], [info.rate for info in room], caps, need)
        if level is None:
            return _global_heap(infos, need)
        counts = level
    names = [info.name for info in room]
    deploy = dict(compress(zip(names, counts, strict=True), counts))
    if len(deploy) < len(counts) - counts.count(0):  # nodes sharing a name share a count, as in Eru
        deploy = {}
        for name, count in compress(zip(names, counts, strict=True), counts):
            _add(deploy, name, count)
    return deploy


def _global_heap(infos: Sequence[NodeInfo], need: int) -> dict[str, int]:
    """GLOBAL by popping a heap of ``(usage + rate, input order)``, one pop per run of instances.

    A node keeps taking instances while it would be popped again anyway, which makes nodes with
    ``rate == 0`` (unbound, memory 0) O(1) instead of O(instances). The water level's fallback (and,
    for a few instances, its shortcut); the bench keeps it as today's figure.
    """
    heap = [
        (info.usage + info.rate, index, info.usage, info.rate, info.capacity)
        for index, info in enumerate(infos)
        if info.capacity > 0
    ]
    heapq.heapify(heap)
    placed = [0] * len(infos)
    remaining = need
    while remaining:
        if not heap:
            raise NotEnoughResource.resource(f"need: {need}, available: {need - remaining}")
        key, index, usage, rate, capacity = heapq.heappop(heap)
        runner_up = heap[0][:2] if heap else None
        if rate == 0:  # its key never changes: it stays the minimum until it is full or done
            take = min(capacity, remaining)
            placed[index] += take
            capacity -= take
            remaining -= take
        else:
            while True:
                placed[index] += 1
                usage += rate
                capacity -= 1
                remaining -= 1
                if not capacity or not remaining:
                    break
                key = usage + rate
                if runner_up is not None and (key, index) > runner_up:
                    break
        if capacity > 0:
            heapq.heappush(heap, (usage + rate, index, usage, rate, capacity))
    deploy: dict[str, int] = {}
    for index, count in enumerate(placed):
        if count:
            _add(deploy, infos[index].name, count)
    return deploy


def _drained_before(a: NodeInfo, b: NodeInfo) -> bool:
    # Eru's comparator, literally: it is not a strict weak order when capacity and usage disagree.
    return a.capacity < b.capacity or a.usage > b.usage


def drained_plan(infos: Sequence[NodeInfo], need: int, total: int, limit: int) -> dict[str, int]:
    """DRAINED (Eru's ``DrainedPlan``): fill the node with the least capacity left first.

    Up to 12 nodes the order is exactly Go's (its insertion sort with Eru's comparator). Beyond, Go
    runs pdqsort with a comparator that is inconsistent when a node has both more capacity and more
    usage than another; we sort by (capacity ascending, usage descending, input order), which is
    what Go gives whenever the comparator is consistent.
    """
    _need_vs_total(need, total)
    order = list(infos)
    if len(order) <= _GO_INSERTION_SORT_MAX:
        for i in range(1, len(order)):
            j = i
            while j > 0 and _drained_before(order[j], order[j - 1]):
                order[j], order[j - 1] = order[j - 1], order[j]
                j -= 1
    else:
        order.sort(key=lambda info: (info.capacity, -info.usage))
    deploy: dict[str, int] = {}
    left = need
    for info in order:
        take = left if left < info.capacity else info.capacity
        deploy[info.name] = take
        left -= take
        if left == 0:
            return deploy
    # Only reachable when the caller's total overstates the capacities (Eru: "BUG: never reach here").
    raise NotEnoughResource.resource(f"need: {need}, available: {need - left}")


_PLANS: dict[str, Strategy] = {
    AUTO: auto_plan,
    FILL: fill_plan,
    EACH: each_plan,
    GLOBAL: global_plan,
    DRAINED: drained_plan,
}
STRATEGIES: tuple[str, ...] = tuple(_PLANS)
