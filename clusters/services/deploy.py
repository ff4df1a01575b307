"""Deploy: validate a request against its pod, plan it with the scheduling engine, allocate under row
locks. The request's fields, types, limits and defaults are the schema's (schema.DeployRequest); the
rules here are the ones that need the pod or the server: Eru's resource rules with the pod's favor, the
network allow-list, node names and liveness, and the cap on what the plan makes."""

from __future__ import annotations

import dataclasses
import re
import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

import scheduling
import schema
from clusters import permissions, placement, queue, quotas, selectors
from clusters.models import AuditEvent, Deployment, LambdaRun, Node, Pod, Workload
from clusters.secrets import digest_audit
from clusters.services._common import Actor, audit, invalid
from clusters.services.nodes import set_usage
from clusters.services.policy import require_spec_allowed
from clusters.services.quotas import deploy_team, require_quota


@dataclass(frozen=True)
class PlacementSpec:
    """A validated placement (the capacity dry run's input): the request, and its resources after
    Eru's rules."""

    pod: Pod
    request: schema.Placement
    resources: scheduling.ResourceRequest


@dataclass(frozen=True)
class DeploySpec(PlacementSpec):
    """A validated deploy request."""

    request: schema.DeployRequest

    def as_json(self) -> dict[str, Any]:
        """What the deployment row keeps: the request as given, resources as Eru's rules made them."""
        return {**self.request.model_dump(exclude={"pod"}), **dataclasses.asdict(self.resources)}


def _resources(pod: Pod, given: schema.Resources, errors: dict[str, list[str]]) -> scheduling.ResourceRequest:
    """Eru's request rules, binding by the pod's favor unless the request says; errors by field."""
    bind = pod.favor == Pod.Favor.CPU if given.cpu_bind is None else given.cpu_bind
    try:
        request = scheduling.normalize_request(
            cpu_request=given.cpu_request,
            cpu_limit=given.cpu_limit,
            memory_request=given.memory_request,
            memory_limit=given.memory_limit,
            cpu_bind=bind,
        )
        if request.cpu_bind:  # a bound request takes at least one piece of a core
            scheduling.request_pieces(request.cpu_request, settings.ERU_SHARE_BASE)
    except scheduling.InvalidRequest as exc:
        errors.setdefault(exc.field or "cpu_request", []).append(str(exc))
        return scheduling.ResourceRequest()
    return request


def _network_refused(network: Any) -> str | None:
    """Why the network may not be asked for: only those of ERU_NETWORKS, none (the node's default
    bridge), or host and container:… (which reach past the container: the spec policy decides who)."""
    name = network.strip() if isinstance(network, str) else ""
    if (
        not name
        or name in settings.ERU_NETWORKS
        or name == "host"
        or re.fullmatch(r"container:[\w.-]{1,128}", name)
    ):
        return None
    allowed = ", ".join(settings.ERU_NETWORKS) or "none"
    return f"network {name[:40]!r} is not allowed; use one of: {allowed} (or leave it empty)"


def _validate(
    model: type[schema.Placement], pod: Pod, data: Mapping[str, Any], entry: schema.Entry
) -> tuple[Any, scheduling.ResourceRequest]:
    """The schema's checks, then the pod's; every bad field at once, as one ValidationError."""
    if not isinstance(data, Mapping):
        raise invalid("non_field_errors", "expected an object of deploy fields")
    errors: dict[str, list[str]] = {}
    origins: dict[str, str] = {}
    if "spec" in data and model is schema.DeployRequest:
        try:
            data, origins = schema.spec.merged(data)
        except schema.SchemaError as exc:
            raise ValidationError(exc.errors) from None
    data = {**data, "pod": pod.name}
    request: schema.Placement | None = None
    try:
        request = model.parse(data, entry=entry)
    except schema.SchemaError as exc:
        errors.update(exc.errors)
    given: schema.Resources | None = request
    if given is None and not errors.keys() & set(schema.RESOURCE_FIELDS):
        given = schema.Resources.parse(data, entry=entry)  # the rest failed: still check these
    resources = _resources(pod, given, errors) if given is not None else scheduling.ResourceRequest()
    if "network" in model.model_fields and (refused := _network_refused(data.get("network"))):
        errors.setdefault("network", []).append(refused)
    if errors:  # a field the spec gave is named by its place in the spec
        raise ValidationError({_origin(k, origins): v for k, v in errors.items()})
    return request, resources


def _origin(path: str, origins: dict[str, str]) -> str:
    field, dot, rest = path.partition(".")
    return origins[field] + dot + rest if field in origins else path


def deployment_validate(*, pod: Pod, data: Mapping[str, Any], entry: schema.Entry = "portal") -> DeploySpec:
    """A deploy request for `pod` from the fields in `data` (a dict, as the API, the form or erucli
    give it; `entry` picks the defaults). Raises ValidationError naming every bad field. Changes nothing."""
    request, resources = _validate(schema.DeployRequest, pod, data, entry)
    return DeploySpec(pod=pod, request=request, resources=resources)


def placement_validate(*, pod: Pod, data: Mapping[str, Any], entry: schema.Entry = "portal") -> PlacementSpec:
    """The capacity dry run's input: pod, node filter and resources only."""
    request, resources = _validate(schema.Placement, pod, data, entry)
    return PlacementSpec(pod=pod, request=request, resources=resources)


def _candidates(spec: PlacementSpec) -> list[Node]:
    return selectors.deploy_candidates(spec.pod, spec.request.node_names, spec.request.node_labels)


def _scheduling_infos(spec: DeploySpec, nodes: list[Node]) -> tuple[list[scheduling.NodeInfo], int]:
    counts = dict(
        Workload.objects.filter(
            Workload.holding(),
            app=spec.request.app,
            entrypoint=spec.request.entrypoint,
            node__in=nodes,
        )
        .values_list("node__name")
        .annotate(n=Count("id"))
    )
    resources = [selectors.node_resources(n) for n in nodes]
    return scheduling.deploy_infos(resources, spec.resources, counts)


def _plan(spec: DeploySpec, nodes: list[Node]) -> dict[str, int]:
    """The strategy's plan; a plan making more instances than one deploy may (EACH × nodes) is refused."""
    r = spec.request
    try:
        infos, total = _scheduling_infos(spec, nodes)
        plan = scheduling.plan(r.strategy, infos, r.count, total, r.nodes_limit)
    except scheduling.SchedulingError as exc:
        raise invalid("count", str(exc)) from exc
    made = sum(plan.values())
    if made > schema.MAX_DEPLOY_COUNT:
        raise invalid(
            "count",
            f"count: {r.strategy} with count {r.count} makes {made} instances here, above the limit of "
            f"{schema.MAX_DEPLOY_COUNT} per deploy",
        )
    return plan


def _explained(spec: PlacementSpec, exc: ValidationError) -> ValidationError:
    """A placement failure, with why each node was left out (clusters.placement: `placement`)."""
    return placement.explain(spec.pod, spec.request, spec.resources, exc)


def deployment_plan(spec: DeploySpec) -> dict[str, int]:
    """The strategy's plan for the spec against current usage (a dry run: changes nothing)."""
    try:
        return _plan(spec, _candidates(spec))
    except ValidationError as exc:
        raise _explained(spec, exc) from exc


def deployment_capacity(spec: PlacementSpec) -> tuple[dict[str, int], int]:
    """Eru's DUMMY dry run: how many instances of this request each available node can take now."""
    try:
        resources = [selectors.node_resources(n) for n in _candidates(spec)]
        return scheduling.deploy_capacity(resources, spec.resources)
    except scheduling.SchedulingError as exc:
        raise _explained(spec, invalid("count", str(exc))) from exc
    except ValidationError as exc:
        raise _explained(spec, exc) from exc


def _ident(taken: set[str]) -> str:
    alphabet = string.ascii_lowercase + string.digits
    while True:
        ident = "".join(secrets.choice(alphabet) for _ in range(6))
        if ident not in taken:
            taken.add(ident)
            return ident


def deployment_create(*, actor: Actor, spec: DeploySpec, lambda_timeout: int | None = None) -> Deployment:
    """Plan and allocate under row locks, then create the containers asynchronously. With
    `lambda_timeout`, a lambda's (services.lambda_create): its workloads run to their end and go.
    It runs on a team's quota (services.quotas.deploy_team), checked once the plan is made."""
    permissions.require_deploy(actor.user, spec.pod)
    require_spec_allowed(actor.user, spec.pod, spec.request)
    r = spec.request
    team = deploy_team(actor.user, spec.pod, r.team)
    try:
        candidates = _candidates(spec)
    except ValidationError as exc:
        raise _explained(spec, exc) from exc
    with transaction.atomic():
        # SQLite: BEGIN IMMEDIATE already serialises writers. PostgreSQL: lock nodes in name order.
        nodes = list(
            Node.objects.select_for_update()
            .filter(pk__in=[n.pk for n in candidates], bypass=False)  # set down since: no new work
            .order_by("name")
        )
        try:
            deploy_plan = _plan(spec, nodes)
        except ValidationError as exc:
            raise _explained(spec, exc) from exc
        what = "this lambda" if lambda_timeout else "this deploy"
        res = spec.resources
        ask = quotas.deploy_ask(sum(deploy_plan.values()), res.cpu_request, res.memory_request, what=what)
        require_quota(pod=spec.pod, team=team, ask=ask, field="count")
        deployment = Deployment.objects.create(
            pod=spec.pod,
            pod_name=spec.pod.name,
            app=r.app,
            entrypoint=r.entrypoint,
            image=r.image,
            spec=spec.as_json(),
            strategy=r.strategy,
            count=r.count,
            nodes_limit=r.nodes_limit,
            node_names=r.node_names,
            node_labels=r.node_labels,
            plan=deploy_plan,
            total=sum(deploy_plan.values()),
            timeout=r.timeout,
            team=team,
            created_by=actor.stored_user,
        )
        run = (
            LambdaRun.objects.create(deployment=deployment, timeout=lambda_timeout)
            if lambda_timeout
            else None
        )
        workloads = _allocate(spec, deployment, nodes, deploy_plan, run)
        if not workloads:  # FILL may plan zeros only when nothing is needed; nothing to do
            deployment.state = Deployment.State.DONE
            deployment.finished_at = timezone.now()
            deployment.save(update_fields=["state", "finished_at"])
        after = digest_audit({**spec.as_json(), "plan": deploy_plan})  # env: digests only
        audit(actor, AuditEvent.Action.DEPLOYMENT_CREATE, deployment, pod=spec.pod, after=after)
        if run is not None:
            run_after = {"command": r.command, "timeout": run.timeout, "deployment": deployment.pk}
            audit(actor, AuditEvent.Action.LAMBDA_RUN, run, pod=spec.pod, after=run_after)
        # A lambda's containers hold their worker for their whole run: a queue and a worker of their own.
        task = "agents.run_lambda" if run is not None else "agents.create_workload"
        queue.enqueue_each(task, [(w.pk,) for w in workloads])
    return deployment


def _allocate(
    spec: DeploySpec, deployment: Deployment, nodes: list[Node], plan: dict[str, int], run: LambdaRun | None
) -> list[Workload]:
    by_name = {n.name: n for n in nodes}
    taken: set[str] = set()
    rows: list[Workload] = []
    r, seq = spec.request, 0
    for node_name, n in sorted(plan.items()):
        if n <= 0:
            continue
        node = by_name[node_name]
        try:
            alloc = scheduling.allocate(selectors.node_resources(node), spec.resources, n)
        except scheduling.SchedulingError as exc:
            raise invalid("count", str(exc)) from exc
        set_usage(node, alloc.used_cpu_map, alloc.used_cpu, alloc.used_memory)
        for cpu_map in alloc.cpu_maps:
            rows.append(
                Workload(
                    name=f"{r.app}_{r.entrypoint}_{_ident(taken)}",
                    pod=spec.pod,
                    node=node,
                    deployment=deployment,
                    app=r.app,
                    entrypoint=r.entrypoint,
                    seq=seq,
                    image=r.image,
                    command=r.command,
                    env=r.env,
                    labels=r.labels,
                    network=r.network,
                    cpu_request=spec.resources.cpu_request,
                    cpu_limit=spec.resources.cpu_limit,
                    memory_request=spec.resources.memory_request,
                    memory_limit=spec.resources.memory_limit,
                    cpu_bind=spec.resources.cpu_bind,
                    cpu_map=cpu_map,
                    healthcheck=r.healthcheck.model_dump() if r.healthcheck else None,
                    options=r.container_options(),
                    lambda_run=run,
                    team=deployment.team,
                    health=Workload.Health.UNKNOWN if r.healthcheck else Workload.Health.NONE,
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
