"""Deploy: validate a request against its pod, plan it with the scheduling engine, allocate under row
locks. The request's fields, types, limits and defaults are the schema's (schema.DeployRequest); the
rules here are the ones that need the pod or the server: Eru's resource rules with the pod's favor, the
network allow-list, node names and liveness, and the cap on what the plan makes."""

from __future__ import annotations

import dataclasses
import json
import re
import secrets
import string
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connections, transaction
from django.db.models import Count
from django.utils import timezone

import scheduling
import schema
from clusters import etcd, permissions, placement, queue, quotas, selectors, sync
from clusters.models import AuditEvent, Deployment, LambdaRun, Node, Pod, Team, Workload
from clusters.secrets import digest_audit
from clusters.services._common import Actor, audit, invalid
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


def _snapshot(spec: PlacementSpec) -> list[selectors.NodeState]:
    """The available nodes the request may use, read without locks (ValidationError when none)."""
    return selectors.deploy_snapshot(spec.pod, spec.request.node_names, spec.request.node_labels)


def _counts(spec: DeploySpec, node_ids: Collection[int] | None = None) -> dict[int, int]:
    """Instances of the request's app and entrypoint holding an allocation, by node id (of the pod,
    or only on `node_ids`)."""
    rows = Workload.objects.filter(
        Workload.holding(), pod=spec.pod, app=spec.request.app, entrypoint=spec.request.entrypoint
    )
    if node_ids is not None:
        rows = rows.filter(node_id__in=list(node_ids))
    return dict(rows.order_by().values_list("node_id").annotate(n=Count("id")))


def _plan(
    spec: DeploySpec, states: Sequence[selectors.NodeState], counts: Mapping[int, int]
) -> dict[str, int]:
    """The strategy's plan; a plan making more instances than one deploy may (EACH × nodes) is refused."""
    r = spec.request
    by_name = {s.name: counts[s.pk] for s in states if s.pk in counts}
    try:
        infos, total = scheduling.deploy_infos([s.resources for s in states], spec.resources, by_name)
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
    """The strategy's plan for the spec against current usage (a dry run: changes nothing). Ties
    in name order (the engine's); a deploy of unbound AUTO breaks them at random (_auto_roomiest),
    so it may name other nodes of the same room."""
    try:
        return _plan(spec, _snapshot(spec), _counts(spec))
    except ValidationError as exc:
        raise _explained(spec, exc) from exc


def deployment_capacity(spec: PlacementSpec) -> tuple[dict[str, int], int]:
    """Eru's DUMMY dry run: how many instances of this request each available node can take now."""
    try:
        resources = [s.resources for s in _snapshot(spec)]
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


# Plans made against a snapshot before one made under locks on every candidate, as before.
OPTIMISTIC_ATTEMPTS = 3
# A deployment of more workloads than CREATION_DIRECT goes to the broker as one message per
# CREATION_BATCH of them, which a worker hands on as one message per workload
# (agents.create_workloads); a smaller one as one message per workload, which saves that hop.
CREATION_DIRECT = 16
CREATION_BATCH = 500


class _Conflict(Exception):
    """A node the plan chose changed between the snapshot and its lock so that the plan is void."""


def _idents(count: int, taken: set[str]) -> list[str]:
    """`count` new idents as _ident() draws them (6 of a–z0–9, none in `taken`), from one read of
    the system's randomness instead of one per character."""
    alphabet = string.ascii_lowercase + string.digits
    found: list[str] = []
    while len(found) < count:
        raw = secrets.token_bytes(8 * (count - len(found)) + 8)
        chars = [alphabet[b % len(alphabet)] for b in raw if b < 252]  # 252 = 7 × 36: no bias
        for i in range(0, len(chars) - 5, 6):
            ident = "".join(chars[i : i + 6])
            if ident not in taken:
                taken.add(ident)
                found.append(ident)
                if len(found) == count:
                    break
    return found


def deployment_create(*, actor: Actor, spec: DeploySpec, lambda_timeout: int | None = None) -> Deployment:
    """Plan and allocate, then create the containers asynchronously. With `lambda_timeout`, a
    lambda's (services.lambda_create): its workloads run to their end and go. It runs on a team's
    quota (services.quotas.deploy_team), checked once the plan is made.

    As Nomad's plan applier: the plan is made against a snapshot of the candidates read without
    locks; then only the nodes it chose are locked (in name order) and checked again: each must still
    take its share (scheduling.allocate on the locked row), and for FILL, and AUTO with a nodes
    limit, hold as many of the app as the plan assumed. Two deploys racing for the last capacity
    lock the same row, and the later one finds it taken. A plan that no longer holds is made again
    from a new snapshot; after OPTIMISTIC_ATTEMPTS, under locks on every candidate."""
    permissions.require_deploy(actor.user, spec.pod)
    require_spec_allowed(actor.user, spec.pod, spec.request)
    team = deploy_team(actor.user, spec.pod, spec.request.team)
    for _ in range(OPTIMISTIC_ATTEMPTS):
        try:
            return _create(actor, spec, team, lambda_timeout, optimistic=True)
        except _Conflict:
            continue
    return _create(actor, spec, team, lambda_timeout, optimistic=False)


def _create(
    actor: Actor, spec: DeploySpec, team: Team | None, lambda_timeout: int | None, *, optimistic: bool
) -> Deployment:
    r = spec.request
    snapshot: list[selectors.NodeState] = []
    if not optimistic:
        snapshot = _full_snapshot(spec)
    counts: dict[int, int] = {}
    deploy_plan: dict[str, int] = {}
    if optimistic:
        roomiest = _auto_roomiest(spec)
        if roomiest is not None:  # the plan AUTO makes over them is the one it makes over all
            snapshot = roomiest
        else:
            snapshot = _full_snapshot(spec)
            counts = _counts(spec)
        deploy_plan = _planned(spec, snapshot, counts)
    with transaction.atomic():
        if not optimistic:  # every candidate locked, then planned: no conflict possible
            candidates = [s.pk for s in snapshot]
            snapshot = [s for s in selectors.node_states_by_pk(candidates, lock=True) if _usable(spec, s)]
            counts = _counts(spec)
            deploy_plan = _planned(spec, snapshot, counts)
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
        after = digest_audit({**spec.as_json(), "plan": deploy_plan})  # env: digests only
        audit(actor, AuditEvent.Action.DEPLOYMENT_CREATE, deployment, pod=spec.pod, after=after)
        if run is not None:
            run_after = {"command": r.command, "timeout": run.timeout, "deployment": deployment.pk}
            audit(actor, AuditEvent.Action.LAMBDA_RUN, run, pod=spec.pod, after=run_after)
        by_name = {s.name: s for s in snapshot}
        chosen = [by_name[name] for name, n in sorted(deploy_plan.items()) if n > 0]
        allocations = _lock_and_allocate(spec, chosen, deploy_plan, counts, optimistic=optimistic)
        what = "this lambda" if lambda_timeout else "this deploy"
        res = spec.resources
        ask = quotas.deploy_ask(sum(deploy_plan.values()), res.cpu_request, res.memory_request, what=what)
        require_quota(pod=spec.pod, team=team, ask=ask, field="count")
        ids = _workloads(spec, deployment, allocations, deploy_plan, run)
        if not ids:  # FILL may plan zeros only when nothing is needed; nothing to do
            deployment.state = Deployment.State.DONE
            deployment.finished_at = timezone.now()
            deployment.save(update_fields=["state", "finished_at"])
        # A lambda's containers hold their worker for their whole run: a queue and a worker of their own.
        if run is not None:
            queue.enqueue_each("agents.run_lambda", [(pk,) for pk in ids])
        elif len(ids) <= CREATION_DIRECT:
            queue.enqueue_each("agents.create_workload", [(pk,) for pk in ids])
        else:
            batches = [(ids[i : i + CREATION_BATCH],) for i in range(0, len(ids), CREATION_BATCH)]
            queue.enqueue_each("agents.create_workloads", batches)
        _save_usage(allocations)
    return deployment


def _full_snapshot(spec: DeploySpec) -> list[selectors.NodeState]:
    try:
        return _snapshot(spec)
    except ValidationError as exc:
        raise _explained(spec, exc) from exc


ROOMIEST_SLACK = 16  # rows read past the count: nodes found down, holding the app, or not matching
ROOMIEST_MAX = 2000  # instances past which reading every candidate costs about the same
LOCK_BY_POD = 2000  # chosen nodes past which the pod's nodes are read (and locked) whole, not by id


def _auto_roomiest(spec: DeploySpec) -> list[selectors.NodeState] | None:
    """For an unbound AUTO deploy of n instances: the n nodes the plan over every candidate would
    choose, read without reading every node — or None (then every candidate is read).

    AUTO (Eru's CommunismPlan) gives each instance to the node with the fewest of the app, ties to
    the one with the most room left (count + capacity), then input order (name; Eru's heap leaves
    them unordered). While at least n candidates hold none of the app, the n instances go one each
    to the n of those with the most capacity, ties at random (as Eru: racing deploys then take
    different nodes): for an unbound request capacity is free memory // memory request (every node
    with enough cores), which the database orders (selectors.roomiest_nodes). Nodes
    read that are down, lack the cores or labels, or hold the app, are skipped; while fewer than n
    remain, more are read."""
    r, res = spec.request, spec.resources
    if r.strategy != scheduling.AUTO or res.cpu_bind or r.node_names or r.count > ROOMIEST_MAX:
        return None
    alive = selectors.alive_names()
    limit = r.count + ROOMIEST_SLACK
    while True:
        read = selectors.roomiest_nodes(spec.pod, res.memory_request, limit)
        fit = [
            s
            for s in read
            if s.name in alive
            and len(s.resources.cpu_map) >= res.cpu_request
            and all(s.labels.get(k) == v for k, v in r.node_labels.items())
        ]
        holding = _counts(spec, [s.pk for s in fit] if len(fit) <= 64 else None) if fit else {}
        free = [s for s in fit if s.pk not in holding]
        if len(free) >= r.count:
            return free[: r.count]
        if len(read) < limit:  # every node read: the plan needs the rest of them too
            return None
        limit *= 4


def _planned(
    spec: DeploySpec, states: Sequence[selectors.NodeState], counts: Mapping[int, int]
) -> dict[str, int]:
    try:
        return _plan(spec, states, counts)
    except ValidationError as exc:
        raise _explained(spec, exc) from exc


def _usable(spec: DeploySpec, state: selectors.NodeState) -> bool:
    """The locked row is still of the pod, not set down and still has the labels asked for since the
    snapshot (no new work). Liveness is the snapshot's: a heartbeat lost meanwhile is a node that
    was up when the plan was made, as it would have been a moment earlier."""
    labels = spec.request.node_labels
    return (
        state.pod_id == spec.pod.pk
        and not state.bypass
        and all(state.labels.get(k) == v for k, v in labels.items())
    )


def _count_bound(spec: DeploySpec) -> bool:
    """Whether the plan depends on the app's instances per node beyond capacity: FILL tops nodes up
    to a count, AUTO's nodes limit caps them."""
    r = spec.request
    return r.strategy == scheduling.FILL or (r.strategy == scheduling.AUTO and r.nodes_limit > 0)


@dataclass(frozen=True)
class _Allocated:
    state: selectors.NodeState  # as locked, before this deploy
    allocation: scheduling.Allocation


def _lock_and_allocate(
    spec: DeploySpec,
    chosen: list[selectors.NodeState],
    plan: Mapping[str, int],
    counts: Mapping[int, int],
    *,
    optimistic: bool,
) -> list[_Allocated]:
    """Lock the chosen nodes (in name order) and allocate the plan's share on each as it is now;
    a plan that no longer holds there is a _Conflict (made against a snapshot) or Eru's error."""
    if not optimistic:
        locked = {s.pk: s for s in chosen}  # locked already, with every candidate
    elif len(chosen) > LOCK_BY_POD:  # one query of the pod, not thousands of ids
        locked = {s.pk: s for s in selectors.node_states(Node.objects.filter(pod=spec.pod), lock=True)}
    else:
        locked = {s.pk: s for s in selectors.node_states_by_pk([s.pk for s in chosen], lock=True)}
    if (
        optimistic
        and _count_bound(spec)
        and _counts(spec, locked) != {pk: n for pk in locked if (n := counts.get(pk, 0))}
    ):
        raise _Conflict
    found: list[_Allocated] = []
    for state in chosen:
        now = locked.get(state.pk)
        if now is None or not _usable(spec, now):
            if optimistic:
                raise _Conflict
            raise invalid("count", f"node {state.name} is gone or set down")  # pragma: no cover
        try:
            allocation = scheduling.allocate(now.resources, spec.resources, plan[state.name])
        except scheduling.SchedulingError as exc:
            if optimistic:
                raise _Conflict from exc
            raise invalid("count", str(exc)) from exc
        found.append(_Allocated(now, allocation))
    return found


def _save_usage(allocations: list[_Allocated]) -> None:
    """The chosen nodes' new usage (cores with no pieces held left out), in one statement per
    thousand nodes; the mirror once the transaction commits, in one read and batched etcd writes;
    a remap of the nodes whose share pool this changes (as services.nodes.set_usage)."""
    rows: list[tuple[int, dict[str, int], float, int]] = []
    remap: list[int] = []
    for a in allocations:
        before = a.state.resources
        used = {core: pieces for core, pieces in a.allocation.used_cpu_map.items() if pieces}
        rows.append((a.state.pk, used, a.allocation.used_cpu, a.allocation.used_memory))
        if used == before.used_cpu_map:  # unbound: the cores held are the same, so is the pool
            continue
        after = dataclasses.replace(before, used_cpu_map=used)
        if scheduling.share_pool(before) != scheduling.share_pool(after) and _pool_changed(
            a.state.pk, before, after
        ):
            remap.append(a.state.pk)
    conn = connections[Node.objects.db or "default"]
    qn = conn.ops.quote_name
    table, pk = qn(Node._meta.db_table), qn("id")
    used_map, used_cpu, used_memory = qn("used_cpu_map"), qn("used_cpu"), qn("used_memory")
    with conn.cursor() as cursor:  # bulk_update's CASE WHEN costs seconds at 1,000 nodes
        if conn.vendor == "postgresql":  # one statement
            cursor.execute(
                f"UPDATE {table} AS n SET {used_map} = v.m::jsonb, {used_cpu} = v.c, {used_memory} = v.b "
                "FROM unnest(%s::bigint[], %s::text[], %s::float8[], %s::bigint[]) AS v(id, m, c, b) "
                f"WHERE n.{pk} = v.id",
                [
                    [node for node, _, _, _ in rows],
                    [json.dumps(used) for _, used, _, _ in rows],
                    [cpu for _, _, cpu, _ in rows],
                    [memory for _, _, _, memory in rows],
                ],
            )
        else:
            field = Node._meta.get_field("used_cpu_map")
            cursor.executemany(
                f"UPDATE {table} SET {used_map} = %s, {used_cpu} = %s, {used_memory} = %s WHERE {pk} = %s",
                [(field.get_db_prep_save(used, conn), cpu, memory, node) for node, used, cpu, memory in rows],
            )
    if remap:
        queue.enqueue_each("agents.remap_node", [(pk,) for pk in remap])
    _mirror([node for node, _, _, _ in rows])


def _pool_changed(pk: int, before: scheduling.NodeResources, after: scheduling.NodeResources) -> bool:
    """Whether the share pool changes within the cores the node's engine has (its last docker info)."""
    ncpu = selectors.engine_ncpu(Node.objects.only("info").get(pk=pk))
    return selectors.share_pool_of(before, ncpu) != selectors.share_pool_of(after, ncpu)


def _mirror(node_ids: list[int]) -> None:
    """Mirror the nodes as they are once the transaction commits (re-read then, as sync.push_node:
    of two racing writers the later commit's values land last), in one query and batched writes;
    what etcd refuses is written again within seconds (sync.retry_later)."""

    def _apply() -> None:
        puts: dict[str, Any] = {}
        for start in range(0, len(node_ids), 2000):  # lists: iterator() is a server-side cursor on PG
            for node in Node.objects.select_related("pod").filter(pk__in=node_ids[start : start + 2000]):
                puts.update(sync.node_keys(node))
        try:
            etcd.apply(puts)
        except etcd.EtcdError as exc:
            sync.retry_later(puts, exc)

    transaction.on_commit(_apply, robust=True)


def _workloads(
    spec: DeploySpec,
    deployment: Deployment,
    allocations: list[_Allocated],
    plan: Mapping[str, int],
    run: LambdaRun | None,
) -> list[int]:
    """Insert the deployment's workload rows; their ids, in seq order."""
    taken: set[str] = set()
    r, res = spec.request, spec.resources
    proto = Workload(
        name="",
        pod=spec.pod,
        deployment=deployment,
        app=r.app,
        entrypoint=r.entrypoint,
        image=r.image,
        command=r.command,
        env=r.env,
        labels=r.labels,
        network=r.network,
        cpu_request=res.cpu_request,
        cpu_limit=res.cpu_limit,
        memory_request=res.memory_request,
        memory_limit=res.memory_limit,
        cpu_bind=res.cpu_bind,
        healthcheck=r.healthcheck.model_dump() if r.healthcheck else None,
        options=r.container_options(),
        lambda_run=run,
        team=deployment.team,
        health=Workload.Health.UNKNOWN if r.healthcheck else Workload.Health.NONE,
    )
    prefix = f"{r.app}_{r.entrypoint}_"
    rows = [_Row("", a.state.pk, cpu_map) for a in allocations for cpu_map in a.allocation.cpu_maps]
    for row, ident in zip(rows, _idents(len(rows), taken), strict=True):
        row.name = prefix + ident
    return _insert(proto, rows, prefix, taken)


@dataclass
class _Row:
    """What differs between the rows of one deployment (besides seq, their order)."""

    name: str
    node_id: int
    cpu_map: dict[str, int]


def _unique_rows(rows: list[_Row], prefix: str, taken: set[str]) -> None:
    """Names are random; re-draw the rare one that an existing workload already has."""
    while clash := set(
        Workload.objects.filter(name__in=[r.name for r in rows]).values_list("name", flat=True)
    ):
        for row in rows:
            if row.name in clash:
                row.name = prefix + _ident(taken)


_VARYING = frozenset({"name", "node_id", "seq", "cpu_map"})
INSERT_CHUNK = 500  # rows per INSERT (SQLite allows 32,766 bound values a statement, PostgreSQL 65,535)
NAME_DRAWS = 8  # rounds of new names for rows whose name a workload has already (1 in 2 billion each)


def _insert(proto: Workload, rows: list[_Row], prefix: str, taken: set[str]) -> list[int]:
    """Insert rows that differ only in name, node, seq and cpu map, with the other columns prepared
    for the database once instead of once per row (bulk_create's cost at 1,000 rows); their ids in
    seq order. Names are random: a row whose name an existing workload has is skipped by the insert
    (ON CONFLICT DO NOTHING, no query beforehand) and inserted again under a new one. A database
    that cannot return the ids of a multi-row insert: a check of the names, then bulk_create."""
    conn = connections[Workload.objects.db or "default"]
    fields = [f for f in Workload._meta.concrete_fields if not f.primary_key]
    if not conn.features.can_return_rows_from_bulk_insert:  # pragma: no cover — PostgreSQL, SQLite can
        _unique_rows(rows, prefix, taken)
        made = [
            Workload(
                **{f.attname: getattr(proto, f.attname) for f in fields if f.attname not in _VARYING},
                **_row_fields(row, seq),
            )
            for seq, row in enumerate(rows)
        ]
        return [w.pk for w in Workload.objects.bulk_create(made)]
    prepared = {f.attname: f.get_db_prep_save(f.pre_save(proto, add=True), conn) for f in fields}
    insert = _insert_pg if conn.vendor == "postgresql" else _insert_values
    ids: dict[int, int] = {}  # seq -> id
    waiting = list(enumerate(rows))
    for _ in range(NAME_DRAWS):
        ids.update(insert(conn, fields, prepared, waiting))
        waiting = [(seq, row) for seq, row in waiting if seq not in ids]
        if not waiting:
            return [ids[seq] for seq in range(len(rows))]
        for _, row in waiting:  # a name a workload has already: another
            row.name = prefix + _ident(taken)
    raise RuntimeError(f"workload names still taken after {NAME_DRAWS} draws: {waiting[0][1].name}")


def _insert_pg(
    conn: Any, fields: list[Any], prepared: dict[str, Any], rows: list[tuple[int, _Row]]
) -> list[tuple[int, int]]:
    """One statement: the varying columns as arrays; (seq, id) of the rows inserted."""
    qn = conn.ops.quote_name
    table, columns = qn(Workload._meta.db_table), ", ".join(qn(str(f.column)) for f in fields)
    picks = [f"v.{f.attname}" if f.attname in _VARYING else f"%s::{f.cast_db_type(conn)}" for f in fields]
    sql = (
        f"INSERT INTO {table} ({columns}) SELECT {', '.join(picks)} FROM unnest("
        "%s::text[], %s::bigint[], %s::integer[], %s::jsonb[]) AS v(name, node_id, seq, cpu_map) "
        f"ON CONFLICT ({qn('name')}) DO NOTHING RETURNING {qn('id')}, {qn('seq')}"
    )
    params = [prepared[f.attname] for f in fields if f.attname not in _VARYING]
    params += [
        [row.name for _, row in rows],
        [row.node_id for _, row in rows],
        [seq for seq, _ in rows],
        [json.dumps(row.cpu_map) for _, row in rows],
    ]
    with conn.cursor() as cursor:
        cursor.execute(sql, params)
        return [(seq, pk) for pk, seq in cursor.fetchall()]


def _insert_values(
    conn: Any, fields: list[Any], prepared: dict[str, Any], rows: list[tuple[int, _Row]]
) -> list[tuple[int, int]]:
    """INSERT … VALUES …, INSERT_CHUNK rows a statement; (seq, id) of the rows inserted."""
    cpu_map = Workload._meta.get_field("cpu_map")
    qn = conn.ops.quote_name
    table, columns = qn(Workload._meta.db_table), ", ".join(qn(str(f.column)) for f in fields)
    slots = {name: i for i, name in enumerate(f.attname for f in fields)}
    values = "(" + ", ".join(["%s"] * len(fields)) + ")"
    base = [prepared[f.attname] if f.attname not in _VARYING else None for f in fields]
    found: list[tuple[int, int]] = []
    with conn.cursor() as cursor:
        for start in range(0, len(rows), INSERT_CHUNK):
            chunk = rows[start : start + INSERT_CHUNK]
            params = []
            for seq, row in chunk:
                one = list(base)
                one[slots["name"]], one[slots["node_id"]], one[slots["seq"]] = row.name, row.node_id, seq
                one[slots["cpu_map"]] = cpu_map.get_db_prep_save(row.cpu_map, conn)
                params += one
            many = ", ".join([values] * len(chunk))
            cursor.execute(
                f"INSERT INTO {table} ({columns}) VALUES {many} ON CONFLICT ({qn('name')}) DO NOTHING "
                f"RETURNING {qn('id')}, {qn('seq')}",
                params,
            )
            found += [(seq, pk) for pk, seq in cursor.fetchall()]
    return found


def _row_fields(row: _Row, seq: int) -> dict[str, Any]:
    return {"name": row.name, "node_id": row.node_id, "seq": seq, "cpu_map": row.cpu_map}


def _unique_names(rows: list[Workload], taken: set[str]) -> None:
    """Names are random; re-draw the rare one that an existing workload already has."""
    while clash := set(
        Workload.objects.filter(name__in=[r.name for r in rows]).values_list("name", flat=True)
    ):
        for row in rows:
            if row.name in clash:
                row.name = f"{row.app}_{row.entrypoint}_{_ident(taken)}"
