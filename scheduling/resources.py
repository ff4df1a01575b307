"""Eru's cpumem resource model: requests, node capacity, deploy/realloc arithmetic, Docker mapping.

Mirrors ``resource/plugins/cpumem`` of projecteru2/core: ``WorkloadResourceRequest.Validate``,
``doGetNodeDeployCapacity``, ``CalculateDeploy``, ``CalculateRealloc``, ``CalculateRemap``, ``AddNode``
(capacity from engine info) and ``engine/docker`` ``makeResourceSetting``.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypedDict

from scheduling.cpuplans import core_id_key, cpu_plan_count, cpu_plans
from scheduling.errors import InvalidRequest, NotEnoughResource
from scheduling.strategies import NodeInfo

__all__ = [
    "CPU_PERIOD",
    "GiB",
    "MIN_MEMORY_LIMIT",
    "MiB",
    "UNLIMITED",
    "Allocation",
    "NodeResources",
    "Realloc",
    "ResourceRequest",
    "allocate",
    "deploy_capacity",
    "deploy_infos",
    "docker_settings",
    "docker_update_settings",
    "engine_capacity",
    "node_deploy_capacity",
    "normalize_request",
    "realloc",
    "release",
    "set_capacity",
    "share_pool",
]

MiB = 1 << 20
GiB = 1 << 30
UNLIMITED = sys.maxsize  # Eru's math.MaxInt: capacity of an unbound request without memory request
MIN_MEMORY_LIMIT = 6 * MiB  # Docker refuses smaller memory limits and reservations
CPU_PERIOD = 100_000  # CFS period, microseconds
BIND_WEIGHT = 100  # Eru's weight of a cpu-bind capacity; usage and rate are divided by it


@dataclass(frozen=True)
class ResourceRequest:
    """A workload's cpu/memory request (deducted from capacity) and limit (enforced; 0 = unlimited)."""

    cpu_request: float = 0.0
    cpu_limit: float = 0.0
    memory_request: int = 0
    memory_limit: int = 0
    cpu_bind: bool = False


def _finite_cpu(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRequest(f"{name}: {value!r} is not a number", field=name)
    if not math.isfinite(value):
        raise InvalidRequest(f"{name}: {value} is not a finite number", field=name)
    return float(value)


def _whole_bytes(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRequest(f"{name}: {value!r} is not a number of bytes", field=name)
    if not isinstance(value, int):
        if not math.isfinite(value) or not value.is_integer():
            raise InvalidRequest(f"{name}: {value} is not a whole number of bytes", field=name)
        return int(value)
    return value


def normalize_request(
    *,
    cpu_request: float = 0.0,
    cpu_limit: float = 0.0,
    memory_request: int = 0,
    memory_limit: int = 0,
    cpu_bind: bool = False,
) -> ResourceRequest:
    """Validate and normalise a request with Eru's rules, in Eru's order, with Eru's messages.

    1. cpu request 0 with a cpu limit -> request = limit; 2./3. negatives are errors; 4. bind needs a
    cpu request; 5. memory request 0 with a limit -> request = limit; 6./7. a limit below its request
    is raised to the request; 8. bind with limit > request -> request = limit. On top of Eru: numbers
    must be finite, and a memory limit must be 0 (unlimited) or at least 6 MiB.
    """
    cpu_request = _finite_cpu("cpu_request", cpu_request)
    cpu_limit = _finite_cpu("cpu_limit", cpu_limit)
    memory_request = _whole_bytes("memory_request", memory_request)
    memory_limit = _whole_bytes("memory_limit", memory_limit)
    if not isinstance(cpu_bind, bool):
        raise InvalidRequest(f"cpu_bind: {cpu_bind!r} is not a boolean", field="cpu_bind")

    if cpu_request == 0 and cpu_limit > 0:
        cpu_request = cpu_limit
    if memory_limit < 0 or memory_request < 0:
        raise InvalidRequest(
            "limit or request less than 0: invalid memory",
            field="memory_limit" if memory_limit < 0 else "memory_request",
        )
    if cpu_request < 0 or cpu_limit < 0:
        raise InvalidRequest(
            "limit or request less than 0: invalid cpu", field="cpu_limit" if cpu_limit < 0 else "cpu_request"
        )
    if cpu_request == 0 and cpu_bind:
        raise InvalidRequest("unlimited request with bind: invalid cpu", field="cpu_request")
    if 0 < memory_limit < MIN_MEMORY_LIMIT:
        raise InvalidRequest(
            f"memory_limit: {memory_limit} is below the minimum of 6 MiB ({MIN_MEMORY_LIMIT} bytes); "
            "use 0 for unlimited",
            field="memory_limit",
        )
    if memory_request == 0 and memory_limit > 0:
        memory_request = memory_limit
    if memory_limit > 0 and memory_request > 0 and memory_limit < memory_request:
        memory_limit = memory_request
    if cpu_request > 0 and cpu_limit > 0 and cpu_limit < cpu_request:
        cpu_limit = cpu_request
    if cpu_bind and cpu_request > 0 and cpu_limit > cpu_request:
        cpu_request = cpu_limit
    return ResourceRequest(cpu_request, cpu_limit, memory_request, memory_limit, cpu_bind)


class PlanOptions(TypedDict):
    """Keyword arguments of ``cpu_plans``/``cpu_plan_count`` that describe the node."""

    share_base: int
    max_fragment_cores: int
    memory: int
    memory_request: int
    numa: Mapping[str, str] | None
    numa_memory: Mapping[str, int] | None


@dataclass(frozen=True)
class NodeResources:
    """One node's capacity and usage, as stored by the DB."""

    name: str
    cpu_map: Mapping[str, int]  # capacity pieces per core id
    memory: int  # capacity bytes
    used_cpu_map: Mapping[str, int]  # pieces held by bound workloads per core
    used_cpu: float  # sum of cpu_request of all workloads
    used_memory: int  # sum of memory_request
    share_base: int = 100
    max_fragment_cores: int = -1
    numa: Mapping[str, str] | None = None  # core id -> NUMA node id
    numa_memory: Mapping[str, int] | None = None  # NUMA node id -> capacity bytes
    used_numa_memory: Mapping[str, int] | None = None  # NUMA node id -> bytes requested

    def available_cpu_map(self) -> dict[str, int]:
        used = self.used_cpu_map
        return {core: pieces - used.get(core, 0) for core, pieces in self.cpu_map.items()}

    def available_memory(self) -> int:
        return self.memory - self.used_memory

    def available_numa_memory(self) -> dict[str, int]:
        used = self.used_numa_memory or {}
        return {
            numa_node: size - used.get(numa_node, 0) for numa_node, size in (self.numa_memory or {}).items()
        }

    def plan_options(self, memory_request: int) -> PlanOptions:
        """The node's side of a ``cpu_plans``/``cpu_plan_count`` call: what is free, its NUMA layout."""
        return {
            "share_base": self.share_base,
            "max_fragment_cores": self.max_fragment_cores,
            "memory": self.available_memory(),
            "memory_request": memory_request,
            "numa": self.numa,
            "numa_memory": self.available_numa_memory() if self.numa else None,
        }


def _divide(a: float, b: float) -> float:
    """Eru's ``AdvancedDivide``: 0 when either side is 0 (float64 arithmetic)."""
    if a == 0 or b == 0:
        return 0.0
    return float(a) / float(b)


def _go_quotient(a: int, b: int) -> int:
    """Go's integer division (truncates toward zero); ``b > 0``."""
    return a // b if a >= 0 else -(-a // b)


def _round_half_away(x: float) -> int:
    whole = math.trunc(x)
    if abs(x - whole) >= 0.5:
        whole += 1 if x > 0 else -1
    return whole


def _round9(x: float) -> float:
    """Eru's ``utils.Round``: ``math.Round(x * 1e9) / 1e9``, applied to every cpu usage update."""
    scaled = x * 1e9
    if not math.isfinite(scaled):
        return x
    return _round_half_away(scaled) / 1e9


def node_deploy_capacity(node: NodeResources, req: ResourceRequest) -> NodeInfo | None:
    """Eru's ``doGetNodeDeployCapacity`` for a normalised request: ``None`` when nothing fits.

    Unbound: 0 when ``cpu_request`` exceeds the node's cores, else ``floor(available memory /
    memory_request)`` (UNLIMITED when ``memory_request`` is 0); usage = memory used / capacity, rate =
    memory_request / capacity. Bound: the number of cpu plans (memory-bound too); usage = cpu used /
    cores, rate = cpu_request / cores, both divided by Eru's bind weight 100 as Eru's merge step does
    before strategies see them. ``count`` is 0: the caller fills in the app's instances per node.
    """
    cores = len(node.cpu_map)
    if not req.cpu_bind:
        if req.cpu_request > cores:
            return None
        usage = _divide(node.used_memory, node.memory)
        if req.memory_request == 0:
            return NodeInfo(node.name, UNLIMITED, 0, usage, 0.0)
        available = node.memory - node.used_memory
        capacity = available // req.memory_request if available > 0 else 0
        if capacity <= 0:
            return None
        return NodeInfo(node.name, capacity, 0, usage, _divide(req.memory_request, node.memory))
    capacity = cpu_plan_count(
        node.available_cpu_map(), req.cpu_request, **node.plan_options(req.memory_request)
    )
    if capacity <= 0:
        return None
    usage = _divide(node.used_cpu, cores) / BIND_WEIGHT
    return NodeInfo(node.name, capacity, 0, usage, _divide(req.cpu_request, cores) / BIND_WEIGHT)


def deploy_infos(
    nodes: Sequence[NodeResources], req: ResourceRequest, counts: Mapping[str, int] | None = None
) -> tuple[list[NodeInfo], int]:
    """Strategy input: the nodes that can take an instance (with the app's ``counts``) and the total."""
    infos: list[NodeInfo] = []
    total = 0
    for node in nodes:
        info = node_deploy_capacity(node, req)
        if info is None:
            continue
        if counts:
            info = NodeInfo(info.name, info.capacity, counts.get(info.name, 0), info.usage, info.rate)
        infos.append(info)
        total = UNLIMITED if info.capacity == UNLIMITED else min(total + info.capacity, UNLIMITED)
    return infos, total


def deploy_capacity(nodes: Sequence[NodeResources], req: ResourceRequest) -> tuple[dict[str, int], int]:
    """Eru's DUMMY dry run: capacity per node (nodes with 0 omitted) and their total."""
    infos, total = deploy_infos(nodes, req)
    if total <= 0:
        raise NotEnoughResource.resource("no node meets all the resource requirements at the same time")
    return {info.name: info.capacity for info in infos}, total


@dataclass(frozen=True)
class Allocation:
    """``n`` instances placed on one node: their cpu maps and the node's usage afterwards."""

    cpu_maps: list[dict[str, int]]  # per instance; {} for unbound
    used_cpu_map: dict[str, int]  # node usage AFTER the n instances
    used_cpu: float
    used_memory: int
    numa_nodes: list[str] = field(default_factory=list)  # per instance; "" = none
    used_numa_memory: dict[str, int] = field(default_factory=dict)


def _check_unbound_fits(node: NodeResources, req: ResourceRequest, n: int) -> None:
    if req.cpu_request > len(node.cpu_map):
        raise NotEnoughResource.capacity("cpu")
    if req.memory_request > 0 and _go_quotient(node.available_memory(), req.memory_request) < n:
        raise NotEnoughResource.capacity("memory")


def allocate(node: NodeResources, req: ResourceRequest, n: int) -> Allocation:
    """Eru's ``CalculateDeploy`` for ``n`` instances of a normalised request on one node.

    Bound: the first ``n`` cpu plans, added to the node's usage one after another.
    """
    if n < 0:
        raise InvalidRequest("invalid deploy count", field="count")
    used_cpu_map = dict(node.used_cpu_map)
    used_numa_memory = dict(node.used_numa_memory or {})
    if n == 0:
        return Allocation([], used_cpu_map, node.used_cpu, node.used_memory, [], used_numa_memory)
    if not req.cpu_bind:
        _check_unbound_fits(node, req, n)
        cpu_maps: list[dict[str, int]] = [{} for _ in range(n)]
        numa_nodes = [""] * n
    else:
        plans = cpu_plans(node.available_cpu_map(), req.cpu_request, **node.plan_options(req.memory_request))
        if len(plans) < n:
            raise NotEnoughResource.capacity("cpu")
        cpu_maps, numa_nodes = [], []
        for chosen in plans[:n]:
            cpu_maps.append(chosen.cpu_map)
            numa_nodes.append(chosen.numa_node)
            for core, pieces in chosen.cpu_map.items():
                used_cpu_map[core] = used_cpu_map.get(core, 0) + pieces
            if chosen.numa_node:
                numa_node = chosen.numa_node
                used_numa_memory[numa_node] = used_numa_memory.get(numa_node, 0) + req.memory_request
    used_cpu = node.used_cpu
    if req.cpu_request:
        for _ in range(n):
            used_cpu = _round9(used_cpu + req.cpu_request)
    used_memory = node.used_memory + n * req.memory_request
    return Allocation(cpu_maps, used_cpu_map, used_cpu, used_memory, numa_nodes, used_numa_memory)


def release(
    node: NodeResources, req: ResourceRequest, cpu_map: Mapping[str, int]
) -> tuple[dict[str, int], float, int]:
    """Give one instance back: the node's new ``(used_cpu_map, used_cpu, used_memory)``, never below 0."""
    used_cpu_map = dict(node.used_cpu_map)
    for core, pieces in cpu_map.items():
        used_cpu_map[core] = max(used_cpu_map.get(core, 0) - pieces, 0)
    used_cpu = max(_round9(node.used_cpu - req.cpu_request), 0.0)
    return used_cpu_map, used_cpu, max(node.used_memory - req.memory_request, 0)


@dataclass(frozen=True)
class Realloc:
    """Outcome of a realloc: the new request and cpu map, and the node's usage afterwards."""

    request: ResourceRequest  # the workload's new, normalised request
    cpu_map: dict[str, int]  # its new cpu map ({} = unbound)
    numa_node: str
    used_cpu_map: dict[str, int]
    used_cpu: float
    used_memory: int


def realloc(
    node: NodeResources,
    old: ResourceRequest,
    old_cpu_map: Mapping[str, int],
    *,
    cpu_request: float = 0.0,
    cpu_limit: float = 0.0,
    memory_request: int = 0,
    memory_limit: int = 0,
    cpu_bind: bool | None = None,
) -> Realloc:
    """Eru's ``CalculateRealloc``: change a workload's resources by DELTAS.

    ``old`` is the workload's current (normalised) request and ``old_cpu_map`` the pieces it holds;
    ``cpu_bind=None`` keeps binding as it is (Eru's keep-cpu-bind: bound iff it holds cores). The old
    resources go back to the node first, then ``old + delta`` is validated like a new request. Bound:
    the first cpu plan, preferring the cores held before (Eru's affinity), else "cannot alloc a plan,
    not enough resource". Unbound: the one-instance cpu and memory checks of a deploy.
    """
    bind = bool(old_cpu_map) if cpu_bind is None else cpu_bind
    used_cpu_map = dict(node.used_cpu_map)
    for core, pieces in old_cpu_map.items():
        used_cpu_map[core] = max(used_cpu_map.get(core, 0) - pieces, 0)
    freed = NodeResources(
        node.name,
        node.cpu_map,
        node.memory,
        used_cpu_map,
        max(_round9(node.used_cpu - old.cpu_request), 0.0),
        max(node.used_memory - old.memory_request, 0),
        node.share_base,
        node.max_fragment_cores,
        node.numa,
        node.numa_memory,
        node.used_numa_memory,
    )
    new = normalize_request(
        cpu_request=_finite_cpu("cpu_request", cpu_request) + old.cpu_request,
        cpu_limit=_finite_cpu("cpu_limit", cpu_limit) + old.cpu_limit,
        memory_request=_whole_bytes("memory_request", memory_request) + old.memory_request,
        memory_limit=_whole_bytes("memory_limit", memory_limit) + old.memory_limit,
        cpu_bind=bind,
    )
    cpu_map: dict[str, int] = {}
    numa_node = ""
    if bind:
        plans = cpu_plans(
            freed.available_cpu_map(),
            new.cpu_request,
            **freed.plan_options(new.memory_request),
            origin=old_cpu_map,
        )
        if not plans:
            raise NotEnoughResource.resource()
        cpu_map, numa_node = plans[0].cpu_map, plans[0].numa_node
        for core, pieces in cpu_map.items():
            used_cpu_map[core] = used_cpu_map.get(core, 0) + pieces
    else:
        _check_unbound_fits(freed, new, 1)
    return Realloc(
        new,
        cpu_map,
        numa_node,
        used_cpu_map,
        max(_round9(node.used_cpu + _round9(new.cpu_request - old.cpu_request)), 0.0),
        freed.used_memory + new.memory_request,
    )


def share_pool(node: NodeResources) -> list[str]:
    """Eru's remap pool for unbound workloads: cores with a whole core still free, else every core."""
    available = node.available_cpu_map()
    pool = [core for core, pieces in available.items() if pieces >= node.share_base]
    return sorted(pool or node.cpu_map, key=core_id_key)


def engine_capacity(
    ncpu: int,
    mem_total: int,
    *,
    share_base: int = 100,
    memory_reserve: int = GiB,
    cpu: int | None = None,
    memory: int | None = None,
) -> tuple[dict[str, int], int]:
    """A new node's capacity from ``docker info``: ``NCPU`` cores of ``share_base`` pieces each and
    ``MemTotal - memory_reserve`` bytes; an explicit ``cpu`` (number of cores) or ``memory`` wins."""
    if share_base < 1:
        raise InvalidRequest(f"share_base: {share_base} must be 1 or more", field="share_base")
    cores = ncpu if cpu is None else cpu
    if cores < 1:
        raise InvalidRequest("invalid cpu map", field="cpu")
    size = mem_total - memory_reserve if memory is None else memory
    return {str(i): share_base for i in range(cores)}, max(size, 0)


MAX_CORES = 4096  # a node's cpu map holds at most this many cores
MAX_PIECES = (1 << 31) - 1  # pieces of one core (Eru parses them as int32)
MAX_MEMORY = 1 << 60  # 1 EiB, as schema.parse_size

CpuChange = int | str | Mapping[str, int]


def _cpu_change(cpu: CpuChange, *, share_base: int, delta: bool) -> dict[str, int]:
    """Eru's node cpu request (cpumem ``NodeResourceRequest.Parse``): a number N (int or digits) is
    cores ``"0"..N-1`` of ``share_base`` pieces each; ``"0:100,1:200"`` or a mapping is that map.
    Pieces may be negative only in a delta."""
    if isinstance(cpu, str) and cpu.strip().isdigit():
        cpu = int(cpu.strip())
    if isinstance(cpu, bool):
        raise InvalidRequest(f"cpu: {cpu!r} is not a number of cores or a cpu map", field="cpu")
    if isinstance(cpu, int):
        if not 1 <= cpu <= MAX_CORES:
            raise InvalidRequest(
                f"cpu: {cpu} cores: give 1 to {MAX_CORES} cores, or a map like 0:100,1:100"
                + (" (0:-100 takes pieces away)" if delta else ""),
                field="cpu",
            )
        return {str(i): share_base for i in range(cpu)}
    pairs: list[tuple[object, object]] = []
    if isinstance(cpu, str):
        for item in cpu.split(","):
            core_id, sep, text = item.partition(":")
            if not sep:
                raise InvalidRequest(
                    f"cpu: {item.strip()[:40]!r} is not core:pieces (a map is like 0:100,1:100)", field="cpu"
                )
            try:
                pairs.append((core_id.strip(), int(text)))
            except ValueError:
                raise InvalidRequest(
                    f"cpu: core {core_id.strip()[:20]}: {text.strip()[:20]!r} is not a number of pieces",
                    field="cpu",
                ) from None
    elif isinstance(cpu, Mapping):
        pairs = [(core, pieces) for core, pieces in cpu.items()]
    else:
        raise InvalidRequest(f"cpu: {cpu!r} is not a number of cores or a cpu map", field="cpu")
    if len(pairs) > MAX_CORES:
        raise InvalidRequest(f"cpu: {len(pairs)} cores, more than {MAX_CORES}", field="cpu")
    change: dict[str, int] = {}
    for core, pieces in pairs:
        if not isinstance(core, str) or not core.isdigit() or len(core) > 9:
            raise InvalidRequest(f"cpu: core {str(core)[:20]!r} is not a core number", field="cpu")
        if isinstance(pieces, bool) or not isinstance(pieces, int):
            raise InvalidRequest(f"cpu: core {core}: {pieces!r} is not a number of pieces", field="cpu")
        if abs(pieces) > MAX_PIECES or (pieces < 0 and not delta):
            raise InvalidRequest(
                f"cpu: core {core}: {pieces} pieces; give 0 to {MAX_PIECES}"
                + ("" if delta else " (negative pieces only with delta)"),
                field="cpu",
            )
        key = str(int(core))
        if key in change:
            raise InvalidRequest(f"cpu: core {key} is given twice", field="cpu")
        change[key] = pieces
    return change


def set_capacity(
    node: NodeResources,
    *,
    cpu: CpuChange | None = None,
    memory: int | None = None,
    delta: bool = False,
    ncpu: int | None = None,
    over_commit: bool = False,
) -> tuple[dict[str, int], int]:
    """Eru's ``SetNodeResourceCapacity`` (``erucli node set --cpu --memory [--delta]``): the node's
    new ``(cpu_map, memory)``.

    Without ``delta`` the given fields replace the capacity (the others are kept); with ``delta``
    they are added: a cpu map's pieces core by core (a number N is cores 0..N-1 of ``share_base``
    pieces each, as in Eru, so ``cpu=1`` adds a core's worth of pieces to core 0), memory bytes
    (either may be negative). Cores whose capacity and usage are both 0 are dropped; new cores
    start unused. Refused, naming the field: a core below the pieces its workloads hold (a core
    left out of an absolute map has 0), no core left ("invalid cpu map"), memory of 0 or less or
    below what is used (stricter than Eru, which does not check memory), and, when ``ncpu`` (the
    engine's NCPU) is known, cores the engine does not have unless ``over_commit``. A field not
    given is not checked, so a drifted usage never blocks changing the other one.
    """
    cpu_map = dict(node.cpu_map)
    size = node.memory
    if cpu is not None:
        change = _cpu_change(cpu, share_base=node.share_base, delta=delta)
        if delta:
            for core, pieces in change.items():
                cpu_map[core] = cpu_map.get(core, 0) + pieces
        else:
            cpu_map = change
        cpu_map = _checked_cpu_map(cpu_map, node.used_cpu_map, ncpu=ncpu, over_commit=over_commit)
    if memory is not None:
        memory = _whole_bytes("memory", memory)
        size = node.memory + memory if delta else memory
        _check_memory(size, node, memory if delta else None)
    return cpu_map, size


def _checked_cpu_map(
    cpu_map: Mapping[str, int], used_cpu_map: Mapping[str, int], *, ncpu: int | None, over_commit: bool
) -> dict[str, int]:
    held = {core: pieces for core, pieces in used_cpu_map.items() if pieces}
    kept = {core: pieces for core, pieces in cpu_map.items() if pieces or core in held}
    for core in sorted(set(kept) | set(held), key=core_id_key):
        pieces = kept.get(core, 0)
        if pieces < 0:
            raise InvalidRequest(f"cpu: core {core} would have {pieces} pieces", field="cpu")
        if pieces > MAX_PIECES:
            raise InvalidRequest(
                f"cpu: core {core} would have {pieces} pieces, more than {MAX_PIECES}", "cpu"
            )
        if pieces < held.get(core, 0):
            raise InvalidRequest(
                f"cpu: core {core} would have {pieces} pieces, but its workloads hold {held[core]} of it",
                field="cpu",
            )
    if not kept:
        raise InvalidRequest("invalid cpu map: a node needs at least one core with pieces", field="cpu")
    if len(kept) > MAX_CORES:
        raise InvalidRequest(f"cpu: {len(kept)} cores, more than {MAX_CORES}", field="cpu")
    if ncpu is not None and ncpu > 0 and not over_commit:
        beyond = [core for core in kept if not core.isdigit() or int(core) >= ncpu]
        if beyond:
            shown = ", ".join(sorted(beyond, key=core_id_key)[:8]) + (", …" if len(beyond) > 8 else "")
            raise InvalidRequest(
                f"cpu: the engine reports {ncpu} cores (NCPU), but core {shown} would be beyond them "
                f"({len(kept)} cores in all); set over_commit to declare them anyway",
                field="cpu",
            )
    return {core: kept[core] for core in sorted(kept, key=core_id_key)}


def _check_memory(size: int, node: NodeResources, change: int | None) -> None:
    how = f" (now {node.memory}, change {change:+d})" if change is not None else ""
    if size <= 0:
        raise InvalidRequest(f"memory: {size} bytes{how}; a node needs more than 0 bytes", field="memory")
    if size > MAX_MEMORY:
        raise InvalidRequest(f"memory: {size} bytes{how} is above the limit of 1 EiB", field="memory")
    if size < node.used_memory:
        raise InvalidRequest(
            f"memory: {size} bytes{how} would be below the {node.used_memory} bytes its workloads hold",
            field="memory",
        )


def docker_settings(
    req: ResourceRequest,
    cpu_map: Mapping[str, int],
    *,
    share_base: int = 100,
    share_pool: Sequence[str] = (),
    numa_node: str = "",
) -> dict[str, object]:
    """Keyword arguments for docker SDK ``containers.create`` (Eru's ``makeResourceSetting``).

    Bound (``cpu_map`` not empty): ``cpuset_cpus`` = its cores, ``cpuset_mems`` = ``numa_node`` if
    any, ``cpu_shares = round(1024 * fraction of cpu_limit)`` when that fraction is not 0; no quota
    (the cpuset is the limit). Unbound: ``cpu_period`` 100000 and ``cpu_quota = cpu_limit * 100000``
    when ``cpu_limit > 0``; ``cpuset_cpus`` = the remap ``share_pool`` when given. Memory:
    ``mem_limit = memswap_limit = memory_limit``, ``mem_reservation = max(memory_limit / 2, 6 MiB)``,
    all left out when the limit is 0 (unlimited). ``share_base`` is accepted for symmetry with the
    other calls; Docker shares come from ``cpu_limit`` as in Eru.
    """
    settings: dict[str, object] = {}
    if cpu_map:
        settings["cpuset_cpus"] = ",".join(sorted(cpu_map, key=core_id_key))
        if numa_node:
            settings["cpuset_mems"] = numa_node
        fraction = math.modf(req.cpu_limit)[0]
        if fraction > 0:
            settings["cpu_shares"] = _round_half_away(1024 * fraction)
    else:
        settings["cpu_period"] = CPU_PERIOD
        if req.cpu_limit > 0:
            settings["cpu_quota"] = int(req.cpu_limit * CPU_PERIOD)
        if share_pool:
            settings["cpuset_cpus"] = ",".join(share_pool)
    if req.memory_limit > 0:
        settings["mem_limit"] = req.memory_limit
        settings["memswap_limit"] = req.memory_limit
        settings["mem_reservation"] = max(req.memory_limit // 2, MIN_MEMORY_LIMIT)
    return settings


def docker_update_settings(
    req: ResourceRequest, cpu_map: Mapping[str, int], *, cores: Sequence[str], share_pool: Sequence[str] = ()
) -> dict[str, object]:
    """Keyword arguments for docker SDK ``update_container``: a running workload's new resources, as
    Eru's realloc and remap apply them. Unlike a create, every field is set (Docker keeps what an
    update leaves out): bound → ``cpuset_cpus`` its cores, no quota (-1), ``cpu_shares`` from the
    fraction of ``cpu_limit`` (else 1024); unbound → ``cpuset_cpus`` the ``share_pool`` (else all
    ``cores``), quota ``cpu_limit * period`` (else -1), shares 1024. Memory limit 0 (unlimited) is
    Eru's ``MaxInt64``: Docker cannot take a limit away, only raise it beyond anything."""
    settings: dict[str, object] = {"cpu_period": CPU_PERIOD, "cpu_quota": -1, "cpu_shares": 1024}
    if cpu_map:
        settings["cpuset_cpus"] = ",".join(sorted(cpu_map, key=core_id_key))
        fraction = math.modf(req.cpu_limit)[0]
        if fraction > 0:
            settings["cpu_shares"] = _round_half_away(1024 * fraction)
    else:
        settings["cpuset_cpus"] = ",".join(share_pool or sorted(cores, key=core_id_key))
        if req.cpu_limit > 0:
            settings["cpu_quota"] = int(req.cpu_limit * CPU_PERIOD)
    limit = req.memory_limit if req.memory_limit > 0 else UNLIMITED
    settings["mem_limit"] = limit
    settings["memswap_limit"] = limit  # cgroup v1 takes no memory limit above the swap limit
    settings["mem_reservation"] = max(req.memory_limit // 2, MIN_MEMORY_LIMIT) if req.memory_limit else 0
    return settings
