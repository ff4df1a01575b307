"""Eru's replace: new containers for existing workloads, each on its node with its resources, batch by
batch. A replacement row borrows its old workload's allocation (Workload.borrows) until the swap; the
worker (agents/replace.py) stops the old container, starts the new one, waits for it, then removes
the old one — or, when the new one fails, removes it and starts the old one again, and the rest of
the deployment stops there. Progress, cancel and timeout are a deployment's (kind replace)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

import schema
from clusters import permissions, queue, sync
from clusters.models import AuditEvent, Deployment, Pod, Team, Workload
from clusters.pagination import MAX_BIGINT
from clusters.services._common import SYSTEM, Actor, audit, invalid
from clusters.services.deploy import _ident, _unique_names, deployment_validate
from clusters.services.policy import require_spec_allowed
from clusters.services.workloads import _locked, deployment_progress

Action = AuditEvent.Action
REPLACING = "replace"  # Workload.action of a workload whose replacement is under way
SELECTION = ("filter_labels", "nodes", "ids", "batch", "timeout")
MAX_REPLACE = schema.MAX_DEPLOY_COUNT
# What a replacement takes from the request when the request gives it, else from its old workload.
CARRIED = ("image", "command", "env", "labels", "network", "healthcheck")
_PLACEHOLDER_IMAGE = "placeholder/replace:keep"  # validates a body without an image; never used


def _selection(data: Mapping[str, Any]) -> tuple[dict[str, str], list[str], list[int], int]:
    given = {k: data[k] for k in ("filter_labels", "nodes", "ids") if data.get(k) is not None}
    labels, nodes, ids, batch = (
        given.get("filter_labels", {}),
        given.get("nodes", []),
        given.get("ids", []),
        1,
    )
    if not isinstance(labels, Mapping) or not all(isinstance(v, str) for v in labels.values()):
        raise invalid("filter_labels", "filter_labels: an object of label names to string values")
    if not isinstance(nodes, list) or not all(isinstance(n, str) for n in nodes):
        raise invalid("nodes", "nodes: a list of node names")
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise invalid("ids", "ids: a list of workload ids")
    if len(ids) > MAX_REPLACE or not all(1 <= i <= MAX_BIGINT for i in ids):
        raise invalid("ids", f"ids: at most {MAX_REPLACE} ids, each from 1 to {MAX_BIGINT}")
    if len(nodes) > MAX_REPLACE:
        raise invalid("nodes", f"nodes: at most {MAX_REPLACE} names")
    if "batch" in data:
        batch = data["batch"]
        if not isinstance(batch, int) or isinstance(batch, bool) or not 0 <= batch <= MAX_REPLACE:
            raise invalid(
                "batch", f"batch: {batch!r} is not a whole number from 0 (all at once) to {MAX_REPLACE}"
            )
    return {str(k): v for k, v in labels.items()}, nodes, ids, batch


def replace_candidates(
    pod: Pod, app: str, entrypoint: str, data: Mapping[str, Any], *, lock: bool = False
) -> list[Workload]:
    """The workloads a replace takes: the app's entrypoint in the pod, running or stopped, none busy
    or already being replaced, filtered by labels, nodes and ids. `lock`: their rows locked, read
    under the lock (so a row removed or stopped meanwhile is not taken)."""
    labels, nodes, ids, _ = _selection(data)
    rows = (
        Workload.objects.filter(
            pod=pod,
            app=app,
            entrypoint=entrypoint,
            state__in=Workload.OBSERVED,
            action="",
            lambda_run__isnull=True,
            replaces__isnull=True,
        )
        .exclude(container_id="")
        .exclude(replacements__state__in=Workload.HOLDING)
        .select_related("pod", "node")
        .order_by("node__name", "seq", "pk")
    )
    if lock:
        rows = rows.select_for_update(of=("self",))
    if nodes:
        rows = rows.filter(node__name__in=nodes)
    if ids:
        rows = rows.filter(pk__in=ids)
    return [w for w in rows if all(w.labels.get(k) == v for k, v in labels.items())]


def workload_replace(*, actor: Actor, pod: Pod, data: Mapping[str, Any]) -> Deployment:
    """Replace the selected workloads with the request's image or spec (what it does not give, each
    keeps); resource fields are not taken (same resources, same node). Refused, changing nothing,
    when nothing matches or the request is not valid."""
    permissions.require_deploy(actor.user, pod)
    if not isinstance(data, Mapping):
        raise invalid("non_field_errors", "expected an object of replace fields")
    if "team" in data:  # a replacement holds its old workload's allocation: on that one's quota
        raise invalid("team", "team: a replace keeps each workload's team (and its quota use)")
    _, _, _, batch = _selection(data)
    body = {k: v for k, v in data.items() if k not in SELECTION and k not in schema.RESOURCE_FIELDS}
    given = set(body)
    if "spec" in body:
        given |= set(schema.spec.merged(body)[0])
    keep_image = "image" not in given
    fields = {**body, "count": 1, "timeout": data.get("timeout")}
    if keep_image:
        fields["image"] = _PLACEHOLDER_IMAGE
    spec = deployment_validate(pod=pod, data=fields)
    r = spec.request
    require_spec_allowed(actor.user, pod, r)
    with transaction.atomic():
        old = replace_candidates(pod, r.app, r.entrypoint, data, lock=True)
        if not old:
            raise invalid(
                "app", f"no running or stopped workload of {r.app}/{r.entrypoint} matches in pod {pod.name}"
            )
        if len(old) > MAX_REPLACE:
            raise invalid("ids", f"{len(old)} workloads match; at most {MAX_REPLACE} per replace")
        plan: dict[str, int] = {}
        for w in old:
            plan[w.node.name] = plan.get(w.node.name, 0) + 1
        d = Deployment.objects.create(
            pod=pod,
            pod_name=pod.name,
            kind=Deployment.Kind.REPLACE,
            app=r.app,
            entrypoint=r.entrypoint,
            image="" if keep_image else r.image,
            spec={"given": sorted(given - {"pod"}), "replaces": [w.pk for w in old]},
            count=len(old),
            plan=plan,
            total=len(old),
            batch=batch,
            timeout=r.timeout,
            team=_team(old),
            created_by=actor.stored_user,
        )
        rows = [_replacement(w, r, given, d) for w in old]
        first = len(rows) if batch == 0 else batch
        taken: set[str] = set()
        for i, row in enumerate(rows):
            row.name = f"{row.app}_{row.entrypoint}_{_ident(taken)}"
            row.task_id = "sent" if i < first else ""  # the rest wait for their turn (_next)
        _unique_names(rows, taken)
        # Which container each replaces, for those who report the swap after the old row is gone.
        d.spec["containers"] = {row.name: w.container_id for row, w in zip(rows, old, strict=True)}
        d.save(update_fields=["spec"])
        rows = Workload.objects.bulk_create(rows)
        # Busy until their replacement is done or given up: no control, remove, realloc or
        # dissociate meanwhile. task_id keeps whether each ran, for a worker that takes over.
        for state in (Workload.State.RUNNING, Workload.State.STOPPED):
            Workload.objects.filter(pk__in=[w.pk for w in old if w.state == state]).update(
                action=REPLACING, task_id=f"{REPLACING}:{state}"
            )
        after = {"replaces": {w.name: w.pk for w in old}, "given": sorted(given - {"pod"}), "batch": batch}
        audit(actor, Action.WORKLOAD_REPLACE, d, pod=pod, after=after)
        queue.enqueue_each("agents.replace_workload", [(w.pk,) for w in rows[:first]])
    return d


def _team(old: list[Workload]) -> Team | None:
    """A replace runs on its workloads' team (None when they are of several, or of none)."""
    teams = {w.team_id for w in old}
    return old[0].team if len(teams) == 1 else None


def _replacement(old: Workload, r: schema.DeployRequest, given: set[str], d: Deployment) -> Workload:
    new = {f: getattr(r, f) for f in CARRIED if f in given}
    if "healthcheck" in new:
        new["healthcheck"] = r.healthcheck.model_dump() if r.healthcheck else None
    options = dict(old.options)
    for f, v in r.container_options().items():
        options[f] = v
    for f in schema.deploy.CONTAINER_FIELDS:
        if f in given and f not in r.container_options():
            options.pop(f, None)  # given as empty: taken away
    healthcheck = new.get("healthcheck", old.healthcheck)
    return Workload(
        name="",
        pod=old.pod,
        node=old.node,
        deployment=d,
        app=old.app,
        entrypoint=old.entrypoint,
        seq=old.seq,
        image=new.get("image", old.image),
        command=new.get("command", old.command),
        env=new.get("env", old.env),
        labels=new.get("labels", old.labels),
        network=new.get("network", old.network),
        cpu_request=old.cpu_request,
        cpu_limit=old.cpu_limit,
        memory_request=old.memory_request,
        memory_limit=old.memory_limit,
        cpu_bind=old.cpu_bind,
        cpu_map=old.cpu_map,
        healthcheck=healthcheck,
        options=options,
        replaces=old,
        team_id=old.team_id,  # counted once, as its old workload (which holds the allocation)
        health=Workload.Health.UNKNOWN if healthcheck else Workload.Health.NONE,
    )


def workload_replaced(*, workload_id: int, note: str = "") -> list[int]:
    """The new container runs (healthy where it is checked) and the old one was removed: the old row
    goes — its allocation now the new one's — and the next replacement of the batch may start.
    Returns the ids of the replacements to start now."""
    with transaction.atomic():
        w = _locked(workload_id)
        if w is None or w.replaces_id is None or w.state not in Workload.OBSERVED:
            return []
        old = Workload.objects.select_for_update(of=("self",)).select_related("node").get(pk=w.replaces_id)
        ids = {"old": {"id": old.pk, "name": old.name, "container_id": old.container_id}}
        ids["new"] = {
            "id": w.pk,
            "name": w.name,
            "container_id": w.container_id,
            **({"note": note} if note else {}),
        }
        audit(SYSTEM, Action.WORKLOAD_REPLACED, w, pod=w.pod, before=ids["old"], after=ids["new"])
        sync.push(deletes=sync.workload_all_keys(old))
        Workload.objects.filter(pk=w.pk).update(replaces=None)  # it holds the allocation from now on
        old.delete()  # not released: the allocation stays, now the new row's
        w.replaces_id = None
        deployment_progress(w.deployment_id, ok=True)
        return _next(w.deployment_id)


def _next(deployment_id: int | None) -> list[int]:
    """One more replacement of a running deployment, if one waits (the batch keeps its size)."""
    d = Deployment.objects.filter(pk=deployment_id or 0, state=Deployment.State.RUNNING).first()
    if d is None:
        return []
    nxt = list(
        Workload.objects.filter(deployment=d, state=Workload.State.PENDING, task_id="")
        .order_by("node__name", "seq", "pk")
        .values_list("pk", flat=True)[:1]
    )
    Workload.objects.filter(pk__in=nxt).update(task_id="sent")  # sent once: not again by the next success
    queue.enqueue_each("agents.replace_workload", [(pk,) for pk in nxt])
    return nxt


def workload_replace_failed(*, workload_id: int, error: str, restored: bool) -> Workload | None:
    """The replacement failed (its container, if any, was removed); `restored`: the old one runs
    again. The row says why; the deployment counts it failed and stops there: the replacements not
    begun are not made."""
    with transaction.atomic():
        w = _locked(workload_id)
        if w is None or w.state == Workload.State.FAILED:
            return None
        if w.replaces_id is None and w.state in Workload.OBSERVED:  # swapped already: not failed
            return None
        sync.push(deletes=sync.workload_all_keys(w))
        _idle(Workload.objects.filter(pk=w.replaces_id or 0))
        w.state, w.error = Workload.State.FAILED, error[:2000]
        w.save(update_fields=["state", "error", "updated_at"])
        old = Workload.objects.filter(pk=w.replaces_id or 0).values_list("name", flat=True).first()
        after = {"error": w.error, "old": old, "restored": restored}
        audit(SYSTEM, Action.WORKLOAD_REPLACE_FAILED, w, pod=w.pod, after=after)
        deployment_progress(w.deployment_id, ok=False)
        _stop_the_rest(w.deployment_id, f"not replaced: {w.name} failed before it")
    return w


def _stop_the_rest(deployment_id: int | None, why: str) -> None:
    """The replacements not begun are not made (they held nothing: their old workloads stay)."""
    pending = Workload.objects.filter(deployment_id=deployment_id or 0, state=Workload.State.PENDING)
    _idle(Workload.objects.filter(pk__in=pending.exclude(replaces=None).values("replaces")))
    n = pending.update(state=Workload.State.FAILED, error=why)
    if n:
        deployment_progress(deployment_id, ok=False, n=n)


def _idle(old: QuerySet[Workload]) -> None:
    """Old workloads whose replacement will not happen: no longer busy (they run or stop as before)."""
    old.filter(action=REPLACING).update(action="", task_id="")


def was_running(old: Workload) -> bool:
    """Whether the old workload ran before its replacement stopped it (for a worker taking over)."""
    if old.action == REPLACING and old.task_id.startswith(f"{REPLACING}:"):
        return old.task_id == f"{REPLACING}:{Workload.State.RUNNING}"
    return old.state == Workload.State.RUNNING


def replacements_stuck(*, older_than: int) -> list[Workload]:
    """Replacements that run but were never swapped in (their worker died after starting them)."""
    cutoff = timezone.now() - timedelta(seconds=older_than)
    return list(
        Workload.objects.filter(
            state__in=Workload.OBSERVED, replaces__isnull=False, updated_at__lt=cutoff
        ).select_related("node", "pod")
    )
