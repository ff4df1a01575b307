"""The core's usage poll of the nodes without an agent (an agent pushes its node's usage itself): the
one-shot Docker stats of every running ERU workload of a node, in parallel over mutual TLS, with CPU
as the rate of its counter since the previous poll's sample (kept on the history's row)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta

from django import db
from django.conf import settings
from django.utils import timezone

from clusters import etcd, selectors, services
from clusters.models import Node, Workload, WorkloadUsage
from clusters.services.usage import FINE
from engine import docker, stats

log = logging.getLogger(__name__)
STATS_TIMEOUT = 10  # s per stats call: a node slower than that is skipped until the next poll


@dataclass
class Polled:
    node: str
    recorded: int = 0
    errors: dict[str, str] = field(default_factory=dict)  # container id (or "node") -> why


_one_at_a_time = threading.Lock()


def poll(nodes: Sequence[Node] | None = None) -> list[Polled]:
    """Poll every agentless node whose heartbeat is alive (or these), all at once; nothing while
    another poll runs in this process (the next one will)."""
    if not _one_at_a_time.acquire(blocking=False):
        return []
    try:
        if nodes is None:
            alive = etcd.alive_nodes()
            nodes = [n for n in Node.objects.filter(agent=False) if n.name in alive]
        if not nodes:
            return []
        with ThreadPoolExecutor(max_workers=min(8, len(nodes)), thread_name_prefix="usage") as pool:
            return list(pool.map(_poll_quietly, nodes))
    finally:
        _one_at_a_time.release()


def _poll_quietly(node: Node) -> Polled:
    try:
        return poll_node(node)
    except docker.DockerError as exc:
        return Polled(node.name, errors={"node": str(exc)})
    finally:
        db.connections.close_all()  # a pool thread's connection is its own


def poll_node(node: Node) -> Polled:
    """Sample the node's running workloads and record them."""
    running = dict(
        Workload.objects.filter(node=node, state=Workload.State.RUNNING)
        .exclude(container_id="")
        .values_list("pk", "container_id")
    )
    if not running:
        return Polled(node.name)
    client = selectors.node_client(node, timeout=STATS_TIMEOUT)
    samples, errors = stats.many(client, running.values(), workers=settings.ERU_STATS_CONCURRENCY)
    previous = _previous(list(running))
    uses = {}
    for pk, cid in running.items():
        got = samples.get(cid)
        if got is None:
            continue
        before = previous.get(pk)
        cpu = stats.cores_between(before[0], before[1], got) if before else None
        uses[cid] = services.Use(cpu=cpu, memory=got.memory, cpu_ns=got.cpu_ns, sampled=got.read)
    recorded = services.usage_record(actor=services.SYSTEM, node=node, usage=uses, at=time.time())
    return Polled(node.name, recorded, errors)


def _previous(workload_ids: list[int]) -> dict[int, tuple[int, float]]:
    """Each workload's last polled sample (CPU counter, Docker's time), from the last minute."""
    recent = timezone.now() - timedelta(seconds=60)
    rows = (
        WorkloadUsage.objects.filter(workload_id__in=workload_ids, step=FINE, at__gte=recent, sampled__gt=0)
        .order_by("workload_id", "-at")
        .values_list("workload_id", "cpu_ns", "sampled")
    )
    found: dict[int, tuple[int, float]] = {}
    for pk, cpu_ns, sampled in rows:
        found.setdefault(pk, (cpu_ns, sampled))
    return found
