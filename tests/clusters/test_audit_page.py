"""The audit pages (clusters.audit_views): filters, pagination, target links, the diff view, the
CSV/JSON export, permissions, query counts, and the retention prune (clusters.services.audit)."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone

from clusters import audit_views, services
from clusters.models import AuditEvent, Node, Pod, PodMember, Team, TeamMember, Workload
from tests.factories import DeploymentFactory, NodeFactory, PodFactory, UserFactory, WorkloadFactory

pytestmark = pytest.mark.django_db
Login = Callable[[Any], Client]
SECRET = "s3cr3t-value-42"
A = AuditEvent.Action


def url(name: str, *args: Any) -> str:
    return reverse(f"clusters:{name}", args=args)


def event(pod: Pod | None = None, *, ago: timedelta = timedelta(0), **fields: Any) -> AuditEvent:
    """An audit row written directly (fixtures may), `ago` before now."""
    fields.setdefault("via", "ui")
    fields.setdefault("action", A.NODE_DOWN)
    fields.setdefault("target_type", "node")
    e = AuditEvent.objects.create(pod=pod, pod_name=pod.name if pod else fields.pop("pod_name", ""), **fields)
    if ago:
        AuditEvent.objects.filter(pk=e.pk).update(time=timezone.now() - ago)
    return e


def shown(client: Client, **params: Any) -> list[int]:
    """The ids of the rows the page shows for these filters."""
    response = client.get(url("audit-list"), params)
    assert response.status_code == 200
    return [int(i) for i in re.findall(r'<tr id="event-(\d+)">', response.content.decode())]


@pytest.fixture
def staff(admin_user: Any, ui_client: Login) -> Client:
    return ui_client(admin_user)


# --- filters ------------------------------------------------------------------------------------
def test_each_filter_narrows_the_rows(ui_members: Pod, staff: Client, deployer: Any) -> None:
    other = PodFactory(name="other")
    team = Team.objects.create(name="ops")
    TeamMember.objects.create(team=team, user=deployer)
    by_dora = event(
        ui_members, actor=deployer, actor_name="dora", action=A.WORKLOAD_STOP, target_type="workload",
        target_id="7", target_name="web_main_aaaaaa", via="api",
    )  # fmt: skip
    by_bob = event(other, actor_name="bob", action=A.NODE_DOWN, target_id="3", target_name="n3", via="cli")
    about_team = event(None, actor_name="root", action=A.TEAM_ADD, target_type="team", target_name="ops")
    old = event(
        ui_members, actor_name="bob", action=A.WORKLOAD_STARTED, target_type="workload", ago=timedelta(days=3)
    )
    assert shown(staff) == [about_team.pk, by_bob.pk, by_dora.pk, old.pk]  # newest first
    assert shown(staff, actor="dora") == [by_dora.pk]
    assert shown(staff, team="ops") == [about_team.pk, by_dora.pk]  # its members' acts, and itself
    assert shown(staff, action="workload.stop") == [by_dora.pk]
    assert shown(staff, action="workload.") == [by_dora.pk, old.pk]  # every workload.* action
    assert shown(staff, target_type="node") == [by_bob.pk]
    assert shown(staff, target="7") == [by_dora.pk]
    assert shown(staff, target="N3") == [by_bob.pk]
    assert shown(staff, pod="other") == [by_bob.pk]
    assert shown(staff, via="cli") == [by_bob.pk]
    since = (timezone.localtime() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")  # a datetime-local
    assert shown(staff, **{"from": since}) == [about_team.pk, by_bob.pk, by_dora.pk]
    until = (timezone.now() - timedelta(days=1)).isoformat()  # ISO 8601 with an offset
    assert shown(staff, to=until) == [old.pk]
    assert shown(staff, actor="bob", action="workload.") == [old.pk]  # filters combine


def test_an_invalid_filter_names_the_field_and_shows_nothing(ui_members: Pod, staff: Client) -> None:
    event(ui_members)
    body = staff.get(url("audit-list"), {"from": "yesterday", "action": "nope"}).content.decode()
    assert 'id="audit-errors"' in body
    assert "from:" in body
    assert "action:" in body
    assert 'id="event-' not in body
    assert staff.get(url("audit-export", "csv"), {"via": "fax"}).status_code == 400


def test_free_text_searches_names_action_request_and_the_json(
    ui_members: Pod, staff: Client, ui_client: Login, viewer: Any, deployer: Any
) -> None:
    named = event(ui_members, target_name="web_main_zzqqzz")
    acted = event(ui_members, actor_name="Margaret")
    asked = event(ui_members, request_id="req-5511")
    in_json = event(ui_members, after={"image": "eru/special-image:9"})
    assert shown(staff, q="ZZQQ") == [named.pk]
    assert shown(staff, q="margar") == [acted.pk]
    assert shown(staff, q="req-5511") == [asked.pk]
    assert shown(staff, q="special-image") == [in_json.pk]
    assert shown(staff, q="node.do") == [in_json.pk, asked.pk, acted.pk, named.pk]
    # the JSON is searched only where the reader may see the pod's secrets (a deployer, not a viewer)
    assert shown(ui_client(deployer), q="special-image") == [in_json.pk]
    assert shown(ui_client(viewer), q="special-image") == []


# --- pagination ---------------------------------------------------------------------------------
def test_pages_keep_the_filters(ui_members: Pod, staff: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit_views, "PAGE_SIZE", 2)
    mine = [event(ui_members, actor_name="ann").pk for _ in range(5)][::-1]
    event(ui_members, actor_name="ben")
    body = staff.get(url("audit-list"), {"actor": "ann"}).content.decode()
    assert "5 events" in body
    assert "page 1 of 3" in body
    nxt = re.search(r'href="\?([^"]*)" rel="next"', body)
    assert nxt
    assert "actor=ann" in nxt.group(1)
    assert "page=2" in nxt.group(1)
    assert shown(staff, actor="ann", page=2) == mine[2:4]
    last = staff.get(url("audit-list"), {"actor": "ann", "page": 3}).content.decode()
    prev = re.search(r'href="\?([^"]*)" rel="prev"', last)
    assert prev
    assert "actor=ann" in prev.group(1)
    assert 'rel="next"' not in last
    assert shown(staff, actor="ann", page=99) == mine[4:]  # beyond the end: the last page


# --- links --------------------------------------------------------------------------------------
def test_live_targets_are_linked_and_removed_ones_are_not(ui_members: Pod, staff: Client) -> None:
    node = NodeFactory(name="n1", pod=ui_members)
    w = WorkloadFactory(node=node)
    d = DeploymentFactory(pod=ui_members)
    team = Team.objects.create(name="ops")
    rows = [
        event(ui_members, target_type="node", target_id=str(node.pk), target_name="n1"),
        event(ui_members, target_type="workload", target_id=str(w.pk), target_name=w.name),
        event(ui_members, target_type="deployment", target_id=str(d.pk), target_name=str(d)),
        event(None, target_type="team", target_id=str(team.pk), target_name="ops"),
        event(ui_members, target_type="pod", target_id=str(ui_members.pk), target_name="eru"),
    ]
    gone = event(ui_members, target_type="workload", target_id="999999", target_name="web_main_gone00")
    body = staff.get(url("audit-list")).content.decode()
    for path in (url("node-detail", "n1"), url("workload-detail", w.pk), url("deployment-detail", d.pk),
                 url("team-detail", "ops"), url("pod-detail", "eru")):  # fmt: skip
        assert f'href="{path}" class="target"' in body
    assert len(rows) == body.count('class="target"')
    row = re.search(rf'<tr id="event-{gone.pk}">(.*?)</tr>', body, re.S)
    assert row
    assert "web_main_gone00" in row.group(1)
    assert 'class="target"' not in row.group(1)
    assert url("audit-detail", gone.pk) in row.group(1)  # every row reaches its detail


# --- the diff -----------------------------------------------------------------------------------
def test_the_detail_shows_added_removed_and_changed_paths(ui_members: Pod, staff: Client) -> None:
    e = event(
        ui_members, action=A.WORKLOAD_REALLOC, request_id="req-1",
        before={"cpu": {"request": 1, "limit": 2}, "memory": 64, "labels": {"a": "1"}},
        after={"cpu": {"request": 1, "limit": 4}, "network": "bridge", "labels": {"a": "1"}},
    )  # fmt: skip
    body = staff.get(url("audit-detail", e.pk)).content.decode()
    rows = {path: kind for kind, path in re.findall(r'<tr class="diff-(\w+)"><td><code>([^<]+)</code>', body)}
    assert rows == {"cpu.limit": "changed", "memory": "removed", "network": "added", "cpu.request": "same",
                    "labels.a": "same"}  # fmt: skip
    assert "req-1" in body


def test_diff_flattens_nested_mappings() -> None:
    rows = audit_views.diff({"a": {"b": {"c": 1}}, "l": [1]}, {"a": {"b": {"c": 2, "d": None}}, "l": [1, 2]})
    assert [(r.path, r.kind, r.before, r.after) for r in rows] == [
        ("a.b.c", "changed", "1", "2"), ("a.b.d", "added", "", "null"), ("l", "changed", "[1]", "[1, 2]"),
    ]  # fmt: skip
    assert [(r.path, r.kind) for r in audit_views.diff(None, "x")] == [("(value)", "added")]
    assert audit_views.diff(None, None) == []


# --- export -------------------------------------------------------------------------------------
def _export(client: Client, fmt: str, **params: Any) -> Any:
    response = client.get(url("audit-export", fmt), params)
    assert response.status_code == 200
    text = b"".join(response.streaming_content).decode()
    return response, text


def test_exports_hold_the_filtered_rows_and_no_env_value(ui_members: Pod, staff: Client) -> None:
    keep = [
        event(
            ui_members,
            action=A.DEPLOYMENT_CREATE,
            target_type="deployment",
            after={"env": [f"TOKEN={SECRET}"]},
        ),
        event(ui_members, action=A.DEPLOYMENT_CANCEL, target_type="deployment", before={"state": "running"}),
    ]
    event(ui_members, action=A.NODE_DOWN)
    page = shown(staff, action="deployment.")
    assert page == [keep[1].pk, keep[0].pk]
    response, text = _export(staff, "csv", action="deployment.")
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [int(r["id"]) for r in rows] == page
    assert rows[1]["pod"] == "eru"
    assert rows[1]["action"] == "deployment.create"
    assert SECRET not in text
    assert "hmac-sha256:" in json.loads(rows[1]["after"])["env"]["TOKEN"]
    response, text = _export(staff, "json", action="deployment.")
    data = json.loads(text)
    assert [r["id"] for r in data["results"]] == page
    assert (data["count"], data["truncated"]) == (2, False)
    assert SECRET not in text
    assert response["X-Eru-Export-Truncated"] == "false"
    assert staff.get(url("audit-export", "xml")).status_code == 404


def test_exports_are_bounded(ui_members: Pod, staff: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit_views, "EXPORT_MAX", 2)
    for _ in range(3):
        event(ui_members)
    response, text = _export(staff, "json")
    data = json.loads(text)
    assert (len(data["results"]), data["count"], data["truncated"]) == (2, 3, True)
    response, text = _export(staff, "csv")
    assert len(list(csv.DictReader(io.StringIO(text)))) == 2
    assert response["X-Eru-Export-Truncated"] == "true"


# --- permissions --------------------------------------------------------------------------------
def test_a_viewer_sees_her_pods_events_and_an_outsider_none(ui_members: Pod, ui_client: Login, viewer: Any,
                                                            outsider: Any) -> None:  # fmt: skip
    mine = event(ui_members)
    theirs = event(PodFactory(name="other"))
    podless = event(None, action=A.TOKEN_CREATE, target_type="apitoken")
    vic, olga = ui_client(viewer), ui_client(outsider)
    assert shown(vic) == [mine.pk]
    assert shown(olga) == []
    assert vic.get(url("audit-detail", mine.pk)).status_code == 200
    for pk in (theirs.pk, podless.pk):
        assert vic.get(url("audit-detail", pk)).status_code == 404
    assert olga.get(url("audit-detail", mine.pk)).status_code == 404
    assert [int(r["id"]) for r in csv.DictReader(io.StringIO(_export(vic, "csv")[1]))] == [mine.pk]
    assert json.loads(_export(olga, "json")[1])["results"] == []
    anonymous = Client()
    for path in (url("audit-list"), url("audit-detail", mine.pk), url("audit-export", "csv")):
        assert anonymous.get(path).status_code == 302


# --- query counts -------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [1, 12])
def test_the_page_makes_a_constant_number_of_queries(
    ui_members: Pod, ui_client: Login, viewer: Any, size: int, django_assert_max_num_queries: Any
) -> None:
    node = NodeFactory(name="n1", pod=ui_members)
    d = DeploymentFactory(pod=ui_members)
    for _ in range(size):
        w = WorkloadFactory(node=node)
        event(ui_members, target_type="workload", target_id=str(w.pk), target_name=w.name)
        event(ui_members, target_type="node", target_id=str(node.pk), target_name="n1")
        event(ui_members, target_type="deployment", target_id=str(d.pk), target_name=str(d))
        event(ui_members, target_type="pod", target_id=str(ui_members.pk), target_name="eru")
    client = ui_client(viewer)
    with django_assert_max_num_queries(5):  # session, user, the count, the page, its targets (a UNION)
        body = client.get(url("audit-list"), {"q": "e", "via": "ui"}).content.decode()
    assert body.count('<tr id="event-') == min(4 * size, audit_views.PAGE_SIZE)
    with django_assert_max_num_queries(4):  # session, user, the count, the rows
        _export(client, "csv")


# --- retention ----------------------------------------------------------------------------------
def test_prune_deletes_only_rows_older_than_the_retention(ui_members: Pod) -> None:
    old = [event(ui_members, ago=timedelta(days=400)).pk for _ in range(5)]
    kept = [event(ui_members, ago=timedelta(days=300)).pk, event(ui_members).pk]
    with override_settings(ERU_AUDIT_RETENTION_DAYS=0):
        assert services.audit_prune() == 0  # 0: kept forever
    assert services.audit_prune(days=365, batch=2) == 5  # in batches of 2
    assert not AuditEvent.objects.filter(pk__in=old).exists()
    assert set(AuditEvent.objects.values_list("pk", flat=True)) == set(kept)
    with override_settings(ERU_AUDIT_RETENTION_DAYS=200):
        assert services.audit_prune() == 1


def test_the_prune_task_is_scheduled_daily() -> None:
    from django.conf import settings

    from agents import tasks

    entry = settings.CELERY_BEAT_SCHEDULE["prune-audit"]
    assert (entry["task"], entry["schedule"]) == ("agents.prune_audit", 86400.0)
    assert tasks.prune_audit.name == "agents.prune_audit"


def test_real_services_rows_are_filterable(ui_members: Pod, staff: Client, admin_user: Any) -> None:
    actor = services.Actor(user=admin_user, via="ui")
    services.member_set(
        actor=actor, pod=ui_members, user=UserFactory(username="mia"), role=PodMember.Role.VIEWER
    )
    assert Node.objects.count() == Workload.objects.count() == 0
    assert len(shown(staff, action="member.set", actor=admin_user.username)) == 1
