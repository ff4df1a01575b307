"""The usage history: what a node's workloads used, recorded per workload and per node in 15 s steps
for an hour and 5 min steps for a day, pruned beyond. Samples come from a node's agent (pushed over
its gRPC link, CPU already a rate) or from the core's poll of one-shot Docker stats (CPU a rate of
the counter against the previous poll's sample, kept on the row). Samples are measurements, not
changes anyone asked for: they are not audited."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from django.db import transaction
from django.utils import timezone

from clusters import permissions
from clusters.models import Node, NodeUsage, Workload, WorkloadUsage
from clusters.services._common import Actor

FINE, COARSE = 15, 300  # seconds per step
KEPT = {FINE: timedelta(hours=1), COARSE: timedelta(days=1)}


@dataclass(frozen=True, slots=True)
class Use:
    """One container's sample: CPU in cores (None: no rate yet), memory in bytes, and (polled from
    Docker) its CPU counter and Docker's time of the sample, for the next rate."""

    cpu: float | None
    memory: int
    cpu_ns: int = 0
    sampled: float = 0.0


def bucket(at: float, step: int) -> datetime:
    return datetime.fromtimestamp(at - at % step, tz=UTC)


def usage_record(*, actor: Actor, node: Node, usage: Mapping[str, Use], at: float) -> int:
    """Record the samples of the node's containers (by container id) taken at unix time `at`: the
    15 s step holds the latest sample, the 5 min step the average of its samples, for each workload
    and for the node (the sum of its workloads). Containers that are no workload of the node are
    left out. Returns how many workloads were recorded. From the node's agent, an administrator
    or the system (the core's own poll)."""
    permissions.require_node_report(actor.user, actor.principal, node)
    ids = dict(
        Workload.objects.filter(node=node, container_id__in=list(usage)).values_list("container_id", "pk")
    )
    uses = {ids[cid]: use for cid, use in usage.items() if cid in ids}
    if not uses:
        return 0
    fine, coarse = bucket(at, FINE), bucket(at, COARSE)
    rated = {pk: u for pk, u in uses.items() if u.cpu is not None}
    with transaction.atomic():
        WorkloadUsage.objects.bulk_create(
            [
                WorkloadUsage(
                    workload_id=pk, step=FINE, at=fine, cpu=u.cpu, memory=u.memory, cpu_ns=u.cpu_ns,
                    sampled=u.sampled,
                )
                for pk, u in uses.items()
            ],
            update_conflicts=True,
            unique_fields=["workload", "step", "at"],
            update_fields=["cpu", "memory", "n", "cpu_ns", "sampled"],
        )  # fmt: skip
        before = {
            r.workload_id: r
            for r in WorkloadUsage.objects.select_for_update().filter(
                workload_id__in=list(rated), step=COARSE, at=coarse
            )
        }
        WorkloadUsage.objects.bulk_create(
            [_averaged(WorkloadUsage(workload_id=pk, step=COARSE, at=coarse), before.get(pk), u.cpu, u.memory)
             for pk, u in rated.items()],
            update_conflicts=True,
            unique_fields=["workload", "step", "at"],
            update_fields=["cpu", "memory", "n"],
        )  # fmt: skip
        if rated:
            cpu = sum(u.cpu or 0.0 for u in rated.values())
            memory = sum(u.memory for u in rated.values())
            NodeUsage.objects.update_or_create(
                node=node, step=FINE, at=fine, defaults={"cpu": cpu, "memory": memory, "n": 1}
            )
            old = NodeUsage.objects.select_for_update().filter(node=node, step=COARSE, at=coarse).first()
            row = _averaged(NodeUsage(node=node, step=COARSE, at=coarse), old, cpu, memory)
            NodeUsage.objects.bulk_create(
                [row], update_conflicts=True, unique_fields=["node", "step", "at"],
                update_fields=["cpu", "memory", "n"],
            )  # fmt: skip
    return len(uses)


R = TypeVar("R", WorkloadUsage, NodeUsage)


def _averaged(row: R, old: R | None, cpu: float | None, memory: int) -> R:
    """The step's row with one more sample in its averages."""
    n = old.n if old is not None else 0
    row.cpu = ((old.cpu or 0.0) * n + (cpu or 0.0)) / (n + 1) if old is not None else cpu
    row.memory = round(((old.memory if old is not None else 0) * n + memory) / (n + 1))
    row.n = n + 1
    return row


def usage_prune(*, now: datetime | None = None) -> int:
    """Delete the rows older than their step keeps (an hour of 15 s steps, a day of 5 min steps)."""
    now = now or timezone.now()
    gone = 0
    for model in (WorkloadUsage, NodeUsage):
        for step, kept in KEPT.items():
            gone += model.objects.filter(step=step, at__lt=now - kept).delete()[0]
    return gone
