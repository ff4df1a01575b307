"""Lambdas on the real nodes: output as it comes, the exit code, and the container removed on every
ending — exited, failed, timed out, cancelled, and after its worker was lost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from rest_framework.test import APIClient

from agents import tasks
from clusters import services
from clusters.models import AuditEvent, LambdaRun, Workload
from tests.conftest import IMAGE, wait_for

pytestmark = pytest.mark.services
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def api(nodes: list[Any], worker: Any, docker_clean: dict[str, Any], admin_user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(admin_user)
    return client


def _run(api: APIClient, command: list[str], **fields: Any) -> dict[str, Any]:
    body = {"pod": "eru", "image": IMAGE, "command": command, "node_names": ["node1"], **fields}
    answer = api.post("/api/lambdas/", body, format="json")
    assert answer.status_code == 201, answer.json()
    return answer.json()


def _events(api: APIClient, run_id: int) -> list[dict[str, Any]]:
    response = api.get(f"/api/lambdas/{run_id}/output/")
    assert response["Content-Type"] == "application/x-ndjson"
    return [json.loads(line) for line in b"".join(response.streaming_content).splitlines() if line]


def _running(docker_clean: dict[str, Any], run_id: int) -> bool:
    return bool(docker_clean["node1"].containers.list(filters={"label": f"eru.lambda={run_id}"}))


def _no_containers(docker_clean: dict[str, Any]) -> bool:
    return not any(c.containers.list(all=True, filters={"label": "ERU=1"}) for c in docker_clean.values())


def test_output_comes_with_its_streams_and_the_exit_code_and_nothing_stays(
    api: APIClient, docker_clean: dict[str, Any]
) -> None:
    run = _run(api, ["sh", "-c", "echo one; echo two >&2; sleep 0.3; echo three; exit 3"], count=2)
    events = _events(api, run["id"])
    lines = [(e["seq"], e["stream"], e["data"]) for e in events if e["event"] == "line"]
    for seq in (0, 1):
        assert [x[1:] for x in lines if x[0] == seq and x[1] == "stdout"] == [
            ("stdout", "one"),
            ("stdout", "three"),
        ]
        assert (seq, "stderr", "two") in lines
    assert [e["event"] for e in events].count("starting") == 2
    assert events[-1] == {"event": "end", "state": "done", "exit_code": 3}
    row = LambdaRun.objects.get(pk=run["id"])
    assert (row.state, row.exit_code, sorted(row.exit_codes.values())) == ("done", 3, [3, 3])
    assert "0| three" in row.output
    assert _no_containers(docker_clean)
    assert not Workload.objects.exists()  # rows and allocations gone
    assert AuditEvent.objects.filter(action=AuditEvent.Action.LAMBDA_ENDED, target_id=str(row.pk)).exists()
    assert _events(api, run["id"])[-1]["exit_code"] == 3  # read again, from the first entry


def test_a_timeout_and_a_cancel_kill_it_and_remove_the_container(
    api: APIClient, docker_clean: dict[str, Any]
) -> None:
    slow = _run(api, ["sh", "-c", "echo begun; sleep 600"], timeout=2)
    assert _events(api, slow["id"])[-1] == {"event": "end", "state": "timeout", "exit_code": 1}
    assert _no_containers(docker_clean)
    run = _run(api, ["sh", "-c", "echo begun; sleep 600"])
    stream = api.get(f"/api/lambdas/{run['id']}/output/")
    wait_for(lambda: _running(docker_clean, run["id"]))
    assert api.post(f"/api/lambdas/{run['id']}/cancel/").status_code == 202
    events = [json.loads(x) for x in b"".join(stream.streaming_content).splitlines() if x]
    assert events[-1]["state"] == "cancelled"
    assert any(e.get("data") == "begun" for e in events)
    assert _no_containers(docker_clean)


def test_a_container_that_cannot_start_fails_the_run_with_docker_s_word(api: APIClient) -> None:
    run = _run(api, ["/no/such/binary"])
    events = _events(api, run["id"])
    assert events[-1] == {"event": "end", "state": "failed", "exit_code": 1}
    assert any("/no/such/binary" in e.get("data", "") for e in events if e["event"] == "line")


def test_a_run_whose_worker_was_lost_is_ended_and_its_container_removed(
    api: APIClient, docker_clean: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker killed mid-run leaves its container running and its claim to go stale: reconcile
    sends the work again, and the task that takes it removes the container and ends the run as
    failed, audited. The death is played where it happens: the run's message is held back, and its
    container made and started as that worker had, under a claim an hour old."""
    from datetime import timedelta

    from django.utils import timezone

    from clusters import queue, selectors
    from engine import docker

    monkeypatch.setattr(queue, "enqueue_each", lambda *args, **kwargs: None)
    run = _run(api, ["sh", "-c", "sleep 600"], timeout=600)
    monkeypatch.undo()
    w = Workload.objects.select_related("pod", "node").get(lambda_run_id=run["id"])
    docker.create_and_start(selectors.node_client(w.node), **selectors.container_spec(w))
    Workload.objects.filter(pk=w.pk).update(
        state=Workload.State.CREATING, task_id="dead-worker", claimed_at=timezone.now() - timedelta(hours=1)
    )
    assert _running(docker_clean, run["id"])
    tasks.reconcile_containers()  # re-sends its creation: the task that takes it ends the run
    end = wait_for(lambda: (r := LambdaRun.objects.get(pk=run["id"])).is_final and r, timeout=30)
    assert (end.state, end.exit_code) == ("failed", 1)
    assert "its worker was lost mid-run" in end.output
    assert _no_containers(docker_clean)
    assert not Workload.objects.filter(pk=w.pk).exists()
    assert AuditEvent.objects.filter(action=AuditEvent.Action.LAMBDA_ENDED, target_id=str(run["id"])).exists()


def test_erucli_lambda_prints_live_and_exits_with_the_code_even_at_a_hundredth_of_a_cpu(
    api: APIClient, admin_user: Any, live_server: Any
) -> None:
    _, token = services.token_create(actor=services.SYSTEM, user=admin_user, name="cli")
    env = {**os.environ, "ERU": live_server.url, "ERU_TOKEN": token}
    argv = [sys.executable, "-m", "erucli", "lambda", "--pod", "eru", "--image", IMAGE, "--cpu", "0.01",
            "--memory", "16M", "--node", "node1", "--command",
            "sh -c 'echo hi; echo err >&2; exit 7'"]  # fmt: skip
    started = time.monotonic()
    done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 7, done.stderr
    assert done.stdout == "hi\n"
    assert "starting…" in done.stderr
    assert "err" in done.stderr
    assert time.monotonic() - started < 60


def test_stdin_reaches_the_command_and_then_its_end(
    api: APIClient, admin_user: Any, live_server: Any
) -> None:
    _, token = services.token_create(actor=services.SYSTEM, user=admin_user, name="cli")
    env = {**os.environ, "ERU": live_server.url, "ERU_TOKEN": token}
    argv = [sys.executable, "-m", "erucli", "lambda", "--pod", "eru", "--image", IMAGE, "--node", "node1",
            "--stdin", "--", "sh", "-c", "wc -l; cat >/dev/null; echo read-all"]  # fmt: skip
    done = subprocess.run(
        argv, env=env, cwd=ROOT, input="a\nb\nc\n", capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["3", "read-all"]
    body = {"pod": "eru", "image": IMAGE, "command": ["cat"], "count": 2, "stdin": "x"}
    refused = api.post("/api/lambdas/", body, format="json").json()
    assert refused == {"stdin": ["count must be 1 if OpenStdin is true (and the strategy AUTO)"]}
