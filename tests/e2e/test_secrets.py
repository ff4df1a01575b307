"""End to end in a real browser: a pod's viewer looks for a workload's secret (its env value) on its
page, in the page's own requests and in the API with their session, and finds only the key; the
deployer, on the same page, sees the value and the log that prints it (issue 13)."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, expect

from clusters import secrets
from clusters.models import PodMember

pytestmark = pytest.mark.services
SECRET = "hunter2"
# Prints the secret to its log, then waits; exits at once on SIGTERM (busybox sh as PID 1).
COMMAND = "echo connecting with $DB_PASSWORD; trap 'exit 0' TERM; sleep 600 & wait"


def log_in(page: Page, base: str, username: str, password: str) -> None:
    page.context.clear_cookies()
    page.goto(f"{base}/login/")
    page.locator("#id_username").fill(username)
    page.locator("#id_password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{base}/")


def test_a_viewer_looking_for_a_secret_finds_only_its_key(
    page: Page, live_server: Any, deploy: Any, viewer: Any, deployer: Any
) -> None:
    w = deploy("sh", "-c", COMMAND, env=[f"DB_PASSWORD={SECRET}", "MODE=prod"])
    PodMember.objects.create(pod=w.pod, user=viewer, role=PodMember.Role.VIEWER)
    PodMember.objects.create(pod=w.pod, user=deployer, role=PodMember.Role.DEPLOYER)
    base, page_url = live_server.url, f"{live_server.url}/workloads/{w.pk}/"

    log_in(page, base, "vic", "pw-vic-1")
    page.goto(page_url)
    expect(page.get_by_text(f"DB_PASSWORD={secrets.MASK}")).to_be_visible()
    expect(page.locator("#no-logs")).to_contain_text("Logs may carry secrets")
    expect(page.locator("#log")).to_have_count(0)
    page.wait_for_load_state("networkidle")  # whatever the page loads by itself has come
    assert SECRET not in page.content()
    found = page.evaluate(
        """async ([id, deployment]) => {
            const paths = [`/workloads/${id}/logs/`, `/api/workloads/${id}/`, `/api/workloads/${id}/logs/`,
                           `/api/deployments/${deployment}/`, `/deployments/${deployment}/`, `/audit/`];
            const out = {};
            for (const p of paths) { const r = await fetch(p); out[p] = [r.status, await r.text()]; }
            return out;
        }""",
        [w.pk, w.deployment_id],
    )
    assert {p: status for p, (status, _) in found.items()} == {
        f"/workloads/{w.pk}/logs/": 403,
        f"/api/workloads/{w.pk}/": 200,
        f"/api/workloads/{w.pk}/logs/": 403,
        f"/api/deployments/{w.deployment_id}/": 200,
        f"/deployments/{w.deployment_id}/": 200,
        "/audit/": 200,
    }
    assert all(SECRET not in text for _, text in found.values())

    log_in(page, base, "dora", "pw-dora-1")  # the deployer: the value, and the log printing it
    page.goto(page_url)
    expect(page.get_by_text(f"DB_PASSWORD={SECRET}")).to_be_visible()
    expect(page.locator("#log pre")).to_contain_text(f"connecting with {SECRET}")
    expect(page.locator("#no-logs")).to_have_count(0)
