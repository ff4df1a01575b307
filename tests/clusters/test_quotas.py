"""Quotas per team per pod, without Docker: the team a deploy runs on, the refusal (naming the quota,
the use and the request, changing nothing), lambdas, replace (counts once) and realloc (its delta),
and setting them through the service, the API and the admin. Nodes are rows, liveness `ui_alive`;
the race between processes is tests/clusters/test_quota_race.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from clusters import selectors, services
from clusters.models import AuditEvent, Deployment, Node, Pod, Quota, Team, TeamMember, Workload
from clusters.quotas import Amount
from clusters.services.quotas import team_use
from engine import docker
from tests.conftest import IMAGE
from tests.factories import PodFactory

pytestmark = pytest.mark.django_db
M, G = 1 << 20, 1 << 30
Login = Callable[[Any], Client]


@pytest.fixture
def nodes(
    ui_members: Pod, ui_node: Callable[..., Node], ui_alive: set[str], ui_enqueued: list[Any]
) -> list[Node]:
    ui_alive.update({"n1", "n2"})
    return [ui_node("n1"), ui_node("n2")]


@pytest.fixture
def web(deployer: Any) -> Team:
    """Team web, with dora (a deployer of pod eru) in it."""
    team = Team.objects.create(name="web")
    TeamMember.objects.create(team=team, user=deployer)
    return team


@pytest.fixture
def ops() -> Team:
    return Team.objects.create(name="ops")


def _as(user: Any) -> services.Actor:
    return services.Actor(user=user, via="api")


def _spec(pod: Pod, count: int = 2, **fields: Any) -> services.DeploySpec:
    data = {"app": "web", "entrypoint": "e", "image": IMAGE, "count": count, "cpu_limit": 0.5}
    data.update({"memory_limit": "64M", "cpu_bind": False, **fields})
    return services.deployment_validate(pod=pod, data=data)


def _deploy(actor: services.Actor, pod: Pod, count: int = 2, **fields: Any) -> Deployment:
    return services.deployment_create(actor=actor, spec=_spec(pod, count, **fields))


def _refused(call: Callable[[], Any]) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as err:
        call()
    return err.value.message_dict


def _quota(pod: Pod, team: Team, **limits: Any) -> Quota:
    return services.quota_set(actor=services.SYSTEM, pod=pod, team=team, **limits)


# --- the team a deploy runs on ------------------------------------------------------------------
def test_a_deploy_runs_on_the_deployers_only_team(nodes: list[Node], deployer: Any, web: Team) -> None:
    d = _deploy(_as(deployer), nodes[0].pod)
    assert d.team == web
    assert {w.team_id for w in d.workloads.all()} == {web.pk}
    assert team_use(nodes[0].pod, web) == Amount(1.0, 128 * M, 2)


def test_in_several_teams_with_quotas_here_the_deployer_chooses_one_of_those(
    nodes: list[Node], deployer: Any, web: Team, ops: Team
) -> None:
    pod = nodes[0].pod
    TeamMember.objects.create(team=ops, user=deployer)
    lunch = Team.objects.create(name="lunch")
    TeamMember.objects.create(team=lunch, user=deployer)
    assert _deploy(_as(deployer), pod).team is None  # no quota concerns either: no team needed
    _quota(PodFactory(name="other"), web, cpu=1)  # another pod's quota: still none here
    assert _deploy(_as(deployer), pod).team is None
    _quota(pod, web, cpu=100)
    assert _deploy(_as(deployer), pod).team == web  # the only one with a quota here
    errors = _refused(lambda: _deploy(_as(deployer), pod, team="lunch"))  # no stepping past it
    assert errors == {"team": ["team: lunch has no quota in pod eru; deploy on web"]}
    _quota(pod, ops, cpu=100)
    errors = _refused(lambda: _deploy(_as(deployer), pod))
    assert errors == {"team": ["team: you are in teams ops, web: choose one (its quota in pod eru applies)"]}
    assert _deploy(_as(deployer), pod, team="ops").team == ops
    assert _deploy(_as(deployer), pod, team=" web ").team == web


def test_a_team_the_deployer_is_not_in_is_refused(
    nodes: list[Node], deployer: Any, web: Team, ops: Team
) -> None:
    errors = _refused(lambda: _deploy(_as(deployer), nodes[0].pod, team="ops"))
    assert errors == {"team": ["team: you are not in team 'ops' (your teams: web)"]}
    assert not Deployment.objects.exists()


def test_the_system_and_staff_run_on_no_team_unless_they_name_one(
    nodes: list[Node], admin_user: Any, web: Team
) -> None:
    pod = nodes[0].pod
    _quota(pod, web, workloads=0)
    assert _deploy(services.SYSTEM, pod).team is None
    assert _deploy(_as(admin_user), pod).team is None
    assert "workloads 0" in _refused(lambda: _deploy(_as(admin_user), pod, team="web"))["count"][0]
    assert _refused(lambda: _deploy(services.SYSTEM, pod, team="nobody")) == {
        "team": ["team: no such team 'nobody'"]
    }


# --- enforcement --------------------------------------------------------------------------------
def test_a_deploy_above_the_quota_is_refused_naming_it_and_changes_nothing(
    nodes: list[Node], deployer: Any, web: Team
) -> None:
    pod = nodes[0].pod
    _quota(pod, web, cpu=1.5, memory="1G", workloads=10)
    _deploy(_as(deployer), pod)  # 1 cpu of 1.5
    before = (Deployment.objects.count(), Workload.objects.count(), AuditEvent.objects.count())
    usage = sorted(Node.objects.values_list("name", "used_cpu", "used_memory"))
    errors = _refused(lambda: _deploy(_as(deployer), pod))
    assert errors == {
        "count": ["quota of team web in pod eru: cpu 1.5 — 1 in use, this deploy asks for 1 (2 × 0.5)"]
    }
    assert (Deployment.objects.count(), Workload.objects.count(), AuditEvent.objects.count()) == before
    assert sorted(Node.objects.values_list("name", "used_cpu", "used_memory")) == usage
    assert _deploy(_as(deployer), pod, count=1).total == 1  # what fits still goes


def test_the_instances_counted_are_the_plans(nodes: list[Node], deployer: Any, web: Team) -> None:
    _quota(nodes[0].pod, web, workloads=3)
    errors = _refused(lambda: _deploy(_as(deployer), nodes[0].pod, count=2, strategy="EACH"))  # 2 × 2 nodes
    assert errors["count"] == ["quota of team web in pod eru: workloads 3 — 0 in use, this deploy asks for 4"]


def test_failed_workloads_hold_nothing_and_free_the_quota(
    nodes: list[Node], deployer: Any, web: Team
) -> None:
    pod = nodes[0].pod
    _quota(pod, web, workloads=2)
    d = _deploy(_as(deployer), pod)
    assert "workloads 2 — 2 in use" in _refused(lambda: _deploy(_as(deployer), pod, count=1))["count"][0]
    d.workloads.update(state=Workload.State.FAILED)
    assert _deploy(_as(deployer), pod).team == web


def test_under_a_cpu_quota_an_unlimited_request_is_refused(
    nodes: list[Node], deployer: Any, web: Team
) -> None:
    _quota(nodes[0].pod, web, cpu=4)
    errors = _refused(lambda: _deploy(_as(deployer), nodes[0].pod, count=1, cpu_limit=0))
    assert "asks for unlimited cpu (a request of 0)" in errors["count"][0]


def test_a_lambda_counts_as_a_deploy(nodes: list[Node], deployer: Any, web: Team) -> None:
    pod = nodes[0].pod
    _quota(pod, web, cpu=0.5)
    run = services.lambda_create(actor=_as(deployer), spec=_spec(pod, 1, command=["true"]), timeout=60)
    assert run.deployment.team == web
    errors = _refused(lambda: services.lambda_create(actor=_as(deployer), spec=_spec(pod, 1), timeout=60))
    assert errors["count"] == ["quota of team web in pod eru: cpu 0.5 — 0.5 in use, this lambda asks for 0.5"]


def test_a_replace_counts_once_and_keeps_each_workloads_team(
    nodes: list[Node], deployer: Any, web: Team
) -> None:
    pod = nodes[0].pod
    d = _deploy(_as(deployer), pod)
    d.workloads.update(state=Workload.State.RUNNING, container_id="c" * 64)
    _quota(pod, web, cpu=1, workloads=2)  # full
    r = services.workload_replace(actor=_as(deployer), pod=pod, data={"app": "web", "entrypoint": "e"})
    assert r.team == web
    assert {w.team_id for w in r.workloads.all()} == {web.pk}
    assert team_use(pod, web) == Amount(1.0, 128 * M, 2)  # the replacements borrow: counted once
    data = {"app": "web", "entrypoint": "e", "team": "web"}
    errors = _refused(lambda: services.workload_replace(actor=_as(deployer), pod=pod, data=data))
    assert errors == {"team": ["team: a replace keeps each workload's team (and its quota use)"]}


@pytest.fixture
def updated(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """`docker update` as realloc calls it, recorded (no node to reach here)."""
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(selectors, "node_client", lambda node, timeout=None: None)
    monkeypatch.setattr(docker, "update", lambda client, cid, settings: calls.append(settings))
    return calls


def test_a_realloc_delta_counts_against_its_workloads_team(
    nodes: list[Node], deployer: Any, web: Team, updated: list[dict[str, Any]]
) -> None:
    pod = nodes[0].pod
    d = _deploy(_as(deployer), pod, node_names=["n1"])
    d.workloads.update(state=Workload.State.RUNNING, container_id="c" * 64)
    w = d.workloads.order_by("pk").first()
    assert w is not None
    _quota(pod, web, cpu=1.5, memory="256M")
    grow = services.Change(cpu_request=1, cpu_limit=1)
    errors = _refused(lambda: services.workload_realloc(actor=_as(deployer), workload=w, change=grow))
    assert errors == {
        "cpu_request": ["quota of team web in pod eru: cpu 1.5 — 1 in use, this realloc asks for 1 more"]
    }
    more_memory = services.Change(memory_request=256 * M, memory_limit=256 * M)
    errors = _refused(lambda: services.workload_realloc(actor=_as(deployer), workload=w, change=more_memory))
    assert list(errors) == ["memory_request"]
    assert not updated  # refused before Docker was asked
    fits = services.Change(cpu_request=0.5, cpu_limit=0.5)
    assert services.workload_realloc(actor=_as(deployer), workload=w, change=fits).cpu_request == 1.0
    _quota(pod, web, cpu=0.5)  # now below the use (1.5): shrinking is still allowed
    shrink = services.Change(cpu_request=-0.5, cpu_limit=-0.5)
    assert services.workload_realloc(actor=_as(deployer), workload=w, change=shrink).cpu_request == 0.5
    assert len(updated) == 2


# --- setting quotas -----------------------------------------------------------------------------
def test_quota_set_is_for_administrators_validated_and_audited(
    ui_members: Pod, admin_user: Any, deployer: Any, web: Team
) -> None:
    pod = ui_members
    with pytest.raises(PermissionDenied):
        services.quota_set(actor=_as(deployer), pod=pod, team=web, cpu=1)
    errors = _refused(
        lambda: services.quota_set(
            actor=_as(admin_user), pod=pod, team=web, cpu=-1, memory="lots", workloads=1.5
        )
    )
    assert set(errors) == {"cpu", "memory", "workloads"}
    for bad in (float("nan"), float("inf"), True, "many"):
        assert "cpu" in _refused(
            lambda bad=bad: services.quota_set(actor=_as(admin_user), pod=pod, team=web, cpu=bad)
        )
    assert "team" in _refused(lambda: services.quota_set(actor=_as(admin_user), pod=pod, team=None))
    quota = services.quota_set(actor=_as(admin_user), pod=pod, team=web, cpu="2", memory="8G", workloads="5")
    assert (quota.cpu, quota.memory, quota.workloads) == (2.0, 8 * G, 5)
    services.quota_set(actor=_as(admin_user), pod=pod, team=web, cpu=2, memory=8 * G, workloads=5)  # the same
    services.quota_set(actor=_as(admin_user), pod=pod, team=web, cpu=4)  # memory, workloads: no limit
    events = list(AuditEvent.objects.filter(action=AuditEvent.Action.QUOTA_SET).order_by("id"))
    assert [(e.before, e.after) for e in events] == [
        (None, {"team": "web", "cpu": 2.0, "memory": 8 * G, "workloads": 5}),
        (
            {"team": "web", "cpu": 2.0, "memory": 8 * G, "workloads": 5},
            {"team": "web", "cpu": 4.0, "memory": None, "workloads": None},
        ),
    ]
    assert events[0].actor_name == "admin"
    assert events[0].pod_name == "eru"
    services.quota_remove(actor=_as(admin_user), pod=pod, team=web)
    assert not Quota.objects.exists()
    assert AuditEvent.objects.get(action=AuditEvent.Action.QUOTA_REMOVE).before["cpu"] == 4.0
    assert _refused(lambda: services.quota_remove(actor=_as(admin_user), pod=pod, team=web)) == {
        "team": ["team: team web has no quota in pod eru"]
    }


def test_a_quota_below_the_use_is_allowed_and_refuses_new_work(
    nodes: list[Node], deployer: Any, web: Team
) -> None:
    pod = nodes[0].pod
    _deploy(_as(deployer), pod)
    _quota(pod, web, workloads=1)
    [row] = services.quota_rows(pod)
    assert [(a.name, a.use, a.pct) for a in row.axes] == [
        ("cpu", 1.0, None),
        ("memory", 128 * M, None),
        ("workloads", 2, 100),
    ]
    assert "workloads 1 — 2 in use" in _refused(lambda: _deploy(_as(deployer), pod, count=1))["count"][0]


# --- the API ------------------------------------------------------------------------------------
def _api(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_the_api_shows_members_each_teams_quota_and_use_and_lets_admins_set_it(
    nodes: list[Node], admin_user: Any, deployer: Any, viewer: Any, outsider: Any, web: Team, ops: Team,
    django_assert_max_num_queries: Any,
) -> None:  # fmt: skip
    path = "/api/pods/eru/quotas/"
    _deploy(_as(deployer), nodes[0].pod)
    assert _api(outsider).get(path).status_code == 404
    assert _api(viewer).put(path, {"team": "web", "cpu": 1}, format="json").status_code == 403
    put = _api(admin_user).put(
        path, {"team": "web", "cpu": 4, "memory": "1G", "workloads": 10}, format="json"
    )
    assert put.status_code == 200, put.content
    assert put.json() == {
        "team": "web", "cpu": 4.0, "memory": G, "workloads": 10,
        "use": {"cpu": 1.0, "memory": 128 * M, "workloads": 2},
    }  # fmt: skip
    _api(admin_user).put(path, {"team": "ops", "workloads": 0}, format="json")
    with django_assert_max_num_queries(4):  # the pod (as the caller sees it), its teams, quotas, use
        listed = _api(admin_user).get(path).json()
    assert [(q["team"], q["workloads"], q["use"]["workloads"]) for q in listed] == [
        ("ops", 0, 0),
        ("web", 10, 2),
    ]
    assert [q["team"] for q in _api(deployer).get(path).json()] == ["web"]  # their own teams' only
    assert _api(viewer).get(path).json() == []  # in no team
    bad = _api(admin_user).put(path, {"team": "web", "cpu": "x", "memory": -5, "size": 1}, format="json")
    assert bad.status_code == 400
    assert set(bad.json()) == {"size"}
    bad = _api(admin_user).put(path, {"team": "web", "memory": "-5"}, format="json")
    assert bad.json() == {"memory": ["memory: -5 is below 0"]}
    assert _api(admin_user).put(path, {"team": "sales"}, format="json").json() == {
        "team": ["team: no such team 'sales'"]
    }
    assert _api(viewer).delete(path + "?team=ops").status_code == 403
    assert _api(admin_user).delete(path + "?team=ops").status_code == 204
    assert _api(admin_user).delete(path + "?team=ops").status_code == 400
    assert [e.via for e in AuditEvent.objects.filter(action__startswith="quota.")] == ["api", "api", "api"]


def test_a_deploy_through_the_api_names_its_team(
    nodes: list[Node], deployer: Any, web: Team, ops: Team
) -> None:
    body = {
        "pod": "eru",
        "app": "web",
        "entrypoint": "e",
        "image": IMAGE,
        "cpu_limit": 0.5,
        "cpu_bind": False,
    }
    created = _api(deployer).post("/api/deployments/", {**body, "team": "web"}, format="json")
    assert created.status_code == 201, created.content
    assert Deployment.objects.get(pk=created.json()["id"]).team == web
    refused = _api(deployer).post("/api/deployments/", {**body, "team": "ops"}, format="json")
    assert refused.status_code == 400
    assert "you are not in team 'ops'" in refused.json()["team"][0]


# --- the portal and the admin -------------------------------------------------------------------
def test_the_pod_page_shows_members_their_teams_quotas_with_use(
    nodes: list[Node], ui_client: Login, deployer: Any, viewer: Any, admin_user: Any, web: Team, ops: Team
) -> None:
    pod = nodes[0].pod
    _deploy(_as(deployer), pod)
    _quota(pod, web, cpu=4, memory="1G")
    _quota(pod, ops, workloads=3)
    page = ui_client(deployer).get(reverse("clusters:pod-detail", args=["eru"])).content.decode()
    assert 'id="quota-web"' in page
    assert 'id="quota-ops"' not in page  # not her team
    assert 'aria-valuenow="25"' in page  # 1 of 4 cpus
    assert "1 / 4" in page
    assert "128M / 1G" in page
    assert "2 / no limit" in page
    assert (
        "Quotas" not in ui_client(viewer).get(reverse("clusters:pod-detail", args=["eru"])).content.decode()
    )
    every = ui_client(admin_user).get(reverse("clusters:pod-detail", args=["eru"])).content.decode()
    assert 'id="quota-web"' in every
    assert 'id="quota-ops"' in every


def test_the_deploy_form_offers_a_team_choice_to_a_member_of_several(
    nodes: list[Node], ui_client: Login, deployer: Any, web: Team, ops: Team
) -> None:
    client, path = ui_client(deployer), reverse("clusters:deploy", args=["eru"])
    TeamMember.objects.create(team=ops, user=deployer)
    _quota(nodes[0].pod, web, cpu=8)
    _quota(nodes[0].pod, ops, cpu=8)
    page = client.get(path).content.decode()
    assert '<option value="ops">ops</option>' in page
    form = {"entrypoint": "e", "image": IMAGE, "count": 1, "cpu_limit": 0.5, "memory_limit": "64M"}
    form.update({"app": "web", "strategy": "AUTO", "action": "deploy"})
    refused = client.post(path, form).content.decode()
    assert "you are in teams ops, web: choose one" in refused
    assert client.post(path, {**form, "team": "web"}).status_code == 302
    assert Deployment.objects.get().team == web


def test_the_deploy_form_of_a_member_of_one_team_has_no_choice(
    nodes: list[Node], ui_client: Login, deployer: Any, web: Team
) -> None:
    assert (
        'name="team"'
        not in ui_client(deployer).get(reverse("clusters:deploy", args=["eru"])).content.decode()
    )


def test_the_lambda_form_offers_the_same_choice(
    nodes: list[Node], ui_client: Login, deployer: Any, web: Team, ops: Team
) -> None:
    client, path = ui_client(deployer), reverse("clusters:lambda-run", args=["eru"])
    assert 'name="team"' not in client.get(path).content.decode()  # one team: it is the default
    TeamMember.objects.create(team=ops, user=deployer)
    _quota(nodes[0].pod, web, cpu=8)
    _quota(nodes[0].pod, ops, cpu=8)
    assert '<option value="ops">ops</option>' in client.get(path).content.decode()
    form = {"image": IMAGE, "command": "echo hi", "count": 1, "timeout": 60, "cpu": 0.5, "memory": "64M"}
    assert "you are in teams ops, web: choose one" in client.post(path, form).content.decode()
    assert client.post(path, {**form, "team": "web"}).status_code == 302
    assert Deployment.objects.get().team == web


def test_the_admin_sets_quotas_through_the_service(
    ui_pod: Pod, ui_client: Login, admin_user: Any, web: Team
) -> None:
    client = ui_client(admin_user)
    add = reverse("admin:clusters_quota_add")
    bad = client.post(add, {"pod": ui_pod.pk, "team": web.pk, "cpu": "-1", "memory": "lots", "workloads": ""})
    assert bad.status_code == 200
    assert "cpu: -1" in bad.content.decode()
    assert "memory: &#x27;lots&#x27; is not a size" in bad.content.decode()
    done = client.post(add, {"pod": ui_pod.pk, "team": web.pk, "cpu": "2", "memory": "8G", "workloads": ""})
    assert done.status_code == 302
    quota = Quota.objects.get()
    assert (quota.cpu, quota.memory, quota.workloads) == (2.0, 8 * G, None)
    event = AuditEvent.objects.get(action=AuditEvent.Action.QUOTA_SET)
    assert event.via == "admin"
    change = reverse("admin:clusters_quota_change", args=[quota.pk])
    assert 'value="8G"' in client.get(change).content.decode()
    assert client.post(change, {"cpu": "3", "memory": "8G", "workloads": "4"}).status_code == 302
    quota.refresh_from_db()
    assert (quota.cpu, quota.workloads) == (3.0, 4)
    assert (
        client.post(reverse("admin:clusters_quota_delete", args=[quota.pk]), {"post": "yes"}).status_code
        == 302
    )
    assert not Quota.objects.exists()
    assert AuditEvent.objects.filter(action=AuditEvent.Action.QUOTA_REMOVE, via="admin").count() == 1


def test_a_team_with_workloads_on_its_quotas_is_not_removed(
    nodes: list[Node], admin_user: Any, deployer: Any, web: Team
) -> None:
    _quota(nodes[0].pod, web, cpu=8)
    _deploy(_as(deployer), nodes[0].pod)
    errors = _refused(lambda: services.team_remove(actor=_as(admin_user), team=web))
    assert errors == {"team": ["team web has 2 workloads on its quotas; remove them first"]}
    assert Team.objects.filter(name="web").exists()
