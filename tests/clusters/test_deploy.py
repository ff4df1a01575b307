"""Deploy end to end: services plan and allocate, the real Celery worker creates containers on the
real dockerd nodes; then Docker, etcd and the DB are inspected."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.core.exceptions import ValidationError

from agents import tasks
from clusters import etcd, queue, selectors, services, sync
from clusters.models import AuditEvent, Deployment, Node, Workload
from engine import docker
from tests.conftest import IMAGE, wait_for

pytestmark = pytest.mark.services


def _deploy(pod: Any, **kwargs: Any) -> Deployment:
    params = {"app": "web", "entrypoint": "main", "image": IMAGE, "command": ["sleep", "3600"], **kwargs}
    spec = services.deployment_validate(pod=pod, data=params)
    return services.deployment_create(actor=services.SYSTEM, spec=spec)


def _finished(deployment: Deployment) -> Deployment:
    return wait_for(lambda: (d := Deployment.objects.get(pk=deployment.pk)).is_final and d)


def _usage(name: str) -> tuple[dict[str, int], float, int]:
    node = Node.objects.get(name=name)
    return node.used_cpu_map, node.used_cpu, node.used_memory


def test_bound_deploy_creates_pinned_containers_with_labels_and_etcd_keys(
    nodes: list[Any], worker: Any, docker_clean: dict[str, Any]
) -> None:
    pod = nodes[0].pod
    d = _finished(_deploy(pod, count=2, cpu_request=1, cpu_limit=1, memory_limit="64M", cpu_bind=True))
    assert d.state == Deployment.State.DONE
    assert d.succeeded == 2
    assert d.failed == 0
    assert d.plan == {"node1": 1, "node2": 1}  # AUTO spreads evenly
    wait_for(lambda: sync.check().count == 0)  # the mirror is written just after each commit
    keys = etcd.get_prefix(etcd.key("/"))
    for w in Workload.objects.select_related("node"):
        assert w.state == Workload.State.RUNNING
        assert w.container_id
        assert w.name.startswith("web_main_")
        assert len(w.name.split("_")[-1]) == 6
        container = docker_clean[w.node.name].containers.get(w.container_id)
        host = container.attrs["HostConfig"]
        assert container.status == "running"
        assert host["CpusetCpus"] == ",".join(sorted(w.cpu_map, key=int))
        assert sum(w.cpu_map.values()) == 100
        assert host["CpuQuota"] in (0, -1)
        assert host["Memory"] == 64 << 20
        labels = container.labels
        assert labels["ERU"] == "1"
        assert labels["eru.nodename"] == w.node.name
        assert "APP_NAME=web" in container.attrs["Config"]["Env"]
        assert etcd.workload_key(w.container_id) in keys
        assert etcd.deploy_key("web", "main", w.node.name, w.container_id) in keys
        assert etcd.node_workload_key(w.node.name, w.container_id) in keys
        stored = json.loads(keys[etcd.workload_key(w.container_id)])
        assert stored["name"] == w.name
        assert stored["nodename"] == w.node.name
        used_map, used_cpu, used_mem = _usage(w.node.name)
        assert used_map == w.cpu_map
        assert used_cpu == 1.0
        assert used_mem == 64 << 20
        resource = json.loads(keys[etcd.resource_key(w.node.name)])
        assert resource["usage"]["memory"] == 64 << 20
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"deployment.create", "workload.created"} <= actions


def test_unbound_deploy_sets_cfs_quota(nodes: list[Any], worker: Any, docker_clean: dict[str, Any]) -> None:
    pod = nodes[0].pod
    d = _finished(
        _deploy(
            pod,
            count=1,
            cpu_request=0.5,
            cpu_limit=0.5,
            memory_limit="32M",
            cpu_bind=False,
            node_names=["node2"],
        )
    )
    w = d.workloads.get()
    host = docker_clean["node2"].containers.get(w.container_id).attrs["HostConfig"]
    assert host["CpuPeriod"] == 100000
    assert host["CpuQuota"] == 50000
    assert host["CpusetCpus"] == "0,1"  # the share pool: every core, none bound yet (remap)
    assert w.cpu_map == {}
    assert _usage("node2") == ({}, 0.5, 32 << 20)


def test_create_task_run_twice_makes_one_container(
    nodes: list[Any], docker_clean: dict[str, Any], monkeypatch: Any
) -> None:
    pod = nodes[0].pod
    monkeypatch.setattr(
        queue, "enqueue_each", lambda *args, **kwargs: None
    )  # no worker: the test runs the task
    d = _deploy(pod, count=1, cpu_limit=0.5, cpu_bind=False, node_names=["node1"])
    w = d.workloads.get()
    # A first attempt claimed the workload and made the container, then its worker died before
    # reporting: the redelivered task must find that container, not make a second one.
    claimed = services.workload_claim(workload_id=w.pk, task_id="T1", stale_after=300)
    first = docker.create_and_start(selectors.node_client(claimed.node), **selectors.container_spec(claimed))
    tasks.create_workload.apply(args=[w.pk], task_id="T2")  # another task: the claim is not its own
    assert Workload.objects.get(pk=w.pk).state == Workload.State.CREATING
    tasks.create_workload.apply(args=[w.pk], task_id="T1")  # the redelivery
    tasks.create_workload.apply(args=[w.pk], task_id="T1")  # and once more after it is running: a no-op
    assert Workload.objects.get(pk=w.pk).container_id == first.id
    containers = docker_clean["node1"].containers.list(all=True, filters={"label": "ERU=1"})
    assert [c.name for c in containers] == [w.name]
    d.refresh_from_db()
    assert d.succeeded == 1
    assert d.state == Deployment.State.DONE
    assert AuditEvent.objects.filter(action="workload.created").count() == 1


def test_failed_container_releases_its_allocation_and_says_why(
    nodes: list[Any], worker: Any, docker_clean: dict[str, Any]
) -> None:
    pod = nodes[0].pod
    before = _usage("node1")
    d = _finished(
        _deploy(
            pod,
            image="eru/missing:latest",
            count=1,
            cpu_request=1,
            cpu_bind=True,
            memory_limit="16M",
            node_names=["node1"],
        )
    )
    assert d.state == Deployment.State.FAILED
    assert d.failed == 1
    w = d.workloads.get()
    assert w.state == Workload.State.FAILED
    assert "image" in w.error.lower()
    assert _usage("node1") == before
    assert docker_clean["node1"].containers.list(all=True, filters={"label": "ERU=1"}) == []


def test_start_failure_removes_the_container(
    nodes: list[Any], worker: Any, docker_clean: dict[str, Any]
) -> None:
    pod = nodes[0].pod
    d = _finished(
        _deploy(
            pod, command=["/no/such/binary"], count=1, cpu_limit=0.5, cpu_bind=False, node_names=["node1"]
        )
    )
    w = d.workloads.get()
    assert w.state == Workload.State.FAILED
    assert w.error
    assert docker_clean["node1"].containers.list(all=True, filters={"label": "ERU=1"}) == []
    assert _usage("node1") == ({}, 0.0, 0)


def test_stop_start_restart_and_remove(nodes: list[Any], worker: Any, docker_clean: dict[str, Any]) -> None:
    pod = nodes[0].pod
    d = _finished(
        _deploy(pod, count=1, cpu_request=1, cpu_bind=True, memory_limit="16M", node_names=["node1"])
    )
    w = d.workloads.get()
    raw = docker_clean["node1"]
    services.workload_control(actor=services.SYSTEM, workload=w, action="stop")
    wait_for(lambda: Workload.objects.get(pk=w.pk).state == Workload.State.STOPPED)
    assert raw.containers.get(w.container_id).status == "exited"
    services.workload_control(actor=services.SYSTEM, workload=Workload.objects.get(pk=w.pk), action="start")
    wait_for(lambda: Workload.objects.get(pk=w.pk).state == Workload.State.RUNNING)
    assert raw.containers.get(w.container_id).status == "running"
    services.workload_remove(actor=services.SYSTEM, workload=Workload.objects.get(pk=w.pk))
    wait_for(lambda: not Workload.objects.filter(pk=w.pk).exists())
    assert raw.containers.list(all=True, filters={"label": "ERU=1"}) == []
    assert _usage("node1") == ({}, 0.0, 0)
    wait_for(lambda: etcd.get_prefix(etcd.key("/workloads/")) == {})  # written just after the commit
    actions = list(AuditEvent.objects.filter(target_name=w.name).values_list("action", flat=True))
    assert {"workload.stop", "workload.start", "workload.remove", "workload.removed"} <= set(actions)


def test_capacity_error_names_the_field_and_changes_nothing(nodes: list[Any]) -> None:
    pod = nodes[0].pod
    with pytest.raises(ValidationError) as err:
        _deploy(pod, count=50, cpu_request=1, cpu_bind=True, memory_limit="16M")
    assert "not enough resource" in err.value.message_dict["count"][0]
    assert not Deployment.objects.exists()
    assert not Workload.objects.exists()
    assert not AuditEvent.objects.filter(action="deployment.create").exists()
    assert _usage("node1") == ({}, 0.0, 0)


def test_down_node_gets_no_new_workloads(nodes: list[Any]) -> None:
    pod = nodes[0].pod
    services.node_set(actor=services.SYSTEM, node=nodes[0], bypass=True)
    plan = services.deployment_plan(
        services.deployment_validate(
            pod=pod,
            data={
                "app": "a",
                "entrypoint": "e",
                "image": IMAGE,
                "count": 3,
                "cpu_limit": 0.1,
                "cpu_bind": False,
            },
        )
    )
    assert plan == {"node2": 3}
    with pytest.raises(ValidationError, match="node is down"):
        _deploy(pod, node_names=["node1"], cpu_limit=0.1, cpu_bind=False)
    etcd.delete_heartbeat("node2")
    with pytest.raises(ValidationError, match="node map is empty"):
        _deploy(pod, cpu_limit=0.1, cpu_bind=False)


def test_claims_are_exclusive_until_stale(nodes: list[Any], monkeypatch: Any) -> None:
    monkeypatch.setattr(queue, "enqueue_each", lambda *args, **kwargs: None)
    w = _deploy(nodes[0].pod, count=1, cpu_limit=0.1, cpu_bind=False).workloads.get()
    assert services.workload_claim(workload_id=w.pk, task_id="A", stale_after=60) is not None
    assert services.workload_claim(workload_id=w.pk, task_id="B", stale_after=60) is None
    assert services.workload_claim(workload_id=w.pk, task_id="A", stale_after=60) is not None  # a retry
    assert services.workload_claim(workload_id=w.pk, task_id="B", stale_after=0) is not None  # A died
    assert services.workload_claim(workload_id=w.pk, task_id="A", stale_after=60) is None
    assert Workload.objects.get(pk=w.pk).task_id == "B"
    # A, whose claim was taken over, may no longer fail the row (B owns it and its container)
    assert services.workload_failed(workload_id=w.pk, error="late", task_id="A") is None
    assert Workload.objects.get(pk=w.pk).state == Workload.State.CREATING


def test_a_retry_renews_the_claim(nodes: list[Any], monkeypatch: Any) -> None:
    from datetime import timedelta

    from django.utils import timezone

    monkeypatch.setattr(queue, "enqueue_each", lambda *args, **kwargs: None)
    w = _deploy(nodes[0].pod, count=1, cpu_limit=0.1, cpu_bind=False).workloads.get()
    services.workload_claim(workload_id=w.pk, task_id="A", stale_after=60)
    Workload.objects.filter(pk=w.pk).update(claimed_at=timezone.now() - timedelta(seconds=50))
    assert services.workload_claim(workload_id=w.pk, task_id="A", stale_after=60) is not None  # renews
    Workload.objects.filter(pk=w.pk).update(
        claimed_at=Workload.objects.get(pk=w.pk).claimed_at - timedelta(seconds=20)
    )
    assert services.workload_claim(workload_id=w.pk, task_id="B", stale_after=60) is None  # 20 s old: A's


def test_a_failure_reported_twice_releases_once(nodes: list[Any], monkeypatch: Any) -> None:
    monkeypatch.setattr(queue, "enqueue_each", lambda *args, **kwargs: None)
    d = _deploy(nodes[0].pod, count=2, cpu_request=1, cpu_bind=True, memory_limit="16M", node_names=["node1"])
    first, second = d.workloads.order_by("pk")
    assert services.workload_failed(workload_id=first.pk, error="boom") is not None
    # The second report finds the row failed already: None, so its caller removes no container
    assert services.workload_failed(workload_id=first.pk, error="boom again") is None
    assert _usage("node1") == (second.cpu_map, 1.0, 16 << 20)
    assert Deployment.objects.get(pk=d.pk).failed == 1


def test_deploy_refuses_clearly_when_etcd_is_unreachable(
    nodes: list[Any], monkeypatch: Any, settings: Any
) -> None:
    monkeypatch.setattr(settings, "ERU_ETCD_ENDPOINTS", ["127.0.0.1:1"])
    etcd.reset_client()
    try:
        with pytest.raises(ValidationError) as err:
            _deploy(nodes[0].pod, cpu_limit=0.1, cpu_bind=False)
    finally:
        monkeypatch.undo()
        etcd.reset_client()
    assert "cannot tell which nodes are up" in err.value.message_dict["pod"][0]
    assert not Deployment.objects.exists()


def test_a_broker_outage_after_commit_is_not_the_users_error(nodes: list[Any], monkeypatch: Any) -> None:
    """Stopping Redis would take the session's worker down with it: the send is made to fail."""
    from celery import current_app

    attempts: list[str] = []

    def refuse(name: str, **kwargs: Any) -> None:
        attempts.append(name)
        raise ConnectionRefusedError("broker down")

    monkeypatch.setattr(current_app, "send_task", refuse)
    d = _deploy(nodes[0].pod, count=3, cpu_limit=0.1, cpu_bind=False)
    assert d.workloads.filter(state=Workload.State.PENDING).count() == 3  # committed, left for reconcile
    assert attempts == ["agents.create_workload"]  # the batch stopped at the first failure
    create, _ = services.workload_collect_stale(pending_after=0, claim_after=60)
    assert sorted(create) == sorted(d.workloads.values_list("pk", flat=True))
    assert services.workload_collect_stale(pending_after=60, claim_after=60) == ([], [])  # re-sent just now


def test_a_10m_limit_runs_with_docker_s_minimum_reservation(
    nodes: list[Any], worker: Any, docker_clean: dict[str, Any]
) -> None:
    """Eru's quickstart asks for --memory 10M: half of it (5M) would be refused by Docker."""
    d = _finished(
        _deploy(nodes[0].pod, cpu_limit=0.5, memory_limit="10M", cpu_bind=False, node_names=["node1"])
    )
    assert d.state == Deployment.State.DONE
    host = docker_clean["node1"].containers.get(d.workloads.get().container_id).attrs["HostConfig"]
    assert host["Memory"] == 10 << 20
    assert host["MemoryReservation"] == 6 << 20


def test_a_control_message_delivered_twice_acts_once(
    nodes: list[Any], docker_clean: dict[str, Any], monkeypatch: Any
) -> None:
    """acks_late redelivers a message whose worker died after acting: the restart it asked for
    happened, so the same message again (same task id) must not restart the container a second time."""
    sent: list[tuple[Any, ...]] = []
    monkeypatch.setattr(queue, "enqueue_each", lambda *args, **kwargs: sent.append((args, kwargs)))
    w = _deploy(nodes[0].pod, cpu_limit=0.5, cpu_bind=False, node_names=["node1"]).workloads.get()
    tasks.create_workload.apply(args=[w.pk], task_id="create")
    raw = docker_clean["node1"]

    def started_at() -> str:
        return str(raw.containers.get(w.name).attrs["State"]["StartedAt"])

    first = started_at()
    services.workload_control(actor=services.SYSTEM, workload=Workload.objects.get(pk=w.pk), action="restart")
    task_id = Workload.objects.get(pk=w.pk).task_id
    assert sent[-1] == (("agents.control_workload", [(w.pk, "restart")]), {"task_ids": [task_id]})
    tasks.control_workload.apply(args=[w.pk, "restart"], task_id=task_id)
    restarted = started_at()
    assert restarted != first
    row = Workload.objects.get(pk=w.pk)
    assert (row.action, row.task_id, row.state) == ("", "", Workload.State.RUNNING)
    tasks.control_workload.apply(args=[w.pk, "restart"], task_id=task_id)  # the redelivery
    assert started_at() == restarted
    tasks.control_workload.apply(args=[w.pk, "restart"], task_id="someone-else")  # a stray message
    assert started_at() == restarted
    assert AuditEvent.objects.filter(action="workload.restart").count() == 1
