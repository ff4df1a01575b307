"""The agent's work, in four threads: the heartbeat (SetNodeStatus, ttl = 3 × interval, only while
dockerd answers), the watcher (Docker's events of ERU containers; on start and after every reconnect a
list of all of them, reported as complete), the timers (health checks, Eru's: every interval, and right
after a start at once and after 1, 2, 4 and 8 s; re-inspects; re-sends) and the sender
(SetWorkloadsStatus in batches; an unchanged status is not sent again within cache_ttl; one the core
did not take, or that failed to go, is sent again a little later).

Every container's state lives under one lock. An inspect is numbered when it starts: a result that
comes back after a newer one started is dropped, so an older sight never overwrites a newer one."""

from __future__ import annotations

import heapq
import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import docker as docker_sdk
import grpc

from engine import docker, health
from nodeagent import status as st
from nodeagent.config import Config
from nodeagent.forward import Forwarder, check_targets
from nodeagent.metrics import Metrics
from protocol import core_pb2 as pb
from protocol.client import CoreClient

log = logging.getLogger("nodeagent")
VERSION = "eru-portal-agent 0.1"
RECHECKS = (0.0, 1.0, 2.0, 4.0, 8.0)  # after a start, as Eru's agent
SETTLED = 11.0  # s after a (re)start: looked at again, so a crash loop that ended is seen to end
RETRY = 2.0  # s before a status the core did not take is sent again
RETRIES = 5  # and how many times
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
        self._looks: dict[str, int] = {}  # container id -> number of the latest inspect started
        self._health: dict[str, str] = {}  # container id -> healthy / unhealthy
        self._checking: set[str] = set()  # health checks under way
        self._pending: dict[str, pb.WorkloadStatus] = {}  # to send
        self._forced: set[str] = set()  # to send even if unchanged
        self._retries: dict[str, int] = {}  # container id -> sends the core did not take, in a row
        self._complete = False  # the next send is every container, complete
        self._listed_at = 0.0  # when the list of the next complete send was made (unix time)
        self._sent: dict[str, tuple[float, pb.WorkloadStatus]] = {}  # what the core has, and when
        self._timers: list[tuple[float, int, str, str]] = []  # (when, n, container id, what)
        self._n = 0
        # Statuses are numbered per container from a base of this run's start, so a core never takes
        # a new run's status for the next one of an old run.
        self._base = int(time.time() * 1000) * 1_000_000
        self._seqs: dict[str, int] = {}
        self._checks = ThreadPoolExecutor(max_workers=8, thread_name_prefix="health")
        self._clients: dict[str, docker_sdk.DockerClient] = {}  # per thread role, kept
        self._threads: dict[str, threading.Thread] = {}
        self._watching: Any = None
        self.forwarder: Forwarder | None = None
        if config.log_forwards:
            check_targets(config.log_forwards)
            client = docker.connect_local(config.docker_endpoint, timeout=30, pool=64)
            self.forwarder = Forwarder(config.log_forwards, Path(config.run_dir), config.hostname, client)
        self.metrics = Metrics(
            hostname=config.hostname,
            step=config.metrics_step,
            client=lambda: self._docker("metrics"),
            running=self._running,
            core=self.core,
            transfers=config.metrics_transfers,
            dropped=lambda: self.forwarder.dropped if self.forwarder else 0,
        )
        self.api_port = 0  # where /metrics listens, once started (api.addr)

    def _running(self) -> list[docker.ContainerInfo]:
        with self._lock:
            return [i for i in self._known.values() if i.status == "running"]

    # --- docker -----------------------------------------------------------------------------------
    def _docker(self, role: str) -> docker_sdk.DockerClient:
        client = self._clients.get(role)
        if client is None:
            timeout = int(self.config.connection_timeout) + 1
            endpoint = self.config.docker_endpoint
            client = self._clients[role] = docker.connect_local(endpoint, timeout=timeout, pool=16)
        return client

    def _forget(self, role: str) -> None:
        client = self._clients.pop(role, None)
        if client is not None:
            client.close()

    def _start_look(self, container_id: str) -> int:
        """Under self._lock: number a new inspect of the container."""
        self._n += 1
        self._looks[container_id] = self._n
        return self._n

    def _inspect(
        self, client: docker_sdk.DockerClient, cid: str, name: str = "", *, force: bool = False
    ) -> None:
        with self._lock:
            look = self._start_look(cid)
        info = docker.inspect(client, cid)
        with self._lock:
            if self._looks.get(cid) != look:  # a newer inspect started meanwhile: its result counts
                return
            if info is None:
                old = self._known.pop(cid, None)
                self._health.pop(cid, None)
                self._looks.pop(cid, None)
                self._queue(st.missing(cid, name or (old.name if old else ""), self.config.hostname))
                return
            self._known[cid] = info
            self._queue(self._report(info), force=force)
        self._forward(info)

    def _forward(self, info: docker.ContainerInfo) -> None:
        if self.forwarder is not None and info.status == "running":
            self.forwarder.follow(info)

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
            self._n += 1
            heapq.heappush(self._timers, (time.monotonic() + delay, self._n, container_id, what))
            self._lock.notify_all()

    # --- the watcher ------------------------------------------------------------------------------
    def watch(self) -> None:
        backoff = 0.5
        while not self.stopping.is_set():
            stream = None
            try:
                client = self._docker("watch")
                stream = self._watching = docker.events(client)  # subscribed first: nothing falls between
                self._list_all(client)
                backoff = 0.5
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
                self._forget("watch")
            self.stopping.wait(backoff)
            backoff = min(backoff * 2, 5.0)

    def _list_all(self, client: docker_sdk.DockerClient) -> None:
        listed_at = time.time()
        mine = [
            c for c in docker.list_eru(client) if c.labels.get("eru.nodename") in (None, self.config.hostname)
        ]
        with self._lock:
            looks = {c.id: self._start_look(c.id) for c in mine}
        infos = {cid: docker.inspect(client, cid) for cid in looks}
        with self._lock:
            for cid in [cid for cid in self._known if cid not in looks]:
                self._known.pop(cid)
                self._health.pop(cid, None)
            for cid, info in infos.items():
                if self._looks.get(cid) != looks[cid]:
                    continue  # an event's newer inspect has it
                if info is None:
                    self._known.pop(cid, None)
                else:
                    self._known[cid] = info
            self._complete, self._listed_at = True, listed_at
            self._lock.notify_all()
        if self.forwarder is not None:
            self.forwarder.keep(set(looks))
        for info in infos.values():
            if info is not None and info.status == "running":
                self._schedule_checks(info)
                self._forward(info)

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
            with self._lock:
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
        try:
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
        finally:
            with self._lock:
                self._checking.discard(container_id)

    def timers(self) -> None:
        """Due checks, re-inspects and re-sends; the full health round every healthcheck.interval."""
        next_round = time.monotonic() + self.config.healthcheck_interval
        while not self.stopping.is_set():
            with self._lock:
                now = time.monotonic()
                due = []
                while self._timers and self._timers[0][0] <= now:
                    due.append(heapq.heappop(self._timers))
                if not due and now < next_round:
                    wait = next_round - now
                    if self._timers:
                        wait = min(wait, self._timers[0][0] - now)
                    self._lock.wait(timeout=max(wait, 0.01))
                    continue
                if now >= next_round:
                    next_round = now + self.config.healthcheck_interval
                    due += [(now, 0, i.id, "check") for i in self._known.values() if i.status == "running"]
            for _, _, cid, what in due:
                self._due(cid, what)

    def _due(self, cid: str, what: str) -> None:
        if what == "check":
            with self._lock:
                if cid in self._checking:  # one check of a container at a time: no backlog
                    return
                self._checking.add(cid)
            self._checks.submit(self._check, cid)
        elif what == "resend":
            with self._lock:
                info = self._known.get(cid)
                if info is not None and cid not in self._pending:
                    self._queue(self._report(info), force=True)
        else:
            try:
                self._inspect(self._docker("timers"), cid, force=True)
            except docker.DockerError as exc:
                self._forget("timers")
                log.warning("re-inspect of %s failed: %s", cid[:12], exc)

    # --- the sender -------------------------------------------------------------------------------
    def send(self) -> None:
        while not self.stopping.is_set():
            with self._lock:
                while not (self._pending or self._complete) and not self.stopping.is_set():
                    self._lock.wait(timeout=1.0)
                if self.stopping.is_set():
                    return
                complete, listed_at = self._complete, self._listed_at
                if complete:
                    batch = [self._report(i) for i in self._known.values()]
                    self._pending.clear()
                    self._forced.clear()
                    self._complete = False
                else:
                    batch = self._fresh()
                for m in batch:  # numbered: a core that has the one before may skip an unchanged one
                    self._seqs[m.id] = m.seq = self._seqs.get(m.id, self._base) + 1
            if not batch and not complete:
                continue
            if not self._deliver(batch, complete, listed_at):
                with self._lock:  # kept, unless newer news came meanwhile
                    if complete:
                        self._complete = True
                    for m in batch:
                        if m.id not in self._pending:
                            self._pending[m.id] = m
                            self._forced.add(m.id)
                self.stopping.wait(1.0)

    def _fresh(self) -> list[pb.WorkloadStatus]:
        """Under self._lock: the pending statuses the core does not have yet (or had long ago)."""
        now = time.monotonic()
        ttl = self.config.healthcheck_cache_ttl
        batch = []
        for cid, m in list(self._pending.items())[:BATCH]:
            del self._pending[cid]
            last = self._sent.get(cid)
            fresh = (
                last is None or not st.same(last[1], m) or now - last[0] > ttl * random.uniform(0.875, 1.125)
            )
            if cid in self._forced or fresh:
                batch.append(m)
            self._forced.discard(cid)
        return batch

    def _deliver(self, batch: list[pb.WorkloadStatus], complete: bool, listed_at: float) -> bool:
        for attempt in range(3):
            try:
                answer = self.core.set_workloads_status(
                    batch,
                    complete=complete,
                    nodename=self.config.hostname,
                    listed_at=listed_at if complete else 0.0,
                )
            except grpc.RpcError as exc:
                log.warning("SetWorkloadsStatus failed (%s): %s", exc.code(), exc.details())
                self.stopping.wait(0.2 * 2**attempt)
                continue
            self._taken(batch, {s.id for s in answer.status}, complete)
            return True
        return False

    def _taken(self, batch: list[pb.WorkloadStatus], taken: set[str], complete: bool) -> None:
        """What the core took it has; one it did not take (its row not made yet, a worker's action in
        flight) is sent again in RETRY s, RETRIES times at most."""
        now = time.monotonic()
        again = []
        with self._lock:
            if complete:
                self._sent.clear()
            for m in batch:
                if m.status == st.MISSING:
                    self._sent.pop(m.id, None)
                    self._seqs.pop(m.id, None)
                    self._retries.pop(m.id, None)
                elif m.id in taken:
                    self._sent[m.id] = (now, m)
                    self._retries.pop(m.id, None)
                else:
                    self._sent.pop(m.id, None)
                    self._retries[m.id] = self._retries.get(m.id, 0) + 1
                    if self._retries[m.id] <= RETRIES:
                        again.append(m.id)
        for cid in again:
            self._after(RETRY, cid, "resend")

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
            docker.ping(self._docker("heartbeat"))
        except docker.DockerError as exc:
            self._forget("heartbeat")
            log.warning("dockerd does not answer, no heartbeat: %s", exc)
            return
        try:
            ttl = 3 * self.config.heartbeat_interval
            dropped = self.forwarder.dropped if self.forwarder else 0
            if self.core.set_node_status(self.config.hostname, ttl, version=VERSION, dropped=dropped):
                log.info("the core had lost this node: reporting every container again")
                with self._lock:
                    self._complete, self._listed_at = True, 0.0
                    self._lock.notify_all()
        except grpc.RpcError as exc:
            log.warning("SetNodeStatus failed (%s): %s", exc.code(), exc.details())

    # --- the whole --------------------------------------------------------------------------------
    def start(self) -> None:
        if self.config.api_addr:
            self.api_port = self.metrics.serve(self.config.api_addr, VERSION)
            log.info("/metrics on %s (port %d)", self.config.api_addr, self.api_port)
        for fn in (self.heartbeat, self.watch, self.timers, self.send, self._metrics):
            thread = self._threads[fn.__name__] = threading.Thread(target=fn, name=fn.__name__, daemon=True)
            thread.start()

    def _metrics(self) -> None:
        self.metrics.run(self.stopping)

    def stop(self) -> None:
        """A clean exit: the threads end (a heartbeat under way first), then the node's heartbeat key
        goes (ttl −1), so no late heartbeat brings it back."""
        self.stopping.set()
        with self._lock:
            self._lock.notify_all()
        if self._watching is not None:
            self._watching.close()
        if self.forwarder is not None:
            self.forwarder.stop()  # its targets send what they hold; the cursors are saved
        beat = self._threads.get("heartbeat")
        if beat is not None:
            beat.join(timeout=2 * self.config.connection_timeout + 1)
        if self.config.heartbeat_interval > 0:
            try:
                self.core.set_node_status(self.config.hostname, -1, version=VERSION)
            except grpc.RpcError as exc:
                log.warning("could not tell the core this agent stops: %s", exc.details())
        for name, thread in self._threads.items():
            if name != "watch":  # it may sit in a read until dockerd says something: a daemon thread
                thread.join(timeout=2)
        self._checks.shutdown(wait=False, cancel_futures=True)
        self.metrics.close()
        for role in list(self._clients):
            self._forget(role)
        self.core.close()
