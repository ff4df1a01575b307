"""The node agent against the real dockerd nodes: a real `python -m nodeagent` process per node, the
core's gRPC door and selfmon in this process; each test checks the DB, etcd and Docker."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest

from clusters import etcd
from clusters.models import AuditEvent, Node, Workload
from tests.agents.conftest import BEAT, AgentProcess, Core
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


def _actions(w: Workload) -> list[str]:
    return list(AuditEvent.objects.filter(target_name=w.name).order_by("id").values_list("action", flat=True))


def test_an_http_check_flips_healthy_unhealthy_healthy_and_each_flip_is_recorded(
    deploy: Callable[..., Any],
    agent: Callable[..., AgentProcess],
    docker_clean: dict[str, Any],
    settings: Any,
) -> None:
    settings.ERU_SWEEP_HEALTHCHECKS = False  # only the agent checks
    agent("node1")
    check = {"http_port": "8080", "url": "/", "code": 0}
    w = deploy(
        "sh",
        "-c",
        "mkdir -p /www; echo ok > /www/index.html; httpd -p 8080 -h /www; sleep 600",
        healthcheck=check,
    )
    wait_for(lambda: _row(w).health == Health.HEALTHY, timeout=10, interval=0.05)
    container = docker_clean["node1"].containers.get(w.container_id)
    container.exec_run(["killall", "httpd"])
    wait_for(lambda: _row(w).health == Health.UNHEALTHY, timeout=2 + 3, interval=0.05)  # the next round
    row = _row(w)
    assert row.status == Status.RUNNING
    assert row.health_since is not None
    container.exec_run(["httpd", "-p", "8080", "-h", "/www"])
    wait_for(lambda: _row(w).health == Health.HEALTHY, timeout=2 + 3, interval=0.05)
    assert [a for a in _actions(w) if a.startswith("workload.") and "health" in a] == [
        "workload.unhealthy",
        "workload.healthy",
    ]
    value, _ = etcd.client().get(etcd.workload_status_key(w.app, w.entrypoint, "node1", w.container_id))
    assert json.loads(value)["healthy"] is True


def test_an_agent_killed_takes_its_node_down_and_back_when_it_returns(
    deploy: Callable[..., Any], agent: Callable[..., AgentProcess], nodes: list[Any]
) -> None:
    from clusters import selectors, services

    process = agent("node1")
    workloads = deploy("sleep", "600", count=2)
    wait_for(lambda: all(_row(w).status == Status.RUNNING for w in workloads), timeout=5)
    process.signal(signal.SIGKILL)  # no clean exit: the lease runs out
    killed = time.monotonic()
    wait_for(lambda: _node().last_error, timeout=3 * BEAT + 3, interval=0.05)
    assert time.monotonic() - killed <= 3 * BEAT + 1.5
    assert all(_row(w).status == Status.UNKNOWN for w in workloads)
    assert "node1" not in [n.name for n in selectors.available_nodes(nodes[0].pod)]
    spec = services.deployment_validate(
        pod=nodes[0].pod,
        data={"app": "x", "entrypoint": "e", "image": "i", "count": 1, "node_names": ["node1"]},
    )
    with pytest.raises(Exception, match="node is down"):
        services.deployment_plan(spec)
    assert AuditEvent.objects.filter(action="node.unreachable", target_name="node1").count() == 1
    time.sleep(2)  # the sweep does not take the node back: it is its agent's
    assert _node().agent
    assert _node().last_error
    agent("node1")
    wait_for(lambda: all(_row(w).status == Status.RUNNING for w in workloads), timeout=3 * BEAT)
    # Its heartbeat and its first report go at once, on threads of their own: either may land first.
    wait_for(lambda: not _node().last_error, timeout=3 * BEAT)
    assert "node1" in [n.name for n in selectors.available_nodes(nodes[0].pod)]
    assert AuditEvent.objects.filter(action="node.reachable", target_name="node1").count() == 1
    assert AuditEvent.objects.filter(action="node.unreachable", target_name="node1").count() == 1


def test_an_agent_restarted_at_once_never_leaves_its_node_down(
    deploy: Callable[..., Any], agent: Callable[..., AgentProcess], nodes: list[Any]
) -> None:
    """Eru's own bug (core#497, agent#81): a quick restart left the node down for good."""
    process = agent("node1")
    w = deploy("sleep", "600")
    wait_for(lambda: _row(w).status == Status.RUNNING, timeout=5)
    process.signal(signal.SIGTERM)  # a clean exit deletes the heartbeat key (ttl −1)
    assert not etcd.is_alive("node1")
    again = agent("node1", wait=False)
    restarted = time.monotonic()
    wait_for(lambda: etcd.is_alive("node1") and not _node().last_error, timeout=BEAT + 3, interval=0.02)
    assert time.monotonic() - restarted <= BEAT + 2.5, again.tail()  # the process' start-up, then one beat
    wait_for(lambda: _row(w).status == Status.RUNNING, timeout=BEAT + 2)
    for _ in range(3 * BEAT * 4):  # and it stays up: selfmon never takes it down again
        assert etcd.is_alive("node1")
        time.sleep(0.25)
    assert not _node().last_error
    assert _row(w).status == Status.RUNNING


def test_a_dockerd_restart_is_followed_and_nothing_is_missed(
    deploy: Callable[..., Any], agent: Callable[..., AgentProcess], docker_clean: dict[str, Any], cluster: Any
) -> None:
    process = agent("node1")
    first, second = deploy("sleep", "600", count=2)
    wait_for(lambda: _row(second).status == Status.RUNNING, timeout=5)
    cluster.kill("node1")
    cluster.start("node1")  # --live-restore: the containers lived on
    raw = docker_clean["node1"]
    wait_for(lambda: "reconnecting" in process.tail() or "docker:" in process.tail(), timeout=10)
    raw.containers.get(first.container_id).kill()
    raw.containers.get(second.container_id).remove(force=True)
    wait_for(lambda: _row(first).status == Status.EXITED, timeout=8, interval=0.05)
    assert _row(first).exit_code == 137
    wait_for(lambda: _row(second).status == Status.MISSING, timeout=8, interval=0.05)
    assert "workload.missing" in _actions(second)


def test_redis_stopped_for_30_s_takes_no_node_down(agent: Callable[..., AgentProcess], cluster: Any) -> None:
    agent("node1")
    agent("node2")
    cluster.stop("redis")
    try:
        time.sleep(30)
        assert not Node.objects.exclude(last_error="").exists()
        assert etcd.is_alive("node1")
        assert etcd.is_alive("node2")
    finally:
        cluster.start("redis")
    assert not AuditEvent.objects.filter(action="node.unreachable").exists()


def test_a_second_agent_for_a_node_on_the_same_host_refuses_to_start(
    agent: Callable[..., AgentProcess], core: Core
) -> None:
    first = agent("node1")
    second = AgentProcess(core, first.node, first.secret_file.read_text(), "--connection-timeout", "2")
    result = second.run()
    assert result.returncode == 2
    assert "another agent for node node1 runs on this host" in result.stderr
    assert first.proc is not None
    assert first.proc.poll() is None  # the first one runs on


def test_selfmon_has_one_leader_and_a_lost_node_is_audited_once(
    agent: Callable[..., AgentProcess], core: Core
) -> None:
    from agents.selfmon import Selfmon

    other = Selfmon(ttl=3, poll=0.2)
    other.start()
    try:
        time.sleep(1)
        assert core.selfmon.leading.is_set()
        assert not other.leading.is_set()
        agent("node1").signal(signal.SIGKILL)
        wait_for(lambda: _node().last_error, timeout=3 * BEAT + 3)
        core.selfmon.stop()  # the leader goes: the other one takes over
        wait_for(other.leading.is_set, timeout=5)
        time.sleep(1)
    finally:
        other.stop()
    assert AuditEvent.objects.filter(action="node.unreachable", target_name="node1").count() == 1


def test_the_oom_killer_is_named_and_a_running_container_s_address_shown(
    deploy: Callable[..., Any], agent: Callable[..., AgentProcess], docker_clean: dict[str, Any]
) -> None:
    agent("node1")
    running = deploy("sleep", "600")
    w = deploy("sh", "-c", "sleep 1; dd if=/dev/zero of=/dev/null bs=64M count=1", memory_limit="8M")
    row = wait_for(lambda: (r := _row(w)).status == Status.OOM_KILLED and r, timeout=10, interval=0.05)
    assert row.exit_code == 137
    assert _actions(w)[-1] == "workload.oom_killed"
    ip = docker_clean["node1"].containers.get(running.container_id).attrs["NetworkSettings"]["Networks"]
    assert _row(running).networks == {"bridge": ip["bridge"]["IPAddress"]}


def test_a_node_lost_while_its_agent_lives_comes_back_with_every_status(
    deploy: Callable[..., Any], agent: Callable[..., AgentProcess]
) -> None:
    """The lease expired (etcd away a while, say) though the agent runs: selfmon takes the node
    down; the next heartbeat brings it back and the agent reports every container again."""
    agent("node1")
    w = deploy("sleep", "600")
    wait_for(lambda: _row(w).status == Status.RUNNING, timeout=5)
    etcd.delete_heartbeat("node1")
    wait_for(lambda: _row(w).status == Status.UNKNOWN, timeout=3, interval=0.02)
    wait_for(lambda: _row(w).status == Status.RUNNING, timeout=2 * BEAT + 2, interval=0.05)
    node = _node()
    assert not node.last_error
    assert not node.agent_resync  # the complete report came
    assert etcd.is_alive("node1")
    assert AuditEvent.objects.filter(action="node.reachable", target_name="node1").count() == 1
