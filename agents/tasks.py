"""Celery tasks: take ids, load rows, call one adapter function, report through clusters.services.

Every task is safe to run twice (claims are conditional updates; Docker creation is idempotent by
container name), so acks_late is on; only transient Docker errors are retried, with a cap."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from celery import shared_task
from django.conf import settings

from agents import docker
from clusters import etcd, services, sync
from clusters.models import Node, Workload

log = logging.getLogger(__name__)
MAX_RETRIES = 5


def _backoff(retries: int) -> float:
    return min(0.5 * 2**retries, 10.0)


@shared_task(name="agents.create_workload", bind=True, acks_late=True, max_retries=MAX_RETRIES)
def create_workload(self, workload_id: int) -> None:  # type: ignore[no-untyped-def]
    w = services.workload_claim(workload_id=workload_id)
    if w is None:
        return
    spec = services.container_spec(w)
    try:
        client = services.node_client(w.node)
        info = docker.create_and_start(client, **spec)
    except docker.DockerError as exc:
        if not exc.permanent and self.request.retries < MAX_RETRIES:
            raise self.retry(exc=exc, countdown=_backoff(self.request.retries)) from exc
        _remove_quietly(w.node, spec["name"])
        services.workload_failed(workload_id=workload_id, error=str(exc))
        return
    services.workload_started(workload_id=workload_id, container=info)


def _remove_quietly(node: Node, name: str) -> None:
    """A failed creation leaves no container behind, even one made by an earlier attempt."""
    try:
        docker.remove(services.node_client(node), name)
    except docker.DockerError as exc:
        log.warning("could not remove %s on %s after a failed creation: %s", name, node.name, exc)


@shared_task(name="agents.control_workload", bind=True, acks_late=True, max_retries=MAX_RETRIES)
def control_workload(self, workload_id: int, action: str) -> None:  # type: ignore[no-untyped-def]
    w = Workload.objects.select_related("node").filter(pk=workload_id).first()
    if w is None or w.state not in (Workload.State.RUNNING, Workload.State.STOPPED):
        return
    operation = {"start": docker.start, "stop": docker.stop, "restart": docker.restart}[action]
    try:
        info = operation(services.node_client(w.node), w.container_id or w.name)
    except docker.DockerError as exc:
        if not exc.permanent and self.request.retries < MAX_RETRIES:
            raise self.retry(exc=exc, countdown=_backoff(self.request.retries)) from exc
        services.workload_record_state(
            workload_id=w.pk, running=w.state == Workload.State.RUNNING, error=str(exc)
        )
        return
    services.workload_record_state(workload_id=w.pk, running=info.status == "running")


@shared_task(name="agents.remove_workload", bind=True, acks_late=True, max_retries=MAX_RETRIES)
def remove_workload(self, workload_id: int) -> None:  # type: ignore[no-untyped-def]
    w = Workload.objects.select_related("node").filter(pk=workload_id, state=Workload.State.REMOVING).first()
    if w is None:
        return
    try:
        docker.remove(services.node_client(w.node), w.container_id or w.name)
    except docker.DockerError as exc:
        if not exc.permanent and self.request.retries < MAX_RETRIES:
            raise self.retry(exc=exc, countdown=_backoff(self.request.retries)) from exc
        log.error("removing %s failed for good: %s", w.name, exc)
        return
    services.workload_removed(workload_id=workload_id)


def _beat_one(node: Node, ttl: int) -> str:
    try:
        docker.ping(services.node_client(node))
    except docker.DockerError as exc:
        return str(exc)
    try:
        etcd.heartbeat(node.name, node.pod.name, ttl)
    except etcd.EtcdError as exc:
        return str(exc)
    return ""


@shared_task(name="agents.heartbeat_nodes", ignore_result=True)
def heartbeat_nodes() -> None:
    """Ping every node's Docker in parallel; a node that answers gets its heartbeat key renewed
    (lease TTL = 3 × interval). A node that stops answering lets its key expire and goes down."""
    ttl = 3 * settings.ERU_HEARTBEAT_INTERVAL
    nodes = list(Node.objects.select_related("pod"))
    if not nodes:
        return
    with ThreadPoolExecutor(max_workers=min(16, len(nodes))) as pool:
        errors = list(pool.map(lambda n: _beat_one(n, ttl), nodes))
    for node, error in zip(nodes, errors, strict=True):
        services.node_record_probe(node_id=node.pk, error=error)


@shared_task(name="agents.reconcile_etcd", ignore_result=True)
def reconcile_etcd() -> None:
    """Repair drift between the DB and etcd; one run at a time across all workers."""
    lock = etcd.client().lock("reconcile-etcd", ttl=120)
    if not lock.acquire(timeout=0):
        return
    try:
        drift = sync.repair()
        if drift.count:
            log.warning("etcd drift repaired: %s", drift.summary())
    finally:
        lock.release()


def reconcile_node(node: Node, *, remove: bool) -> list[str]:
    """Containers labelled ERU=1 on the node that no live workload row claims (orphans): their
    names, removed when `remove`. Rows are written before containers, so a container without a
    row holding resources can only be left over from a failure."""
    client = services.node_client(node)
    claimed = set(
        Workload.objects.filter(node=node, state__in=Workload.HOLDING).values_list("name", flat=True)
    )
    orphans = [c.name for c in docker.list_eru(client) if c.name not in claimed]
    if remove:
        for name in orphans:
            docker.remove(client, name)
    return orphans


@shared_task(name="agents.reconcile_containers", ignore_result=True)
def reconcile_containers() -> None:
    """Remove orphan containers on every reachable node, and re-enqueue creations whose message
    was lost (pending for longer than a minute)."""
    for node in Node.objects.all():
        try:
            orphans = reconcile_node(node, remove=True)
        except docker.DockerError as exc:
            log.warning("reconcile skipped %s: %s", node.name, exc)
            continue
        if orphans:
            log.warning("removed %d orphan container(s) on %s: %s", len(orphans), node.name, orphans)
    for workload_id in services.stale_pending_workloads(older_than=60):
        create_workload.delay(workload_id)
