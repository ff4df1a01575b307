"""The core notices what died, by itself: the sweep against the real dockerd nodes, each test checking
the DB, etcd and Docker together. A sweeper thread runs the sweep task every SWEEP seconds, as beat
does; tests that stop or kill a node start it again, whatever happens."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from io import StringIO
from typing import Any

import pytest
from django import db
from django.core.management import call_command
from django.core.management.base import CommandError
from rest_framework.test import APIClient

from agents import reconcile, tasks
from clusters import etcd, services
from clusters.models import AuditEvent, Deployment, Node, Workload
from embedded.services import Cluster
from tests.conftest import IMAGE, wait_for

pytestmark = pytest.mark.services
SWEEP = 1.0  # seconds between two sweeps here (the default is 5)
Status = Workload.Status


@pytest.fixture
def sweeper(nodes: list[Any]) -> Iterator[None]:
    """The sweep task every SWEEP seconds in a thread, as Celery beat runs it."""
    stop = threading.Event()

    def loop() -> None:
        try:
            while not stop.is_set():
                tasks.sweep_nodes()
                stop.wait(SWEEP)
        finally:
            db.connections.close_all()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(15)


def _row(w: Workload) -> Workload:
    return Workload.objects.select_related("node").get(pk=w.pk)


def _status_key(w: Workload) -> dict[str, Any] | None:
    import json

    value, _ = etcd.client().get(etcd.workload_status_key(w.app, w.entrypoint, w.node.name, w.container_id))
    return json.loads(value) if value is not None else None


def _key_shows(w: Workload, check: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The status key as soon as it passes `check` (it is written just after the row's commit)."""
    return wait_for(lambda: (key := _status_key(w)) is not None and check(key) and key, timeout=5)


def _actions(w: Workload) -> list[str]:
    return list(AuditEvent.objects.filter(target_name=w.name).order_by("id").values_list("action", flat=True))


def test_an_exit_is_seen_within_two_sweeps_with_its_code(
    deploy: Callable[..., Any], sweeper: None, docker_clean: dict[str, Any], admin_user: Any
) -> None:
    w = deploy("sh", "-c", "sleep 2; exit 5")
    assert _row(w).status == Status.RUNNING
    expected = {"id": w.container_id, "networks": w.networks, "running": True, "healthy": True}
    assert _key_shows(w, lambda key: key == expected) == expected
    container = docker_clean["node1"].containers.get(w.container_id)
    container.wait(timeout=30)
    exited_at = time.monotonic()
    row = wait_for(lambda: (r := _row(w)).status == Status.EXITED and r, timeout=2 * SWEEP + 1, interval=0.05)
    assert time.monotonic() - exited_at <= 2 * SWEEP + 1
    assert row.exit_code == 5
    assert row.state == Workload.State.RUNNING  # the lifecycle the portal drives is untouched
    assert row.node.observed_at is not None
    assert row.networks == {}  # an exited container has no address
    assert _key_shows(row, lambda key: "running" not in key) == {
        "id": w.container_id
    }  # nor healthy, no networks
    event = AuditEvent.objects.get(action="workload.exited", target_name=w.name)
    assert event.via == "system"
    assert event.after["cause"] == "exit 5"
    api = APIClient()
    api.force_authenticate(admin_user)
    shown = api.get(f"/api/workloads/{w.pk}/").json()
    assert (shown["state"], shown["status"], shown["exit_code"], shown["health"]) == (
        "running",
        "exited",
        5,
        "none",
    )
    assert shown["last_observed"] is not None
    assert [x["name"] for x in api.get("/api/workloads/", {"status": "exited"}).json()["results"]] == [w.name]
    assert api.get("/api/workloads/", {"status": "running"}).json()["results"] == []
    time.sleep(2 * SWEEP)  # more sweeps: no more rows, audit events or etcd writes for the same status
    assert _row(w).updated_at == row.updated_at
    assert _actions(w).count("workload.exited") == 1


def test_the_oom_killer_is_named(
    deploy: Callable[..., Any], sweeper: None, docker_clean: dict[str, Any]
) -> None:
    w = deploy("sh", "-c", "sleep 1; dd if=/dev/zero of=/dev/null bs=64M count=1", memory_limit="8M")
    row = wait_for(lambda: (r := _row(w)).status == Status.OOM_KILLED and r, timeout=15)
    assert docker_clean["node1"].containers.get(w.container_id).attrs["State"]["OOMKilled"]
    assert row.exit_code == 137
    assert _actions(w)[-1] == "workload.oom_killed"


def test_a_container_removed_behind_the_portal_s_back_is_missing_and_reconcile_says_so(
    deploy: Callable[..., Any], sweeper: None, docker_clean: dict[str, Any]
) -> None:
    w = deploy("sleep", "600")
    used = Node.objects.get(name="node1").used_memory
    docker_clean["node1"].containers.get(w.container_id).remove(force=True)
    row = wait_for(lambda: (r := _row(w)).status == Status.MISSING and r, timeout=2 * SWEEP + 1)
    assert (
        AuditEvent.objects.get(action="workload.missing").after["cause"]
        == "its container was removed outside the portal"
    )
    assert Node.objects.get(name="node1").used_memory == used  # held until the workload is removed
    key = _key_shows(row, lambda key: "running" not in key)
    assert key == {"id": w.container_id, "networks": w.networks}  # the networks it last had
    out = StringIO()
    with pytest.raises(CommandError) as found:
        call_command("reconcile", stdout=out)
    assert found.value.returncode == 1
    assert f"1 workload(s) whose container is missing {w.name}" in out.getvalue()
    with pytest.raises(CommandError):  # --repair cannot fix it, and says so
        call_command("reconcile", "--repair", stdout=(out := StringIO()))
    assert f"left: {w.name}: its container is missing" in out.getvalue()


def test_a_crash_loop_is_one_transition_and_a_growing_restart_count(
    deploy: Callable[..., Any], sweeper: None, docker_clean: dict[str, Any]
) -> None:
    w = deploy("sh", "-c", "sleep 0.3; exit 3")
    container = docker_clean["node1"].containers.get(w.container_id)
    container.update(restart_policy={"Name": "always"})  # the spec-file issue brings restart policies
    container.start()
    # The count from an inspect; the exit code too, once a look finds it between a crash and its
    # restart (a look that finds it running again tells the count only).
    row = wait_for(lambda: (r := _row(w)).restart_count >= 3 and r.exit_code == 3 and r, timeout=30)
    assert row.status == Status.RESTARTING
    assert _actions(w).count("workload.restarting") == 1  # one row for the loop, not one per crash
    assert "workload.started" not in _actions(w)[_actions(w).index("workload.restarting") :]
    container.update(restart_policy={"Name": "no"})
    container.remove(force=True)


def test_a_killed_dockerd_keeps_its_containers_and_none_is_missing(
    deploy: Callable[..., Any], sweeper: None, docker_clean: dict[str, Any], cluster: Cluster
) -> None:
    workloads = deploy("sleep", "600", count=2)
    raw = docker_clean["node1"]
    pids = {w.name: raw.containers.get(w.container_id).attrs["State"]["Pid"] for w in workloads}
    cluster.kill("node1")
    wait_for(lambda: all(_row(w).status == Status.UNKNOWN for w in workloads), timeout=2 * SWEEP + 6)
    assert AuditEvent.objects.filter(action="node.unreachable", target_name="node1").count() == 1
    assert "cannot reach" in Node.objects.get(name="node1").last_error
    cluster.start("node1")
    wait_for(lambda: all(_row(w).status == Status.RUNNING for w in workloads), timeout=2 * SWEEP + 6)
    assert {w.name: raw.containers.get(w.container_id).attrs["State"]["Pid"] for w in workloads} == pids
    assert AuditEvent.objects.filter(action="node.reachable", target_name="node1").count() == 1
    assert not AuditEvent.objects.filter(action__in=["workload.missing", "workload.exited"]).exists()
    assert Node.objects.get(name="node1").last_error == ""


def test_a_node_stopped_and_started_again_shows_what_became_of_its_containers(
    deploy: Callable[..., Any], sweeper: None, cluster: Cluster
) -> None:
    """As after `bin/eru down` + `up`: the node's containers were stopped with it, and say so."""
    w = deploy("sleep", "600", node="node2")
    cluster.stop("node2")
    wait_for(lambda: _row(w).status == Status.UNKNOWN, timeout=2 * SWEEP + 6)
    assert _row(w).health == Workload.Health.UNKNOWN
    cluster.start("node2")
    row = wait_for(lambda: (r := _row(w)).status == Status.EXITED and r, timeout=2 * SWEEP + 6)
    assert row.exit_code in (137, 255)  # killed with its node
    assert row.health == Workload.Health.NONE


def test_the_cluster_down_and_up_again_leaves_every_status_true(
    deploy: Callable[..., Any], docker_clean: dict[str, Any], cluster: Cluster, settings: Any
) -> None:
    """As `bin/eru down` + `up`, with this cluster's processes (etcd, Redis, PostgreSQL, the nodes):
    the nodes' containers stopped with them, and the first sweep after `up` says so of every row."""
    if "postgresql" in settings.DATABASES["default"]["ENGINE"]:
        pytest.skip("stops PostgreSQL, this pass's database")
    first, second = deploy("sleep", "600", node="node1"), deploy("sleep", "600", node="node2")
    done = deploy("sh", "-c", "exit 5", node="node2")
    wait_for(lambda: tasks.sweep_nodes() or _row(done).status == Status.EXITED, timeout=10)
    cluster.down()
    cluster.up()
    tasks.sweep_nodes()
    for w in (first, second):
        row = _row(w)
        assert row.status == Status.EXITED, row.name
        assert row.exit_code in (137, 255), row.name  # killed with its node
        assert docker_clean[row.node.name].containers.get(w.container_id).status == "exited"
        assert _key_shows(row, lambda key: "running" not in key) == {"id": w.container_id}
    assert (_row(done).status, _row(done).exit_code) == (Status.EXITED, 5)  # as it was
    assert set(Node.objects.values_list("last_error", flat=True)) == {""}
    assert {"node1", "node2"} <= etcd.alive_nodes(strict=True)
    assert not AuditEvent.objects.filter(action="workload.missing").exists()
    assert _actions(first)[-1] == "workload.exited"


def test_a_rogue_container_without_a_node_name_is_reported_then_removed(
    nodes: list[Any], docker_clean: dict[str, Any]
) -> None:
    """ERU=1 without eru.nodename: made by hand or by another tool, claimed by no row of any node."""
    raw = docker_clean["node2"]
    raw.containers.create(IMAGE, ["sleep", "600"], name="rogue_e_abcdef", labels={"ERU": "1"})
    out = StringIO()
    with pytest.raises(CommandError):
        call_command("reconcile", "--grace", "0", stdout=out)
    assert (
        "node2: 0 orphan container(s); 1 container(s) without eru.nodename rogue_e_abcdef" in out.getvalue()
    )
    call_command("reconcile", "--grace", "0", "--repair", stdout=(out := StringIO()))  # all fixed: exit 0
    assert "repaired: removed rogue_e_abcdef" in out.getvalue()
    assert raw.containers.list(all=True, filters={"label": "ERU=1"}) == []


def _claimed_by_a_dead_worker(nodes: list[Any], monkeypatch: Any) -> tuple[Workload, Workload]:
    """A deploy whose message is lost, its creation claimed by a task that then died: the row, and
    the claimed row (with its node)."""
    from clusters import queue

    monkeypatch.setattr(queue, "enqueue_each", lambda *args, **kwargs: None)  # the message is lost
    data = {"app": "ad", "entrypoint": "e", "image": IMAGE, "command": ["sleep", "600"], "cpu_limit": 0.1}
    spec = services.deployment_validate(
        pod=nodes[0].pod, data={**data, "cpu_bind": False, "node_names": ["node1"]}
    )
    w = services.deployment_create(actor=services.SYSTEM, spec=spec).workloads.get()
    claimed = services.workload_claim(workload_id=w.pk, task_id="dead", stale_after=300)
    assert claimed is not None
    return w, claimed


def test_a_creation_whose_worker_died_after_making_the_container_is_adopted(
    nodes: list[Any], docker_clean: dict[str, Any], monkeypatch: Any
) -> None:
    from clusters import selectors
    from engine import docker

    w, claimed = _claimed_by_a_dead_worker(nodes, monkeypatch)
    made = docker.create_and_start(selectors.node_client(claimed.node), **selectors.container_spec(claimed))
    report = reconcile.reconcile_node(Node.objects.get(name="node1"), repair=False)
    assert report.adoptable == [w.name]
    assert _row(w).state == Workload.State.CREATING  # reporting changes nothing
    reconcile.reconcile_node(Node.objects.get(name="node1"), repair=True)
    row = _row(w)
    assert (row.state, row.container_id, row.status) == (Workload.State.RUNNING, made.id, Status.RUNNING)
    assert _actions(w)[-1] == "workload.adopted"
    assert Deployment.objects.get(pk=w.deployment_id).state == Deployment.State.DONE


def test_a_creation_whose_worker_died_before_the_start_is_started_and_adopted(
    nodes: list[Any], docker_clean: dict[str, Any], monkeypatch: Any
) -> None:
    from clusters import selectors

    w, claimed = _claimed_by_a_dead_worker(nodes, monkeypatch)
    spec_ = selectors.container_spec(claimed)
    made = docker_clean["node1"].containers.create(
        spec_["image"], spec_["command"], name=spec_["name"], labels=spec_["labels"], network_mode="none"
    )
    node = Node.objects.get(name="node1")
    assert reconcile.reconcile_node(node, repair=True).adoptable == []  # just made: a worker may start it
    report = reconcile.reconcile_node(node, repair=True, grace=0)
    assert report.repaired == [f"adopted {w.name} (started it)"]
    made.reload()
    assert made.status == "running"
    row = _row(w)
    assert (row.state, row.container_id, row.status) == (Workload.State.RUNNING, made.id, Status.RUNNING)


def test_a_workload_on_a_dead_node_is_removed_at_once_and_its_container_later(
    deploy: Callable[..., Any], sweeper: None, docker_clean: dict[str, Any], cluster: Cluster, admin_user: Any
) -> None:
    w = deploy("sleep", "600", node="node2")
    cluster.kill("node2")  # dockerd only: its container survives, unreachable
    wait_for(lambda: Node.objects.get(name="node2").last_error, timeout=2 * SWEEP + 6)
    api = APIClient()
    api.force_authenticate(admin_user)
    assert api.delete(f"/api/workloads/{w.pk}/").status_code == 202
    assert _row(w).state == Workload.State.REMOVING  # one failed look: not down yet, a worker tries
    etcd.client().delete(etcd.node_status_key("node2"))  # its heartbeat expires (no sweep renews it)
    assert api.delete(f"/api/workloads/{w.pk}/").status_code == 204  # removed at once: nothing to show
    assert not Workload.objects.filter(pk=w.pk).exists()  # at once: no worker could reach the node
    node = Node.objects.get(name="node2")
    assert (node.used_cpu, node.used_memory) == (0.0, 0)
    assert etcd.get_prefix(etcd.key("/workloads/")) == {}
    event = AuditEvent.objects.filter(action="workload.remove", target_name=w.name).order_by("pk").last()
    assert event is not None
    assert "node node2 is down" in event.after["container"]
    cluster.start("node2")
    assert docker_clean["node2"].containers.get(w.container_id).status == "running"  # still there
    report = reconcile.reconcile_node(Node.objects.get(name="node2"), repair=True, grace=0)
    assert report.repaired == [f"removed {w.name}"]
    assert docker_clean["node2"].containers.list(all=True, filters={"label": "ERU=1"}) == []


def test_a_node_that_does_not_answer_and_has_no_workloads_can_be_removed(
    nodes: list[Any], cluster: Cluster, admin_user: Any
) -> None:
    cluster.kill("node2")
    tasks.sweep_nodes()
    api = APIClient()
    api.force_authenticate(admin_user)
    assert api.delete("/api/nodes/node2/").status_code == 204
    assert not Node.objects.filter(name="node2").exists()


def test_the_sweep_writes_nothing_when_nothing_changed(
    deploy: Callable[..., Any], django_assert_max_num_queries: Any, django_assert_num_queries: Any
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from agents import sweep

    deploy("sleep", "600", count=3)
    tasks.sweep_nodes()  # the first look of this process reads the rows and records what is new
    with django_assert_num_queries(4):  # rows changed within SETTLE: read again (a late commit?)
        tasks.sweep_nodes()
    Workload.objects.update(updated_at=timezone.now() - sweep.SETTLE - timedelta(seconds=1))
    tasks.sweep_nodes()  # the rows changed (their updated_at): read once more
    before = (AuditEvent.objects.count(), list(Workload.objects.values_list("updated_at", flat=True)))
    # a steady sweep, whatever the number of nodes and rows: the nodes, whether any row of theirs
    # changed (an aggregate), and one UPDATE of their observed_at
    with django_assert_max_num_queries(3):
        tasks.sweep_nodes()
    assert (AuditEvent.objects.count(), list(Workload.objects.values_list("updated_at", flat=True))) == before


def test_health_checks_on_a_node_without_an_agent_follow_the_container(
    deploy: Callable[..., Any], sweeper: None, docker_clean: dict[str, Any], settings: Any
) -> None:
    """The sweep checks from the worker's host (the embedded nodes' bridges are here): the port
    listens, then not, then again."""
    import json

    settings.ERU_HEALTHCHECK_INTERVAL = 0  # check at every sweep here
    w = deploy("sh", "-c", "httpd -p 8080 -h /tmp; sleep 600", healthcheck={"tcp_ports": ["8080"]})
    container = docker_clean["node1"].containers.get(w.container_id)
    meta = json.loads(container.labels["ERU_META"])
    assert meta["HealthCheck"] == {"TCPPorts": ["8080"], "HTTPPort": "", "HTTPURL": "/", "HTTPCode": 0}
    wait_for(lambda: _row(w).health == Workload.Health.HEALTHY, timeout=2 * SWEEP + 3)
    assert _key_shows(_row(w), lambda key: "healthy" in key)["running"] is True
    container.exec_run(["killall", "httpd"])
    wait_for(lambda: _row(w).health == Workload.Health.UNHEALTHY, timeout=2 * SWEEP + 3)
    row = _row(w)
    assert row.status == Status.RUNNING  # running, but not healthy
    assert _key_shows(row, lambda key: "healthy" not in key)["running"] is True
    container.exec_run(["httpd", "-p", "8080", "-h", "/tmp"])
    wait_for(lambda: _row(w).health == Workload.Health.HEALTHY, timeout=2 * SWEEP + 3)


def test_without_checks_from_the_workers_health_stays_unknown(
    deploy: Callable[..., Any], sweeper: None, settings: Any
) -> None:
    settings.ERU_SWEEP_HEALTHCHECKS = False  # workers that cannot reach the containers' addresses
    w = deploy("sh", "-c", "httpd -p 8080 -h /tmp; sleep 600", healthcheck={"tcp_ports": ["8080"]})
    time.sleep(2 * SWEEP + 1)
    assert _row(w).health == Workload.Health.UNKNOWN
