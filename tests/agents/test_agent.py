"""The node agent against the real dockerd nodes: a real `python -m nodeagent` process per node, the
core's gRPC door and selfmon in this process; each test checks the DB, etcd and Docker."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from clusters import etcd
from clusters.models import AuditEvent, Node, Workload
from tests.agents.conftest import AgentProcess
from tests.conftest import wait_for

pytestmark = pytest.mark.services
Status = Workload.Status
Health = Workload.Health


def _row(w: Workload) -> Workload:
    return Workload.objects.select_related("node").get(pk=w.pk)


def _node(name: str = "node1") -> Node:
    return Node.objects.get(name=name)


def test_the_agent_reports_an_exit_within_a_second(
    deploy: Callable[..., Any], agent: Callable[..., AgentProcess], docker_clean: dict[str, Any]
) -> None:
    process = agent("node1")
    w = deploy("sh", "-c", "sleep 3; exit 7")
    wait_for(lambda: _row(w).status == Status.RUNNING, timeout=5, interval=0.02)
    docker_clean["node1"].containers.get(w.container_id).wait(timeout=30)
    exited_at = time.monotonic()
    row = wait_for(lambda: (r := _row(w)).status == Status.EXITED and r, timeout=5, interval=0.01)
    assert time.monotonic() - exited_at < 1.0, process.tail()
    assert row.exit_code == 7
    node = _node()
    assert node.agent
    assert node.agent_version.startswith("eru-portal-agent")
    assert node.agent_heard_at is not None
    event = AuditEvent.objects.get(action="workload.exited", target_name=w.name)
    assert event.after["cause"] == "exit 7"
    assert AuditEvent.objects.filter(action="node.agent", target_name="node1").count() == 1
    value, _ = etcd.client().get(etcd.workload_status_key(w.app, w.entrypoint, "node1", w.container_id))
    assert json.loads(value) == {"id": w.container_id}
