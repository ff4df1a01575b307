"""The core's /metrics, on the real services: Eru's node metrics from the database (and etcd's
heartbeat keys), who may scrape, and two web processes giving one answer (multiprocess counts)."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.test import APIClient

from agents import tasks
from clusters import etcd, services
from clusters.models import Node, PodMember
from tests.web import gunicorn

pytestmark = pytest.mark.services
ROOT = Path(__file__).resolve().parents[2]


def _families(text: str) -> dict[str, list[Any]]:
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def _value(samples: list[Any], **labels: str) -> float:
    (found,) = [s.value for s in samples if all(s.labels.get(k) == v for k, v in labels.items())]
    return float(found)


def test_eru_s_node_metrics_come_from_the_database(
    deploy: Callable[..., Any], admin_user: Any, viewer: Any
) -> None:
    w = deploy("sleep", "600", cpu_bind=True, cpu_limit=1.0, memory_limit="64M")
    tasks.sweep_nodes()  # the heartbeat keys of the nodes that answer
    node = Node.objects.get(name="node1")
    api = APIClient()
    answer = api.get("/metrics")
    assert answer.status_code == 401
    assert "administrator's API token" in answer.json()["detail"]
    api.force_authenticate(admin_user)
    answer = api.get("/metrics")
    assert answer.status_code == 200
    assert answer["Content-Type"].startswith("text/plain")
    got = _families(answer.content.decode())
    pod = node.pod.name
    assert _value(got["memory_capacity"], nodename="node1", podname=pod) == node.memory
    assert _value(got["memory_used"], nodename="node1") == 64 << 20
    assert _value(got["cpu_used"], nodename="node1") == 1.0
    bound = {s.labels["cpuid"]: s.value for s in got["cpu_map"] if s.labels["nodename"] == "node1"}
    assert sorted(bound.values()) == [0.0, 100.0]  # the two cores, one held whole
    assert list(w.cpu_map) == [k for k, v in bound.items() if v]
    assert _value(got["pod_node_up"], nodename="node1") == 1.0
    assert _value(got["core_deploy"]) >= 1
    PodMember.objects.create(pod=node.pod, user=viewer, role=PodMember.Role.VIEWER)
    api.force_authenticate(viewer)
    assert api.get("/metrics").status_code == 403
    with override_settings(ERU_METRICS_ALLOW=["10.0.0.0/8", "127.0.0.1"]):
        assert APIClient().get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200
        assert APIClient().get("/metrics", REMOTE_ADDR="192.168.1.1").status_code == 401


def test_two_web_processes_give_one_answer(nodes: list[Any], admin_user: Any, tmp_path: Path) -> None:
    counts = tmp_path / "prometheus"
    counts.mkdir()
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(counts),
        "DJANGO_SETTINGS_MODULE": "eru_site.settings",
    }
    counted = "import django; django.setup(); from clusters import metrics; [metrics.TASKS.labels(task='t.x', outcome='succeeded').inc() for _ in range(3)]"  # noqa: E501
    subprocess.run([sys.executable, "-c", counted], env=env, cwd=ROOT, check=True, timeout=60)  # a worker
    _, token = services.token_create(actor=services.SYSTEM, user=admin_user, name="prometheus")
    for n in nodes:  # leases that outlive the test: no node goes up or down between two scrapes
        etcd.heartbeat(n.name, n.pod.name, ttl=120)
    with gunicorn(tmp_path, workers=2, PROMETHEUS_MULTIPROC_DIR=str(counts)) as address:
        host, _, port = address.partition(":")
        answers: dict[str, set[str]] = {}
        for _ in range(40):
            c = http.client.HTTPConnection(host, int(port), timeout=10)
            c.request("GET", "/metrics", headers={"Authorization": f"Bearer {token}"})
            response = c.getresponse()
            assert response.status == 200
            answers.setdefault(response.getheader("X-Eru-Process", ""), set()).add(response.read().decode())
            c.close()
            if len(answers) >= 2:
                break
    assert len(answers) == 2, "both web processes answered"
    bodies = set().union(*answers.values())
    # The same lines from both; their order may not be: the families of the multiprocess counts come
    # in the order their files are found, and a process that starts adds its own files.
    lines = {tuple(sorted(b.splitlines())) for b in bodies}
    differ = set.symmetric_difference(*(set(b) for b in lines)) if len(lines) > 1 else set()
    assert len(lines) == 1, sorted(differ)  # the same numbers from both
    got = _families(bodies.pop())
    assert _value(got["eru_tasks"], task="t.x", outcome="succeeded") == 3.0
    assert {s.labels["nodename"] for s in got["memory_capacity"]} == {n.name for n in nodes}
