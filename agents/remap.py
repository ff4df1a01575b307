"""Eru's remap (CalculateRemap): a node's unbound workloads run on its share pool — the cores no bound
workload holds — so their cpuset follows whenever a bound workload arrives, leaves or changes, or the
node's capacity does. Idempotent; what fails is logged and left for the next remap (Eru's way too)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

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
        if not lock.acquire(timeout=LOCK_TTL):
            log.warning("remap of %s: its lock stayed taken for %s s; remapping anyway", node.name, LOCK_TTL)
            lock = None
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
    """Only the cpuset changes (Eru's remap): a realloc's quota and memory, written meanwhile, stay.
    Rows being created are remapped too (by name: a container made from an older pool), and one
    not made yet is no error."""
    done = Remapped(node.name, selectors.share_pool(node))
    states = (Workload.State.CREATING, *Workload.OBSERVED)
    unbound = Workload.objects.filter(node=node, state__in=states, cpu_map={})
    rows = unbound.values_list("name", "container_id")
    client = selectors.node_client(node)
    for name, container_id in rows:
        try:
            docker.update(client, container_id or name, {"cpuset_cpus": ",".join(done.pool)})
            done.updated.append(name)
        except docker.DockerError as exc:
            if not container_id and "not found" in str(exc):
                continue  # its worker has not made it yet: it takes the pool then
            done.errors[name] = str(exc)
    if done.errors:
        log.warning("remap of %s: %s", node.name, done.errors)
    return done
