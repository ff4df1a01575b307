"""The node agent's reports, as the gRPC door hands them over (Eru's SetNodeStatus and
SetWorkloadsStatus), the node's loss when its heartbeat lease expires (selfmon), and the node's agent
credential. A heartbeat refreshes the node's lease and its one "last heard" value; everything else
changes on transitions only."""

from __future__ import annotations

import dataclasses
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from clusters import authentication, etcd, permissions, selectors
from clusters.models import AuditEvent, Node, Workload
from clusters.services._common import SYSTEM, Actor, audit, invalid
from clusters.services.observe import Seen, node_observe

Action = AuditEvent.Action
Status = Workload.Status
Health = Workload.Health
SECRET_PREFIX = "erunode_"
OUR_AGENT = "eru-portal-agent"  # this project's agent's version string starts so
_OURS = {Status.RUNNING, Status.EXITED, Status.OOM_KILLED, Status.RESTARTING, Status.PAUSED, Status.MISSING}


@dataclass(frozen=True)
class Report:
    """One WorkloadStatus of Eru's protocol, in plain values. `status` empty: Eru's own agent, which
    says only running and healthy; the rest is this project's agent's (see protocol/core.proto)."""

    container_id: str
    running: bool
    healthy: bool
    networks: dict[str, str]
    status: str = ""
    exit_code: int | None = None
    restart_count: int | None = None
    ports: list[dict[str, Any]] | None = None
    health: str = ""
    up: float | None = None
    nodename: str = ""
    seq: int = 0  # this project's agent: its count of statuses sent for the container; 0: none


def node_secret_rotate(*, actor: Actor, node: Node) -> str:
    """A new agent credential for the node (the old one stops working); the plaintext is returned once,
    only its SHA-256 digest is kept."""
    permissions.require_admin(actor.user)
    secret = SECRET_PREFIX + secrets.token_urlsafe(30)
    with transaction.atomic():
        node = Node.objects.select_for_update(of=("self",)).select_related("pod").get(pk=node.pk)
        had = bool(node.secret_digest)
        node.secret_digest, node.secret_created_at = authentication.digest(secret), timezone.now()
        node.save(update_fields=["secret_digest", "secret_created_at"])
        audit(actor, Action.NODE_SECRET_ROTATE, node, pod=node.pod, after={"replaced": had})
    return secret


def node_secret_revoke(*, actor: Actor, node: Node) -> None:
    """The node's agent credential stops working (within the gRPC door's credential cache, seconds)."""
    permissions.require_admin(actor.user)
    with transaction.atomic():
        node = Node.objects.select_for_update(of=("self",)).select_related("pod").get(pk=node.pk)
        node.secret_digest, node.secret_created_at = "", None
        node.save(update_fields=["secret_digest", "secret_created_at"])
        audit(actor, Action.NODE_SECRET_REVOKE, node, pod=node.pod)


def node_agent_clear(*, actor: Actor, node: Node) -> Node:
    """Hand the node back to the central sweep (its agent is gone for good). Until this, a node whose
    agent once reported is the agent's: a dead agent never lets a central ping keep its node up."""
    permissions.require_admin(actor.user)
    with transaction.atomic():
        node = Node.objects.select_for_update(of=("self",)).select_related("pod").get(pk=node.pk)
        if not node.agent:
            return node
        before = {"agent_version": node.agent_version, "agent_peer": node.agent_peer}
        node.agent, node.agent_conflict, node.agent_conflict_at = False, "", None
        node.save(update_fields=["agent", "agent_conflict", "agent_conflict_at"])
        audit(actor, Action.NODE_AGENT_CLEAR, node, pod=node.pod, before=before)
    return node


def node_heartbeat(*, actor: Actor, node: Node, ttl: int, peer: str, version: str, dropped: int = 0) -> bool:
    """Eru's SetNodeStatus from the node's agent: ttl > 0 puts the node's heartbeat key on a lease of
    ttl seconds, ttl < 0 deletes it (a clean exit). Returns True from the core's losing the node until
    the agent's next complete report: the agent then reports every container again (its workloads
    are unknown meanwhile; a lost answer is asked again at the next beat). From an
    administrator (Eru's `node set-status`), only the lease: the node does not become agent-managed."""
    permissions.require_node_report(actor.user, actor.principal, node)
    if ttl == 0:
        raise invalid("ttl", "invalid TTL for node status, should be > 0")
    if ttl < 0:
        etcd.delete_heartbeat(node.name)
        return False
    etcd.heartbeat(node.name, node.pod.name, ttl)  # first: selfmon checks the key under the node's lock
    if not actor.principal:  # an administrator's `node set-status`: the lease only, no agent
        return False
    now = timezone.now()
    version = version[:128]
    steady = Node.objects.filter(
        pk=node.pk,
        agent=True,
        last_error="",
        agent_conflict="",
        agent_resync=False,
        agent_peer=peer,
        agent_version=version,
    ).update(agent_heard_at=now, agent_log_dropped=dropped)
    if steady:
        return False
    return _agent_news(actor, node, ttl, peer, version, dropped)


def _agent_news(actor: Actor, node: Node, ttl: int, peer: str, version: str, dropped: int) -> bool:
    """A heartbeat that is not just one more: a first report, a new version or peer, two peers for one
    node, or a node the core had lost."""
    with transaction.atomic():
        node = Node.objects.select_for_update(of=("self",)).select_related("pod").get(pk=node.pk)
        now = timezone.now()
        if not node.agent:
            node.agent = True
            audit(actor, Action.NODE_AGENT, node, pod=node.pod, after={"version": version, "peer": peer})
        recent = node.agent_heard_at is not None and node.agent_heard_at > now - timedelta(seconds=ttl)
        if node.agent_peer and node.agent_peer != peer and recent:
            if not node.agent_conflict:
                node.agent_conflict = f"agents at {node.agent_peer} and {peer} both report as {node.name}"
                audit(
                    SYSTEM,
                    Action.NODE_AGENT_CONFLICT,
                    node,
                    pod=node.pod,
                    after={"peers": [node.agent_peer, peer]},
                )
            node.agent_conflict_at = now
        elif (
            node.agent_conflict
            and node.agent_conflict_at
            and node.agent_conflict_at < now - timedelta(seconds=ttl)
        ):
            node.agent_conflict, node.agent_conflict_at = "", None  # the other one has gone quiet
        node.agent_peer, node.agent_version, node.agent_heard_at = peer, version, now
        node.agent_log_dropped = dropped
        if not version.startswith(OUR_AGENT):  # Eru's agent knows no resync: it re-reports by itself
            node.agent_resync = False
        node.save(
            update_fields=[
                "agent",
                "agent_peer",
                "agent_version",
                "agent_heard_at",
                "agent_conflict",
                "agent_conflict_at",
                "agent_resync",
                "agent_log_dropped",
            ]
        )
        if node.last_error:  # found again: one audit event; its workloads come with the agent's report
            node_observe(node=node, seen=[], looked_at=now, partial=True)
    return node.agent_resync


# Per (node id, container id): the last report this process found recorded, and its seq. The next
# report from the agent (seq + 1: none went to another core in between) that says the same is
# answered from here, without reading the row: an agent re-sends a status after its cache_ttl or a
# health re-check that changed nothing. Kept at most RECORDED_TTL seconds.
_recorded: dict[tuple[int, str], tuple[float, Report]] = {}
_recorded_lock = threading.Lock()
RECORDED_TTL = 60.0


def node_report(
    *,
    actor: Actor,
    node: Node,
    reports: Sequence[Report],
    complete: bool = False,
    listed_at: datetime | None = None,
) -> list[str]:
    """Eru's SetWorkloadsStatus from the node's agent: what it saw of some of the node's containers
    (`complete`: all of them, as listed at `listed_at` — a workload not in it has no container, unless
    its row changed since). Rows change on transitions only. Returns the ids of the containers whose
    rows now say what was reported; the others are not taken, and the agent sends them again later:
    not the core's workloads, or not now (being created, or a worker's action in flight)."""
    permissions.require_node_report(actor.user, actor.principal, node)
    clock = time.monotonic()
    with _recorded_lock:
        known = {} if complete else {r.container_id: r for r in reports if _is_recorded(node, r, clock)}
        for cid, r in known.items():
            _recorded[(node.pk, cid)] = (clock + RECORDED_TTL, r)
    fresh = [r for r in reports if r.container_id not in known]
    if not fresh and not complete:
        return list(known)
    now = timezone.now()
    looked_at = min(now, listed_at) if listed_at is not None and complete else now
    ids = None if complete else [r.container_id for r in fresh if r.container_id]
    rows = selectors.observations([node.pk], before=looked_at, container_ids=ids)[node.pk]
    by_id = {o.container_id: o for o in rows.values() if o.container_id}
    found = [r for r in fresh if r.container_id in by_id]
    seen = [_seen(by_id[r.container_id], r) for r in found]
    with transaction.atomic():  # a complete report's rows and the end of the resync go together
        observed = node_observe(
            node=node,
            seen=seen,
            looked_at=looked_at,
            rows=rows,
            partial=not complete,
            touch=False,
            transitions=False,
        )
        if complete and actor.principal:
            Node.objects.filter(pk=node.pk, agent_resync=True).update(agent_resync=False)
    taken = [r for r in found if by_id[r.container_id].pk not in observed.left]
    with _recorded_lock:
        if complete:
            for key in [k for k in _recorded if k[0] == node.pk]:
                del _recorded[key]
        if len(_recorded) > 100_000:
            _recorded.clear()
        for r in taken:
            if r.seq:
                _recorded[(node.pk, r.container_id)] = (clock + RECORDED_TTL, r)
    return [r.container_id for r in taken] + list(known)


def _is_recorded(node: Node, report: Report, clock: float) -> bool:
    """The same status as the last one recorded here, and the next the agent sent for it."""
    hit = _recorded.get((node.pk, report.container_id))
    if hit is None or hit[0] <= clock or not report.seq or report.seq != hit[1].seq + 1:
        return False
    return dataclasses.replace(hit[1], seq=report.seq) == report


def _seen(row: selectors.Observation, r: Report) -> Seen:
    if r.status in _OURS:  # this project's agent
        health = r.health if r.health in (Health.HEALTHY, Health.UNHEALTHY) else None
        return Seen(
            row.name,
            r.container_id,
            r.status,
            r.exit_code,
            r.restart_count,
            r.networks,
            r.ports,
            health,
            r.up,
        )
    status = Status.RUNNING if r.running else Status.EXITED  # Eru's: no exit code, no ports
    health = (Health.HEALTHY if r.healthy else Health.UNHEALTHY) if r.running else None
    return Seen(row.name, r.container_id, status, None, None, r.networks, None, health)


def node_lost(*, node: Node, error: str) -> bool:
    """Selfmon: the node's heartbeat lease expired (or its key was deleted) while its agent manages it:
    the node is down, its workloads unknown, audited once. Done under the node's lock and only if the
    key is still absent then, so an agent that came back meanwhile keeps its node up. False: nothing
    to do (not lost, or lost already)."""
    with transaction.atomic():
        node = Node.objects.select_for_update(of=("self",)).select_related("pod").get(pk=node.pk)
        if not node.agent or node.last_error or etcd.is_alive(node.name):
            return False
        node_observe(node=node, seen=None, looked_at=timezone.now(), error=error)
        Node.objects.filter(pk=node.pk).update(agent_resync=True)
    return True
