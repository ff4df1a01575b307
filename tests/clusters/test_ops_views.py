"""The portal's day-two operations (clusters.ops_views): cancel on a deployment's page; realloc,
replace and dissociate on a workload's. Rows only (the tasks services send are recorded by
`ui_enqueued`), except realloc's `docker update`, checked on the real nodes (`services`)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from clusters import services
from clusters.models import AuditEvent, Deployment, Dissociated, Node, Pod, PodMember, Workload
from tests.factories import WorkloadFactory

HX = {"HX-Request": "true"}
M = 1 << 20
Login = Callable[[Any], Client]


def url(name: str, *args: Any) -> str:
    return reverse(f"clusters:{name}", args=args)


def html(response: Any) -> str:
    return response.content.decode()


def field_error(body: str, form: str, field: str) -> str:
    """The error list rendered beside a field of the realloc or replace form ('' when none)."""
    match = re.search(rf'<ul class="errorlist" id="{form}_{field}_error">(.*?)</ul>', body, re.S)
    return match.group(1) if match else ""


@pytest.fixture
def n1(ui_members: Pod, ui_node: Callable[..., Node], ui_alive: set[str], ui_enqueued: list[Any]) -> Node:
    ui_alive.add("n1")
    return ui_node("n1")


def _running(node: Node, n: int, entrypoint: str = "e", **fields: Any) -> list[Workload]:
    """n running workloads of web/<entrypoint>, each holding 0.5 cpu and 64M of the node."""
    rows = [
        WorkloadFactory(
            node=node, app="web", entrypoint=entrypoint, seq=i, container_id=f"{entrypoint}{i:02d}" * 16,
            cpu_request=0.5, cpu_limit=0.5, memory_request=64 * M, memory_limit=64 * M, **fields,
        )
        for i in range(n)
    ]  # fmt: skip
    held = Workload.objects.filter(node=node)
    Node.objects.filter(pk=node.pk).update(used_cpu=0.5 * held.count(), used_memory=held.count() * 64 * M)
    return rows


def _deploy(pod: Pod, count: int = 2) -> Deployment:
    data = {"app": "web", "entrypoint": "e", "image": "eru/busybox:latest", "count": count}
    data.update({"cpu_limit": 0.5, "memory_limit": "64M", "cpu_bind": False})
    return services.deployment_create(
        actor=services.SYSTEM, spec=services.deployment_validate(pod=pod, data=data)
    )


# --- cancel -------------------------------------------------------------------------------------
def test_the_cancel_button_is_for_deployers_while_it_runs(
    n1: Node, ui_client: Login, deployer: Any, viewer: Any
) -> None:
    d = _deploy(n1.pod)
    page = html(ui_client(viewer).get(url("deployment-detail", d.pk)))
    assert f'hx-get="{url("deployment-cancel", d.pk)}" hx-trigger="load"' in page  # the slot
    assert "Cancel</button>" not in page

    slot = ui_client(deployer).get(url("deployment-cancel", d.pk), headers=HX)
    assert "Cancel</button>" in html(slot)
    assert "hx-confirm=" in html(slot)
    assert 'hx-trigger="eru-logs-reopen from:body"' in html(slot)  # fetched again once it ends
    assert "<html" not in html(slot)
    slot = ui_client(viewer).get(url("deployment-cancel", d.pk), headers=HX)
    assert (slot.status_code, html(slot)) == (200, "")  # the slot goes
    assert ui_client(viewer).get(url("deployment-cancel", d.pk)).status_code == 403

    Deployment.objects.filter(pk=d.pk).update(state=Deployment.State.DONE)
    assert html(ui_client(deployer).get(url("deployment-cancel", d.pk), headers=HX)) == ""
    assert "deployment-cancel" not in html(ui_client(deployer).get(url("deployment-detail", d.pk)))


def test_a_deployer_cancels_and_the_page_says_why(n1: Node, ui_client: Login, deployer: Any) -> None:
    d = _deploy(n1.pod)
    client = ui_client(deployer)
    response = client.post(url("deployment-cancel", d.pk), headers=HX)
    assert response["HX-Location"].startswith('{"path": "' + url("deployment-detail", d.pk))
    d.refresh_from_db()
    assert (d.state, d.error, d.failed) == (Deployment.State.CANCELLED, "cancelled by dora", 2)
    assert AuditEvent.objects.filter(
        action=AuditEvent.Action.DEPLOYMENT_CANCEL, via="ui", actor=deployer
    ).exists()

    page = html(client.get(url("deployment-detail", d.pk)))
    assert '<span class="badge deployment-cancelled">cancelled</span>' in page
    assert "cancelled by dora" in page
    assert f"Deployment #{d.pk} cancelled." in page
    poll = client.get(url("deployment-detail", d.pk), headers={**HX, "HX-Target": "progress"})
    assert poll.status_code == 286  # final: the poll stops
    assert "cancelled by dora" in html(poll)

    again = client.post(url("deployment-cancel", d.pk), follow=True)  # without JavaScript
    assert again.redirect_chain == [(url("deployment-detail", d.pk), 302)]
    assert "has ended already" in html(again)


# --- replace ------------------------------------------------------------------------------------
def test_replace_makes_a_replace_deployment_and_goes_to_its_page(
    n1: Node, ui_client: Login, deployer: Any, ui_enqueued: list[Any]
) -> None:
    old = _running(n1, 3)
    other = _running(n1, 1, entrypoint="other")[0]
    client = ui_client(deployer)
    page = html(client.get(url("workload-detail", old[0].pk)))
    assert "replaces every running or stopped workload of web / e in pod eru" in page

    data = {"image": "eru/busybox:2", "command": "sh -c 'sleep 60'", "batch": "2", "timeout": "300"}
    response = client.post(url("workload-replace", old[0].pk), data, headers=HX)
    d = Deployment.objects.get(kind=Deployment.Kind.REPLACE)
    assert response["HX-Location"].startswith('{"path": "' + url("deployment-detail", d.pk))
    assert (d.total, d.batch, d.timeout, d.image, d.created_by) == (3, 2, 300, "eru/busybox:2", deployer)
    new = list(d.workloads.order_by("seq"))
    assert [w.replaces_id for w in new] == [w.pk for w in old]  # not the other entrypoint's
    assert {tuple(w.command) for w in new} == {("sh", "-c", "sleep 60")}
    assert [a for a in ui_enqueued if a[0] == "agents.replace_workload"] == [
        ("agents.replace_workload", new[0].pk),
        ("agents.replace_workload", new[1].pk),
    ]  # the batch; the worker task is recorded, not run
    assert other.replacements.count() == 0

    page = html(client.get(url("deployment-detail", d.pk)))
    assert '<span class="tag">replace</span>' in page
    assert "<th>Replaces</th>" in page
    for w in old:
        assert f'<a href="{url("workload-detail", w.pk)}">{w.name}</a>' in page
    assert "2 at a time" in page
    assert "300 s, then it is cancelled" in page
    assert "0 replaced, 0 failed of 3" in page
    slot = client.get(url("deployment-cancel", d.pk), headers=HX)
    assert "Cancel</button>" in html(slot)  # a running replace is cancelled like a deploy


def test_replace_only_this_one_and_without_javascript(n1: Node, ui_client: Login, deployer: Any) -> None:
    old = _running(n1, 2)
    response = ui_client(deployer).post(url("workload-replace", old[1].pk), {"only_this": "on", "batch": "1"})
    d = Deployment.objects.get(kind=Deployment.Kind.REPLACE)
    assert response.status_code == 302
    assert response["Location"] == url("deployment-detail", d.pk)
    assert list(d.workloads.values_list("replaces_id", flat=True)) == [old[1].pk]
    assert d.image == ""  # not given: each keeps its own
    assert list(d.workloads.values_list("image", flat=True)) == [old[1].image]


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"batch": "-1"}, "batch", "batch: -1 is not a whole number from 0 (all at once) to"),
        ({"batch": "two"}, "batch", "Enter a whole number."),
        ({"timeout": "0"}, "timeout", "timeout: 0 s is outside 1 to 86400 s"),
        ({"timeout": "86401"}, "timeout", "timeout: 86401 s is outside 1 to 86400 s"),
        ({"command": "sh -c 'sleep"}, "command", "command: No closing quotation"),
    ],
)
def test_bad_replace_input_is_shown_beside_its_field_and_changes_nothing(
    n1: Node, ui_client: Login, deployer: Any, data: dict[str, str], field: str, message: str
) -> None:
    (w,) = _running(n1, 1)
    response = ui_client(deployer).post(url("workload-replace", w.pk), data, headers=HX)
    assert response.status_code == 200
    body = html(response)
    assert "<html" not in body  # the form alone, swapped in place
    assert message in field_error(body, "replace", field)
    assert '<details id="replace" class="op" open>' in body
    assert not Deployment.objects.filter(kind=Deployment.Kind.REPLACE).exists()


def test_a_replace_with_nothing_to_replace_says_so_above_the_form(
    n1: Node, ui_client: Login, deployer: Any
) -> None:
    (w,) = _running(n1, 1, action="stop")  # busy: not a candidate
    response = ui_client(deployer).post(url("workload-replace", w.pk), {"batch": "1"})
    assert response.status_code == 200
    body = html(response)
    assert "<html" in body  # without JavaScript: a page of its own, with the form
    assert "no running or stopped workload of web/e matches in pod eru" in body
    assert not Deployment.objects.filter(kind=Deployment.Kind.REPLACE).exists()


# --- dissociate ---------------------------------------------------------------------------------
def test_dissociate_gives_the_allocation_back_and_lands_on_the_pod(
    n1: Node, ui_client: Login, deployer: Any
) -> None:
    w, kept = _running(n1, 2)
    client = ui_client(deployer)
    assert "The container keeps running, unmanaged; its allocation goes back" in html(
        client.get(url("workload-detail", w.pk))
    )
    response = client.post(url("workload-dissociate", w.pk), headers=HX)
    assert response["HX-Location"].startswith('{"path": "' + url("pod-detail", "eru"))
    assert not Workload.objects.filter(pk=w.pk).exists()
    assert Workload.objects.filter(pk=kept.pk).exists()
    assert Dissociated.objects.get().container_id == w.container_id
    n1.refresh_from_db()
    assert (n1.used_cpu, n1.used_memory) == (0.5, 64 * M)  # the other one's only
    assert AuditEvent.objects.filter(
        action=AuditEvent.Action.WORKLOAD_DISSOCIATE, target_name=w.name, via="ui"
    ).exists()
    page = html(client.get(url("pod-detail", "eru")))
    assert f"{w.name} dissociated: its container {w.container_id[:12]} keeps running on n1" in page


def test_a_busy_workload_is_not_dissociated(n1: Node, ui_client: Login, deployer: Any) -> None:
    (w,) = _running(n1, 1, action="restart")
    response = ui_client(deployer).post(url("workload-dissociate", w.pk), follow=True)
    assert response.redirect_chain == [(url("workload-detail", w.pk), 302)]
    assert "a restart in flight" in html(response)
    assert Workload.objects.filter(pk=w.pk).exists()
    assert not Dissociated.objects.exists()


# --- realloc, up to Docker ----------------------------------------------------------------------
def test_the_resources_card_shows_everyone_the_values_and_deployers_the_form(
    n1: Node, ui_client: Login, deployer: Any, viewer: Any
) -> None:
    (w,) = _running(n1, 1)
    as_viewer = html(ui_client(viewer).get(url("workload-detail", w.pk)))
    assert '<section class="card" id="resources">' in as_viewer
    assert "request 64.0\xa0MB, limit 64.0\xa0MB" in as_viewer
    assert "realloc-form" not in as_viewer
    assert "workload-replace" not in as_viewer
    assert "workload-dissociate" not in as_viewer
    as_deployer = html(ui_client(deployer).get(url("workload-detail", w.pk)))
    for part in ('id="realloc-form"', 'id="replace-form"', 'id="dissociate-form"', 'name="absolute"'):
        assert part in as_deployer
    Workload.objects.filter(pk=w.pk).update(state=Workload.State.FAILED)
    assert "realloc-form" not in html(ui_client(deployer).get(url("workload-detail", w.pk)))


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        (
            {"cpu_request": "lots"},
            "cpu_request",
            "cpu_request: expected a number of cpus, got &#x27;lots&#x27;",
        ),
        ({"cpu_limit": "inf"}, "cpu_limit", "cpu_limit: expected a number of cpus"),
        ({"memory_limit": "64Q"}, "memory_limit", "memory_limit: &#x27;64Q&#x27; is not a size"),
        ({"memory_request": "1Z"}, "memory_request", "memory_request: &#x27;1Z&#x27; is not a size"),
    ],
)
def test_bad_realloc_input_is_shown_beside_its_field_and_changes_nothing(
    n1: Node, ui_client: Login, deployer: Any, data: dict[str, str], field: str, message: str
) -> None:
    (w,) = _running(n1, 1)
    response = ui_client(deployer).post(url("workload-realloc", w.pk), data, headers=HX)
    body = html(response)
    assert response.status_code == 200
    assert "<html" not in body
    assert message in field_error(body, "realloc", field)
    assert f'value="{data[field]}"' in body  # kept for correcting
    assert Workload.objects.get(pk=w.pk).memory_limit == 64 * M
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.WORKLOAD_REALLOC).exists()


def test_an_empty_or_refused_realloc_says_why_above_the_form(
    n1: Node, ui_client: Login, deployer: Any
) -> None:
    (w,) = _running(n1, 1)
    client = ui_client(deployer)
    body = html(client.post(url("workload-realloc", w.pk), {"cpu_bind": ""}, headers=HX))
    assert "Give a change: a cpu or memory value, or bind or unbind." in body
    Workload.objects.filter(pk=w.pk).update(action="stop")
    body = html(client.post(url("workload-realloc", w.pk), {"memory_limit": "8M"}, headers=HX))
    assert f"workload {w.name} has a stop in flight" in body  # the service's, before any Docker
    assert Workload.objects.get(pk=w.pk).memory_limit == 64 * M


# --- permissions --------------------------------------------------------------------------------
def test_viewers_get_403_on_every_operation_and_nothing_changes(
    n1: Node, ui_client: Login, viewer: Any, outsider: Any
) -> None:
    (w,) = _running(n1, 1)
    d = _deploy(n1.pod)
    client = ui_client(viewer)
    posts = [
        (url("workload-realloc", w.pk), {"memory_limit": "8M"}),
        (url("workload-replace", w.pk), {"batch": "1"}),
        (url("workload-dissociate", w.pk), {}),
        (url("deployment-cancel", d.pk), {}),
    ]
    for path, data in posts:
        assert client.post(path, data, headers=HX).status_code == 403, path
        assert ui_client(outsider).post(path, data).status_code == 404, path
    assert Workload.objects.get(pk=w.pk).memory_limit == 64 * M
    assert Deployment.objects.get(pk=d.pk).state == Deployment.State.RUNNING
    assert not Deployment.objects.filter(kind=Deployment.Kind.REPLACE).exists()
    assert not Dissociated.objects.exists()
    assert not AuditEvent.objects.filter(via="ui").exists()
    PodMember.objects.filter(user=viewer).update(role=PodMember.Role.DEPLOYER)  # the same, allowed
    assert client.post(url("deployment-cancel", d.pk), headers=HX).status_code == 200


# --- realloc on the real nodes ------------------------------------------------------------------
def _memory(docker_clean: dict[str, Any], w: Workload) -> int:
    host: dict[str, Any] = docker_clean[w.node.name].containers.get(w.container_id).attrs["HostConfig"]
    return int(host["Memory"])


@pytest.mark.services
def test_realloc_from_the_form_changes_the_cgroup_and_the_card(
    deploy: Callable[..., Any], docker_clean: dict[str, Any], admin_user: Any
) -> None:
    w = deploy("sleep", "600", cpu_request=0.1, cpu_limit=0.1, memory_limit="16M")
    client = Client()
    client.force_login(admin_user)
    data = {"memory_request": "16M", "memory_limit": "16M", "cpu_limit": "0.2", "cpu_bind": ""}
    response = client.post(url("workload-realloc", w.pk), data, headers={**HX, "HX-Target": "resources"})
    assert response.status_code == 200
    body = html(response)
    assert '<section class="card" id="resources">' in body
    assert "<html" not in body
    assert "request 32.0\xa0MB, limit 32.0\xa0MB" in body  # deltas: the request was the limit, 16M
    assert "request 0.10, limit 0.30" in body
    assert f"Resources of {w.name} changed: cpu request 0.1, limit 0.3; memory request 32M" in body
    assert _memory(docker_clean, w) == 32 * M
    node = Node.objects.get(name="node1")
    assert (node.used_cpu, node.used_memory) == (0.1, 32 * M)  # the requests
    page = html(client.get(url("workload-detail", w.pk)))
    assert "request 32.0\xa0MB, limit 32.0\xa0MB" in page

    absolute = {"memory_request": "8M", "memory_limit": "24M", "absolute": "on"}
    response = client.post(url("workload-realloc", w.pk), absolute)  # without JavaScript
    assert response["Location"] == url("workload-detail", w.pk)
    assert _memory(docker_clean, w) == 24 * M
    assert Node.objects.get(name="node1").used_memory == 8 * M
    assert AuditEvent.objects.filter(action=AuditEvent.Action.WORKLOAD_REALLOC, via="ui").count() == 2


@pytest.mark.services
def test_a_realloc_the_node_cannot_fit_is_shown_on_the_form_and_changes_nothing(
    deploy: Callable[..., Any], docker_clean: dict[str, Any], admin_user: Any
) -> None:
    w = deploy("sleep", "600", cpu_request=0.1, cpu_limit=0.1, memory_limit="16M")
    node = Node.objects.get(name="node1")
    client = Client()
    client.force_login(admin_user)
    data = {"memory_request": str(node.memory), "memory_limit": str(node.memory)}
    body = html(client.post(url("workload-realloc", w.pk), data, headers=HX))
    assert "node node1 has" in field_error(body, "realloc", "memory_request")  # memory is what it lacks
    assert "bytes of memory free with this workload&#x27;s own back" in body
    assert _memory(docker_clean, w) == 16 * M
    node.refresh_from_db()
    assert (node.used_cpu, node.used_memory) == (0.1, 16 * M)
    assert Workload.objects.get(pk=w.pk).memory_limit == 16 * M
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.WORKLOAD_REALLOC).exists()
