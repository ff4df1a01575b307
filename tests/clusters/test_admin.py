"""The admin: read-only views of the domain, changes only through actions that call services, no
secrets on screen."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from clusters import crypto
from clusters.models import (
    ApiToken,
    AuditEvent,
    Deployment,
    Node,
    Pod,
    PodMember,
    PodTeamRole,
    Team,
    TeamMember,
    Workload,
)
from tests.factories import DeploymentFactory, PodFactory, WorkloadFactory

pytestmark = pytest.mark.django_db
Login = Callable[[Any], Client]
MODELS = ["pod", "node", "workload", "deployment", "podmember", "auditevent", "apitoken"]


@pytest.fixture
def node(ui_members: Pod, ui_node: Callable[..., Node]) -> Node:
    return ui_node(
        "n1",
        tls_ca=crypto.encrypt("CA-PEM-TEXT"),
        tls_cert=crypto.encrypt("CERT-PEM-TEXT"),
        tls_key=crypto.encrypt("-----BEGIN PRIVATE KEY----- secret"),
    )


def admin_url(model: str, view: str = "changelist", *args: Any) -> str:
    return reverse(f"admin:clusters_{model}_{view}", args=args)


def run_action(client: Client, model: str, action: str, pks: list[int]) -> Any:
    data = {"action": action, "_selected_action": [str(pk) for pk in pks], "index": "0"}
    return client.post(admin_url(model), data, follow=True)


def test_every_model_is_listed_and_only_memberships_can_be_added(
    node: Node, ui_client: Login, admin_user: Any
) -> None:
    client = ui_client(admin_user)
    index = client.get(reverse("admin:index")).content.decode()
    for model in MODELS:
        assert client.get(admin_url(model)).status_code == 200, model
        assert (admin_url(model, "add") in index) == (model == "podmember"), model
    for model in ("pod", "node", "workload", "deployment", "auditevent", "apitoken"):
        assert client.get(admin_url(model, "add")).status_code == 403, model


def test_a_node_shows_no_tls_material_and_only_its_labels_and_bypass_are_editable(
    node: Node, ui_client: Login, admin_user: Any
) -> None:
    client = ui_client(admin_user)
    page = client.get(admin_url("node", "change", node.pk)).content.decode()
    assert "n1" in page
    assert 'name="endpoint"' not in page
    assert 'name="name"' not in page
    assert 'name="labels"' in page
    assert 'name="bypass"' in page
    for secret in ("tls_ca", "tls_cert", "tls_key", node.tls_key, "PRIVATE KEY", "secret_digest"):
        assert secret not in page
    response = client.post(admin_url("node", "change", node.pk), {"name": "renamed", "labels": "{}"})
    assert response.status_code == 302  # nothing it may change changed: no service call, no audit
    assert list(AuditEvent.objects.values_list("action", "before", "after")) == []
    assert Node.objects.get(pk=node.pk).name == "n1"
    assert client.post(admin_url("node", "delete", node.pk), {"post": "yes"}).status_code == 403
    assert client.get(admin_url("node", "add")).status_code == 403


def test_node_labels_are_edited_through_services_validated_and_audited(
    node: Node, ui_client: Login, admin_user: Any
) -> None:
    client = ui_client(admin_user)
    url = admin_url("node", "change", node.pk)
    response = client.post(url, {"labels": '{"zone": "a", "disk": "ssd"}', "bypass": "on"})
    assert response.status_code == 302, response.content.decode()[:2000]
    node.refresh_from_db()
    assert (node.labels, node.bypass) == ({"zone": "a", "disk": "ssd"}, True)
    event = AuditEvent.objects.get()
    assert (event.action, event.via, event.actor, event.pod) == ("node.set", "admin", admin_user, node.pod)
    assert event.before["labels"] == {}
    assert event.after["labels"] == {"zone": "a", "disk": "ssd"}

    for bad in ('["zone"]', '{"": "x"}', '{"a=b": "x"}', "zone=a"):  # not a map of names to values
        page = client.post(url, {"labels": bad})
        assert page.status_code == 200, bad  # the form again, with the error beside the field
        assert "errorlist" in page.content.decode(), bad
    node.refresh_from_db()
    assert node.labels == {"zone": "a", "disk": "ssd"}
    assert AuditEvent.objects.count() == 1


def test_api_token_digest_is_never_shown(ui_client: Login, admin_user: Any) -> None:
    token = ApiToken.objects.create(user=admin_user, name="ci", prefix="eru_ab12", digest="f" * 64)
    page = ui_client(admin_user).get(admin_url("apitoken", "change", token.pk)).content.decode()
    assert "eru_ab12" in page
    assert "f" * 64 not in page
    assert "digest" not in page.lower()


def test_node_actions_mark_down_and_up_through_services(
    node: Node, ui_client: Login, admin_user: Any
) -> None:
    client = ui_client(admin_user)
    response = run_action(client, "node", "mark_down", [node.pk])
    assert "1 marked down." in response.content.decode()
    assert Node.objects.get(pk=node.pk).bypass
    run_action(client, "node", "mark_up", [node.pk])
    assert not Node.objects.get(pk=node.pk).bypass
    events = AuditEvent.objects.filter(target_name="n1").order_by("id")
    assert [(e.action, e.via, e.actor) for e in events] == [
        ("node.down", "admin", admin_user),
        ("node.up", "admin", admin_user),
    ]
    assert all(e.request_id for e in events)


def test_workload_remove_action_goes_through_services_and_reports_refusals(
    node: Node, ui_client: Login, admin_user: Any, ui_enqueued: list[tuple[Any, ...]]
) -> None:
    running = WorkloadFactory(node=node, name="w_run", state=Workload.State.RUNNING)
    failed = WorkloadFactory(node=node, name="w_failed", state=Workload.State.FAILED)
    pending = WorkloadFactory(node=node, name="w_new", state=Workload.State.PENDING)
    response = run_action(ui_client(admin_user), "workload", "remove", [running.pk, failed.pk, pending.pk])
    body = response.content.decode()
    assert "2 removal(s) requested." in body
    assert "workload w_new is still being created" in body
    assert Workload.objects.get(pk=running.pk).state == Workload.State.REMOVING
    assert ui_enqueued == [("agents.remove_workload", running.pk)]
    assert not Workload.objects.filter(pk=failed.pk).exists()
    assert Workload.objects.get(pk=pending.pk).state == Workload.State.PENDING
    assert set(AuditEvent.objects.filter(action="workload.remove").values_list("target_name", "via")) == {
        ("w_run", "admin"),
        ("w_failed", "admin"),
    }


def test_deployments_and_audit_events_are_read_only(node: Node, ui_client: Login, admin_user: Any) -> None:
    d = DeploymentFactory(pod=node.pod)
    event = AuditEvent.objects.create(via="system", action="pod.add", target_type="pod", target_name="eru")
    client = ui_client(admin_user)
    assert client.get(admin_url("deployment", "change", d.pk)).status_code == 200
    assert client.post(admin_url("deployment", "change", d.pk), {"count": "9"}).status_code == 403
    assert client.post(admin_url("auditevent", "delete", event.pk), {"post": "yes"}).status_code == 403
    assert Deployment.objects.get(pk=d.pk).count == 1
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_membership_changes_in_admin_go_through_services_and_are_audited(
    ui_members: Pod, ui_client: Login, admin_user: Any, outsider: Any
) -> None:
    client = ui_client(admin_user)
    data = {"pod": str(ui_members.pk), "user": str(outsider.pk), "role": "deployer"}
    assert client.post(admin_url("podmember", "add"), data).status_code == 302
    member = PodMember.objects.get(user=outsider)
    assert member.role == PodMember.Role.DEPLOYER

    page = client.get(admin_url("podmember", "change", member.pk)).content.decode()
    assert 'name="role"' in page
    assert 'name="pod"' not in page
    assert 'name="user"' not in page
    other = PodFactory(name="other")  # pod and user are fixed once the row exists
    changed = {"pod": str(other.pk), "user": str(admin_user.pk), "role": "owner"}
    assert client.post(admin_url("podmember", "change", member.pk), changed).status_code == 302
    member.refresh_from_db()
    assert (member.pod, member.user, member.role) == (ui_members, outsider, PodMember.Role.OWNER)

    # olga is the pod's only owner now: she cannot be taken away, and the admin says why.
    refused = client.post(admin_url("podmember", "delete", member.pk), {"post": "yes"}, follow=True)
    assert "without an owner" in refused.content.decode()
    assert "deleted successfully" not in refused.content.decode()
    assert PodMember.objects.filter(user=outsider).exists()
    PodMember.objects.create(pod=ui_members, user=admin_user, role=PodMember.Role.OWNER)
    assert client.post(admin_url("podmember", "delete", member.pk), {"post": "yes"}).status_code == 302
    assert not PodMember.objects.filter(user=outsider).exists()
    events = AuditEvent.objects.order_by("id")
    assert [(e.action, e.via, e.actor, e.pod, e.before, e.after) for e in events] == [
        ("member.set", "admin", admin_user, ui_members, None, {"user": "olga", "role": "deployer"}),
        (
            "member.set",
            "admin",
            admin_user,
            ui_members,
            {"user": "olga", "role": "deployer"},
            {"user": "olga", "role": "owner"},
        ),
        ("member.remove", "admin", admin_user, ui_members, {"user": "olga", "role": "owner"}, None),
    ]


def test_bulk_delete_of_memberships_is_audited_per_row(
    ui_members: Pod, ui_client: Login, admin_user: Any
) -> None:
    pks = list(PodMember.objects.values_list("pk", flat=True))
    response = run_action(ui_client(admin_user), "podmember", "delete_selected", pks)
    assert response.status_code == 200  # the confirmation page
    data = {"action": "delete_selected", "_selected_action": [str(pk) for pk in pks], "post": "yes"}
    assert ui_client(admin_user).post(admin_url("podmember"), data).status_code == 302
    assert not PodMember.objects.exists()
    removed = AuditEvent.objects.filter(action="member.remove", via="admin")
    assert sorted(e.before["user"] for e in removed) == ["dora", "vic"]


def test_api_tokens_are_revoked_by_an_admin_action(ui_client: Login, admin_user: Any, deployer: Any) -> None:
    token = ApiToken.objects.create(user=deployer, name="ci", prefix="eru_ab12", digest="f" * 64)
    keep = ApiToken.objects.create(user=deployer, name="laptop", prefix="eru_cd34", digest="e" * 64)
    client = ui_client(admin_user)
    response = run_action(client, "apitoken", "revoke", [token.pk])
    assert "1 revoked." in response.content.decode()
    assert list(ApiToken.objects.all()) == [keep]
    event = AuditEvent.objects.get(action="token.revoke")
    assert (event.via, event.actor) == ("admin", admin_user)
    assert event.before == {"user": "dora", "name": "ci", "prefix": "eru_ab12"}
    assert client.post(admin_url("apitoken", "delete", keep.pk), {"post": "yes"}).status_code == 403


def test_members_who_are_not_staff_are_kept_out(ui_members: Pod, ui_client: Login, deployer: Any) -> None:
    response = ui_client(deployer).get(admin_url("node"))
    assert response.status_code == 302
    assert reverse("admin:login") in response["Location"]


def test_admin_lists_do_not_grow_queries_with_rows(
    node: Node, ui_client: Login, admin_user: Any, django_assert_max_num_queries: Any
) -> None:
    WorkloadFactory.create_batch(15, node=node)
    client = ui_client(admin_user)
    with django_assert_max_num_queries(8):
        assert client.get(admin_url("workload")).status_code == 200
    with django_assert_max_num_queries(8):
        assert client.get(admin_url("podmember")).status_code == 200


# --- users, teams and team roles (issue 13) ------------------------------------------------------
def test_user_changes_in_admin_go_through_services_and_are_audited(ui_client: Login, admin_user: Any) -> None:
    """Creating a user and ticking "staff" leaves an audit trail: add, each flag change, the
    password, the delete — all USER_* rows via admin, none with a password or its hash."""
    client = ui_client(admin_user)
    add = {
        "username": "stella",
        "usable_password": "true",
        "password1": "pw-Stella-12",
        "password2": "pw-Stella-12",
    }
    assert client.post(reverse("admin:auth_user_add"), add).status_code == 302
    stella = User.objects.get(username="stella")
    assert stella.check_password("pw-Stella-12")
    assert not stella.is_staff
    change = {"username": "stella", "email": "s@example.com", "is_active": "on", "is_staff": "on"}
    response = client.post(reverse("admin:auth_user_change", args=[stella.pk]), change)
    assert response.status_code == 302
    stella.refresh_from_db()
    assert (stella.is_staff, stella.is_superuser, stella.email) == (True, False, "s@example.com")
    password = {"password1": "pw-Stella-34", "password2": "pw-Stella-34", "set_usable_password": "true"}
    assert (
        client.post(reverse("admin:auth_user_password_change", args=[stella.pk]), password).status_code == 302
    )
    stella.refresh_from_db()
    assert stella.check_password("pw-Stella-34")
    assert (
        client.post(reverse("admin:auth_user_delete", args=[stella.pk]), {"post": "yes"}).status_code == 302
    )
    assert not User.objects.filter(username="stella").exists()
    rows = list(AuditEvent.objects.order_by("id").values_list("action", "via", "actor", "before", "after"))
    assert [r[:3] for r in rows] == [
        ("user.add", "admin", admin_user.pk),
        ("user.set", "admin", admin_user.pk),
        ("user.set", "admin", admin_user.pk),
        ("user.remove", "admin", admin_user.pk),
    ]
    assert rows[1][3:] == ({"email": "", "is_staff": False}, {"email": "s@example.com", "is_staff": True})
    assert rows[2][4] == {"password": "set"}
    assert "pw-Stella" not in str(rows)
    assert "md5$" not in str(rows)


def test_staff_see_users_read_only_and_cannot_make_themselves_superuser(ui_client: Login, db: Any) -> None:
    stella = User.objects.create_user("stella", password="pw", is_staff=True)
    client = ui_client(stella)
    url = reverse("admin:auth_user_change", args=[stella.pk])
    page = client.get(url)
    assert page.status_code == 200
    assert 'name="is_superuser"' not in page.content.decode()
    change = {"username": "stella", "is_active": "on", "is_staff": "on", "is_superuser": "on"}
    assert client.post(url, change).status_code == 403
    assert not User.objects.get(pk=stella.pk).is_superuser
    assert client.get("/admin/auth/group/").status_code == 404  # groups mean nothing here
    assert not AuditEvent.objects.exists()


def test_a_refused_user_change_says_so_and_changes_nothing(ui_client: Login, admin_user: Any) -> None:
    client = ui_client(admin_user)
    change = {"username": "admin", "is_active": "on", "is_staff": "on"}  # drops is_superuser: the last one
    response = client.post(reverse("admin:auth_user_change", args=[admin_user.pk]), change, follow=True)
    body = response.content.decode()
    assert "no active superuser" in body
    assert "was changed successfully" not in body
    assert User.objects.get(pk=admin_user.pk).is_superuser
    assert not AuditEvent.objects.exists()


def test_team_admin_members_and_roles_go_through_services(
    ui_members: Pod, ui_client: Login, admin_user: Any, deployer: Any, viewer: Any
) -> None:
    client = ui_client(admin_user)

    def inlines(
        members: list[tuple[str, str, bool]], roles: list[tuple[str, str, str, bool]]
    ) -> dict[str, str]:
        data = {"memberships-TOTAL_FORMS": str(len(members)), "memberships-INITIAL_FORMS": "0"}
        data |= {"pod_roles-TOTAL_FORMS": str(len(roles)), "pod_roles-INITIAL_FORMS": "0"}
        for i, (pk, user, delete) in enumerate(members):
            data |= {f"memberships-{i}-id": pk, f"memberships-{i}-user": user}
            if delete:
                data[f"memberships-{i}-DELETE"] = "on"
        for i, (pk, pod, role, delete) in enumerate(roles):
            data |= {f"pod_roles-{i}-id": pk, f"pod_roles-{i}-pod": pod, f"pod_roles-{i}-role": role}
            if delete:
                data[f"pod_roles-{i}-DELETE"] = "on"
        return data

    pod = str(ui_members.pk)
    add = {"name": "devs", "desc": "the developers"} | inlines(
        [("", str(deployer.pk), False)], [("", pod, "deployer", False)]
    )
    response = client.post(reverse("admin:clusters_team_add"), add)
    assert response.status_code == 302, response.content.decode()[:3000]
    team = Team.objects.get(name="devs")
    assert list(team.members.all()) == [deployer]
    assert PodTeamRole.objects.get(team=team).role == "deployer"

    member, grant = TeamMember.objects.get(team=team), PodTeamRole.objects.get(team=team)
    change = inlines([(str(member.pk), str(viewer.pk), False)], [(str(grant.pk), pod, "viewer", False)])
    change |= {"memberships-INITIAL_FORMS": "1", "pod_roles-INITIAL_FORMS": "1"}
    response = client.post(reverse("admin:clusters_team_change", args=[team.pk]), change)
    assert response.status_code == 302, response.content.decode()[:3000]
    assert list(team.members.all()) == [viewer]  # dora out, vic in: a remove and an add
    assert PodTeamRole.objects.get(team=team).role == "viewer"

    assert (
        client.post(reverse("admin:clusters_team_delete", args=[team.pk]), {"post": "yes"}).status_code == 302
    )
    assert not Team.objects.exists()
    assert list(AuditEvent.objects.order_by("id").values_list("action", "via")) == [
        ("team.add", "admin"),
        ("team.member_add", "admin"),
        ("team.role_set", "admin"),
        ("team.member_remove", "admin"),
        ("team.member_add", "admin"),
        ("team.role_set", "admin"),
        ("team.remove", "admin"),
    ]


def test_team_roles_in_admin_go_through_services(ui_members: Pod, ui_client: Login, admin_user: Any) -> None:
    team = Team.objects.create(name="ops")
    client = ui_client(admin_user)
    data = {"pod": str(ui_members.pk), "team": str(team.pk), "role": "owner"}
    assert client.post(reverse("admin:clusters_podteamrole_add"), data).status_code == 302
    grant = PodTeamRole.objects.get()
    assert (
        client.post(
            reverse("admin:clusters_podteamrole_delete", args=[grant.pk]), {"post": "yes"}
        ).status_code
        == 302
    )
    assert list(AuditEvent.objects.order_by("id").values_list("action", "via")) == [
        ("team.role_set", "admin"),
        ("team.role_remove", "admin"),
    ]


def test_team_and_user_lists_do_not_grow_queries_with_rows(
    ui_members: Pod, ui_client: Login, admin_user: Any, django_assert_max_num_queries: Any
) -> None:
    for n in range(12):
        team = Team.objects.create(name=f"t{n}")
        TeamMember.objects.create(team=team, user=User.objects.create_user(f"u{n}"))
        PodTeamRole.objects.create(pod=ui_members, team=team, role="viewer")
    client = ui_client(admin_user)
    for url in ("team", "podteamrole"):
        with django_assert_max_num_queries(8):
            assert client.get(admin_url(url)).status_code == 200
    with django_assert_max_num_queries(8):
        assert client.get(reverse("admin:auth_user_changelist")).status_code == 200
