"""Eru's dissociate: forget a workload and keep its container. The allocation goes back to the node,
the row and its etcd keys go; the container is remembered (Dissociated), because Docker cannot drop
its ERU=1 label and reconcile would otherwise remove it as an orphan."""

from __future__ import annotations

from django.db import transaction

from clusters import permissions, sync
from clusters.errors import state_refused
from clusters.models import AuditEvent, Dissociated, Node, Workload
from clusters.services._common import Actor, audit, invalid
from clusters.services.workloads import release

MAX_AT_ONCE = 1000


def workload_dissociate(*, actor: Actor, workloads: list[Workload]) -> list[Dissociated]:
    """Dissociate each workload (running or stopped, with a container) in one transaction: all of
    them or, when one cannot be, none. Busy rows (a worker acts on them) are refused."""
    if not workloads:
        raise invalid("ids", "ids: give at least one workload (or a node)")
    if len(workloads) > MAX_AT_ONCE:
        raise invalid("ids", f"ids: at most {MAX_AT_ONCE} workloads at once, {len(workloads)} given")
    for pod in {w.pod_id: w.pod for w in workloads}.values():
        permissions.require_deploy(actor.user, pod)
    done: list[Dissociated] = []
    with transaction.atomic():
        # The rows, then (each release) their node's: the lock order of every release.
        rows = (
            Workload.objects.select_for_update(of=("self",))
            .select_related("pod", "node")
            .filter(pk__in=[w.pk for w in workloads])
            .order_by("pk")
        )
        found = list(rows)
        if len(found) != len({w.pk for w in workloads}):
            gone = {w.pk for w in workloads} - {w.pk for w in found}
            raise invalid("ids", f"ids: no such workload {', '.join(map(str, sorted(gone)))}")
        for w in found:
            if w.state not in Workload.OBSERVED or not w.container_id or w.action:
                why = f"busy (a {w.action} in flight)" if w.action else w.state
                raise state_refused(
                    "ids", f"workload {w.name} is {why}; only running or stopped ones dissociate"
                )
            if w.lambda_run_id:
                raise state_refused("ids", f"workload {w.name} is a lambda's; it is removed when it ends")
            if w.borrows:
                raise state_refused(
                    "ids", f"workload {w.name} is replacing #{w.replaces_id}; it is not swapped in yet"
                )
            release(w)
            done.append(
                Dissociated.objects.create(
                    node=w.node, container_id=w.container_id, name=w.name, app=w.app, entrypoint=w.entrypoint
                )
            )
            after = {"container_id": w.container_id, "node": w.node.name, "released": True}
            audit(
                actor,
                AuditEvent.Action.WORKLOAD_DISSOCIATE,
                w,
                pod=w.pod,
                before={"state": w.state},
                after=after,
            )
            sync.push(deletes=sync.workload_all_keys(w))
            w.delete()
    return done


def dissociation_candidates(node: Node) -> list[Workload]:
    """Eru's `dissociate --node N`: every running or stopped workload of the node."""
    return list(
        Workload.objects.filter(node=node, state__in=Workload.OBSERVED, lambda_run__isnull=True)
        .exclude(container_id="")
        .select_related("pod", "node")
    )
