"""Metrics, on the real nodes: the agent's Prometheus /metrics and statsd gauges with Eru's names and
labels, its push into the core's usage history, and the core's own poll of one-shot Docker stats for
nodes without an agent."""

from __future__ import annotations

import socket
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agents import tasks, usage
from clusters import etcd
from clusters.models import NodeUsage, WorkloadUsage
from tests.agents.conftest import AgentProcess
from tests.conftest import wait_for

pytestmark = pytest.mark.services
BUSY = "while true; do :; done"  # one core's worth, held to its limit by the CFS quota


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scrape(port: int) -> dict[str, list[Any]]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


class Statsd:
    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.gauges: dict[str, float] = {}
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            for line in self.sock.recv(65536).decode().splitlines():
                name, _, rest = line.partition(":")
                self.gauges[name] = float(rest.split("|")[0])


def _latest_cpu(workload_id: int) -> float | None:
    row = WorkloadUsage.objects.filter(workload_id=workload_id, step=15).order_by("-at").first()
    return row.cpu if row else None


def test_the_agent_exports_eru_s_gauges_and_feeds_the_history(
    deploy: Callable[..., Any], agent: Callable[..., AgentProcess]
) -> None:
    port, sink = _free_port(), Statsd()
    agent("node1", "--api-addr", f"127.0.0.1:{port}", "--metrics-step", "1", "--metrics-transfers",
          f"127.0.0.1:{sink.port}")  # fmt: skip
    w = deploy("sh", "-c", BUSY, cpu_limit=0.5, labels={"team": "blue"})
    mine = {"containerID": w.container_id, "hostname": "node1", "appname": "sw", "entrypoint": "e",
            "orchestrator": "ERU", "labels": "team=blue"}  # fmt: skip

    def gauge(name: str, **extra: str) -> float | None:
        for s in _scrape(port).get(name, []):
            if s.labels == {**mine, **extra}:
                return float(s.value)
        return None

    wait_for(lambda: gauge("cpu_container_usage") is not None, timeout=15)
    time.sleep(2)  # a few steps: the rates settle
    assert 0.8 <= (gauge("cpu_container_usage") or 0) <= 1.1  # 0.5 cores of a 0.5 limit
    assert 0.4 <= (gauge("cpu_host_usage") or 0) * 2 <= 0.6  # of the host's 2 cores
    assert (gauge("mem_usage") or 0) > 0
    assert 0 < (gauge("mem_percent") or 0) < 1  # of its 16 MiB limit
    assert gauge("bytes_recv", nic="eth0") is not None
    assert _scrape(port)["eru_agent_log_lines_dropped"][0].value == 0
    prefix = f"ERU.sw.e.node1.{w.container_id[-7:]}"
    wait_for(lambda: f"{prefix}.cpu_container_usage" in sink.gauges, timeout=5)
    assert f"{prefix}.eth0.bytes.recv" in sink.gauges
    # pushed over the agent's gRPC link into the core's history, every step
    wait_for(lambda: 0.4 <= (_latest_cpu(w.pk) or 0) <= 0.6, timeout=10)
    node_row = NodeUsage.objects.filter(node=w.node, step=15).order_by("-at").first()
    assert node_row is not None
    assert node_row.memory > 0
    assert WorkloadUsage.objects.filter(workload=w, step=300).exists()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/version/", timeout=5) as answer:
        assert b"eru-portal-agent" in answer.read()


def test_the_core_polls_nodes_without_an_agent_from_two_one_shot_samples(deploy: Callable[..., Any]) -> None:
    w = deploy("sh", "-c", BUSY, node="node2", cpu_limit=0.5)
    first = usage.poll_node(w.node)
    assert (first.recorded, first.errors) == (1, {})
    assert _latest_cpu(w.pk) is None  # one sample: no rate yet
    time.sleep(2)
    tasks.sweep_nodes()  # the heartbeats of the nodes that answer
    assert {p.node: p.recorded for p in usage.poll()} == {"node1": 0, "node2": 1}
    etcd.client().delete(etcd.key("/status:node/node1"))  # node1 down: not polled
    time.sleep(1)
    assert [p.node for p in usage.poll()] == ["node2"]
    assert 0.25 <= (_latest_cpu(w.pk) or 0) <= 0.6  # its quota is 0.5; a loaded host gives it less
    # The latest bucket of each (the polls may straddle a 15 s boundary): its one workload's rate.
    latest = NodeUsage.objects.filter(node=w.node, step=15).order_by("-at").first()
    assert latest is not None
    assert latest.cpu == pytest.approx(_latest_cpu(w.pk))
