"""Scheduling speed against Eru's published figures and against straightforward references.

Run: ``.venv/bin/python bench/scheduling.py`` (or ``python -m bench.scheduling``) from the repo root.

The original's figures are from Eru's white paper, measured in Go on a 2013 laptop:
(a) AUTO, 10,240,000 - 1 instances over 10,000 nodes already running a random 0..1023 each, with room
for 1024 more: ~70 ms; (b) bound capacity over 10,000 nodes x 24 cores, share base 10, 1.3 cpu
(180,000 instances in all): ~400 ms; (c) unbound, memory-driven capacity over 10,000 nodes x 128 GiB
for 128 MiB instances: < 60 ms.

The in-run references are the step-by-step implementations kept as test oracles
(tests/scheduling/scheduling_oracle.py): one heap pop per instance for AUTO, Eru's literal cpu plan
search (every conversion rebuilt) for bound capacity; they run on a slice and are scaled up.
"""

from __future__ import annotations

import gc
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, this file's directory comes first on sys.path and would shadow the package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from scheduling import (  # noqa: E402
    GiB,
    MiB,
    NodeInfo,
    NodeResources,
    deploy_capacity,
    normalize_request,
    plan,
)
from tests.scheduling.scheduling_oracle import go_cpu_plans, heap_auto  # noqa: E402

T = TypeVar("T")
NODES = 10_000
REPEAT = 5


def best_of(fn: Callable[[], T], repeat: int = REPEAT) -> tuple[float, T]:
    """Best wall time in seconds over ``repeat`` runs, and the last result."""
    best = float("inf")
    result: T
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms"


def ratio(label: str, figure: float, other_label: str, other: float) -> None:
    print(f"    {label} {ms(figure)} / {other_label} {ms(other)} = {figure / other:.3f}")


def bench_auto() -> None:
    rng = random.Random(1024)
    infos = [NodeInfo(f"node{i}", 1024, rng.randrange(1024)) for i in range(NODES)]
    total = 1024 * NODES
    need = total - 1
    seconds, deploy = best_of(lambda: plan("AUTO", infos, need, total))
    assert sum(deploy.values()) == need

    sample = need // 100
    heap_seconds, heap_deploy = best_of(lambda: heap_auto(infos, sample, total, 0), repeat=1)
    assert heap_deploy == plan("AUTO", infos, sample, total)  # same answer, exactly
    heap_scaled = heap_seconds * need / sample

    print(f"(a) AUTO: {need:,} instances over {NODES:,} nodes (water level)")
    print(f"    heap per instance: {ms(heap_seconds)} for {sample:,} instances, scaled to {ms(heap_scaled)}")
    ratio("figure", seconds, "original", 0.070)
    ratio("figure", seconds, "heap reference", heap_scaled)


def bench_bound() -> None:
    cores = {str(c): 10 for c in range(24)}
    nodes = [NodeResources(f"node{i}", cores, 128 * GiB, {}, 0.0, 0, share_base=10) for i in range(NODES)]
    req = normalize_request(cpu_request=1.3, cpu_bind=True)
    seconds, (capacities, total) = best_of(lambda: deploy_capacity(nodes, req))
    assert total == 180_000
    assert len(capacities) == NODES

    sample = 100

    def literal() -> int:
        return sum(len(go_cpu_plans(dict(n.cpu_map), 1.3, share_base=10)) for n in nodes[:sample])

    literal_seconds, literal_total = best_of(literal, repeat=1)
    assert literal_total == 18 * sample
    literal_scaled = literal_seconds * NODES / sample

    print(f"(b) bound capacity: {NODES:,} nodes x 24 cores, share base 10, 1.3 cpu -> {total:,} instances")
    print(f"    literal plan search: {ms(literal_seconds)} for {sample} nodes, scaled to", ms(literal_scaled))
    ratio("figure", seconds, "original", 0.400)
    ratio("figure", seconds, "literal reference", literal_scaled)


def bench_unbound() -> None:
    cores = {str(c): 100 for c in range(24)}
    nodes = [NodeResources(f"node{i}", cores, 128 * GiB, {}, 0.0, 0) for i in range(NODES)]
    req = normalize_request(cpu_request=1, memory_request=128 * MiB)
    seconds, (capacities, total) = best_of(lambda: deploy_capacity(nodes, req))
    assert total == 1024 * NODES
    assert len(capacities) == NODES

    print(f"(c) unbound capacity: {NODES:,} nodes x 128 GiB, 128 MiB each -> {total:,} instances")
    ratio("figure", seconds, "original", 0.060)


def main() -> None:
    print(f"scheduling bench, Python {sys.version.split()[0]}, best of {REPEAT} (references: one run)")
    bench_auto()
    bench_bound()
    bench_unbound()


if __name__ == "__main__":
    main()
