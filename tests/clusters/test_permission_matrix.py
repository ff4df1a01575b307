"""The permission matrix: persona × action on pod `eru`, through every door that offers the action
(services, REST API, portal, admin site), driven from the one table MATRIX below. Each cell is what
every door must answer: ok (done, and audited with that door's `via`), denied (403 / PermissionDenied
/ the admin's login page), hidden (404: the persona cannot even see the object) or refused (400 / a
field error: the owner rules, e.g. a pod keeps its last owner). Anything but ok changes nothing and
writes no audit row. The gRPC door serves nodes and agents only (no pod role checks of its own
beyond permissions.visible_nodes), so it is not a column here.

The world: pod `eru` with a node n1 and a running workload; otto and olivia own it themselves, tom
through team ops (owner), dora deploys, vic views, tina deploys through team devs; olga is an
outsider, stella is staff (is_staff only), admin is a superuser; newbie belongs nowhere and is the
one roles are given to. Team qa holds nothing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from clusters import permissions, services
from clusters.models import AuditEvent, Node, Pod, PodMember, PodTeamRole, Team, TeamMember, Workload
from tests.factories import NodeFactory, PodFactory, UserFactory, WorkloadFactory

pytestmark = pytest.mark.django_db

PERSONAS = ["superuser", "staff", "owner", "team_owner", "deployer", "viewer", "team_deployer", "outsider"]

# One row per action; one column per persona (in PERSONAS' order). ----------------------------------
MATRIX = """
action                superuser staff   owner   team_owner deployer viewer  team_deployer outsider
see_pod               ok        ok      ok      ok         ok       ok      ok            hidden
deploy                ok        ok      ok      ok         ok       denied  ok            hidden
exec                  ok        ok      ok      ok         denied   denied  denied        hidden
manage_members        ok        ok      ok      ok         denied   denied  denied        hidden
grant_owner           ok        ok      ok      ok         denied   denied  denied        hidden
demote_other_owner    ok        ok      denied  denied     denied   denied  denied        hidden
remove_other_owner    ok        ok      denied  denied     denied   denied  denied        hidden
remove_last_owner     refused   refused refused hidden     denied   denied  denied        hidden
grant_team_role       ok        ok      ok      ok         denied   denied  denied        hidden
take_team_owner_role  ok        ok      denied  denied     denied   denied  denied        hidden
team_member_add       ok        ok      hidden  hidden     hidden   hidden  denied        hidden
node_labels           ok        ok      denied  denied     denied   denied  denied        hidden
admin_add_member      ok        ok      denied  denied     denied   denied  denied        denied
user_make_staff       ok        denied  denied  denied     denied   denied  denied        denied
"""


def _table() -> dict[str, dict[str, str]]:
    header, *rows = [line.split() for line in MATRIX.strip().splitlines()]
    assert header[1:] == PERSONAS
    return {row[0]: dict(zip(PERSONAS, row[1:], strict=True)) for row in rows}


TABLE = _table()


# --- the world -----------------------------------------------------------------------------------
@dataclass
class World:
    pod: Pod
    node: Node
    workload: Workload
    users: dict[str, User]
    teams: dict[str, Team]

    def user(self, name: str) -> User:
        return self.users[name]


@pytest.fixture
def world(db: Any, ui_enqueued: list[Any], ui_alive: set[str], monkeypatch: pytest.MonkeyPatch) -> World:
    from clusters import sync

    monkeypatch.setattr(sync, "push_node", lambda *a, **k: None)  # no etcd in the fast tier
    pod = PodFactory()
    node = NodeFactory(name="n1", pod=pod)
    workload = WorkloadFactory(node=node, container_id="c" * 64)
    names = {
        "superuser": "admin", "staff": "stella", "owner": "otto", "team_owner": "tom", "deployer": "dora",
        "viewer": "vic", "team_deployer": "tina", "outsider": "olga",
    }  # fmt: skip
    users = {persona: UserFactory(username=name) for persona, name in names.items()}
    users["superuser"].is_staff = users["superuser"].is_superuser = True
    users["superuser"].save()
    users["staff"].is_staff = True
    users["staff"].save()
    users["olivia"] = UserFactory(username="olivia")
    users["newbie"] = UserFactory(username="newbie")
    for persona, role in (
        ("owner", "owner"),
        ("olivia", "owner"),
        ("deployer", "deployer"),
        ("viewer", "viewer"),
    ):
        PodMember.objects.create(pod=pod, user=users[persona], role=role)
    teams = {name: Team.objects.create(name=name) for name in ("ops", "devs", "qa")}
    TeamMember.objects.create(team=teams["ops"], user=users["team_owner"])
    TeamMember.objects.create(team=teams["devs"], user=users["team_deployer"])
    PodTeamRole.objects.create(pod=pod, team=teams["ops"], role="owner")
    PodTeamRole.objects.create(pod=pod, team=teams["devs"], role="deployer")
    return World(pod, node, workload, users, teams)


def _role(w: World, username: str) -> str | None:
    return PodMember.objects.filter(pod=w.pod, user__username=username).values_list("role", flat=True).first()


def _team_role(w: World, team: str) -> str | None:
    return PodTeamRole.objects.filter(pod=w.pod, team__name=team).values_list("role", flat=True).first()


# --- the actions, door by door -------------------------------------------------------------------
def _pod_for(user: User) -> Pod:
    return permissions.get_pod_for_user(user, "eru")  # how every door finds the pod: 404 if unseen


def _htmx(client: Client, url: str, data: dict[str, str]) -> Any:
    return client.post(url, data, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="access")


def _admin_change(client: Client, model: str, pk: int, data: dict[str, str]) -> Any:
    return client.post(reverse(f"admin:{model}_change", args=[pk]), data, follow=True)


@dataclass
class Action:
    effect: Callable[[World], bool]  # did the change happen? (reads are always "done")
    services: Callable[[User, World], Any] | None = None
    api: Callable[[APIClient, World], Any] | None = None
    ui: Callable[[Client, World], Any] | None = None
    admin: Callable[[Client, World], Any] | None = None
    prepare: Callable[[World], None] | None = None
    audited: bool = True


def _actor(user: User, via: str = "api") -> services.Actor:
    return services.Actor(user=user, via=via)


def _last_owner(w: World) -> None:
    PodMember.objects.filter(pod=w.pod, user__username="olivia").delete()
    PodTeamRole.objects.filter(pod=w.pod, team__name="ops").delete()


def _member_post(name: str, **data: str) -> Callable[[Client, World], Any]:
    return lambda c, w: _htmx(c, reverse(f"clusters:{name}", args=["eru"]), data)


ACTIONS: dict[str, Action] = {
    "see_pod": Action(
        effect=lambda w: True,
        services=lambda u, w: _pod_for(u),
        api=lambda c, w: c.get("/api/pods/eru/"),
        ui=lambda c, w: c.get("/pods/eru/"),
        audited=False,
    ),
    "deploy": Action(  # operate a workload: what may deploy may stop
        effect=lambda w: Workload.objects.get(pk=w.workload.pk).action == "stop",
        services=lambda u, w: services.workload_control(
            actor=_actor(u), workload=permissions.get_workload_for_user(u, w.workload.pk), action="stop"
        ),
        api=lambda c, w: c.post(f"/api/workloads/{w.workload.pk}/stop/"),
        ui=lambda c, w: c.post(f"/workloads/{w.workload.pk}/control/", {"action": "stop"}),
    ),
    "exec": Action(  # the permission only: running the command needs a real container
        effect=lambda w: True,
        services=lambda u, w: permissions.require_exec(u, _pod_for(u)),
        audited=False,
    ),
    "manage_members": Action(
        effect=lambda w: _role(w, "newbie") == "viewer",
        services=lambda u, w: services.member_set(
            actor=_actor(u), pod=_pod_for(u), user=w.user("newbie"), role="viewer"
        ),
        api=lambda c, w: c.put("/api/pods/eru/members/", {"user": "newbie", "role": "viewer"}, format="json"),
        ui=_member_post("pod-member-set", user="newbie", role="viewer"),
    ),
    "grant_owner": Action(
        effect=lambda w: _role(w, "newbie") == "owner",
        services=lambda u, w: services.member_set(
            actor=_actor(u), pod=_pod_for(u), user=w.user("newbie"), role="owner"
        ),
        api=lambda c, w: c.put("/api/pods/eru/members/", {"user": "newbie", "role": "owner"}, format="json"),
        ui=_member_post("pod-member-set", user="newbie", role="owner"),
    ),
    "demote_other_owner": Action(
        effect=lambda w: _role(w, "olivia") == "viewer",
        services=lambda u, w: services.member_set(
            actor=_actor(u), pod=_pod_for(u), user=w.user("olivia"), role="viewer"
        ),
        api=lambda c, w: c.put("/api/pods/eru/members/", {"user": "olivia", "role": "viewer"}, format="json"),
        ui=_member_post("pod-member-set", user="olivia", role="viewer"),
    ),
    "remove_other_owner": Action(
        effect=lambda w: _role(w, "olivia") is None,
        services=lambda u, w: services.member_remove(actor=_actor(u), pod=_pod_for(u), user=w.user("olivia")),
        api=lambda c, w: c.delete("/api/pods/eru/members/?user=olivia"),
        ui=_member_post("pod-member-remove", user="olivia"),
    ),
    "remove_last_owner": Action(  # otto is the only owner left; anyone who may try is refused
        prepare=_last_owner,
        effect=lambda w: _role(w, "otto") is None,
        services=lambda u, w: services.member_remove(actor=_actor(u), pod=_pod_for(u), user=w.user("owner")),
        api=lambda c, w: c.delete("/api/pods/eru/members/?user=otto"),
        ui=_member_post("pod-member-remove", user="otto"),
    ),
    "grant_team_role": Action(
        effect=lambda w: _team_role(w, "qa") == "viewer",
        services=lambda u, w: services.team_role_set(
            actor=_actor(u), pod=_pod_for(u), team=w.teams["qa"], role="viewer"
        ),
        api=lambda c, w: c.put("/api/pods/eru/teams/", {"team": "qa", "role": "viewer"}, format="json"),
        ui=_member_post("pod-team-set", team="qa", role="viewer"),
    ),
    "take_team_owner_role": Action(
        effect=lambda w: _team_role(w, "ops") is None,
        services=lambda u, w: services.team_role_remove(
            actor=_actor(u), pod=_pod_for(u), team=w.teams["ops"]
        ),
        api=lambda c, w: c.delete("/api/pods/eru/teams/?team=ops"),
        ui=_member_post("pod-team-remove", team="ops"),
    ),
    "team_member_add": Action(  # staff only; tina sees devs (she is in it), the others do not
        effect=lambda w: TeamMember.objects.filter(team__name="devs", user__username="newbie").exists(),
        services=lambda u, w: services.team_member_add(
            actor=_actor(u),
            team=permissions.visible_teams(u).filter(name="devs").first() or _hidden(),
            user=w.user("newbie"),
        ),
        api=lambda c, w: c.put("/api/teams/devs/members/", {"user": "newbie"}, format="json"),
        ui=lambda c, w: c.post("/teams/devs/", {"user": "newbie"}),
    ),
    "node_labels": Action(
        effect=lambda w: Node.objects.get(pk=w.node.pk).labels == {"zone": "a"},
        services=lambda u, w: services.node_set(
            actor=_actor(u),
            node=permissions.visible_nodes(u).filter(name="n1").first() or _hidden(),
            labels={"zone": "a"},
        ),
        api=lambda c, w: c.patch("/api/nodes/n1/", {"labels": {"zone": "a"}}, format="json"),
        admin=lambda c, w: _admin_change(c, "clusters_node", w.node.pk, {"labels": '{"zone": "a"}'}),
    ),
    "admin_add_member": Action(  # the admin site is staff's: owners manage members in the portal
        effect=lambda w: _role(w, "newbie") == "deployer",
        admin=lambda c, w: c.post(
            reverse("admin:clusters_podmember_add"),
            {"pod": str(w.pod.pk), "user": str(w.user("newbie").pk), "role": "deployer"},
            follow=True,
        ),
    ),
    "user_make_staff": Action(
        effect=lambda w: User.objects.get(username="newbie").is_staff,
        services=lambda u, w: services.user_set(
            actor=_actor(u), user=w.user("newbie"), fields={"is_staff": True}
        ),
        admin=lambda c, w: _admin_change(
            c, "auth_user", w.user("newbie").pk, {"username": "newbie", "is_active": "on", "is_staff": "on"}
        ),
    ),
}


def _hidden() -> Any:
    raise Http404("not visible")


# --- how each door's answer reads ----------------------------------------------------------------
def _services_outcome(action: Action, user: User, w: World) -> str:
    assert action.services is not None
    try:
        action.services(user, w)
    except Http404:
        return "hidden"
    except PermissionDenied:
        return "denied"
    except ValidationError:
        return "refused"
    return "ok"


def _api_outcome(response: Any) -> str:
    return {403: "denied", 404: "hidden", 400: "refused"}.get(response.status_code) or (
        "ok" if response.status_code < 300 else f"status {response.status_code}"
    )


def _ui_outcome(response: Any) -> str:
    if response.status_code in (403, 404):
        return {403: "denied", 404: "hidden"}[response.status_code]
    body = response.content.decode()
    if 'data-refusal="denied"' in body:
        return "denied"
    if 'data-refusal="invalid"' in body or 'role="alert"' in body:
        return "refused"
    return "ok" if response.status_code < 400 else f"status {response.status_code}"


def _admin_outcome(response: Any) -> str:
    if response.status_code == 403 or reverse("admin:login") in response.request["PATH_INFO"]:
        return "denied"
    body = response.content.decode()
    if '<li class="error">' in body or "errornote" in body:
        return "refused"
    return "ok" if response.status_code == 200 else f"status {response.status_code}"


def _answer(door: str, action: Action, user: User, w: World) -> str:
    if door == "services":
        return _services_outcome(action, user, w)
    if door == "api":
        client = APIClient()
        client.force_authenticate(user)
        assert action.api is not None
        return _api_outcome(action.api(client, w))
    client = Client()
    client.force_login(user)
    if door == "ui":
        assert action.ui is not None
        return _ui_outcome(action.ui(client, w))
    assert action.admin is not None
    return _admin_outcome(action.admin(client, w))


CASES = [
    pytest.param(name, persona, door, id=f"{name}-{persona}-{door}")
    for name, action in ACTIONS.items()
    for persona in PERSONAS
    for door in ("services", "api", "ui", "admin")
    if getattr(action, door) is not None
]


def test_the_table_and_the_actions_name_the_same_things() -> None:
    assert set(TABLE) == set(ACTIONS)


@pytest.mark.parametrize(("name", "persona", "door"), CASES)
def test_permission_matrix(world: World, name: str, persona: str, door: str) -> None:
    action, expected = ACTIONS[name], TABLE[name][persona]
    if door == "admin" and expected == "hidden":
        expected = "denied"  # the admin site shows one who is not staff nothing at all: its login page
    if action.prepare:
        action.prepare(world)
    before = AuditEvent.objects.count()
    assert _answer(door, action, world.user(persona), world) == expected
    events = AuditEvent.objects.all()[: AuditEvent.objects.count() - before]
    if expected == "ok":
        assert action.effect(world)
        if action.audited:
            assert [e.via for e in events] == [{"services": "api"}.get(door, door)], [str(e) for e in events]
            assert events[0].actor == world.user(persona)
    else:
        assert not action.effect(world) or not action.audited
        assert not events, [str(e) for e in events]


def test_staff_alone_is_a_portal_administrator_and_the_admin_site_agrees(world: World) -> None:
    """is_staff without is_superuser: every pod in the portal, and the admin site shows it every
    clusters model (it used to say "you don't have permission to view or edit anything")."""
    stella = world.user("staff")
    assert set(permissions.visible_pods(stella)) == set(Pod.objects.all())
    client = Client()
    client.force_login(stella)
    index = client.get(reverse("admin:index")).content.decode()
    assert "permission to view or edit anything" not in index
    for model in ("node", "pod", "podmember", "podteamrole", "team", "workload", "auditevent"):
        assert client.get(reverse(f"admin:clusters_{model}_changelist")).status_code == 200, model
    users = client.get(reverse("admin:auth_user_change", args=[world.user("newbie").pk])).content.decode()
    assert 'name="is_staff"' not in users  # users are shown read-only to staff
    assert "md5$" not in users
    assert "pbkdf2" not in users
    assert client.get(reverse("admin:auth_user_add")).status_code == 403
