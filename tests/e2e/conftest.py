"""Browser tests: pytest-playwright driving Debian's Chromium (/usr/bin/chromium; Playwright never
downloads a browser here) against live_server, the real Celery worker thread and the real nodes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# The sync Playwright API keeps an event loop running in the test's thread; the ORM calls the tests
# make themselves (fixtures, assertions) would otherwise raise SynchronousOnlyOperation.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = Path(os.environ.get("ERU_CHROMIUM", "/usr/bin/chromium"))
EXPECT_TIMEOUT_MS = 15_000


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (bin/setup does)")
    return {
        **browser_type_launch_args,
        "executable_path": str(CHROMIUM),
        "args": ["--no-sandbox", "--disable-dev-shm-usage"],
    }


@pytest.fixture(scope="session")
def base_url(live_server: Any) -> str:
    """Relative page.goto() paths go to live_server (this also replaces pytest-playwright's own
    fixture, whose instance-method form pytest 9 warns about)."""
    return str(live_server.url)


@pytest.fixture(autouse=True)
def _expect_timeout() -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=EXPECT_TIMEOUT_MS)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    report = yield
    setattr(item, f"_report_{report.when}", report)
    return report


@pytest.fixture(autouse=True)
def _screenshot_on_failure(request: pytest.FixtureRequest, page: Any, tmp_path: Path) -> Iterator[None]:
    """A failed test leaves a full-page screenshot of where the browser was in its tmp_path."""
    yield
    report = getattr(request.node, "_report_call", None)
    if report is not None and report.failed:
        shot = tmp_path / "failure.png"
        try:
            page.screenshot(path=str(shot), full_page=True)
        except Exception as exc:  # noqa: BLE001 — a screenshot must never hide the real failure
            note = f"could not take one: {exc}"
        else:
            note = f"{shot} (at {page.url})"
        report.sections.append(("screenshot", note))  # shown with the failure at the end of the run
