"""Straightforward reference implementations used as oracles by the property tests and the bench.

They follow Eru's Go code step by step (one heap pop per instance, every conversion recomputed) and
share no code with ``scheduling``. Ties Go breaks by map order are pinned to input order, as in
``scheduling``.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence

from scheduling import NodeInfo, NotEnoughResource


class GoPanic(Exception):
    """Eru's Go code would panic (e.g. slicing with a negative bound) on this input."""


# ---------------------------------------------------------------------------------------------
# strategies


def heap_auto(infos: Sequence[NodeInfo], need: int, total: int, limit: int) -> dict[str, int]:
    """Eru's CommunismPlan: pop the node with (fewest instances, most capacity, first in input)."""
    if total < need:
        raise NotEnoughResource.resource(f"need: {need}, available: {total}")

    def eligible(capacity: int, count: int) -> bool:
        return capacity != 0 and not (limit > 0 and count >= limit)

    heap = [(i.count, -i.capacity, n, i.name) for n, i in enumerate(infos) if eligible(i.capacity, i.count)]
    heapq.heapify(heap)
    deploy: dict[str, int] = {}
    while True:
        if not heap:
            raise NotEnoughResource.resource(f"reached nodelimit, a node can host at most {limit} instances")
        count, negative_capacity, index, name = heapq.heappop(heap)
        deploy[name] = deploy.get(name, 0) + 1
        need -= 1
        if need == 0:
            return deploy
        count, capacity = count + 1, -negative_capacity - 1
        if eligible(capacity, count):
            heapq.heappush(heap, (count, -capacity, index, name))


def heap_global(infos: Sequence[NodeInfo], need: int, total: int, limit: int) -> dict[str, int]:
    """Eru's GlobalPlan: every instance to the node with the lowest usage + rate (then input order)."""
    if total < need:
        raise NotEnoughResource.resource(f"need: {need}, available: {total}")
    heap = [
        (i.usage + i.rate, n, i.usage, i.rate, i.capacity, i.name)
        for n, i in enumerate(infos)
        if i.capacity > 0
    ]
    heapq.heapify(heap)
    deploy: dict[str, int] = {}
    for placed in range(need):
        if not heap:
            raise NotEnoughResource.resource(f"need: {need}, available: {placed}")
        _, index, usage, rate, capacity, name = heapq.heappop(heap)
        deploy[name] = deploy.get(name, 0) + 1
        usage += rate
        capacity -= 1
        if capacity > 0:
            heapq.heappush(heap, (usage + rate, index, usage, rate, capacity, name))
    return deploy


# ---------------------------------------------------------------------------------------------
# cpu plans (schedule.GetCPUPlans)


class _Host:
    def __init__(self, cpu_map: Mapping[str, int], share_base: int, max_fragment_cores: int) -> None:
        self.share_base = share_base
        self.max_fragment_cores = max_fragment_cores
        self.full: list[list[object]] = []
        self.fragment: list[list[object]] = []
        for core_id, pieces in cpu_map.items():
            if pieces >= share_base and pieces % share_base == 0:
                self.full.append([core_id, pieces])
            elif pieces > 0:
                self.fragment.append([core_id, pieces])
        self.full.sort(key=lambda c: (c[1], c[0]))
        self.fragment.sort(key=lambda c: (c[1], c[0]))
        self.affinity = False

    def full_plans(self, cores: list[list[object]], full: int) -> list[dict[str, int]]:
        if self.affinity:
            return self.full_plans_with_affinity(cores, full)
        index = {c[0]: i for i, c in enumerate(cores)}
        pool = [[c[0], c[1]] for c in cores]
        result: list[dict[str, int]] = []
        while len(pool) >= full:
            plan: dict[str, int] = {}
            back = []
            for _ in range(full):
                best = max(pool, key=lambda c: (c[1], c[0]))  # Go's max-heap on (pieces, id)
                pool.remove(best)
                plan[best[0]] = self.share_base  # type: ignore[index]
                best[1] -= self.share_base  # type: ignore[operator]
                if best[1] > 0:  # type: ignore[operator]
                    back.append(best)
            result.append(plan)
            pool.extend(back)
        return sorted(result, key=lambda plan: sum(index[c] for c in plan))

    def full_plans_with_affinity(self, cores: list[list[object]], full: int) -> list[dict[str, int]]:
        result: list[dict[str, int]] = []
        while len(cores) >= full:
            count = len(cores) // full
            temp: list[list[object]] = []
            for i in range(count):
                plan: dict[str, int] = {}
                for j in range(i * full, i * full + full):
                    plan[cores[j][0]] = self.share_base  # type: ignore[index]
                    remaining = cores[j][1] - self.share_base  # type: ignore[operator]
                    if remaining > 0:
                        temp.append([cores[j][0], remaining])
                result.append(plan)
            cores = temp + cores[count * full :]
        return result

    @staticmethod
    def fragment_plans(cores: list[list[object]], fragment: int) -> list[dict[str, int]]:
        result = []
        for core_id, pieces in cores:
            for _ in range(pieces // fragment):  # type: ignore[operator]
                result.append({core_id: fragment})
        return result  # type: ignore[return-value]

    def plans(self, cpu_request: float) -> list[dict[str, int]]:
        pieces_request = int(cpu_request * self.share_base)
        full = pieces_request // self.share_base
        fragment = pieces_request % self.share_base
        most = len(self.full) + len(self.fragment) - full
        if self.max_fragment_cores == -1 or self.max_fragment_cores > most:
            self.max_fragment_cores = most
        if fragment == 0:
            return self.full_plans(self.full, full)
        if full == 0:
            diff = self.max_fragment_cores - len(self.fragment)
            if diff < 0:
                raise GoPanic("slice bounds out of range")
            self.fragment = self.fragment + self.full[:diff]
            self.full = self.full[diff:]
            return self.fragment_plans(self.fragment, fragment)
        best = (self.full_plans(self.full, full), self.fragment_plans(self.fragment, fragment))
        best_capacity = min(len(best[0]), len(best[1]))
        while len(self.fragment) < self.max_fragment_cores:
            self.fragment = self.fragment + [self.full[0]]
            self.full = self.full[1:]
            full_plans = self.full_plans(self.full, full)
            fragment_plans = self.fragment_plans(self.fragment, fragment)
            capacity = min(len(full_plans), len(fragment_plans))
            if capacity > best_capacity:
                best, best_capacity = (full_plans, fragment_plans), capacity
        return [{**best[0][i], **best[1][i]} for i in range(best_capacity)]


def _reorder(old: _Host, new: _Host) -> None:
    old_full = {c[0]: i + 1 for i, c in enumerate(old.full)}
    old_fragment = {c[0]: i + 1 for i, c in enumerate(old.fragment)}
    big = 1 << 30
    new.full = sorted(new.full, key=lambda c: old_full.get(c[0], big))
    new.fragment = sorted(new.fragment, key=lambda c: old_fragment.get(c[0], big))
    new.affinity = True


def _do_plans(
    origin: Mapping[str, int] | None,
    cpu_map: Mapping[str, int],
    memory: int,
    share_base: int,
    max_fragment_cores: int,
    cpu_request: float,
    memory_request: int,
) -> list[dict[str, int]]:
    host = _Host(cpu_map, share_base, max_fragment_cores)
    if origin:
        _reorder(_Host(origin, share_base, max_fragment_cores), host)
    plans = host.plans(cpu_request)
    if memory_request > 0:
        memory_capacity = int(memory / memory_request) if memory >= 0 else -1
        if memory_capacity < 0:
            raise GoPanic("slice bounds out of range")
        plans = plans[:memory_capacity]
    return plans


def go_cpu_plans(
    cpu_map: Mapping[str, int],
    cpu_request: float,
    *,
    share_base: int = 100,
    max_fragment_cores: int = -1,
    memory: int = 0,
    memory_request: int = 0,
    numa: Mapping[str, str] | None = None,
    numa_memory: Mapping[str, int] | None = None,
    origin: Mapping[str, int] | None = None,
) -> list[tuple[dict[str, int], str]]:
    """GetCPUPlans on AVAILABLE resources; NUMA nodes visited in sorted order."""
    available = dict(cpu_map)
    numa_left = dict(numa_memory or {})
    per_numa: dict[str, dict[str, int]] = {}
    for core_id, numa_node in (numa or {}).items():
        per_numa.setdefault(numa_node, {})[core_id] = available.get(core_id, 0)
    result: list[tuple[dict[str, int], str]] = []
    for numa_node in sorted(per_numa, key=lambda s: (0, int(s), s) if s.isdigit() else (1, 0, s)):
        for plan in _do_plans(
            origin,
            per_numa[numa_node],
            numa_left.get(numa_node, 0),
            share_base,
            max_fragment_cores,
            cpu_request,
            memory_request,
        ):
            result.append((plan, numa_node))
            for core_id, pieces in plan.items():
                available[core_id] = available.get(core_id, 0) - pieces
            memory -= memory_request
            numa_left[numa_node] = numa_left.get(numa_node, 0) - memory_request
    for plan in _do_plans(
        origin, available, memory, share_base, max_fragment_cores, cpu_request, memory_request
    ):
        result.append((plan, ""))
    return result
