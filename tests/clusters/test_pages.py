"""Pages a team lives in (issue 14, item 3), fast tier: the pod page's node pages and live refresh at
a constant number of queries, the deploy form's one-time token, an ended session on htmx requests,
the placement failure summary and capacity preview, the action buttons by state, the styled error
pages, and the WCAG AA contrast of the stylesheet's colour pairs (computed from site.css)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.shortcuts import resolve_url
from django.template import loader
from django.test import Client
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

import scheduling
from clusters import form_tokens, placement
from clusters.models import Deployment, Node, Pod, Workload
from scheduling.placement import Shortfall, limited_out, node_fit
from tests.clusters.test_views import HX, deploy_data, html, hx, url
from tests.factories import DeploymentFactory, PodMemberFactory, WorkloadFactory

pytestmark = pytest.mark.django_db
Login = Callable[[Any], Client]
GIB = 1 << 30
CSS = Path(__file__).resolve().parents[2] / "clusters" / "static" / "clusters" / "site.css"


def _nodes(pod: Pod, n: int, alive: set[str], **fields: Any) -> None:
    Node.objects.bulk_create(
        Node(
            name=f"m{i:04d}",
            pod=pod,
            endpoint=f"tcp://10.0.0.{i % 250}:2376",
            cpu_map={"0": 100, "1": 100},
            memory=4 * GIB,
            **fields,
        )
        for i in range(n)
    )
    alive.update(f"m{i:04d}" for i in range(n))


def node_rows(body: str) -> list[str]:
    return re.findall(r'<tr id="node-([^"]+)">', body)


# --- the pod page: pages of nodes, totals over all, live refresh ------------------------------------
def test_pod_page_shows_a_page_of_nodes_and_totals_over_all_of_them(
    ui_members: Pod, ui_alive: set[str], ui_client: Login, viewer: Any
) -> None:
    _nodes(ui_members, 60, ui_alive)
    Node.objects.filter(name="m0001").update(bypass=True)
    client = ui_client(viewer)
    body = html(client.get(url("pod-detail", "eru")))
    assert node_rows(body) == [f"m{i:04d}" for i in range(25)]
    assert "<strong>60</strong> nodes" in body
    assert '<span class="badge up">59 up</span>' in body
    assert '<span class="badge down">1 down</span>' in body
    assert "Nodes 1–25 of 60 · page 1 of 3" in body
    assert 'rel="next"' in body
    assert 'rel="prev"' not in body
    last = html(client.get(url("pod-detail", "eru") + "?page=3"))
    assert node_rows(last) == [f"m{i:04d}" for i in range(50, 60)]
    assert 'rel="prev"' in last
    assert 'rel="next"' not in last
    for bad, first in (("abc", "m0000"), ("0", "m0000"), ("99", "m0050"), ("-1", "m0000")):
        assert node_rows(html(client.get(url("pod-detail", "eru") + f"?page={bad}")))[0] == first


def test_the_nodes_card_polls_while_the_tab_is_visible_and_answers_its_partial(
    ui_members: Pod, ui_alive: set[str], ui_client: Login, viewer: Any
) -> None:
    _nodes(ui_members, 30, ui_alive)
    client = ui_client(viewer)
    body = html(client.get(url("pod-detail", "eru") + "?page=2"))
    section = re.search(r'<section id="nodes"[^>]*>', body)
    assert section, body
    assert f'hx-get="{url("pod-detail", "eru")}?page=2"' in section.group(0)
    assert "hx-trigger=\"every 10s [document.visibilityState === 'visible']\"" in section.group(0)
    partial = html(client.get(url("pod-detail", "eru") + "?page=2", headers=hx("nodes")))
    assert partial.lstrip().startswith('<section id="nodes"')
    assert "<html" not in partial
    assert "Recent deployments" not in partial
    assert node_rows(partial) == [f"m{i:04d}" for i in range(25, 30)]


def test_the_pod_list_refreshes_itself(ui_members: Pod, ui_client: Login, viewer: Any) -> None:
    body = html(ui_client(viewer).get(url("pod-list")))
    rows = re.search(r'<div id="pod-rows"[^>]*>', body)
    assert rows, body
    assert "pods-changed from:body, every 10s [document.visibilityState === 'visible']" in rows.group(0)


def test_the_pod_list_pages_without_counting(
    ui_members: Pod, ui_client: Login, admin_user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clusters import views

    monkeypatch.setattr(views, "PODS_PER_PAGE", 3)
    for i in range(4):
        Pod.objects.create(name=f"p{i}", favor="cpu")
    client = ui_client(admin_user)
    first = html(client.get(url("pod-list")))
    assert re.findall(r'<a href="/pods/([\w-]+)/"><strong>', first) == ["eru", "p0", "p1"]
    assert 'rel="next"' in first
    second = html(client.get(url("pod-list") + "?page=2"))
    assert re.findall(r'<a href="/pods/([\w-]+)/"><strong>', second) == ["p2", "p3"]
    assert 'rel="prev"' in second
    assert 'rel="next"' not in second
    assert f'hx-get="{url("pod-list")}?page=2"' in second


def test_meters_have_accessible_names(n1: Node, ui_client: Login, viewer: Any) -> None:
    body = html(ui_client(viewer).get(url("pod-detail", "eru")))
    meters = re.findall(r'role="meter"\s+aria-label="([^"]*)"', body)
    assert "Bound pieces in use on n1" in meters
    assert "CPU in use on n1" in meters
    assert "Memory in use on n1" in meters
    assert "Memory in use in pod eru" in meters


@pytest.fixture
def n1(ui_members: Pod, ui_node: Callable[..., Node], ui_alive: set[str]) -> Node:
    ui_alive.add("n1")
    return ui_node("n1", used_cpu_map={"0": 50}, used_cpu=0.5, used_memory=2 * GIB, labels={"zone": "a"})


def _queries(client: Client, path: str, **headers: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(path, headers=headers)
    assert response.status_code == 200
    return len(queries)


def test_pod_page_queries_are_the_same_for_10_and_200_nodes(
    ui_members: Pod, ui_alive: set[str], ui_client: Login, deployer: Any
) -> None:
    other = Pod.objects.create(name="big", favor="cpu")
    PodMemberFactory(pod=other, user=deployer, role="deployer")
    _nodes(ui_members, 10, ui_alive)
    Node.objects.bulk_create(
        Node(name=f"big{i:04d}", pod=other, endpoint="tcp://x:2376", cpu_map={"0": 100}, memory=GIB)
        for i in range(200)
    )
    ui_alive.update(f"big{i:04d}" for i in range(200))
    for pod in (ui_members, other):
        WorkloadFactory.create_batch(3, node=pod.nodes.first())
    client = ui_client(deployer)
    client.get(url("pod-detail", "eru"))  # warm the session
    small, big = _queries(client, url("pod-detail", "eru")), _queries(client, url("pod-detail", "big"))
    assert small == big
    assert _queries(client, url("pod-detail", "eru"), **hx("nodes")) == _queries(
        client, url("pod-detail", "big") + "?page=8", **hx("nodes")
    )


# --- the deploy form: one deployment per rendered form ----------------------------------------------
def _token(body: str) -> str:
    match = re.search(r'name="form_token" value="([^"]+)"', body)
    assert match, body
    return match.group(1)


def test_deploy_button_is_disabled_while_the_form_posts(n1: Node, ui_client: Login, deployer: Any) -> None:
    body = html(ui_client(deployer).get(url("deploy", "eru")))
    assert 'hx-disabled-elt="#deploy-form button"' in body
    assert _token(body)


def test_a_second_post_of_the_same_form_makes_no_second_deployment(
    n1: Node, ui_client: Login, deployer: Any, ui_enqueued: list[tuple[Any, ...]]
) -> None:
    client = ui_client(deployer)
    token = _token(html(client.get(url("deploy", "eru"))))
    first = client.post(url("deploy", "eru"), deploy_data(form_token=token), headers=hx("deploy-form"))
    again = client.post(url("deploy", "eru"), deploy_data(form_token=token), headers=hx("deploy-form"))
    deployment = Deployment.objects.get()
    assert first["HX-Location"] == again["HX-Location"]
    assert url("deployment-detail", deployment.pk) in again["HX-Location"]
    plain = client.post(url("deploy", "eru"), deploy_data(form_token=token))  # without JavaScript too
    assert plain.status_code == 302
    assert plain["Location"] == url("deployment-detail", deployment.pk)
    assert Deployment.objects.count() == 1
    assert Workload.objects.count() == 1
    # A new form is a new deployment.
    token2 = _token(html(client.get(url("deploy", "eru"))))
    assert token2 != token
    client.post(url("deploy", "eru"), deploy_data(form_token=token2))
    assert Deployment.objects.count() == 2


def test_a_post_while_the_first_one_still_runs_makes_nothing(
    n1: Node, ui_client: Login, deployer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = ui_client(deployer)
    token = _token(html(client.get(url("deploy", "eru"))))
    monkeypatch.setattr(form_tokens, "WAIT", 0.0)
    assert form_tokens.claim(token).first  # the first POST, still being answered
    second = client.post(url("deploy", "eru"), deploy_data(form_token=token), headers=hx("deploy-form"))
    assert "This form is already being deployed" in html(second)
    assert not Deployment.objects.exists()


def test_a_refused_post_gives_the_form_back_with_its_token(
    n1: Node, ui_client: Login, deployer: Any, ui_enqueued: list[tuple[Any, ...]]
) -> None:
    client = ui_client(deployer)
    token = _token(html(client.get(url("deploy", "eru"))))
    refused = client.post(
        url("deploy", "eru"), deploy_data(form_token=token, count="9999"), headers=hx("deploy-form")
    )
    assert _token(html(refused)) == token
    assert not Deployment.objects.exists()
    client.post(url("deploy", "eru"), deploy_data(form_token=token))
    assert Deployment.objects.count() == 1


def test_another_users_token_is_not_taken(
    n1: Node, ui_client: Login, deployer: Any, admin_user: Any, ui_enqueued: list[tuple[Any, ...]]
) -> None:
    token = _token(html(ui_client(admin_user).get(url("deploy", "eru"))))
    client = ui_client(deployer)
    client.post(url("deploy", "eru"), deploy_data(form_token=token))
    client.post(url("deploy", "eru"), deploy_data(form_token=token))
    assert Deployment.objects.count() == 2  # not hers: no claim (and nothing of the admin's is shown)


# --- an ended session, htmx errors --------------------------------------------------------------------
def test_an_htmx_request_without_a_session_is_sent_to_the_login_page(client: Client, ui_members: Pod) -> None:
    page = "http://testserver" + url("pod-detail", "eru") + "?page=2"
    response = client.get(url("pod-detail", "eru"), headers={**hx("nodes"), "HX-Current-URL": page})
    assert response.status_code == 401
    assert response["HX-Redirect"] == resolve_url("login") + "?next=%2Fpods%2Feru%2F%3Fpage%3D2"
    assert "<html" not in html(response)
    foreign = client.get(url("pod-list"), headers={**HX, "HX-Current-URL": "https://evil.example/x"})
    assert foreign["HX-Redirect"].startswith(resolve_url("login") + "?next=/")  # the partial's own URL
    assert "evil" not in foreign["HX-Redirect"]
    plain = client.get(url("pod-detail", "eru"))
    assert plain.status_code == 302
    assert "HX-Redirect" not in plain


def test_the_page_shows_htmx_errors_in_a_toast(n1: Node, ui_client: Login, viewer: Any) -> None:
    body = html(ui_client(viewer).get(url("pod-list")))
    assert '<div id="toasts" class="toasts" aria-live="assertive">' in body
    assert "htmx:responseError" in body
    assert "htmx:sendError" in body


# --- action buttons follow the workload's state ---------------------------------------------------------
@pytest.mark.parametrize(
    ("state", "action", "buttons", "remove"),
    [
        (Workload.State.RUNNING, "", ["stop", "restart"], True),
        (Workload.State.STOPPED, "", ["start"], True),
        (Workload.State.RUNNING, "stop", [], True),
        (Workload.State.PENDING, "", [], False),
        (Workload.State.CREATING, "", [], False),
        (Workload.State.REMOVING, "", [], False),
        (Workload.State.FAILED, "", [], True),
    ],
)
def test_action_buttons_follow_the_state(
    n1: Node, ui_client: Login, deployer: Any, state: str, action: str, buttons: list[str], remove: bool
) -> None:
    w = WorkloadFactory(node=n1, state=state, action=action)
    body = html(ui_client(deployer).get(url("workload-detail", w.pk)))
    state_card = body[body.index('id="workload-state"') : body.index('id="usage"')]
    assert re.findall(r'name="action" value="(\w+)"', state_card) == buttons
    assert ('class="danger">Remove</button>' in state_card) is remove


# --- placement failure summary and capacity preview ---------------------------------------------------
@pytest.fixture
def fleet(ui_members: Pod, ui_node: Callable[..., Node], ui_alive: set[str]) -> Pod:
    """One node of each kind: fits, set down, no heartbeat, other labels, full memory, too few cores."""
    ui_node("a-ok", labels={"zone": "a"})
    ui_node("b-bypassed", labels={"zone": "a"}, bypass=True)
    ui_node("c-silent", labels={"zone": "a"})
    ui_node("d-zone-b", labels={"zone": "b"})
    ui_node("e-full", labels={"zone": "a"}, memory=GIB, used_memory=GIB - (10 << 20))
    ui_node("f-one-core", labels={"zone": "a"}, cpu_map={"0": 100})
    ui_alive.update({"a-ok", "b-bypassed", "d-zone-b", "e-full", "f-one-core"})
    return ui_members


def _reasons(body: str) -> dict[str, str]:
    rows = re.findall(
        r"<tr><td>([\w-]+)</td>\s*<td class=\"num\">(\w+)</td>\s*<td>(.*?)</td></tr>", body, re.S
    )
    cells = {node: re.sub(r"<[^>]+>", "", why).strip() for node, _, why in rows}
    return {node: fits if cells[node] == "–" else cells[node] for node, fits, _ in rows}


def test_a_deploy_that_cannot_be_placed_says_why_for_each_node(
    fleet: Pod, ui_client: Login, deployer: Any
) -> None:
    data = deploy_data(
        cpu_request="1.5",
        cpu_limit="1.5",
        memory_request="64M",
        memory_limit="64M",
        node_labels="zone=a",
        count="100",
    )
    response = ui_client(deployer).post(url("deploy", "eru"), data, headers=hx("deploy-form"))
    body = html(response)
    assert not Deployment.objects.exists()
    assert "Capacity per node" in body
    why = _reasons(body)
    assert why["a-ok"] == "64"
    assert why["b-bypassed"].startswith("bypassed")
    assert why["c-silent"] == "down: no heartbeat"
    assert why["d-zone-b"] == "label mismatch: zone=b, not a"
    assert why["e-full"] == "not enough memory: 10 MiB free, 64 MiB asked"
    assert why["f-one-core"] == "not enough cpu: 1.5 cpu asked, the node has 1 cores"
    assert "5 of 6 nodes left out: 1 bypassed, 1 down, 1 label mismatch, 1 cpu, 1 memory" in body


def test_bound_cpu_and_the_nodes_limit_are_named(
    ui_members: Pod, ui_node: Callable[..., Node], ui_alive: set[str], ui_client: Login, deployer: Any
) -> None:
    ui_node("x1", used_cpu_map={"0": 100, "1": 60}, used_cpu=1.6)
    ui_node("x2")
    ui_node("x3")
    ui_alive.update({"x1", "x2", "x3"})
    data = deploy_data(
        cpu_bind="bind", cpu_request="1", cpu_limit="1", count="9", nodes_limit="1", action="preview"
    )
    body = html(ui_client(deployer).post(url("deploy", "eru"), data, headers=hx("deploy-form")))
    why = _reasons(body)
    assert why["x1"].startswith(
        "not enough cpu: bound: 1 whole core asked (1 cpu); free: 0 whole cores and 40"
    )
    assert why["x2"] == "2"
    assert why["x3"].startswith("nodes limit")


def test_preview_shows_capacity_next_to_the_plan(fleet: Pod, ui_client: Login, deployer: Any) -> None:
    data = deploy_data(action="preview", memory_request="64M", node_labels="zone=a")
    body = html(ui_client(deployer).post(url("deploy", "eru"), data, headers=hx("deploy-form")))
    assert "Plan preview" in body
    assert "Capacity per node" in body
    assert _reasons(body)["a-ok"] == "64"
    assert "2 fit, taking 128 in all." in body


def test_the_api_400_carries_the_placement_list(fleet: Pod, deployer: Any) -> None:
    api = APIClient()
    api.force_authenticate(deployer)
    body = {
        "pod": "eru", "app": "x", "entrypoint": "y", "image": "eru/busybox:latest", "count": 999,
        "cpu_bind": False, "cpu_request": 1.5, "cpu_limit": 1.5, "memory_request": "64M",
        "memory_limit": "64M", "node_labels": {"zone": "a"},
    }  # fmt: skip
    response = api.post("/api/deployments/plan/", body, format="json")
    assert response.status_code == 400, response.content
    errors = response.json()
    assert "left out" in errors["count"][0]
    assert errors["placement"][0].startswith("5 of 6 nodes left out")
    assert "c-silent: down (no heartbeat)" in errors["placement"]
    assert "e-full: not enough memory (10 MiB free, 64 MiB asked)" in errors["placement"]


def test_node_fit_is_pure_arithmetic() -> None:
    node = scheduling.NodeResources("n", {"0": 100, "1": 100}, 2 * GIB, {}, 0.0, 0)
    unbound = scheduling.ResourceRequest(cpu_request=0.5, memory_request=GIB)
    assert node_fit(node, unbound) == 2
    assert node_fit(node, scheduling.ResourceRequest(cpu_request=0.5)) == scheduling.UNLIMITED
    assert node_fit(node, scheduling.ResourceRequest(cpu_request=3)) == Shortfall(
        "cpu", "3 cpu asked, the node has 2 cores"
    )
    assert node_fit(node, scheduling.ResourceRequest(cpu_request=1, memory_request=3 * GIB)) == Shortfall(
        "memory", "2 GiB free, 3 GiB asked"
    )
    bound = scheduling.ResourceRequest(cpu_request=2.5, memory_request=GIB, cpu_bind=True)
    fit = node_fit(node, bound)
    assert isinstance(fit, Shortfall)
    assert fit.resource == "cpu"
    assert "2 whole cores + 50 pieces" in fit.detail
    assert limited_out([("a", 3), ("b", 5), ("c", 1)], 2) == ["c"]
    assert limited_out([("a", 3)], 0) == []


def test_summary_counts_cover_nodes_not_listed(ui_members: Pod, ui_alive: set[str]) -> None:
    _nodes(ui_members, 70, ui_alive)
    summary = placement.summarize(
        ui_members, node_names=[], node_labels={}, resources=scheduling.ResourceRequest(cpu_request=1)
    )
    assert len(summary.verdicts) == 70
    assert len(summary.shown) == placement.SHOWN
    assert summary.any_number
    assert summary.headline() == "70 nodes, none left out; 70 fit, taking any number in all"


# --- error pages ---------------------------------------------------------------------------------------
def test_404_and_403_are_styled_pages(n1: Node, ui_client: Login, viewer: Any, outsider: Any) -> None:
    missing = ui_client(outsider).get(url("pod-detail", "eru"))
    assert missing.status_code == 404
    assert '<section class="error-page card">' in html(missing)
    assert "site.css" in html(missing)
    refused = ui_client(viewer).get(url("deploy", "eru"))
    assert refused.status_code == 403
    assert "You may not deploy to pod eru." in html(refused)
    assert '<p class="code">403</p>' in html(refused)


def test_the_500_page_needs_no_request_and_no_database(django_assert_num_queries: Any) -> None:
    with django_assert_num_queries(0):
        body = loader.get_template("500.html").render({})
    assert '<p class="code">500</p>' in body
    assert "site.css" in body


def test_deployment_progress_is_announced(n1: Node, ui_client: Login, viewer: Any) -> None:
    d = DeploymentFactory(pod=n1.pod, count=2, total=2, succeeded=1)
    client = ui_client(viewer)
    body = html(client.get(url("deployment-detail", d.pk)))
    assert '<p id="progress-status" class="sr-only" role="status" aria-live="polite">' in body
    assert f'aria-label="Progress of deployment #{d.pk}"' in body
    poll = html(client.get(url("deployment-detail", d.pk), headers=hx("progress")))
    assert '<p id="progress-status" hx-swap-oob="innerHTML">' in poll
    assert "1 running, 0 failed of 2" in poll


# --- contrast -----------------------------------------------------------------------------------------
def _variables(block: str) -> dict[str, str]:
    return {k: v.lower() for k, v in re.findall(r"--([\w-]+):\s*(#[0-9a-fA-F]{3,6})\b", block)}


def themes() -> dict[str, dict[str, str]]:
    css = CSS.read_text()
    light = _variables(css[css.index(":root {") : css.index("}", css.index(":root {"))])
    dark_at = css.index("@media (prefers-color-scheme: dark)")
    dark = {**light, **_variables(css[dark_at : css.index("}", css.index(":root {", dark_at))])}
    return {"light": light, "dark": dark}


def _luminance(colour: str) -> float:
    h = colour.lstrip("#")
    if len(h) == 3:
        h = "".join(c * 2 for c in h)
    channels = [int(h[i : i + 2], 16) / 255 for i in (0, 2, 4)]
    r, g, b = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    hi, lo = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


BADGES = ["ok", "warn", "bad", "idle", "accent"]  # backgrounds of badges and buttons, with --on-color text
TEXTS = ["fg", "muted", "accent", "bad", "ok"]  # text colours (.muted, links, .error, .ok)
GROUNDS = ["bg", "card", "head", "tag"]  # what text sits on
PAIRS = (
    [(f"on-color on {b}", "on-color", b) for b in BADGES]
    + [(f"{t} on {g}", t, g) for t in TEXTS for g in GROUNDS]
    + [("fg on note-ok", "fg", "note-ok"), ("fg on note-bad", "fg", "note-bad")]
)


@pytest.mark.parametrize("theme", ["light", "dark"])
@pytest.mark.parametrize(("pair", "fg", "bg"), PAIRS, ids=[p[0] for p in PAIRS])
def test_text_and_badges_meet_wcag_aa(theme: str, pair: str, fg: str, bg: str) -> None:
    colours = themes()[theme]
    ratio = contrast(colours[fg], colours[bg])
    assert ratio >= 4.5, f"{theme}: {pair} ({colours[fg]} on {colours[bg]}) is {ratio:.2f}:1"


def test_the_top_bar_links_meet_wcag_aa() -> None:
    for theme in themes().values():
        assert contrast("#dfe6f5", theme["top"]) >= 4.5


def test_contrast_of_known_pairs() -> None:
    assert round(contrast("#000", "#fff"), 1) == 21.0
    assert round(contrast("#777777", "#ffffff"), 2) == 4.48
