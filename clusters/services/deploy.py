"""Deploy: validate a request, plan it with the scheduling engine, allocate under row locks."""

from __future__ import annotations

import json
import math
import re
import secrets
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

import scheduling
from clusters import permissions, queue
from clusters.models import Deployment, Node, Pod, Workload
from clusters.services._common import NAME_RE, Actor, audit, clean_labels, invalid
from clusters.services.nodes import available_nodes, node_resources, set_usage
from clusters.units import parse_size

APP_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
MAX_DEPLOY_COUNT = 1000
MAX_NODES_LIMIT = 10000
MAX_SPEC_BYTES = 64 << 10  # command, env and labels, each
MAX_CPU = 1024.0  # cpus in one request; far above any host, low enough for Docker's quota maths
STRATEGIES = tuple(Deployment.Strategy.values)


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
    for field_name, value in (("command", command), ("env", env), ("labels", labels)):
        size = len(json.dumps(value, default=str))  # copied into every workload row and container
        if size > MAX_SPEC_BYTES:
            bad(field_name, f"{field_name}: {size} bytes is above the limit of {MAX_SPEC_BYTES // 1024} KiB")
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
        labels, node_labels = clean_labels(labels), clean_labels(node_labels)
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
        audit(actor, "deploy", deployment, pod=spec.pod, after={**spec.as_json(), "plan": deploy_plan})
        queue.enqueue_each("agents.create_workload", [(w.pk,) for w in workloads])
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
        set_usage(node, alloc.used_cpu_map, alloc.used_cpu, alloc.used_memory)
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
