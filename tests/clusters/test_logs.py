"""A workload's log from its container, on the real nodes: through the API (NDJSON, followed), erucli,
the browser's live view, bounded streams on the real web server, and permissions."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rest_framework.test import APIClient

from clusters import services
from clusters.models import PodMember
from tests.conftest import wait_for
from tests.web import gunicorn

pytestmark = pytest.mark.services
ROOT = Path(__file__).resolve().parents[2]
PRINTS = "echo one; echo two >&2; echo three; sleep 1; while true; do echo tick; sleep 0.3; done"


def _lines(response: Any, n: int) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    buffer = b""
    for chunk in response.streaming_content:
        buffer += chunk
        *whole, buffer = buffer.split(b"\n")
        got += [json.loads(w) for w in whole if w]
        if len(got) >= n:
            break
    response.close()
    return got


def test_the_api_streams_a_log_with_its_streams_and_follows_it(
    deploy: Callable[..., Any], admin_user: Any, outsider: Any
) -> None:
    w = deploy("sh", "-c", PRINTS)
    api = APIClient()
    api.force_authenticate(admin_user)
    wait_for(lambda: len(_lines(api.get(f"/api/workloads/{w.pk}/logs/", {"tail": "all"}), 3)) >= 3)
    first = _lines(api.get(f"/api/workloads/{w.pk}/logs/", {"tail": "all"}), 3)
    # Docker copies each stream on its own: the order within a stream holds, across streams not quite.
    assert [x["data"] for x in first if x["stream"] == "stdout"] == ["one", "three"]
    assert [x["data"] for x in first if x["stream"] == "stderr"] == ["two"]
    assert first[0]["time"].endswith("Z")
    followed = api.get(f"/api/workloads/{w.pk}/logs/", {"tail": "0", "follow": "true"})
    assert followed["Content-Type"] == "application/x-ndjson"
    started = time.monotonic()
    ticks = _lines(followed, 3)
    assert [x["data"] for x in ticks] == ["tick"] * 3  # new lines, as they come
    assert time.monotonic() - started < 5
    assert api.get(f"/api/workloads/{w.pk}/logs/", {"tail": "x"}).json()["tail"] == [
        "tail: a number of lines from 0 to 10000, or all"
    ]
    api.force_authenticate(outsider)
    assert api.get(f"/api/workloads/{w.pk}/logs/").status_code == 404


def test_pod_deployers_read_logs_with_erucli_and_viewers_get_403(
    deploy: Callable[..., Any], deployer: Any, viewer: Any, live_server: Any
) -> None:
    """Logs carry secrets: a pod's deployers read them, its viewers do not (clusters.permissions)."""
    w = deploy("sh", "-c", PRINTS)
    PodMember.objects.create(pod=w.pod, user=viewer, role=PodMember.Role.VIEWER)
    PodMember.objects.create(pod=w.pod, user=deployer, role=PodMember.Role.DEPLOYER)
    cli = [sys.executable, "-m", "erucli", "workload", "logs", str(w.pk)]
    _, viewer_token = services.token_create(actor=services.SYSTEM, user=viewer, name="cli")
    refused = subprocess.run(
        [*cli, "--tail", "all"],
        env={**os.environ, "ERU": live_server.url, "ERU_TOKEN": viewer_token},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert refused.returncode != 0
    assert "one" not in refused.stdout
    _, token = services.token_create(actor=services.SYSTEM, user=deployer, name="cli")
    env = {**os.environ, "ERU": live_server.url, "ERU_TOKEN": token}
    done = subprocess.run(
        [*cli, "--tail", "all"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[:2] == ["one", "three"]
    assert done.stderr.splitlines()[0] == "two"
    follow = subprocess.Popen(
        [*cli, "-f", "--tail", "0"], env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert follow.stdout is not None
        assert [follow.stdout.readline().strip() for _ in range(2)] == ["tick", "tick"]
    finally:
        follow.kill()
        follow.wait()


@pytest.fixture
def web(transactional_db: Any, tmp_path: Path) -> Iterator[str]:
    """The real web server as bin/eru runs it, one worker here, so that the bound of its streams is
    the whole bound."""
    with gunicorn(tmp_path, workers=1, ERU_STREAMS="55", ERU_STREAM_IDLE="5") as address:
        yield address


def _get(address: str, path: str, token: str) -> tuple[int, float]:
    host, _, port = address.partition(":")
    c = http.client.HTTPConnection(host, int(port), timeout=10)
    started = time.monotonic()
    c.request("GET", path, headers={"Authorization": f"Token {token}"})
    response = c.getresponse()
    response.read()
    c.close()
    return response.status, time.monotonic() - started


def test_fifty_idle_followers_hold_while_pages_answer_and_one_beyond_the_bound_gets_503(
    deploy: Callable[..., Any], admin_user: Any, web: str
) -> None:
    w = deploy("sleep", "600")
    _, token = services.token_create(actor=services.SYSTEM, user=admin_user, name="t")
    pages = [f"/api/workloads/{w.pk}/", "/api/pods/", "/api/nodes/"]
    before = max(_get(web, p, token)[1] for p in pages * 3)
    host, _, port = web.partition(":")
    followers = []
    for _ in range(50):
        c = http.client.HTTPConnection(host, int(port), timeout=20)
        c.request(
            "GET", f"/api/workloads/{w.pk}/logs/?follow=true", headers={"Authorization": f"Token {token}"}
        )
        response = c.getresponse()
        assert response.status == 200
        followers.append((c, response))
    try:
        during = [_get(web, p, token) for p in pages * 3]
        assert all(status == 200 for status, _ in during)
        assert max(t for _, t in during) < max(1.0, 5 * before)
        for _ in range(5):  # up to the bound (55), then one more
            c = http.client.HTTPConnection(host, int(port), timeout=20)
            c.request(
                "GET", f"/api/workloads/{w.pk}/logs/?follow=true", headers={"Authorization": f"Token {token}"}
            )
            assert c.getresponse().status == 200
            followers.append((c, None))
        status, took = _get(web, f"/api/workloads/{w.pk}/logs/?follow=true", token)
        assert status == 503
        assert took < 2  # refused at once, not left to hang
    finally:
        for c, _ in followers:
            c.close()
    wait_for(lambda: _get(web, f"/api/workloads/{w.pk}/logs/?tail=1", token)[0] == 200, timeout=15)
