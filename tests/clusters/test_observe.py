"""The observation rules of clusters.services.observe, on rows and sights made here (database only):
a crash loop is one transition that ends once the container runs steadily, an OOM exit keeps its
name, and a row a worker is acting on is the worker's to write."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from agents import sweep
from clusters import selectors, services
from clusters.models import AuditEvent, Node, Workload
from clusters.services import observe
from engine import docker
from tests.factories import NodeFactory, WorkloadFactory

pytestmark = pytest.mark.django_db
Status = Workload.Status


@pytest.fixture
def node() -> Node:
    return NodeFactory(name="n1")


def _workload(node: Node, **fields: Any) -> Workload:
    w = WorkloadFactory(node=node, container_id="c" * 64, status=Status.RUNNING, **fields)
    Workload.objects.filter(pk=w.pk).update(updated_at=timezone.now() - timedelta(minutes=1))
    return w


def _look(node: Node, w: Workload, status: str, **seen: Any) -> str:
    """One look that finds w's container in `status`; the row's status after it."""
    sight = services.Seen(w.name, w.container_id, status, **seen)
    services.node_observe(node=node, seen=[sight], looked_at=timezone.now())
    return Workload.objects.get(pk=w.pk).status


def test_a_crash_loop_is_restarting_until_the_container_runs_steadily(node: Node) -> None:
    w = _workload(node)
    assert _look(node, w, Status.RUNNING, restart_count=2, up=1.0) == Status.RESTARTING  # count grew
    assert _look(node, w, Status.RUNNING, restart_count=2, up=4.0) == Status.RESTARTING  # young still
    assert _look(node, w, Status.EXITED, exit_code=3, restart_count=2) == Status.EXITED
    assert _look(node, w, Status.RUNNING, restart_count=3, up=0.0) == Status.RESTARTING
    assert _look(node, w, Status.RUNNING, restart_count=3, up=observe.STEADY + 1) == Status.RUNNING
    assert Workload.objects.get(pk=w.pk).restart_count == 3
    actions = list(AuditEvent.objects.filter(target_name=w.name).values_list("action", flat=True))
    assert actions.count("workload.restarting") == 2  # entering the loop twice, not once per crash


def test_a_row_with_a_control_action_in_flight_is_left_to_its_worker(node: Node) -> None:
    w = _workload(node, action="stop")
    assert _look(node, w, Status.EXITED, exit_code=137) == Status.RUNNING
    Workload.objects.filter(pk=w.pk).update(action="", updated_at=timezone.now() - timedelta(minutes=1))
    assert _look(node, w, Status.EXITED, exit_code=137) == Status.EXITED


def test_a_row_changed_after_the_look_is_left_to_the_next_one(node: Node) -> None:
    w = _workload(node)
    looked_at = timezone.now() - timedelta(seconds=5)  # the row changed since (a worker wrote it)
    rows = selectors.observations([node.pk])[node.pk]
    sight = services.Seen(w.name, w.container_id, Status.EXITED, exit_code=1)
    Workload.objects.filter(pk=w.pk).update(updated_at=timezone.now())
    services.node_observe(node=node, seen=[sight], looked_at=looked_at, rows=rows)
    assert Workload.objects.get(pk=w.pk).status == Status.RUNNING


def test_an_oom_exit_keeps_its_name_when_a_list_says_exited() -> None:
    """No inspect is needed for an exit recorded already: the list's "exited" is the same exit."""
    w = Workload(name="web_main_000001", status=Status.OOM_KILLED, exit_code=137)
    last = selectors.Observation(**{f: getattr(w, f, None) for f in selectors._OBSERVATION})
    listed = docker.ContainerInfo("c1", w.name, "exited", {}, {}, exit_code=137, status_text="Exited (137)")
    seen, inspected = sweep._seen_inspected(None, listed, last, timezone.now())  # type: ignore[arg-type]
    assert not inspected
    assert (seen.status, seen.exit_code) == (Status.OOM_KILLED, 137)


def test_a_container_that_does_not_run_has_no_address_whatever_docker_lists(node: Node) -> None:
    """A container killed with its dockerd may list its old address after the restart."""
    w = _workload(node)
    Workload.objects.filter(pk=w.pk).update(networks={"bridge": "10.1.0.5"})
    assert _look(node, w, Status.EXITED, exit_code=137, networks={"bridge": "10.1.0.5"}) == Status.EXITED
    assert Workload.objects.get(pk=w.pk).networks == {}


def test_a_restarting_container_s_uptime_comes_from_the_list_though_it_is_inspected(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The inspect (made to count restarts) has no "Up 4 seconds": the uptime is the list's."""
    w = Workload(name="web_main_000002", status=Status.RESTARTING, restart_count=2)
    last = selectors.Observation(**{f: getattr(w, f, None) for f in selectors._OBSERVATION})
    listed = docker.ContainerInfo("c2", w.name, "running", {}, {}, status_text="Up 4 seconds")
    inspected = dataclasses.replace(listed, status_text="", restart_count=2)
    monkeypatch.setattr(docker, "inspect", lambda client, name: inspected)
    seen, was_inspected = sweep._seen_inspected(None, listed, last, timezone.now())  # type: ignore[arg-type]
    assert was_inspected
    assert (seen.status, seen.restart_count, seen.up) == (Status.RUNNING, 2, 4.0)
