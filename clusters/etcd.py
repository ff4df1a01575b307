"""etcd: one lazily created client per process, Eru's key layout under a prefix, batched writes.

Keys (relative to settings.ERU_ETCD_PREFIX, default /eru), as in Eru's store/etcdv3:
  /pod/info/{pod}  /node/{node}  /node/{pod}:pod/{node}  /node/{node}:workloads/{id}
  /workloads/{id}  /deploy/{app}/{entry}/{node}/{id}  /resource/cpumem/{node}
  /status:node/{node} (lease)  /status/{app}/{entry}/{node}/{id}"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

import pyetcd as etcd3
from django.conf import settings

log = logging.getLogger(__name__)
TXN_MAX_OPS = 125
RETRY_AFTER = 2.0

_local = threading.local()


# What an etcd outage answers to a write that needs etcd: 503 with this Retry-After (s), the client
# endpoint being tried again after RETRY_AFTER.
OUTAGE_RETRY_AFTER = 5


class EtcdError(Exception):
    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


def outage(exc: BaseException | None) -> EtcdError | None:
    """The etcd error an exception is, or was raised from (`raise … from`, however deep): a request
    that failed on it is answered 503 with Retry-After, not as the caller's error."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, EtcdError):
            return None if exc.permanent else exc  # a refusal that will not pass by waiting: no 503
        seen.add(id(exc))
        exc = exc.__cause__
    return None


def outage_message(exc: EtcdError) -> str:
    return f"etcd, the cluster's store, cannot be reached ({exc}); nothing was changed. Try again shortly."


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
            raise EtcdError(f"etcd unreachable at {', '.join(settings.ERU_ETCD_ENDPOINTS)}: {exc}") from exc
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


def worker_key(hostname: str) -> str:
    """A Celery worker's liveness key (agents/liveness.py): present while the worker runs."""
    return key(f"/status:worker/{hostname}")


def worker_up(hostname: str, ttl: int) -> int:
    """Put the worker's liveness key on a new lease of ttl seconds; the lease id (kept alive with
    refresh_lease, given back with resign)."""
    c = client()
    try:
        lease = c.lease(ttl)
        c.put(worker_key(hostname), dumps({"Hostname": hostname}), lease=lease)
        return int(lease.id)
    except Exception as exc:
        raise EtcdError(f"etcd worker key failed: {exc}") from exc


def worker_seen(hostname: str) -> bool:
    """Whether the worker's liveness key exists (one read)."""
    return _exists(worker_key(hostname))


def live_workers() -> frozenset[str]:
    """The hostnames of the workers whose liveness key exists now (one range read); EtcdError when
    etcd cannot tell."""
    prefix = worker_key("")
    try:
        found = client().get_prefix(prefix, keys_only=True)
        return frozenset(meta.key.decode()[len(prefix) :] for _, meta in found)
    except Exception as exc:
        raise EtcdError(f"etcd read failed: {exc}") from exc


def is_alive(node: str) -> bool:
    """Whether the node's heartbeat key exists now (one read); EtcdError when etcd cannot tell."""
    return _exists(node_status_key(node))


def _exists(k: str) -> bool:
    try:
        value, _ = client().get(k)
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


# --- the set of live nodes, read per deploy in one round trip ---------------------------------------
class _LiveSet:
    """One process's copy of the heartbeat keys' names under one prefix: a range read at revision R,
    then a watch from R + 1 (a lease's keepalive changes no key, so only nodes coming and going are
    events). Every range read starts a new watch (a new generation; the old one is cancelled and its
    late callbacks ignored), so no event after R is lost or applied twice, however many events share a
    revision. The copy is read whole again when it is older than FULL_READ seconds, when its watch
    broke, or when it does not add up to the key count a deploy reads."""

    FULL_READ = 30.0

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.lock = threading.Lock()  # every field below
        self.sync_lock = threading.Lock()  # one range read at a time
        self.names: set[str] = set()
        self.frozen: frozenset[str] | None = None
        self.read_rev = 0  # the range's revision: events at or below it are in `names` already
        self.generation = 0
        self.watching = False
        self.read_at = 0.0
        self.watch_id: Any = None
        self.watcher: etcd3.MultiEndpointEtcd3Client | None = None

    def on_watch(self, generation: int, response: Any) -> None:
        """The watch's thread: apply what changed after the range; an error (the stream broke, the
        revision was compacted) ends the watch, and the next call reads everything again."""
        from pyetcd.events import DeleteEvent

        with self.lock:
            if generation != self.generation:
                return  # a cancelled watch's late word
            events = getattr(response, "events", None)
            if events is None:
                self.watching = False
                return
            for event in events:
                if int(event.mod_revision) <= self.read_rev:  # a deletion's is the deleting revision
                    continue
                name = event.key.decode()[len(self.prefix) :]
                if isinstance(event, DeleteEvent):
                    self.names.discard(name)
                else:
                    self.names.add(name)
                self.frozen = None

    def current(self, count: int) -> frozenset[str] | None:
        with self.lock:
            fresh = time.monotonic() - self.read_at < self.FULL_READ
            if not self.watching or not fresh or len(self.names) != count:
                return None
            if self.frozen is None:
                self.frozen = frozenset(self.names)
            return self.frozen

    def read_all(self) -> frozenset[str]:
        """Read every key (one range), then watch anew from the revision after it."""
        with self.sync_lock:
            response = client().get_prefix_response(self.prefix, keys_only=True)
            revision = int(response.header.revision)
            names = {kv.key.decode()[len(self.prefix) :] for kv in response.kvs}
            if self.watcher is None:
                self.watcher = _new_client()
            with self.lock:
                old, self.watch_id = self.watch_id, None
                self.generation += 1
                generation = self.generation
                self.names, self.read_rev, self.frozen = names, revision, frozenset(names)
                self.read_at = time.monotonic()
                self.watching = True  # before the watch: an error it reports at once is not overwritten
                found = self.frozen
            if old is not None:
                with contextlib.suppress(Exception):  # gone with its stream already
                    self.watcher.cancel_watch(old)
            watch_id = self.watcher.add_watch_prefix_callback(
                self.prefix, functools.partial(self.on_watch, generation), start_revision=revision + 1
            )
            with self.lock:
                if self.generation == generation:
                    self.watch_id = watch_id
            return found


_live_sets: dict[tuple[int, str, tuple[str, ...]], _LiveSet] = {}
_live_sets_lock = threading.Lock()


def _new_client() -> etcd3.MultiEndpointEtcd3Client:
    endpoints = [
        etcd3.Endpoint(host or "127.0.0.1", int(port), secure=False, time_retry=RETRY_AFTER)
        for host, _, port in (e.rpartition(":") for e in settings.ERU_ETCD_ENDPOINTS)
    ]
    return etcd3.MultiEndpointEtcd3Client(endpoints=endpoints, timeout=5, failover=len(endpoints) > 1)


def live_nodes() -> frozenset[str]:
    """alive_nodes(strict=True)'s set, without reading every heartbeat key on every call: a watch
    keeps this process's copy (see _LiveSet), and each call checks it against the number of keys
    etcd holds now (one small range: a count). A copy that is not watched or does not add up is
    read again whole. Raises EtcdError when etcd cannot be read."""
    prefix = key("/status:node/")
    ident = (os.getpid(), prefix, tuple(settings.ERU_ETCD_ENDPOINTS))
    with _live_sets_lock:
        live = _live_sets.get(ident)
        if live is None:
            live = _live_sets[ident] = _LiveSet(prefix)
    try:
        count = int(client().get_prefix_response(prefix, count_only=True).count)
        found = live.current(count)
        return found if found is not None else live.read_all()
    except Exception as exc:
        raise EtcdError(f"etcd unreachable: {exc}") from exc
