"""What Docker shows of the workloads' containers, recorded on transitions only: the sweep (and, with
the agent issue, the node agent) reports what it saw of one node; rows, audit events and the
`/status/{app}/{entry}/{node}/{id}` keys change only where the observed status changed. The node's
observed_at is the one value refreshed on every report: a workload's "last observed" is its node's."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from clusters import sync
from clusters.models import AuditEvent, Node, Workload
from clusters.services._common import SYSTEM, audit

Status = Workload.Status
Health = Workload.Health
Action = AuditEvent.Action
_NEWS: dict[str, AuditEvent.Action] = {
    Status.EXITED: Action.WORKLOAD_EXITED,
    Status.OOM_KILLED: Action.WORKLOAD_OOM_KILLED,
    Status.RESTARTING: Action.WORKLOAD_RESTARTING,
    Status.MISSING: Action.WORKLOAD_MISSING,
}
_FIELDS = [
    "status",
    "exit_code",
    "restart_count",
    "networks",
    "ports",
    "health",
    "status_since",
    "updated_at",
]


@dataclass(frozen=True)
class Seen:
    """One container of the node as it was seen, in plain values. `restart_count` None: not counted
    this time (a list call does not show it), keep the last count. `health` None: not checked now."""

    name: str
    container_id: str
    status: str  # a Workload.Status value
    exit_code: int | None = None
    restart_count: int | None = None
    networks: dict[str, str] = field(default_factory=dict)
    ports: list[dict[str, Any]] = field(default_factory=list)
    health: str | None = None


@dataclass
class Observed:
    """What one report changed: per workload name, its status before and after; the audited ones."""

    changes: dict[str, tuple[str, str]] = field(default_factory=dict)
    audited: list[str] = field(default_factory=list)


def _status(w: Workload, seen: Seen) -> tuple[str, int]:
    """Docker's state and restart count, with one rule on top: a container whose count grows
    between two looks (whatever state each look caught it in) is `restarting` until a look finds it
    running with the count unchanged — a crash loop is one transition, not one per crash."""
    count = w.restart_count if seen.restart_count is None else seen.restart_count
    looping = count > w.restart_count or (w.status == Status.RESTARTING and seen.restart_count is None)
    return (Status.RESTARTING if seen.status == Status.RUNNING and looping else seen.status), count


def _health(w: Workload, status: str, seen: Seen | None) -> str:
    """none without a health check; with one: what the check said, or unhealthy when not running."""
    if status == Status.UNKNOWN:
        return Health.UNKNOWN
    if not w.healthcheck:
        return Health.NONE
    if status != Status.RUNNING:
        return Health.UNHEALTHY
    return (seen.health if seen else None) or (w.health if w.status == Status.RUNNING else Health.UNKNOWN)


def _observed(w: Workload, seen: Seen | None, reachable: bool) -> tuple[Any, ...]:
    """(status, exit_code, restart_count, networks, ports) from what was seen of the row's container."""
    if not reachable:
        return Status.UNKNOWN, w.exit_code, w.restart_count, w.networks, w.ports
    if seen is None:
        return Status.MISSING, w.exit_code, w.restart_count, w.networks, []
    status, count = _status(w, seen)
    exit_code = None if status in (Status.RUNNING, Status.PAUSED) else seen.exit_code
    if status == Status.RESTARTING and seen.exit_code is None:
        exit_code = w.exit_code  # caught running between two crashes: the last exit stands
    return status, exit_code, count, seen.networks or w.networks, seen.ports


def _apply(w: Workload, seen: Seen | None, reachable: bool, now: datetime) -> str | None:
    """Update the row in memory from what was seen; the status before, or None if nothing changed."""
    status, exit_code, count, networks, ports = _observed(w, seen, reachable)
    new = (status, exit_code, count, networks, ports, _health(w, status, seen))
    if new == (w.status, w.exit_code, w.restart_count, w.networks, w.ports, w.health):
        return None
    before = w.status
    w.status, w.exit_code, w.restart_count, w.networks, w.ports, w.health = new
    if w.status != before:
        w.status_since = now
    w.updated_at = now
    return before


def _action(w: Workload, before: str) -> AuditEvent.Action | None:
    """The audit action of a status change, when it is news: not a container's first look or its
    node's coming back running, not the exit of a container the portal stopped."""
    if w.status == before:
        return None
    if w.status == Status.RUNNING:
        return None if before in (Status.UNOBSERVED, Status.UNKNOWN) else Action.WORKLOAD_STARTED
    if w.status == Status.EXITED and w.state == Workload.State.STOPPED:
        return None
    return _NEWS.get(w.status)


def _cause(w: Workload) -> str:
    causes: dict[str, str] = {
        Status.EXITED: f"exit {w.exit_code}",
        Status.OOM_KILLED: f"OOM-killed (exit {w.exit_code})",
        Status.RESTARTING: f"crashing (exit {w.exit_code}); Docker restarts it: {w.restart_count} so far",
        Status.MISSING: "its container was removed outside the portal",
    }
    return causes.get(w.status, "running again")


def node_observe(
    *,
    node_id: int,
    seen: Sequence[Seen] | None,
    looked_at: datetime,
    error: str = "",
    dry_run: bool = False,
) -> Observed:
    """Record what a look at one node's containers found: `seen` (every ERU container of the node),
    or None with `error` when the node's engine did not answer — then its workloads are unknown, and
    the node's going away and coming back are one audit event each. Rows that changed after
    `looked_at` (a worker acted on them meanwhile) are left to the next look. `dry_run`: say what
    would change, change nothing (reconcile without --repair)."""
    result = Observed()
    now = timezone.now()
    reachable = seen is not None
    by_id = {s.container_id: s for s in seen or ()}
    by_name = {s.name: s for s in seen or ()}
    with transaction.atomic():
        node = Node.objects.select_related("pod").get(pk=node_id)
        rows = (
            Workload.objects.select_for_update(of=("self",))
            .select_related("pod")
            .filter(node_id=node_id, state__in=Workload.OBSERVED, updated_at__lt=looked_at)
        )
        changed = []
        for w in rows:
            w.node = node
            before = _apply(w, by_id.get(w.container_id) or by_name.get(w.name), reachable, now)
            if before is None:
                continue
            changed.append(w)
            result.changes[w.name] = (before, w.status)
            action = _action(w, before)
            if action is not None:
                after = {"status": w.status, "exit_code": w.exit_code, "restart_count": w.restart_count}
                audit(
                    SYSTEM,
                    action,
                    w,
                    pod=w.pod,
                    before={"status": before},
                    after={**after, "cause": _cause(w)},
                )
                result.audited.append(w.name)
        Workload.objects.bulk_update(changed, _FIELDS)
        _node_transition(node, reachable, error)
        sync.push({k: v for w in changed for k, v in sync.workload_status_keys(w).items()})
        Node.objects.filter(pk=node_id).update(
            last_error=error[:2000], **({"observed_at": now} if reachable else {})
        )
        if dry_run:
            transaction.set_rollback(True)  # and the etcd writes queued for the commit go with it
    return result


def _node_transition(node: Node, reachable: bool, error: str) -> None:
    """One audit event when a node's engine stops answering, and one when it answers again."""
    if reachable == (not node.last_error):
        return
    if reachable:
        audit(SYSTEM, Action.NODE_REACHABLE, node, pod=node.pod, before={"error": node.last_error})
    else:
        after = {"error": error[:500], "cause": "node lost: the status of its workloads is unknown"}
        audit(SYSTEM, Action.NODE_UNREACHABLE, node, pod=node.pod, after=after)
