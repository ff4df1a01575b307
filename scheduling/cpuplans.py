"""CPU plans for bound workloads: Eru's ``resource/plugins/cpumem/schedule`` (``GetCPUPlans``).

A core is split into ``share_base`` pieces. Given the pieces still AVAILABLE on each core of a node,
a plan is one instance's ``{core id: pieces}``; the plans returned can all be granted together, and
taking them from the front packs cores the way Eru does (busiest cores first).

* request ``pieces = int(cpu_request * share_base)`` = ``full`` whole cores + one ``fragment``;
* ``full`` cores: available pieces are a non-zero multiple of ``share_base`` (more than one
  multiple = an oversold core, which can serve several plans); other cores with pieces are
  ``fragment`` cores; both lists sorted by (pieces, id): busiest first;
* whole-core plans take the ``full`` least busy cores again and again (a max-heap), then are sorted
  by the sum of their cores' positions; fragment plans take ``floor(pieces / fragment)`` plans per
  fragment core in order; mixed requests turn the busiest whole cores into fragment cores while that
  raises ``min(#whole plans, #fragment plans)``, up to ``max_fragment_cores`` fragment cores;
* with ``memory_request > 0`` the list is cut to ``floor(memory / memory_request)`` plans;
* with NUMA, each NUMA node (in id order; Go visits them in map order) is planned on its own cores
  and memory first (every plan subtracted), then the rest of the node once more across NUMA nodes.

Counting needs no plans: the number of whole-core plans the heap makes over cores holding
``u_1..u_n`` whole cores is the largest ``t`` with ``sum(min(u_i, t)) >= full * t``.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from scheduling.errors import InvalidRequest

__all__ = ["CPUPlan", "cpu_plan_count", "cpu_plans", "core_id_key", "request_pieces"]

Core = tuple[int, str]  # (available pieces, core id)
CPUMap = dict[str, int]


@dataclass(frozen=True)
class CPUPlan:
    """One bound instance's pieces per core, and the NUMA node it sits on ("" = none / cross-NUMA)."""

    cpu_map: dict[str, int]
    numa_node: str = ""


def core_id_key(core_id: str) -> tuple[int, int, str]:
    """Sort key putting numeric ids in numeric order ("2" before "10"), other ids after them."""
    if core_id.isdigit():
        return (0, int(core_id), core_id)
    return (1, 0, core_id)


def request_pieces(cpu_request: float, share_base: int) -> int:
    """Pieces a bound request takes: Eru's ``int(cpu_request * share_base)`` (truncated, in float64)."""
    if share_base < 1:
        raise InvalidRequest(f"share_base: {share_base} must be 1 or more", field="share_base")
    if not math.isfinite(cpu_request):
        raise InvalidRequest(f"cpu_request: {cpu_request} is not a finite number", field="cpu_request")
    pieces = int(cpu_request * share_base)
    if pieces <= 0:
        raise InvalidRequest(
            f"cpu_request: {cpu_request} is less than one piece of a core (1/{share_base} cpu) "
            "and cannot be bound",
            field="cpu_request",
        )
    return pieces


def cpu_plans(
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
) -> list[CPUPlan]:
    """All plans for a bound request on one node, in Eru's order.

    ``cpu_map``: AVAILABLE pieces per core; ``memory``: available bytes (only used when
    ``memory_request > 0``); ``numa``: core id -> NUMA node id of the node's capacity;
    ``numa_memory``: AVAILABLE bytes per NUMA node; ``origin``: the cpu map a workload held before a
    realloc (its cores are preferred, Eru's affinity). ``max_fragment_cores`` < 0 = no cap.
    """
    pieces = request_pieces(cpu_request, share_base)
    plan_on = _planner(pieces, share_base, max_fragment_cores, memory_request, origin)
    if not numa:
        return [CPUPlan(cpu) for cpu in plan_on(cpu_map.items(), memory)]

    available = dict(cpu_map)
    numa_left = dict(numa_memory or {})
    cores_of: dict[str, list[str]] = {}
    for core_id, numa_node in numa.items():
        cores_of.setdefault(numa_node, []).append(core_id)
    plans: list[CPUPlan] = []
    for numa_node in sorted(cores_of, key=core_id_key):
        cores = [(core_id, available.get(core_id, 0)) for core_id in cores_of[numa_node]]
        for cpu in plan_on(cores, numa_left.get(numa_node, 0)):
            plans.append(CPUPlan(cpu, numa_node))
            for core_id, taken in cpu.items():
                available[core_id] -= taken
            memory -= memory_request
            numa_left[numa_node] = numa_left.get(numa_node, 0) - memory_request
    plans.extend(CPUPlan(cpu) for cpu in plan_on(available.items(), memory))
    return plans


def cpu_plan_count(
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
) -> int:
    """``len(cpu_plans(...))`` with the same arguments, without building plans (unless NUMA/affinity)."""
    if numa or origin:
        return len(
            cpu_plans(
                cpu_map,
                cpu_request,
                share_base=share_base,
                max_fragment_cores=max_fragment_cores,
                memory=memory,
                memory_request=memory_request,
                numa=numa,
                numa_memory=numa_memory,
                origin=origin,
            )
        )
    count = count_plans(
        cpu_map.values(), request_pieces(cpu_request, share_base), share_base, max_fragment_cores
    )
    if memory_request > 0:
        count = min(count, _memory_capacity(memory, memory_request))
    return count


def count_plans(pieces_per_core: Iterable[int], pieces: int, share_base: int, max_fragment_cores: int) -> int:
    """Number of plans (before the memory cut) for a request of ``pieces`` over these available cores."""
    full, fragment = divmod(pieces, share_base)
    whole: list[int] = []
    fragment_cores = 0
    fragment_capacity = 0
    for available in pieces_per_core:
        if available >= share_base and available % share_base == 0:
            whole.append(available)
        elif available > 0:
            fragment_cores += 1
            if fragment:
                fragment_capacity += available // fragment
    whole.sort()
    if fragment == 0:
        return _max_rounds([p // share_base for p in whole], full)
    limit = _fragment_core_limit(len(whole) + fragment_cores, full, max_fragment_cores)
    if full == 0:
        return fragment_capacity + sum(p // fragment for p in whole[: max(limit - fragment_cores, 0)])
    units = [p // share_base for p in whole]
    _, best = _best_split(
        whole, fragment_capacity, limit - fragment_cores, fragment, _rounds(units, full), True
    )
    return best


# ---------------------------------------------------------------------------------------------
# internals


def _memory_capacity(memory: int, memory_request: int) -> int:
    return memory // memory_request if memory > 0 else 0


def _fragment_core_limit(cores: int, full: int, max_fragment_cores: int) -> int:
    most = cores - full
    if max_fragment_cores < 0 or max_fragment_cores > most:
        return most
    return max_fragment_cores


def _max_rounds(units: Sequence[int], full: int) -> int:
    """How many plans of ``full`` distinct cores the heap makes; ``units`` ascending."""
    n = len(units)
    if n < full:
        return 0
    if units[0] == units[-1]:
        return n * units[0] // full
    prefix = 0
    for j, unit in enumerate(units):
        short = full - (n - j)  # cores below the level t must be made up by the n - j above it
        if short > 0:
            candidate = prefix // short
            if candidate <= unit:
                return candidate
        prefix += unit
    return prefix // full


def _rounds(units: Sequence[int], full: int) -> Callable[[int], int]:
    """Whole-core plan count once the ``k`` busiest whole cores became fragment cores."""

    def rounds(k: int) -> int:
        return _max_rounds(units[k:], full)

    return rounds


def _best_split(
    whole_pieces: Sequence[int],
    fragment_capacity: int,
    conversions: int,
    fragment: int,
    rounds: Callable[[int], int],
    monotone: bool,
) -> tuple[int, int]:
    """Eru's mixed-request search: first ``k`` maximising min(#whole plans, #fragment plans).

    Converting a whole core adds at least one fragment plan and never adds whole-core plans, so with
    ``monotone`` rounds the search stops once fragment plans are no longer the scarce side.
    """
    best_k, best = 0, min(rounds(0), fragment_capacity)
    for k in range(1, conversions + 1):
        fragment_capacity += whole_pieces[k - 1] // fragment
        whole_plans = rounds(k)
        capacity = min(whole_plans, fragment_capacity)
        if capacity > best:
            best_k, best = k, capacity
        if monotone and fragment_capacity >= whole_plans:
            break
    return best_k, best


def _classify(cores: Iterable[tuple[str, int]], share_base: int) -> tuple[list[Core], list[Core]]:
    whole: list[Core] = []
    fragments: list[Core] = []
    for core_id, available in cores:
        if available >= share_base and available % share_base == 0:
            whole.append((available, core_id))
        elif available > 0:
            fragments.append((available, core_id))
    whole.sort()
    fragments.sort()
    return whole, fragments


def _prefer(cores: list[Core], preferred: list[Core]) -> list[Core]:
    rank = {core_id: i for i, (_, core_id) in enumerate(preferred)}
    return sorted(cores, key=lambda core: rank.get(core[1], len(rank)))


def _planner(
    pieces: int,
    share_base: int,
    max_fragment_cores: int,
    memory_request: int,
    origin: Mapping[str, int] | None,
) -> Callable[[Iterable[tuple[str, int]], int], list[CPUMap]]:
    full, fragment = divmod(pieces, share_base)
    affinity = _classify(origin.items(), share_base) if origin else None

    def plan_on(cores: Iterable[tuple[str, int]], memory: int) -> list[CPUMap]:
        whole, fragments = _classify(cores, share_base)
        if affinity is not None:
            whole, fragments = _prefer(whole, affinity[0]), _prefer(fragments, affinity[1])
        plans = _host_plans(
            whole, fragments, full, fragment, share_base, max_fragment_cores, affinity is not None
        )
        if memory_request > 0:
            del plans[_memory_capacity(memory, memory_request) :]
        return plans

    return plan_on


def _host_plans(
    whole: list[Core],
    fragments: list[Core],
    full: int,
    fragment: int,
    share_base: int,
    max_fragment_cores: int,
    affinity: bool,
) -> list[CPUMap]:
    if fragment == 0:
        return _whole_plans(whole, full, share_base, affinity)
    limit = _fragment_core_limit(len(whole) + len(fragments), full, max_fragment_cores)
    conversions = max(limit - len(fragments), 0)
    if full == 0:
        return _fragment_plans(fragments + whole[:conversions], fragment)

    whole_pieces = [p for p, _ in whole]

    def rounds_in_order(k: int) -> int:
        return len(_whole_plans(whole[k:], full, share_base, True))

    rounds = rounds_in_order if affinity else _rounds([p // share_base for p in whole_pieces], full)
    fragment_capacity = sum(p // fragment for p, _ in fragments)
    k, best = _best_split(whole_pieces, fragment_capacity, conversions, fragment, rounds, not affinity)
    whole_plans = _whole_plans(whole[k:], full, share_base, affinity)
    fragment_plans = _fragment_plans(fragments + whole[:k], fragment)
    return [{**w, **f} for w, f in zip(whole_plans[:best], fragment_plans[:best], strict=True)]


def _whole_plans(cores: Sequence[Core], full: int, share_base: int, affinity: bool) -> list[CPUMap]:
    if affinity:
        return _whole_plans_in_order(cores, full, share_base)
    position = {core_id: i for i, (_, core_id) in enumerate(cores)}
    id_rank = {core_id: i for i, core_id in enumerate(sorted(position))}
    heap = [(-p, -id_rank[core_id], core_id) for p, core_id in cores]  # max-heap on (pieces, id)
    heapq.heapify(heap)
    plans: list[CPUMap] = []
    while len(heap) >= full:
        taken = [heapq.heappop(heap) for _ in range(full)]
        plans.append({core_id: share_base for _, _, core_id in taken})
        for negative_pieces, negative_rank, core_id in taken:
            left = -negative_pieces - share_base
            if left > 0:
                heapq.heappush(heap, (-left, negative_rank, core_id))
    plans.sort(key=lambda plan: sum(position[core_id] for core_id in plan))
    return plans


def _whole_plans_in_order(cores: Sequence[Core], full: int, share_base: int) -> list[CPUMap]:
    """Eru's affinity variant: consecutive groups of ``full`` cores, leftovers recycled to the front."""
    plans: list[CPUMap] = []
    queue = list(cores)
    while len(queue) >= full:
        groups = len(queue) // full
        recycled: list[Core] = []
        for g in range(groups):
            plan: CPUMap = {}
            for pieces, core_id in queue[g * full : (g + 1) * full]:
                plan[core_id] = share_base
                if pieces > share_base:
                    recycled.append((pieces - share_base, core_id))
            plans.append(plan)
        queue = recycled + queue[groups * full :]
    return plans


def _fragment_plans(cores: Sequence[Core], fragment: int) -> list[CPUMap]:
    return [{core_id: fragment} for pieces, core_id in cores for _ in range(pieces // fragment)]
