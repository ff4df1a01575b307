"""clusters.permissions is the one place that says who sees what; the portal and the API both read
the audit log through visible_audit_events."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser
from django.test import Client
from rest_framework.test import APIClient

from clusters import permissions
from clusters.models import AuditEvent, Pod
from tests.factories import PodFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def events(ui_members: Pod) -> dict[str, AuditEvent]:
    other = PodFactory(name="other")

    def event(action: str, pod: Pod | None) -> AuditEvent:
        return AuditEvent.objects.create(
            via="system", action=action, target_type="x", target_name=action, pod=pod
        )

    return {
        "eru": event("in.eru", ui_members),
        "other": event("in.other", other),
        "none": event("no.pod", None),
    }


def test_staff_see_every_event_members_those_of_their_pods(
    events: dict[str, AuditEvent], admin_user: Any, deployer: Any, viewer: Any, outsider: Any
) -> None:
    def seen(user: Any) -> set[str]:
        return set(permissions.visible_audit_events(user).values_list("action", flat=True))

    assert seen(admin_user) == {"in.eru", "in.other", "no.pod"}
    assert seen(deployer) == seen(viewer) == {"in.eru"}
    assert seen(outsider) == seen(AnonymousUser()) == set()


def test_portal_and_api_show_the_same_events(
    events: dict[str, AuditEvent], admin_user: Any, viewer: Any, outsider: Any
) -> None:
    for user in (admin_user, viewer, outsider):
        expected = set(permissions.visible_audit_events(user).values_list("action", flat=True))
        api = APIClient()
        api.force_authenticate(user)
        assert {e["action"] for e in api.get("/api/audit/").json()["results"]} == expected
        portal = Client()
        portal.force_login(user)
        page = portal.get("/audit/").content.decode()
        assert {a for a in ("in.eru", "in.other", "no.pod") if a in page} == expected
