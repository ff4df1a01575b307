"""Why a node takes no instance of a request: the resource half of a placement failure summary (as
Nomad's "Resources exhausted on N nodes: cpu exhausted on 2, memory exhausted on 1"). The filters
before it (down, node names, labels) need the database and etcd and are the caller's; here only the
arithmetic of one node against one request, with the same rules as ``node_deploy_capacity``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from scheduling.cpuplans import request_pieces
from scheduling.errors import SchedulingError
from scheduling.resources import UNLIMITED, NodeResources, ResourceRequest, node_deploy_capacity

__all__ = ["CPU", "MEMORY", "NODES_LIMIT", "Shortfall", "limited_out", "node_fit", "size"]

CPU = "cpu"
MEMORY = "memory"
NODES_LIMIT = "nodes limit"


@dataclass(frozen=True)
class Shortfall:
    """The node takes no instance: `resource` (CPU or MEMORY) is short, `detail` says by how much."""

    resource: str
    detail: str


def size(n: int) -> str:
    """Bytes as people read them (binary units, at most one decimal)."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" or value == int(value) else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover


def _cpu(x: float) -> str:
    return f"{x:.2f}".rstrip("0").rstrip(".")


def node_fit(node: NodeResources, req: ResourceRequest) -> int | Shortfall:
    """How many instances of `req` the node takes now (UNLIMITED: memory does not bound it), or
    why it takes none."""
    try:
        info = node_deploy_capacity(node, req)
    except SchedulingError as exc:
        return Shortfall(CPU, str(exc))
    if info is not None:
        return info.capacity
    free_memory = node.available_memory()
    cores = len(node.cpu_map)
    if not req.cpu_bind:
        if req.cpu_request > cores:
            return Shortfall(CPU, f"{_cpu(req.cpu_request)} cpu asked, the node has {cores} cores")
        return Shortfall(MEMORY, f"{size(max(free_memory, 0))} free, {size(req.memory_request)} asked")
    if req.memory_request > free_memory:
        return Shortfall(MEMORY, f"{size(max(free_memory, 0))} free, {size(req.memory_request)} asked")
    free = node.available_cpu_map()
    whole = sum(1 for pieces in free.values() if pieces >= node.share_base)
    loose = sum(pieces % node.share_base for pieces in free.values() if pieces > 0)
    try:
        asked = request_pieces(req.cpu_request, node.share_base)
    except SchedulingError as exc:
        return Shortfall(CPU, str(exc))
    need_whole, need_pieces = divmod(asked, node.share_base)
    ask = f"{need_whole} whole core{'s' if need_whole != 1 else ''}" + (
        f" + {need_pieces} pieces" if need_pieces else ""
    )
    return Shortfall(
        CPU,
        f"bound: {ask} asked ({_cpu(req.cpu_request)} cpu); free: {whole} whole "
        f"core{'s' if whole != 1 else ''} and {loose} loose pieces of {node.share_base} per core",
    )


def limited_out(fits: Sequence[tuple[str, int]], nodes_limit: int) -> list[str]:
    """With a nodes limit, the nodes beyond it: of the nodes that fit (name, capacity), the largest
    `nodes_limit` can be used together, the rest are left out (none when there is no limit)."""
    if nodes_limit <= 0 or len(fits) <= nodes_limit:
        return []
    ranked = sorted(fits, key=lambda f: (-min(f[1], UNLIMITED), f[0]))
    return sorted(name for name, _ in ranked[nodes_limit:])
