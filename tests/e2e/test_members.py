"""In a real browser: a pod's owner manages its members and team roles on the pod page (the htmx
panel swapped in place), and the portal refuses to take the pod's last owner, saying why."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, expect

from clusters.models import AuditEvent, PodMember, PodTeamRole, Team
from tests.factories import UserFactory

pytestmark = pytest.mark.services


def test_an_owner_manages_members_and_teams_on_the_pod_page(page: Page, live_server: Any, pod: Any) -> None:
    base = live_server.url
    otto = UserFactory(username="otto", password="pw-otto-1")
    dora = UserFactory(username="dora", password="pw-dora-1")
    UserFactory(username="vic", password="pw-vic-1")
    PodMember.objects.create(pod=pod, user=otto, role="owner")
    PodMember.objects.create(pod=pod, user=dora, role="deployer")
    Team.objects.create(name="devs")
    page.on("dialog", lambda dialog: dialog.accept())  # the remove buttons ask first (hx-confirm)

    page.goto(f"{base}/login/")
    page.locator("#id_username").fill("otto")
    page.locator("#id_password").fill("pw-otto-1")
    page.get_by_role("button", name="Log in").click()
    page.goto(f"{base}/pods/eru/")
    panel = page.locator("#access")
    expect(panel.get_by_role("heading", name="Members and teams")).to_be_visible()
    expect(panel.locator("#member-otto")).to_be_visible()
    page.evaluate("window.__e2e_same_document = true")

    # Add vic as a viewer: the panel comes back in place with the new row and what happened.
    panel.locator("#member-user").fill("vic")
    panel.locator("#member-role").select_option("viewer")
    panel.get_by_role("button", name="Add member").click()
    expect(page.locator("#access [role=status]")).to_have_text("vic is viewer of pod eru.")
    expect(page.locator("#member-vic")).to_be_visible()

    # Make dora a viewer, then take vic's role away.
    page.locator("#member-dora select").select_option("viewer")
    page.locator("#member-dora").get_by_role("button", name="Change").click()
    expect(page.locator("#access [role=status]")).to_have_text("dora is viewer of pod eru.")
    page.locator("#member-vic").get_by_role("button", name="Remove").click()
    expect(page.locator("#member-vic")).to_have_count(0)

    # Otto is the only owner: the panel says why he cannot leave, and nothing changes.
    page.locator("#member-otto").get_by_role("button", name="Remove").click()
    expect(page.locator("#access [role=alert]")).to_contain_text("without an owner")
    expect(page.locator("#member-otto")).to_be_visible()

    # Grant team devs deployer.
    page.locator("#team-name").select_option("devs")
    page.locator("#team-role").select_option("deployer")
    page.locator("#access").get_by_role("button", name="Grant").click()
    expect(page.locator("#team-role-devs")).to_be_visible()

    assert page.evaluate("window.__e2e_same_document") is True  # all of it htmx swaps, no page load
    assert dict(PodMember.objects.filter(pod=pod).values_list("user__username", "role")) == {
        "otto": "owner",
        "dora": "viewer",
    }
    assert PodTeamRole.objects.get(pod=pod).role == "deployer"
    events = AuditEvent.objects.filter(via="ui").order_by("id")
    assert [e.action for e in events] == ["member.set", "member.set", "member.remove", "team.role_set"]
    assert {e.actor_name for e in events} == {"otto"}
