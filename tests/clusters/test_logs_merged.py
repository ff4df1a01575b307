"""Several workloads' logs as one, on the real nodes: an app's containers merged through the API and
erucli, each line naming its workload, followed; and a deployment's page showing the last lines of
the workloads that did not come up."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from agents import tasks
from clusters import services
from clusters.models import Deployment, Workload
from tests.clusters.test_logs import _lines
from tests.conftest import IMAGE, wait_for

pytestmark = pytest.mark.services
ROOT = Path(__file__).resolve().parents[2]
TICKS = 'echo "first $HOSTNAME"; sleep 1; while true; do echo "tick $HOSTNAME"; sleep 0.3; done'


def test_an_apps_logs_merge_with_each_line_naming_its_workload(
    deploy: Callable[..., Any], admin_user: Any, outsider: Any
) -> None:
    ws = [*deploy("sh", "-c", TICKS, count=2), deploy("sh", "-c", TICKS, node="node2")]
    other = deploy("sh", "-c", TICKS, app="other")
    api = APIClient()
    api.force_authenticate(admin_user)
    wait_for(lambda: len(_lines(api.get("/api/workloads/logs/", {"app": "sw", "tail": "1"}), 3)) >= 3)
    got = _lines(api.get("/api/workloads/logs/", {"app": "sw", "tail": "1000"}), 3)
    firsts = [x for x in got if x["data"].startswith("first")]
    assert sorted((x["workload"], x["name"]) for x in firsts) == sorted((w.pk, w.name) for w in ws)
    times = [x["time"] for x in got]
    assert times == sorted(times)  # Docker's time order across the containers and both nodes
    followed = api.get("/api/workloads/logs/", {"app": "sw", "tail": "0", "follow": "true"})
    ticks = _lines(followed, 12)
    assert {x["data"].split()[0] for x in ticks} == {"tick"}
    assert {x["workload"] for x in ticks} == {w.pk for w in ws}  # all three, the other app's not
    assert other.pk not in {x["workload"] for x in ticks}
    one = _lines(api.get("/api/workloads/logs/", {"app": "sw", "node": "node2", "tail": "5"}), 1)
    assert {x["workload"] for x in one} == {ws[2].pk}
    assert api.get("/api/workloads/logs/").json()["app"] == [
        "app: name the app (or a deployment) whose logs to merge"
    ]
    assert api.get("/api/workloads/logs/", {"app": "sw", "tail": "all"}).json()["tail"] == [
        "tail: a number of lines per workload from 0 to 1000"
    ]
    api.force_authenticate(outsider)
    answer = api.get("/api/workloads/logs/", {"app": "sw", "tail": "10"})
    assert answer.status_code == 200
    assert b"".join(answer.streaming_content).strip() == b""


def test_erucli_merges_an_apps_logs_with_a_prefix(
    deploy: Callable[..., Any], admin_user: Any, live_server: Any
) -> None:
    ws = deploy("sh", "-c", TICKS, count=2)
    _, token = services.token_create(actor=services.SYSTEM, user=admin_user, name="cli")
    env = {**os.environ, "ERU": live_server.url, "ERU_TOKEN": token}
    cli = [sys.executable, "-m", "erucli", "workload", "logs"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cli, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=30)

    wait_for(lambda: run("--app", "sw", "--tail", "1").stdout.count("\n") >= 2)
    done = run("--app", "sw", "--entry", "e", "--tail", "1000")
    assert done.returncode == 0, done.stderr
    firsts = sorted(line for line in done.stdout.splitlines() if " | first " in line)
    assert [line.split(" | ")[0] for line in firsts] == sorted(w.name for w in ws)
    both = run("1", "--app", "sw")
    assert both.returncode == 1
    assert "not both" in both.stderr
    follow = subprocess.Popen(
        [*cli, "--deployment", str(ws[0].deployment_id), "-f", "--tail", "0"],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert follow.stdout is not None
        seen = {follow.stdout.readline().split(" | ")[0] for _ in range(8)}
        assert seen == {w.name for w in ws}
    finally:
        follow.kill()
        follow.wait()


def _deploy(nodes: list[Any], *command: str) -> Deployment:
    data = {"app": "sw", "entrypoint": "e", "image": IMAGE, "command": list(command), "count": 1}
    data.update({"cpu_limit": 0.1, "cpu_bind": False, "memory_limit": "16M", "node_names": ["node1"]})
    spec = services.deployment_validate(pod=nodes[0].pod, data=data)
    d = services.deployment_create(actor=services.SYSTEM, spec=spec)
    return wait_for(lambda: (row := Deployment.objects.get(pk=d.pk)).is_final and row)


def test_the_deployment_page_shows_the_last_lines_of_a_workload_that_did_not_come_up(
    nodes: list[Any], worker: Any, docker_clean: Any, admin_user: Any, outsider: Any
) -> None:
    crashed = _deploy(nodes, "sh", "-c", "echo starting; echo 'config: /etc/app.conf missing' >&2; exit 3")
    w = crashed.workloads.get()
    wait_for(lambda: tasks.sweep_nodes() or Workload.objects.get(pk=w.pk).status == Workload.Status.EXITED)
    never = _deploy(nodes, "/no/such/binary")
    assert never.state == Deployment.State.FAILED
    browser = Client()
    browser.force_login(admin_user)
    page = browser.get(f"/deployments/{crashed.pk}/").content.decode()
    assert f'hx-get="/deployments/{crashed.pk}/down/"' in page
    assert 'id="log"' in page
    down = browser.get(f"/deployments/{crashed.pk}/down/", HTTP_HX_REQUEST="true").content.decode()
    assert "Did not come up" in down
    assert "exited (3)" in down
    assert '<span class="log-line log-stdout"' in down
    assert "starting" in down
    assert '<span class="log-line log-stderr"' in down
    assert "config: /etc/app.conf missing" in down
    failed = browser.get(f"/deployments/{never.pk}/down/", HTTP_HX_REQUEST="true").content.decode()
    assert "No container is left" in failed
    assert never.workloads.get().error[:30] in failed
    assert "/no/such/binary" in never.workloads.get().error
    browser.force_login(outsider)
    assert browser.get(f"/deployments/{crashed.pk}/down/").status_code == 404
    assert browser.get(f"/deployments/{crashed.pk}/logs/").status_code == 404
