"""The only write path. Every state change of pods, nodes, deployments and workloads happens here:
validate → permission → plan → allocate → AuditEvent, in one transaction; etcd writes and Celery
tasks follow after commit. Functions are keyword-only; `actor` says who, and through what."""

from __future__ import annotations

import contextlib
import math
import re
import secrets
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Count, F, Q
from django.utils import timezone

import scheduling
from agents import docker
from clusters import authentication, crypto, etcd, permissions, sync
from clusters.models import ApiToken, AuditEvent, Deployment, Node, Pod, PodMember, Workload
from clusters.queue import enqueue
from clusters.units import parse_size

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$")
APP_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
MAX_DEPLOY_COUNT = 1000
MAX_NODES_LIMIT = 10000
MAX_CPU = 1024.0  # cpus in one request; far above any host, low enough for Docker's quota maths
STRATEGIES = tuple(Deployment.Strategy.values)


@dataclass(frozen=True)
class Actor:
    """Who acts (None = the system: workers, beat, management commands) and through what."""

    user: Any = None
    via: str = AuditEvent.Via.SYSTEM
    request_id: str = ""


SYSTEM = Actor()


def actor_from_request(request: Any, via: str) -> Actor:
    return Actor(user=request.user, via=via, request_id=getattr(request, "request_id", ""))


def invalid(field: str, message: str) -> ValidationError:
    return ValidationError({field: [message]})


def _audit(
    actor: Actor,
    action: str,
    target: Any,
    *,
    pod: Pod | None = None,
    before: Any = None,
    after: Any = None,
) -> AuditEvent:
    return AuditEvent.objects.create(
        actor=actor.user,
        actor_name=getattr(actor.user, "username", "") if actor.user else "",
        via=actor.via,
        request_id=actor.request_id,
        action=action,
        target_type=target.__class__.__name__.lower(),
        target_id=str(target.pk or ""),
        target_name=str(target),
        pod=pod,
        before=before,
        after=after,
    )


# --- pods ---------------------------------------------------------------------------------------
def pod_add(*, actor: Actor, name: str, desc: str = "", favor: str = Pod.Favor.CPU) -> Pod:
    permissions.require_admin(actor.user)
    name = (name or "").strip()
    if not name:
        raise invalid("name", "pod name is empty")
    if not NAME_RE.match(name):
        raise invalid("name", "pod name: use letters, digits, '.' and '-' (at most 63 characters)")
    if favor not in Pod.Favor.values:
        raise invalid("favor", f"favor must be one of {', '.join(Pod.Favor.values)}")
    with transaction.atomic():
        if Pod.objects.filter(name=name).exists():
            raise invalid("name", f"pod {name} already exists")
        pod = Pod.objects.create(name=name, desc=desc[:255], favor=favor)
        _audit(actor, "pod.add", pod, pod=pod, after={"name": name, "desc": desc, "favor": favor})
        sync.push(sync.pod_keys(pod))
    return pod


def pod_remove(*, actor: Actor, pod: Pod) -> None:
    permissions.require_admin(actor.user)
    with transaction.atomic():
        nodes = pod.nodes.count()
        if nodes:
            raise invalid("pod", f"pod {pod.name} still has {nodes} nodes, delete them first")
        _audit(actor, "pod.remove", pod, before=pod.eru_json())
        sync.push(deletes=[etcd.pod_key(pod.name)])
        pod.delete()


# --- nodes --------------------------------------------------------------------------------------
def _tls(node: Node) -> docker.TLSMaterial:
    return docker.TLSMaterial(*node.tls())


def node_client(node: Node, *, timeout: int | None = None) -> Any:
    return docker.connect(node.endpoint, _tls(node), timeout=timeout or settings.ERU_DOCKER_TIMEOUT)


def _labels(labels: Mapping[str, Any] | None) -> dict[str, str]:
    result: dict[str, str] = {}
    for k, v in (labels or {}).items():
        if not isinstance(k, str) or not k.strip() or "=" in k:
            raise invalid("labels", f"label key {k!r} must be a non-empty string without '='")
        result[k.strip()] = str(v)
    return result


def node_add(
    *,
    actor: Actor,
    pod: Pod,
    name: str,
    endpoint: str,
    ca: str,
    cert: str,
    key: str,
    labels: Mapping[str, Any] | None = None,
    cpu: int | None = None,
    memory: int | str | None = None,
    share: int | None = None,
) -> Node:
    """Register a Docker host. Its engine is probed over mutual TLS first; capacity is detected
    from `docker info` (NCPU cores × share pieces, MemTotal − reserve) unless given."""
    permissions.require_admin(actor.user)
    name = (name or "").strip()
    if not NAME_RE.match(name):
        raise invalid("name", "node name: use letters, digits, '.' and '-' (at most 63 characters)")
    labels = _labels(labels)
    share = share or settings.ERU_SHARE_BASE
    if cpu is not None and cpu < 1:
        raise invalid("cpu", "cpu: a node needs at least 1 core")
    try:
        mem = parse_size(memory, field="memory") if memory not in (None, "") else None
    except ValueError as exc:
        raise invalid("memory", str(exc)) from exc
    if mem is not None and mem <= 0:
        raise invalid("memory", "memory: must be more than 0 bytes")
    if Node.objects.filter(name=name).exists():
        raise invalid("name", f"node {name} already exists")
    tls = docker.TLSMaterial(ca=ca or "", cert=cert or "", key=key or "")
    try:
        info = docker.engine_info(docker.connect(endpoint, tls, timeout=10))
    except docker.DockerError as exc:
        raise invalid("endpoint", f"cannot register {endpoint}: {exc}") from exc
    if cpu is not None and cpu > info.ncpu:
        raise invalid("cpu", f"cpu: {cpu} cores asked, but the engine reports only {info.ncpu} (NCPU)")
    cpu_map, memory_bytes = scheduling.engine_capacity(
        info.ncpu,
        info.mem_total,
        share_base=share,
        memory_reserve=settings.ERU_MEMORY_RESERVE,
        cpu=cpu,
        memory=mem,
    )
    with transaction.atomic():
        if Node.objects.filter(name=name).exists():
            raise invalid("name", f"node {name} already exists")
        node = Node.objects.create(
            name=name,
            pod=pod,
            endpoint=endpoint,
            tls_ca=crypto.encrypt(ca),
            tls_cert=crypto.encrypt(cert),
            tls_key=crypto.encrypt(key),
            labels=labels,
            share_base=share,
            cpu_map=cpu_map,
            memory=memory_bytes,
            info={
                "ID": info.id,
                "Name": info.name,
                "NCPU": info.ncpu,
                "MemTotal": info.mem_total,
                "ServerVersion": info.server_version,
            },
        )
        _audit(actor, "node.add", node, pod=pod, after=_node_state(node))
        sync.push_node(node.pk)
        ttl = 3 * settings.ERU_HEARTBEAT_INTERVAL
        transaction.on_commit(lambda: _heartbeat_quietly(node, ttl))
    return node


def _heartbeat_quietly(node: Node, ttl: int) -> None:
    with contextlib.suppress(etcd.EtcdError):  # the beat task retries within one interval
        etcd.heartbeat(node.name, node.pod.name, ttl)


def _node_state(node: Node) -> dict[str, Any]:
    return {
        "endpoint": node.endpoint,
        "labels": node.labels,
        "bypass": node.bypass,
        "cpu_map": node.cpu_map,
        "memory": node.memory,
    }


def node_set(
    *,
    actor: Actor,
    node: Node,
    labels: Mapping[str, Any] | None = None,
    bypass: bool | None = None,
) -> Node:
    """Replace labels (the whole map, like `erucli node set --label`) and/or set up/down."""
    permissions.require_admin(actor.user)
    new_labels = _labels(labels) if labels is not None else None
    with transaction.atomic():
        node = Node.objects.select_for_update().select_related("pod").get(pk=node.pk)
        before = _node_state(node)
        if new_labels is not None:
            node.labels = new_labels
        if bypass is not None:
            node.bypass = bypass
        node.save(update_fields=["labels", "bypass"])
        action = "node.set"
        if labels is None and bypass is not None:
            action = "node.down" if bypass else "node.up"
        _audit(actor, action, node, pod=node.pod, before=before, after=_node_state(node))
        sync.push_node(node.pk)
    return node


def node_remove(*, actor: Actor, node: Node) -> None:
    permissions.require_admin(actor.user)
    with transaction.atomic():
        node = Node.objects.select_for_update().select_related("pod").get(pk=node.pk)
        if node.workloads.filter(state__in=Workload.HOLDING).exists():
            raise invalid("node", "node not empty, still has workloads associated")
        _audit(actor, "node.remove", node, pod=node.pod, before=_node_state(node))
        keys = [
            etcd.node_key(node.name),
            etcd.pod_node_key(node.pod.name, node.name),
            etcd.resource_key(node.name),
            etcd.node_status_key(node.name),
        ]
        sync.push(deletes=keys)
        node.workloads.all().delete()  # failed rows only: their allocation is already released
        node.delete()


def node_record_probe(*, node_id: int, error: str) -> None:
    """Workers report the last ping result; written only when it changes."""
    Node.objects.filter(pk=node_id).exclude(last_error=error).update(last_error=error)


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


def available_nodes(pod: Pod) -> list[Node]:
    """Nodes of the pod that may take new workloads: not bypassed and heartbeat key present."""
    try:
        alive = etcd.alive_nodes(strict=True)
    except etcd.EtcdError as exc:
        raise invalid("pod", f"cannot tell which nodes are up: {exc}") from exc
    return [n for n in pod.nodes.filter(bypass=False) if n.name in alive]


# --- deploy -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DeploySpec:
    """A validated deploy request."""

    pod: Pod
    app: str
    entrypoint: str
    image: str
    count: int
    command: list[str]
    env: list[str]
    labels: dict[str, str]
    network: str
    request: scheduling.ResourceRequest
    strategy: str
    nodes_limit: int
    node_names: list[str]
    node_labels: dict[str, str]

    def as_json(self) -> dict[str, Any]:
        return {
            "app": self.app,
            "entrypoint": self.entrypoint,
            "image": self.image,
            "count": self.count,
            "command": self.command,
            "env": self.env,
            "labels": self.labels,
            "network": self.network,
            "cpu_request": self.request.cpu_request,
            "cpu_limit": self.request.cpu_limit,
            "memory_request": self.request.memory_request,
            "memory_limit": self.request.memory_limit,
            "cpu_bind": self.request.cpu_bind,
            "strategy": self.strategy,
            "nodes_limit": self.nodes_limit,
            "node_names": self.node_names,
            "node_labels": self.node_labels,
        }


def validate_deploy(
    *,
    pod: Pod,
    app: str,
    entrypoint: str,
    image: str,
    count: int = 1,
    command: Sequence[str] = (),
    env: Sequence[str] = (),
    labels: Mapping[str, Any] | None = None,
    network: str = "",
    cpu_request: float = 0.0,
    cpu_limit: float = 0.0,
    memory_request: int | str = 0,
    memory_limit: int | str = 0,
    cpu_bind: bool | None = None,
    strategy: str = "AUTO",
    nodes_limit: int = 0,
    node_names: Sequence[str] = (),
    node_labels: Mapping[str, Any] | None = None,
) -> DeploySpec:
    """Eru's deploy option rules; every bad field is reported at once, by name. Changes nothing."""
    errors: dict[str, list[str]] = {}

    def bad(field_name: str, message: str) -> None:
        errors.setdefault(field_name, []).append(message)

    app, entrypoint, image = (app or "").strip(), (entrypoint or "").strip(), (image or "").strip()
    if not app:
        bad("app", "app name is empty")
    elif not APP_RE.match(app):
        bad("app", "app name: use letters, digits, '_', '.' and '-' (at most 63 characters)")
    if not entrypoint:
        bad("entrypoint", "entrypoint name is empty")
    elif "_" in entrypoint:
        bad("entrypoint", "entrypoint name has '_' character")
    elif not NAME_RE.match(entrypoint):
        bad("entrypoint", "entrypoint name: use letters, digits, '.' and '-' (at most 63 characters)")
    if not image:
        bad("image", "image is empty")
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        bad("count", f"count: {count}: invalid deploy count, must be at least 1")
    elif count > MAX_DEPLOY_COUNT:
        bad("count", f"count: {count} is above the limit of {MAX_DEPLOY_COUNT} per deploy")
    strategy = (strategy or "AUTO").upper()
    if strategy not in STRATEGIES:
        bad("strategy", f"strategy must be one of {', '.join(STRATEGIES)}")
    if not isinstance(nodes_limit, int) or isinstance(nodes_limit, bool) or nodes_limit < 0:
        bad("nodes_limit", "nodes_limit must be 0 (no limit) or more")
    elif nodes_limit > MAX_NODES_LIMIT:
        bad("nodes_limit", f"nodes_limit: {nodes_limit} is above the limit of {MAX_NODES_LIMIT}")
    network = (network or "").strip()
    if network and network not in settings.ERU_NETWORKS:
        allowed = ", ".join(settings.ERU_NETWORKS) or "none"
        bad("network", f"network {network[:40]!r} is not allowed; use one of: {allowed} (or leave it empty)")
    bad_env = [item for item in env if "=" not in item or item.startswith("=")]
    if bad_env:
        bad("env", f"env entry {bad_env[0]!r} must look like KEY=value")
    if any(not isinstance(c, str) for c in command):
        bad("command", "command must be a list of strings")
    sizes = {}
    for field_name, value in (("memory_request", memory_request), ("memory_limit", memory_limit)):
        try:
            sizes[field_name] = parse_size(value, field=field_name)
        except ValueError as exc:
            bad(field_name, str(exc))
    for field_name, value in (("cpu_request", cpu_request), ("cpu_limit", cpu_limit)):
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
            bad(field_name, f"{field_name}: must be a number of cpus")
        elif value > MAX_CPU:
            bad(field_name, f"{field_name}: {value} is above the limit of {MAX_CPU:g} cpus")
    try:
        labels, node_labels = _labels(labels), _labels(node_labels)
    except ValidationError as exc:
        for field_name, messages in exc.message_dict.items():
            errors.setdefault(field_name, []).extend(messages)
    if not ({"memory_request", "memory_limit", "cpu_request", "cpu_limit"} & errors.keys()):
        try:
            request = scheduling.normalize_request(
                cpu_request=float(cpu_request),
                cpu_limit=float(cpu_limit),
                memory_request=sizes["memory_request"],
                memory_limit=sizes["memory_limit"],
                cpu_bind=pod.favor == Pod.Favor.CPU if cpu_bind is None else bool(cpu_bind),
            )
        except scheduling.InvalidRequest as exc:
            bad(exc.field, str(exc))
    if errors:
        raise ValidationError(errors)
    return DeploySpec(
        pod=pod,
        app=app,
        entrypoint=entrypoint,
        image=image,
        count=count,
        command=list(command),
        env=list(env),
        labels=labels,
        network=network,
        request=request,
        strategy=strategy,
        nodes_limit=nodes_limit,
        node_names=sorted(set(node_names)),
        node_labels=node_labels,
    )


def _candidates(spec: DeploySpec) -> list[Node]:
    """Available nodes of the pod, narrowed by names and labels (exact match on every label)."""
    nodes = available_nodes(spec.pod)
    if spec.node_names:
        known = set(spec.pod.nodes.filter(name__in=spec.node_names).values_list("name", flat=True))
        unknown = [n for n in spec.node_names if n not in known]
        if unknown:
            raise invalid("node_names", f"no such node in pod {spec.pod.name}: {', '.join(unknown)}")
        up = {n.name for n in nodes}
        down = [n for n in spec.node_names if n not in up]
        if down:
            raise invalid("node_names", f"node is down (set down or no heartbeat): {', '.join(down)}")
        nodes = [n for n in nodes if n.name in spec.node_names]
    nodes = [n for n in nodes if all(n.labels.get(k) == v for k, v in spec.node_labels.items())]
    if not nodes:
        raise invalid("pod", "node map is empty: no available node matches this deploy")
    return nodes


def _scheduling_infos(spec: DeploySpec, nodes: list[Node]) -> tuple[list[scheduling.NodeInfo], int]:
    counts = dict(
        Workload.objects.filter(
            app=spec.app, entrypoint=spec.entrypoint, node__in=nodes, state__in=Workload.HOLDING
        )
        .values_list("node__name")
        .annotate(n=Count("id"))
    )
    return scheduling.deploy_infos([node_resources(n) for n in nodes], spec.request, counts)


def plan_deploy(spec: DeploySpec) -> dict[str, int]:
    """The strategy's plan for the spec against current usage (a dry run: changes nothing)."""
    infos, total = _scheduling_infos(spec, _candidates(spec))
    try:
        return scheduling.plan(spec.strategy, infos, spec.count, total, spec.nodes_limit)
    except scheduling.SchedulingError as exc:
        raise invalid("count", str(exc)) from exc


def capacity_preview(spec: DeploySpec) -> tuple[dict[str, int], int]:
    """Eru's DUMMY dry run: how many instances of this request each available node can take now."""
    try:
        return scheduling.deploy_capacity([node_resources(n) for n in _candidates(spec)], spec.request)
    except scheduling.SchedulingError as exc:
        raise invalid("count", str(exc)) from exc


def _ident(taken: set[str]) -> str:
    alphabet = string.ascii_lowercase + string.digits
    while True:
        ident = "".join(secrets.choice(alphabet) for _ in range(6))
        if ident not in taken:
            taken.add(ident)
            return ident


def deploy(*, actor: Actor, spec: DeploySpec) -> Deployment:
    """Plan and allocate under row locks, then create the containers asynchronously."""
    permissions.require_deploy(actor.user, spec.pod)
    candidates = _candidates(spec)
    with transaction.atomic():
        # SQLite: BEGIN IMMEDIATE already serialises writers. PostgreSQL: lock nodes in name order.
        nodes = list(
            Node.objects.select_for_update()
            .filter(pk__in=[n.pk for n in candidates], bypass=False)  # set down since: no new work
            .order_by("name")
        )
        infos, total = _scheduling_infos(spec, nodes)
        try:
            deploy_plan = scheduling.plan(spec.strategy, infos, spec.count, total, spec.nodes_limit)
        except scheduling.SchedulingError as exc:
            raise invalid("count", str(exc)) from exc
        deployment = Deployment.objects.create(
            pod=spec.pod,
            app=spec.app,
            entrypoint=spec.entrypoint,
            image=spec.image,
            spec=spec.as_json(),
            strategy=spec.strategy,
            count=spec.count,
            nodes_limit=spec.nodes_limit,
            node_names=spec.node_names,
            node_labels=spec.node_labels,
            plan=deploy_plan,
            total=sum(deploy_plan.values()),
            created_by=actor.user,
        )
        workloads = _allocate(spec, deployment, nodes, deploy_plan)
        if not workloads:  # FILL may plan zeros only when nothing is needed; nothing to do
            deployment.state = Deployment.State.DONE
            deployment.finished_at = timezone.now()
            deployment.save(update_fields=["state", "finished_at"])
        _audit(actor, "deploy", deployment, pod=spec.pod, after={**spec.as_json(), "plan": deploy_plan})
        for w in workloads:
            enqueue("agents.create_workload", w.pk)
    return deployment


def _allocate(
    spec: DeploySpec, deployment: Deployment, nodes: list[Node], plan: dict[str, int]
) -> list[Workload]:
    by_name = {n.name: n for n in nodes}
    taken: set[str] = set()
    rows: list[Workload] = []
    seq = 0
    for node_name, n in sorted(plan.items()):
        if n <= 0:
            continue
        node = by_name[node_name]
        try:
            alloc = scheduling.allocate(node_resources(node), spec.request, n)
        except scheduling.SchedulingError as exc:
            raise invalid("count", str(exc)) from exc
        _set_usage(node, alloc.used_cpu_map, alloc.used_cpu, alloc.used_memory)
        for cpu_map in alloc.cpu_maps:
            rows.append(
                Workload(
                    name=f"{spec.app}_{spec.entrypoint}_{_ident(taken)}",
                    pod=spec.pod,
                    node=node,
                    deployment=deployment,
                    app=spec.app,
                    entrypoint=spec.entrypoint,
                    seq=seq,
                    image=spec.image,
                    command=spec.command,
                    env=spec.env,
                    labels=spec.labels,
                    network=spec.network,
                    cpu_request=spec.request.cpu_request,
                    cpu_limit=spec.request.cpu_limit,
                    memory_request=spec.request.memory_request,
                    memory_limit=spec.request.memory_limit,
                    cpu_bind=spec.request.cpu_bind,
                    cpu_map=cpu_map,
                )
            )
            seq += 1
    _unique_names(rows, taken)
    return Workload.objects.bulk_create(rows)


def _unique_names(rows: list[Workload], taken: set[str]) -> None:
    """Names are random; re-draw the rare one that an existing workload already has."""
    while clash := set(
        Workload.objects.filter(name__in=[r.name for r in rows]).values_list("name", flat=True)
    ):
        for row in rows:
            if row.name in clash:
                row.name = f"{row.app}_{row.entrypoint}_{_ident(taken)}"


def _release(w: Workload) -> None:
    """Give a workload's allocation back to its node (caller holds the transaction)."""
    node = Node.objects.select_for_update().get(pk=w.node_id)
    _set_usage(node, *scheduling.release(node_resources(node), _request_of(w), w.cpu_map))


def _set_usage(node: Node, used_cpu_map: Mapping[str, int], used_cpu: float, used_memory: int) -> None:
    """Store a node's new usage (cores with no pieces held are left out) and mirror it."""
    node.used_cpu_map = {core: pieces for core, pieces in used_cpu_map.items() if pieces}
    node.used_cpu = used_cpu
    node.used_memory = used_memory
    node.save(update_fields=["used_cpu_map", "used_cpu", "used_memory"])
    sync.push_node(node.pk)


def _request_of(w: Workload) -> scheduling.ResourceRequest:
    return scheduling.ResourceRequest(
        w.cpu_request, w.cpu_limit, w.memory_request, w.memory_limit, w.cpu_bind
    )


def _deployment_progress(deployment_id: int | None, *, ok: bool) -> None:
    if deployment_id is None:
        return
    field = "succeeded" if ok else "failed"
    Deployment.objects.filter(pk=deployment_id).update(**{field: F(field) + 1})
    d = Deployment.objects.select_for_update().get(pk=deployment_id)
    if d.state == Deployment.State.RUNNING and d.done_count >= d.total:
        if d.failed == 0:
            d.state = Deployment.State.DONE
        else:
            d.state = Deployment.State.FAILED if d.succeeded == 0 else Deployment.State.PARTIAL
        d.finished_at = timezone.now()
        d.save(update_fields=["state", "finished_at"])


# --- workload lifecycle (workers report here) ---------------------------------------------------
def workload_claim(*, workload_id: int, task_id: str, stale_after: int) -> Workload | None:
    """Claim a workload for creation, exclusively: a pending one is claimed by this task; a claimed
    one only by the same task again (a retry or redelivery, which finds its container by name), or
    by any task once the claim is older than `stale_after` seconds (its worker died). None: not ours."""
    now = timezone.now()
    creating = Workload.objects.filter(pk=workload_id, state=Workload.State.CREATING)
    claimed = (
        Workload.objects.filter(pk=workload_id, state=Workload.State.PENDING).update(
            state=Workload.State.CREATING, task_id=task_id, claimed_at=now
        )
        or creating.filter(task_id=task_id).exists()
        or creating.filter(claimed_at__lt=now - timedelta(seconds=stale_after)).update(
            task_id=task_id, claimed_at=now
        )
    )
    return Workload.objects.select_related("pod", "node").get(pk=workload_id) if claimed else None


def container_spec(w: Workload) -> dict[str, Any]:
    """Everything the Docker adapter needs to create the workload's container."""
    labels = {
        **w.labels,
        "ERU": "1",
        "ERU_META": etcd.dumps({"Publish": [], "HealthCheck": None}),
        "eru.nodename": w.node.name,
        "eru.podname": w.pod.name,
    }
    env = [
        *w.env,
        f"APP_NAME={w.app}",
        f"ERU_POD={w.pod.name}",
        f"ERU_NODE_NAME={w.node.name}",
        f"ERU_WORKLOAD_SEQ={w.seq}",
    ]
    resources = scheduling.docker_settings(_request_of(w), w.cpu_map, share_base=w.node.share_base)
    return {
        "name": w.name,
        "image": w.image,
        "command": w.command,
        "env": env,
        "labels": labels,
        "resources": resources,
        "network": w.network,
    }


def workload_started(*, workload_id: int, container: docker.ContainerInfo) -> Workload | None:
    with transaction.atomic():
        w = Workload.objects.select_for_update().select_related("pod", "node").filter(pk=workload_id).first()
        if w is None or w.state != Workload.State.CREATING:
            return w
        w.state = Workload.State.RUNNING
        w.container_id = container.id
        w.networks = container.networks
        w.error = ""
        w.save(update_fields=["state", "container_id", "networks", "error", "updated_at"])
        _deployment_progress(w.deployment_id, ok=True)
        _audit(
            SYSTEM,
            "workload.started",
            w,
            pod=w.pod,
            after={"container_id": container.id, "node": w.node.name},
        )
        sync.push(sync.workload_keys(w))
    return w


def workload_failed(*, workload_id: int, error: str) -> Workload | None:
    """Creation failed for good: release the allocation and say why on the row."""
    with transaction.atomic():
        w = Workload.objects.select_for_update().select_related("pod", "node").filter(pk=workload_id).first()
        if w is None or w.state not in (Workload.State.PENDING, Workload.State.CREATING):
            return w
        _release(w)
        w.state = Workload.State.FAILED
        w.error = error[:2000]
        w.cpu_map = {}
        w.save(update_fields=["state", "error", "cpu_map", "updated_at"])
        _deployment_progress(w.deployment_id, ok=False)
        _audit(SYSTEM, "workload.failed", w, pod=w.pod, after={"error": w.error, "node": w.node.name})
    return w


CONTROL_ACTIONS = ("start", "stop", "restart")


def workload_control(*, actor: Actor, workload: Workload, action: str) -> Workload:
    permissions.require_deploy(actor.user, workload.pod)
    if action not in CONTROL_ACTIONS:
        raise invalid("action", f"unknown control type {action!r}; use one of {', '.join(CONTROL_ACTIONS)}")
    if workload.state not in (Workload.State.RUNNING, Workload.State.STOPPED):
        raise invalid("action", f"workload {workload.name} is {workload.state}; only running or stopped ones")
    with transaction.atomic():
        _audit(actor, f"workload.{action}", workload, pod=workload.pod, before={"state": workload.state})
        enqueue("agents.control_workload", workload.pk, action)
    return workload


def workload_record_state(*, workload_id: int, running: bool, error: str = "") -> None:
    """Workers report the container's state after a control action or a poll; a change is audited."""
    state = Workload.State.RUNNING if running else Workload.State.STOPPED
    with transaction.atomic():
        w = Workload.objects.select_for_update().select_related("pod").filter(pk=workload_id).first()
        if w is None or w.state not in (Workload.State.RUNNING, Workload.State.STOPPED):
            return
        before = w.state
        w.state, w.error = state, error[:2000]
        w.save(update_fields=["state", "error", "updated_at"])
        if before != state:
            _audit(
                SYSTEM, f"workload.{state}", w, pod=w.pod, before={"state": before}, after={"state": state}
            )


def workload_remove_failed(*, workload_id: int, error: str) -> None:
    """Removing the container failed for now: say why on the row (reconcile tries again)."""
    Workload.objects.filter(pk=workload_id, state=Workload.State.REMOVING).update(
        error=error[:2000], updated_at=timezone.now()
    )


def workload_remove(*, actor: Actor, workload: Workload) -> Workload:
    """Mark for removal; the worker removes the container, then workload_removed releases."""
    permissions.require_deploy(actor.user, workload.pod)
    with transaction.atomic():
        w = Workload.objects.select_for_update().select_related("pod", "node").get(pk=workload.pk)
        if w.state in (Workload.State.PENDING, Workload.State.CREATING):
            raise invalid(
                "workload", f"workload {w.name} is still being created; remove it once it is running"
            )
        _audit(
            actor, "workload.remove", w, pod=w.pod, before={"state": w.state, "container_id": w.container_id}
        )
        if w.state == Workload.State.FAILED:  # nothing in Docker, nothing held
            w.delete()
            return w
        if w.state != Workload.State.REMOVING:
            w.state = Workload.State.REMOVING
            w.save(update_fields=["state", "updated_at"])
        enqueue("agents.remove_workload", w.pk)
    return w


def workload_removed(*, workload_id: int) -> None:
    """The container is gone: release the allocation, drop the row and its etcd keys."""
    with transaction.atomic():
        w = Workload.objects.select_for_update().select_related("pod", "node").filter(pk=workload_id).first()
        if w is None or w.state != Workload.State.REMOVING:
            return
        _release(w)
        sync.push(deletes=sync.workload_all_keys(w))
        _audit(SYSTEM, "workload.removed", w, pod=w.pod, before={"container_id": w.container_id})
        w.delete()


# --- API tokens ---------------------------------------------------------------------------------
def token_create(*, actor: Actor, user: Any, name: str) -> tuple[ApiToken, str]:
    """A new API token for `user`; the plaintext is returned once and never stored."""
    if actor.user is not None and actor.user != user and not actor.user.is_staff:
        raise PermissionDenied("You may only create tokens for yourself.")
    name = (name or "").strip()[:64] or "token"
    plaintext = authentication.new_token()
    with transaction.atomic():
        token = ApiToken.objects.create(
            user=user, name=name, prefix=plaintext[4:12], digest=authentication.digest(plaintext)
        )
        _audit(actor, "token.create", token, after={"user": user.username, "name": name})
    return token, plaintext


def stale_workloads(*, pending_after: int, claim_after: int) -> tuple[list[int], list[int]]:
    """Work whose message was lost or whose worker died: (to create, to remove). Pending rows
    untouched for `pending_after` seconds, creation claims older than `claim_after`, and removals
    still unfinished after `pending_after`."""
    now = timezone.now()
    pending = Q(state=Workload.State.PENDING, updated_at__lt=now - timedelta(seconds=pending_after))
    stale_claim = Q(state=Workload.State.CREATING, claimed_at__lt=now - timedelta(seconds=claim_after))
    create = Workload.objects.filter(pending | stale_claim).values_list("pk", flat=True)
    remove = Workload.objects.filter(
        state=Workload.State.REMOVING, updated_at__lt=now - timedelta(seconds=pending_after)
    ).values_list("pk", flat=True)
    return list(create), list(remove)


# --- API token revocation -----------------------------------------------------------------------
def token_revoke(*, actor: Actor, token: ApiToken) -> None:
    """Revoke (delete) an API token: a user their own, staff any. Requests with it get 401 at once."""
    permissions.require_revoke_token(actor.user, token)
    with transaction.atomic():
        token = ApiToken.objects.select_for_update().select_related("user").get(pk=token.pk)
        before = {"user": token.user.username, "name": token.name, "prefix": token.prefix}
        _audit(actor, "token.revoke", token, before=before)
        token.delete()


# --- pod memberships ----------------------------------------------------------------------------
def member_set(*, actor: Actor, pod: Pod, user: Any, role: str) -> Any:
    """Grant `user` a role in `pod` (add or change the PodMember row); staff or an owner of the pod."""
    permissions.require_manage_members(actor.user, pod)
    if role not in PodMember.Role.values:
        raise invalid("role", f"role must be one of {', '.join(PodMember.Role.values)}")
    if user is None or not user.pk:
        raise invalid("user", "no such user")
    with transaction.atomic():
        member = PodMember.objects.select_for_update().filter(pod=pod, user=user).first()
        before = {"user": user.username, "role": member.role} if member else None
        if member is None:
            member = PodMember.objects.create(pod=pod, user=user, role=role)
        elif member.role != role:
            member.role = role
            member.save(update_fields=["role"])
        else:
            return member  # nothing changes, nothing to audit
        _audit(
            actor, "member.set", member, pod=pod, before=before, after={"user": user.username, "role": role}
        )
    return member


def member_remove(*, actor: Actor, pod: Pod, user: Any) -> None:
    """Take `user`'s role in `pod` away; staff or an owner of the pod. Not a member: a field error."""
    permissions.require_manage_members(actor.user, pod)
    with transaction.atomic():
        member = PodMember.objects.select_for_update().filter(pod=pod, user=user).first()
        if member is None:
            raise invalid("user", f"{getattr(user, 'username', user)} is not a member of pod {pod.name}")
        _audit(actor, "member.remove", member, pod=pod, before={"user": user.username, "role": member.role})
        member.delete()
