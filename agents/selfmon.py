"""Selfmon, as in Eru's core: exactly one core at a time (the holder of the etcd key /selfmon/active, on
a lease of ERU_SELFMON_TTL seconds kept alive every third of it) watches the agent-managed nodes. A
node whose heartbeat key is gone — its lease expired, or its agent deleted it on a clean exit — is
marked down, its workloads unknown, and audited once (clusters.services.node_lost, which looks at the
key again under the node's lock). The leader looks once a second: a read of the heartbeat keys and
one of the agent-managed nodes; a watch would miss what happens while it reconnects, a look misses
nothing."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

from django.conf import settings
from django.db import close_old_connections

from clusters import etcd, services
from clusters.models import Node

log = logging.getLogger(__name__)
KEY = "/selfmon/active"
LOST = "no heartbeat from its agent: its lease expired or its agent stopped"


def check() -> list[str]:
    """One look: the agent-managed nodes without a heartbeat key are lost. Returns their names."""
    alive = etcd.alive_nodes(strict=True)
    lost = []
    for node in Node.objects.filter(agent=True, last_error="").exclude(name__in=alive).select_related("pod"):
        if services.node_lost(node=node, error=LOST):
            lost.append(node.name)
            log.warning("selfmon: node %s lost (%s)", node.name, LOST)
    return lost


class Selfmon(threading.Thread):
    """Campaign for the lead; while leading, check() every `poll` seconds. stop() resigns."""

    def __init__(self, *, ttl: int | None = None, poll: float = 1.0, ident: str = "") -> None:
        super().__init__(name="selfmon", daemon=True)
        self.ttl = ttl or settings.ERU_SELFMON_TTL
        self.poll = poll
        self.me = ident or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.leading = threading.Event()
        self._halt = threading.Event()
        self._lease: int | None = None
        self._kept = 0.0

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                self._round()
            except Exception:  # etcd or the database away: try again, never die
                log.exception("selfmon: round failed")
                self._halt.wait(1.0)
            finally:
                close_old_connections()
        if self._lease is not None:
            try:
                etcd.resign(KEY, self._lease)
            except etcd.EtcdError as exc:
                log.warning("selfmon: resign failed: %s", exc)
        self.leading.clear()

    def _round(self) -> None:
        if self._lease is None:
            self._lease = etcd.campaign(KEY, self.me, self.ttl)
            if self._lease is None:
                self.leading.clear()
                self._halt.wait(self.ttl / 3)
                return
            log.info("selfmon: %s leads", self.me)
            self.leading.set()
            self._kept = time.monotonic()
        if time.monotonic() - self._kept >= self.ttl / 3:
            if not etcd.refresh_lease(self._lease):
                log.warning("selfmon: %s lost the lead", self.me)
                self._lease = None
                self.leading.clear()
                return
            self._kept = time.monotonic()
        check()
        self._halt.wait(self.poll)
