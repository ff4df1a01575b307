"""Teams and the owner rules: roles through teams, the team services and their audit rows, a pod
that keeps its last owner whichever way one tries to take it, owners who step down but cannot evict,
the REST endpoints (/api/teams/, /api/pods/{name}/teams/) and the portal's panel and teams page.
The matrix of who may do what is tests/clusters/test_permission_matrix.py; this file is the rest."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied, ValidationError
from django.test import Client
from rest_framework.test import APIClient

from clusters import permissions, services
from clusters.models import AuditEvent, Pod, PodMember, PodTeamRole, Team, TeamMember
from tests.factories import PodFactory, UserFactory

pytestmark = pytest.mark.django_db

SYSTEM = services.SYSTEM


def as_user(user: Any, via: str = "api") -> services.Actor:
    return services.Actor(user=user, via=via)


@pytest.fixture
def owner(ui_members: Pod) -> User:
    """otto owns pod eru (dora deploys, vic views there)."""
    return PodMember.objects.create(pod=ui_members, user=UserFactory(username="otto"), role="owner").user


@pytest.fixture
def devs(admin_user: Any) -> Team:
    return services.team_add(actor=as_user(admin_user), name="devs", desc="the developers")


def api(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def actions() -> list[str]:
    return list(AuditEvent.objects.order_by("id").values_list("action", flat=True))


# --- roles through teams -------------------------------------------------------------------------
def test_a_role_is_the_highest_of_ones_own_and_ones_teams(ui_members: Pod, viewer: Any, devs: Team) -> None:
    assert permissions.role_in(viewer, ui_members) == "viewer"
    TeamMember.objects.create(team=devs, user=viewer)
    PodTeamRole.objects.create(pod=ui_members, team=devs, role="deployer")
    assert permissions.role_in(viewer, ui_members) == "deployer"
    assert permissions.can_deploy(viewer, ui_members)
    assert not permissions.can_manage_members(viewer, ui_members)
    PodMember.objects.filter(user=viewer).update(role="owner")  # now their own role is the higher one
    assert permissions.role_in(viewer, ui_members) == "owner"


def test_a_team_alone_makes_a_pod_visible_with_one_query(
    ui_members: Pod, outsider: Any, devs: Team, django_assert_num_queries: Any
) -> None:
    other = PodFactory(name="other")
    third = PodFactory(name="third")
    TeamMember.objects.create(team=devs, user=outsider)
    PodTeamRole.objects.create(pod=other, team=devs, role="viewer")
    PodTeamRole.objects.create(pod=third, team=devs, role="viewer")
    PodMember.objects.create(pod=third, user=outsider, role="deployer")  # both ways: listed once
    with django_assert_num_queries(1):
        assert sorted(p.name for p in permissions.visible_pods(outsider)) == ["other", "third"]
    assert permissions.role_in(outsider, third) == "deployer"
    assert permissions.role_in(outsider, ui_members) is None
    with django_assert_num_queries(1):
        assert permissions.role_in(outsider, other) == "viewer"


# --- team services and their audit rows ----------------------------------------------------------
def test_team_services_are_audited_with_before_and_after(
    admin_user: Any, ui_members: Pod, owner: User, deployer: Any
) -> None:
    staff = as_user(admin_user)
    team = services.team_add(actor=staff, name="ops", desc=" on call ")
    services.team_member_add(actor=staff, team=team, user=deployer)
    services.team_member_add(actor=staff, team=team, user=deployer)  # already in: no change
    services.team_role_set(actor=as_user(owner), pod=ui_members, team=team, role="viewer")
    services.team_role_set(actor=as_user(owner), pod=ui_members, team=team, role="deployer")
    services.team_role_remove(actor=as_user(owner), pod=ui_members, team=team)
    services.team_member_remove(actor=staff, team=team, user=deployer)
    services.team_remove(actor=staff, team=team)
    rows = [(e.action, e.actor, e.pod, e.before, e.after) for e in AuditEvent.objects.order_by("id")]
    assert rows == [
        ("team.add", admin_user, None, None, {"name": "ops", "desc": "on call"}),
        ("team.member_add", admin_user, None, None, {"team": "ops", "user": "dora", "roles": {}}),
        ("team.role_set", owner, ui_members, None, {"team": "ops", "role": "viewer"}),
        (
            "team.role_set",
            owner,
            ui_members,
            {"team": "ops", "role": "viewer"},
            {"team": "ops", "role": "deployer"},
        ),
        ("team.role_remove", owner, ui_members, {"team": "ops", "role": "deployer"}, None),
        ("team.member_remove", admin_user, None, {"team": "ops", "user": "dora", "roles": {}}, None),
        (
            "team.remove",
            admin_user,
            None,
            {"name": "ops", "desc": "on call", "members": [], "roles": {}, "quotas": {}},
            None,
        ),
    ]
    assert not Team.objects.exists()


@pytest.mark.parametrize(("name", "field"), [("", "name"), ("has space", "name"), ("devs", "name")])
def test_bad_team_names_are_field_errors(admin_user: Any, devs: Team, name: str, field: str) -> None:
    with pytest.raises(ValidationError) as refused:
        services.team_add(actor=as_user(admin_user), name=name)
    assert field in refused.value.message_dict
    assert actions() == ["team.add"]


def test_only_staff_change_teams(owner: User, devs: Team, deployer: Any, ui_members: Pod) -> None:
    for call in (
        lambda: services.team_add(actor=as_user(owner), name="mine"),
        lambda: services.team_member_add(actor=as_user(owner), team=devs, user=owner),
        lambda: services.team_remove(actor=as_user(owner), team=devs),
    ):
        with pytest.raises(PermissionDenied):
            call()
    with pytest.raises(PermissionDenied):  # a deployer grants no team a role
        services.team_role_set(actor=as_user(deployer), pod=ui_members, team=devs, role="viewer")
    assert actions() == ["team.add"]


# --- a pod keeps an owner ------------------------------------------------------------------------
def _ops_owns(pod: Pod, admin_user: Any, *users: User) -> Team:
    ops = services.team_add(actor=as_user(admin_user), name="ops")
    for user in users:
        services.team_member_add(actor=as_user(admin_user), team=ops, user=user)
    services.team_role_set(actor=as_user(admin_user), pod=pod, team=ops, role="owner")
    return ops


def test_the_last_owner_is_kept_whichever_way_one_tries(
    ui_members: Pod, admin_user: Any, deployer: Any, outsider: Any
) -> None:
    staff = as_user(admin_user)
    ops = _ops_owns(ui_members, admin_user, outsider)  # olga owns eru through ops, and nobody else does
    before = actions()
    attempts = {
        "team_member_remove": lambda: services.team_member_remove(actor=staff, team=ops, user=outsider),
        "team_role_remove": lambda: services.team_role_remove(actor=staff, pod=ui_members, team=ops),
        "team_role_set": lambda: services.team_role_set(actor=staff, pod=ui_members, team=ops, role="viewer"),
        "team_remove": lambda: services.team_remove(actor=staff, team=ops),
        "user_set": lambda: services.user_set(actor=staff, user=outsider, fields={"is_active": False}),
        "user_remove": lambda: services.user_remove(actor=staff, user=outsider),
    }
    for name, attempt in attempts.items():
        with pytest.raises(ValidationError) as refused:
            attempt()
        assert "without an owner" in " ".join(refused.value.messages), name
    assert actions() == before  # nothing written, not even the audit rows of the refused changes
    assert list(permissions.owners(ui_members)) == [outsider]
    # With a second owner, each of them goes.
    services.member_set(actor=staff, pod=ui_members, user=deployer, role="owner")
    services.team_remove(actor=staff, team=ops)
    assert list(permissions.owners(ui_members)) == [deployer]


def test_an_inactive_owner_does_not_count(
    ui_members: Pod, admin_user: Any, owner: User, deployer: Any
) -> None:
    services.member_set(actor=SYSTEM, pod=ui_members, user=deployer, role="owner")
    services.user_set(actor=as_user(admin_user), user=deployer, fields={"is_active": False})
    with pytest.raises(ValidationError):  # dora owns, but cannot log in: otto is the last owner
        services.member_remove(actor=as_user(admin_user), pod=ui_members, user=owner)


def test_a_pod_without_owners_may_get_and_lose_members(ui_members: Pod, admin_user: Any, viewer: Any) -> None:
    """A new pod has no owner: the rule guards a pod that has one, it does not block one that never did."""
    services.member_remove(actor=as_user(admin_user), pod=ui_members, user=viewer)
    assert not permissions.owners(ui_members).exists()


# --- owners grant owner, step down, never evict ---------------------------------------------------
def test_an_owner_made_by_an_owner_cannot_evict_them(owner: User, ui_members: Pod, outsider: Any) -> None:
    """The issue's attack: otto makes olga owner; olga may not take otto's role (by API or otherwise)."""
    services.member_set(actor=as_user(owner), pod=ui_members, user=outsider, role="owner")
    client = api(outsider)
    assert client.delete("/api/pods/eru/members/?user=otto").status_code == 403
    response = client.put("/api/pods/eru/members/", {"user": "otto", "role": "viewer"}, format="json")
    assert response.status_code == 403
    assert "staff" in response.json()["detail"]
    assert PodMember.objects.get(pod=ui_members, user=owner).role == "owner"
    # she may manage the others, and step down herself; otto then is the last owner, and stays.
    assert (
        client.put("/api/pods/eru/members/", {"user": "vic", "role": "deployer"}, format="json").status_code
        == 200
    )
    assert (
        client.put("/api/pods/eru/members/", {"user": "olga", "role": "deployer"}, format="json").status_code
        == 200
    )
    refused = api(owner).delete("/api/pods/eru/members/?user=otto")
    assert refused.status_code == 400
    assert "without an owner" in refused.json()["user"][0]


def test_a_team_owner_role_is_taken_only_by_staff(
    ui_members: Pod, owner: User, admin_user: Any, outsider: Any
) -> None:
    ops = _ops_owns(ui_members, admin_user, outsider)
    with pytest.raises(PermissionDenied):
        services.team_role_set(actor=as_user(owner), pod=ui_members, team=ops, role="viewer")
    with pytest.raises(PermissionDenied):
        services.team_role_remove(
            actor=as_user(outsider), pod=ui_members, team=ops
        )  # not even its own member
    services.team_role_remove(actor=as_user(admin_user), pod=ui_members, team=ops)
    assert not PodTeamRole.objects.filter(pod=ui_members).exists()


# --- users --------------------------------------------------------------------------------------
def test_user_services_are_superusers_and_audited_without_passwords(admin_user: Any, deployer: Any) -> None:
    su = as_user(admin_user, via="admin")
    stella = services.user_add(actor=su, username="stella", password="pw-stella-1", email="s@example.com")
    services.user_set(actor=su, user=stella, fields={"is_staff": True, "email": "s@example.com"})
    services.user_password_set(actor=su, user=stella, password="pw-stella-2")
    staff_only = as_user(stella)
    with pytest.raises(PermissionDenied):  # staff alone cannot make themselves superuser
        services.user_set(actor=staff_only, user=stella, fields={"is_superuser": True})
    services.user_remove(actor=su, user=stella)
    rows = [(e.action, e.before, e.after) for e in AuditEvent.objects.order_by("id")]
    assert rows[0][0] == "user.add"
    assert rows[0][2]["username"] == "stella"
    assert not rows[0][2]["is_staff"]
    assert rows[1] == ("user.set", {"is_staff": False}, {"is_staff": True})
    assert rows[2] == ("user.set", None, {"password": "set"})
    assert rows[3][0] == "user.remove"
    assert rows[3][1]["is_staff"] is True
    assert "pw-stella" not in str(rows)
    assert "md5$" not in str(rows)


def test_the_last_superuser_is_kept(admin_user: Any) -> None:
    su = as_user(admin_user)
    for fields in ({"is_superuser": False}, {"is_active": False}):
        with pytest.raises(ValidationError):
            services.user_set(actor=su, user=admin_user, fields=fields)
    with pytest.raises(ValidationError):
        services.user_remove(actor=su, user=admin_user)
    assert User.objects.get(pk=admin_user.pk).is_superuser
    assert not AuditEvent.objects.exists()


# --- REST ----------------------------------------------------------------------------------------
def test_teams_api(
    admin_user: Any, devs: Team, deployer: Any, viewer: Any, ui_members: Pod, owner: User
) -> None:
    staff = api(admin_user)
    created = staff.post("/api/teams/", {"name": "ops", "desc": "on call"}, format="json")
    assert created.status_code == 201, created.content
    assert staff.post("/api/teams/", {"name": "ops"}, format="json").status_code == 400
    assert staff.put("/api/teams/devs/members/", {"user": "dora"}, format="json").json() == {"user": "dora"}
    assert staff.put("/api/teams/devs/members/", {"user": "ghost"}, format="json").status_code == 400
    assert api(owner).put(
        "/api/pods/eru/teams/", {"team": "devs", "role": "deployer"}, format="json"
    ).json() == {
        "team": "devs",
        "role": "deployer",
    }
    # dora sees the team she is in, with its roles; vic sees none; members are listed to members
    mine = api(deployer).get("/api/teams/").json()["results"]
    assert len(mine) == 1
    assert mine[0] | {"created_at": None} == {
        "name": "devs",
        "desc": "the developers",
        "members": ["dora"],
        "roles": [{"pod": "eru", "role": "deployer"}],
        "created_at": None,
    }
    assert api(viewer).get("/api/teams/").json()["results"] == []
    assert api(viewer).get("/api/teams/devs/").status_code == 404
    assert api(deployer).get("/api/teams/devs/members/").json() == [{"user": "dora"}]
    assert api(deployer).delete("/api/teams/devs/members/?user=dora").status_code == 403
    assert api(deployer).post("/api/teams/", {"name": "x"}, format="json").status_code == 403
    assert api(deployer).get("/api/pods/eru/teams/").status_code == 403
    assert api(owner).get("/api/pods/eru/teams/").json() == [{"team": "devs", "role": "deployer"}]
    assert api(owner).delete("/api/pods/eru/teams/?team=ops").status_code == 400  # holds no role here
    assert api(owner).delete("/api/pods/eru/teams/?team=devs").status_code == 204
    assert staff.delete("/api/teams/devs/members/?user=dora").status_code == 204
    assert staff.delete("/api/teams/ops/").status_code == 204
    assert actions() == [
        "team.add", "team.add", "team.member_add", "team.role_set", "team.role_remove", "team.member_remove",
        "team.remove",
    ]  # fmt: skip


def test_team_list_api_queries_do_not_grow_with_rows(
    admin_user: Any, ui_members: Pod, django_assert_max_num_queries: Any
) -> None:
    for n in range(8):
        team = Team.objects.create(name=f"t{n}")
        TeamMember.objects.create(team=team, user=UserFactory())
        PodTeamRole.objects.create(pod=ui_members, team=team, role="viewer")
    with django_assert_max_num_queries(5):
        assert len(api(admin_user).get("/api/teams/").json()["results"]) == 8


# --- the portal ----------------------------------------------------------------------------------
def test_the_pod_page_has_the_access_slot_and_the_panel_is_for_owners(
    ui_members: Pod, owner: User, deployer: Any, ui_client: Any, ui_alive: set[str]
) -> None:
    page = ui_client(owner).get("/pods/eru/").content.decode()
    assert 'id="access-slot"' in page
    assert "/pods/eru/access/" in page
    panel = ui_client(owner).get("/pods/eru/access/", HTTP_HX_REQUEST="true").content.decode()
    assert 'id="access"' in panel
    assert "<html" not in panel
    assert 'id="member-dora"' in panel
    assert 'id="member-otto"' in panel
    # Those who may not manage get an empty slot through htmx, a 403 for the page.
    assert ui_client(deployer).get("/pods/eru/access/", HTTP_HX_REQUEST="true").content == b""
    assert ui_client(deployer).get("/pods/eru/access/").status_code == 403
    # Without JavaScript: the page itself, and forms that post and come back to it.
    assert "<html" in ui_client(owner).get("/pods/eru/access/").content.decode()
    response = ui_client(owner).post("/pods/eru/access/member/", {"user": "vic", "role": "deployer"})
    assert response.status_code == 302
    assert response["Location"] == "/pods/eru/access/"
    assert PodMember.objects.get(user__username="vic").role == "deployer"


def test_the_panel_shows_refusals_and_unknown_names(ui_members: Pod, owner: User, ui_client: Any) -> None:
    client: Client = ui_client(owner)
    htmx = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "access"}
    ghost = client.post("/pods/eru/access/member/", {"user": "ghost", "role": "viewer"}, **htmx)
    assert "no such user" in ghost.content.decode()
    assert 'data-refusal="invalid"' in ghost.content.decode()
    last = client.post("/pods/eru/access/member/remove/", {"user": "otto"}, **htmx)
    assert "without an owner" in last.content.decode()
    done = client.post("/pods/eru/access/member/", {"user": "dora", "role": "viewer"}, **htmx)
    assert "dora is viewer of pod eru." in done.content.decode()
    assert "access-changed" in done["HX-Trigger"]
    assert actions() == ["member.set"]


def test_the_teams_pages(admin_user: Any, deployer: Any, viewer: Any, ui_client: Any) -> None:
    staff: Client = ui_client(admin_user)
    assert staff.post("/teams/", {"name": "bad name"}).status_code == 200
    made = staff.post("/teams/", {"name": "devs", "desc": "the developers"})
    assert made.status_code == 302
    assert made["Location"] == "/teams/devs/"
    assert staff.post("/teams/devs/", {"user": "dora"}).status_code == 302
    assert "team-member-dora" in staff.get("/teams/devs/").content.decode()
    # dora sees her team, read-only; vic does not see it
    assert "devs" in ui_client(deployer).get("/teams/").content.decode()
    page = ui_client(deployer).get("/teams/devs/").content.decode()
    assert "team-member-dora" in page
    assert "Add to team" not in page
    assert ui_client(deployer).post("/teams/devs/", {"user": "vic"}).status_code == 403
    assert ui_client(viewer).get("/teams/devs/").status_code == 404
    assert staff.post("/teams/devs/members/remove/", {"user": "dora"}).status_code == 302
    assert staff.post("/teams/devs/remove/").status_code == 302
    assert actions() == ["team.add", "team.member_add", "team.member_remove", "team.remove"]
    assert all(e.via == "ui" for e in AuditEvent.objects.all())


def test_the_panel_queries_do_not_grow_with_rows(
    ui_members: Pod, owner: User, ui_client: Any, django_assert_max_num_queries: Any
) -> None:
    for n in range(10):
        PodMember.objects.create(pod=ui_members, user=UserFactory(), role="viewer")
        PodTeamRole.objects.create(pod=ui_members, team=Team.objects.create(name=f"t{n}"), role="viewer")
    client = ui_client(owner)
    with django_assert_max_num_queries(9):
        assert client.get("/pods/eru/access/", HTTP_HX_REQUEST="true").status_code == 200
