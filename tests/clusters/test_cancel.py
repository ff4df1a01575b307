"""Cancel and timeout of deployments, and what a replace asks for, on plain rows (no Docker, no
worker: the tasks services would send are recorded by `ui_enqueued`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from clusters import services
from clusters.models import AuditEvent, Deployment, Node, Pod, Workload
from tests.factories import WorkloadFactory


def _deploy(pod: Pod, user: Any = None, **fields: Any) -> Deployment:
    data = {"app": "web", "entrypoint": "e", "image": "eru/busybox:latest", "count": 3, "cpu_limit": 0.5}
    data.update({"memory_limit": "64M", "cpu_bind": False, **fields})
    actor = services.Actor(user=user, via="api") if user else services.SYSTEM
    return services.deployment_create(actor=actor, spec=services.deployment_validate(pod=pod, data=data))


@pytest.fixture
def node(ui_node: Callable[..., Node], ui_alive: set[str], ui_enqueued: list[Any]) -> Node:
    ui_alive.add("n1")
    return ui_node("n1")


def test_cancel_stops_pending_creations_and_gives_back_what_they_hold(node: Node, admin_user: Any) -> None:
    d = _deploy(node.pod)
    node.refresh_from_db()
    assert (node.used_cpu, node.used_memory) == (1.5, 3 * 64 << 20)
    running = d.workloads.order_by("pk").first()
    assert running is not None
    Workload.objects.filter(pk=running.pk).update(state=Workload.State.RUNNING, container_id="c1")

    d = services.deployment_cancel(actor=services.Actor(user=admin_user, via="api"), deployment=d)

    assert d.state == Deployment.State.CANCELLED
    assert d.error == "cancelled by admin"
    assert d.failed == 2
    states = sorted(d.workloads.values_list("state", flat=True))
    assert states == ["failed", "failed", "running"]
    assert set(d.workloads.filter(state="failed").values_list("error", flat=True)) == {
        "not created: cancelled by admin"
    }
    node.refresh_from_db()
    assert (node.used_cpu, node.used_memory) == (0.5, 64 << 20)  # the running one keeps its share
    event = AuditEvent.objects.get(action=AuditEvent.Action.DEPLOYMENT_CANCEL)
    assert len(event.after["stopped"]) == 2


def test_an_ended_deployment_is_not_cancelled(node: Node) -> None:
    d = _deploy(node.pod)
    services.deployment_cancel(actor=services.SYSTEM, deployment=d)
    with pytest.raises(ValidationError, match="has ended already"):
        services.deployment_cancel(actor=services.SYSTEM, deployment=d)
    assert AuditEvent.objects.filter(action=AuditEvent.Action.DEPLOYMENT_CANCEL).count() == 1


def test_a_viewer_cannot_cancel(node: Node, ui_members: Pod, viewer: Any) -> None:
    d = _deploy(node.pod)
    with pytest.raises(PermissionDenied):
        services.deployment_cancel(actor=services.Actor(user=viewer, via="api"), deployment=d)
    assert Deployment.objects.get(pk=d.pk).state == Deployment.State.RUNNING


def test_timeout_cancels_once_it_passes(node: Node) -> None:
    d = _deploy(node.pod, timeout=30)
    assert services.deployment_expire() == []
    Deployment.objects.filter(pk=d.pk).update(created_at=timezone.now() - timedelta(seconds=31))
    assert services.deployment_expire() == [d.pk]
    d.refresh_from_db()
    assert (d.state, d.error) == (Deployment.State.CANCELLED, "timed out after 30 s")
    assert AuditEvent.objects.filter(
        action=AuditEvent.Action.DEPLOYMENT_TIMEOUT, target_id=str(d.pk)
    ).exists()
    assert services.deployment_expire() == []


@pytest.mark.parametrize("timeout", [0, -1, 86_401])
def test_a_timeout_out_of_bounds_names_the_field(node: Node, timeout: int) -> None:
    with pytest.raises(ValidationError) as caught:
        _deploy(node.pod, timeout=timeout)
    assert "timeout" in caught.value.message_dict
    assert not Deployment.objects.exists()


def _running(node: Node, n: int, **fields: Any) -> list[Workload]:
    rows = []
    for i in range(n):
        rows.append(
            WorkloadFactory(
                pod=node.pod, node=node, app="web", entrypoint="e", seq=i, state=Workload.State.RUNNING,
                container_id=f"c{i}", cpu_request=0.5, cpu_limit=0.5, memory_request=64 << 20,
                memory_limit=64 << 20, **fields,
            )
        )  # fmt: skip
    Node.objects.filter(pk=node.pk).update(used_cpu=0.5 * n, used_memory=n * 64 << 20)
    return rows


def test_replace_borrows_the_old_allocation_and_sends_one_batch(node: Node, ui_enqueued: list[Any]) -> None:
    old = _running(node, 3, image="eru/busybox:1")
    data = {"app": "web", "entrypoint": "e", "command": ["sleep", "9"], "batch": 2, "cpu_limit": 4}
    d = services.workload_replace(actor=services.SYSTEM, pod=node.pod, data=data)

    assert (d.kind, d.total, d.batch, d.plan) == (Deployment.Kind.REPLACE, 3, 2, {"n1": 3})
    new = list(d.workloads.order_by("seq"))
    assert [w.replaces_id for w in new] == [w.pk for w in old]
    assert {w.image for w in new} == {"eru/busybox:1"}  # not given: kept
    assert {tuple(w.command) for w in new} == {("sleep", "9")}
    assert {w.cpu_limit for w in new} == {0.5}  # resources are the old ones, whatever the body says
    assert [a for a in ui_enqueued if a[0] == "agents.replace_workload"] == [
        ("agents.replace_workload", new[0].pk),
        ("agents.replace_workload", new[1].pk),
    ]
    # Counted once: the rows that hold are the old ones.
    assert Workload.objects.filter(Workload.holding(), node=node).count() == 3
    node.refresh_from_db()
    assert node.used_cpu == 1.5  # unchanged: nothing allocated


def test_replace_with_nothing_matching_changes_nothing(node: Node) -> None:
    _running(node, 1, labels={"tier": "a"})
    data = {"app": "web", "entrypoint": "e", "filter_labels": {"tier": "b"}}
    with pytest.raises(ValidationError, match="no running or stopped workload of web/e"):
        services.workload_replace(actor=services.SYSTEM, pod=node.pod, data=data)
    assert not Deployment.objects.exists()


@pytest.mark.parametrize(
    ("field", "value"), [("batch", -1), ("batch", "2"), ("ids", "1"), ("nodes", [1]), ("filter_labels", [])]
)
def test_replace_selection_errors_name_the_field(node: Node, field: str, value: Any) -> None:
    _running(node, 1)
    with pytest.raises(ValidationError) as caught:
        services.workload_replace(
            actor=services.SYSTEM, pod=node.pod, data={"app": "web", "entrypoint": "e", field: value}
        )
    assert field in caught.value.message_dict
    assert not Deployment.objects.exists()


def test_a_cancelled_replace_makes_no_more_and_releases_nothing(node: Node) -> None:
    _running(node, 2)
    d = services.workload_replace(actor=services.SYSTEM, pod=node.pod, data={"app": "web", "entrypoint": "e"})
    services.deployment_cancel(actor=services.SYSTEM, deployment=d)
    node.refresh_from_db()
    assert node.used_cpu == 1.0  # the old ones keep what they hold
    assert sorted(Workload.objects.values_list("state", flat=True)) == [
        "failed",
        "failed",
        "running",
        "running",
    ]


def test_a_workload_being_replaced_is_the_replace_s_until_it_ends(node: Node) -> None:
    old, other = _running(node, 2)
    d = services.workload_replace(
        actor=services.SYSTEM, pod=node.pod, data={"app": "web", "entrypoint": "e", "ids": [old.pk]}
    )
    old.refresh_from_db()
    (new,) = d.workloads.all()
    assert (old.action, old.task_id) == ("replace", "replace:running")
    for refused in (
        lambda: services.workload_remove(actor=services.SYSTEM, workload=old),
        lambda: services.workload_control(actor=services.SYSTEM, workload=old, action="stop"),
        lambda: services.workload_remove(actor=services.SYSTEM, workload=new),
        lambda: services.workload_dissociate(actor=services.SYSTEM, workloads=[new]),
        lambda: services.workload_realloc(
            actor=services.SYSTEM, workload=new, change=services.Change(cpu_limit=1)
        ),
    ):
        with pytest.raises(ValidationError, match="replac|being created|realloc needs|only running"):
            refused()
    with pytest.raises(ValidationError, match="no running or stopped workload"):  # not twice at once
        services.workload_replace(
            actor=services.SYSTEM, pod=node.pod, data={"app": "web", "entrypoint": "e", "ids": [old.pk]}
        )
    services.deployment_cancel(actor=services.SYSTEM, deployment=d)
    old.refresh_from_db()
    assert (old.action, old.task_id) == ("", "")  # its own again
    assert Workload.objects.get(pk=other.pk).action == ""


@pytest.mark.parametrize("ids", [[0], [2**63], list(range(1, 1003))])
def test_replace_ids_out_of_bounds_are_refused(node: Node, ids: list[int]) -> None:
    _running(node, 1)
    with pytest.raises(ValidationError) as caught:
        services.workload_replace(
            actor=services.SYSTEM, pod=node.pod, data={"app": "web", "entrypoint": "e", "ids": ids}
        )
    assert "ids" in caught.value.message_dict
