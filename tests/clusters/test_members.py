"""Pod memberships are privileges: granted, changed and taken only through services.member_set /
member_remove, by staff or an owner of that pod, and every change is audited with before/after role.
Pods are plain rows here (memberships are not mirrored to etcd)."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from rest_framework.test import APIClient

from clusters import permissions, services
from clusters.models import AuditEvent, Pod, PodMember
from tests.factories import PodFactory, PodMemberFactory

pytestmark = pytest.mark.django_db


def as_user(user: Any, via: str = "api") -> services.Actor:
    return services.Actor(user=user, via=via)


@pytest.fixture
def owner(ui_members: Pod) -> Any:
    """otto owns pod eru (dora deploys, vic views there)."""
    return PodMemberFactory(pod=ui_members, user__username="otto", role=PodMember.Role.OWNER).user


@pytest.fixture
def other_pod(db: Any) -> Pod:
    return PodFactory(name="other")


def api(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def roles(pod: Pod) -> dict[str, str]:
    return dict(PodMember.objects.filter(pod=pod).values_list("user__username", "role"))


# --- the rule ------------------------------------------------------------------------------------
def test_staff_and_owners_of_that_pod_may_manage_members(
    owner: Any, ui_members: Pod, other_pod: Pod, admin_user: Any, deployer: Any, viewer: Any, outsider: Any
) -> None:
    assert permissions.can_manage_members(admin_user, ui_members)
    assert permissions.can_manage_members(owner, ui_members)
    assert not permissions.can_manage_members(owner, other_pod)
    for user in (deployer, viewer, outsider, None):
        assert not permissions.can_manage_members(user, ui_members)


# --- services ------------------------------------------------------------------------------------
def test_member_set_adds_and_changes_roles_with_an_audit_trail(
    owner: Any, ui_members: Pod, outsider: Any
) -> None:
    services.member_set(actor=as_user(owner), pod=ui_members, user=outsider, role="viewer")
    services.member_set(actor=as_user(owner), pod=ui_members, user=outsider, role="deployer")
    services.member_set(actor=as_user(owner), pod=ui_members, user=outsider, role="deployer")  # no change
    assert roles(ui_members)["olga"] == "deployer"
    events = AuditEvent.objects.filter(action="member.set").order_by("id")
    assert [(e.before, e.after, e.actor, e.via, e.pod) for e in events] == [
        (None, {"user": "olga", "role": "viewer"}, owner, "api", ui_members),
        ({"user": "olga", "role": "viewer"}, {"user": "olga", "role": "deployer"}, owner, "api", ui_members),
    ]


def test_member_remove_takes_the_role_away_with_an_audit_trail(
    owner: Any, ui_members: Pod, viewer: Any, outsider: Any
) -> None:
    services.member_remove(actor=as_user(owner), pod=ui_members, user=viewer)
    assert "vic" not in roles(ui_members)
    event = AuditEvent.objects.get(action="member.remove")
    assert (event.before, event.after, event.actor, event.pod) == (
        {"user": "vic", "role": "viewer"},
        None,
        owner,
        ui_members,
    )
    with pytest.raises(ValidationError) as refused:
        services.member_remove(actor=as_user(owner), pod=ui_members, user=outsider)
    assert "user" in refused.value.message_dict


@pytest.mark.parametrize("who", ["deployer", "viewer", "outsider", "owner_of_other"])
def test_nobody_else_may_change_memberships(
    request: pytest.FixtureRequest, who: str, owner: Any, ui_members: Pod, other_pod: Pod, outsider: Any
) -> None:
    if who == "owner_of_other":
        user = request.getfixturevalue("outsider")
        PodMemberFactory(pod=other_pod, user=user, role=PodMember.Role.OWNER)
    else:
        user = request.getfixturevalue(who)
    before = roles(ui_members)
    with pytest.raises(PermissionDenied):
        services.member_set(actor=as_user(user), pod=ui_members, user=user, role="owner")
    with pytest.raises(PermissionDenied):
        services.member_remove(actor=as_user(user), pod=ui_members, user=owner)
    assert roles(ui_members) == before
    assert not AuditEvent.objects.exists()


def test_an_unknown_role_is_a_field_error(admin_user: Any, ui_members: Pod, outsider: Any) -> None:
    with pytest.raises(ValidationError) as refused:
        services.member_set(actor=as_user(admin_user), pod=ui_members, user=outsider, role="god")
    assert "role" in refused.value.message_dict
    assert "olga" not in roles(ui_members)
    assert not AuditEvent.objects.exists()


# --- API: GET/PUT/DELETE /api/pods/<name>/members/ -------------------------------------------------
def test_owners_manage_members_through_the_api(owner: Any, ui_members: Pod, outsider: Any) -> None:
    client = api(owner)
    listed = client.get("/api/pods/eru/members/").json()
    assert listed == [
        {"user": "dora", "role": "deployer"},
        {"user": "otto", "role": "owner"},
        {"user": "vic", "role": "viewer"},
    ]
    response = client.put("/api/pods/eru/members/", {"user": "olga", "role": "deployer"}, format="json")
    assert response.status_code == 200
    assert response.json() == {"user": "olga", "role": "deployer"}
    assert client.delete("/api/pods/eru/members/?user=vic").status_code == 204
    assert roles(ui_members) == {"dora": "deployer", "otto": "owner", "olga": "deployer"}
    assert list(AuditEvent.objects.order_by("id").values_list("action", "via")) == [
        ("member.set", "api"),
        ("member.remove", "api"),
    ]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"user": "ghost", "role": "viewer"}, "user"),
        ({"user": "olga", "role": "god"}, "role"),
        ({"role": "viewer"}, "user"),
    ],
)
def test_bad_member_changes_are_a_400(
    owner: Any, ui_members: Pod, outsider: Any, change: dict[str, str], field: str
) -> None:
    response = api(owner).put("/api/pods/eru/members/", change, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json(), response.content
    for query in ("", "?user=ghost", "?user=olga"):  # unknown user; not a member
        response = api(owner).delete(f"/api/pods/eru/members/{query}")
        assert response.status_code == 400, (query, response.content)
        assert "user" in response.json(), (query, response.content)
    assert not AuditEvent.objects.exists()


def test_members_api_is_for_owners_and_staff_only(
    owner: Any, ui_members: Pod, other_pod: Pod, admin_user: Any, deployer: Any, viewer: Any, outsider: Any
) -> None:
    for user in (deployer, viewer):
        client = api(user)
        assert client.get("/api/pods/eru/members/").status_code == 403
        assert (
            client.put("/api/pods/eru/members/", {"user": user.username, "role": "owner"}).status_code == 403
        )
        assert client.delete("/api/pods/eru/members/?user=otto").status_code == 403
        assert client.put("/api/pods/eru/members/", {"user": "ghost", "role": "viewer"}).status_code == 403
    assert api(outsider).get("/api/pods/eru/members/").status_code == 404
    assert api(owner).get("/api/pods/other/members/").status_code == 404
    assert (
        api(admin_user).put("/api/pods/other/members/", {"user": "otto", "role": "owner"}).status_code == 200
    )
    assert roles(ui_members)["dora"] == "deployer"
    assert roles(other_pod) == {"otto": "owner"}
    assert AuditEvent.objects.get().actor == admin_user
