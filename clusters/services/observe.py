"""What Docker shows of the workloads' containers, recorded on transitions only: the sweep (nodes
without an agent) and the node agent (clusters.services.agent) report what they saw of one node;
rows, audit events and the `/status/{app}/{entry}/{node}/{id}` keys change only where the observed
status changed, so a look that finds nothing new writes nothing but the node's observed_at."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from django.db import transaction
from django.utils import timezone

from clusters import selectors, sync
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
    "health_since",
    "updated_at",
]
Observed_ = tuple[str, int | None, int, dict[str, str], list[dict[str, Any]], str]


class _Row(Protocol):
    """What the rules read of a row: a Workload, or a selectors.Observation of one."""

    @property
    def name(self) -> str: ...
    @property
    def container_id(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def exit_code(self) -> int | None: ...
    @property
    def restart_count(self) -> int: ...
    @property
    def networks(self) -> dict[str, str]: ...
    @property
    def ports(self) -> list[dict[str, Any]]: ...
    @property
    def health(self) -> str: ...
    @property
    def healthcheck(self) -> dict[str, Any] | None: ...


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
    ports: list[dict[str, Any]] | None = field(default_factory=list)  # None: not known, keep the last
    health: str | None = None
    up: float | None = None  # running, while its row is restarting: for how many seconds (None: a
    # minute or more, or not known)


@dataclass
class Observed:
    """What one report changed: per workload name, its status before and after; the audited ones."""

    changes: dict[str, tuple[str, str]] = field(default_factory=dict)
    audited: list[str] = field(default_factory=list)
    left: set[int] = field(default_factory=set)  # rows that differ but are a worker's to write now


STEADY = 10.0  # seconds a restarted container must run to be out of its loop (Docker's backoff reset)


def _status(w: _Row, seen: Seen) -> tuple[str, int]:
    """Docker's state and restart count, with one rule on top: a container whose count grows
    between two looks (whatever state each look caught it in) is `restarting`, and stays so while a
    look finds it running for less than STEADY seconds since its last restart — a crash loop is one
    transition, not one per crash, nor a `running` between two crashes."""
    count = w.restart_count if seen.restart_count is None else seen.restart_count
    young = seen.up is not None and seen.up < STEADY
    looping = count > w.restart_count or (
        w.status == Status.RESTARTING and (young or seen.restart_count is None)
    )
    return (Status.RESTARTING if seen.status == Status.RUNNING and looping else seen.status), count


def _health(w: _Row, status: str, seen: Seen | None) -> str:
    """none without a health check; with one: what the check said, or unhealthy when not running."""
    if status == Status.UNKNOWN:
        return Health.UNKNOWN
    if not w.healthcheck:
        return Health.NONE
    if status != Status.RUNNING:
        return Health.UNHEALTHY
    return (seen.health if seen else None) or (w.health if w.status == Status.RUNNING else Health.UNKNOWN)


def observed(w: _Row, seen: Seen | None, reachable: bool) -> Observed_:
    """(status, exit_code, restart_count, networks, ports, health) of the row after this look: the
    container seen for it, none (missing), or nothing could be seen (unknown)."""
    status: str
    if not reachable or seen is None:  # the node did not answer, or the container is gone
        status = Status.UNKNOWN if not reachable else Status.MISSING
        ports = w.ports if not reachable else []
        return status, w.exit_code, w.restart_count, w.networks, ports, _health(w, status, seen)
    status, count = _status(w, seen)
    exit_code = None if status in (Status.RUNNING, Status.PAUSED) else seen.exit_code
    if status == Status.RESTARTING and seen.exit_code is None:
        exit_code = w.exit_code  # caught running between two crashes: the last exit stands
    # Addresses only while it runs: a container killed with its dockerd may still list its old one.
    up = seen.status in (Status.RUNNING, Status.PAUSED)
    networks = {name: ip for name, ip in seen.networks.items() if ip} if up else {}
    ports = w.ports if seen.ports is None else seen.ports
    return status, exit_code, count, networks, ports, _health(w, status, seen)


def _current(w: _Row) -> Observed_:
    return w.status, w.exit_code, w.restart_count, w.networks, w.ports, w.health


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


def _health_action(w: Workload, before: str, health_before: str) -> AuditEvent.Action | None:
    """A health check that starts failing after it passed, or passes again after that, while the
    container runs on (a start-up's first failing checks are no news)."""
    if not (w.status == before == Status.RUNNING) or w.health == health_before:
        return None
    if w.health == Health.UNHEALTHY:
        return Action.WORKLOAD_UNHEALTHY if health_before == Health.HEALTHY else None
    if w.health != Health.HEALTHY or health_before != Health.UNHEALTHY:
        return None
    flips = AuditEvent.objects.filter(
        target_type="workload",
        target_id=str(w.pk),
        action__in=[Action.WORKLOAD_HEALTHY, Action.WORKLOAD_UNHEALTHY],
    )
    last = flips.order_by("-id").values_list("action", flat=True).first()
    return Action.WORKLOAD_HEALTHY if last == Action.WORKLOAD_UNHEALTHY else None


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
    node: Node,
    seen: Sequence[Seen] | None,
    looked_at: datetime,
    error: str = "",
    rows: Mapping[str, selectors.Observation] | None = None,
    touch: bool = True,
    dry_run: bool = False,
    partial: bool = False,
    transitions: bool = True,
) -> Observed:
    """Record what a look at one node's containers found: `seen` (every ERU container of the node),
    or None with `error` when the node's engine did not answer — then its workloads are unknown, and
    the node's going away and coming back are one audit event each.

    `rows`: what the rows said before the look (selectors.observations), read here if not given.
    A row that changed after `looked_at`, or has a control action in flight, is a worker's to
    write; it is left to the next look. `touch`: also record the contact on the node (observed_at,
    last_error); the sweep records every node's at once. `dry_run`: say what would change, change
    nothing (reconcile without --repair). `partial`: `seen` is some of the node's containers (an
    agent's report of what just changed): a row not in it is left as it is, not missing.
    `transitions`: also record the node's going away or coming back (an agent's report does not:
    its heartbeat does, under the node's lock)."""
    reachable = seen is not None
    by_id = {s.container_id: s for s in seen or ()}
    by_name = {s.name: s for s in seen or ()}

    def seen_for(w: _Row) -> Seen | None:
        return by_id.get(w.container_id) or by_name.get(w.name)

    rows = selectors.observations([node.pk], before=looked_at)[node.pk] if rows is None else rows
    moved = [
        o.pk
        for o in rows.values()
        if not (partial and reachable and seen_for(o) is None)
        and observed(o, seen_for(o), reachable) != _current(o)
    ]
    result = Observed()
    if not moved and (reachable == (not node.last_error) or not transitions) and not dry_run:
        if touch:
            node_contact(nodes=[node], errors={node.pk: error}, at=timezone.now())
        return result
    with transaction.atomic():
        now = timezone.now()
        changed = []
        result.left = set(moved)
        for w in (
            Workload.objects.select_for_update(of=("self",))
            .select_related("pod")
            .filter(pk__in=moved, updated_at__lt=looked_at, action="")
        ):
            result.left.discard(w.pk)
            w.node = node
            before, health_before = w.status, w.health
            new = observed(w, seen_for(w), reachable)
            if new == _current(w):
                continue
            w.status, w.exit_code, w.restart_count, w.networks, w.ports, w.health = new
            w.status_since = now if w.status != before else w.status_since
            w.health_since = now if w.health != health_before else w.health_since
            w.updated_at = now
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
            health_action = _health_action(w, before, health_before)
            if health_action is not None:
                audit(SYSTEM, health_action, w, pod=w.pod, before={"health": health_before})
        Workload.objects.bulk_update(changed, _FIELDS)
        if transitions:
            _node_transition(node, reachable, error)
        sync.push({k: v for w in changed for k, v in sync.workload_status_keys(w).items()})
        if touch:
            node_contact(nodes=[node], errors={node.pk: error}, at=now)
        if dry_run:
            transaction.set_rollback(True)  # and the etcd writes queued for the commit go with it
    return result


def node_contact(*, nodes: Sequence[Node], errors: Mapping[int, str], at: datetime) -> None:
    """When the core last heard from these nodes' engines (those whose error is empty), and why the
    others did not answer: one UPDATE for all the nodes that answered and did before."""
    fine = [n.pk for n in nodes if not errors.get(n.pk) and not n.last_error]
    if fine:
        Node.objects.filter(pk__in=fine).update(observed_at=at)
    for n in nodes:
        error = errors.get(n.pk, "")[:2000]
        if n.pk not in fine:
            Node.objects.filter(pk=n.pk).update(last_error=error, **({} if error else {"observed_at": at}))


def _node_transition(node: Node, reachable: bool, error: str) -> None:
    """One audit event when a node's engine stops answering, and one when it answers again."""
    if reachable == (not node.last_error):
        return
    if reachable:
        audit(SYSTEM, Action.NODE_REACHABLE, node, pod=node.pod, before={"error": node.last_error})
    else:
        after = {"error": error[:500], "cause": "node lost: the status of its workloads is unknown"}
        audit(SYSTEM, Action.NODE_UNREACHABLE, node, pod=node.pod, after=after)
