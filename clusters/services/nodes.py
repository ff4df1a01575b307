"""Nodes: registration over mutual TLS, labels, up/down, removal, and their resource usage."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction

import scheduling
from clusters import crypto, etcd, permissions, queue, selectors, sync
from clusters.errors import state_refused
from clusters.models import AuditEvent, Node, Pod, Workload
from clusters.services._common import NAME_RE, Actor, audit, clean_labels, invalid
from engine import docker
from schema import parse_size


def node_add(
    *,
    actor: Actor,
    pod: Pod,
    name: str,
    endpoint: str,
    ca: str,
    cert: str,
    key: str,
    labels: Mapping[str, Any] | None = None,
    cpu: int | None = None,
    memory: int | str | None = None,
    share: int | None = None,
    over_commit: bool = False,
) -> Node:
    """Register a Docker host. Its engine is probed over mutual TLS first; capacity is detected
    from `docker info` (NCPU cores × share pieces, MemTotal − reserve) unless given. More cores
    than the engine reports only with `over_commit`."""
    permissions.require_admin(actor.user)
    name = (name or "").strip()
    if not NAME_RE.match(name):
        raise invalid("name", "node name: use letters, digits, '.' and '-' (at most 63 characters)")
    labels = clean_labels(labels)
    share = share or settings.ERU_SHARE_BASE
    if cpu is not None and cpu < 1:
        raise invalid("cpu", "cpu: a node needs at least 1 core")
    mem = _size(memory)
    if mem is not None and mem <= 0:
        raise invalid("memory", "memory: must be more than 0 bytes")
    _require_new_name(name)
    tls = docker.TLSMaterial(ca=ca or "", cert=cert or "", key=key or "")
    try:
        info = docker.engine_info(docker.connect(endpoint, tls, timeout=10))
    except docker.DockerError as exc:
        raise invalid("endpoint", f"cannot register {endpoint}: {exc}") from exc
    twin = Node.objects.filter(info__ID=info.id).first() if info.id else None
    if twin is not None:
        raise invalid(
            "endpoint", f"this Docker engine (ID {info.id}) is already registered as node {twin.name}"
        )
    if cpu is not None and cpu > info.ncpu and not over_commit:
        raise invalid(
            "cpu",
            f"cpu: {cpu} cores asked, but the engine reports only {info.ncpu} (NCPU); "
            "set over_commit to declare them anyway",
        )
    cpu_map, memory_bytes = scheduling.engine_capacity(
        info.ncpu,
        info.mem_total,
        share_base=share,
        memory_reserve=settings.ERU_MEMORY_RESERVE,
        cpu=cpu,
        memory=mem,
    )
    with transaction.atomic():
        _require_new_name(name)
        node = Node.objects.create(
            name=name,
            pod=pod,
            endpoint=endpoint,
            tls_ca=crypto.encrypt(ca),
            tls_cert=crypto.encrypt(cert),
            tls_key=crypto.encrypt(key),
            labels=labels,
            share_base=share,
            cpu_map=cpu_map,
            memory=memory_bytes,
            info={
                "ID": info.id,
                "Name": info.name,
                "NCPU": info.ncpu,
                "MemTotal": info.mem_total,
                "ServerVersion": info.server_version,
            },
        )
        audit(actor, AuditEvent.Action.NODE_ADD, node, pod=pod, after=_node_state(node))
        sync.push_node(node.pk)
        ttl = 3 * settings.ERU_HEARTBEAT_INTERVAL
        transaction.on_commit(lambda: _heartbeat_quietly(node, ttl))
    return node


def _require_new_name(name: str) -> None:
    """Node names are told apart case-insensitively: gRPC lowers the agent's key node.<name>."""
    twin = Node.objects.filter(name__iexact=name).values_list("name", flat=True).first()
    if twin is not None:
        same = twin == name
        raise invalid(
            "name", f"node {name} already exists" + ("" if same else f" (as {twin}: names ignore case)")
        )


def _heartbeat_quietly(node: Node, ttl: int) -> None:
    with contextlib.suppress(etcd.EtcdError):  # the beat task retries within one interval
        etcd.heartbeat(node.name, node.pod.name, ttl)


def _node_state(node: Node) -> dict[str, Any]:
    return {
        "endpoint": node.endpoint,
        "labels": node.labels,
        "bypass": node.bypass,
        "cpu_map": node.cpu_map,
        "memory": node.memory,
    }


def _size(memory: int | str | None) -> int | None:
    """Bytes from an int or a size string (512M, -2G); None when not given."""
    try:
        return parse_size(memory, field="memory") if memory not in (None, "") else None
    except ValueError as exc:
        raise invalid("memory", str(exc)) from exc


def node_set(
    *,
    actor: Actor,
    node: Node,
    labels: Mapping[str, Any] | None = None,
    bypass: bool | None = None,
    cpu: int | str | Mapping[str, int] | None = None,
    memory: int | str | None = None,
    delta: bool = False,
    over_commit: bool = False,
    endpoint: str = "",
    ca: str = "",
    cert: str = "",
    key: str = "",
) -> Node:
    """Eru's SetNode: replace labels (the whole map, like `erucli node set --label`), set up/down,
    and change the capacity (`node set --cpu --memory [--delta]`, scheduling.set_capacity): `cpu` a
    number of cores or a cpu map ("0:100,1:200" or a mapping), `memory` bytes or a size; absolute,
    or added with `delta`. Refused with nothing changed below what the workloads hold, and beyond
    the engine's NCPU (its last probe) without `over_commit`. A new capacity is remapped.
    A new `endpoint` or TLS material (`ca`, `cert`, `key`; empty: kept) is probed first and taken only
    if the same Docker engine answers with it."""
    permissions.require_admin(actor.user)
    new_labels = clean_labels(labels) if labels is not None else None
    cpu = None if cpu == "" else cpu
    mem = _size(memory)
    engine = _engine_change(node, endpoint, ca, cert, key)
    with transaction.atomic():
        node = Node.objects.select_for_update(of=("self",)).select_related("pod").get(pk=node.pk)
        before = _node_state(node)
        if new_labels is not None:
            node.labels = new_labels
        if bypass is not None:
            node.bypass = bypass
        if engine is not None:
            node.endpoint = engine.endpoint
            node.tls_ca, node.tls_cert, node.tls_key = (crypto.encrypt(t) for t in engine.tls)
            node.info = {**node.info, **engine.info}
        if cpu is not None or mem is not None:
            ncpu = selectors.engine_ncpu(node)
            try:
                node.cpu_map, node.memory = scheduling.set_capacity(
                    selectors.node_resources(node),
                    cpu=cpu,
                    memory=mem,
                    delta=delta,
                    ncpu=ncpu,
                    over_commit=over_commit,
                )
            except scheduling.InvalidRequest as exc:
                raise invalid(exc.field, str(exc)) from exc
        fields = ["labels", "bypass", "cpu_map", "memory"]
        fields += ["endpoint", "tls_ca", "tls_cert", "tls_key", "info"] if engine is not None else []
        node.save(update_fields=fields)
        action = AuditEvent.Action.NODE_SET
        if labels is None and bypass is not None and cpu is None and mem is None and engine is None:
            action = AuditEvent.Action.NODE_DOWN if bypass else AuditEvent.Action.NODE_UP
        after = _node_state(node)
        if engine is not None and engine.tls_changed:
            after["tls"] = "changed"  # never the material itself
        audit(actor, action, node, pod=node.pod, before=before, after=after)
        sync.push_node(node.pk)
        if (node.cpu_map, node.memory) != (before["cpu_map"], before["memory"]):
            queue.enqueue("agents.remap_node", node.pk)
    return node


@dataclass
class _Engine:
    endpoint: str
    tls: tuple[str, str, str]
    tls_changed: bool
    info: dict[str, Any]


def _engine_change(node: Node, endpoint: str, ca: str, cert: str, key: str) -> _Engine | None:
    """A node's new endpoint or TLS material (what is empty stays), once the node's own engine has
    answered with it (docker info, the same engine ID); None: nothing asked."""
    endpoint = (endpoint or "").strip()
    if not (endpoint or ca or cert or key):
        return None
    current = node.tls()
    tls = (ca or current[0], cert or current[1], key or current[2])
    target = endpoint or node.endpoint
    try:
        info = docker.engine_info(docker.connect(target, docker.TLSMaterial(*tls), timeout=10))
    except docker.DockerError as exc:
        field = "endpoint" if endpoint else "ca"
        raise invalid(
            field, f"node {node.name}: nothing changed, {target} did not answer with it: {exc}"
        ) from exc
    known = node.info.get("ID") if isinstance(node.info, dict) else None
    if known and info.id and info.id != known:
        raise invalid(
            "endpoint",
            f"node {node.name}: {target} is another Docker engine (ID {info.id}), not this node's ({known})",
        )
    seen = {"ID": info.id, "Name": info.name, "NCPU": info.ncpu, "MemTotal": info.mem_total}
    return _Engine(target, tls, tls != current, {**seen, "ServerVersion": info.server_version})


def node_resource_fix(*, actor: Actor, node: Node) -> dict[str, Any]:
    """Eru's GetNodeResource with fix: store the usage counted from the node's workloads
    (selectors.node_resource_check) where it differs from the recorded one, audited. Returns the
    check after the fix, with `fixed`: the differences it repaired (none: nothing was written)."""
    permissions.require_admin(actor.user)
    with transaction.atomic():
        node = Node.objects.select_for_update(of=("self",)).select_related("pod").get(pk=node.pk)
        check = selectors.node_resource_check(node)
        if check["ok"]:
            return {**check, "fixed": []}
        recorded, counted = check["recorded"], check["counted"]
        set_usage(node, counted["cpu_map"], counted["cpu"], counted["memory"])  # remaps if the pool moves
        audit(actor, AuditEvent.Action.NODE_RESOURCE_FIX, node, pod=node.pod, before=recorded, after=counted)
        return {**selectors.node_resource_check(node), "fixed": check["diffs"]}


def node_remove(*, actor: Actor, node: Node) -> None:
    permissions.require_admin(actor.user)
    with transaction.atomic():
        node = Node.objects.select_for_update(of=("self",)).select_related("pod").get(pk=node.pk)
        if node.workloads.filter(state__in=Workload.HOLDING).exists():
            raise state_refused("node", f"node {node.name} not empty, still has workloads associated")
        audit(actor, AuditEvent.Action.NODE_REMOVE, node, pod=node.pod, before=_node_state(node))
        keys = [
            etcd.node_key(node.name),
            etcd.pod_node_key(node.pod.name, node.name),
            etcd.resource_key(node.name),
            etcd.node_status_key(node.name),
        ]
        sync.push(deletes=keys)
        node.workloads.all().delete()  # failed rows only: their allocation is already released
        node.delete()


def set_usage(node: Node, used_cpu_map: Mapping[str, int], used_cpu: float, used_memory: int) -> None:
    """Store a node's new usage (cores with no pieces held are left out) and mirror it. When that
    changes the share pool, the node's unbound workloads are remapped onto the new one."""
    pool = selectors.share_pool(node)
    node.used_cpu_map = {core: pieces for core, pieces in used_cpu_map.items() if pieces}
    node.used_cpu = used_cpu
    node.used_memory = used_memory
    node.save(update_fields=["used_cpu_map", "used_cpu", "used_memory"])
    sync.push_node(node.pk)
    if selectors.share_pool(node) != pool:
        queue.enqueue("agents.remap_node", node.pk)
