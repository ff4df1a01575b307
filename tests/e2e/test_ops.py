"""End to end in a real browser: the day-two operations' htmx parts (clusters.ops_views): the
workload page's resources form swapped in place, refusals beside their field, and a deployment's
cancel button, loaded into its slot and confirmed, then gone once the deployment has ended."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Dialog, Page, expect

from clusters.models import Deployment, Workload
from tests.factories import DeploymentFactory

pytestmark = pytest.mark.services
M = 1 << 20


def log_in(page: Page, base: str) -> None:
    page.goto(f"{base}/login/")
    page.locator("#id_username").fill("admin")
    page.locator("#id_password").fill("pw-admin-1")
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{base}/")


def test_the_resources_form_changes_the_container_in_place(
    page: Page, live_server: Any, admin_user: Any, deploy: Any, docker_clean: Any
) -> None:
    w = deploy("sleep", "600", cpu_request=0.1, cpu_limit=0.1, memory_limit="16M")
    log_in(page, live_server.url)
    page.goto(f"{live_server.url}/workloads/{w.pk}/")
    page.evaluate("window.__e2e_same_document = true")
    resources = page.locator("#resources")
    expect(resources).to_contain_text("request 16.0\xa0MB, limit 16.0\xa0MB")

    resources.get_by_label("CPU request").fill("lots")  # refused beside its field, nothing changed
    resources.get_by_role("button", name="Change resources").click()
    group = resources.locator(".field", has=page.locator("#realloc_cpu_request"))
    expect(group.locator(".errorlist")).to_contain_text("cpu_request: expected a number of cpus")
    expect(resources.get_by_label("CPU request")).to_have_value("lots")

    resources.get_by_label("CPU request").fill("")
    resources.get_by_label("Memory request").fill("8M")
    resources.get_by_label("Memory limit").fill("8M")
    resources.get_by_role("button", name="Change resources").click()
    expect(resources.get_by_role("status")).to_contain_text(f"Resources of {w.name} changed")
    expect(resources).to_contain_text("request 24.0\xa0MB, limit 24.0\xa0MB")
    expect(resources.locator(".errorlist")).to_have_count(0)
    assert page.evaluate("window.__e2e_same_document") is True  # swapped by htmx, no page load
    container = docker_clean[w.node.name].containers.get(w.container_id)
    assert container.attrs["HostConfig"]["Memory"] == 24 * M
    assert Workload.objects.get(pk=w.pk).memory_limit == 24 * M


def test_the_cancel_button_asks_then_cancels(page: Page, live_server: Any, admin_user: Any, pod: Any) -> None:
    d = DeploymentFactory(pod=pod, count=1, total=1)  # running; no worker will ever end it
    asked: list[str] = []

    def accept(dialog: Dialog) -> None:
        asked.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)
    log_in(page, live_server.url)
    page.goto(f"{live_server.url}/deployments/{d.pk}/")
    expect(page.locator("#progress .badge").first).to_have_text("running")
    page.get_by_role("button", name="Cancel").click()  # loaded into its slot by htmx

    expect(page.locator("#progress .badge").first).to_have_text("cancelled")
    expect(page.locator("#progress")).to_contain_text("cancelled by admin")
    expect(page.locator(".messages")).to_contain_text(f"Deployment #{d.pk} cancelled.")
    expect(page.get_by_role("button", name="Cancel")).to_have_count(0)  # ended: no button
    assert len(asked) == 1
    assert asked[0].startswith(f"Cancel deployment #{d.pk}?")
    assert Deployment.objects.get(pk=d.pk).state == Deployment.State.CANCELLED
