"""The portal's pages, as each persona sees them: admin (staff), dora (deployer), vic (viewer) and
olga (outsider). Nodes are rows and liveness is `ui_alive`, except where marked `services`."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils.html import escape

from clusters import etcd
from clusters.models import AuditEvent, Deployment, Node, Pod, Workload
from tests.factories import DeploymentFactory, NodeFactory, PodFactory, WorkloadFactory

pytestmark = pytest.mark.django_db
HX = {"HX-Request": "true"}  # htmx without a target element: an HX-Location navigation, a write


def hx(target: str) -> dict[str, str]:
    """Headers of an htmx request swapping into the element with this id."""
    return {**HX, "HX-Target": target}


Login = Callable[[Any], Client]


def url(name: str, *args: Any) -> str:
    return reverse(f"clusters:{name}", args=args)


def html(response: Any) -> str:
    return response.content.decode()


def field_error(response: Any, field: str) -> str:
    """The error list rendered next to a form field ('' when there is none)."""
    match = re.search(rf'<ul class="errorlist" id="id_{field}_error">(.*?)</ul>', html(response), re.S)
    return match.group(1) if match else ""


def node_row(body: str, name: str) -> str:
    match = re.search(rf'<tr id="node-{name}">(.*?)</tr>', body, re.S)
    assert match, f"no row for node {name}"
    return match.group(1)


def deploy_data(**overrides: Any) -> dict[str, Any]:
    data = {
        "app": "web", "entrypoint": "main", "image": "eru/busybox:latest", "command": "sleep 3600",
        "count": "1", "cpu_request": "0", "cpu_limit": "0.5", "memory_request": "", "memory_limit": "64M",
        "cpu_bind": "unbind", "strategy": "AUTO", "nodes_limit": "0", "node_labels": "", "env": "",
        "labels": "", "action": "deploy",
    }  # fmt: skip
    return {**data, **overrides}


@pytest.fixture
def n1(ui_members: Pod, ui_node: Callable[..., Node], ui_alive: set[str]) -> Node:
    """An up node, a quarter of its bound pieces and half its memory in use."""
    ui_alive.add("n1")
    return ui_node("n1", used_cpu_map={"0": 50}, used_cpu=0.5, used_memory=2 << 30, labels={"zone": "a"})


# --- login --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path",
    ["/", "/pods/eru/", "/pods/eru/deploy/", "/deployments/1/", "/workloads/1/", "/audit/"],
)
def test_it_sends_anonymous_visitors_to_login(client: Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next={path}"


def test_login_page_logs_in_and_lands_on_pods(client: Client, viewer: Any) -> None:
    page = client.get(reverse("login"))
    assert page.status_code == 200
    assert 'name="username"' in html(page)
    response = client.post(reverse("login"), {"username": "vic", "password": "pw-vic-1"})
    assert response.status_code == 302
    assert response["Location"] == url("pod-list")


# --- pods ---------------------------------------------------------------------------------------
def test_pod_list_counts_nodes_up_nodes_and_workloads(
    n1: Node, ui_node: Callable[..., Node], ui_client: Login, viewer: Any
) -> None:
    down = ui_node("n2", bypass=True)
    ui_node("n3")  # no heartbeat
    WorkloadFactory(node=n1, name="web_main_aaaaaa")
    WorkloadFactory(node=down, name="web_main_bbbbbb", state=Workload.State.FAILED)
    PodFactory(name="secretpod")
    body = html(ui_client(viewer).get(url("pod-list")))
    row = re.search(r"<tr>\s*<td><a href=\"/pods/eru/\">.*?</tr>", body, re.S).group(0)
    assert [int(n) for n in re.findall(r'class="num">\s*(?:<span[^>]*>)?(\d+)', row)] == [3, 1, 2, 1]
    assert "secretpod" not in body
    assert "Add a pod" not in body  # only staff add pods


def test_staff_add_a_pod_with_htmx_and_the_list_is_told_to_refresh(ui_client: Login, admin_user: Any) -> None:
    response = ui_client(admin_user).post(
        url("pod-list"), {"name": "batch", "desc": "jobs", "favor": "memory"}, headers=hx("pod-form")
    )
    assert response.status_code == 200
    assert "<html" not in html(response)
    assert "pods-changed" in response["HX-Trigger"]
    assert "Pod batch added." in html(response)
    pod = Pod.objects.get(name="batch")
    assert pod.favor == "memory"
    event = AuditEvent.objects.get(action="pod.add")
    assert event.via == "ui"
    assert event.actor == admin_user
    assert event.request_id
    rows = ui_client(admin_user).get(url("pod-list"), headers=hx("pod-rows"))
    assert "<html" not in html(rows)
    assert 'id="pod-rows"' in html(rows)
    assert "batch" in html(rows)


def test_staff_add_a_pod_without_javascript_and_are_redirected(ui_client: Login, admin_user: Any) -> None:
    response = ui_client(admin_user).post(url("pod-list"), {"name": "batch", "favor": "cpu"})
    assert response.status_code == 302
    assert response["Location"] == url("pod-list")
    assert Pod.objects.filter(name="batch").exists()


def test_a_bad_pod_name_is_shown_next_to_the_field_and_changes_nothing(
    ui_client: Login, admin_user: Any, ui_pod: Pod
) -> None:
    client = ui_client(admin_user)
    before = AuditEvent.objects.count()
    response = client.post(url("pod-list"), {"name": "bad_name!", "favor": "cpu"}, headers=hx("pod-form"))
    assert "letters, digits" in field_error(response, "name")
    response = client.post(url("pod-list"), {"name": "eru", "favor": "cpu"}, headers=hx("pod-form"))
    assert "already exists" in field_error(response, "name")
    assert Pod.objects.count() == 1
    assert AuditEvent.objects.count() == before


def test_members_cannot_add_pods(ui_client: Login, ui_members: Pod, deployer: Any) -> None:
    response = ui_client(deployer).post(url("pod-list"), {"name": "batch", "favor": "cpu"})
    assert response.status_code == 403
    assert not Pod.objects.filter(name="batch").exists()


def test_outsiders_get_404_for_everything_in_a_pod(
    n1: Node, ui_client: Login, outsider: Any, deployer: Any
) -> None:
    w = WorkloadFactory(node=n1, name="web_main_aaaaaa")
    d = DeploymentFactory(pod=n1.pod)
    client = ui_client(outsider)
    for path in (url("pod-detail", "eru"), url("deploy", "eru"), url("deployment-detail", d.pk),
                 url("workload-detail", w.pk)):  # fmt: skip
        assert client.get(path).status_code == 404, path
    for path in (url("node-down", "n1"), url("workload-control", w.pk), url("workload-remove", w.pk)):
        assert client.post(path, {"action": "stop"}).status_code == 404, path
    assert "eru" not in html(client.get(url("pod-list")))


def test_pod_detail_shows_capacity_bars_labels_and_status(
    n1: Node, ui_node: Callable[..., Node], ui_client: Login, viewer: Any
) -> None:
    ui_node("n2", bypass=True, used_cpu=1.5, used_memory=int(3.8 * (1 << 30)))
    ui_node("n3")
    WorkloadFactory(node=n1, name="web_main_aaaaaa", cpu_limit=0.5, memory_limit=64 << 20)
    body = html(ui_client(viewer).get(url("pod-detail", "eru")))
    rows = {name: node_row(body, name) for name in ("n1", "n2", "n3")}
    assert 'class="badge up">up<' in rows["n1"]
    assert 'class="badge down">down<' in rows["n2"]
    assert 'class="badge lost">no heartbeat<' in rows["n3"]
    widths = re.findall(r'aria-valuenow="(\d+)"><span style="width: (\d+)%">', rows["n1"])
    assert widths == [("25", "25"), ("25", "25"), ("50", "50")]  # pieces 50/200, cpu 0.5/2, memory 2/4 GiB
    assert "50 / 200 pieces" in rows["n1"]
    assert "0.50 / 2 cpu" in rows["n1"]
    assert "2.0\xa0GB / 4.0\xa0GB" in rows["n1"]
    assert "zone=a" in rows["n1"]
    assert 'class="bar hot"' in rows["n2"]  # 3.8 of 4 GiB
    assert "web_main_aaaaaa" in body
    assert "Mark down" not in body
    assert url("deploy", "eru") not in body  # viewer: no buttons
    partial = html(ui_client(viewer).get(url("pod-detail", "eru"), headers=hx("workloads")))
    assert "<html" not in partial
    assert partial.strip().startswith('<div id="workloads"')
    assert "web_main_aaaaaa" in partial
    assert "hx-trigger" not in partial  # nothing busy: no polling


def test_viewer_is_refused_deploy_and_node_up_down(n1: Node, ui_client: Login, viewer: Any) -> None:
    client = ui_client(viewer)
    assert client.get(url("deploy", "eru")).status_code == 403
    assert client.post(url("deploy", "eru"), deploy_data()).status_code == 403
    assert client.post(url("node-down", "n1"), headers=HX).status_code == 403
    assert client.post(url("node-up", "n1")).status_code == 403
    assert not Deployment.objects.exists()
    assert not Node.objects.get(name="n1").bypass
    assert not AuditEvent.objects.filter(action__in=["deployment.create", "node.down", "node.up"]).exists()


def test_staff_mark_a_node_down_and_up_and_get_the_row_back(
    n1: Node, ui_client: Login, admin_user: Any
) -> None:
    client = ui_client(admin_user)
    assert "Mark down" in html(client.get(url("pod-detail", "eru")))
    response = client.post(url("node-down", "n1"), headers=hx("node-n1"))
    body = html(response)
    assert response.status_code == 200
    assert "<html" not in body
    assert body.strip().startswith('<tr id="node-n1">')
    assert "badge down" in body
    assert "Mark up" in body
    assert Node.objects.get(name="n1").bypass
    response = client.post(url("node-up", "n1"))  # without JavaScript: back to the page
    assert response.status_code == 302
    assert response["Location"] == url("pod-detail", "eru")
    assert not Node.objects.get(name="n1").bypass
    events = list(AuditEvent.objects.filter(target_name="n1").order_by("id").values_list("action", "via"))
    assert events == [("node.down", "ui"), ("node.up", "ui")]


# --- deploy -------------------------------------------------------------------------------------
def test_deploy_form_has_the_defaults(n1: Node, ui_client: Login, deployer: Any) -> None:
    body = html(ui_client(deployer).get(url("deploy", "eru")))
    assert 'value="eru/busybox:latest"' in body
    assert 'value="512M"' in body
    assert 'name="cpu_limit" value="1.0"' in body
    assert 'name="count" value="1"' in body
    assert '<option value="n1">n1</option>' in body


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("entrypoint", "my_main", "entrypoint name has &#x27;_&#x27; character"),
        ("memory_limit", "1M", "memory_limit: 1048576 is below the minimum of 6 MiB"),
        ("memory_limit", "lots", "memory_limit: &#x27;lots&#x27; is not a size"),
        ("count", "0", "invalid deploy count"),
        ("env", "NOEQUALS", "must look like KEY=value"),
        ("labels", "team", "labels: line 1 &#x27;team&#x27; must look like key=value"),
        ("command", "sh -c 'unclosed", "command: No closing quotation"),
    ],
)
def test_bad_deploy_input_is_shown_next_to_its_field_and_creates_nothing(
    n1: Node, ui_client: Login, deployer: Any, field: str, value: str, message: str
) -> None:
    before = AuditEvent.objects.count()
    response = ui_client(deployer).post(
        url("deploy", "eru"), deploy_data(**{field: value}), headers=hx("deploy-form")
    )
    assert response.status_code == 200
    assert "<html" not in html(response)
    assert message in field_error(response, field), html(response)
    assert escape(value) in html(response)  # what was typed is kept
    assert not Deployment.objects.exists()
    assert not Workload.objects.exists()
    assert AuditEvent.objects.count() == before


def test_preview_shows_the_plan_and_creates_nothing(
    n1: Node, ui_node: Callable[..., Node], ui_alive: set[str], ui_client: Login, deployer: Any
) -> None:
    ui_node("n2")
    ui_alive.add("n2")
    response = ui_client(deployer).post(
        url("deploy", "eru"),
        deploy_data(action="preview", count="4", strategy="EACH"),
        headers=hx("deploy-form"),
    )
    body = html(response)
    assert "<html" not in body
    assert "Plan preview" in body
    plan = re.findall(r"<tr><td>(n\d)</td><td class=\"num\">(\d+)</td></tr>", body)
    assert plan == [("n1", "4"), ("n2", "4")]
    assert '<th class="num">8</th>' in body
    assert not Deployment.objects.exists()
    assert not AuditEvent.objects.filter(action="deployment.create").exists()


def test_preview_names_a_down_node_under_nodes(
    n1: Node, ui_node: Callable[..., Node], ui_client: Login, deployer: Any
) -> None:
    ui_node("n2", bypass=True)
    data = deploy_data(action="preview", node_names=["n1", "n2"])
    response = ui_client(deployer).post(url("deploy", "eru"), data)  # without JavaScript: the whole page
    assert "<html" in html(response)
    assert "node is down (set down or no heartbeat): n2" in field_error(response, "node_names")


def test_deploy_creates_the_deployment_and_sends_htmx_to_its_page(
    n1: Node, ui_client: Login, deployer: Any, ui_enqueued: list[tuple[Any, ...]]
) -> None:
    data = deploy_data(count="2", env="A=1\nB=two", labels="team=web", command="sh -c 'sleep 3600'")
    response = ui_client(deployer).post(url("deploy", "eru"), data, headers=hx("deploy-form"))
    deployment = Deployment.objects.get()
    assert response.status_code == 200
    assert url("deployment-detail", deployment.pk) in response["HX-Location"]
    assert deployment.created_by == deployer
    assert deployment.total == 2
    assert deployment.plan == {"n1": 2}
    assert deployment.spec["command"] == ["sh", "-c", "sleep 3600"]
    assert deployment.spec["env"] == ["A=1", "B=two"]
    assert deployment.spec["labels"] == {"team": "web"}
    assert deployment.spec["memory_limit"] == 64 << 20
    assert deployment.spec["cpu_bind"] is False
    workloads = Workload.objects.filter(deployment=deployment, state=Workload.State.PENDING)
    assert sorted(ui_enqueued) == sorted(("agents.create_workload", w.pk) for w in workloads)
    assert workloads
    event = AuditEvent.objects.get(action="deployment.create")
    assert event.via == "ui"
    assert event.actor == deployer


def test_deploy_without_javascript_redirects_to_the_deployment(
    n1: Node, ui_client: Login, admin_user: Any, ui_enqueued: list[tuple[Any, ...]]
) -> None:
    response = ui_client(admin_user).post(url("deploy", "eru"), deploy_data())
    assert response.status_code == 302
    assert response["Location"] == url("deployment-detail", Deployment.objects.get().pk)


# --- deployment and workload pages --------------------------------------------------------------
def test_progress_polls_every_second_and_stops_once_final(n1: Node, ui_client: Login, viewer: Any) -> None:
    d = DeploymentFactory(pod=n1.pod, count=2, total=2, succeeded=1, plan={"n1": 2})
    WorkloadFactory(node=n1, name="web_main_aaaaaa", deployment=d, container_id="c0ffee" * 10)
    WorkloadFactory(node=n1, name="web_main_bbbbbb", state=Workload.State.CREATING, deployment=d)
    client = ui_client(viewer)
    page = html(client.get(url("deployment-detail", d.pk)))
    assert 'hx-trigger="every 1s"' in page
    assert 'style="width: 50%"' in page
    assert "<html" in page
    landing = client.get(url("deployment-detail", d.pk), headers=HX)  # where HX-Location leads
    assert landing.status_code == 200
    assert "<html" in html(landing)
    poll = client.get(url("deployment-detail", d.pk), headers=hx("progress"))
    assert poll.status_code == 200
    assert "<html" not in html(poll)
    assert 'hx-trigger="every 1s"' in html(poll)
    assert "web_main_bbbbbb" in html(poll)

    Deployment.objects.filter(pk=d.pk).update(failed=1, state=Deployment.State.PARTIAL)
    Workload.objects.filter(name="web_main_bbbbbb").update(
        state=Workload.State.FAILED, error="image not found"
    )
    poll = client.get(url("deployment-detail", d.pk), headers=hx("progress"))
    assert poll.status_code == 286  # htmx stops polling
    assert "every 1s" not in html(poll)
    assert "image not found" in html(poll)
    assert "partial" in html(poll)
    assert "every 1s" not in html(client.get(url("deployment-detail", d.pk)))


def test_workload_page_shows_its_resources_and_buttons_for_deployers(
    n1: Node, ui_client: Login, deployer: Any, viewer: Any
) -> None:
    w = WorkloadFactory(
        node=n1,
        name="web_main_aaaaaa",
        container_id="ab" * 32,
        cpu_map={"1": 50},
        cpu_bind=True,
        memory_limit=64 << 20,
        networks={"bridge": "10.1.0.5"},
    )
    body = html(ui_client(deployer).get(url("workload-detail", w.pk)))
    assert "abababababab" in body
    assert "core 1: 50" in body
    assert "10.1.0.5" in body
    assert "64.0\xa0MB" in body
    assert 'value="restart"' in body
    assert "Remove" in body
    assert 'value="restart"' not in html(ui_client(viewer).get(url("workload-detail", w.pk)))
    poll = ui_client(viewer).get(url("workload-detail", w.pk), headers=hx("workload-state"))
    assert poll.status_code == 286  # running: nothing to poll for
    assert "<html" not in html(poll)


def test_viewer_cannot_control_or_remove_workloads(n1: Node, ui_client: Login, viewer: Any) -> None:
    w = WorkloadFactory(node=n1, name="web_main_aaaaaa")
    client = ui_client(viewer)
    assert client.post(url("workload-control", w.pk), {"action": "stop"}).status_code == 403
    assert client.post(url("workload-remove", w.pk)).status_code == 403
    assert Workload.objects.get(pk=w.pk).state == Workload.State.RUNNING
    assert not AuditEvent.objects.filter(action__startswith="workload.").exists()


def test_deployer_stops_and_removes_workloads(
    n1: Node, ui_client: Login, deployer: Any, ui_enqueued: list[tuple[Any, ...]]
) -> None:
    running = WorkloadFactory(node=n1, name="web_main_aaaaaa")
    failed = WorkloadFactory(node=n1, name="web_main_bbbbbb", state=Workload.State.FAILED)
    pending = WorkloadFactory(node=n1, name="web_main_cccccc", state=Workload.State.PENDING)
    client = ui_client(deployer)
    response = client.post(url("workload-control", running.pk), {"action": "stop"}, headers=HX)
    assert response["HX-Location"].startswith('{"path": "' + url("workload-detail", running.pk))
    assert AuditEvent.objects.filter(action="workload.stop", via="ui", actor=deployer).exists()
    assert ui_enqueued == [("agents.control_workload", running.pk, "stop")]
    response = client.post(url("workload-remove", failed.pk))
    assert response["Location"] == url("pod-detail", "eru")
    assert not Workload.objects.filter(pk=failed.pk).exists()
    poll = client.get(url("workload-detail", failed.pk), headers=hx("workload-state"))
    assert poll.status_code == 286
    assert "no longer exists" in html(poll)  # a page still polling stops
    response = client.post(url("workload-remove", running.pk), follow=True)
    assert Workload.objects.get(pk=running.pk).state == Workload.State.REMOVING
    assert ui_enqueued[-1] == ("agents.remove_workload", running.pk)
    assert "Removal of web_main_aaaaaa requested." in html(response)
    response = client.post(url("workload-remove", pending.pk), follow=True)
    assert "still being created" in html(response)
    assert Workload.objects.get(pk=pending.pk).state == "pending"


# --- audit --------------------------------------------------------------------------------------
def test_audit_shows_staff_everything_and_members_their_pods(
    n1: Node, ui_client: Login, admin_user: Any, viewer: Any, outsider: Any
) -> None:
    client = ui_client(admin_user)
    client.post(url("node-down", "n1"))
    client.post(url("pod-list"), {"name": "other", "favor": "cpu"})
    staff = html(client.get(url("audit-list")))
    assert "node.down" in staff
    assert "other" in staff
    member = html(ui_client(viewer).get(url("audit-list")))
    assert "node.down" in member
    assert "pod other" not in member
    assert "<code>node.down</code>" not in html(ui_client(outsider).get(url("audit-list")))  # a row
    partial = ui_client(admin_user).get(url("audit-list"), {"pod": "other"}, headers=hx("events"))
    assert "<html" not in html(partial)
    assert "node.down" not in html(partial)
    assert "pod.add" in html(partial)


# --- query counts -------------------------------------------------------------------------------
def _populate(pods: int, nodes: int, workloads: int) -> None:
    """Pods with nodes, workloads and deployments, written directly (fixtures may)."""
    for p in range(pods):
        pod = PodFactory(name="eru" if p == 0 else f"pod{p}")
        for n in range(nodes):
            node = NodeFactory(
                name=f"p{p}n{n}", pod=pod, cpu_map={"0": 100}, memory=1 << 30, labels={"rack": str(n)}
            )
            d = DeploymentFactory(pod=pod, count=workloads)
            WorkloadFactory.create_batch(workloads, node=node, deployment=d)


@pytest.mark.parametrize("size", [1, 8])
def test_pod_list_queries_do_not_grow_with_rows(
    ui_members: Pod, ui_alive: set[str], ui_client: Login, admin_user: Any, size: int,
    django_assert_max_num_queries: Any,
) -> None:  # fmt: skip
    _populate(pods=size, nodes=size, workloads=2)
    ui_alive.update(n.name for n in Node.objects.all())
    client = ui_client(admin_user)
    with django_assert_max_num_queries(4):  # session, user, pods with counts, up nodes
        body = html(client.get(url("pod-list")))
    assert body.count("<tr>") == size + 1


@pytest.mark.parametrize("size", [1, 12])
def test_pod_detail_queries_do_not_grow_with_rows(
    ui_members: Pod, ui_alive: set[str], ui_client: Login, deployer: Any, size: int,
    django_assert_max_num_queries: Any,
) -> None:  # fmt: skip
    _populate(pods=1, nodes=size, workloads=3)
    Workload.objects.filter(pk=Workload.objects.first().pk).update(state=Workload.State.CREATING)
    client = ui_client(deployer)
    # session, user, pod, can_deploy, nodes, deployments, workloads, their count, busy, status counts,
    # the quotas of her teams (their use only when there is one), the node totals (one aggregate)
    with django_assert_max_num_queries(12):
        body = html(client.get(url("pod-detail", "eru")))
    assert body.count('<tr id="node-') == size
    assert 'hx-trigger="every 2s"' in body


def test_deployment_page_queries_do_not_grow_with_workloads(
    ui_members: Pod, ui_client: Login, viewer: Any, django_assert_max_num_queries: Any
) -> None:
    _populate(pods=1, nodes=1, workloads=20)
    client, path = ui_client(viewer), url("deployment-detail", Deployment.objects.get().pk)
    # session, user, deployment with pod, the role (secrets and logs: a viewer's), workloads with nodes
    with django_assert_max_num_queries(5):
        assert html(client.get(path)).count("web_main_") == 20
    with django_assert_max_num_queries(5):  # session, user, events with pods, visible pods (subquery)
        client.get(url("audit-list"))


# --- against the real etcd ----------------------------------------------------------------------
@pytest.mark.services
def test_a_node_with_a_real_heartbeat_shows_up(
    ui_members: Pod, ui_node: Callable[..., Node], ui_client: Login, viewer: Any
) -> None:
    ui_node("n1")
    ui_node("n2")
    etcd.heartbeat("n1", "eru", 30)
    body = html(ui_client(viewer).get(url("pod-detail", "eru")))
    assert 'class="badge up">up<' in node_row(body, "n1")
    assert 'class="badge lost">no heartbeat<' in node_row(body, "n2")
