"""Cancelling a deployment, by an operator or by its timeout: the creations no worker began yet stop
and give back what they hold; the containers already made (or being made) stay, and the deployment
says it was cancelled and why. A lambda's deployment is cancelled as its lambda is (killed, removed)."""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from clusters import permissions
from clusters.models import AuditEvent, Deployment, LambdaRun, Workload
from clusters.services._common import SYSTEM, Actor, audit, invalid
from clusters.services.lambdas import lambda_cancel
from clusters.services.workloads import release


def deployment_cancel(*, actor: Actor, deployment: Deployment) -> Deployment:
    """Cancel a running deployment (refused once it has ended)."""
    if deployment.pod is None:  # its pod was removed: an administrator's
        permissions.require_admin(actor.user)
    else:
        permissions.require_deploy(actor.user, deployment.pod)
    who = getattr(actor.user, "username", "") or "the system"
    return _cancel(
        deployment.pk, actor, f"cancelled by {who}", AuditEvent.Action.DEPLOYMENT_CANCEL, strict=True
    )


def _cancel(pk: int, actor: Actor, why: str, action: AuditEvent.Action, *, strict: bool) -> Deployment:
    run = LambdaRun.objects.filter(deployment_id=pk).select_related("deployment").first()
    if run is not None:  # its workers kill and remove; the run (and its deployment) end with them
        if run.deployment.is_final and strict:
            raise invalid("deployment", f"deployment {pk} has ended already ({run.deployment.state})")
        if not run.cancel_requested and not run.deployment.is_final:
            lambda_cancel(actor=actor, run=run)
        return Deployment.objects.get(pk=pk)
    with transaction.atomic():
        d = Deployment.objects.select_for_update(of=("self",)).select_related("pod").get(pk=pk)
        if d.is_final:
            if strict:
                raise invalid("deployment", f"deployment {d.pk} has ended already ({d.state})")
            return d
        stopped = _stop_pending(d, why)
        d.state, d.error, d.finished_at = Deployment.State.CANCELLED, why, timezone.now()
        d.save(update_fields=["state", "error", "finished_at"])
        after = {"why": why, "stopped": stopped, "succeeded": d.succeeded, "failed": d.failed}
        audit(actor, action, d, pod=d.pod, after=after)
    return d


def _stop_pending(d: Deployment, why: str) -> list[str]:
    """The deployment's rows that no worker claimed: failed, their allocation given back (a
    replacement's is its old workload's, which keeps it). Counted as failed."""
    pending = list(
        Workload.objects.select_for_update(of=("self",))
        .select_related("node")
        .filter(deployment=d, state=Workload.State.PENDING)
        .order_by("node__name", "pk")
    )
    olds = [w.replaces_id for w in pending if w.replaces_id]
    Workload.objects.filter(pk__in=olds, action="replace").update(action="", task_id="")  # not busy now
    for w in pending:
        release(w)
        w.state, w.error, w.cpu_map = Workload.State.FAILED, f"not created: {why}", {}
        w.save(update_fields=["state", "error", "cpu_map", "updated_at"])
    if pending:
        Deployment.objects.filter(pk=d.pk).update(failed=F("failed") + len(pending))
        d.refresh_from_db(fields=["failed", "succeeded"])
    return [w.name for w in pending]


def deployment_expire() -> list[int]:
    """Cancel the running deployments whose timeout has passed (the beat's expire-deployments)."""
    now = timezone.now()
    due = [
        (pk, timeout)
        for pk, created, timeout in Deployment.objects.filter(
            ~Q(timeout=None), state=Deployment.State.RUNNING
        ).values_list("pk", "created_at", "timeout")
        if timeout and created + timedelta(seconds=timeout) <= now
    ]
    for pk, timeout in due:
        _cancel(
            pk, SYSTEM, f"timed out after {timeout} s", AuditEvent.Action.DEPLOYMENT_TIMEOUT, strict=False
        )
    return [pk for pk, _ in due]
