"""Reads that write nothing: which nodes may take work, a node's resources and a workload's request as
the scheduling engine sees them, a node's Docker client, the container a workload row describes, and
the usage history the pages draw."""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import docker as docker_sdk
from django.conf import settings
from django.db.models import (
    BigIntegerField,
    Count,
    ExpressionWrapper,
    F,
    Max,
    Q,
    QuerySet,
    Sum,
    TextField,
    Value,
)
from django.db.models.functions import Cast, Coalesce

import scheduling
import schema
from clusters import etcd
from clusters.errors import invalid
from clusters.models import AuditEvent, Node, NodeUsage, Pod, Workload, WorkloadUsage
from engine import docker
from schema.container import docker_options


def node_client(node: Node, *, timeout: int | None = None) -> docker_sdk.DockerClient:
    """The node's Docker engine over mutual TLS (cached per endpoint, certificates and timeout)."""
    tls = docker.TLSMaterial(*node.tls())
    return docker.connect(node.endpoint, tls, timeout=timeout or settings.ERU_DOCKER_TIMEOUT)


def node_resources(node: Node) -> scheduling.NodeResources:
    return scheduling.NodeResources(
        name=node.name,
        cpu_map=node.cpu_map,
        memory=node.memory,
        used_cpu_map=node.used_cpu_map,
        used_cpu=node.used_cpu,
        used_memory=node.used_memory,
        share_base=node.share_base,
        max_fragment_cores=settings.ERU_MAX_FRAGMENT_CORES,
    )


def share_pool(node: Node) -> list[str]:
    """Eru's remap pool of the node (the cores no bound workload holds a whole of, else all), kept to
    the cores its engine has: an over-committed declaration names cores Docker cannot pin to."""
    return share_pool_of(node_resources(node), engine_ncpu(node))


def share_pool_of(resources: scheduling.NodeResources, ncpu: int | None) -> list[str]:
    """share_pool() of a node with these resources, whose engine reported `ncpu` cores (None: none)."""
    pool = scheduling.share_pool(resources)
    if ncpu:
        pool = [core for core in pool if core.isdigit() and int(core) < ncpu] or [str(i) for i in range(ncpu)]
    return pool


def engine_ncpu(node: Node) -> int | None:
    """The cores the node's engine reported at its last probe (docker info's NCPU), if it did."""
    ncpu = node.info.get("NCPU") if isinstance(node.info, dict) else None
    return ncpu if isinstance(ncpu, int) and not isinstance(ncpu, bool) and ncpu > 0 else None


def engine_cores(node: Node) -> list[str]:
    """Every core a container of the node may run on: the engine's, else the declared ones."""
    ncpu = engine_ncpu(node)
    return [str(i) for i in range(ncpu)] if ncpu else sorted(node.cpu_map, key=core_order)


def request_of(w: Workload) -> scheduling.ResourceRequest:
    return scheduling.ResourceRequest(
        w.cpu_request, w.cpu_limit, w.memory_request, w.memory_limit, w.cpu_bind
    )


_SCAN = etcd.alive_nodes  # the whole prefix read; a stand-in put in its place (tests) is honoured


def alive_names() -> Set[str]:
    """The names of the nodes whose heartbeat key exists now (etcd.live_nodes: one round trip
    however many nodes there are), or the pod-level error a deploy answers when etcd cannot tell."""
    try:
        return etcd.alive_nodes(strict=True) if etcd.alive_nodes is not _SCAN else etcd.live_nodes()
    except etcd.EtcdError as exc:
        raise invalid("pod", f"cannot tell which nodes are up: {exc}") from exc


def available_nodes(pod: Pod) -> list[Node]:
    """Nodes of the pod that may take new workloads: not bypassed and heartbeat key present."""
    alive = alive_names()
    return [n for n in pod.nodes.filter(bypass=False) if n.name in alive]


@dataclass(frozen=True, slots=True)
class NodeState:
    """A node as the scheduler reads it, without a model instance: what a plan needs of it."""

    pk: int
    name: str
    pod_id: int
    bypass: bool
    labels: Mapping[str, Any]
    resources: scheduling.NodeResources


# Each JSON text once per process (a fleet's nodes mostly share a handful of distinct cpu maps and
# label sets), and each node's resources while its row says the same. Never mutated: read-only.
_decoded: dict[str, Any] = {}
_states: dict[int, tuple[tuple[Any, ...], NodeState]] = {}
_MEMO_MAX = 200_000


def _json(text: str | None) -> Any:
    if text is None:
        return {}
    value = _decoded.get(text)
    if value is None:
        if len(_decoded) >= _MEMO_MAX:
            _decoded.clear()
        value = _decoded[text] = json.loads(text)
    return value


_COLUMNS = ("pk", "name", "pod_id", "bypass", "share_base", "memory", "used_cpu", "used_memory")
_JSON = {"t_labels": "labels", "t_cpu_map": "cpu_map", "t_used_cpu_map": "used_cpu_map"}


def node_states(
    nodes: QuerySet[Node], *, lock: bool = False, order: Sequence[str] = ("name",), limit: int | None = None
) -> list[NodeState]:
    """The nodes of the queryset in name order (or `order`; the first `limit`), in one query of
    their columns only, each JSON text decoded once. `lock`: SELECT … FOR UPDATE, taken in that
    order (PostgreSQL; SQLite's immediate transaction holds the whole database already)."""
    rows = nodes.order_by(*order).annotate(**{k: Cast(v, TextField()) for k, v in _JSON.items()})
    if lock:
        rows = rows.select_for_update(of=("self",))
    if limit is not None:
        rows = rows[:limit]
    found: list[NodeState] = []
    fmax = settings.ERU_MAX_FRAGMENT_CORES
    for row in rows.values_list(*_COLUMNS, *_JSON):
        pk, name, pod_id, bypass, share_base, memory, used_cpu, used_memory, labels, cpu_map, used = row
        memo = _states.get(pk)
        if memo is not None and memo[0] == row and memo[1].resources.max_fragment_cores == fmax:
            found.append(memo[1])
            continue
        resources = scheduling.NodeResources(
            name=name,
            cpu_map=_json(cpu_map),
            memory=memory,
            used_cpu_map=_json(used),
            used_cpu=used_cpu,
            used_memory=used_memory,
            share_base=share_base,
            max_fragment_cores=fmax,
        )
        state = NodeState(pk, name, pod_id, bypass, _json(labels), resources)
        if len(_states) >= _MEMO_MAX:
            _states.clear()
        _states[pk] = (row, state)
        found.append(state)
    return found


def node_states_by_pk(pks: Sequence[int], *, lock: bool = False, chunk: int = 5000) -> list[NodeState]:
    """node_states() of these nodes (given in name order), in queries of at most `chunk` ids (more
    than one only past schema.MAX_DEPLOY_COUNT nodes), each chunk in name order."""
    found: list[NodeState] = []
    for i in range(0, len(pks), chunk):
        found += node_states(Node.objects.filter(pk__in=pks[i : i + chunk]), lock=lock)
    return found


def roomiest_nodes(pod: Pod, memory_request: int, limit: int) -> list[NodeState]:
    """The pod's nodes not set down that have room for an unbound instance of `memory_request`
    bytes by memory, most instances of it first (scheduling's capacity: free memory // request),
    the first `limit` of them: the order of an AUTO plan among nodes that hold none of the app.
    Without a memory request every node has room without end. They are read in order of free memory
    (the index node_free_memory: no sort of the pod's nodes), whose first `limit` are the first by
    capacity too; ties in capacity among them are put in random order, as Eru's heap leaves them
    (the engine breaks them by input order): deploys racing into a pod of equal nodes then lock
    different rows instead of queueing on the same one."""
    room = ExpressionWrapper(F("memory") - F("used_memory"), output_field=BigIntegerField())
    nodes = Node.objects.filter(pod=pod, bypass=False).annotate(room=room)
    if memory_request > 0:
        nodes = nodes.filter(room__gte=memory_request)
    # The ids in a subquery (PostgreSQL would make the text of every node's JSON before sorting),
    # the rows of those in the same round trip.
    ids = nodes.order_by("-room").values("pk")[:limit]
    found = node_states(Node.objects.filter(pk__in=ids))
    random.shuffle(found)
    if memory_request > 0:
        found.sort(key=lambda s: -((s.resources.memory - s.resources.used_memory) // memory_request))
    return found


def deploy_snapshot(pod: Pod, node_names: Sequence[str], node_labels: Mapping[str, str]) -> list[NodeState]:
    """The available nodes of the pod (not set down, heartbeat key present) narrowed by names and
    labels (exact match on every label), as NodeStates read without locks (the snapshot a plan is
    made against): one read of the live set, one query of the pod's nodes."""
    alive = alive_names()
    every = node_states(Node.objects.filter(pod=pod))
    states = [s for s in every if not s.bypass and s.name in alive]
    if node_names:
        known = {s.name for s in every}
        unknown = [n for n in node_names if n not in known]
        if unknown:
            raise invalid("node_names", f"no such node in pod {pod.name}: {', '.join(unknown)}")
        up = {s.name for s in states}
        down = [n for n in node_names if n not in up]
        if down:
            raise invalid("node_names", f"node is down (set down or no heartbeat): {', '.join(down)}")
        wanted = set(node_names)
        states = [s for s in states if s.name in wanted]
    if node_labels:
        states = [s for s in states if all(s.labels.get(k) == v for k, v in node_labels.items())]
    if not states:
        raise invalid("pod", "node map is empty: no available node matches this deploy")
    return states


@dataclass(frozen=True)
class Observation:
    """What a row says of its container, read without making model instances (the sweep reads every
    observed row of every node on every look). Its names are the row's, so the observation rules
    of clusters.services.observe read either."""

    pk: int
    name: str
    container_id: str
    state: str
    status: str
    exit_code: int | None
    restart_count: int
    networks: dict[str, str]
    ports: list[dict[str, Any]]
    health: str
    healthcheck: dict[str, Any] | None
    status_since: datetime | None


_OBSERVATION = [f.name for f in dataclasses.fields(Observation)]


def observations(
    node_ids: Sequence[int], *, before: datetime | None = None, container_ids: Sequence[str] | None = None
) -> dict[int, dict[str, Observation]]:
    """Per node id, its observed workloads (running or stopped ones) by name, in one query; with
    `before`, only the rows unchanged since then (a worker acted on the others meanwhile); with
    `container_ids`, only those of these containers."""
    found: dict[int, dict[str, Observation]] = {pk: {} for pk in node_ids}
    rows = Workload.objects.filter(node_id__in=node_ids, state__in=Workload.OBSERVED)
    if before is not None:
        rows = rows.filter(updated_at__lt=before)
    if container_ids is not None:
        rows = rows.filter(container_id__in=container_ids)
    for node_id, *values in rows.order_by().values_list("node_id", *_OBSERVATION):
        o = Observation(*values)
        found[node_id][o.name] = o
    return found


def observation_versions(node_ids: Sequence[int]) -> dict[int, tuple[int, datetime | None]]:
    """Per node id: how many observed rows it has, and when the latest of them changed. Rows are
    never changed without their updated_at, so while this stays the same, so do the rows."""
    found: dict[int, tuple[int, datetime | None]] = {pk: (0, None) for pk in node_ids}
    rows = Workload.objects.filter(node_id__in=node_ids, state__in=Workload.OBSERVED).order_by()
    for node_id, n, latest in rows.values_list("node_id").annotate(n=Count("pk"), latest=Max("updated_at")):
        found[node_id] = (n, latest)
    return found


def status_counts(workloads: QuerySet[Workload]) -> list[tuple[str, str, int]]:
    """(status, label, count) of the workloads by observed status, in the order of Workload.Status."""
    counts = dict(workloads.order_by().values_list("status").annotate(n=Count("pk")))
    return [
        (value, str(label), counts[value]) for value, label in Workload.Status.choices if counts.get(value)
    ]


def held_without_container(workloads: QuerySet[Workload]) -> dict[str, Any]:
    """What the node's workloads hold although Docker shows no running container for them (exited,
    OOM-killed, restarting, missing, unknown): counted in the usage, as Eru counts them."""
    idle = workloads.filter(Workload.holding()).exclude(
        status__in=(Workload.Status.RUNNING, Workload.Status.PAUSED, Workload.Status.UNOBSERVED)
    )
    totals = idle.aggregate(n=Count("pk"), cpu=Sum("cpu_request"), memory=Sum("memory_request"))
    return {"count": totals["n"], "cpu": totals["cpu"] or 0.0, "memory": totals["memory"] or 0}


def health_transitions(w: Workload, limit: int = 5) -> list[AuditEvent]:
    """The workload's last health flips (a check that started failing, or passed again), newest first."""
    flips = AuditEvent.objects.filter(
        target_type="workload",
        target_id=str(w.pk),
        action__in=[AuditEvent.Action.WORKLOAD_HEALTHY, AuditEvent.Action.WORKLOAD_UNHEALTHY],
    )
    return list(flips.order_by("-id")[:limit])


def _eru_healthcheck(healthcheck: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return schema.HealthCheck.model_validate(healthcheck).eru_json() if healthcheck else None


def container_spec(w: Workload) -> dict[str, Any]:
    """Everything the Docker adapter needs to create the workload's container."""
    labels = {
        **w.labels,
        "ERU": "1",
        # Eru's label meta, in Eru's (Go) field names: Eru's own agent reads its health check here.
        "ERU_META": etcd.dumps(
            {"Publish": w.options.get("publish", []), "HealthCheck": _eru_healthcheck(w.healthcheck)}
        ),
        "eru.nodename": w.node.name,
        "eru.podname": w.pod.name,
        **({"eru.lambda": str(w.lambda_run_id)} if w.lambda_run_id else {}),
    }
    env = [
        *w.env,
        f"APP_NAME={w.app}",
        f"ERU_POD={w.pod.name}",
        f"ERU_NODE_NAME={w.node.name}",
        f"ERU_WORKLOAD_SEQ={w.seq}",
    ]
    pool = share_pool(w.node) if not w.cpu_map else []  # unbound: the cores bound ones leave (remap)
    resources = scheduling.docker_settings(
        request_of(w), w.cpu_map, share_base=w.node.share_base, share_pool=pool
    )
    return {
        "name": w.name,
        "image": w.image,
        "command": w.command,
        "env": env,
        "labels": labels,
        "resources": resources,
        "network": w.network,
        "options": _options(w),
    }


def core_order(core: str) -> tuple[int, str]:
    """A cpu map's keys in core order (0, 1, … 10, not 0, 1, 10, 2; any other key after them)."""
    return (int(core), "") if core.isdigit() else (1 << 30, core)


def _options(w: Workload) -> dict[str, Any]:
    host = w.network == "host" or w.network.startswith("container:")
    options = docker_options(w.options, host_network=host)
    if w.lambda_run_id:  # as Eru: a lambda's output is read from Docker's own log, whatever was asked
        options["log_config"] = {"Type": "json-file", "Config": {}}
    return options


UsageRow = tuple[datetime, float | None, int]  # a step's start, CPU in cores (None: no rate), memory bytes


def workload_usage(w: Workload, step: int, since: datetime) -> list[UsageRow]:
    """The workload's history in `step` s steps from `since` on, oldest first."""
    rows = WorkloadUsage.objects.filter(workload=w, step=step, at__gte=since).order_by("at")
    return list(rows.values_list("at", "cpu", "memory"))


def node_usage(node: Node, step: int, since: datetime) -> list[UsageRow]:
    """The node's history (its workloads together) in `step` s steps from `since` on, oldest first."""
    rows = NodeUsage.objects.filter(node=node, step=step, at__gte=since).order_by("at")
    return list(rows.values_list("at", "cpu", "memory"))


def nodes_cpu(
    node_ids: Sequence[int], step: int, since: datetime
) -> dict[int, list[tuple[datetime, float | None]]]:
    """Per node id, its CPU history from `since` on, oldest first: every node of a pod's page in one
    query, not one per row."""
    found: dict[int, list[tuple[datetime, float | None]]] = {pk: [] for pk in node_ids}
    rows = NodeUsage.objects.filter(node_id__in=node_ids, step=step, at__gte=since).order_by("node_id", "at")
    for node_id, at, cpu in rows.values_list("node_id", "at", "cpu"):
        found[node_id].append((at, cpu))
    return found


def node_resource_check(node: Node) -> dict[str, Any]:
    """Eru's GetNodeResource: the node's usage as recorded beside the usage counted from the rows
    that hold an allocation on it (Workload.holding(): the sum of their cpu and memory requests, and
    of the pieces their cpu maps hold per core), and the differences, as people read them."""
    cpu, memory, pieces = 0.0, 0, dict[str, int]()
    rows = Workload.objects.filter(Workload.holding(), node=node).order_by()
    for cpu_request, memory_request, cpu_map in rows.values_list("cpu_request", "memory_request", "cpu_map"):
        cpu += cpu_request
        memory += memory_request
        for core, held in (cpu_map or {}).items():
            pieces[core] = pieces.get(core, 0) + held
    cpu = round(cpu, 9)  # Eru's utils.Round, as every usage update rounds it
    was, now = dict(node.used_cpu_map), pieces
    diffs = []
    if abs(node.used_cpu - cpu) > 1e-6:  # float noise of sums in another order is no drift
        diffs.append(f"used cpu: recorded {node.used_cpu:.10g}, counted {cpu:.10g}")
    for core in sorted(set(was) | set(now), key=core_order):
        if was.get(core, 0) != now.get(core, 0):
            diffs.append(
                f"used pieces of core {core}: recorded {was.get(core, 0)}, counted {now.get(core, 0)}"
            )
    if node.used_memory != memory:
        diffs.append(f"used memory: recorded {node.used_memory}, counted {memory}")
    return {
        "node": node.name,
        "ok": not diffs,
        "diffs": diffs,
        "recorded": {
            "cpu": node.used_cpu,
            "cpu_map": {c: was[c] for c in sorted(was, key=core_order) if was[c]},
            "memory": node.used_memory,
        },
        "counted": {
            "cpu": cpu,
            "cpu_map": {c: now[c] for c in sorted(now, key=core_order) if now[c]},
            "memory": memory,
        },
    }


ALIVE_IN_SQL = 20_000  # heartbeat names matched in the SQL (within SQLite's and PostgreSQL's bind limits)


def pod_node_summary(pod: Pod, alive: set[str]) -> dict[str, Any]:
    """A pod's node totals for its page, whatever the number of nodes: one aggregate query (two when
    very many heartbeats must be matched by name). Keys: total, bypassed, up, memory, used_memory,
    used_cpu."""
    nodes = Node.objects.filter(pod=pod).order_by()
    totals: dict[str, Any] = {
        "total": Count("pk"),
        "bypassed": Count("pk", filter=Q(bypass=True)),
        "memory": Coalesce(Sum("memory"), Value(0)),
        "used_memory": Coalesce(Sum("used_memory"), Value(0)),
        "used_cpu": Coalesce(Sum("used_cpu"), Value(0.0)),
    }
    if len(alive) <= ALIVE_IN_SQL:
        totals["up"] = Count("pk", filter=Q(bypass=False, name__in=sorted(alive)))
    summary = nodes.aggregate(**totals)
    if "up" not in summary:
        names = nodes.filter(bypass=False).values_list("name", flat=True).iterator(chunk_size=2000)
        summary["up"] = sum(1 for name in names if name in alive)
    return summary
