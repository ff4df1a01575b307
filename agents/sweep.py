"""The sweep: how the core sees the containers of nodes without an agent. Every few seconds one list
call per node (all nodes in parallel, over mutual TLS) shows every ERU container's state; an inspect
is made only where the list cannot tell: a new exit (was it the OOM killer?) and a container that may
have been restarted since the last look (how many times?). What was seen goes to
clusters.services.node_observe, which changes rows only on transitions. A node that answers also
gets its heartbeat key renewed (lease TTL = 3 × ERU_HEARTBEAT_INTERVAL): the list call is its ping."""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import docker as docker_sdk
from django.conf import settings
from django.utils import timezone

from clusters import etcd, selectors, services
from clusters.models import Node, Workload
from engine import docker, health

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
class Look:
    node: Node
    looked_at: datetime
    seen: list[services.Seen] | None
    error: str = ""


def _needs_inspect(
    c: docker.ContainerInfo, status: str, last: selectors.Observation | None, now: datetime
) -> bool:
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
    client: docker_sdk.DockerClient,
    c: docker.ContainerInfo,
    last: selectors.Observation | None,
    now: datetime,
) -> services.Seen:
    return _seen_inspected(client, c, last, now)[0]


def _seen_inspected(
    client: docker_sdk.DockerClient,
    c: docker.ContainerInfo,
    last: selectors.Observation | None,
    now: datetime,
) -> tuple[services.Seen, bool]:
    """What was seen of a container, and whether an inspect was needed for it."""
    status = _STATUS.get(c.status, Status.EXITED)
    restarts = None
    # For how long it has run, from the list's "Up 5 seconds" (an inspect's info has no such text):
    # only where it matters (is a crash loop over?), so a young container's changing uptime does
    # not make a new sight at every look.
    looping = last is not None and last.status == Status.RESTARTING
    up = docker.up_seconds(c) if looping else None
    inspected = _needs_inspect(c, status, last, now)
    if inspected:
        info = docker.inspect(client, c.id)
        if info is None:  # removed between the list and the inspect
            return services.Seen(c.name, c.id, Status.MISSING), True
        c, restarts = info, info.restart_count
        status = (
            Status.OOM_KILLED
            if info.oom_killed and status == Status.EXITED
            else _STATUS.get(info.status, status)
        )
    elif status == Status.EXITED and last is not None and last.status == Status.OOM_KILLED:
        status = Status.OOM_KILLED  # the same exit, recorded with what the inspect then told
    exit_code = c.exit_code if status in (Status.EXITED, Status.OOM_KILLED, Status.RESTARTING) else None
    up = up if status == Status.RUNNING else None
    return services.Seen(c.name, c.id, status, exit_code, restarts, c.networks, c.ports, up=up), inspected


def mine(node: Node, containers: Sequence[docker.ContainerInfo]) -> list[docker.ContainerInfo]:
    """The ERU containers made under this node's name (were one engine registered as two nodes,
    the other node's containers are not this one's to judge)."""
    return [c for c in containers if c.labels.get("eru.nodename") == node.name]


def seen_of(
    client: docker_sdk.DockerClient,
    containers: Sequence[docker.ContainerInfo],
    last: Mapping[str, selectors.Observation],
    now: datetime,
) -> list[services.Seen]:
    """What a list call showed, with an inspect where the list cannot tell."""
    return [_seen(client, c, last.get(c.name), now) for c in containers]


@dataclass(frozen=True)
class _Listed:
    client: docker_sdk.DockerClient | None  # None: the node did not answer, `error` says why
    containers: list[dict[str, Any]]  # Docker's answer, as it gave it
    error: str = ""
    heartbeat: Future[None] | None = None


def _list(node: Node, pool: ThreadPoolExecutor, leases: Future[dict[str, int]] | None) -> _Listed:
    """The node's ERU containers (one list call) and, once it answered, its heartbeat under way if
    it is due (`leases`: the heartbeat keys' leases, read when some node is due)."""
    try:
        client = selectors.node_client(node, timeout=LIST_TIMEOUT)
        summaries = docker.list_eru_summaries(client)
        containers = [c for c in summaries if (c.get("Labels") or {}).get("eru.nodename") == node.name]
    except docker.DockerError as exc:
        return _Listed(None, [], str(exc))
    except Exception as exc:  # e.g. TLS material that no longer decrypts: the node is not reachable
        log.exception("sweeping %s failed", node.name)
        return _Listed(None, [], f"{exc.__class__.__name__}: {exc}")
    beat = pool.submit(_heartbeat, node, leases) if leases is not None and _due(node) else None
    return _Listed(client, containers, heartbeat=beat)


_renewed: dict[str, float] = {}  # node name -> when this process last renewed its heartbeat


def _due(node: Node) -> bool:
    """The node's heartbeat wants renewing: once every ERU_HEARTBEAT_INTERVAL (the lease lasts 3)."""
    return time.monotonic() - _renewed.get(node.name, -math.inf) >= settings.ERU_HEARTBEAT_INTERVAL


def _heartbeat(node: Node, leases: Future[dict[str, int]]) -> None:
    """Renew the node's heartbeat lease (TTL = 3 × ERU_HEARTBEAT_INTERVAL): a refresh of the lease
    its key is on, read just now, or a new key on a new lease when there is none (the key was
    deleted, or its lease expired). Between two renewals etcd is not read at all."""
    try:
        lease = leases.result().get(node.name)
        if not lease or not etcd.refresh_lease(lease):
            etcd.heartbeat(node.name, node.pod.name, 3 * settings.ERU_HEARTBEAT_INTERVAL)
        _renewed[node.name] = time.monotonic()
    except etcd.EtcdError as exc:
        log.warning("heartbeat of %s not renewed: %s", node.name, exc)


_pools: dict[str, ThreadPoolExecutor] = {}


def _threads(name: str = "sweep") -> ThreadPoolExecutor:
    """The process' pool of that name, made once (a sweep every few seconds: no threads started
    each time). Health checks have a pool of their own: a slow one never holds up a list call."""
    pool = _pools.get(name)
    if pool is None:
        pool = _pools[name] = ThreadPoolExecutor(max_workers=16, thread_name_prefix=name)
    return pool


@dataclass(frozen=True)
class _Known:
    """What this process found of a node at its last sweep: its rows (and their version: how many,
    and when the latest changed) and what it saw in Docker. While both are the same, there is
    nothing to compare: a steady node costs one list call and no row read."""

    version: tuple[int, Any]
    rows: dict[str, selectors.Observation]
    seen: list[services.Seen] | None


_known: dict[int, _Known] = {}
# A write stamps updated_at before it commits, so a transaction that commits late can leave the
# aggregate as it was: a node whose rows changed this recently has them read at every sweep.
SETTLE = timedelta(seconds=10)
# Per node, per container id: Docker's list entry at the last sweep and what was seen of it (kept
# only where no inspect was needed): an entry that is the same again, with the same rows, is the
# same sight — a steady container costs a dict comparison, not a conversion.
_sights: dict[int, dict[str, tuple[dict[str, Any], services.Seen]]] = {}


def _seen_now(
    node: Node, listed: _Listed, rows: Mapping[str, selectors.Observation], now: datetime, fresh: bool
) -> list[services.Seen]:
    assert listed.client is not None
    before = _sights.get(node.pk, {}) if not fresh else {}
    sights: dict[str, tuple[dict[str, Any], services.Seen]] = {}
    seen = []
    for raw in listed.containers:
        hit = before.get(raw["Id"])
        if hit is not None and hit[0] == raw:
            sight, inspected = hit[1], False
        else:
            c = docker.summary(raw)
            sight, inspected = _seen_inspected(listed.client, c, rows.get(c.name), now)
        if not inspected:
            sights[raw["Id"]] = (raw, sight)
        seen.append(sight)
    _sights[node.pk] = sights
    return seen


def _rows(
    nodes: Sequence[Node], looked_at: datetime
) -> tuple[dict[int, dict[str, selectors.Observation]], set[int]]:
    """The nodes' rows as of `looked_at`, and the nodes whose rows were read again: only those whose
    rows changed since the last sweep of this process (an aggregate tells); the others' from then."""
    versions = selectors.observation_versions([n.pk for n in nodes])
    stale = {n.pk for n in nodes if n.pk not in _known or _known[n.pk].version != versions[n.pk]}
    rows = {pk: known.rows for pk, known in _known.items() if pk not in stale}
    rows.update(selectors.observations(sorted(stale), before=looked_at) if stale else {})
    for n in nodes:
        latest = versions[n.pk][1]
        if latest is not None and latest >= looked_at - SETTLE:  # changed lately: read it next time
            _known.pop(n.pk, None)
        elif n.pk in stale:
            _known[n.pk] = _Known(versions[n.pk], rows[n.pk], None)
    return rows, stale


_one_at_a_time = threading.Lock()  # the caches above are this process' and one sweep's at a time


def sweep(nodes: Sequence[Node] | None = None) -> list[Look]:
    """Look at every node at once, then record what was seen: the list calls are in flight while the
    rows are read, and each node that answered has its heartbeat renewed (once an interval) while
    the changes are written. A look that finds nothing new writes nothing but the nodes'
    observed_at (one UPDATE). A sweep that comes while another runs in this process does nothing
    (the next one will)."""
    if not _one_at_a_time.acquire(blocking=False):
        log.warning("sweep: the last one still runs; this one is skipped")
        return []
    try:
        # Agent-managed nodes are their agent's: neither pinged nor swept here.
        agentless = Node.objects.filter(agent=False).select_related("pod")
        return _sweep(list(agentless) if nodes is None else list(nodes))
    finally:
        _one_at_a_time.release()


def _sweep(nodes: list[Node]) -> list[Look]:
    if not nodes:
        return []
    pool = _threads()
    looked_at = timezone.now()
    leases = pool.submit(etcd.heartbeat_leases) if any(_due(n) for n in nodes) else None
    lists = [pool.submit(_list, n, pool, leases) for n in nodes]
    time.sleep(0)  # let the list threads send their calls before this one reads rows (the GIL)
    rows, stale = _rows(nodes, looked_at)
    looks, beats = [], []
    for node, future in zip(nodes, lists, strict=True):
        listed = future.result()
        seen, error = None, listed.error
        try:
            if listed.client is not None:
                seen = _seen_now(node, listed, rows[node.pk], looked_at, fresh=node.pk in stale)
        except docker.DockerError as exc:  # an inspect failed: the node went away meanwhile
            seen, error = None, str(exc)
        looks.append(Look(node, looked_at, seen, error))
        beats += [listed.heartbeat] if listed.heartbeat else []
    looks = _checked(looks, rows)
    for lk in looks:
        known = _known.get(lk.node.pk)
        if known is not None and known.seen is not None and known.seen == lk.seen and not lk.node.last_error:
            continue  # the same rows, the same containers: nothing to compare
        services.node_observe(
            node=lk.node,
            seen=lk.seen,
            looked_at=lk.looked_at,
            error=lk.error,
            rows=rows[lk.node.pk],
            touch=False,
        )
        if known is not None:
            _known[lk.node.pk] = _Known(known.version, known.rows, lk.seen)
    services.node_contact(nodes=nodes, errors={lk.node.pk: lk.error for lk in looks}, at=timezone.now())
    for beat in beats:
        beat.result()
    return looks


# Per container id: when this process last ran its health check, and what it said.
_health: dict[str, tuple[float, str]] = {}
_checking: dict[str, Future[bool]] = {}  # checks under way, whose results the next sweeps take


def _checked(looks: list[Look], rows: Mapping[int, Mapping[str, selectors.Observation]]) -> list[Look]:
    """Health, on nodes without an agent: Eru's checks of the running containers that have one, run
    from this worker against the container's address, each with a timeout, once every
    ERU_HEALTHCHECK_INTERVAL seconds per container (at every sweep until a first result). A sweep
    never waits for them: it starts the checks that are due and records those that have ended. A
    container without an address here, or with ERU_SWEEP_HEALTHCHECKS off, keeps its health unknown
    (the node agent checks from the node itself)."""
    now = time.monotonic()
    for container_id, check in [(c, f) for c, f in _checking.items() if f.done()]:
        healthy = not check.exception() and check.result()
        _health[container_id] = (now, Workload.Health.HEALTHY if healthy else Workload.Health.UNHEALTHY)
        del _checking[container_id]
    if _health:
        present = {x.container_id for lk in looks for x in lk.seen or ()}
        for gone in [c for c in _health if c not in present]:  # (a node that did not answer: later)
            del _health[gone]
    for lk in looks if settings.ERU_SWEEP_HEALTHCHECKS else ():
        for sight in lk.seen or ():
            row = rows[lk.node.pk].get(sight.name)
            if not (row and row.healthcheck and sight.status == Status.RUNNING):
                continue
            address = next((ip for ip in sight.networks.values() if ip), "")
            if not address:
                continue
            last = _health.get(sight.container_id)
            if sight.container_id not in _checking and (
                last is None or now - last[0] >= settings.ERU_HEALTHCHECK_INTERVAL
            ):
                timeout = settings.ERU_HEALTHCHECK_TIMEOUT
                _checking[sight.container_id] = _threads("health").submit(
                    health.check, address, row.healthcheck, timeout
                )

    def with_health(sight: services.Seen) -> services.Seen:
        last = _health.get(sight.container_id)
        return (
            dataclasses.replace(sight, health=last[1]) if last and sight.status == Status.RUNNING else sight
        )

    if not _health:
        return looks
    return [
        dataclasses.replace(lk, seen=[with_health(x) for x in lk.seen]) if lk.seen else lk for lk in looks
    ]
