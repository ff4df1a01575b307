"""Data migrations: audit rows written under the old vocabulary read as the new one afterwards."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = ("clusters", "0003_workload_action")
AFTER = ("clusters", "0004_audit_vocabulary")


def _migrate(target: tuple[str, str]) -> Any:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([target])
    return executor.loader.project_state([target]).apps


@pytest.mark.django_db(transaction=True)
def test_old_audit_actions_are_renamed_and_back() -> None:
    old = _migrate(BEFORE)
    AuditEvent = old.get_model("clusters", "AuditEvent")
    for action in ("deploy", "workload.started", "workload.running", "workload.stopped", "pod.add"):
        AuditEvent.objects.create(via="system", action=action, target_type="x", target_name=action)
    new = _migrate(AFTER).get_model("clusters", "AuditEvent")
    assert dict(new.objects.values_list("target_name", "action")) == {
        "deploy": "deployment.create",
        "workload.started": "workload.created",  # the container was made and runs
        "workload.running": "workload.started",  # it runs again after a start
        "workload.stopped": "workload.stopped",
        "pod.add": "pod.add",
    }
    back = _migrate(BEFORE).get_model("clusters", "AuditEvent")
    assert all(name == action for name, action in back.objects.values_list("target_name", "action"))
    _migrate(("clusters", max_leaf()))


def max_leaf() -> str:
    executor = MigrationExecutor(connection)
    return next(name for app, name in executor.loader.graph.leaf_nodes() if app == "clusters")
