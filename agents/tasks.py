"""Celery tasks: take ids, load rows, call one adapter function, report through clusters.services.

Every task is safe to run twice (claims are conditional updates; Docker creation is idempotent by
container name), so acks_late is on; only transient Docker errors are retried, with a cap."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import TypeVar

import docker as docker_sdk
from celery import Task, current_app, shared_task, signals
from django import db
from django.conf import settings
from django.utils import timezone

from agents import hooks, lambdas, reconcile, remap, replace, sweep, usage
from agents import liveness as _liveness  # noqa: F401 — connects the worker's liveness key (signals)
from clusters import etcd, metrics, selectors, services, sync
from clusters.models import Node, Workload
from engine import docker

log = logging.getLogger(__name__)
MAX_RETRIES = 5
# A creation claim older than this belongs to a dead worker: one attempt makes at most four Docker
# calls (create, start, reload, a cleanup), each bounded by the client timeout. (Celery's time
# limits are not enforced by the threads pool, so they cannot be relied on here.)
STALE_CLAIM = 4 * settings.ERU_DOCKER_TIMEOUT + 60
# A pending row or an unfinished removal untouched this long lost its message.
STALE_MESSAGE = 60
# A start/stop/restart no worker claimed within this long lost its message (asked while the broker was
# down, or lost by it): agents.resend_actions, every 5 s, sends it again.
STALE_ACTION = 10
T = TypeVar("T")
BoundTask = Task[..., None]  # what a bind=True task receives as `self`


def _retry_if_transient(
    task: BoundTask, exc: docker.DockerError, kwargs: dict[str, object] | None = None
) -> None:
    """Raise Celery's Retry (backing off 0.5 s, 1 s, … up to 10 s) while the error may pass and
    retries are left; return for the caller to record a permanent failure otherwise. `kwargs`: the
    retry's arguments, when it must carry more than the first message did (a claim's token)."""
    retries = task.request.retries
    if not exc.permanent and retries < MAX_RETRIES:
        countdown = min(0.5 * 2**retries, 10.0)
        if kwargs is not None:
            raise task.retry(exc=exc, countdown=countdown, args=(), kwargs=kwargs) from exc
        raise task.retry(exc=exc, countdown=countdown) from exc


def _attempt(
    task: BoundTask,
    what: str,
    call: Callable[[], T],
    fail: Callable[[str], object],
    retry_kwargs: Callable[[], dict[str, object]] | None = None,
) -> T | None:
    """One Docker step of a task: its result, or None once `fail` has recorded why on the row.
    A transient Docker error is retried first; anything that is not Docker's doing (TLS material
    that no longer decrypts, a bug) fails the row too, so that no row is stranded mid-way."""
    try:
        return call()
    except docker.DockerError as exc:
        _retry_if_transient(task, exc, retry_kwargs() if retry_kwargs else None)
        fail(str(exc))
    except Exception as exc:
        log.exception("%s failed", what)
        fail(f"{exc.__class__.__name__}: {exc}")
    return None


@shared_task(name="agents.create_workload", bind=True, acks_late=True, max_retries=MAX_RETRIES)
def create_workload(self: BoundTask, workload_id: int) -> None:
    task_id = self.request.id or ""
    kind = Workload.objects.filter(pk=workload_id).values_list("lambda_run", "replaces").first()
    if kind and kind[0] is not None:  # a lambda's, re-sent by reconcile
        run_lambda.delay(workload_id)
        return
    if kind and kind[1] is not None:  # a replacement, re-sent by reconcile
        replace_workload.delay(workload_id)
        return
    worker = _worker(self)
    w = services.workload_claim(
        workload_id=workload_id, task_id=task_id, stale_after=STALE_CLAIM, worker=worker
    )
    if w is None:
        return
    spec = selectors.container_spec(w)
    info = _attempt(
        self,
        f"creating {w.name}",
        lambda: docker.create_and_start(selectors.node_client(w.node), **spec),
        lambda error: _fail(w, task_id, error),
    )
    if info is None:
        return
    failed = None
    if w.options.get("hook"):  # hooks may run for minutes: a longer timeout, the claim renewed between

        def renew() -> None:
            services.workload_claim(workload_id=w.pk, task_id=task_id, stale_after=STALE_CLAIM, worker=worker)

        failed = hooks.hooked(_hook_client(w.node), info.id, w.options, "after_start", w.name, renew)
    if failed:  # a forced after_start failed: so does the workload, and its container goes
        _fail(w, task_id, failed)
        return
    started = services.workload_started(
        workload_id=workload_id, container_id=info.id, networks=info.networks, ports=info.ports
    )
    if started is not None:
        metrics.DEPLOY_SECONDS.observe((timezone.now() - started.created_at).total_seconds())


@shared_task(name="agents.create_workloads", acks_late=True, ignore_result=True)
def create_workloads(workload_ids: list[int]) -> None:
    """A deployment's creations in one message (clusters.services.deploy sends one per few hundred
    workloads, not one per workload): each one still pending is handed on as its own
    agents.create_workload message, through one broker connection, so that the workers make the
    containers in parallel and each creation keeps its own claim and retries. Safe to run twice: a
    second copy hands on again the rows still pending, and each creation's claim by its row makes the
    extra message do nothing; a lost message leaves its rows pending, for reconcile to send again one
    by one."""
    pending = Workload.objects.filter(pk__in=list(workload_ids), state=Workload.State.PENDING)
    ids = list(pending.order_by("pk").values_list("pk", flat=True))
    if not ids:
        return
    with current_app.producer_or_acquire() as producer:
        for workload_id in ids:
            create_workload.apply_async(args=(workload_id,), producer=producer)


@shared_task(name="agents.run_lambda", bind=True, acks_late=True)
def run_lambda(self: BoundTask, workload_id: int) -> None:
    """A lambda's workload: run to its end, then gone (agents/lambdas.py). Its own queue (lambda)."""
    task_id = self.request.id or ""
    w = services.workload_claim(
        workload_id=workload_id, task_id=task_id, stale_after=STALE_CLAIM, worker=_worker(self)
    )
    if w is not None:
        lambdas.run(w, task_id)


@shared_task(name="agents.replace_workload", bind=True, acks_late=True)
def replace_workload(self: BoundTask, workload_id: int) -> None:
    """One replacement of a replace deployment (agents/replace.py): the old container stopped, the
    new one up, then the old one removed — or the old one back."""
    task_id = self.request.id or ""
    worker = _worker(self)
    w = services.workload_claim(
        workload_id=workload_id, task_id=task_id, stale_after=STALE_CLAIM, worker=worker
    )
    if w is None:
        return

    def renew() -> None:
        services.workload_claim(
            workload_id=workload_id, task_id=task_id, stale_after=STALE_CLAIM, worker=worker
        )

    replace.replace(w, renew)


def _worker(task: BoundTask) -> str:
    """The hostname of the worker running the task (claimed_by; agents/liveness.py keeps its key)."""
    return str(task.request.hostname or "")


def _hook_client(node: Node) -> docker_sdk.DockerClient:
    return selectors.node_client(node, timeout=hooks.HOOK_TIMEOUT)


def _fail(w: Workload, task_id: str, error: str) -> None:
    """Fail the row first, and only while this task holds the claim; then remove what it made.
    A task whose claim was taken over leaves the container to the task that now owns it."""
    if services.workload_failed(workload_id=w.pk, error=error, task_id=task_id) is not None:
        _remove_quietly(w.node, w.name)


def _remove_quietly(node: Node, name: str) -> None:
    """A failed creation leaves no container behind, even one made by an earlier attempt."""
    try:
        docker.remove(selectors.node_client(node), name)
    except Exception as exc:  # noqa: BLE001 — the reconcile task removes what is left
        log.warning("could not remove %s on %s after a failed creation: %s", name, node.name, exc)


_CONTROL = {"start": docker.start, "stop": docker.stop, "restart": docker.restart}


@shared_task(name="agents.control_workload", bind=True, acks_late=True, max_retries=MAX_RETRIES)
def control_workload(self: BoundTask, workload_id: int, action: str, claim: str = "") -> None:
    """Carry out a start/stop/restart once: the request is claimed by this message's id, so the same
    message delivered again after it was done finds nothing to do, and a copy reconcile sent finds it
    claimed. `claim`: the claim's token (its time), which a retry of the claiming message carries."""
    task_id = self.request.id or ""
    worker = _worker(self)
    w = services.workload_control_claim(
        workload_id=workload_id, action=action, task_id=task_id, stale_after=STALE_CLAIM,
        held=datetime.fromisoformat(claim) if claim else None, worker=worker,
    )  # fmt: skip
    if w is None:
        return
    token = [w.claimed_at]  # the holder's: renewed between hook commands
    was_running = w.state == Workload.State.RUNNING

    def fail(error: str) -> None:
        services.workload_record_state(
            workload_id=w.pk, running=was_running, error=error, task_id=task_id, seen=False
        )

    operation = _CONTROL[action]
    client = selectors.node_client
    target = w.container_id or w.name

    def renew() -> None:  # a hook may run for minutes: the claim stays fresh, so it is not sent again
        again = services.workload_control_claim(
            workload_id=w.pk, action=action, task_id=task_id, stale_after=STALE_CLAIM, held=token[0],
            worker=worker,
        )  # fmt: skip
        if again is not None:
            token[0] = again.claimed_at

    def retry_kwargs() -> dict[str, object]:
        held = token[0]
        return {"workload_id": w.pk, "action": action, "claim": held.isoformat() if held else ""}

    if action in ("stop", "restart") and was_running:
        refused = hooks.hooked(_hook_client(w.node), target, w.options, "before_stop", w.name, renew)
        if refused:  # a forced before_stop failed: no stop
            fail(refused)
            return
    info = _attempt(
        self, f"{action} of {w.name}", lambda: operation(client(w.node), target), fail, retry_kwargs
    )
    if info is None:
        return
    error = ""
    if action in ("start", "restart") and info.status == "running":
        error = hooks.hooked(_hook_client(w.node), target, w.options, "after_start", w.name, renew) or ""
    services.workload_record_state(
        workload_id=w.pk, running=info.status == "running", task_id=task_id, exit_code=info.exit_code,
        error=error,
    )  # fmt: skip


@shared_task(name="agents.resend_actions", ignore_result=True)
def resend_actions() -> None:
    """Every 5 s (and with reconcile): the start/stop/restart requests whose message was lost, or
    whose worker died, go again — each under its request's task id, so one copy alone carries it out."""
    sent = services.workload_resend_actions(unclaimed_after=STALE_ACTION, claim_after=STALE_CLAIM)
    if sent:
        log.warning("control request(s) of workload(s) %s sent again (message lost)", sent)


@shared_task(name="agents.remove_workload", bind=True, acks_late=True, max_retries=MAX_RETRIES)
def remove_workload(self: BoundTask, workload_id: int) -> None:
    w = Workload.objects.select_related("node").filter(pk=workload_id, state=Workload.State.REMOVING).first()
    if w is None:
        return

    def fail(error: str) -> None:  # reconcile tries again
        services.workload_remove_failed(workload_id=workload_id, error=error)

    client = selectors.node_client
    removed = _attempt(
        self, f"removing {w.name}", lambda: docker.remove(client(w.node), w.container_id or w.name), fail
    )
    if removed is not None:
        services.workload_removed(workload_id=workload_id)


@shared_task(name="agents.sweep_nodes", ignore_result=True)
def sweep_nodes() -> None:
    """Every ERU_SWEEP_INTERVAL seconds: look at every node's containers (agents/sweep.py), record
    the transitions, renew the heartbeat of each node that answered."""
    looks = sweep.sweep()
    down = {lk.node.name: lk.error for lk in looks if lk.seen is None}
    if down:
        log.warning("sweep: unreachable nodes %s", down)


@shared_task(name="agents.poll_usage", ignore_result=True)
def poll_usage() -> None:
    """Every ERU_USAGE_INTERVAL seconds: the usage of the agentless nodes' workloads, into the history."""
    for polled in usage.poll():
        if polled.errors:
            log.warning("usage poll of %s: %s", polled.node, polled.errors)


@shared_task(name="agents.expire_deployments", ignore_result=True)
def expire_deployments() -> None:
    """Every 5 s: cancel the deployments whose timeout passed (their pending creations stop)."""
    for pk in services.deployment_expire():
        log.warning("deployment %s timed out", pk)


@shared_task(name="agents.prune_usage", ignore_result=True)
def prune_usage() -> None:
    services.usage_prune()


def reconcile_lock_name() -> str:
    """One lock per key space: two deployments sharing an etcd do not block each other."""
    return f"reconcile-etcd{settings.ERU_ETCD_PREFIX.replace('/', ':')}"


@shared_task(name="agents.reconcile_etcd", ignore_result=True)
def reconcile_etcd() -> None:
    """Repair drift between the DB and etcd; one run at a time across all workers."""
    lock = etcd.client().lock(reconcile_lock_name(), ttl=120)
    if not lock.acquire(timeout=0):
        return
    try:
        drift = sync.repair()
        if drift.count:
            log.warning("etcd drift repaired: %s", drift.summary())
    finally:
        try:
            lock.release()
        except Exception as exc:  # noqa: BLE001 — the lease expires by itself; keep the real error
            log.warning("could not release the reconcile lock: %s", exc)


MIRROR_RETRIES = 100  # backing off to every 3 s: about 5 minutes, then reconcile_etcd has them


@shared_task(name=sync.RETRY_TASK, bind=True, ignore_result=True, max_retries=MIRROR_RETRIES)
def mirror_retry(self: BoundTask, keys: list[str]) -> None:
    """Mirror keys etcd refused after a commit: written again from the rows as they are now (so an
    older value never lands over a newer one), 0.5 s, 1 s, 2 s, then every 3 s while etcd refuses."""
    try:
        sync.rewrite(keys)
    except etcd.EtcdError as exc:
        retries = self.request.retries
        if retries < MIRROR_RETRIES:
            raise self.retry(exc=exc, countdown=min(0.5 * 2**retries, 3.0)) from exc
        log.warning("etcd mirror: %d key(s) left to the repair task: %s", len(keys), exc)


@shared_task(name="agents.reconcile_containers", ignore_result=True)
def reconcile_containers() -> None:
    """Re-send work whose message was lost or whose worker died, then reconcile every reachable node
    with its rows (agents/reconcile.py), repairing what can be, in parallel."""
    create, remove = services.workload_collect_stale(pending_after=STALE_MESSAGE, claim_after=STALE_CLAIM)
    for workload_id in create:
        create_workload.delay(workload_id)
    for workload_id in remove:
        remove_workload.delay(workload_id)
    resend_actions()
    services.workload_clear_stale_actions(older_than=STALE_CLAIM)
    replace.finish_stuck(STALE_CLAIM + settings.ERU_REPLACE_HEALTH_TIMEOUT)
    nodes = list(Node.objects.all())
    if not nodes:
        return
    with ThreadPoolExecutor(max_workers=min(8, len(nodes))) as pool:
        reports = list(pool.map(_reconcile_quietly, nodes))
    for report in reports:
        if report.drift:
            log.warning("reconcile: %s", "; ".join(report.lines()))


def _reconcile_quietly(node: Node) -> reconcile.Report:
    try:
        return reconcile.reconcile_node(node, repair=True, grace=reconcile.ORPHAN_GRACE)
    except docker.DockerError as exc:  # the node went away between the list and a removal
        return reconcile.Report(node.name, error=str(exc))
    finally:
        # A pool thread's DB connection is its own and would outlive the thread until the garbage
        # collector finds it: on PostgreSQL an idle server session per node and run.
        db.connections.close_all()


def _count(outcome: str) -> Callable[..., None]:
    def count(sender: Task[..., None] | None = None, **kwargs: object) -> None:
        name = getattr(sender, "name", None) or getattr(kwargs.get("request"), "task", "") or "?"
        metrics.TASKS.labels(task=name, outcome=outcome).inc()

    return count


# The outcomes of every task, for the core's /metrics (counted per process, added up at a scrape).
_COUNTERS = {o: _count(o) for o in ("succeeded", "failed", "retried")}
signals.task_success.connect(_COUNTERS["succeeded"], weak=False)
signals.task_failure.connect(_COUNTERS["failed"], weak=False)
signals.task_retry.connect(_COUNTERS["retried"], weak=False)


@shared_task(name="agents.remap_node", ignore_result=True)
def remap_node(node_id: int) -> None:
    """Eru's remap: the node's unbound workloads get the share pool as their cpuset (agents/remap.py).
    Enqueued after anything that changes which cores bound workloads hold, or a node's capacity."""
    remap.remap_node(node_id)


@shared_task(name="agents.prune_audit", ignore_result=True)
def prune_audit() -> None:
    """Daily: the audit rows older than ERU_AUDIT_RETENTION_DAYS go (0 keeps them forever)."""
    gone = services.audit_prune()
    if gone:
        log.info("audit: %d rows older than %d days deleted", gone, settings.ERU_AUDIT_RETENTION_DAYS)
