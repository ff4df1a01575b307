"""Orphans — containers labelled ERU=1 that no workload row holds — are reported, then removed;
containers of live workloads are never touched."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command

from agents import tasks
from clusters import services
from tests.conftest import IMAGE, wait_for

pytestmark = pytest.mark.services


def test_orphans_are_reported_then_removed(
    nodes: list[Any], worker: Any, docker_clean: dict[str, Any]
) -> None:
    pod = nodes[0].pod
    spec = services.validate_deploy(
        pod=pod,
        app="keep",
        entrypoint="e",
        image=IMAGE,
        command=["sleep", "600"],
        cpu_limit=0.1,
        cpu_bind=False,
        node_names=["node1"],
    )
    d = services.deploy(actor=services.SYSTEM, spec=spec)
    wait_for(lambda: d.workloads.filter(state="running").exists())
    raw = docker_clean["node1"]
    raw.containers.create(IMAGE, ["sleep", "600"], name="lost_e_abcdef", labels={"ERU": "1"})
    out = StringIO()
    call_command("reconcile", stdout=out)
    assert "node1: 1 orphan container(s) found lost_e_abcdef" in out.getvalue()
    assert len(raw.containers.list(all=True, filters={"label": "ERU=1"})) == 2
    tasks.reconcile_containers()
    names = [c.name for c in raw.containers.list(all=True, filters={"label": "ERU=1"})]
    assert names == [d.workloads.get().name]
