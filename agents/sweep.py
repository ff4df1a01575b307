"""The sweep: how the core sees its containers by itself, without an agent. Every few seconds one list
call per node (all nodes in parallel, over mutual TLS) shows every ERU container's state; an inspect
is made only where the list cannot tell: a new exit (was it the OOM killer?) and a container that may
have been restarted since the last look (how many times?). What was seen goes to
clusters.services.node_observe, which changes rows only on transitions. A node that answers also
gets its heartbeat key renewed (lease TTL = 3 × ERU_HEARTBEAT_INTERVAL): the list call is its ping."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import docker as docker_sdk
from django.conf import settings
from django.utils import timezone

from clusters import etcd, selectors, services
from clusters.models import Node, Workload
from engine import docker

log = logging.getLogger(__name__)
LIST_TIMEOUT = 5  # seconds: a sweep must not wait on a hung node for the full Docker timeout
Status = Workload.Status
_STATUS = {
    "running": Status.RUNNING,
    "restarting": Status.RESTARTING,
    "paused": Status.PAUSED,
    "exited": Status.EXITED,
    "dead": Status.EXITED,
    "created": Status.EXITED,  # made and never started, or its start failed
    "removing": Status.MISSING,
}


@dataclass(frozen=True)
class Last:
    """What the row says of its container, to tell what a look needs an inspect for."""

    status: str
    exit_code: int | None
    status_since: datetime | None


@dataclass(frozen=True)
class Look:
    node: Node
    looked_at: datetime
    seen: list[services.Seen] | None
    error: str = ""


def _needs_inspect(c: docker.ContainerInfo, status: str, last: Last | None, now: datetime) -> bool:
    if status == Status.EXITED:  # an exit not recorded yet: was it the OOM killer?
        return (
            last is None
            or last.status not in (Status.EXITED, Status.OOM_KILLED)
            or last.exit_code != c.exit_code
        )
    if status == Status.RESTARTING:
        return True
    if status != Status.RUNNING or last is None:
        return False
    if last.status == Status.RESTARTING:  # still crashing, or running steadily now?
        return True
    up = docker.up_seconds(c)  # (re)started after the row last changed: restarted by Docker
    return (
        up is not None
        and last.status_since is not None
        and now - timedelta(seconds=up + 1) > last.status_since
    )


def _seen(
    client: docker_sdk.DockerClient, c: docker.ContainerInfo, last: Last | None, now: datetime
) -> services.Seen:
    status = _STATUS.get(c.status, Status.EXITED)
    restarts = None
    if _needs_inspect(c, status, last, now):
        info = docker.inspect(client, c.id)
        if info is None:  # removed between the list and the inspect
            return services.Seen(c.name, c.id, Status.MISSING)
        c, restarts = info, info.restart_count
        status = (
            Status.OOM_KILLED
            if info.oom_killed and status == Status.EXITED
            else _STATUS.get(info.status, status)
        )
    exit_code = c.exit_code if status in (Status.EXITED, Status.OOM_KILLED, Status.RESTARTING) else None
    return services.Seen(c.name, c.id, status, exit_code, restarts, c.networks, c.ports)


def mine(node: Node, containers: Sequence[docker.ContainerInfo]) -> list[docker.ContainerInfo]:
    """The ERU containers made under this node's name (were one engine registered as two nodes,
    the other node's containers are not this one's to judge)."""
    return [c for c in containers if c.labels.get("eru.nodename") == node.name]


def seen_of(
    client: docker_sdk.DockerClient,
    containers: Sequence[docker.ContainerInfo],
    last: Mapping[str, Last],
    now: datetime,
) -> list[services.Seen]:
    """What a list call showed, with an inspect where the list cannot tell."""
    return [_seen(client, c, last.get(c.name), now) for c in containers]


def look(node: Node, last: Mapping[str, Last]) -> Look:
    """List the node's ERU containers and inspect where needed."""
    looked_at = timezone.now()
    try:
        client = selectors.node_client(node, timeout=LIST_TIMEOUT)
        seen = seen_of(client, mine(node, docker.list_eru(client)), last, looked_at)
    except docker.DockerError as exc:
        return Look(node, looked_at, None, str(exc))
    except Exception as exc:  # e.g. TLS material that no longer decrypts: the node is not reachable
        log.exception("sweeping %s failed", node.name)
        return Look(node, looked_at, None, f"{exc.__class__.__name__}: {exc}")
    return Look(node, looked_at, seen)


def _heartbeat(node: Node) -> None:
    try:
        etcd.heartbeat(node.name, node.pod.name, 3 * settings.ERU_HEARTBEAT_INTERVAL)
    except etcd.EtcdError as exc:
        log.warning("heartbeat of %s not renewed: %s", node.name, exc)


def last_of(nodes: Sequence[Node]) -> dict[int, dict[str, Last]]:
    """Per node, what its rows say of their containers (one query for all the nodes)."""
    rows = Workload.objects.filter(node__in=nodes, state__in=Workload.OBSERVED)
    last: dict[int, dict[str, Last]] = {n.pk: {} for n in nodes}
    for node_id, name, status, exit_code, since in rows.values_list(
        "node_id", "name", "status", "exit_code", "status_since"
    ):
        last[node_id][name] = Last(status, exit_code, since)
    return last


def sweep(nodes: Sequence[Node] | None = None) -> list[Look]:
    """Look at every node in parallel, then record what was seen, node by node."""
    nodes = list(Node.objects.select_related("pod")) if nodes is None else list(nodes)
    if not nodes:
        return []
    last = last_of(nodes)
    with ThreadPoolExecutor(max_workers=min(16, len(nodes))) as pool:
        looks = list(pool.map(lambda n: _looked(n, last[n.pk]), nodes))
    for lk in looks:
        services.node_observe(node_id=lk.node.pk, seen=lk.seen, looked_at=lk.looked_at, error=lk.error)
    return looks


def _looked(node: Node, last: Mapping[str, Last]) -> Look:
    result = look(node, last)
    if result.seen is not None:
        _heartbeat(node)
    return result


def describe(looks: Sequence[Look]) -> dict[str, Any]:
    """A short account of a sweep, for logs."""
    return {lk.node.name: (len(lk.seen) if lk.seen is not None else lk.error) for lk in looks}
