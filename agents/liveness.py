"""A Celery worker's liveness, for the claims it holds. From worker_init until shutdown a thread of
the worker's main process keeps etcd's key /status:worker/<hostname> on a lease of TTL seconds
(renewed every TTL/3, one keepalive and one read; put again on a new lease when the old one was
lost, as after an etcd outage, or when the key went).
Every claim records its worker's hostname (Workload.claimed_by), so a claim whose worker's key is gone
is lost once services.workloads.CLAIM_GRACE seconds old (services.workloads.lost_claims): the work of
a worker killed mid-creation or mid-stop goes again at the next reconcile or re-send (seconds in the
HA mode), not after the claim's STALE_CLAIM minutes. A worker that cannot reach etcd keeps working;
its claims then age as before."""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

from celery import signals

from clusters import etcd

TTL = 10  # s: the key's lease

log = logging.getLogger(__name__)


class Keeper:
    """The thread keeping one worker's liveness key."""

    def __init__(self, hostname: str, ttl: int = TTL) -> None:
        self.hostname, self.ttl = hostname, ttl
        self.lease: int | None = None
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"liveness {hostname}", daemon=True)

    def start(self) -> Keeper:
        self.thread.start()
        return self

    def _run(self) -> None:
        failing = False
        while not self.stopped.is_set():
            try:
                if self._lost():
                    self.lease = etcd.worker_up(self.hostname, self.ttl)
                if failing:
                    log.info("worker liveness: %s reachable again", self.hostname)
                failing = False
            except etcd.EtcdError as exc:
                if not failing:
                    log.warning("worker liveness of %s: %s", self.hostname, exc)
                failing, self.lease = True, None  # a new lease once etcd answers
            self.stopped.wait(self.ttl / 3)

    def _lost(self) -> bool:
        """Whether the key must be put again: no lease yet, the lease expired, or the key went
        (deleted under its lease). One keepalive and one read."""
        if self.lease is None or not etcd.refresh_lease(self.lease):
            return True
        return not etcd.worker_seen(self.hostname)

    def stop(self) -> None:
        """End the thread, and the key with its lease (an orderly shutdown: the claims go at once
        to whoever is sent the work again, instead of after CLAIM_GRACE)."""
        self.stopped.set()
        self.thread.join(timeout=10)
        if self.lease is not None:
            with contextlib.suppress(etcd.EtcdError):
                etcd.resign(etcd.worker_key(self.hostname), self.lease)
            self.lease = None


_keepers: dict[str, Keeper] = {}
_lock = threading.Lock()


def keep(hostname: str) -> Keeper:
    """Start keeping the worker's key (once per hostname and process)."""
    with _lock:
        keeper = _keepers.get(hostname)
        if keeper is None:
            keeper = _keepers[hostname] = Keeper(hostname).start()
        return keeper


def release(hostname: str) -> None:
    with _lock:
        keeper = _keepers.pop(hostname, None)
    if keeper is not None:
        keeper.stop()


@signals.worker_init.connect(weak=False)
def _init(sender: Any = None, **_: Any) -> None:
    hostname = getattr(sender, "hostname", None)
    if hostname:
        keep(str(hostname))


@signals.worker_shutdown.connect(weak=False)
def _shutdown(sender: Any = None, **_: Any) -> None:
    hostname = getattr(sender, "hostname", None)
    if hostname:
        release(str(hostname))
