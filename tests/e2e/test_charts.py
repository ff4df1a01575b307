"""In a real browser: a deployed workload's page draws its recorded usage (a line with its points,
the dashed limit, the numbers behind "Data"), switches to the day in place, and the portal follows
the system's colour scheme, light or dark."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from clusters import services
from clusters.models import Workload
from tests.e2e.test_portal import log_in

pytestmark = pytest.mark.services
MIB = 1 << 20
SAMPLES = 5
SLEEPER = ("sh", "-c", "trap 'exit 0' TERM; sleep 600 & wait")  # stops at once when asked


def record(w: Workload) -> None:
    """SAMPLES samples, 15 s apart, the last one now (the core's poll is not running here)."""
    now = time.time()
    for k in range(SAMPLES):
        use = services.Use(cpu=0.01 * (k + 1), memory=(k + 2) * MIB)
        services.usage_record(
            actor=services.SYSTEM, node=w.node, usage={w.container_id: use}, at=now - k * 15
        )


def test_the_workload_page_charts_its_usage(
    page: Page, live_server: Any, admin_user: Any, deploy: Any
) -> None:
    w = deploy(*SLEEPER)
    record(w)
    log_in(page, live_server.url)
    page.goto(f"{live_server.url}/workloads/{w.pk}/")
    cpu = page.locator("#usage-cpu")
    line = cpu.locator("svg polyline.series")
    expect(line).to_have_count(1)
    expect(line).to_be_visible()
    assert len((line.get_attribute("points") or "").split()) == SAMPLES
    assert line.bounding_box()["width"] > 0  # type: ignore[index]
    expect(cpu.locator("figcaption")).to_contain_text("limit 0.1 cores")
    expect(page.locator("#usage-memory figcaption")).to_contain_text("limit 16 MiB")
    rows = cpu.locator("details tbody tr")
    expect(rows.first).to_be_hidden()  # the table waits behind its summary
    cpu.locator("summary").click()
    expect(rows).to_have_count(SAMPLES)
    expect(rows.last).to_contain_text("0.01")  # the newest sample, last

    page.evaluate("window.__e2e_same_document = true")
    page.locator("#usage").get_by_role("link", name="last day").click()
    expect(page.locator('#usage a[aria-current="true"]')).to_have_text("last day")
    expect(page).to_have_url(re.compile(r"\?window=day$"))
    expect(page.locator("#usage-cpu svg polyline.series")).to_have_count(1)  # the 5 min steps so far
    assert page.evaluate("window.__e2e_same_document") is True  # swapped in place, not a new page


def test_the_portal_follows_a_dark_colour_scheme(
    page: Page, live_server: Any, admin_user: Any, deploy: Any
) -> None:
    w = deploy(*SLEEPER)
    record(w)
    log_in(page, live_server.url)
    page.goto(f"{live_server.url}/workloads/{w.pk}/")
    look = """() => {
        const css = (el, p) => getComputedStyle(document.querySelector(el))[p];
        return [css("body", "backgroundColor"), css("body", "color"), css(".card", "backgroundColor"),
                css("#usage-cpu polyline.series", "stroke")];
    }"""
    expect(page.locator("#usage-cpu polyline.series")).to_be_visible()
    light = page.evaluate(look)
    page.emulate_media(color_scheme="dark")
    dark = page.evaluate(look)
    assert [a != b for a, b in zip(light, dark, strict=True)] == [True] * 4, (light, dark)
    assert light[0] == "rgb(246, 247, 249)"
    expect(page.locator("#usage-cpu polyline.series")).to_be_visible()
