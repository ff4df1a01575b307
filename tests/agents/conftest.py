"""What the agent's tests share: the core's gRPC door with selfmon in this process, and node agents
as real processes of their own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from django import db

from clusters import principals, services
from clusters.models import Node
from protocol import core_pb2_grpc as pb_grpc
from tests.conftest import SOCKETS, TLS_DIR, wait_for

ROOT = Path(__file__).resolve().parents[2]
BEAT = 1  # the agents' heartbeat interval here (s): their lease is 3 s


@dataclass
class Core:
    port: int
    selfmon: Any

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@pytest.fixture
def core(transactional_db: Any) -> Iterator[Core]:
    """The gRPC door on a free port and selfmon (short lease, a look every 0.2 s), in threads here."""
    from agents import grpc_server
    from agents.selfmon import Selfmon

    principals.forget()
    server, port = grpc_server.serve("127.0.0.1:0", workers=8)
    selfmon = Selfmon(ttl=3, poll=0.2)
    selfmon.start()
    wait_for(selfmon.leading.is_set, timeout=10)
    yield Core(port, selfmon)
    selfmon.stop()
    server.stop(grace=1).wait()
    db.connections.close_all()


@pytest.fixture
def stub(core: Core) -> Iterator[pb_grpc.CoreRPCStub]:
    """A client of the door built from protocol/core.proto, as Eru's erucli is from Eru's."""
    channel = grpc.insecure_channel(core.address)
    yield pb_grpc.CoreRPCStub(channel)
    channel.close()


class AgentProcess:
    """`python -m nodeagent` for one test node, with its log."""

    def __init__(self, core: Core, node: Node, secret: str, *extra: str) -> None:
        self.node = node
        self.secret_file = TLS_DIR.parent / "run" / f"agent-{node.name}.secret"
        self.secret_file.parent.mkdir(parents=True, exist_ok=True)
        self.secret_file.write_text(secret)
        self.secret_file.chmod(0o600)
        self.log = TLS_DIR.parent / "run" / f"agent-{node.name}.log"
        self.argv = [
            sys.executable, "-m", "nodeagent", "--core", core.address, "--hostname", node.name,
            "--password-file", str(self.secret_file), "--docker-endpoint", SOCKETS[node.name],
            "--heartbeat-interval", str(BEAT), "--healthcheck-interval", "2", "--healthcheck-timeout", "1",
            "--run-dir", str(TLS_DIR.parent / "run"), *extra,
        ]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> AgentProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO")}
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        return self

    def run(self, timeout: float = 20) -> subprocess.CompletedProcess[str]:
        """Run to its end (an agent that refuses to start), with its output."""
        return subprocess.run(self.argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        self.proc.wait(timeout=15)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.signal(signal.SIGTERM)

    def tail(self) -> str:
        return self.log.read_text()[-3000:] if self.log.exists() else ""


@pytest.fixture
def agent(core: Core, nodes: list[Any]) -> Iterator[Callable[..., AgentProcess]]:
    """Start the agent of a node (made agent-managed by its first report); all stopped after the test."""
    started: list[AgentProcess] = []

    def start(name: str = "node1", *extra: str, wait: bool = True) -> AgentProcess:
        node = Node.objects.select_related("pod").get(name=name)
        secret = services.node_secret_rotate(actor=services.SYSTEM, node=node)
        process = AgentProcess(core, node, secret, *extra).start()
        started.append(process)
        if wait:
            wait_for(lambda: Node.objects.get(pk=node.pk).agent, timeout=15, interval=0.05)
        return process

    yield start
    for process in started:
        process.stop()
