"""Eru's remap (CalculateRemap): a node's unbound workloads run on its share pool — the cores no bound
workload holds — so their cpuset follows whenever a bound workload arrives, leaves or changes, or the
node's capacity does. Idempotent; what fails is logged and left for the next remap (Eru's way too)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import scheduling
from clusters import etcd, selectors
from clusters.models import Node, Workload
from engine import docker

log = logging.getLogger(__name__)
LOCK_TTL = 60


@dataclass
class Remapped:
    node: str
    pool: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)


def remap_node(node_id: int) -> Remapped | None:
    """Push the node's share pool to each of its unbound containers, one remap of a node at a time
    (an etcd lock, like Eru's node-operation lock): the last to run reads the newest usage."""
    node = Node.objects.filter(pk=node_id).first()
    if node is None:
        return None
    lock = None
    try:
        lock = etcd.client().lock(f"remap-{node.name}", ttl=LOCK_TTL)
        lock.acquire(timeout=LOCK_TTL)
    except Exception as exc:  # noqa: BLE001 — without etcd the remap still runs, unserialised
        log.warning("remap of %s without its lock: %s", node.name, exc)
        lock = None
    try:
        return _remap(Node.objects.get(pk=node_id))
    finally:
        if lock is not None:
            try:
                lock.release()
            except Exception as exc:  # noqa: BLE001 — the lease expires by itself
                log.warning("could not release the remap lock of %s: %s", node.name, exc)


def _remap(node: Node) -> Remapped:
    done = Remapped(node.name, selectors.share_pool(node))
    rows = (
        Workload.objects.filter(node=node, state__in=Workload.OBSERVED, cpu_map={})
        .exclude(container_id="")
        .select_related("node")
    )
    client = selectors.node_client(node)
    cores = selectors.engine_cores(node)
    for w in rows:
        settings = scheduling.docker_update_settings(
            selectors.request_of(w), {}, cores=cores, share_pool=done.pool
        )
        try:
            docker.update(client, w.container_id, settings)
            done.updated.append(w.name)
        except docker.DockerError as exc:
            done.errors[w.name] = str(exc)
    if done.errors:
        log.warning("remap of %s: %s", node.name, done.errors)
    return done
