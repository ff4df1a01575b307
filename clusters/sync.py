"""The etcd mirror of the DB in Eru's key layout: what the keys should be (from rows), a pure diff
against what etcd holds, the after-commit pushes services make, and the repair that fixes drift."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from clusters import etcd, queue
from clusters.models import Node, Pod, Workload

log = logging.getLogger(__name__)
# The task that writes again, within seconds, what etcd refused (agents.tasks.mirror_retry).
RETRY_TASK = "agents.mirror_retry"

# The prefixes the mirror owns: the rows, and the workloads' observed status (written by the sweep
# with the row). Node liveness keys (/status:node/…, on a lease) belong to the heartbeats.
MIRRORED = ("/pod/info/", "/node/", "/workloads/", "/deploy/", "/resource/cpumem/", "/status/")


def pod_keys(pod: Pod) -> dict[str, Any]:
    return {etcd.pod_key(pod.name): pod.eru_json()}


def node_keys(node: Node) -> dict[str, Any]:
    meta = node.eru_json()
    return {
        etcd.node_key(node.name): meta,
        etcd.pod_node_key(node.pod.name, node.name): meta,
        etcd.resource_key(node.name): node.resource_json(),
    }


def workload_keys(w: Workload) -> dict[str, Any]:
    if not w.container_id:
        return {}
    data = w.eru_json()
    return {
        etcd.workload_key(w.container_id): data,
        etcd.deploy_key(w.app, w.entrypoint, w.node.name, w.container_id): data,
        etcd.node_workload_key(w.node.name, w.container_id): data,
    }


def workload_status_keys(w: Workload) -> dict[str, Any]:
    """The observed status key (Eru's /status/{app}/{entry}/{node}/{id}, no lease), once observed."""
    if not w.container_id or w.status == Workload.Status.UNOBSERVED:
        return {}
    return {etcd.workload_status_key(w.app, w.entrypoint, w.node.name, w.container_id): w.status_json()}


def workload_all_keys(w: Workload) -> list[str]:
    """Every key a workload may have, status included (for deletion)."""
    if not w.container_id:
        return []
    return [
        *workload_keys(w),
        etcd.workload_status_key(w.app, w.entrypoint, w.node.name, w.container_id),
    ]


def push(puts: Mapping[str, Any] | None = None, deletes: Iterable[str] = ()) -> None:
    """Write to etcd once the surrounding transaction commits. A failure is logged, not raised (the
    DB is the truth): the keys are written again within seconds, from the rows as they are then
    (retry_later); the repair task, every 5 minutes, is the safety net."""
    puts, deletes = dict(puts or {}), list(deletes)

    def _apply() -> None:
        try:
            etcd.apply(puts, deletes)
        except etcd.EtcdError as exc:
            retry_later([*puts, *deletes], exc)

    transaction.on_commit(_apply, robust=True)


def push_node(node_id: int) -> None:
    """Mirror a node (meta and resources) as it is once the transaction commits: re-read then, so
    that of two racing writers the later commit's values are the ones that land last."""

    def _apply() -> None:
        node = Node.objects.select_related("pod").filter(pk=node_id).first()
        if node is None:
            return
        keys = node_keys(node)
        try:
            etcd.apply(keys)
        except etcd.EtcdError as exc:
            retry_later(keys, exc)

    transaction.on_commit(_apply, robust=True)


def retry_later(keys: Iterable[str], exc: Exception) -> None:
    """Hand keys etcd refused to the retry task (it backs off from half a second to 3 s)."""
    names = sorted(set(keys))
    if not names:
        return
    log.warning("etcd mirror write of %d key(s) failed; retrying within seconds: %s", len(names), exc)
    queue.enqueue(RETRY_TASK, names)


def owners(keys: Iterable[str]) -> tuple[set[str], set[str], set[str]]:
    """Pure: the rows mirrored keys belong to — (pod names, node names, container ids). Keys of no
    row of the mirror (outside the prefix, a heartbeat) are no one's. Names hold no `:` or `/`."""
    pods: set[str] = set()
    nodes: set[str] = set()
    containers: set[str] = set()
    root = etcd.key("/")
    for k in keys:
        if not k.startswith(root):
            continue
        parts = k[len(root) :].split("/")
        head, rest = parts[0], parts[1:]
        if head == "pod" and len(rest) == 2 and rest[0] == "info":
            pods.add(rest[1])
        elif head == "node" and len(rest) == 1 and ":" not in rest[0]:
            nodes.add(rest[0])  # /node/{node}
        elif head == "node" and len(rest) == 2 and rest[0].endswith(":pod"):
            nodes.add(rest[1])  # /node/{pod}:pod/{node}
        elif head == "node" and len(rest) == 2 and rest[0].endswith(":workloads"):
            containers.add(rest[1])  # /node/{node}:workloads/{id}
        elif head == "workloads" and len(rest) == 1:
            containers.add(rest[0])
        elif head in ("deploy", "status") and len(rest) == 4:
            containers.add(rest[3])  # /deploy|status/{app}/{entry}/{node}/{id}
        elif head == "resource" and len(rest) == 2 and rest[0] == "cpumem":
            nodes.add(rest[1])
    return pods, nodes, containers


def rewrite(keys: Iterable[str]) -> int:
    """Write these keys again as the rows now say (the ones no row has any more are deleted): the
    retry of a mirror write etcd refused. Keys of no row of the mirror are left. How many keys were
    written; EtcdError while etcd still refuses."""
    wanted = set(keys)
    pods, nodes, containers = owners(wanted)
    desired: dict[str, Any] = {}
    for pod in Pod.objects.filter(name__in=pods):
        desired.update(pod_keys(pod))
    for node in Node.objects.select_related("pod").filter(name__in=nodes):
        desired.update(node_keys(node))
    holding = Workload.objects.filter(container_id__in=containers, state__in=Workload.HOLDING)
    for w in holding.select_related("pod", "node"):
        desired.update(workload_keys(w))
        desired.update(workload_status_keys(w))
    mine = {k for k in wanted if owners([k]) != (set(), set(), set())}
    puts = {k: v for k, v in desired.items() if k in mine}
    deletes = sorted(mine - puts.keys())
    etcd.apply(puts, deletes)
    return len(puts) + len(deletes)


# --- drift --------------------------------------------------------------------------------------
@dataclass
class Drift:
    missing: dict[str, str] = field(default_factory=dict)  # in DB, not in etcd
    changed: dict[str, str] = field(default_factory=dict)  # in both, different value
    extra: list[str] = field(default_factory=list)  # in etcd, not in DB

    @property
    def count(self) -> int:
        return len(self.missing) + len(self.changed) + len(self.extra)

    def summary(self) -> str:
        return f"{len(self.missing)} missing, {len(self.changed)} changed, {len(self.extra)} extra"


def diff(desired: Mapping[str, str], actual: Mapping[str, str]) -> Drift:
    """Pure: compare serialised desired values with etcd's, ignoring JSON formatting."""
    drift = Drift()
    for k, value in desired.items():
        if k not in actual:
            drift.missing[k] = value
        elif _normal(actual[k]) != _normal(value):
            drift.changed[k] = value
    drift.extra = sorted(k for k in actual if k not in desired)
    return drift


def _normal(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


def desired_state() -> dict[str, str]:
    keys: dict[str, Any] = {}
    for pod in Pod.objects.all():
        keys.update(pod_keys(pod))
    for node in Node.objects.select_related("pod"):
        keys.update(node_keys(node))
    holding = Workload.objects.filter(state__in=Workload.HOLDING).exclude(container_id="")
    for w in holding.select_related("pod", "node"):
        keys.update(workload_keys(w))
        keys.update(workload_status_keys(w))
    return {k: etcd.dumps(v) for k, v in keys.items()}


def actual_state() -> dict[str, str]:
    actual: dict[str, str] = {}
    for prefix in MIRRORED:
        actual.update(etcd.get_prefix(etcd.key(prefix)))
    return actual


def check() -> Drift:
    # etcd first, then the DB: a change committed in between then shows as drift to put, never as
    # a live key to delete.
    actual = actual_state()
    return diff(desired_state(), actual)


def repair() -> Drift:
    """Make etcd match the DB; returns the drift that was found (and fixed)."""
    drift = check()
    if drift.count:
        etcd.apply({**drift.missing, **drift.changed}, drift.extra)
    return drift
