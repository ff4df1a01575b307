"""Eru's realloc: a running workload's cpu and memory, changed live. Re-planned under the node's row
lock with scheduling's realloc (the old allocation back first, the old cores preferred), applied
with `docker update` in the same transaction: a refusal from Docker rolls the whole change back, so
the row never says what the container does not have."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction

import scheduling
from clusters import permissions, quotas, selectors, sync
from clusters.errors import state_refused
from clusters.models import AuditEvent, Node, Workload
from clusters.services._common import Actor, audit, invalid
from clusters.services.nodes import set_usage
from clusters.services.quotas import require_quota
from engine import docker

FIELDS = ("cpu_request", "cpu_limit", "memory_request", "memory_limit")
UPDATE_TIMEOUT = 10  # s: the node's row is locked while Docker answers
QUOTA_FIELDS = {"cpu": "cpu_request", "memory": "memory_request", "workloads": "cpu_request"}


@dataclass(frozen=True)
class Change:
    """What to change: deltas (Eru's way, may be negative) or, with `absolute`, the new values;
    None leaves a field as it is. `cpu_bind`: True binds, False unbinds, None keeps."""

    cpu_request: float | None = None
    cpu_limit: float | None = None
    memory_request: int | None = None
    memory_limit: int | None = None
    cpu_bind: bool | None = None
    absolute: bool = False

    def deltas(self, old: scheduling.ResourceRequest) -> dict[str, float | int]:
        out: dict[str, float | int] = {}
        for name in FIELDS:
            value = getattr(self, name)
            if value is None:
                out[name] = 0
            else:
                out[name] = value - getattr(old, name) if self.absolute else value
        return out


def _resources(w: Workload) -> dict[str, object]:
    return {
        "cpu_request": w.cpu_request,
        "cpu_limit": w.cpu_limit,
        "memory_request": w.memory_request,
        "memory_limit": w.memory_limit,
        "cpu_bind": w.cpu_bind,
        "cpu_map": w.cpu_map,
    }


def _refusal(exc: scheduling.SchedulingError, node: Node, w: Workload, deltas: dict[str, float | int]) -> str:
    """Eru's message with the numbers: what the node has free once this workload's own is back."""
    free_cpu = sum(node.cpu_map.values()) / node.share_base - node.used_cpu + w.cpu_request
    free_memory = node.memory - node.used_memory + w.memory_request
    cores = {c: p - node.used_cpu_map.get(c, 0) + w.cpu_map.get(c, 0) for c, p in node.cpu_map.items()}
    whole = sum(1 for pieces in cores.values() if pieces >= node.share_base)
    asked_cpu = w.cpu_request + float(deltas["cpu_request"])
    asked_memory = w.memory_request + int(deltas["memory_request"])
    return (
        f"{exc}: node {node.name} has {free_cpu:g} cpu ({whole} whole cores) and {free_memory} bytes of "
        f"memory free with this workload's own back; asked for cpu {asked_cpu:g} and memory {asked_memory}"
    )


def _short_of(node: Node, w: Workload, deltas: dict[str, float | int]) -> str:
    """The field a refusal names: memory when that is what the node lacks, else cpu."""
    free_memory = node.memory - node.used_memory + w.memory_request
    return (
        "memory_request" if w.memory_request + int(deltas["memory_request"]) > free_memory else "cpu_request"
    )


def workload_realloc(*, actor: Actor, workload: Workload, change: Change) -> Workload:
    """Change the workload's request and limit; its node's usage follows exactly, and the share pool
    is remapped when bound cores changed. Refused, changing nothing, when the node cannot fit it or
    the growth would take the workload's team above its quota in the pod."""
    permissions.require_deploy(actor.user, workload.pod)
    with transaction.atomic():
        # The workload's row, then its node's: the order of every release (workloads.release).
        w = (
            Workload.objects.select_for_update(of=("self",))
            .select_related("pod", "node", "team")
            .get(pk=workload.pk)
        )
        node = Node.objects.select_for_update().get(pk=w.node_id)
        if w.state not in Workload.OBSERVED or not w.container_id:
            raise state_refused(
                "workload", f"workload {w.name} is {w.state}; realloc needs a running or stopped one"
            )
        if w.action:
            raise state_refused(
                "workload", f"workload {w.name} has a {w.action} in flight; try again when it is done"
            )
        if w.lambda_run_id:
            raise state_refused(
                "workload", f"workload {w.name} is a lambda's; its resources stay as they are"
            )
        if w.borrows:
            raise state_refused(
                "workload", f"workload {w.name} is replacing #{w.replaces_id}; realloc it once swapped in"
            )
        old = selectors.request_of(w)
        deltas = change.deltas(old)
        try:
            r = scheduling.realloc(
                selectors.node_resources(node),
                old,
                w.cpu_map,
                cpu_request=float(deltas["cpu_request"]),
                cpu_limit=float(deltas["cpu_limit"]),
                memory_request=int(deltas["memory_request"]),
                memory_limit=int(deltas["memory_limit"]),
                cpu_bind=change.cpu_bind,
            )
        except scheduling.InvalidRequest as exc:
            raise invalid(exc.field, str(exc)) from exc
        except scheduling.SchedulingError as exc:
            raise invalid(_short_of(node, w, deltas), _refusal(exc, node, w, deltas)) from exc
        new = quotas.Amount(r.request.cpu_request, r.request.memory_request)
        ask = quotas.realloc_ask(quotas.Amount(w.cpu_request, w.memory_request), new)
        require_quota(pod=w.pod, team=w.team, ask=ask, field=QUOTA_FIELDS)
        before = _resources(w)
        set_usage(node, r.used_cpu_map, r.used_cpu, r.used_memory)
        w.cpu_request, w.cpu_limit = r.request.cpu_request, r.request.cpu_limit
        w.memory_request, w.memory_limit = r.request.memory_request, r.request.memory_limit
        w.cpu_bind, w.cpu_map = r.request.cpu_bind, r.cpu_map
        pool = selectors.share_pool(node) if not r.cpu_map else []
        settings = scheduling.docker_update_settings(
            r.request, r.cpu_map, cores=selectors.engine_cores(node), share_pool=pool
        )
        try:
            docker.update(selectors.node_client(node, timeout=UPDATE_TIMEOUT), w.container_id, settings)
        except docker.DockerError as exc:
            raise invalid("workload", f"Docker refused the update of {w.name}: {exc}") from exc
        w.save(update_fields=[*FIELDS, "cpu_bind", "cpu_map", "updated_at"])
        audit(actor, AuditEvent.Action.WORKLOAD_REALLOC, w, pod=w.pod, before=before, after=_resources(w))
        sync.push(sync.workload_keys(w))
    return w
