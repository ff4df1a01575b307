"""The workload lifecycle: creation and control claims, reports from workers, control, removal."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

import scheduling
from clusters import etcd, permissions, queue, selectors, sync
from clusters.errors import state_refused
from clusters.models import AuditEvent, Deployment, Node, Workload
from clusters.services._common import SYSTEM, Actor, audit, invalid
from clusters.services.nodes import set_usage

Action = AuditEvent.Action
CONTROL_ACTIONS = ("start", "stop", "restart")
_REQUESTED = {
    "start": Action.WORKLOAD_START,
    "stop": Action.WORKLOAD_STOP,
    "restart": Action.WORKLOAD_RESTART,
}
_SEEN = {Workload.State.RUNNING: Action.WORKLOAD_STARTED, Workload.State.STOPPED: Action.WORKLOAD_STOPPED}


def _locked(workload_id: int) -> Workload | None:
    """The workload row, locked for this transaction (only its own row), with pod and node."""
    return (
        Workload.objects.select_for_update(of=("self",))
        .select_related("pod", "node")
        .filter(pk=workload_id)
        .first()
    )


def release(w: Workload) -> None:
    """Give a workload's allocation back to its node (caller holds the transaction). A replacement
    whose old workload is still there holds none: that one does."""
    if w.borrows:
        return
    node = Node.objects.select_for_update().get(pk=w.node_id)
    used = scheduling.release(selectors.node_resources(node), selectors.request_of(w), w.cpu_map)
    set_usage(node, *used)


def deployment_progress(deployment_id: int | None, *, ok: bool, n: int = 1) -> None:
    """`n` more of the deployment's workloads done (or failed); it ends with its last one."""
    if deployment_id is None:
        return
    field = "succeeded" if ok else "failed"
    Deployment.objects.filter(pk=deployment_id).update(**{field: F(field) + n})
    d = Deployment.objects.select_for_update().get(pk=deployment_id)
    if d.state == Deployment.State.RUNNING and d.done_count >= d.total:
        if d.failed == 0:
            d.state = Deployment.State.DONE
        else:
            d.state = Deployment.State.FAILED if d.succeeded == 0 else Deployment.State.PARTIAL
        d.finished_at = timezone.now()
        d.save(update_fields=["state", "finished_at"])


def workload_claim(*, workload_id: int, task_id: str, stale_after: int, worker: str = "") -> Workload | None:
    """Claim a workload for creation, exclusively: a pending one is claimed by this task; a claimed
    one only by the same task again (a retry or redelivery, which finds its container by name), or
    by any task once the claim is older than `stale_after` seconds or lost (its worker died:
    workload_collect_stale empties it). Every attempt renews the claim, so its age measures one
    attempt, not a whole chain of retries. `worker`: the claiming worker's hostname (claimed_by).
    None: not ours."""
    now = timezone.now()
    creating = Workload.objects.filter(pk=workload_id, state=Workload.State.CREATING)
    stale = Q(claimed_at__lt=now - timedelta(seconds=stale_after)) | Q(claimed_at__isnull=True)
    claim = {"task_id": task_id, "claimed_at": now, "claimed_by": worker}
    claimed = (
        Workload.objects.filter(pk=workload_id, state=Workload.State.PENDING).update(
            state=Workload.State.CREATING, **claim
        )
        or creating.filter(task_id=task_id).update(**claim)
        or creating.filter(stale).update(**claim)
    )
    return Workload.objects.select_related("pod", "node").get(pk=workload_id) if claimed else None


def _seen_running(w: Workload, running: bool, exit_code: int | None = None) -> None:
    """What the worker saw of the container it just acted on: the observed status, which the sweep
    then finds unchanged (so the portal's own actions are no observed transitions)."""
    status = Workload.Status.RUNNING if running else Workload.Status.EXITED
    if status != w.status:
        w.status, w.status_since = status, timezone.now()
    w.exit_code = None if running else exit_code
    if not w.healthcheck:
        w.health = Workload.Health.NONE
    elif not running:
        w.health = Workload.Health.UNHEALTHY
    elif w.health != Workload.Health.HEALTHY:
        w.health = Workload.Health.UNKNOWN  # until a check says


_SEEN_FIELDS = ["status", "status_since", "exit_code", "health"]


def workload_started(
    *,
    workload_id: int,
    container_id: str,
    networks: dict[str, str],
    ports: list[dict[str, Any]] | None = None,
    adopted: bool = False,
) -> Workload | None:
    """A worker made the workload's container and it runs: the row says so, the deployment counts it.
    `adopted`: reconcile found the running container of a creation whose worker died mid-way."""
    with transaction.atomic():
        w = _locked(workload_id)
        if w is None or w.state != Workload.State.CREATING:
            return w
        w.state = Workload.State.RUNNING
        w.container_id = container_id
        w.networks = networks
        w.ports = ports or []
        w.error = ""
        _seen_running(w, True)
        w.save(
            update_fields=["state", "container_id", "networks", "ports", "error", *_SEEN_FIELDS, "updated_at"]
        )
        if w.replaces_id is None:  # a replacement counts once its old workload is gone (replace.py)
            deployment_progress(w.deployment_id, ok=True)
        after = {"container_id": container_id, "node": w.node.name}
        action = Action.WORKLOAD_ADOPTED if adopted else Action.WORKLOAD_CREATED
        audit(SYSTEM, action, w, pod=w.pod, after=after)
        sync.push({**sync.workload_keys(w), **sync.workload_status_keys(w)})
    return w


def workload_failed(*, workload_id: int, error: str, task_id: str | None = None) -> Workload | None:
    """Creation failed for good: release the allocation and say why on the row. With `task_id`,
    only while that task still holds the creation claim (another may have taken it over). The row
    failed now, or None: it was no longer being created (its container, if any, is not the
    caller's to remove)."""
    with transaction.atomic():
        w = _locked(workload_id)
        if w is None or w.state not in (Workload.State.PENDING, Workload.State.CREATING):
            return None
        if task_id is not None and w.task_id != task_id:
            return None
        release(w)
        w.state = Workload.State.FAILED
        w.error = error[:2000]
        w.cpu_map = {}
        w.save(update_fields=["state", "error", "cpu_map", "updated_at"])
        deployment_progress(w.deployment_id, ok=False)
        audit(SYSTEM, Action.WORKLOAD_FAILED, w, pod=w.pod, after={"error": w.error, "node": w.node.name})
    return w


def workload_control(*, actor: Actor, workload: Workload, action: str) -> Workload:
    """Ask for a start, stop or restart. The request carries a task id of its own: the worker's
    message claims it once (workload_control_claim), so a message delivered twice acts once."""
    permissions.require_deploy(actor.user, workload.pod)
    if action not in CONTROL_ACTIONS:
        raise invalid("action", f"unknown control type {action!r}; use one of {', '.join(CONTROL_ACTIONS)}")
    if workload.state not in (Workload.State.RUNNING, Workload.State.STOPPED):
        raise state_refused(
            "action", f"workload {workload.name} is {workload.state}; only running or stopped ones"
        )
    _require_not_replacing(workload, "action")
    task_id = uuid.uuid4().hex
    with transaction.atomic():
        Workload.objects.filter(pk=workload.pk).update(
            action=action, task_id=task_id, claimed_at=None, updated_at=timezone.now()
        )
        workload.action, workload.task_id = action, task_id
        audit(actor, _REQUESTED[action], workload, pod=workload.pod, before={"state": workload.state})
        queue.enqueue("agents.control_workload", workload.pk, action, task_id=task_id)
    return workload


def workload_control_claim(
    *,
    workload_id: int,
    action: str,
    task_id: str,
    stale_after: float,
    held: datetime | None = None,
    worker: str = "",
) -> Workload | None:
    """The worker's claim on a control request: only the message of the request still asked for,
    and only one copy of it (reconcile may have sent it again, under the same task id): a claimed
    request is claimed again only by its holder — `held`, the claim time it got, is its token (a retry
    of the claiming message carries it; so does a renewal between hook commands) — or by anyone once
    the claim is older than `stale_after` seconds or lost (its worker died: workload_resend_actions
    empties it). The workload, whose claimed_at is the holder's new token; `worker`: the holder's
    hostname (claimed_by). None: nothing to do — done already, replaced by a newer one, or another
    copy carries it out."""
    now = timezone.now()
    if held is not None:
        mine = Q(claimed_at=held)
    else:
        mine = Q(claimed_at__isnull=True) | Q(claimed_at__lt=now - timedelta(seconds=stale_after))
    claimed = Workload.objects.filter(
        mine,
        pk=workload_id,
        action=action,
        task_id=task_id,
        state__in=(Workload.State.RUNNING, Workload.State.STOPPED),
    ).update(claimed_at=now, claimed_by=worker)
    return Workload.objects.select_related("pod", "node").get(pk=workload_id) if claimed else None


def workload_record_state(
    *,
    workload_id: int,
    running: bool,
    error: str = "",
    task_id: str | None = None,
    exit_code: int | None = None,
    seen: bool = True,
) -> None:
    """Workers report the container's state after a control action; a change is audited. With
    `task_id`, the control request it carried out is done (unless a newer one replaced it). `seen`:
    the worker saw the container (not after an error), so its observed status is recorded too."""
    state = Workload.State.RUNNING if running else Workload.State.STOPPED
    with transaction.atomic():
        w = _locked(workload_id)
        if w is None or w.state not in Workload.OBSERVED:
            return
        before = w.state
        w.state, w.error = state, error[:2000]
        if task_id is not None and w.task_id == task_id:
            w.action, w.task_id, w.claimed_at = "", "", None
        if seen:
            _seen_running(w, running, exit_code)
            sync.push(sync.workload_status_keys(w))
        fields = ["state", "error", "action", "task_id", "claimed_at", *_SEEN_FIELDS, "updated_at"]
        w.save(update_fields=fields)
        if before != state:
            audit(SYSTEM, _SEEN[state], w, pod=w.pod, before={"state": before}, after={"state": state})


def workload_remove_failed(*, workload_id: int, error: str) -> None:
    """Removing the container failed for now: say why on the row (reconcile tries again)."""
    Workload.objects.filter(pk=workload_id, state=Workload.State.REMOVING).update(
        error=error[:2000], updated_at=timezone.now()
    )


def workload_remove(*, actor: Actor, workload: Workload, force: bool = False) -> Workload:
    """Mark for removal; the worker removes the container, then workload_removed releases. On a node
    that is down (its last look failed and its heartbeat expired), or with `force`, the row and its
    allocation go at once: the container, if any, is an orphan then, which reconcile removes when
    the node answers again. A node that failed one look only is not down yet: the worker tries."""
    permissions.require_deploy(actor.user, workload.pod)
    with transaction.atomic():
        w = _locked(workload.pk)
        if w is None:
            raise invalid("workload", f"workload {workload.name} no longer exists")
        if w.state in (Workload.State.PENDING, Workload.State.CREATING):
            raise state_refused(
                "workload", f"workload {w.name} is still being created; remove it once it is running"
            )
        before = {"state": w.state, "container_id": w.container_id}
        if w.state != Workload.State.FAILED:
            _require_not_replacing(w, "workload")
        if w.state == Workload.State.FAILED:  # nothing in Docker, nothing held
            audit(actor, Action.WORKLOAD_REMOVE, w, pod=w.pod, before=before)
            w.delete()
            return w
        if force or _down(w.node):
            why = "forced" if force else f"node {w.node.name} is down ({w.node.last_error[:200]})"
            after = {"released": True, "container": f"left for reconcile to remove: {why}"}
            audit(actor, Action.WORKLOAD_REMOVE, w, pod=w.pod, before=before, after=after)
            _drop(w)
            return w
        audit(actor, Action.WORKLOAD_REMOVE, w, pod=w.pod, before=before)
        if w.state != Workload.State.REMOVING:
            w.state = Workload.State.REMOVING
            w.save(update_fields=["state", "updated_at"])
        queue.enqueue("agents.remove_workload", w.pk)
    return w


def _require_not_replacing(w: Workload, field: str) -> None:
    """A workload being replaced, or a replacement not swapped in yet, is the replace's to finish:
    cancel its deployment (or wait) first."""
    if w.action == "replace" or w.borrows:
        what = "is being replaced" if w.action == "replace" else f"is replacing workload #{w.replaces_id}"
        raise state_refused(field, f"workload {w.name} {what}; wait for that replace to end, or cancel it")


def _down(node: Node) -> bool:
    """The node's engine does not answer and its heartbeat has expired (so for 3 heartbeat
    intervals at least). When etcd cannot tell, the node is not taken for down."""
    if not node.last_error:
        return False
    try:
        return node.name not in etcd.alive_nodes(strict=True)
    except etcd.EtcdError:
        return False


def _drop(w: Workload) -> None:
    """The row goes with its allocation and its etcd keys (caller holds the transaction)."""
    release(w)
    sync.push(deletes=sync.workload_all_keys(w))
    w.delete()


def workload_removed(*, workload_id: int) -> None:
    """The container is gone: release the allocation, drop the row and its etcd keys."""
    with transaction.atomic():
        w = _locked(workload_id)
        if w is None or w.state != Workload.State.REMOVING:
            return
        audit(SYSTEM, Action.WORKLOAD_REMOVED, w, pod=w.pod, before={"container_id": w.container_id})
        _drop(w)


def container_orphan_removed(*, node: Node, name: str, container_id: str, why: str) -> AuditEvent:
    """Reconcile removed an ERU container that no row holds (its workload gone, a crash between
    making it and recording it, one made by hand): audited, the container being the target."""
    return AuditEvent.objects.create(
        actor_name=SYSTEM.principal,
        via=SYSTEM.via,
        action=Action.WORKLOAD_REMOVED,
        target_type="container",
        target_id=container_id[:64],
        target_name=name[:200],
        pod=node.pod,
        pod_name=node.pod.name,
        before={"container_id": container_id, "node": node.name},
        after={"orphan": why},
    )


# s: a claim this old whose worker's liveness key (agents/liveness.py) is gone is lost: the worker
# died holding it. Past the key's lease (agents.liveness.TTL), so a worker seen a moment ago is not.
CLAIM_GRACE = 30


def lost_claims(now: datetime) -> Q:
    """The claims at least CLAIM_GRACE seconds old of workers whose liveness key in etcd is gone (none
    when etcd cannot tell: then only a claim's age says it is lost). Claims of unknown workers
    (claimed_by "") are never lost this way."""
    try:
        live = etcd.live_workers()
    except etcd.EtcdError:
        return Q(pk__in=[])
    return (
        Q(claimed_at__lt=now - timedelta(seconds=CLAIM_GRACE))
        & ~Q(claimed_by="")
        & ~Q(claimed_by__in=sorted(live))
    )


def workload_collect_stale(*, pending_after: int, claim_after: int) -> tuple[list[int], list[int]]:
    """Work whose message was lost or whose worker died: (to create, to remove). Pending rows
    untouched for `pending_after` seconds, creation claims older than `claim_after` or lost (their
    worker's liveness key is gone: lost_claims), and removals still unfinished after `pending_after`.
    Pending ones are marked as re-sent; lost claims are emptied, so the message sent again claims."""
    now = timezone.now()
    # A replacement waiting for its turn in its batch (no message sent yet) is not a lost message.
    pending = Q(state=Workload.State.PENDING, updated_at__lt=now - timedelta(seconds=pending_after)) & ~Q(
        replaces__isnull=False, task_id=""
    )
    lost = Q(state=Workload.State.CREATING) & lost_claims(now)
    stale_claim = Q(state=Workload.State.CREATING) & (
        Q(claimed_at__lt=now - timedelta(seconds=claim_after)) | Q(claimed_at__isnull=True)
    )
    create = list(Workload.objects.filter(pending | stale_claim | lost).values_list("pk", flat=True))
    # Re-sent now: not again at the next run unless another `pending_after` passes.
    Workload.objects.filter(pk__in=create, state=Workload.State.PENDING).update(updated_at=now)
    Workload.objects.filter(lost, pk__in=create).update(claimed_at=None, claimed_by="")
    remove = Workload.objects.filter(
        state=Workload.State.REMOVING, updated_at__lt=now - timedelta(seconds=pending_after)
    ).values_list("pk", flat=True)
    return create, list(remove)


def workload_resend_actions(*, unclaimed_after: float, claim_after: float) -> list[int]:
    """Start/stop/restart requests whose message was lost — the broker was down when they were asked,
    or lost the message — or whose worker died: none claimed within `unclaimed_after` seconds, or a
    claim older than `claim_after`. Each is sent again under its own task id (so whichever copy comes
    first claims it, and the others find it claimed or done: it runs once), and not again before
    another `unclaimed_after`. The ids of the workloads whose request went again."""
    now = timezone.now()
    quiet = Q(updated_at__lt=now - timedelta(seconds=unclaimed_after))
    lost = lost_claims(now)
    dead = Q(claimed_at__isnull=True) | Q(claimed_at__lt=now - timedelta(seconds=claim_after)) | lost
    with transaction.atomic():
        asked = Workload.objects.exclude(action="")  # the index's condition (workload_action_asked)
        found = asked.filter(quiet & dead, action__in=CONTROL_ACTIONS, state__in=Workload.OBSERVED)
        rows = list(found.values_list("pk", "action", "task_id"))
        if rows:
            ids = [pk for pk, *_ in rows]
            asked.filter(lost, pk__in=ids).update(claimed_at=None, claimed_by="")  # the copy claims
            Workload.objects.filter(pk__in=ids).update(updated_at=now)
            calls = [(pk, action) for pk, action, _ in rows]
            queue.enqueue_each("agents.control_workload", calls, task_ids=[t for *_, t in rows])
    return [pk for pk, *_ in rows]


def workload_clear_stale_actions(*, older_than: int) -> int:
    """Forget start/stop/restart requests that can no longer be carried out (the workload is no
    longer running or stopped: being removed) so that pages stop polling. The others are sent again
    until a worker carries them out (workload_resend_actions)."""
    cutoff = timezone.now() - timedelta(seconds=older_than)
    # Not a replace's mark: it lasts as long as the replace (its batch may wait its turn for long).
    stale = Workload.objects.filter(action__in=CONTROL_ACTIONS, updated_at__lt=cutoff).exclude(
        state__in=Workload.OBSERVED
    )
    return stale.update(action="", task_id="", claimed_at=None)
