"""What the portal shows of observed status: the workload page, the pod page's counts and the node
page (capacity, usage, what workloads without a running container hold, last contact). Database
only: the rows say what a sweep would have recorded."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from clusters.models import Node, Pod, Workload
from tests.factories import WorkloadFactory

pytestmark = pytest.mark.django_db
Status = Workload.Status
Login = Callable[[Any], Client]


@pytest.fixture
def n1(ui_members: Pod, ui_node: Callable[..., Node], ui_alive: set[str]) -> Node:
    ui_alive.add("n1")
    seen = timezone.now() - timedelta(seconds=3)
    return ui_node("n1", used_cpu=1.5, used_memory=3 << 30, observed_at=seen)


@pytest.fixture
def observed(n1: Node) -> dict[str, Workload]:
    """Four workloads as a sweep saw them: running, exited with 5, crash-looping, missing."""
    gib, port = 1 << 30, {"ip": "0.0.0.0", "private": 80, "public": 8080, "type": "tcp"}
    running = WorkloadFactory(node=n1, name="web_main_aaaaaa", status=Status.RUNNING, cpu_request=0.5)
    Workload.objects.filter(pk=running.pk).update(
        memory_request=gib, networks={"bridge": "10.1.0.5"}, ports=[port]
    )
    return {
        "running": Workload.objects.select_related("node").get(pk=running.pk),
        "exited": WorkloadFactory(
            node=n1,
            name="web_main_bbbbbb",
            status=Status.EXITED,
            exit_code=5,
            cpu_request=0.5,
            memory_request=gib,
        ),
        "looping": WorkloadFactory(
            node=n1, name="web_main_cccccc", status=Status.RESTARTING, exit_code=3, restart_count=7
        ),
        "missing": WorkloadFactory(
            node=n1, name="web_main_dddddd", status=Status.MISSING, cpu_request=0.5, memory_request=gib
        ),
    }


def _html(response: Any) -> str:
    assert response.status_code == 200
    return response.content.decode()


def test_the_workload_page_shows_what_was_observed(
    observed: dict[str, Workload], ui_client: Login, viewer: Any
) -> None:
    client = ui_client(viewer)
    page = _html(client.get(reverse("clusters:workload-detail", args=[observed["exited"].pk])))
    assert 'class="badge status-exited"' in page
    assert "exited (5)" in page
    page = _html(client.get(reverse("clusters:workload-detail", args=[observed["looping"].pk])))
    assert "restarting (7 restarts)" in page
    assert "7 (by Docker's restart policy)" in page
    page = _html(client.get(reverse("clusters:workload-detail", args=[observed["running"].pk])))
    assert "0.0.0.0:8080 → 80/tcp" in page
    assert "<code>10.1.0.5</code>" in page
    assert timezone.localtime(observed["running"].node.observed_at).strftime("%Y-%m-%d %H:%M:%S") in page


def test_the_pod_page_counts_workloads_by_observed_status(
    observed: dict[str, Workload], ui_client: Login, viewer: Any
) -> None:
    page = _html(ui_client(viewer).get(reverse("clusters:pod-detail", args=["eru"])))
    for label in ("running: 1", "exited: 1", "restarting: 1", "missing (container gone): 1"):
        assert label in page
    assert reverse("clusters:node-detail", args=["n1"]) in page


def test_the_node_page_shows_usage_last_contact_and_what_idle_workloads_hold(
    observed: dict[str, Workload], ui_client: Login, viewer: Any, django_assert_max_num_queries: Any
) -> None:
    client = ui_client(viewer)
    with django_assert_max_num_queries(9):
        page = _html(client.get(reverse("clusters:node-detail", args=["n1"])))
    assert timezone.localtime(observed["running"].node.observed_at).strftime("%Y-%m-%d %H:%M:%S") in page
    assert "1.5" in page  # cpu used of the node
    assert "3 workloads with no running container" in page  # exited, restarting and missing
    assert "hold 1 cpu and 2.0\xa0GB" in page  # filesizeformat: a no-break space
    for w in observed.values():
        assert w.name in page


def test_a_node_that_does_not_answer_says_so(n1: Node, ui_client: Login, viewer: Any) -> None:
    Node.objects.filter(pk=n1.pk).update(last_error="ping: cannot reach the Docker endpoint (refused)")
    page = _html(ui_client(viewer).get(reverse("clusters:node-detail", args=["n1"])))
    assert "Not answering" in page
    assert "cannot reach the Docker endpoint" in page


def test_the_node_page_is_for_those_who_see_its_pod(n1: Node, ui_client: Login, outsider: Any) -> None:
    assert ui_client(outsider).get(reverse("clusters:node-detail", args=["n1"])).status_code == 404
