"""Pages a team lives in, in a real browser (issue 14, items 3 and 4): for each persona, at a 390 px
viewport and in dark mode, the main pages do not overflow sideways and every state badge keeps 4.5:1
contrast (computed from the browser's own colours); a double click on Deploy makes one deployment;
an ended session sends an htmx request's page to the login page; an htmx error shows a toast.
Against live_server, the real etcd heartbeats and the real nodes (rows for deployments and workloads
where no container is needed)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client
from playwright.sync_api import Browser, Page, expect

from clusters.models import Deployment, PodMember
from tests.conftest import IMAGE
from tests.factories import DeploymentFactory, PodMemberFactory, WorkloadFactory

pytestmark = pytest.mark.services
PHONE = {"width": 390, "height": 844}

# The badges' contrast, from the colours the browser computed (WCAG 2 relative luminance).
CONTRASTS = """() => {
  const lum = (rgb) => {
    const [r, g, b] = rgb.match(/[\\d.]+/g).slice(0, 3).map(Number).map((c) => {
      c /= 255; return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  return [...document.querySelectorAll('.badge')].map((el) => {
    const s = getComputedStyle(el);
    const [hi, lo] = [lum(s.color), lum(s.backgroundColor)].sort((a, b) => b - a);
    return [el.className + ' ' + el.textContent.trim(), (hi + 0.05) / (lo + 0.05)];
  });
}"""


# What sticks out: the elements whose right edge passes the viewport (for the failure message).
# Elements inside a scrolling box (a table's wrapper) are left out: they scroll, the page does not.
WIDE = """() => {
  const scrolls = (el) => { for (let p = el.parentElement; p; p = p.parentElement) {
    if (['auto', 'scroll', 'hidden'].includes(getComputedStyle(p).overflowX)) return true; } return false; };
  const wide = (el) => el.getBoundingClientRect().right > innerWidth + 0.5 && !scrolls(el);
  return [...document.querySelectorAll('body *')].filter(wide)
    .filter((el) => ![...el.children].some(wide))
    .slice(0, 8).map((el) => el.tagName.toLowerCase() + '.' + el.className + '#' + el.id + ' '
      + Math.round(el.getBoundingClientRect().right) + ' ' + el.textContent.trim().slice(0, 40));
}"""


def log_in(page: Page, base: str, username: str) -> None:
    """A session made on the server side, handed to the browser as its cookie: the login form's
    throttle (20 attempts a minute from one address, shared by the whole e2e run) is left alone."""
    client = Client()
    client.force_login(get_user_model().objects.get(username=username))
    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
    page.context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": cookie, "url": base}])
    page.goto(f"{base}/")
    expect(page.locator(".who")).to_contain_text(username)


@pytest.fixture
def scene(nodes: list[Any], deployer: Any, viewer: Any) -> dict[str, Any]:
    """Pod `eru` with both real nodes, dora as deployer and vic as viewer, and a deployment whose
    workloads are rows in every state (no container needed for the layout)."""
    pod = nodes[0].pod
    PodMemberFactory(pod=pod, user=deployer, role=PodMember.Role.DEPLOYER)
    PodMemberFactory(pod=pod, user=viewer, role=PodMember.Role.VIEWER)
    d = DeploymentFactory(
        pod=pod, pod_name=pod.name, count=5, total=5, succeeded=3, failed=1, plan={nodes[0].name: 5}
    )
    states = ["running", "stopped", "failed", "pending", "removing"]
    workloads = [
        WorkloadFactory(
            node=nodes[0],
            deployment=d,
            state=state,
            name=f"web_main_{'long' * 8}{i}",
            error="an error that is rather long, to see that it wraps " * 3 if state == "failed" else "",
        )
        for i, state in enumerate(states)
    ]
    return {"pod": pod, "deployment": d, "workload": workloads[0]}


@pytest.fixture
def phone(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Callable[[str], Page]]:
    """A page in a 390 px wide context, light or dark."""
    contexts = []

    def open_page(scheme: str) -> Page:
        context = browser.new_context(viewport=PHONE, color_scheme=scheme)  # type: ignore[arg-type]
        contexts.append(context)
        return context.new_page()

    yield open_page
    for context in contexts:
        context.close()


def pages_of(persona: str, scene: dict[str, Any]) -> list[str]:
    paths = [
        "/",
        "/pods/eru/",
        f"/deployments/{scene['deployment'].pk}/",
        f"/workloads/{scene['workload'].pk}/",
    ]
    paths.append("/audit/")
    if persona != "vic":
        paths.append("/pods/eru/deploy/")
    return paths


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("persona", ["admin", "dora", "vic"])
def test_no_overflow_at_390px_and_badges_keep_contrast(
    phone: Callable[[str], Page],
    live_server: Any,
    admin_user: Any,
    scene: dict[str, Any],
    persona: str,
    scheme: str,
) -> None:
    base = live_server.url
    page = phone(scheme)
    log_in(page, base, persona)
    dark = page.evaluate("matchMedia('(prefers-color-scheme: dark)').matches")
    assert dark is (scheme == "dark")
    for path in pages_of(persona, scene):
        response = page.goto(base + path)
        assert response is not None
        assert response.status == 200, path
        page.wait_for_load_state("networkidle")
        widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert widths[0] <= widths[1], (
            f"{persona}/{scheme}: {path} is {widths[0]} px wide in {widths[1]} px: {page.evaluate(WIDE)}"
        )
        low = [(what, round(ratio, 2)) for what, ratio in page.evaluate(CONTRASTS) if ratio < 4.5]
        assert not low, f"{persona}/{scheme}: {path}: badges below 4.5:1: {low}"
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert (background == "rgb(18, 22, 29)") is (scheme == "dark")


def test_a_double_click_on_deploy_makes_one_deployment(
    page: Page, live_server: Any, admin_user: Any, nodes: list[Any], worker: Any, docker_clean: Any
) -> None:
    base = live_server.url
    log_in(page, base, "admin")
    page.goto(f"{base}/pods/eru/deploy/")
    page.locator("#id_app").fill("dbl")
    page.locator("#id_entrypoint").fill("web")
    page.locator("#id_image").fill(IMAGE)
    page.locator("#id_command").fill("sleep 60")
    page.locator("#id_cpu_limit").fill("0.1")
    page.locator("#id_memory_limit").fill("16M")
    page.locator("#id_cpu_bind").select_option("unbind")
    page.get_by_role("button", name="Deploy", exact=True).dblclick()
    expect(page).to_have_url(re.compile(r"/deployments/\d+/$"))
    d = Deployment.objects.get()  # exactly one
    assert page.url.endswith(f"/deployments/{d.pk}/")
    assert d.total == 1


def test_an_ended_session_sends_the_page_to_the_login_page(
    page: Page, live_server: Any, admin_user: Any, scene: dict[str, Any]
) -> None:
    base = live_server.url
    log_in(page, base, "admin")
    page.goto(f"{base}/pods/eru/")
    expect(page.locator("#nodes")).to_be_visible()
    page.context.clear_cookies()  # logged out elsewhere / expired
    page.evaluate("htmx.ajax('GET', location.pathname, {target: '#nodes', swap: 'outerHTML'})")
    expect(page).to_have_url(re.compile(r"/login/\?next=%2Fpods%2Feru%2F$"))
    expect(page.locator("#id_username")).to_be_visible()
    expect(page.locator("#nodes")).to_have_count(0)


def test_an_htmx_error_shows_a_toast(
    page: Page, live_server: Any, admin_user: Any, scene: dict[str, Any]
) -> None:
    base = live_server.url
    log_in(page, base, "admin")
    page.goto(f"{base}/pods/eru/")
    page.evaluate("htmx.ajax('GET', '/pods/no-such-pod/', {target: '#nodes', swap: 'outerHTML'})")
    toast = page.locator("#toasts .toast")
    expect(toast).to_contain_text("404")
    expect(toast).to_contain_text("Nothing here")
    expect(page.locator("#nodes")).to_be_visible()  # the card is left as it was
    toast.get_by_role("button", name="Dismiss").click()
    expect(toast).to_have_count(0)
