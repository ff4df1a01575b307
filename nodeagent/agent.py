"""The agent's work, in four threads: the heartbeat (SetNodeStatus, ttl = 3 × interval, only while
dockerd answers), the watcher (Docker's events of ERU containers; on start and after every reconnect a
list of all of them, reported as complete), the health checks (Eru's, every interval, and right
after a start: at once and after 1, 2, 4 and 8 s) and the sender (SetWorkloadsStatus in batches; an
unchanged status is not sent again within cache_ttl; a failed send is kept and tried again)."""

from __future__ import annotations

import heapq
import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import docker as docker_sdk
import grpc

from engine import docker, health
from nodeagent import status as st
from nodeagent.config import Config
from protocol import core_pb2 as pb
from protocol.client import CoreClient

log = logging.getLogger("nodeagent")
VERSION = "eru-portal-agent 0.1"
RECHECKS = (0.0, 1.0, 2.0, 4.0, 8.0)  # after a start, as Eru's agent
SETTLED = 11.0  # s after a (re)start: looked at again, so a crash loop that ended is seen to end
_ACTIONS = {"start", "die", "oom", "destroy", "pause", "unpause", "restart"}
BATCH = 200


class Agent:
    def __init__(self, config: Config, core: CoreClient | None = None) -> None:
        self.config = config
        self.core = core or CoreClient(
            config.core, config.principal, config.password, timeout=config.connection_timeout
        )
        self.stopping = threading.Event()
        self._lock = threading.Condition()
        self._known: dict[str, docker.ContainerInfo] = {}  # container id -> last inspect
        self._health: dict[str, str] = {}  # container id -> healthy / unhealthy
        self._pending: dict[str, pb.WorkloadStatus] = {}  # to send
        self._forced: set[str] = set()  # to send even if unchanged
        self._complete = False  # the next send is every container, complete
        self._sent: dict[str, tuple[float, pb.WorkloadStatus]] = {}  # what the core has, and when
        self._timers: list[tuple[float, int, str, str]] = []  # (when, seq, container id, what)
        self._seq = 0
        self._checks = ThreadPoolExecutor(max_workers=8, thread_name_prefix="health")
        self.sent_batches = 0
        self._pinger: docker_sdk.DockerClient | None = None
        self._seqs: dict[str, int] = {}  # container id -> statuses sent for it

    # --- docker ---------------------------------------------------------------------------------
    def _docker(self) -> docker_sdk.DockerClient:
        return docker.connect_local(
            self.config.docker_endpoint, timeout=int(self.config.connection_timeout) + 1
        )

    def _inspect(self, client: docker_sdk.DockerClient, container_id: str, name: str = "") -> None:
        info = docker.inspect(client, container_id)
        with self._lock:
            if info is None:
                old = self._known.pop(container_id, None)
                self._health.pop(container_id, None)
                self._queue(st.missing(container_id, name or (old.name if old else ""), self.config.hostname))
                return
            self._known[container_id] = info
            self._queue(self._report(info))

    def _report(self, info: docker.ContainerInfo) -> pb.WorkloadStatus:
        return st.report(info, self.config.hostname, self._health.get(info.id, ""))

    def _queue(self, message: pb.WorkloadStatus, *, force: bool = False) -> None:
        """Under self._lock."""
        self._pending[message.id] = message
        if force:
            self._forced.add(message.id)
        self._lock.notify_all()

    def _after(self, delay: float, container_id: str, what: str) -> None:
        with self._lock:
            self._seq += 1
            heapq.heappush(self._timers, (time.monotonic() + delay, self._seq, container_id, what))
            self._lock.notify_all()

    # --- the watcher ------------------------------------------------------------------------------
    def watch(self) -> None:
        backoff = 0.5
        while not self.stopping.is_set():
            stream, client = None, None
            try:
                client = self._docker()
                stream = docker.events(client)  # subscribed before the list: nothing falls between
                self._list_all(client)
                backoff = 0.5
                self._watching = stream
                for event in stream:
                    if self.stopping.is_set():
                        break
                    self._event(client, event)
                if not self.stopping.is_set():
                    log.warning("docker's event stream ended (dockerd restarted?): reconnecting")
            except Exception as exc:  # noqa: BLE001 — dockerd away, or anything else: try again
                if not self.stopping.is_set():
                    log.warning("docker: %s; again in %.1f s", exc, backoff)
            finally:
                if stream is not None:
                    stream.close()
                if client is not None:
                    client.close()
            self.stopping.wait(backoff)
            backoff = min(backoff * 2, 5.0)

    def _list_all(self, client: docker_sdk.DockerClient) -> None:
        found = {
            c.id: c
            for c in docker.list_eru(client)
            if c.labels.get("eru.nodename") in (None, self.config.hostname)
        }
        infos = [docker.inspect(client, cid) for cid in found]
        with self._lock:
            gone = [cid for cid in self._known if cid not in found]
            for cid in gone:
                self._known.pop(cid)
                self._health.pop(cid, None)
            for info in infos:
                if info is not None:
                    self._known[info.id] = info
            self._complete = True
            self._lock.notify_all()
        for info in infos:
            if info is not None and info.status == "running":
                self._schedule_checks(info)

    def _event(self, client: docker_sdk.DockerClient, event: dict[str, Any]) -> None:
        action = str(event.get("Action") or event.get("status") or "").split(":")[0]
        if action not in _ACTIONS:
            return
        cid = str(event.get("id") or "")
        attributes = (event.get("Actor") or {}).get("Attributes") or {}
        if attributes.get("eru.nodename") not in (None, self.config.hostname):
            return
        self._inspect(client, cid, str(attributes.get("name") or ""))
        if action in ("start", "restart", "unpause"):
            info = self._known.get(cid)
            if info is not None:
                self._schedule_checks(info)
                self._after(SETTLED, cid, "inspect")

    # --- health -----------------------------------------------------------------------------------
    def _schedule_checks(self, info: docker.ContainerInfo) -> None:
        if st.healthcheck(info.labels) is None:
            return
        for delay in RECHECKS:
            self._after(delay, info.id, "check")

    def _check(self, container_id: str) -> None:
        with self._lock:
            info = self._known.get(container_id)
        check = st.healthcheck(info.labels) if info else None
        if info is None or check is None or info.status != "running":
            return
        address = st.address(info)
        ok = bool(address) and health.check(address, check, self.config.healthcheck_timeout)
        with self._lock:
            if self._known.get(container_id) is not info:  # changed meanwhile: its own checks follow
                return
            self._health[container_id] = st.HEALTHY if ok else st.UNHEALTHY
            self._queue(self._report(info))

    def timers(self) -> None:
        """Due re-checks and re-inspects; the full health sweep every healthcheck.interval."""
        next_sweep = time.monotonic() + self.config.healthcheck_interval
        client: docker_sdk.DockerClient | None = None
        while not self.stopping.is_set():
            with self._lock:
                now = time.monotonic()
                due = []
                while self._timers and self._timers[0][0] <= now:
                    due.append(heapq.heappop(self._timers))
                wait = next_sweep - now
                if self._timers:
                    wait = min(wait, self._timers[0][0] - now)
                if not due and now < next_sweep:
                    self._lock.wait(timeout=max(wait, 0.01))
                    continue
            if now >= next_sweep:
                next_sweep = now + self.config.healthcheck_interval
                with self._lock:
                    running = [i.id for i in self._known.values() if i.status == "running"]
                due += [(now, 0, cid, "check") for cid in running]
            for _, _, cid, what in due:
                if what == "check":
                    self._checks.submit(self._check, cid)
                else:
                    try:
                        client = client or self._docker()
                        self._inspect(client, cid)
                        with self._lock:
                            if cid in self._pending:
                                self._forced.add(cid)
                    except docker.DockerError as exc:
                        log.warning("re-inspect of %s failed: %s", cid[:12], exc)

    # --- the sender -------------------------------------------------------------------------------
    def send(self) -> None:
        while not self.stopping.is_set():
            with self._lock:
                while not (self._pending or self._complete) and not self.stopping.is_set():
                    self._lock.wait(timeout=1.0)
                if self.stopping.is_set():
                    return
                complete = self._complete
                if complete:
                    batch = [self._report(i) for i in self._known.values()]
                    self._pending.clear()
                    self._forced.clear()
                    self._complete = False
                else:
                    batch = self._fresh()
                for m in batch:  # numbered: a core that saw the one before may skip an unchanged one
                    self._seqs[m.id] = m.seq = self._seqs.get(m.id, 0) + 1
            if not batch and not complete:
                continue
            if not self._deliver(batch, complete):
                with self._lock:  # kept: newer news for a container wins
                    if complete:
                        self._complete = True
                    for m in batch:
                        self._pending.setdefault(m.id, m)
                self.stopping.wait(1.0)

    def _fresh(self) -> list[pb.WorkloadStatus]:
        """Under self._lock: the pending statuses the core does not have yet (or had long ago)."""
        now = time.monotonic()
        ttl = self.config.healthcheck_cache_ttl
        batch = []
        for cid, m in list(self._pending.items())[:BATCH]:
            del self._pending[cid]
            last = self._sent.get(cid)
            if (
                cid in self._forced
                or last is None
                or not st.same(last[1], m)
                or now - last[0] > ttl * random.uniform(0.875, 1.125)
            ):
                batch.append(m)
            self._forced.discard(cid)
        return batch

    def _deliver(self, batch: list[pb.WorkloadStatus], complete: bool) -> bool:
        for attempt in range(3):
            try:
                answer = self.core.set_workloads_status(
                    batch, complete=complete, nodename=self.config.hostname
                )
                taken = {s.id for s in answer.status}  # the core's workloads, recorded
                now = time.monotonic()
                with self._lock:
                    if complete:
                        self._sent.clear()
                    for m in batch:  # one not taken (its row not made yet, say) is sent again next time
                        if m.status == st.MISSING or m.id not in taken:
                            self._sent.pop(m.id, None)
                        else:
                            self._sent[m.id] = (now, m)
                self.sent_batches += 1
                return True
            except grpc.RpcError as exc:
                log.warning("SetWorkloadsStatus failed (%s): %s", exc.code(), exc.details())
                self.stopping.wait(0.2 * 2**attempt)
        return False

    # --- the heartbeat ----------------------------------------------------------------------------
    def heartbeat(self) -> None:
        interval = self.config.heartbeat_interval
        if interval <= 0:
            return
        while not self.stopping.is_set():
            self.beat_once()
            self.stopping.wait(interval)

    def beat_once(self) -> None:
        try:
            self._pinger = self._pinger or self._docker()
            docker.ping(self._pinger)
        except docker.DockerError as exc:
            log.warning("dockerd does not answer, no heartbeat: %s", exc)
            return
        try:
            ttl = 3 * self.config.heartbeat_interval
            if self.core.set_node_status(self.config.hostname, ttl, version=VERSION):
                log.info("the core had lost this node: reporting every container again")
                with self._lock:
                    self._complete = True
                    self._lock.notify_all()
        except grpc.RpcError as exc:
            log.warning("SetNodeStatus failed (%s): %s", exc.code(), exc.details())

    # --- the whole --------------------------------------------------------------------------------
    def start(self) -> list[threading.Thread]:
        threads = [
            threading.Thread(target=fn, name=fn.__name__, daemon=True)
            for fn in (self.heartbeat, self.watch, self.timers, self.send)
        ]
        for t in threads:
            t.start()
        return threads

    def stop(self) -> None:
        """A clean exit: the watcher and the timers end, and the node's heartbeat key goes (ttl −1)."""
        self.stopping.set()
        with self._lock:
            self._lock.notify_all()
        watching = getattr(self, "_watching", None)
        if watching is not None:
            watching.close()
        if self.config.heartbeat_interval > 0:
            try:
                self.core.set_node_status(self.config.hostname, -1, version=VERSION)
            except grpc.RpcError as exc:
                log.warning("could not tell the core this agent stops: %s", exc.details())
        self._checks.shutdown(wait=False, cancel_futures=True)
        self.core.close()
