"""etcd: one lazily created client per process, Eru's key layout under a prefix, batched writes.

Keys (relative to settings.ERU_ETCD_PREFIX, default /eru), as in Eru's store/etcdv3:
  /pod/info/{pod}  /node/{node}  /node/{pod}:pod/{node}  /node/{node}:workloads/{id}
  /workloads/{id}  /deploy/{app}/{entry}/{node}/{id}  /resource/cpumem/{node}
  /status:node/{node} (lease)  /status/{app}/{entry}/{node}/{id}"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterable, Mapping
from typing import Any

import pyetcd as etcd3
from django.conf import settings

log = logging.getLogger(__name__)
TXN_MAX_OPS = 125
RETRY_AFTER = 2.0

_local = threading.local()


class EtcdError(Exception):
    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


def client() -> etcd3.MultiEndpointEtcd3Client:
    """A client per process and thread (gRPC channels are not fork-safe). An endpoint that failed
    is tried again after RETRY_AFTER seconds (the library's default is 300: five minutes of
    refusing every deploy after a short etcd outage)."""
    cached = getattr(_local, "client", None)
    if cached is not None and cached[0] == os.getpid():
        return cached[1]
    endpoints = [
        etcd3.Endpoint(host or "127.0.0.1", int(port), secure=False, time_retry=RETRY_AFTER)
        for host, _, port in (e.rpartition(":") for e in settings.ERU_ETCD_ENDPOINTS)
    ]
    c = etcd3.MultiEndpointEtcd3Client(endpoints=endpoints, timeout=5, failover=len(endpoints) > 1)
    _local.client = (os.getpid(), c)
    return c


def reset_client() -> None:
    """Forget this thread's client (after a settings change)."""
    _local.client = None


def key(path: str) -> str:
    return f"{settings.ERU_ETCD_PREFIX}{path}"


# --- key layout ---------------------------------------------------------------------------------
def pod_key(pod: str) -> str:
    return key(f"/pod/info/{pod}")


def node_key(node: str) -> str:
    return key(f"/node/{node}")


def pod_node_key(pod: str, node: str) -> str:
    return key(f"/node/{pod}:pod/{node}")


def node_workload_key(node: str, wid: str) -> str:
    return key(f"/node/{node}:workloads/{wid}")


def workload_key(wid: str) -> str:
    return key(f"/workloads/{wid}")


def deploy_key(app: str, entry: str, node: str, wid: str) -> str:
    return key(f"/deploy/{app}/{entry}/{node}/{wid}")


def resource_key(node: str) -> str:
    return key(f"/resource/cpumem/{node}")


def node_status_key(node: str) -> str:
    return key(f"/status:node/{node}")


def workload_status_key(app: str, entry: str, node: str, wid: str) -> str:
    return key(f"/status/{app}/{entry}/{node}/{wid}")


# --- operations ---------------------------------------------------------------------------------
def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def apply(puts: Mapping[str, Any] | None = None, deletes: Iterable[str] = ()) -> None:
    """Put values (str as is, anything else as JSON) and delete keys, in transactions of at most
    125 operations."""
    c = client()
    ops = [c.transactions.put(k, v if isinstance(v, str) else dumps(v)) for k, v in (puts or {}).items()]
    ops += [c.transactions.delete(k) for k in deletes]
    try:
        for i in range(0, len(ops), TXN_MAX_OPS):
            c.transaction(compare=[], success=ops[i : i + TXN_MAX_OPS], failure=[])
    except Exception as exc:
        raise EtcdError(f"etcd write failed: {exc}") from exc


def get_prefix(prefix: str) -> dict[str, str]:
    """Every key under a prefix (absolute), value decoded."""
    try:
        return {meta.key.decode(): value.decode() for value, meta in client().get_prefix(prefix)}
    except Exception as exc:
        raise EtcdError(f"etcd read failed: {exc}") from exc


def alive_nodes(*, strict: bool = False) -> set[str]:
    """Names of nodes whose heartbeat key exists (a lease keeps it; expiry means down). When etcd
    cannot be read: raise EtcdError if `strict` (scheduling), else log and report none (pages)."""
    prefix = key("/status:node/")
    try:
        keys = [meta.key.decode() for _, meta in client().get_prefix(prefix, keys_only=True)]
    except Exception as exc:
        if strict:
            raise EtcdError(f"etcd unreachable: {exc}") from exc
        log.warning("etcd unreachable while reading node status: %s", exc)
        return set()
    return {k[len(prefix) :] for k in keys}


def heartbeat(node: str, pod: str, ttl: int) -> None:
    """Eru's SetNodeStatus: put the status key on a lease of ttl seconds, keeping the existing lease
    alive when its TTL is unchanged."""
    c = client()
    k = node_status_key(node)
    value = dumps({"Nodename": node, "Podname": pod, "Alive": True, "Error": None})
    try:
        current, meta = c.get(k)
        if current is not None and meta.lease_id:
            lease = c.get_lease_info(meta.lease_id)
            if lease.grantedTTL == ttl and lease.TTL > 0:
                list(c.refresh_lease(meta.lease_id))  # a generator: consume it to send
                return
        lease = c.lease(ttl)
        c.put(k, value, lease=lease)
    except Exception as exc:
        raise EtcdError(f"etcd heartbeat failed: {exc}") from exc


def heartbeat_leases() -> dict[str, int]:
    """The lease of every node's heartbeat key, by node name (one read for all the nodes)."""
    prefix = key("/status:node/")
    try:
        found = client().get_prefix(prefix, keys_only=True)
        return {meta.key.decode()[len(prefix) :]: meta.lease_id for _, meta in found}
    except Exception as exc:
        raise EtcdError(f"etcd read failed: {exc}") from exc


def refresh_lease(lease_id: int) -> bool:
    """Keep a heartbeat's lease alive (one round trip); False if it had expired already."""
    try:
        return any(response.TTL > 0 for response in client().refresh_lease(lease_id))
    except Exception as exc:
        raise EtcdError(f"etcd lease refresh failed: {exc}") from exc


def delete_heartbeat(node: str) -> None:
    try:
        client().delete(node_status_key(node))
    except Exception as exc:
        raise EtcdError(f"etcd delete failed: {exc}") from exc


def is_alive(node: str) -> bool:
    """Whether the node's heartbeat key exists now (one read); EtcdError when etcd cannot tell."""
    try:
        value, _ = client().get(node_status_key(node))
    except Exception as exc:
        raise EtcdError(f"etcd unreachable: {exc}") from exc
    return value is not None


def campaign(path: str, ident: str, ttl: int) -> int | None:
    """Eru's selfmon election: create `path` with `ident` on a new lease of ttl seconds, only if no one
    holds it. The lease id when this caller holds it now, else None (the caller keeps it alive with
    refresh_lease every ttl/3 and campaigns again once it is lost)."""
    c = client()
    k = key(path)
    try:
        lease = c.lease(ttl)
        won, _ = c.transaction(
            compare=[c.transactions.version(k) == 0],
            success=[c.transactions.put(k, ident, lease=lease)],
            failure=[],
        )
        if not won:
            c.revoke_lease(lease.id)
            return None
        return int(lease.id)
    except Exception as exc:
        raise EtcdError(f"etcd election failed: {exc}") from exc


def resign(path: str, lease_id: int) -> None:
    """Give up what campaign() won: the key goes with its lease."""
    try:
        client().revoke_lease(lease_id)
    except Exception as exc:
        raise EtcdError(f"etcd resign failed: {exc}") from exc
    log.debug("resigned %s", path)
