"""Log forwarding by the agent, on the real nodes: to tcp and udp listeners of the test's own, with
Eru's metadata; a target that goes away and comes back; an agent restarted mid-stream."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from clusters.models import Node
from nodeagent.forward import fnv32a
from tests.agents.conftest import AgentProcess
from tests.conftest import wait_for

pytestmark = pytest.mark.services
COUNT = "i=0; while true; do i=$((i+1)); echo line-$i; sleep 0.05; done"


class Listener:
    """A tcp or udp listener on a fixed port that keeps every JSON line it gets; stop() and start()
    again on the same port."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.lines: list[dict[str, Any]] = []
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"{kind}://127.0.0.1:{self.port}"
        self._sock: socket.socket | None = None
        self._conns: list[socket.socket] = []

    def start(self) -> Listener:
        kind = socket.SOCK_STREAM if self.kind == "tcp" else socket.SOCK_DGRAM
        self._sock = socket.socket(socket.AF_INET, kind)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", self.port))
        if self.kind == "tcp":
            self._sock.listen()
        threading.Thread(target=self._serve, args=(self._sock,), daemon=True).start()
        return self

    def _serve(self, sock: socket.socket) -> None:
        try:
            if self.kind == "udp":
                while True:
                    self._take(sock.recv(65536))
            while True:
                conn, _ = sock.accept()
                self._conns.append(conn)
                threading.Thread(target=self._read, args=(conn,), daemon=True).start()
        except OSError:
            return

    def _read(self, conn: socket.socket) -> None:
        buffer = b""
        try:
            while chunk := conn.recv(65536):
                buffer += chunk
                *whole, buffer = buffer.split(b"\n")
                for line in whole:
                    self._take(line)
        except OSError:
            return

    def _take(self, raw: bytes) -> None:
        for line in raw.splitlines():
            if line:
                self.lines.append(json.loads(line))

    def stop(self) -> None:
        """Gone: the listening socket and every connection (shut down, which wakes their threads)."""
        for sock in [*self._conns, *([self._sock] if self._sock else [])]:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self._conns, self._sock = [], None

    def data(self, container_id: str) -> list[str]:
        return [x["data"] for x in self.lines if x["id"] == container_id]


@pytest.fixture
def listeners() -> Iterator[tuple[Listener, Listener]]:
    tcp, udp = Listener("tcp").start(), Listener("udp").start()
    yield tcp, udp
    tcp.stop()
    udp.stop()


def _numbers(lines: list[str]) -> list[int]:
    return [int(x.split("-")[1]) for x in lines if x.startswith("line-")]


def test_lines_reach_the_target_their_container_hashes_to_with_eru_s_metadata(
    deploy: Callable[..., Any], agent: Callable[..., AgentProcess], listeners: tuple[Listener, Listener]
) -> None:
    tcp, udp = listeners
    agent("node1", "--log-forwards", f"{tcp.url},{udp.url}")
    workloads = deploy("sh", "-c", "echo hello; echo oops >&2; sleep 600", count=4)
    for w in workloads:
        target = (tcp, udp)[fnv32a(w.container_id) % 2]
        wait_for(lambda w=w, target=target: len(target.data(w.container_id)) == 2, timeout=10, interval=0.05)
        other = udp if target is tcp else tcp
        assert other.data(w.container_id) == []
    w = workloads[0]
    target = (tcp, udp)[fnv32a(w.container_id) % 2]
    line = next(x for x in target.lines if x["id"] == w.container_id and x["type"] == "stdout")
    assert {k: line[k] for k in ("name", "entrypoint", "ident", "data", "type")} == {
        "name": "sw", "entrypoint": "e", "ident": w.name.rsplit("_", 1)[1], "data": "hello", "type": "stdout",
    }  # fmt: skip
    assert len(line["datetime"]) >= 19  # "2006-01-02 15:04:05.999999"
    assert line["extra"]["podname"] == "eru"
    assert line["extra"]["nodename"] == "node1"
    assert line["extra"][f"networks_{next(iter(w.networks))}"] == next(iter(w.networks.values()))
    assert [x["data"] for x in target.lines if x["id"] == w.container_id and x["type"] == "stderr"] == [
        "oops"
    ]


def test_a_target_away_and_back_loses_only_what_the_counter_says(
    deploy: Callable[..., Any], agent: Callable[..., AgentProcess], listeners: tuple[Listener, Listener]
) -> None:
    tcp, _ = listeners
    agent("node1", "--log-forwards", tcp.url)
    w = deploy("sh", "-c", COUNT)
    wait_for(lambda: len(tcp.data(w.container_id)) > 5, timeout=10)
    tcp.stop()
    time.sleep(2)  # the container goes on printing; the agent holds its lines
    tcp.start()
    seen = wait_for(lambda: (n := _numbers(tcp.data(w.container_id))) and n[-1] > 60 and n, timeout=15)
    node = wait_for(lambda: (x := Node.objects.get(name="node1")).agent_heard_at and x, timeout=5)
    missing = set(range(1, seen[-1] + 1)) - set(seen)
    assert len(missing) == node.agent_log_dropped == 0


def test_an_agent_restarted_mid_stream_goes_on_where_it_stopped(
    deploy: Callable[..., Any], agent: Callable[..., AgentProcess], listeners: tuple[Listener, Listener]
) -> None:
    tcp, _ = listeners
    first = agent("node1", "--log-forwards", tcp.url)
    w = deploy("sh", "-c", COUNT)
    wait_for(lambda: len(tcp.data(w.container_id)) > 5, timeout=10)
    first.signal(signal.SIGTERM)
    time.sleep(1.5)  # lines printed while no agent runs
    agent("node1", "--log-forwards", tcp.url)
    seen = wait_for(lambda: (n := _numbers(tcp.data(w.container_id))) and n[-1] > 80 and n, timeout=15)
    assert seen == list(range(1, seen[-1] + 1))  # every line, once, in order
